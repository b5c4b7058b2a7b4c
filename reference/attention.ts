/**
 * The naive attention reference, written independently of the scheduler, of the canonical mask
 * bounds and of the mask builders: the mask semantics are read straight from the FlashMask
 * layout table and the option definitions (window, cuSeqlens, kvLength, block mask). O(Nq·Nk)
 * memory: the baseline of the tests and of the benchmarks, never used by the library.
 *
 * `referenceForward` / `referenceBackward` compute in float64. With `round: Math.fround` the
 * same code is a plain float32 computation (every operation rounded to f32; the backward
 * recomputes P from the float32 lse in base 2 and D = rowsum(dO ∘ out) from the output as saved,
 * rounded to its dtype, as the kernels do), which tests use as the rounding baseline their
 * tolerances are derived from.
 *
 * @module
 */

import type { BlockMask } from "../masks/block_mask.ts";
import type { Dropout } from "../masks/dropout.ts";
import { dropoutKeeps } from "../masks/dropout.ts";
import type { FlashMask } from "../masks/flashmask.ts";
import { f16Bits, f16Value, type Tensor, toFloat32 } from "../tensor.ts";

/** The attention options the reference understands. */
export interface ReferenceOptions {
  mask?: FlashMask;
  causal?: boolean;
  scale?: number;
  windowSize?: readonly [number, number];
  cuSeqlens?: ArrayLike<number>;
  kvLength?: ArrayLike<number>;
  blockMask?: BlockMask;
  softcap?: number;
  dropout?: Dropout;
  /** Sink logits, one per query head (terms/sink.ts). */
  sinks?: ArrayLike<number>;
  /** ALiBi slopes, Hq or batch·Hq: s_ij −= slope·|i + (kvLength[b] ?? Nk) − Nq − j|. */
  alibiSlopes?: ArrayLike<number>;
}

/** Whether query i of head h (of `heads`), batch b may see key j, by definition. */
export function referenceAllowed(
  opt: ReferenceOptions,
  b: number,
  h: number,
  heads: number,
  i: number,
  j: number,
  nq: number,
  nk: number,
): boolean {
  const bm = opt.blockMask;
  if (bm) {
    const [bb, bh, rb, cb] = bm.shape;
    const s = (bb === 1 ? 0 : b) * bh + Math.floor((h * bh) / heads);
    const r = Math.floor(i / bm.blockRows), c = Math.floor(j / bm.blockCols);
    if (bm.data[(s * rb + r) * cb + c] === 0) return false;
  }
  if (opt.mask) return flashMaskAllows(opt.mask, b, h, heads, i, j, nq, nk);
  let off = nk - nq;
  if (opt.kvLength) {
    if (j >= opt.kvLength[b]) return false;
    off = opt.kvLength[b] - nq;
  }
  if (opt.cuSeqlens) {
    const seq = (x: number) => {
      let s = 0;
      while (opt.cuSeqlens![s + 1] <= x) s++;
      return s;
    };
    if (seq(i) !== seq(j)) return false;
  }
  const [left, right] = opt.windowSize ?? [-1, -1];
  if (opt.causal && j > i + off) return false;
  if (left >= 0 && j < i + off - left) return false;
  if (right >= 0 && j > i + off + right) return false;
  return true;
}

