/**
 * `deno bench bench/suites/scaling_bench.ts`: scaling in the sequence length N. One group per N, the
 * full mask as the baseline: a dense mask costs N², a sliding window or short documents about
 * N, so their speed-up over full grows with N. Lengths: 128, 256, 512, and up to
 * `FLASHMASK_BENCH_MAX_N` (default 512) by doubling.
 *
 * @module
 */

import type { Shape } from "../cli/_run.ts";
import { benchKernel, shapeLabel, suiteBackend } from "./_suite.ts";

const { name: backend } = await suiteBackend();
let maxN = 512;
try {
  maxN = Number(Deno.env.get("FLASHMASK_BENCH_MAX_N") ?? 512) || 512;
} catch { /* no --allow-env */ }

for (let seq = 128; seq <= maxN; seq *= 2) {
  const shape: Shape = { batch: 1, seq, heads: 2, kvHeads: 2, dim: 64, dtype: "f32" };
  const group = `forward ${backend} ${shapeLabel(shape)}`;
  for (const mask of ["full", "causal", "slidingWindow", "causalDocument"] as const) {
    benchKernel({ backend, pass: "fwd", shape, mask, group, baseline: mask === "full" });
  }
}
