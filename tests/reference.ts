/**
 * The naive attention reference, written independently of the scheduler and of the canonical
 * mask bounds: the mask semantics are read straight from the FlashMask layouts. O(Nq·Nk)
 * memory, for tests only.
 *
 * `referenceForward` / `referenceBackward` compute in float64. With `round: Math.fround` the
 * same code is a plain float32 computation (every operation rounded to f32; the backward
 * recomputes P from the float32 lse in base 2, as the kernels do), which tests use as the
 * rounding baseline their tolerances are derived from.
 *
 * @module
 */

import type { FlashMask } from "../masks/flashmask.ts";
import { f16Bits, f16Value, type Tensor, toFloat32 } from "../tensor.ts";

/** The attention options the reference understands. */
export interface ReferenceOptions {
  mask?: FlashMask;
  causal?: boolean;
  scale?: number;
}

/** Whether query i of head h, batch b may see key j, from the FlashMask layout table. */
export function referenceAllowed(
  mask: FlashMask | undefined,
  causalOnly: boolean,
  b: number,
  h: number,
  heads: number,
  i: number,
  j: number,
  nq: number,
  nk: number,
): boolean {
  if (!mask) return !causalOnly || j <= i + (nk - nq);
  const [mb, mh, , c] = mask.shape;
  const s = (mb === 1 ? 0 : b) * mh + Math.floor((h * mh) / heads);
  const x = mask.startEndRowIndices, o = (s * nk + j) * c;
  if (mask.causal) {
    if (j > i + (nk - nq)) return false;
    return c === 1 ? i < x[o] : !(x[o] <= i && i < x[o + 1]);
  }
  if (c === 2) return !(i >= x[o] || i < x[o + 1]);
  return !((x[o] <= i && i < x[o + 1]) || (x[o + 2] <= i && i < x[o + 3]));
}

interface Dims {
  batch: number;
  nq: number;
  nk: number;
  heads: number;
  kvHeads: number;
  d: number;
  scale: number;
}

function dims(q: Tensor, k: Tensor, scale?: number): Dims {
  const [batch, nq, heads, d] = q.shape;
  return {
    batch,
    nq,
    nk: k.shape[1],
    heads,
    kvHeads: k.shape[2],
    d,
    scale: scale ?? 1 / Math.sqrt(d),
  };
}

/** Rounding applied after every operation: identity (float64) or Math.fround (float32). */
export type Round = (x: number) => number;
const exact: Round = (x) => x;

/** Rounds an array to the output dtype the way a kernel's output would be. */
export function roundTo(x: Float64Array, dtype: "f32" | "f16"): Float64Array {
  return x.map((v) => dtype === "f16" ? f16Value(f16Bits(v)) : Math.fround(v));
}

/** Per (b, h, i): scaled scores of the visible keys, or null for masked ones. */
function scores(
  q: Float32Array,
  k: Float32Array,
  D: Dims,
  opt: ReferenceOptions,
  b: number,
  h: number,
  i: number,
  f: Round,
): (number | null)[] {
  const { nq, nk, heads, kvHeads, d, scale } = D;
  const kh = Math.floor((h * kvHeads) / heads);
  const row: (number | null)[] = [];
  for (let j = 0; j < nk; j++) {
    if (!referenceAllowed(opt.mask, opt.causal ?? false, b, h, heads, i, j, nq, nk)) {
      row.push(null);
      continue;
    }
    let dot = 0;
    for (let x = 0; x < d; x++) {
      dot = f(
        dot + f(q[((b * nq + i) * heads + h) * d + x] * k[((b * nk + j) * kvHeads + kh) * d + x]),
      );
    }
    row.push(f(dot * f(scale)));
  }
  return row;
}

/**
 * The float32 backward's P: recomputed from the float32 lse in the base-2 form every fast
 * kernel uses (scores pre-scaled by scale·log2 e, P = 2^(s₂ − lse·log2 e)), so the rounding of
 * lse and of the rescaled scores, |lse|·2^-24 each, is part of the baseline error.
 */