/** The FlashMask layout table (see masks/flashmask.ts), read from the raw layout. */
function flashMaskAllows(
  mask: FlashMask,
  b: number,
  h: number,
  heads: number,
  i: number,
  j: number,
  nq: number,
  nk: number,
): boolean {
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

/** Per (b, h, i): the dot products q·k of the visible keys, or null for masked ones. */
function dots(
  q: Float32Array,
  k: Float32Array,
  D: Dims,
  opt: ReferenceOptions,
  b: number,
  h: number,
  i: number,
  f: Round,
): (number | null)[] {
  const { nq, nk, heads, kvHeads, d } = D;
  const kh = Math.floor((h * kvHeads) / heads);
  const row: (number | null)[] = [];
  for (let j = 0; j < nk; j++) {
    if (!referenceAllowed(opt, b, h, heads, i, j, nq, nk)) {
      row.push(null);
      continue;
    }
    let dot = 0;
    for (let x = 0; x < d; x++) {
      dot = f(
        dot + f(q[((b * nq + i) * heads + h) * d + x] * k[((b * nk + j) * kvHeads + kh) * d + x]),
      );
    }
    row.push(dot);
  }
  return row;
}

/** The score of a dot product: dot·scale, capped as c·tanh(dot·scale/c) with softcap c. */
function score(dot: number, scale: number, opt: ReferenceOptions, f: Round): number {
  const s = f(dot * f(scale));
  return opt.softcap ? f(f(opt.softcap) * f(Math.tanh(f(s / f(opt.softcap))))) : s;
}

/** A row of scores (null: masked), with ALiBi's position bias added after the cap. */
function scoreRow(
  dot: (number | null)[],
  D: Dims,
  opt: ReferenceOptions,
  b: number,
  h: number,
  i: number,
  f: Round,
): (number | null)[] {
  const sl = opt.alibiSlopes;
  const slope = sl ? f(sl.length === D.heads ? sl[h] : sl[b * D.heads + h]) : 0;
  const off = (opt.kvLength ? opt.kvLength[b] : D.nk) - D.nq;
  return dot.map((x, j) => {
    if (x === null) return null;
    const s = score(x, D.scale, opt, f);
    return sl ? f(s - f(slope * Math.abs(i + off - j))) : s;
  });
}

/**
 * Softmax probabilities of a score row (null → 0) and its log-sum-exp; with a sink logit, the
 * softmax also runs over it (it takes probability exp(sink − lse) and has no value).
 */
function softmax(row: (number | null)[], f: Round, sink?: number): { p: number[]; lse: number } {
  let m = sink ?? -Infinity;
  for (const s of row) if (s !== null && s > m) m = s;
  if (m === -Infinity) return { p: row.map(() => 0), lse: -Infinity };
  let l = sink === undefined ? 0 : f(Math.exp(f(sink - m)));
  const e = row.map((s) => s === null ? 0 : f(Math.exp(f(s - m))));
  for (const x of e) l = f(l + x);
  return { p: e.map((x) => f(x / l)), lse: f(m + f(Math.log(l))) };
}

/**
 * The float32 backward's P: recomputed from the float32 lse in the base-2 form every fast kernel
 * uses (P = 2^(s·log2 e − lse·log2 e)), so the rounding of lse and of the rescaled scores,
 * |lse|·2^-24 each, is part of the baseline error.
 */
function recomputedP(scores: (number | null)[], lse: number, f: Round): number[] {
  const toLog2 = f(Math.LOG2E), lse2 = f(f(lse) * toLog2);
  return scores.map((s) => s === null ? 0 : f(2 ** f(f(s * toLog2) - lse2)));
}

/** Dropout factor of element (b, h, i, j): 0 or 1 / (1 − p); 1 without dropout. */
function keep(opt: ReferenceOptions, b: number, h: number, i: number, j: number): number {
  if (!opt.dropout || opt.dropout.p === 0) return 1;
  return dropoutKeeps(opt.dropout, b, h, i, j) ? 1 / (1 - opt.dropout.p) : 0;
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
        const row = scoreRow(dots(q, k, D, opt, b, h, i, f), D, opt, b, h, i, f);
        const { p, lse: l } = softmax(row, f, opt.sinks?.[h]);
        lse[(b * heads + h) * nq + i] = l;
        const pd = p.map((x, j) => x === 0 ? 0 : f(x * keep(opt, b, h, i, j)));
        for (let x = 0; x < d; x++) {
          let acc = 0;
          for (let j = 0; j < nk; j++) {
            if (pd[j] !== 0) acc = f(acc + f(pd[j] * v[((b * nk + j) * kvHeads + kh) * d + x]));
          }
          out[((b * nq + i) * heads + h) * d + x] = acc;
        }
      }
    }
  }
  return { out, lse };
}

/**
 * Naive backward: exact gradients of the attention function for the given dOut (and of the
 * sink logits, `dsinks`, with `opt.sinks`: −Σ_{b,i} exp(σ_h − lse)·D).
 */
