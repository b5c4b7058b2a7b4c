/**
 * The plain TypeScript backend (`backend: "js"`): FlashAttention-2 forward and backward,
 * tiled over the shared block schedule. It is the readable specification of what the WASM and
 * WebGPU kernels compute, and a correctness cross-check for them; it is not fast.
 *
 * Shapes: q `[B, Nq, Hq, d]`, k/v `[B, Nk, Hk, d]`, lse `[B, Hq, Nq]`.
 * Tiling: BLOCK × BLOCK tiles. Forward: for each (batch, head, row block), visit the row
 * block's scheduled column blocks in order, keep a running max `m`, sum `l` and unnormalised
 * output per row (online softmax), and divide by `l` once at the end. Backward: for each
 * (batch, key head, column block), visit its scheduled row blocks for every query head of the
 * group, recompute `P = exp(s - lse)` and accumulate dK, dV (owned by this column block) and dQ.
 * Invariants: skipped tiles are never read; full tiles do no mask test; partial tiles test each
 * element against its column's canonical bounds `[lts, lte) ∪ [uts, ute)`.
 * Options: softcap caps each score (`c·tanh(s·scale/c)`, derivative `scale·(1 − tanh²)` in the
 * backward), then ALiBi adds its position bias (no derivative with respect to q or k); dropout scales kept probabilities by 1/(1 − p) in O and dV, and the lse is that of
 * the undropped scores (FlashAttention's convention); sinks start each row's online softmax
 * from the sink's state (`terms/sink.ts`), and their gradient is `sinkGradient`.
 * With a page table (forward only), keys and values are read through it (`keyRow`).
 * Arithmetic is float64 (JavaScript numbers); results are rounded to the output dtype.
 *
 * @module
 */

import type { AttentionResult, Computed, Gradients, Problem, SavedForBackward } from "./types.ts";
import { BOUNDS_PER_COLUMN } from "./masks/flashmask.ts";
import { dropoutKeeps } from "./masks/dropout.ts";
import { fromFloat32, toFloat32 } from "./tensor.ts";
import { sinkGradient } from "./terms/sink.ts";
import type { Tensor } from "./tensor.ts";

/** Tile size (rows and columns) of this backend. */
export const BLOCK = 32;

