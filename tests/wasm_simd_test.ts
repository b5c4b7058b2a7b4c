// The plain-SIMD fallback build (chosen at load time where relaxed SIMD does not validate), forced
// here so it is tested on machines that have relaxed SIMD too. Test files run in separate isolates,
// so this engine is this file's own.
import assert from "node:assert/strict";
import { tuning } from "../wasm/backend.ts";
import { engine } from "../wasm/_runtime.ts";
import {
  alibiCases,
  checkCase,
  checkMaskedRows,
  featureCases,
  sinkCases,
  standardCases,
} from "./_cases.ts";

tuning.flopsPerThread = 0;
const eng = engine({ forceSimd: true });

Deno.test("wasm plain-SIMD build is the one loaded here", () => assert.equal(eng.relaxed, false));

for (const c of standardCases()) {
  Deno.test(`wasm plain-SIMD build (2 threads): ${c.name}`, () =>
    checkCase(c, { backend: "wasm", threads: 2 }));
}
for (const c of [...featureCases(), ...sinkCases(), ...alibiCases()]) {
  Deno.test(`wasm plain-SIMD build (2 threads), options: ${c.name}`, () =>
    checkCase(c, { backend: "wasm", threads: 2 }));
}
Deno.test("wasm plain-SIMD build: fully masked rows", () => checkMaskedRows({ backend: "wasm" }));