export function referenceBackward(
  qt: Tensor,
  kt: Tensor,
  vt: Tensor,
  dOt: Tensor,
  opt: ReferenceOptions = {},
  f: Round = exact,
  out?: Float64Array,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array; dsinks?: Float64Array } {
  const D = dims(qt, kt, opt.scale);
  const { batch, nq, nk, heads, kvHeads, d, scale } = D;
  const q = toFloat32(qt), k = toFloat32(kt), v = toFloat32(vt), dO = toFloat32(dOt);
  // A float32 backward gets `out` as saved, rounded to the output dtype, and computes
  // D = rowsum(dO ∘ out) from it, as FlashAttention's does (exactly: D = Σ P·dP). `out`: the
  // float32 forward's, if the caller has it.
  const saved = f === exact
    ? undefined
    : roundTo(out ?? referenceForward(qt, kt, vt, opt, f).out, qt.dtype);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const dsinks = opt.sinks ? new Float64Array(heads) : undefined;
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor((h * kvHeads) / heads);
      for (let i = 0; i < nq; i++) {
        const dot = dots(q, k, D, opt, b, h, i, f);
        const row = scoreRow(dot, D, opt, b, h, i, f);
        const sink = opt.sinks?.[h];
        let { p, lse } = softmax(row, f, sink);
        // A float32 backward recomputes P from the float32 lse, as FlashAttention's does.
        if (f !== exact && lse !== -Infinity) p = recomputedP(row, lse, f);
        const qo = ((b * nq + i) * heads + h) * d;
        const dP = new Float64Array(nk), z = new Float64Array(nk);
        let Di = 0;
        for (let j = 0; j < nk; j++) {
          if (p[j] === 0) continue;
          z[j] = keep(opt, b, h, i, j);
          const vo = ((b * nk + j) * kvHeads + kh) * d;
          let s = 0;
          for (let x = 0; x < d; x++) s = f(s + f(dO[qo + x] * v[vo + x]));
          dP[j] = f(s * z[j]); // gradient through the dropped probabilities
          if (!saved) Di += p[j] * dP[j];
        }
        if (saved) { for (let x = 0; x < d; x++) Di = f(Di + f(dO[qo + x] * saved[qo + x])); }
        // the sink's probability exp(σ − lse) times D (a float32 backward: from the float32 lse)
        if (dsinks && sink !== undefined) {
          dsinks[h] = f(dsinks[h] - f(f(Math.exp(f(sink - lse))) * Di));
        }
        for (let j = 0; j < nk; j++) {
          if (p[j] === 0) continue;
          const ko = ((b * nk + j) * kvHeads + kh) * d;
          // d score / d dot: scale, times 1 − tanh² of the capped argument with softcap
          let slope = f(scale);
          if (opt.softcap) {
            const t = f(Math.tanh(f(f(dot[j]! * f(scale)) / f(opt.softcap))));
            slope = f(slope * f(1 - f(t * t)));
          }
          const dS = f(f(p[j] * f(dP[j] - Di)) * slope);
          const pd = f(p[j] * z[j]);
          for (let x = 0; x < d; x++) {
            dv[ko + x] = f(dv[ko + x] + f(pd * dO[qo + x]));
            dk[ko + x] = f(dk[ko + x] + f(dS * q[qo + x]));
            dq[qo + x] = f(dq[qo + x] + f(dS * k[ko + x]));
          }
        }
      }
    }
  }
  return { dq, dk, dv, ...(dsinks ? { dsinks } : {}) };
}

/** `t` with its head dimension reversed (the same problem, summed in another order). */
export function reverseHeadDim(t: Tensor): Tensor {
  const d = t.shape[3], src = t.data;
  const data = new (src.constructor as Float32ArrayConstructor)(src.length);
  for (let r = 0; r < src.length; r += d) {
    for (let x = 0; x < d; x++) data[r + x] = src[r + d - 1 - x];
  }
  return { data, shape: t.shape, dtype: t.dtype } as Tensor;
}

/** An array of rows of `d` with each row reversed (undoes {@linkcode reverseHeadDim}). */
export function reverseRows(a: Float64Array, d: number): Float64Array {
  const out = new Float64Array(a.length);
  for (let r = 0; r < a.length; r += d) {
    for (let x = 0; x < d; x++) out[r + x] = a[r + d - 1 - x];
  }
  return out;
}

/** Per-output magnitudes of the rounding errors of a float32 computation (see below). */
export interface Magnitudes {
  out: Float64Array;
  lse: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  /** With sinks. */
  dsinks?: Float64Array;
}

/**
 * First-order magnitudes of the rounding errors of any float32 computation of attention, in
 * units of the float32 unit roundoff: what each output's error is when every operation that
 * forms it errs by one unit relative, whatever the order of the sums. A score s = scale·q·k errs
 * by about scale·Σ|q||k| (times the softcap's slope), the lse by the P-weighted score errors plus
 * |lse|, so P = exp(s − lse) by P·(both); out and dV carry those errors of P times |v| or |dO|,
 * D = Σ dO·out those of out times |dO| (the backward forms D from the computed out), dS = P(dP −
 * D) those of P times |dP − D| plus P times the magnitudes of dP and D, and dQ, dK those of dS
 * times |k|, |q|. Where an output cancels (a sum of terms of both signs that is nearly 0, a gradient of a
 * nearly one-hot softmax), its error relative to its own size is this magnitude over its size,
 * which a plain float32 computation in one summation order may happen not to show.
 */
