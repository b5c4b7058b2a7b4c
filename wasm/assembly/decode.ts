// Split-KV decoding: few query rows against many keys; items are (batch entry, range of column
// blocks), merged in split order by decodeCombine.

import { P_BC, P_BOUNDS, P_COL_BLOCKS, P_D, P_DEC_ROWS, P_DP, P_DROP, P_F16, P_GROUPS, P_GROUPS_MAX, P_GROUP_PTR, P_H, P_HK, P_IN_F16, P_IN_FINITE, P_K, P_KV_DIRECT, P_LSE, P_NK, P_NQ, P_OUT, P_PART, P_Q, P_QT, P_ROWS_MAX, P_ROW_BLOCKS, P_SCALE2, P_SCRATCH, P_SCRATCH_BYTES, P_SINKS, P_ALIBI, P_SLICE_OF, P_SOFTCAP2, P_SPLITS, P_TILES, P_TILE_PTR, P_V } from "./abi";
import { nextItem, pf, pi, pu } from "./work";
import { exp2v, h2f, h2f4, h2f4Finite, K_C0, K_C1, K_C2, K_C3, K_C4, K_C5, K_LO, K_MAGIC, K_ONE, KF, KH, KI, madd } from "./math";
import { gemmTN } from "./gemm";
import { alibiTile, capTile, dropTile, maskTile, softmaxTile } from "./tile";
import { finishRow } from "./forward";

/**
 * Copies `cols` rows of `d` values (f32, or binary16 converted) with row stride `src` bytes into a
 * packed f32 panel (dp floats a row, zero padded). `finite`: the values are known finite (the
 * inputs were scanned), so binary16 converts without the fix-up for infinity and NaN (4 of its 7
 * vector operations).
 */
export function loadPanel(src: usize, ls: usize, cols: i32, d: i32, dp: i32, f16: bool, finite: bool, dst: usize): void {
  const ld = <usize>dp << 2;
  const keep = v128.load(KH), pow112 = v128.load(KH, 16), hexp = v128.load(KH, 32);
  const inf = v128.load(KH, 48);
  for (let j = 0; j < cols; j++) {
    const s = src + <usize>j * ls, o = dst + <usize>j * ld;
    let x = 0;
    if (f16 && finite) {
      for (; x + 8 <= d; x += 8) {
        const h = v128.load(s + (<usize>x << 1));
        const a = o + (<usize>x << 2);
        v128.store(a, h2f4Finite(i32x4.extend_low_i16x8_s(h), keep, pow112));
        v128.store(a, h2f4Finite(i32x4.extend_high_i16x8_s(h), keep, pow112), 16);
      }
      for (; x < d; x++) store<f32>(o + (<usize>x << 2), h2f(load<u16>(s + (<usize>x << 1))));
    } else if (f16) {
      for (; x + 8 <= d; x += 8) {
        const h = v128.load(s + (<usize>x << 1));
        const a = o + (<usize>x << 2);
        v128.store(a, h2f4(i32x4.extend_low_i16x8_s(h), keep, pow112, hexp, inf));
        v128.store(a, h2f4(i32x4.extend_high_i16x8_s(h), keep, pow112, hexp, inf), 16);
      }
      for (; x < d; x++) store<f32>(o + (<usize>x << 2), h2f(load<u16>(s + (<usize>x << 1))));
    } else {
      for (; x + 4 <= d; x += 4) v128.store(o + (<usize>x << 2), v128.load(s + (<usize>x << 2)));
      for (; x < d; x++) store<f32>(o + (<usize>x << 2), load<f32>(s + (<usize>x << 2)));
    }
    for (; x < dp; x++) store<f32>(o + (<usize>x << 2), 0);
  }
}

