/**
 * The fuzzer's cases that quick runs leave out on a software adapter (head dims 64–256, the
 * decoding kernels, f16 with softcap or dropout: `softwareAdapterSkip`), checked on WebGPU with
 * nothing left out: the first FUZZ_FULL_CASES (default 12) such seeds from FUZZ_FULL_START
 * (default 1001), so that CI checks those kernel configurations on lavapipe too, within a short
 * budget (each new configuration compiles for seconds there).
 */

import { drawCase, failureReport, runCase, softwareAdapterSkip, targets } from "./fuzz.ts";

const start = Number(Deno.env.get("FUZZ_FULL_START") ?? 1001);
const count = Number(Deno.env.get("FUZZ_FULL_CASES") ?? 12);
const ts = await targets({ backends: ["webgpu"], gpuFull: true });
const seeds: number[] = [];
for (let seed = start; seeds.length < count; seed++) {
  if (softwareAdapterSkip(drawCase(seed))) seeds.push(seed);
}

for (const seed of seeds) {
  Deno.test({
    name: `webgpu, every configuration: ${drawCase(seed).name}`,
    ignore: ts.length === 0,
    async fn() {
      const r = await runCase(seed, ts);
      if (r.failed.length) throw new Error(failureReport(r));
      if (!r.ran.some((x) => x.startsWith("webgpu"))) {
        throw new Error(`seed ${seed}: webgpu did not run (${r.skipped.join("; ")})`);
      }
    },
  });
}
