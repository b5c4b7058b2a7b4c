// The forward pass: one work item per (b, query head, row block) walks its row's tile list.

import { P_BC, P_BOUNDS, P_BR, P_COL_BLOCKS, P_D, P_DP, P_DROP, P_F16, P_H, P_HK, P_IN_F16, P_K, P_LSE, P_NK, P_NQ, P_OUT, P_Q, P_ROW_BLOCKS, P_SCALE2, P_SCRATCH, P_SCRATCH_BYTES, P_SINKS, P_ALIBI, P_SLICE_OF, P_SOFTCAP2, P_TILES, P_TILE_PTR, P_V } from "./abi";
import { nextItem, pf, pi, pu } from "./work";
import { h2f, ln, storeOut } from "./math";
import { gemmScores, gemmTN } from "./gemm";
import { alibiTile, capTile, dropTile, maskTile, softmaxTile } from "./tile";

/**
 * Forward work item b·H·rowBlocks + h·rowBlocks + r: rows [r·Br, r·Br + Br) of query head h,
 * batch b. Writes those rows of out (user layout) and lse.
 */
export function forward(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const nq = pi(p, P_NQ), nk = pi(p, P_NK), H = pi(p, P_H), Hk = pi(p, P_HK);
  const d = pi(p, P_D), dp = pi(p, P_DP), Br = pi(p, P_BR), Bc = pi(p, P_BC);
  const rowBlocks = pi(p, P_ROW_BLOCKS), f16 = pi(p, P_F16) != 0;
  const bounds = pu(p, P_BOUNDS), tilePtr = pu(p, P_TILE_PTR), tiles = pu(p, P_TILES);
  const sliceOf = pu(p, P_SLICE_OF);
  const qp = pu(p, P_Q), kp = pu(p, P_K), vp = pu(p, P_V), outp = pu(p, P_OUT), lsep = pu(p, P_LSE);
  const cap = pf(p, P_SOFTCAP2), drop = pi(p, P_DROP) != 0;
  const group = H / Hk;
  const ls = <usize>Br << 2; // row stride of Qᵀ and Sᵀ (bytes)
  const ld = <usize>dp << 2; // row stride of packed rows and of O (bytes)
  const inF16 = pi(p, P_IN_F16) != 0;
  const eb: usize = inF16 ? 2 : 4, qs = <usize>(H * d) * eb; // q's element size and row stride
  const QT = pu(p, P_SCRATCH) + <usize>tid * pu(p, P_SCRATCH_BYTES);
  const ST = QT + <usize>dp * ls;
  const O = ST + <usize>Bc * ls;
  const M = O + <usize>Br * ld;
  const L = M + ls;
  const AL = L + ls;
  const RI = AL + ls;
  const RH = RI + ls;
  const MX = RH + ls;
  const PH = MX + ls;
  const panel = <usize>dp * Bc << 2; // a transposed K panel (dp × Bc)
  const colBlocks = pi(p, P_COL_BLOCKS);
  const negInf = f32x4.splat(-Infinity), zero = f32x4.splat(0);
  const sinks = pu(p, P_SINKS), alibi = pu(p, P_ALIBI);
  for (let it = nextItem(counter, items, nItems); it >= 0; it = nextItem(counter, items, nItems)) {
    const r = it % rowBlocks, bh = it / rowBlocks, h = bh % H, b = bh / H;
    const kh = h / group, slice = load<i32>(sliceOf + (<usize>bh << 2));
    const i0 = r * Br, rows = min(Br, nq - i0), rowsPad = (rows + 7) & ~7;
    // Qᵀ from q in place (user layout), zero in padded rows and columns
    let q = qp + (<usize>((b * nq + i0) * H + h) * d) * eb;
    for (let i = 0; i < rowsPad; i++) {
      const dst = QT + (<usize>i << 2);
      let x = 0;
      if (i < rows) {
        for (; x < d; x++) {
          const v = inF16 ? h2f(load<u16>(q + (<usize>x << 1))) : load<f32>(q + (<usize>x << 2));
          store<f32>(dst + <usize>x * ls, v);
        }
      }
      for (; x < dp; x++) store<f32>(dst + <usize>x * ls, 0);
      q += qs;
    }
    // the online softmax starts empty, or from the sink's state: m = σ_h (log2 units), l = 1
    const m0 = sinks ? f32x4.splat(load<f32>(sinks + (<usize>h << 2))) : negInf;
    const l0 = sinks ? f32x4.splat(1) : zero;
    for (let g = 0; g < rowsPad; g += 4) {
      v128.store(M + (<usize>g << 2), m0);
      v128.store(L + (<usize>g << 2), l0);
    }
    for (let i = 0; i < rowsPad; i++) {
      store<i32>(RI + (<usize>i << 2), i0 + i);
      store<i32>(RH + (<usize>i << 2), h);
    }
    memory.fill(O, 0, <usize>rowsPad * ld);
    const kb = kp + <usize>(b * Hk + kh) * colBlocks * panel;
    const vb = vp + <usize>(b * Hk + kh) * nk * ld;
    const list = slice * rowBlocks + r;
    const t1 = load<u32>(tilePtr + (<usize>(list + 1) << 2));
    for (let t = load<u32>(tilePtr + (<usize>list << 2)); t < t1; t++) {
      const e = load<u32>(tiles + (<usize>t << 2));
      const c = <i32>(e >> 1), j0 = c * Bc, cols = min(Bc, nk - j0);
      // S = (K Qᵀ)·scale·log2 e, the scale on the f32 scores (FlashAttention-2's); full tiles
      // without softcap or ALiBi: the score GEMM also takes the row maxima
      const fused = (e & 1) == 0 && cap == 0 && alibi == 0;
      if (fused) {
        for (let g = 0; g < rowsPad; g += 4) v128.store(MX + (<usize>g << 2), negInf);
      }
      gemmScores(kb + <usize>c * panel, <usize>Bc << 2, QT, ls, ST, ls, cols, rowsPad >> 2, dp, fused ? MX : 0, p + (<usize>P_SCALE2 << 2));
      if (cap != 0) capTile(ST, ls, cols, rowsPad, cap);
      // full tiles with ALiBi and no softcap: the bias step takes the row maxima
      const biasMax = (e & 1) == 0 && cap == 0 && alibi != 0;
      if (alibi) alibiTile(ST, ls, cols, rowsPad, RI, RH, alibi + (<usize>(b * H) << 3), j0, biasMax ? MX : 0);
      if (e & 1) maskTile(ST, ls, cols, rowsPad, RI, bounds + (<usize>(slice * nk + j0) << 4), i0, i0 + rowsPad);
      softmaxTile(ST, ls, cols, rowsPad, M, L, AL, fused || biasMax ? MX : 0);
      if (drop) dropTile(ST, ls, cols, rowsPad, RI, RH, b, j0, p, PH);
      gemmTN(ST, ls, vb + <usize>j0 * ld, ld, O, ld, rowsPad, dp >> 2, cols, AL);
    }
    // out = O / l (0 when the row saw nothing); lse = m·ln 2 + ln l
    for (let i = 0; i < rows; i++) {
      const oi = <usize>((b * nq + i0 + i) * H + h) * d;
      finishRow(O + <usize>i * ld, M + (<usize>i << 2), L + (<usize>i << 2), outp, oi, d, f16, lsep + (<usize>(bh * nq + i0 + i) << 2));
    }
  }
}

/**
 * Writes one finished row: out = O / l in the user layout at element `oi` (0 when l = 0: the row
 * saw nothing) and lse = m·ln 2 + ln l (−∞ when l = 0).
 */
export function finishRow(row: usize, m: usize, l: usize, outp: usize, oi: usize, d: i32, f16: bool, lse: usize): void {
  const lv = load<f32>(l), mv = load<f32>(m);
  if (lv != 0) { // NaN where a score was NaN: out and lse NaN
    if (!f16 && (d & 3) == 0) {
      const lvv = f32x4.splat(lv);
      for (let x = 0; x < d; x += 4) {
        v128.store(outp + ((oi + x) << 2), f32x4.div(v128.load(row + (<usize>x << 2)), lvv));
      }
    } else {
      for (let x = 0; x < d; x++) storeOut(outp, oi + x, load<f32>(row + (<usize>x << 2)) / lv, f16);
    }
    store<f32>(lse, lv == lv ? <f32>(<f64>mv * Math.LN2 + ln(<f64>lv)) : NaN);
  } else {
    for (let x = 0; x < d; x++) storeOut(outp, oi + x, 0, f16);
    store<f32>(lse, -Infinity);
  }
}
