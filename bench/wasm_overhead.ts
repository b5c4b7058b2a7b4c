/**
 * The WASM backend's fixed cost per call: an `attention()` call's wall time against the engine's
 * phase times (`lastPhaseMs`: the pack phase, which is per call, and the forward phase) and the
 * rest (validation, copies in and out, the finiteness scan), with and without `checkFinite`, and
 * the cost of filling fresh output-sized arrays from the shared wasm memory and from a plain
 * array.
 *
 * Run: `deno run -A bench/wasm_overhead.ts [--seq 4096] [--heads 4] [--mask causalDocument]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { attention, exampleMask, type MaskName } from "../mod.ts";
import { engine } from "../wasm/_runtime.ts";
import { makeInputs, median } from "./_run.ts";

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    seq: { type: "string", default: "4096" },
    heads: { type: "string", default: "4" },
    mask: { type: "string", default: "causalDocument" },
    reps: { type: "string", default: "5" },
  },
});
const [N, H, reps] = [Number(a.seq), Number(a.heads), Number(a.reps)];
const shape = { batch: 1, seq: N, heads: H, kvHeads: H, dim: 64, dtype: "f32" } as const;
const { q, k, v } = makeInputs(shape, 1);
console.log(`B=1 N=${N} H=${H} d=64 f32, 2 threads, median of ${reps} (ms)`);
console.log("| mask | checkFinite | call | pack phase | forward phase | outside the phases |");
console.log("| --- | --- | ---: | ---: | ---: | ---: |");
for (const name of ["full", a.mask as MaskName]) {
  const mask = name === "full" ? undefined : exampleMask(name as MaskName, N).mask;
  for (const checkFinite of [true, false]) {
    const options = { backend: "wasm", threads: 2, mask, checkFinite } as const;
    await attention(q, k, v, options);
    const call: number[] = [], pack: number[] = [], fwd: number[] = [], rest: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      await attention(q, k, v, options);
      const t = performance.now() - t0, eng = engine();
      call.push(t);
      pack.push(eng.lastPhaseMs[0]);
      fwd.push(eng.lastPhaseMs[1]);
      rest.push(t - eng.lastRunMs);
    }
    console.log(
      `| ${name} | ${checkFinite} | ${
        [call, pack, fwd, rest].map((x) => median(x).toFixed(1)).join(" | ")
      } |`,
    );
  }
}
const n = N * H * 64, eng = engine();
eng.ensure((1 << 20) + n * 4);
const shared = new Float32Array(eng.memory.buffer, 1 << 20, n), plain = new Float32Array(n);
const time = (f: () => unknown) => {
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    f();
    t.push(performance.now() - t0);
  }
  return median(t).toFixed(2);
};
const mb = (n * 4 / 2 ** 20).toFixed(0);
console.log(`\nfilling ${mb} MiB (the size of out):`);
console.log(`- a fresh array from the wasm memory: ${time(() => shared.slice())} ms`);
console.log(`- a fresh array from a plain array: ${time(() => plain.slice())} ms`);
const dst = new Float32Array(n).fill(1);
console.log(`- a touched array from the wasm memory: ${time(() => dst.set(shared))} ms`);