export function referenceMagnitudes(
  qt: Tensor,
  kt: Tensor,
  vt: Tensor,
  dOt: Tensor,
  opt: ReferenceOptions = {},
): Magnitudes {
  const D = dims(qt, kt, opt.scale);
  const { batch, nq, nk, heads, kvHeads, d, scale } = D;
  const q = toFloat32(qt), k = toFloat32(kt), v = toFloat32(vt), dO = toFloat32(dOt);
  const m: Magnitudes = {
    out: new Float64Array(q.length),
    lse: new Float64Array(batch * heads * nq),
    dq: new Float64Array(q.length),
    dk: new Float64Array(k.length),
    dv: new Float64Array(v.length),
    ...(opt.sinks ? { dsinks: new Float64Array(heads) } : {}),
  };
  const { out: o } = referenceForward(qt, kt, vt, opt);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor((h * kvHeads) / heads);
      for (let i = 0; i < nq; i++) {
        const qo = ((b * nq + i) * heads + h) * d;
        const dot = dots(q, k, D, opt, b, h, i, exact);
        const row = scoreRow(dot, D, opt, b, h, i, exact);
        const sink = opt.sinks?.[h];
        const { p, lse } = softmax(row, exact, sink);
        if (lse === -Infinity) continue;
        // score errors: scale·Σ|q||k| times the softcap's slope, plus the score itself
        const es = dot.map((x, j) => {
          if (x === null) return 0;
          const ko = ((b * nk + j) * kvHeads + kh) * d;
          let a = 0;
          for (let y = 0; y < d; y++) a += Math.abs(q[qo + y] * k[ko + y]);
          const t = opt.softcap ? Math.tanh((x * scale) / opt.softcap) : 0;
          return (1 - t * t) * scale * a + Math.abs(row[j]!);
        });
        let el = Math.abs(lse);
        for (let j = 0; j < nk; j++) el += p[j] * es[j];
        m.lse[(b * heads + h) * nq + i] = el;
        let Di = 0, mD = 0;
        const z = new Float64Array(nk), dP = new Float64Array(nk), mP = new Float64Array(nk);
        for (let j = 0; j < nk; j++) {
          if (p[j] === 0) continue;
          z[j] = keep(opt, b, h, i, j);
          const vo = ((b * nk + j) * kvHeads + kh) * d;
          let s = 0, a = 0;
          for (let y = 0; y < d; y++) {
            s += dO[qo + y] * v[vo + y];
            a += Math.abs(dO[qo + y] * v[vo + y]);
          }
          dP[j] = s * z[j];
          mP[j] = a * z[j];
        }
        // out errs by P's errors times |v| (first, since D is formed from the computed out)
        const eP = (j: number) => p[j] * (1 + es[j] + el); // P's own rounding, and its exponent's
        for (let j = 0; j < nk; j++) {
          if (p[j] === 0) continue;
          const ko = ((b * nk + j) * kvHeads + kh) * d;
          for (let y = 0; y < d; y++) m.out[qo + y] += eP(j) * z[j] * Math.abs(v[ko + y]);
        }
        // D = Σ dO·out errs by its terms' roundings and by the computed out's own errors
        for (let y = 0; y < d; y++) {
          Di += dO[qo + y] * o[qo + y];
          mD += Math.abs(dO[qo + y]) * (Math.abs(o[qo + y]) + m.out[qo + y]);
        }
        if (m.dsinks && sink !== undefined) {
          // exp(σ − lse) errs by the lse's error (and its own rounding), D by its magnitude
          const ps = Math.exp(sink - lse);
          m.dsinks[h] += ps * ((1 + el) * Math.abs(Di) + mD);
        }
        for (let j = 0; j < nk; j++) {
          if (p[j] === 0) continue;
          const ko = ((b * nk + j) * kvHeads + kh) * d;
          let slope = scale;
          if (opt.softcap) {
            const t = Math.tanh((dot[j]! * scale) / opt.softcap);
            slope *= 1 - t * t;
          }
          const edS = (eP(j) * Math.abs(dP[j] - Di) + p[j] * (mP[j] + mD)) * slope;
          const dS = p[j] * (dP[j] - Di) * slope;
          for (let y = 0; y < d; y++) {
            m.dv[ko + y] += eP(j) * z[j] * Math.abs(dO[qo + y]);
            m.dq[qo + y] += edS * Math.abs(k[ko + y]) + Math.abs(dS * k[ko + y]);
            m.dk[ko + y] += edS * Math.abs(q[qo + y]) + Math.abs(dS * q[qo + y]);
          }
        }
      }
    }
  }
  return m;
}
