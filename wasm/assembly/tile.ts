// Work on one transposed score tile Sᵀ (Bc × Br): the mask (canonical bounds only), the softcap,
// dropout and the online-softmax update of the forward and decode passes.

import { P_DROP_SCALE, P_DROP_THR, P_SEED_HI, P_SEED_LO } from "./abi";
import { pf, pi } from "./work";
import { exp2v, K_C0, K_C1, K_C2, K_C3, K_C4, K_C5, K_LO, K_MAGIC, K_NEG_INF, K_ONE, K_ZERO, keepFactor, KF, KI, madd, philox, tanhv } from "./math";

/**
 * The mask of one column for four query rows: lanes of `iv` (row indices) inside the column's
 * masked runs [lts, lte) ∪ [uts, ute) are all ones. The only place the kernels test the bounds.
 */
@inline export function maskedRows(iv: v128, lts: v128, lte: v128, uts: v128, ute: v128): v128 {
  return v128.or(
    v128.and(i32x4.ge_s(iv, lts), i32x4.lt_s(iv, lte)),
    v128.and(i32x4.ge_s(iv, uts), i32x4.lt_s(iv, ute)),
  );
}

/**
 * Partial tile: sets Sᵀ[j][r] to −∞ where query row RI[r] is inside column j's masked runs
 * [lts, lte) ∪ [uts, ute) (bounds at `bnd`, 4 × i32 per column; RI: i32 per tile row, every one
 * in [lo, hi)). A column whose runs miss [lo, hi) is left alone and one whose run covers it is
 * filled, so only the columns the mask's edges cross are tested row by row.
 */
export function maskTile(S: usize, ls: usize, cols: i32, rowsPad: i32, RI: usize, bnd: usize, lo: i32, hi: i32): void {
  const negInf = f32x4.splat(-Infinity);
  for (let j = 0; j < cols; j++) {
    const o = bnd + (<usize>j << 4);
    const lts0 = load<i32>(o), lte0 = load<i32>(o, 4), uts0 = load<i32>(o, 8), ute0 = load<i32>(o, 12);
    const lower = lts0 < lte0 && lts0 < hi && lte0 > lo, upper = uts0 < ute0 && uts0 < hi && ute0 > lo;
    if (!lower && !upper) continue;
    const row = S + <usize>j * ls;
    if ((lts0 <= lo && lte0 >= hi) || (uts0 <= lo && ute0 >= hi)) {
      for (let g = 0; g < rowsPad; g += 4) v128.store(row + (<usize>g << 2), negInf);
      continue;
    }
    const lts = i32x4.splat(lts0), lte = i32x4.splat(lte0);
    const uts = i32x4.splat(uts0), ute = i32x4.splat(ute0);
    for (let g = 0; g < rowsPad; g += 4) {
      const go = <usize>g << 2;
      const hit = maskedRows(v128.load(RI + go), lts, lte, uts, ute);
      v128.store(row + go, v128.bitselect(negInf, v128.load(row + go), hit));
    }
  }
}

/**
 * ALiBi on a log2-domain score tile (after the softcap, before the mask): Sᵀ[j][r] −=
 * slope·|RI[r] + offset − (j0 + j)|, with (slope · log2 e, offset) of batch entry b's head RH[r]
 * from the table at `A` (2 × f32 per (b, h); `A` already points at batch entry b's first head).
 * `MX` (0: none): also the rows' maxima of the result, for {@linkcode softmaxTile} (full tiles:
 * no mask follows), so that the tile is not read once more for them.
 */
export function alibiTile(S: usize, ls: usize, cols: i32, rowsPad: i32, RI: usize, RH: usize, A: usize, j0: i32, MX: usize): void {
  for (let g = 0; g < rowsPad; g += 4) {
    const go = <usize>g << 2;
    const h0 = <usize>load<i32>(RH + go), h1 = <usize>load<i32>(RH + go, 4);
    const h2 = <usize>load<i32>(RH + go, 8), h3 = <usize>load<i32>(RH + go, 12);
    const slope = f32x4(load<f32>(A + (h0 << 3)), load<f32>(A + (h1 << 3)), load<f32>(A + (h2 << 3)), load<f32>(A + (h3 << 3)));
    // row + offset, as f32 (the offset is the batch entry's, the same for every head)
    const pos = f32x4.add(f32x4.convert_i32x4_s(v128.load(RI + go)), f32x4.splat(load<f32>(A, 4)));
    let mx = f32x4.splat(-Infinity);
    for (let j = 0; j < cols; j++) {
      const a = S + <usize>j * ls + go;
      const dist = f32x4.abs(f32x4.sub(pos, f32x4.splat(<f32>(j0 + j))));
      const s = f32x4.sub(v128.load(a), f32x4.mul(slope, dist));
      v128.store(a, s);
      mx = f32x4.pmax(mx, s);
    }
    if (MX) v128.store(MX + go, mx);
  }
}