function recomputedP(row: (number | null)[], lse: number, scale: number, f: Round): number[] {
  const toLog2 = f(Math.LOG2E), s2Scale = f(scale * Math.LOG2E), lse2 = f(f(lse) * toLog2);
  return row.map((s) => s === null ? 0 : f(2 ** f(f((s / scale) * s2Scale) - lse2)));
}

/** Softmax probabilities of a score row (null → 0) and its log-sum-exp. */
function softmax(row: (number | null)[], f: Round): { p: number[]; lse: number } {
  let m = -Infinity;
  for (const s of row) if (s !== null && s > m) m = s;
  if (m === -Infinity) return { p: row.map(() => 0), lse: -Infinity };
  let l = 0;
  const e = row.map((s) => s === null ? 0 : f(Math.exp(f(s - m))));
  for (const x of e) l = f(l + x);
  return { p: e.map((x) => f(x / l)), lse: f(m + f(Math.log(l))) };
}

/** Naive forward: out `[B, Nq, Hq, d]` and lse `[B, Hq, Nq]`. */
export function referenceForward(
  qt: Tensor,
  kt: Tensor,
  vt: Tensor,
  opt: ReferenceOptions = {},
  f: Round = exact,
): { out: Float64Array; lse: Float64Array } {
  const D = dims(qt, kt, opt.scale);
  const { batch, nq, nk, heads, kvHeads, d } = D;
  const q = toFloat32(qt), k = toFloat32(kt), v = toFloat32(vt);
  const out = new Float64Array(q.length), lse = new Float64Array(batch * heads * nq);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor((h * kvHeads) / heads);
      for (let i = 0; i < nq; i++) {
        const { p, lse: l } = softmax(scores(q, k, D, opt, b, h, i, f), f);
        lse[(b * heads + h) * nq + i] = l;
        for (let x = 0; x < d; x++) {
          let acc = 0;
          for (let j = 0; j < nk; j++) {
            if (p[j] !== 0) acc = f(acc + f(p[j] * v[((b * nk + j) * kvHeads + kh) * d + x]));
          }
          out[((b * nq + i) * heads + h) * d + x] = acc;
        }
      }
    }
  }
  return { out, lse };
}

/** Naive backward: exact gradients of the attention function for the given dOut. */
export function referenceBackward(
  qt: Tensor,
  kt: Tensor,
  vt: Tensor,
  dOt: Tensor,
  opt: ReferenceOptions = {},
  f: Round = exact,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const D = dims(qt, kt, opt.scale);
  const { batch, nq, nk, heads, kvHeads, d, scale } = D;
  const q = toFloat32(qt), k = toFloat32(kt), v = toFloat32(vt), dO = toFloat32(dOt);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor((h * kvHeads) / heads);
      for (let i = 0; i < nq; i++) {
        const row = scores(q, k, D, opt, b, h, i, f);
        let { p, lse } = softmax(row, f);
        // A float32 backward recomputes P from the float32 lse, as FlashAttention's does.
        if (f !== exact && lse !== -Infinity) p = recomputedP(row, lse, scale, f);
        const qo = ((b * nq + i) * heads + h) * d;
        const dP = new Float64Array(nk);
        let Di = 0;
        for (let j = 0; j < nk; j++) {
          if (p[j] === 0) continue;
          const vo = ((b * nk + j) * kvHeads + kh) * d;
          let s = 0;
          for (let x = 0; x < d; x++) s = f(s + f(dO[qo + x] * v[vo + x]));
          dP[j] = s;
          Di = f(Di + f(p[j] * s));
        }
        for (let j = 0; j < nk; j++) {
          if (p[j] === 0) continue;
          const ko = ((b * nk + j) * kvHeads + kh) * d;
          const dS = f(f(p[j] * f(dP[j] - Di)) * f(scale));
          for (let x = 0; x < d; x++) {
            dv[ko + x] = f(dv[ko + x] + f(p[j] * dO[qo + x]));
            dk[ko + x] = f(dk[ko + x] + f(dS * q[qo + x]));
            dq[qo + x] = f(dq[qo + x] + f(dS * k[ko + x]));
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}