/** Forward pass: out and lse. */
export function forward(
  p: Problem,
  qt: Tensor,
  kt: Tensor,
  vt: Tensor,
): Computed<AttentionResult> {
  const { batch, nq, nk, heads, kvHeads, headDim: d } = p;
  const q = toFloat32(qt), k = toFloat32(kt), v = toFloat32(vt);
  const plan = p.schedule(BLOCK, BLOCK);
  const out = new Float32Array(q.length);
  const lse = new Float32Array(batch * heads * nq);
  const group = heads / kvHeads;
  const m = new Float64Array(BLOCK), l = new Float64Array(BLOCK);
  const acc = new Float64Array(BLOCK * d), s = new Float64Array(BLOCK);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group), slice = p.slice(b, h);
      for (let r = 0; r < plan.rowBlocks; r++) {
        const i0 = r * BLOCK, rows = Math.min(BLOCK, nq - i0);
        // the online softmax starts empty, or from the sink's state (terms/sink.ts)
        const sink = p.sinks?.[h];
        m.fill(sink ?? -Infinity);
        l.fill(sink === undefined ? 0 : 1);
        acc.fill(0);
        const list = slice * plan.rowBlocks + r;
        for (let t = plan.rowPtr[list]; t < plan.rowPtr[list + 1]; t++) {
          const c = plan.rowTiles[t] >>> 1, partial = (plan.rowTiles[t] & 1) === 1;
          const j0 = c * BLOCK, cols = Math.min(BLOCK, nk - j0);
          for (let ii = 0; ii < rows; ii++) {
            const i = i0 + ii, qo = ((b * nq + i) * heads + h) * d;
            let rowMax = -Infinity;
            for (let jj = 0; jj < cols; jj++) {
              const j = j0 + jj;
              if (partial && masked(plan.bounds, slice * nk + j, i)) {
                s[jj] = -Infinity;
                continue;
              }
              const ko = (keyRow(p, b, j) * kvHeads + kh) * d;
              let dot = 0;
              for (let x = 0; x < d; x++) dot += q[qo + x] * k[ko + x];
              s[jj] = score(p, dot) + bias(p, b, h, i, j);
              if (s[jj] > rowMax || Number.isNaN(s[jj])) rowMax = s[jj]; // NaN sticks
            }
            if (rowMax === -Infinity) continue; // this row sees nothing in this tile
            const mNew = Math.max(m[ii], rowMax);
            const alpha = Math.exp(m[ii] - mNew); // 0 when m was -Infinity
            m[ii] = mNew;
            l[ii] *= alpha;
            const ao = ii * d;
            for (let x = 0; x < d; x++) acc[ao + x] *= alpha;
            for (let jj = 0; jj < cols; jj++) {
              const pj = Math.exp(s[jj] - mNew);
              if (pj === 0) continue;
              l[ii] += pj; // the lse is that of the scores before dropout
              const w = pj * keepScale(p, b, h, i, j0 + jj);
              if (w === 0) continue;
              const vo = (keyRow(p, b, j0 + jj) * kvHeads + kh) * d;
              for (let x = 0; x < d; x++) acc[ao + x] += w * v[vo + x];
            }
          }
        }
        for (let ii = 0; ii < rows; ii++) {
          const i = i0 + ii, oo = ((b * nq + i) * heads + h) * d;
          const seen = l[ii] !== 0; // l is NaN where a score or weight was
          for (let x = 0; x < d; x++) out[oo + x] = seen ? acc[ii * d + x] / l[ii] : 0;
          lse[(b * heads + h) * nq + i] = seen ? m[ii] + Math.log(l[ii]) : -Infinity;
        }
      }
    }
  }
  return { out: fromFloat32(out, qt.shape, qt.dtype), lse };
}

/** Backward pass: dq, dk, dv by recomputation from lse. */
export function backward(p: Problem, saved: SavedForBackward): Computed<Gradients> {
  const { batch, nq, nk, heads, kvHeads, headDim: d } = p;
  const q = toFloat32(saved.q), k = toFloat32(saved.k), v = toFloat32(saved.v);
  const o = toFloat32(saved.out), dO = toFloat32(saved.dOut), lse = saved.lse;
  const plan = p.schedule(BLOCK, BLOCK);
  const group = heads / kvHeads;
  // D = rowsum(dO ∘ O), per (b, h, i)
  const D = new Float64Array(batch * heads * nq);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < nq; i++) {
      for (let h = 0; h < heads; h++) {
        const off = ((b * nq + i) * heads + h) * d;
        let sum = 0;
        for (let x = 0; x < d; x++) sum += dO[off + x] * o[off + x];
        D[(b * heads + h) * nq + i] = sum;
      }
    }
  }
  const dq = new Float64Array(q.length), dk = new Float32Array(k.length);
  const dv = new Float32Array(v.length);
  const dkAcc = new Float64Array(BLOCK * d), dvAcc = new Float64Array(BLOCK * d);
  for (let b = 0; b < batch; b++) {
    for (let kh = 0; kh < kvHeads; kh++) {
      for (let c = 0; c < plan.colBlocks; c++) {
        const j0 = c * BLOCK, cols = Math.min(BLOCK, nk - j0);
        dkAcc.fill(0);
        dvAcc.fill(0);
        for (let h = kh * group; h < (kh + 1) * group; h++) {
          const slice = p.slice(b, h), list = slice * plan.colBlocks + c;
          for (let t = plan.colPtr[list]; t < plan.colPtr[list + 1]; t++) {
            const r = plan.colTiles[t] >>> 1, partial = (plan.colTiles[t] & 1) === 1;
            const i0 = r * BLOCK, rows = Math.min(BLOCK, nq - i0);
            for (let ii = 0; ii < rows; ii++) {
              const i = i0 + ii, row = (b * heads + h) * nq + i;
              const rowLse = lse[row];
              if (rowLse === -Infinity) continue; // row sees no key: zero gradients
              const qo = ((b * nq + i) * heads + h) * d;
              for (let jj = 0; jj < cols; jj++) {
                const j = j0 + jj;
                if (partial && masked(plan.bounds, slice * nk + j, i)) continue;
                const ko = ((b * nk + j) * kvHeads + kh) * d;
                let dot = 0, dP = 0;
                for (let x = 0; x < d; x++) {
                  dot += q[qo + x] * k[ko + x];
                  dP += dO[qo + x] * v[ko + x];
                }
                // P ≤ 1 always; at huge scores (|s| ~ 1e10) the float32 lse is off by hundreds
                // and exp would overflow: clamp, so that gradients stay finite
                const P = Math.exp(Math.min(score(p, dot) + bias(p, b, h, i, j) - rowLse, 0));
                const keep = keepScale(p, b, h, i, j);
                const dS = P * (dP * keep - D[row]) * scoreSlope(p, dot);
                for (let x = 0; x < d; x++) {
                  dvAcc[jj * d + x] += P * keep * dO[qo + x];
                  dkAcc[jj * d + x] += dS * q[qo + x];
                  dq[qo + x] += dS * k[ko + x];
                }
              }
            }
          }
        }
        for (let jj = 0; jj < cols; jj++) {
          const ko = ((b * nk + j0 + jj) * kvHeads + kh) * d;
          for (let x = 0; x < d; x++) {
            dk[ko + x] = dkAcc[jj * d + x];
            dv[ko + x] = dvAcc[jj * d + x];
          }
        }
      }
    }
  }
  const dt = saved.q.dtype;
  return {
    dq: fromFloat32(Float32Array.from(dq), saved.q.shape, dt),
    dk: fromFloat32(dk, saved.k.shape, dt),
    dv: fromFloat32(dv, saved.v.shape, dt),
    ...(p.sinks ? { dsinks: sinkGradient(p.sinks, o, dO, lse, p) } : {}),
  };
}