/** [Σ a0, Σ a1, Σ a2, Σ a3]: the lane sums of four vectors, as one vector. */
@inline function sum4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const t0 = f32x4.add(i32x4.shuffle(a0, a1, 0, 4, 1, 5), i32x4.shuffle(a0, a1, 2, 6, 3, 7));
  const t1 = f32x4.add(i32x4.shuffle(a2, a3, 0, 4, 1, 5), i32x4.shuffle(a2, a3, 2, 6, 3, 7));
  return f32x4.add(i32x4.shuffle(t0, t1, 0, 1, 4, 5), i32x4.shuffle(t0, t1, 2, 3, 6, 7));
}

/**
 * The decode score GEMM for few rows, as dot products: Sᵀ[j][r] = Σ_x K[j][x]·Q[r][x] for
 * j < cols, r < RPad (a multiple of 4), x < X (a multiple of 4); K and Q rows are read as
 * vectors along x (K in place: no transpose), 2 keys × 4 rows at a time (8 accumulators, 6 loads
 * per 8 multiply-adds, where the Sᵀ-layout GEMM with 4 rows needs 7 per 6), then each key's 4
 * row sums are gathered into one vector of Sᵀ, multiplied by `scale` (scale · log2 e on the f32
 * scores). `MX` (0: none): row maxima, as in gemmScores.
 */
function gemmDots(
  K: usize,
  lk: usize,
  Q: usize,
  lq: usize,
  S: usize,
  ls: usize,
  cols: i32,
  RPad: i32,
  X: i32,
  MX: usize,
  scale: f32,
): void {
  const sc = f32x4.splat(scale);
  const end = <usize>X << 2;
  for (let g = 0; g < RPad; g += 4) {
    const q0 = Q + <usize>g * lq, q1 = q0 + lq, q2 = q1 + lq, q3 = q2 + lq;
    const go = <usize>g << 2;
    let mx = MX ? v128.load(MX + go) : f32x4.splat(0);
    let j = 0;
    for (; j + 2 <= cols; j += 2) {
      const k0 = K + <usize>j * lk, k1 = k0 + lk;
      let a00 = f32x4.splat(0), a10 = a00, a20 = a00, a30 = a00;
      let a01 = a00, a11 = a00, a21 = a00, a31 = a00;
      for (let o: usize = 0; o < end; o += 16) {
        const x0 = v128.load(k0 + o), x1 = v128.load(k1 + o);
        let y = v128.load(q0 + o);
        a00 = madd(x0, y, a00); a01 = madd(x1, y, a01);
        y = v128.load(q1 + o);
        a10 = madd(x0, y, a10); a11 = madd(x1, y, a11);
        y = v128.load(q2 + o);
        a20 = madd(x0, y, a20); a21 = madd(x1, y, a21);
        y = v128.load(q3 + o);
        a30 = madd(x0, y, a30); a31 = madd(x1, y, a31);
      }
      const s0 = f32x4.mul(sum4(a00, a10, a20, a30), sc), s1 = f32x4.mul(sum4(a01, a11, a21, a31), sc);
      v128.store(S + <usize>j * ls + go, s0);
      v128.store(S + <usize>(j + 1) * ls + go, s1);
      mx = f32x4.pmax(mx, f32x4.pmax(s0, s1));
    }
    if (j < cols) {
      const k0 = K + <usize>j * lk;
      let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
      for (let o: usize = 0; o < end; o += 16) {
        const x0 = v128.load(k0 + o);
        a0 = madd(x0, v128.load(q0 + o), a0);
        a1 = madd(x0, v128.load(q1 + o), a1);
        a2 = madd(x0, v128.load(q2 + o), a2);
        a3 = madd(x0, v128.load(q3 + o), a3);
      }
      const s0 = f32x4.mul(sum4(a0, a1, a2, a3), sc);
      v128.store(S + <usize>j * ls + go, s0);
      mx = f32x4.pmax(mx, s0);
    }
    if (MX) v128.store(MX + go, mx);
  }
}

