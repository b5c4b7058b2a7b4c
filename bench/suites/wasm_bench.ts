/**
 * `deno bench` for the WASM backend: forward and backward at B=1, H=8, N=2048, d=64 (f32, no
 * mask) against the GEMM micro-kernel ceiling doing the same number of flops (so deno bench's
 * "x slower than" ratio is the fraction of the ceiling reached), one vs two threads, and
 * onnxruntime-web's WASM backend on the same shape.
 *
 * Run: `deno bench -A bench/suites/wasm_bench.ts` (see docs/BENCHMARKS.md; bench/cpu/wasm_report.ts prints the
 * full report with GFLOP/s, the mask types and native onnxruntime-node).
 *
 * @module
 */

import { attention, attentionBackward } from "../../mod.ts";
import { GEMM_FLOPS_PER_REP, gemmBaseline, ortWeb } from "../cpu/_peers.ts";
import { makeInputs } from "../cli/_run.ts";

const [B, N, H, D] = [1, 2048, 8, 64];
const { q, k, v, dOut } = makeInputs({
  batch: B,
  seq: N,
  heads: H,
  kvHeads: H,
  dim: D,
  dtype: "f32",
}, 1);
const { out, lse } = await attention(q, k, v, { backend: "wasm", threads: 1 });
const fwdFlops = 4 * B * H * N * N * D;
const web1 = await ortWeb(q, k, v, 1);
const opts = { n: 5, warmup: 1 };

Deno.bench("GEMM micro-kernel, forward's flops (1 thread)", {
  ...opts,
  group: "forward",
  baseline: true,
}, () => {
  gemmBaseline(Math.round(fwdFlops / GEMM_FLOPS_PER_REP));
});
Deno.bench("wasm forward (1 thread)", { ...opts, group: "forward" }, async () => {
  await attention(q, k, v, { backend: "wasm", threads: 1 });
});
Deno.bench(web1.name, { ...opts, group: "forward" }, async () => {
  await web1.run();
});

Deno.bench("GEMM micro-kernel, backward's flops (1 thread)", {
  ...opts,
  group: "backward",
  baseline: true,
}, () => {
  gemmBaseline(Math.round(2.5 * fwdFlops / GEMM_FLOPS_PER_REP));
});
Deno.bench("wasm backward (1 thread)", { ...opts, group: "backward" }, async () => {
  await attentionBackward({ q, k, v, out, lse, dOut }, { backend: "wasm", threads: 1 });
});

Deno.bench("wasm forward, 1 thread", { ...opts, group: "threads", baseline: true }, async () => {
  await attention(q, k, v, { backend: "wasm", threads: 1 });
});
Deno.bench("wasm forward, 2 threads", { ...opts, group: "threads" }, async () => {
  await attention(q, k, v, { backend: "wasm", threads: 2 });
});