/** Softcap on a log2-domain score tile: Sᵀ ← C·tanh(Sᵀ / C), C = softcap · log2 e. */
export function capTile(S: usize, ls: usize, cols: i32, rowsPad: i32, cap: f32): void {
  const c = f32x4.splat(cap), inv = f32x4.splat(<f32>1.0 / cap);
  for (let j = 0; j < cols; j++) {
    const row = S + <usize>j * ls;
    for (let g = 0; g < rowsPad; g += 4) {
      const a = row + (<usize>g << 2);
      v128.store(a, f32x4.mul(c, tanhv(f32x4.mul(v128.load(a), inv))));
    }
  }
}

/**
 * Dropout on a probability tile: Pᵀ[j][r] ← Pᵀ[j][r] · Z, Z = 1/(1 − p) or 0 by the Philox word
 * of (batch b, head RH[r], row RI[r], key j0 + j). One Philox call covers 4 rows × 4 aligned keys
 * (j0 is a multiple of 4; the keys past `cols` in the last group are rows of scratch, unused).
 */
export function dropTile(
  S: usize,
  ls: usize,
  cols: i32,
  rowsPad: i32,
  RI: usize,
  RH: usize,
  b: i32,
  j0: i32,
  p: usize,
  PH: usize,
): void {
  const thr = i32x4.splat(pi(p, P_DROP_THR)), scale = f32x4.splat(pf(p, P_DROP_SCALE));
  const k0 = <u32>pi(p, P_SEED_LO), k1 = <u32>pi(p, P_SEED_HI);
  const bv = i32x4.splat(b);
  for (let j = 0; j < cols; j += 4) {
    const cv = i32x4.splat((j0 + j) >>> 2);
    const row = S + <usize>j * ls;
    for (let g = 0; g < rowsPad; g += 4) {
      const go = <usize>g << 2;
      philox(cv, v128.load(RI + go), v128.load(RH + go), bv, k0, k1, PH);
      for (let w = 0; w < 4; w++) {
        const a = row + <usize>w * ls + go;
        v128.store(a, f32x4.mul(v128.load(a), keepFactor(v128.load(PH + (<usize>w << 4)), thr, scale)));
      }
    }
  }
}

/**
 * Online softmax step on Sᵀ (cols × rowsPad, log2 units): per row, new max m, rescale factor
 * alpha = 2^(m_old − m_new) (stored at AL), l = l·alpha + Σ_j P, and Sᵀ replaced by
 * Pᵀ = 2^(Sᵀ − m_new). Rows whose max is still −∞ use 0 in its place, so P = alpha = 0. `MX`:
 * the tile's row maxima when the score GEMM computed them (0: computed here).
 */
export function softmaxTile(S: usize, ls: usize, cols: i32, rowsPad: i32, M: usize, L: usize, AL: usize, MX: usize): void {
  const lo = v128.load(KF, K_LO), magic = v128.load(KF, K_MAGIC);
  const c0 = v128.load(KF, K_C0), c1 = v128.load(KF, K_C1), c2 = v128.load(KF, K_C2);
  const c3 = v128.load(KF, K_C3), c4 = v128.load(KF, K_C4), c5 = v128.load(KF, K_C5);
  const one = v128.load(KF, K_ONE), bias = v128.load(KI);
  const negInf = v128.load(KF, K_NEG_INF), zero = v128.load(KF, K_ZERO);
  for (let g = 0; g < rowsPad; g += 4) {
    const go = <usize>g << 2;
    let mx = negInf;
    let a = S + go;
    if (MX) {
      mx = v128.load(MX + go);
    } else {
      for (let j = 0; j < cols; j++) {
        mx = f32x4.pmax(mx, v128.load(a));
        a += ls;
      }
    }
    const mOld = v128.load(M + go);
    const mNew = f32x4.pmax(mOld, mx);
    const mUse = v128.bitselect(zero, mNew, f32x4.eq(mNew, negInf));
    const alpha = exp2v(f32x4.sub(mOld, mUse), lo, magic, c0, c1, c2, c3, c4, c5, one, bias);
    let sum = zero;
    a = S + go;
    for (let j = 0; j < cols; j++) {
      const pv = exp2v(f32x4.sub(v128.load(a), mUse), lo, magic, c0, c1, c2, c3, c4, c5, one, bias);
      v128.store(a, pv);
      sum = f32x4.add(sum, pv);
      a += ls;
    }
    v128.store(L + go, madd(v128.load(L + go), alpha, sum));
    v128.store(M + go, mNew);
    v128.store(AL + go, alpha);
  }
}