/**
 * Decode preparation, work item g (a row group): the group's Q (RPad × dp,
 * zero padded), and the query row and head of each of its rows (for the mask and dropout). A row
 * group is the query rows (h, i), h in [h0, h0 + nh) (heads of one key head that share one mask
 * slice), i < Nq, in row r = (h − h0)·Nq + i, so K and V are read once for the whole group.
 */
export function decodePrep(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const nq = pi(p, P_NQ), H = pi(p, P_H), d = pi(p, P_D), dp = pi(p, P_DP);
  const f16 = pi(p, P_IN_F16) != 0, qp = pu(p, P_Q);
  const groups = pu(p, P_GROUPS), rowsMax = pi(p, P_ROWS_MAX);
  const qAll = pu(p, P_QT), rowsAll = pu(p, P_DEC_ROWS);
  const eb: usize = f16 ? 2 : 4;
  for (let g = nextItem(counter, items, nItems); g >= 0; g = nextItem(counter, items, nItems)) {
    const desc = groups + (<usize>g << 4);
    const b = load<i32>(desc), h0 = load<i32>(desc, 8), nh = load<i32>(desc, 12);
    const R = nh * nq, RPad = (R + 3) & ~3, ld = <usize>dp << 2;
    const QR = qAll + <usize>g * dp * (<usize>rowsMax << 2);
    const RI = rowsAll + <usize>g * (<usize>rowsMax << 3), RH = RI + (<usize>rowsMax << 2);
    for (let r = 0; r < RPad; r++) {
      const h = h0 + r / nq, i = r % nq;
      store<i32>(RI + (<usize>r << 2), r < R ? i : 0);
      store<i32>(RH + (<usize>r << 2), r < R ? h : h0);
      const q = qp + <usize>((b * nq + i) * H + h) * d * eb;
      for (let x = 0; x < dp; x++) {
        let v: f32 = 0;
        if (r < R && x < d) v = f16 ? h2f(load<u16>(q + (<usize>x << 1))) : load<f32>(q + (<usize>x << 2));
        store<f32>(QR + <usize>r * ld + (<usize>x << 2), v);
      }
    }
  }
}

/**
 * Decode work item b·splits + s: the column blocks [s·CB/splits, (s+1)·CB/splits) of batch b,
 * for every row group of b (groups [GROUP_PTR[b], GROUP_PTR[b + 1])). Column blocks are the outer
 * loop and row groups the inner one, so that a tile's keys and values of all key heads, which are
 * adjacent in the user layout, are read together (streaming; one key head's rows alone are
 * Hk·d apart, which defeats the hardware prefetcher). Each group walks its own tile list (its mask
 * slice's row block 0; Br ≥ Nq) within the range and accumulates, with the forward's online
 * softmax, into its partial for this split: unnormalised O, m (log2 units) and l per row, left
 * for `decodeCombine`. k and v are read in place when f32 with d % 4 == 0; otherwise each column
 * block of every key head is converted into f32 panels first, in one streaming pass.
 */
