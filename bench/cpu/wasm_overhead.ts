/**
 * The WASM backend's fixed cost per call: an `attention()` call's wall time against the engine's
 * phase times (`lastPhaseMs`: the pack phase, which is per call, and the forward phase) and the
 * rest (validation, copies in and out, the finiteness scan), with and without `checkFinite`; for
 * each mask, the forward phase's and the whole call's ratio to the full mask's × the schedule's
 * density (the kernels' own sparsity overhead, and with the fixed cost); and the cost of filling
 * fresh output-sized arrays from the shared wasm memory and from a plain array.
 *
 * The calls are made in rounds (each round calls every configuration once) and the table gives
 * medians over rounds.
 *
 * Run: `deno run -A bench/cpu/wasm_overhead.ts [--seq 4096] [--heads 4] [--reps 5]
 * [--masks causalDocument,slidingWindow | all]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { attention } from "../../mod.ts";
import { exampleMask, MASK_NAMES, type MaskName, schedule } from "../../masks/mod.ts";
import { BLOCK_COLS, BLOCK_ROWS, engine } from "../../wasm/internal.ts";
import { cpuMeter, makeInputs, median } from "../cli/_run.ts";

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    seq: { type: "string", default: "4096" },
    heads: { type: "string", default: "4" },
    masks: { type: "string", default: "causalDocument,slidingWindow" },
    reps: { type: "string", default: "5" },
  },
});
const [N, H, reps] = [Number(a.seq), Number(a.heads), Number(a.reps)];
const shape = { batch: 1, seq: N, heads: H, kvHeads: H, dim: 64, dtype: "f32" } as const;
const { q, k, v } = makeInputs(shape, 1);
const names = a.masks === "all" ? MASK_NAMES.slice(1) : a.masks.split(",") as MaskName[];
const configs = ["full" as const, ...names].flatMap((name) =>
  [true, false].map((checkFinite) => ({ name, checkFinite, t: [[], [], [], []] as number[][] }))
);
const run = async (c: (typeof configs)[number]) => {
  const mask = c.name === "full" ? undefined : exampleMask(c.name, N).mask;
  const t0 = performance.now();
  await attention(q, k, v, { backend: "wasm", threads: 2, mask, checkFinite: c.checkFinite });
  const t = performance.now() - t0, eng = engine();
  return [t, eng.lastPhaseMs[0], eng.lastPhaseMs[1], t - eng.lastRunMs];
};
const load = cpuMeter();
for (const c of configs) await run(c);
for (let r = 0; r < reps; r++) {
  for (const c of configs) (await run(c)).forEach((x, i) => c.t[i].push(x));
}
console.log(`load average: ${load()}`);
console.log(`B=1 N=${N} H=${H} d=64 f32, 2 threads, median of ${reps} rounds (ms)`);
console.log(
  "| mask | density | checkFinite | call | pack phase | forward phase | outside the phases | " +
    "forward phase / (full's × density) | call / (full's × density) |",
);
console.log("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const c of configs) {
  const density = c.name === "full" ? 1 : schedule(exampleMask(c.name, N).mask, {
    nq: N,
    nk: N,
    blockRows: BLOCK_ROWS,
    blockCols: BLOCK_COLS,
  }).density;
  const full = configs.find((x) => x.name === "full" && x.checkFinite === c.checkFinite)!;
  const [call, , fwd] = c.t.map(median), [fullCall, , fullFwd] = full.t.map(median);
  console.log(
    `| ${c.name} | ${density.toFixed(3)} | ${c.checkFinite} | ${
      c.t.map((x) => median(x).toFixed(1)).join(" | ")
    } | ${(fwd / (fullFwd * density)).toFixed(2)} | ${(call / (fullCall * density)).toFixed(2)} |`,
  );
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
