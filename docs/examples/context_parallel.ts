/**
 * Sequence (context) parallelism with exact merging, Web Workers standing in for ranks
 * (devices or machines). The keys and values of a long sequence are split into contiguous
 * shards, one per rank; every rank sees all queries. Forward: each rank computes attention
 * against its shard with its slice of the mask (`sliceKeys`), and `mergeAttention` combines the
 * partial outputs by their log-sum-exps, exactly. Backward: each rank gets the merged output and
 * lse and dOut, and computes exact gradients for its shard (dK, dV) and its share of dQ; the dQ
 * shares are summed. Ring attention moves the shards around instead of the queries; the
 * arithmetic is the same.
 *
 * Run: `deno run -A docs/examples/context_parallel.ts` (prints the difference from computing
 * everything in one place).
 *
 * @module
 */

import {
  attention,
  attentionBackward,
  type BackendName,
  causalDocument,
  type FlashMask,
  mergeAttention,
  type Tensor,
  tensor,
} from "../../mod.ts";
import { sliceKeys } from "../../masks/mod.ts";

/** Keys [start, end) of a [batch, seq, heads, dim] tensor (copied). */
function sliceSeq(t: Tensor, start: number, end: number): Tensor {
  const [b, n, h, d] = t.shape, row = h * d;
  const out = new Float32Array(b * (end - start) * row);
  for (let x = 0; x < b; x++) {
    out.set(
      (t.data as Float32Array).subarray((x * n + start) * row, (x * n + end) * row),
      x * (end - start) * row,
    );
  }
  return tensor(out, [b, end - start, h, d]);
}

/** Concatenates tensors along the sequence axis. */
function concatSeq(parts: Tensor[]): Tensor {
  const [b, , h, d] = parts[0].shape, row = h * d;
  const n = parts.reduce((a, p) => a + p.shape[1], 0);
  const out = new Float32Array(b * n * row);
  let at = 0;
  for (const p of parts) {
    for (let x = 0; x < b; x++) {
      out.set(
        (p.data as Float32Array).subarray(x * p.shape[1] * row, (x + 1) * p.shape[1] * row),
        (x * n + at) * row,
      );
    }
    at += p.shape[1];
  }
  return tensor(out, [b, n, h, d]);
}

/** Runs one job on every rank, in parallel. */
function onRanks<T>(workers: Worker[], jobs: unknown[]): Promise<T[]> {
  return Promise.all(workers.map((w, r) =>
    new Promise<T>((resolve, reject) => {
      w.onmessage = (e) => e.data?.error ? reject(new Error(e.data.error)) : resolve(e.data);
      w.postMessage(jobs[r]);
    })
  ));
}

/**
 * Forward and backward of masked attention with the keys split across `ranks` workers.
 * Returns the merged results and gradients.
 */
export async function contextParallel(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  dOut: Tensor,
  mask: FlashMask,
  ranks: number,
  backend: BackendName = "wasm",
): Promise<{ out: Tensor; lse: Float32Array; dq: Tensor; dk: Tensor; dv: Tensor }> {
  const nq = q.shape[1], nk = k.shape[1];
  const bounds = Array.from({ length: ranks + 1 }, (_, r) => Math.round((r * nk) / ranks));
  const workers = Array.from(
    { length: ranks },
    () => new Worker(new URL("./context_parallel_worker.ts", import.meta.url), { type: "module" }),
  );
  try {
    const shards = bounds.slice(1).map((end, r) => ({
      k: sliceSeq(k, bounds[r], end),
      v: sliceSeq(v, bounds[r], end),
      mask: sliceKeys(mask, bounds[r], end, nq),
    }));
    const parts = await onRanks<{ out: Tensor; lse: Float32Array }>(
      workers,
      shards.map((s) => ({ pass: "fwd", q, ...s, backend })),
    );
    const { out, lse } = mergeAttention(parts);
    const grads = await onRanks<{ dq: Tensor; dk: Tensor; dv: Tensor }>(
      workers,
      shards.map((s) => ({ pass: "bwd", q, ...s, backend, out, lse, dOut })),
    );
    const dq = new Float32Array(q.data.length);
    for (const g of grads) (g.dq.data as Float32Array).forEach((x, i) => dq[i] += x);
    return {
      out,
      lse,
      dq: tensor(dq, q.shape),
      dk: concatSeq(grads.map((g) => g.dk)),
      dv: concatSeq(grads.map((g) => g.dv)),
    };
  } finally {
    for (const w of workers) w.terminate();
  }
}

if (import.meta.main) {
  const [b, n, h, d] = [1, 1000, 4, 32];
  const rand = () =>
    tensor(Float32Array.from({ length: b * n * h * d }, () => Math.random() - 0.5), [b, n, h, d]);
  const [q, k, v, dOut] = [rand(), rand(), rand(), rand()];
  const mask = causalDocument([300, 450, 250]);
  const cp = await contextParallel(q, k, v, dOut, mask, 4);
  const one = await attention(q, k, v, { mask, backend: "wasm" });
  const g = await attentionBackward({ q, k, v, ...one, dOut }, { mask, backend: "wasm" });
  const maxDiff = (a: Tensor, b: Tensor) =>
    (a.data as Float32Array).reduce((m, x, i) => Math.max(m, Math.abs(x - b.data[i])), 0);
  console.log("4 ranks vs one process, max |difference|:");
  console.log(
    `  out ${maxDiff(cp.out, one.out).toExponential(1)}  dq ${
      maxDiff(cp.dq, g.dq).toExponential(1)
    }  dk ${maxDiff(cp.dk, g.dk).toExponential(1)}  dv ${maxDiff(cp.dv, g.dv).toExponential(1)}`,
  );
}