export function decode(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const nk = pi(p, P_NK), Hk = pi(p, P_HK), d = pi(p, P_D), dp = pi(p, P_DP), Bc = pi(p, P_BC);
  const f16 = pi(p, P_IN_F16) != 0, colBlocks = pi(p, P_COL_BLOCKS), nq = pi(p, P_NQ);
  const finite = pi(p, P_IN_FINITE) != 0;
  const bounds = pu(p, P_BOUNDS), tilePtr = pu(p, P_TILE_PTR), tiles = pu(p, P_TILES);
  const sliceOf = pu(p, P_SLICE_OF), rowBlocks = pi(p, P_ROW_BLOCKS), H = pi(p, P_H);
  const kp = pu(p, P_K), vp = pu(p, P_V);
  const groups = pu(p, P_GROUPS), groupPtr = pu(p, P_GROUP_PTR);
  const splits = pi(p, P_SPLITS), rowsMax = pi(p, P_ROWS_MAX);
  const part = pu(p, P_PART), direct = pi(p, P_KV_DIRECT) != 0;
  const qtAll = pu(p, P_QT), rowsAll = pu(p, P_DEC_ROWS);
  const cap = pf(p, P_SOFTCAP2), drop = pi(p, P_DROP) != 0, alibi = pu(p, P_ALIBI);
  const scale2 = pf(p, P_SCALE2);
  const eb: usize = f16 ? 2 : 4;
  const ld = <usize>dp << 2;
  const partBytes = <usize>rowsMax * (ld + 8);
  const lsMax = <usize>rowsMax << 2;
  const ST = pu(p, P_SCRATCH) + <usize>tid * pu(p, P_SCRATCH_BYTES);
  const AL = ST + <usize>Bc * lsMax;
  const MX = AL + lsMax;
  const PH = MX + lsMax;
  const CUR = PH + 64; // per group of the batch entry: next tile, end of its list
  const lp = <usize>Hk * ld; // panel row stride: one key's dp floats for every key head
  const PK = CUR + (<usize>pi(p, P_GROUPS_MAX) << 3), PV = PK + <usize>Bc * lp; // K, V panels
  const lk = <usize>Hk * d * eb; // key row stride in the user layout (bytes)
  const negInf = f32x4.splat(-Infinity), zero = f32x4.splat(0);
  for (let it = nextItem(counter, items, nItems); it >= 0; it = nextItem(counter, items, nItems)) {
    const b = it / splits, s = it % splits;
    const g0 = load<i32>(groupPtr + (<usize>b << 2)), g1 = load<i32>(groupPtr + (<usize>(b + 1) << 2));
    const c0 = <i32>((<i64>colBlocks * s) / splits), c1 = <i32>((<i64>colBlocks * (s + 1)) / splits);
    for (let g = g0; g < g1; g++) {
      const desc = groups + (<usize>g << 4);
      const R = load<i32>(desc, 12) * nq, RPad = (R + 3) & ~3;
      const O = part + <usize>(g * splits + s) * partBytes, M = O + <usize>rowsMax * ld, L = M + lsMax;
      for (let r = 0; r < RPad; r += 4) {
        v128.store(M + (<usize>r << 2), negInf);
        v128.store(L + (<usize>r << 2), zero);
      }
      memory.fill(O, 0, <usize>RPad * ld);
      // first tile of the group's list at or after column block c0 (lists ascend)
      const list = load<i32>(sliceOf + (<usize>(load<i32>(desc) * H + load<i32>(desc, 8)) << 2)) * rowBlocks;
      let lo = load<u32>(tilePtr + (<usize>list << 2)), hi = load<u32>(tilePtr + (<usize>(list + 1) << 2));
      const end = hi;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (<i32>(load<u32>(tiles + (<usize>mid << 2)) >> 1) < c0) lo = mid + 1;
        else hi = mid;
      }
      store<u32>(CUR + (<usize>(g - g0) << 3), lo);
      store<u32>(CUR + (<usize>(g - g0) << 3) + 4, end);
    }
    for (let c = c0; c < c1; c++) {
      const j0 = c * Bc, cols = min(Bc, nk - j0);
      if (!direct) {
        // convert this block's keys and values of every key head (adjacent in memory) into
        // f32 panels [j][kh][dp], in one streaming pass each, if any group computes the block
        let used = false;
        for (let g = g0; g < g1 && !used; g++) {
          const cur = CUR + (<usize>(g - g0) << 3), t = load<u32>(cur);
          used = t < load<u32>(cur, 4) && <i32>(load<u32>(tiles + (<usize>t << 2)) >> 1) == c;
        }
        if (!used) continue;
        const src = <usize>(b * nk + j0) * lk;
        loadPanel(kp + src, <usize>d * eb, cols * Hk, d, dp, f16, finite, PK);
        loadPanel(vp + src, <usize>d * eb, cols * Hk, d, dp, f16, finite, PV);
      }
      for (let g = g0; g < g1; g++) {
        const cur = CUR + (<usize>(g - g0) << 3);
        const t = load<u32>(cur);
        if (t >= load<u32>(cur, 4)) continue;
        const e = load<u32>(tiles + (<usize>t << 2));
        if (<i32>(e >> 1) != c) continue;
        store<u32>(cur, t + 1);
        const desc = groups + (<usize>g << 4);
        const b_ = load<i32>(desc), kh = load<i32>(desc, 4), h0 = load<i32>(desc, 8);
        const R = load<i32>(desc, 12) * nq, RPad = (R + 3) & ~3, ls = <usize>RPad << 2;
        const slice = load<i32>(sliceOf + (<usize>(b_ * H + h0) << 2));
        const O = part + <usize>(g * splits + s) * partBytes, M = O + <usize>rowsMax * ld, L = M + lsMax;
        const QR = qtAll + <usize>g * dp * lsMax;
        const RI = rowsAll + <usize>g * (lsMax << 1), RH = RI + lsMax;
        const kt = kp + (<usize>(b_ * nk + j0) * Hk + kh) * d * eb;
        const vt = vp + (<usize>(b_ * nk + j0) * Hk + kh) * d * eb;
        // S = (K Qᵀ)·scale·log2 e, the scale on the f32 scores (FlashAttention-2's); full tiles
        // without softcap or ALiBi: the score GEMM also takes the row maxima
        const fused = (e & 1) == 0 && cap == 0 && alibi == 0;
        if (fused) {
          for (let r = 0; r < RPad; r += 4) v128.store(MX + (<usize>r << 2), negInf);
        }
        if (direct) {
          gemmDots(kt, lk, QR, ld, ST, ls, cols, RPad, d, fused ? MX : 0, scale2);
        } else {
          gemmDots(PK + <usize>kh * ld, lp, QR, ld, ST, ls, cols, RPad, dp, fused ? MX : 0, scale2);
        }
        if (cap != 0) capTile(ST, ls, cols, RPad, cap);
        const biasMax = (e & 1) == 0 && cap == 0 && alibi != 0;
        if (alibi) alibiTile(ST, ls, cols, RPad, RI, RH, alibi + (<usize>(b_ * H) << 3), j0, biasMax ? MX : 0);
        if (e & 1) maskTile(ST, ls, cols, RPad, RI, bounds + (<usize>(slice * nk + j0) << 4), 0, nq);
        softmaxTile(ST, ls, cols, RPad, M, L, AL, fused || biasMax ? MX : 0);
        if (drop) dropTile(ST, ls, cols, RPad, RI, RH, b_, j0, p, PH);
        if (direct) {
          gemmTN(ST, ls, vt, lk, O, ld, RPad, dp >> 2, cols, AL);
        } else {
          gemmTN(ST, ls, PV + <usize>kh * ld, lp, O, ld, RPad, dp >> 2, cols, AL);
        }
      }
    }
  }
}

