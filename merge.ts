/**
 * Merging attention computed over disjoint key sets: the building block of split-KV decoding
 * and of sequence (context / ring) parallelism, where each device or machine holds a shard of
 * the keys and values.
 *
 * For parts s with outputs `o_s` and log-sum-exps `lse_s` over disjoint key sets, the attention
 * over their union is `lse = log Σ_s exp(lse_s)` and `out = Σ_s exp(lse_s − lse)·o_s`, exactly
 * (up to rounding). Rows that no part sees keep out 0 and lse −∞.
 *
 * @module
 */

import { checkTensor } from "./_problem.ts";
import type { AttentionResult, Computed } from "./types.ts";
import { fromFloat32, type Tensor, toFloat32 } from "./tensor.ts";

/**
 * Combines attention results over disjoint key sets (lse-weighted), as computed with the same
 * queries against each key shard. See `docs/CONTEXT_PARALLEL.md` for sharding a long sequence
 * across workers and merging the results exactly, forward and backward.
 *
 * @throws {RangeError} if the parts are empty or do not have one shape, dtype and lse length.
 * @example Attention over keys [0, 5) and [5, 12) merged equals attention over all 12 keys
 * ```ts
 * import { attention, mergeAttention, tensor } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const rand = (n: number, h: number) =>
 *   tensor(Float32Array.from({ length: n * h * 8 }, () => Math.random() - 0.5), [1, n, h, 8]);
 * const [q, k, v] = [rand(3, 2), rand(12, 2), rand(12, 2)];
 * const part = (a: number, b: number) => {
 *   const pick = (t: typeof k) => tensor(t.data.slice(a * 16, b * 16) as Float32Array, [1, b - a, 2, 8]);
 *   return attention(q, pick(k), pick(v), { backend: "js" });
 * };
 * const merged = mergeAttention([await part(0, 5), await part(5, 12)]);
 * const whole = await attention(q, k, v, { backend: "js" });
 * for (let i = 0; i < whole.out.data.length; i++) {
 *   assert.ok(Math.abs(merged.out.data[i] - whole.out.data[i]) < 1e-6);
 * }
 * ```
 */
export function mergeAttention(
  parts: readonly Computed<AttentionResult>[],
): AttentionResult {
  if (!Array.isArray(parts) || parts.length === 0) {
    throw new RangeError("mergeAttention: parts must be a non-empty array of { out, lse }");
  }
  const first = parts[0];
  parts.forEach((p, s) => {
    checkTensor(p?.out, `parts[${s}].out`);
    if (!(p.lse instanceof Float32Array)) {
      throw new TypeError(`parts[${s}].lse must be a Float32Array`);
    }
    const o = p.out as Tensor;
    if (o.dtype !== first.out.dtype || o.shape.some((x, i) => x !== first.out.shape[i])) {
      throw new RangeError(
        `parts[${s}].out is [${o.shape}] ${o.dtype}; parts[0].out is [${first.out.shape}] ${first.out.dtype}`,
      );
    }
  });
  const [batch, nq, heads, d] = first.out.shape;
  const rows = batch * heads * nq;
  parts.forEach((p, s) => {
    if (p.lse.length !== rows) {
      throw new RangeError(`parts[${s}].lse.length is ${p.lse.length}; expected ${rows}`);
    }
  });
  const outs = parts.map((p) => toFloat32(p.out));
  const out = new Float32Array(outs[0].length), lse = new Float32Array(rows);
  const w = new Float64Array(parts.length);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < nq; i++) {
        const row = (b * heads + h) * nq + i;
        let m = -Infinity;
        for (const p of parts) if (p.lse[row] > m || Number.isNaN(p.lse[row])) m = p.lse[row];
        const o = ((b * nq + i) * heads + h) * d;
        if (m === -Infinity) { // no part sees a key: out stays 0
          lse[row] = -Infinity;
          continue;
        }
        let sum = 0;
        parts.forEach((p, s) => sum += w[s] = Math.exp(p.lse[row] - m));
        lse[row] = m + Math.log(sum);
        for (let x = 0; x < d; x++) {
          let acc = 0;
          for (let s = 0; s < parts.length; s++) if (w[s] > 0) acc += w[s] * outs[s][o + x];
          out[o + x] = acc / sum;
        }
      }
    }
  }
  // merged here, in plain TypeScript
  return { out: fromFloat32(out, first.out.shape, first.out.dtype), lse, backend: "js" };
}
