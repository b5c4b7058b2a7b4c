/**
 * The committed WASM kernels and generated AssemblyScript are a fresh build (`deno task
 * build:wasm`). Under `deno task test:tools`: the build fetches AssemblyScript.
 *
 * @module
 */

import assert from "node:assert/strict";
import { GENERATED_MODULES, generatedSource } from "../../wasm/build.ts";
import { kernelBytes } from "../../wasm/internal.ts";

Deno.test("wasm: the committed kernel bytes equal a fresh build (deno task build:wasm)", async () => {
  const committed = await Deno.readTextFile(
    new URL("../../wasm/_generated/kernels.ts", import.meta.url),
  );
  assert.ok(
    committed === await generatedSource(),
    "wasm/_generated/kernels.ts differs from a fresh build of wasm/assembly/; " +
      "run deno task build:wasm",
  );
  // the two builds differ (one has relaxed multiply-adds) and both are valid modules
  const relaxed = kernelBytes({ relaxed: true }), simd = kernelBytes();
  assert.ok(relaxed.length !== simd.length || relaxed.some((b, i) => b !== simd[i]));
  assert.ok(WebAssembly.validate(simd));
});

Deno.test("wasm: the generated AssemblyScript modules are fresh (slots, micro-kernels)", async () => {
  for (const [name, make] of Object.entries(GENERATED_MODULES)) {
    assert.equal(
      await Deno.readTextFile(new URL(`../../wasm/assembly/${name}`, import.meta.url)),
      make(),
      `wasm/assembly/${name} differs from its generator; run deno task build:wasm`,
    );
  }
});
