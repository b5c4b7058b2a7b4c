/**
 * What a GPU-resident call costs beyond its kernels: for each shape, the wall time per call of R
 * awaited GPU-resident `attention` calls followed by one read-back (results into preallocated
 * tensors, as a model's layers would call it), next to the kernels' own time from timestamp
 * queries, and the decode-loop example's tokens per second for a stack of layers next to the
 * layers × kernel time.
 *
 * Run: `deno run -A bench/gpu/call_overhead.ts [--reps 50] [--layers 32] [--max-seq N] [--json FILE]`
 * (`--max-seq` leaves out the prefill shapes longer than N, for software adapters).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { attention, fromGpu, type GpuArray, type GpuTensor, tensor, toGpu } from "../../mod.ts";
import {
  checkProblem,
  decodeKernels,
  decodeScratch,
  forwardKernel,
  type GpuContext,
  planDecode,
  planForward,
  requireGpu,
  storage,
  usesDecode,
} from "../../gpu/internal.ts";
import { timeKernel } from "./gpu_bench.ts";
import { decodeLoop } from "../../docs/examples/decode_loop.ts";

/** One measured shape. */
export interface OverheadRow {
  shape: string;
  /** Wall time per awaited call, the final read-back shared out over the calls. */
  wallMs: number;
  /** The kernels' time per call (timestamp queries). */
  kernelMs: number;
  /** wallMs − kernelMs. */
  overheadMs: number;
}

const SHAPES = [
  { name: "decode", batch: 1, nq: 1, nk: 4096, heads: 32, kvHeads: 8, d: 128 },
  ...[128, 1024, 4096].flatMap((n) =>
    [64, 128].map((d) => ({ name: "prefill", batch: 1, nq: n, nk: n, heads: 16, kvHeads: 16, d }))
  ),
];

function random(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = (s / 4294967296) * 2 - 1;
  }
  return x;
}

/** Kernel time of one call of problem `p` on buffers `b`, by timestamp queries. */
async function kernelMs(
  ctx: GpuContext,
  q: GpuTensor,
  k: GpuTensor,
  v: GpuTensor,
  out: GpuTensor,
  lse: GpuArray,
): Promise<number> {
  const p = checkProblem({ q, k, v }, {});
  const b = { q, k, v, out, lse };
  if (usesDecode(p)) {
    const kern = await decodeKernels(ctx, p, "f32");
    const [pb, lb] = decodeScratch(p, kern);
    const part = storage(ctx, pb * p.batch, "part"), plse = storage(ctx, lb * p.batch, "plse");
    const plan = planDecode(ctx, p, { ...b, part, plse }, kern);
    const ms = await timeKernel(ctx, (pass) => plan.encode(pass), 20);
    plan.destroy(), part.destroy(), plse.destroy();
    return ms;
  }
  const plan = planForward(ctx, p, b, await forwardKernel(ctx, p, "f32"));
  const ms = await timeKernel(ctx, (pass) => plan.encode(pass), 20);
  plan.destroy();
  return ms;
}

/** Measures every shape. */
export async function measure(reps: number, maxSeq = Infinity): Promise<OverheadRow[]> {
  const ctx = await requireGpu();
  const rows: OverheadRow[] = [];
  for (const s of SHAPES.filter((s) => s.nq <= maxSeq)) {
    const up = async (shape: readonly [number, number, number, number], seed: number) =>
      await toGpu(tensor(random(shape[0] * shape[1] * shape[2] * shape[3], seed), shape));
    const q = await up([s.batch, s.nq, s.heads, s.d], 1);
    const k = await up([s.batch, s.nk, s.kvHeads, s.d], 2);
    const v = await up([s.batch, s.nk, s.kvHeads, s.d], 3);
    const out = await up([s.batch, s.nq, s.heads, s.d], 4);
    const lse: GpuArray = {
      buffer: storage(ctx, s.batch * s.heads * s.nq * 4, "lse"),
      length: s.batch * s.heads * s.nq,
    };
    const options = { outputs: { out, lse } };
    for (let i = 0; i < 3; i++) await attention(q, k, v, options);
    await fromGpu(out); // warm: compiled, and the queue drained
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) await attention(q, k, v, options);
    await fromGpu(out);
    const wallMs = (performance.now() - t0) / reps;
    const kms = await kernelMs(ctx, q, k, v, out, lse);
    const shape =
      `${s.name} B=${s.batch} Nq=${s.nq} Nk=${s.nk} Hq=${s.heads} Hk=${s.kvHeads} d=${s.d}`;
    rows.push({ shape, wallMs, kernelMs: kms, overheadMs: wallMs - kms });
    for (const t of [q, k, v, out, lse]) t.buffer.destroy();
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      reps: { type: "string", default: "50" },
      layers: { type: "string", default: "32" },
      "max-seq": { type: "string" },
      json: { type: "string" },
    },
  });
  const reps = Number(values.reps), layers = Number(values.layers);
  const ctx = await requireGpu();
  console.log(`device: ${ctx.name}; ${reps} awaited GPU-resident calls, then one read-back`);
  const rows = await measure(reps, Number(values["max-seq"] ?? Infinity));
  console.log(
    "shape                                            wall ms/call  kernel ms  overhead ms  wall/kernel",
  );
  for (const r of rows) {
    console.log(
      `${r.shape.padEnd(48)} ${r.wallMs.toFixed(3).padStart(12)} ${
        r.kernelMs.toFixed(3).padStart(10)
      } ${r.overheadMs.toFixed(3).padStart(12)} ${(r.wallMs / r.kernelMs).toFixed(2).padStart(12)}`,
    );
  }
  // the decode example: `layers` layers, 16 tokens against ~4096 cached keys
  const o = { layers, steps: 16, prompt: 4096 - 16, cache: 4096, heads: 32, kvHeads: 8, dim: 128 };
  await decodeLoop({ ...o, steps: 1, prompt: 4095 });
  const loop = await decodeLoop(o);
  const perLayerKernel = rows[0].kernelMs;
  console.log(
    `decode loop: ${layers} layers × 16 tokens at Nk≈4096: ${
      loop.tokensPerSecond.toFixed(1)
    } tokens/s, ` +
      `${(loop.ms / 16).toFixed(2)} ms a token; ${layers} × kernel time = ${
        (layers * perLayerKernel).toFixed(2)
      } ms a token`,
  );
  if (values.json) {
    await Deno.writeTextFile(
      values.json,
      JSON.stringify(
        { date: new Date().toISOString(), device: ctx.name, reps, rows, loop },
        null,
        2,
      ),
    );
  }
}