/**
 * Decode combine, work item g (a row group): merges the group's `splits` partials in split order
 * (so the bits do not depend on the thread count). This is the lse-weighted merge
 * out = Σ_s exp(lse_s − lse)·out_s, lse = log Σ_s exp(lse_s), written with the unnormalised
 * partials (lse_s = m_s + log2 l_s in log2 units, out_s = O_s / l_s): with M = max_s m_s and
 * w_s = 2^(m_s − M), out = Σ_s w_s·O_s / Σ_s w_s·l_s and lse = M·ln 2 + ln Σ_s w_s·l_s. A split
 * that saw no key has m_s = −∞ and weight 0; a row no split saw gets out 0 and lse −∞.
 */
export function decodeCombine(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const nq = pi(p, P_NQ), H = pi(p, P_H), d = pi(p, P_D), dp = pi(p, P_DP);
  const f16 = pi(p, P_F16) != 0, outp = pu(p, P_OUT), lsep = pu(p, P_LSE);
  const groups = pu(p, P_GROUPS), splits = pi(p, P_SPLITS), rowsMax = pi(p, P_ROWS_MAX);
  const part = pu(p, P_PART);
  const ld = <usize>dp << 2;
  const partBytes = <usize>rowsMax * (ld + 8);
  const W = pu(p, P_SCRATCH) + <usize>tid * pu(p, P_SCRATCH_BYTES); // weights, one per split
  const ACC = W + (<usize>splits << 2); // one row of O, then m and l
  const lo = v128.load(KF, K_LO), magic = v128.load(KF, K_MAGIC);
  const c0 = v128.load(KF, K_C0), c1 = v128.load(KF, K_C1), c2 = v128.load(KF, K_C2);
  const c3 = v128.load(KF, K_C3), c4 = v128.load(KF, K_C4), c5 = v128.load(KF, K_C5);
  const one = v128.load(KF, K_ONE), bias = v128.load(KI);
  const sinks = pu(p, P_SINKS);
  for (let g = nextItem(counter, items, nItems); g >= 0; g = nextItem(counter, items, nItems)) {
    const desc = groups + (<usize>g << 4);
    const b = load<i32>(desc), h0 = load<i32>(desc, 8), nh = load<i32>(desc, 12);
    const first = part + <usize>g * splits * partBytes;
    for (let r = 0; r < nh * nq; r++) {
      const h = h0 + r / nq, i = r % nq;
      const mOff = <usize>rowsMax * ld + (<usize>r << 2), lOff = mOff + (<usize>rowsMax << 2);
      // the sink joins once (terms/sink.ts): a partial with m = σ_h (log2 units), l = 1, O = 0
      const sink: f32 = sinks ? load<f32>(sinks + (<usize>h << 2)) : -Infinity;
      let mMax: f32 = sink;
      for (let s = 0; s < splits; s++) mMax = max(mMax, load<f32>(first + <usize>s * partBytes + mOff));
      let lSum: f32 = 0;
      if (sinks) {
        const x = f32x4.splat(sink - mMax);
        lSum = f32x4.extract_lane(exp2v(x, lo, magic, c0, c1, c2, c3, c4, c5, one, bias), 0);
      }
      for (let s = 0; s < splits; s++) {
        const ps = first + <usize>s * partBytes;
        let w: f32 = 0;
        if (mMax != -Infinity) {
          const x = f32x4.splat(load<f32>(ps + mOff) - mMax);
          w = f32x4.extract_lane(exp2v(x, lo, magic, c0, c1, c2, c3, c4, c5, one, bias), 0);
        }
        store<f32>(W + (<usize>s << 2), w);
        lSum += w * load<f32>(ps + lOff);
      }
      const row = ACC;
      for (let x = 0; x < dp; x += 4) {
        let acc = f32x4.splat(0);
        for (let s = 0; s < splits; s++) {
          const o = first + <usize>s * partBytes + <usize>r * ld + (<usize>x << 2);
          acc = madd(v128.load32_splat(W + (<usize>s << 2)), v128.load(o), acc);
        }
        v128.store(row + (<usize>x << 2), acc);
      }
      store<f32>(row + ld, mMax);
      store<f32>(row + ld + 4, lSum);
      const oi = <usize>((b * nq + i) * H + h) * d;
      finishRow(row, row + ld, row + ld + 4, outp, oi, d, f16, lsep + (<usize>((b * H + h) * nq + i) << 2));
    }
  }
}

/**
 * Test hook: the decode panels' binary16 → f32 conversion of n halves at `src` into `dst` (`finite`:
 * the conversion for scanned inputs).
 */
export function halvesAt(src: usize, dst: usize, n: i32, finite: bool): void {
  loadPanel(src, <usize>n << 1, 1, n, n, true, finite, dst);
}