/** The score of a dot product: `dot·scale`, or `c·tanh(dot·scale / c)` with softcap c. */
function score(p: Problem, dot: number): number {
  return p.softcap ? p.softcap * Math.tanh((dot * p.scale) / p.softcap) : dot * p.scale;
}

/** The row of k and v holding key j of batch entry b: in place, or through the page table. */
function keyRow(p: Problem, b: number, j: number): number {
  const pg = p.pages;
  if (!pg) return b * p.nk + j;
  const block = Math.floor(j / pg.pageSize);
  return pg.table[b * pg.perSequence + block] * pg.pageSize + (j - block * pg.pageSize);
}

/** The position bias of element (b, h, i, j): ALiBi's −slope·|i + offset − j|, or 0. */
function bias(p: Problem, b: number, h: number, i: number, j: number): number {
  const a = p.alibi;
  return a ? -a.slopes[b * p.heads + h] * Math.abs(i + a.offsets[b] - j) : 0;
}

/** d score / d dot: `scale`, or `scale·(1 − tanh²(dot·scale / c))` with softcap c. */
function scoreSlope(p: Problem, dot: number): number {
  if (!p.softcap) return p.scale;
  const t = Math.tanh((dot * p.scale) / p.softcap);
  return p.scale * (1 - t * t);
}

/** The dropout factor of element (b, h, i, j): 0 if dropped, 1 / (1 − p) if kept, 1 without dropout. */
function keepScale(p: Problem, b: number, h: number, i: number, j: number): number {
  if (!p.dropout) return 1;
  return dropoutKeeps(p.dropout, b, h, i, j) ? 1 / (1 - p.dropout.p) : 0;
}

/** Whether row i of canonical column `col` (slice · Nk + j) is masked. */
function masked(bounds: Int32Array, col: number, i: number): boolean {
  const o = col * BOUNDS_PER_COLUMN;
  return (i >= bounds[o] && i < bounds[o + 1]) || (i >= bounds[o + 2] && i < bounds[o + 3]);
}
