// The backward pass: prep (D and lse in log2 units, qᵀ and dOᵀ per row block), the dS tile (with
// and without softcap/dropout), the main item per (b, key head, chunk) over column blocks, and the
// reduction of the dQ partials in chunk order.

import { P_ALIBI, P_B, P_BC, P_BOUNDS, P_BR, P_CHUNKS, P_COL_BLOCKS, P_D, P_DD, P_DK, P_DO, P_DOT, P_DP, P_DQ, P_DQ_PART, P_DROP, P_DROP_SCALE, P_DROP_THR, P_DV, P_F16, P_H, P_HK, P_K, P_LSE, P_LSE2, P_NK, P_NQ, P_OUT, P_Q, P_QT, P_ROW_BLOCKS, P_SCALE, P_SCALE2, P_SCRATCH, P_SCRATCH_BYTES, P_SEED_HI, P_SEED_LO, P_SLICE_OF, P_SOFTCAP2, P_TILES, P_TILE_PTR, P_V } from "./abi";
import { nextItem, pf, pi, pu } from "./work";
import { EXP2_C0, EXP2_C1, EXP2_C2, EXP2_C3, EXP2_C4, EXP2_C5, EXP2_LO, EXP2_MAGIC, exp2v, K_C0, K_C1, K_C2, K_C3, K_C4, K_C5, K_LO, K_MAGIC, K_ONE, keepFactor, KF, KI, madd, philox, storeOut, tanhv } from "./math";
import { gemmNN, gemmTN } from "./gemm";
import { maskedRows } from "./tile";

/**
 * Backward preparation, work item b·H·rowBlocks + h·rowBlocks + r: Qᵀ and dOᵀ of the row
 * block (dp × Br, zero padded), D = rowsum(dO∘O), lse2 = lse·log2 e (+∞ for rows that see nothing
 * and for padding), and zeroed dQ partial rows of every chunk.
 */
export function bwdPrep(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const B = pi(p, P_B), nq = pi(p, P_NQ), H = pi(p, P_H), dp = pi(p, P_DP), Br = pi(p, P_BR);
  const rowBlocks = pi(p, P_ROW_BLOCKS), chunks = pi(p, P_CHUNKS);
  const qp = pu(p, P_Q), op = pu(p, P_OUT), dop = pu(p, P_DO), lsep = pu(p, P_LSE);
  const qtp = pu(p, P_QT), dotp = pu(p, P_DOT), Dp = pu(p, P_DD), lse2p = pu(p, P_LSE2);
  const dqp = pu(p, P_DQ_PART);
  const nqPad = rowBlocks * Br;
  const ls = <usize>Br << 2, ld = <usize>dp << 2;
  for (let it = nextItem(counter, items, nItems); it >= 0; it = nextItem(counter, items, nItems)) {
    const r = it % rowBlocks, bh = it / rowBlocks;
    const i0 = r * Br, rows = min(Br, nq - i0);
    const q = qp + <usize>(bh * nq + i0) * ld;
    const dO = dop + <usize>(bh * nq + i0) * ld;
    const o = op + <usize>(bh * nq + i0) * ld;
    const qt = qtp + <usize>it * dp * ls;
    const dot = dotp + <usize>it * dp * ls;
    for (let x = 0; x < dp; x++) {
      const xo = <usize>x << 2;
      for (let i = 0; i < rows; i++) {
        store<f32>(qt + <usize>x * ls + (<usize>i << 2), load<f32>(q + <usize>i * ld + xo));
        store<f32>(dot + <usize>x * ls + (<usize>i << 2), load<f32>(dO + <usize>i * ld + xo));
      }
      for (let i = rows; i < Br; i++) {
        store<f32>(qt + <usize>x * ls + (<usize>i << 2), 0);
        store<f32>(dot + <usize>x * ls + (<usize>i << 2), 0);
      }
    }
    const rowBase = <usize>(bh * nqPad + i0) << 2;
    for (let i = 0; i < Br; i++) {
      let dsum: f32 = 0;
      let l2: f32 = Infinity;
      if (i < rows) {
        // Summed in the order and with the operation the dPᵀ GEMM uses (sequential in x, madd),
        // so that a row whose softmax is one-hot gets dP − D = 0 exactly, as in exact arithmetic.
        let acc = f32x4.splat(0);
        const orow = o + <usize>i * ld, drow = dO + <usize>i * ld;
        for (let x = 0; x < dp; x++) {
          acc = madd(v128.load32_splat(orow + (<usize>x << 2)), v128.load32_splat(drow + (<usize>x << 2)), acc);
        }
        dsum = f32x4.extract_lane(acc, 0);
        const lse = load<f32>(lsep + (<usize>(bh * nq + i0 + i) << 2));
        if (lse != -Infinity) l2 = <f32>(<f64>lse * Math.LOG2E);
      }
      store<f32>(Dp + rowBase + (<usize>i << 2), dsum);
      store<f32>(lse2p + rowBase + (<usize>i << 2), l2);
    }
    for (let k = 0; k < chunks; k++) {
      memory.fill(dqp + (<usize>((k * B * H + bh) * nqPad + i0) * ld), 0, <usize>Br * ld);
    }
  }
}

/**
 * Recomputes Pᵀ = 2^(Sᵀ·c − lse2) (0 where masked, for partial tiles; c = scale · log2 e on the
 * f32 scores, as the forward applies it) into S and
 * dSᵀ = Pᵀ∘(dPᵀ − D) into DP. Sᵀ − lse2 is clamped at 0 (P ≤ 1): at huge scores (~1e10) the
 * float32 lse is off by hundreds, and exp2v is only valid below 128.
 */
function dsTile(
  S: usize,
  DP: usize,
  ls: usize,
  cols: i32,
  rowsPad: i32,
  lse2: usize,
  Dv: usize,
  partial: bool,
  i0: i32,
  bnd: usize,
  c: f32,
): void {
  const cv = f32x4.splat(c);
  const lo = v128.load(KF, K_LO), magic = v128.load(KF, K_MAGIC);
  const c0 = v128.load(KF, K_C0), c1 = v128.load(KF, K_C1), c2 = v128.load(KF, K_C2);
  const c3 = v128.load(KF, K_C3), c4 = v128.load(KF, K_C4), c5 = v128.load(KF, K_C5);
  const one = v128.load(KF, K_ONE), bias = v128.load(KI);
  const zero = f32x4.splat(0);
  const base = i32x4.add(i32x4.splat(i0), i32x4(0, 1, 2, 3));
  const four = i32x4.splat(4);
  for (let j = 0; j < cols; j++) {
    const s = S + <usize>j * ls, dp = DP + <usize>j * ls;
    if (partial) {
      const o = bnd + (<usize>j << 4);
      const lts = v128.load32_splat(o), lte = v128.load32_splat(o, 4);
      const uts = v128.load32_splat(o, 8), ute = v128.load32_splat(o, 12);
      let iv = base;
      for (let g = 0; g < rowsPad; g += 4) {
        const go = <usize>g << 2;
        const hit = maskedRows(iv, lts, lte, uts, ute);
        let pv = exp2v(f32x4.pmin(f32x4.sub(f32x4.mul(v128.load(s + go), cv), v128.load(lse2 + go)), zero), lo, magic, c0, c1, c2, c3, c4, c5, one, bias);
        pv = v128.bitselect(zero, pv, hit);
        v128.store(s + go, pv);
        v128.store(dp + go, f32x4.mul(pv, f32x4.sub(v128.load(dp + go), v128.load(Dv + go))));
        iv = i32x4.add(iv, four);
      }
    } else {
      for (let g = 0; g < rowsPad; g += 4) {
        const go = <usize>g << 2;
        const pv = exp2v(f32x4.pmin(f32x4.sub(f32x4.mul(v128.load(s + go), cv), v128.load(lse2 + go)), zero), lo, magic, c0, c1, c2, c3, c4, c5, one, bias);
        v128.store(s + go, pv);
        v128.store(dp + go, f32x4.mul(pv, f32x4.sub(v128.load(dp + go), v128.load(Dv + go))));
      }
    }
  }
}

/**
 * dsTile with the options (after the scale): softcap (Sᵀ ← C·tanh(Sᵀ/C) before the exp, dSᵀ multiplied by the
 * slope 1 − tanh²), ALiBi (Sᵀ −= slope·|i + offset − j| after the cap, from the pair at `ab`;
 * 0: none) and dropout (S ← Pᵀ∘Z for dV, dSᵀ = Pᵀ∘(dPᵀ∘Z − D), Z regenerated by Philox for
 * batch b, head h, rows i0 + r, keys j0 + j). Works on 4 keys × 4 rows at a time (one Philox call).
 */
function dsTileOpt(
  S: usize,
  DP: usize,
  ls: usize,
  cols: i32,
  rowsPad: i32,
  lse2: usize,
  Dv: usize,
  partial: bool,
  i0: i32,
  bnd: usize,
  p: usize,
  b: i32,
  h: i32,
  j0: i32,
  PH: usize,
  ab: usize,
  c: f32,
): void {
  const scv = f32x4.splat(c);
  const cap = pf(p, P_SOFTCAP2), drop = pi(p, P_DROP) != 0;
  const slopev = f32x4.splat(ab ? load<f32>(ab) : 0), offv = f32x4.splat(ab ? load<f32>(ab, 4) : 0);
  const capv = f32x4.splat(cap), inv = f32x4.splat(cap != 0 ? <f32>1.0 / cap : 0);
  const thr = i32x4.splat(pi(p, P_DROP_THR)), dscale = f32x4.splat(pf(p, P_DROP_SCALE));
  const k0 = <u32>pi(p, P_SEED_LO), k1 = <u32>pi(p, P_SEED_HI);
  const bv = i32x4.splat(b), hv = i32x4.splat(h);
  const zero = f32x4.splat(0), one = f32x4.splat(1);
  for (let j4 = 0; j4 < cols; j4 += 4) {
    const cv = i32x4.splat((j0 + j4) >>> 2);
    for (let g = 0; g < rowsPad; g += 4) {
      const go = <usize>g << 2;
      const iv = i32x4.add(i32x4.splat(i0 + g), i32x4(0, 1, 2, 3));
      if (drop) philox(cv, iv, hv, bv, k0, k1, PH);
      const l2 = v128.load(lse2 + go), dd = v128.load(Dv + go);
      const wn = min(4, cols - j4);
      for (let w = 0; w < wn; w++) {
        const j = j4 + w;
        const sa = S + <usize>j * ls + go, da = DP + <usize>j * ls + go;
        let sv = f32x4.mul(v128.load(sa), scv);
        let slope = one;
        if (cap != 0) {
          const t = tanhv(f32x4.mul(sv, inv));
          sv = f32x4.mul(capv, t);
          slope = f32x4.sub(one, f32x4.mul(t, t));
        }
        if (ab) {
          const dist = f32x4.abs(f32x4.sub(f32x4.add(f32x4.convert_i32x4_s(iv), offv), f32x4.splat(<f32>(j0 + j))));
          sv = f32x4.sub(sv, f32x4.mul(slopev, dist));
        }
        let pv = exp2v(
          f32x4.pmin(f32x4.sub(sv, l2), zero),
          f32x4.splat(EXP2_LO),
          f32x4.splat(EXP2_MAGIC),
          f32x4.splat(EXP2_C0),
          f32x4.splat(EXP2_C1),
          f32x4.splat(EXP2_C2),
          f32x4.splat(EXP2_C3),
          f32x4.splat(EXP2_C4),
          f32x4.splat(EXP2_C5),
          one,
          i32x4.splat(127),
        );
        if (partial) {
          const o = bnd + (<usize>j << 4);
          const hit = maskedRows(
            iv,
            v128.load32_splat(o),
            v128.load32_splat(o, 4),
            v128.load32_splat(o, 8),
            v128.load32_splat(o, 12),
          );
          pv = v128.bitselect(zero, pv, hit);
        }
        let dpv = v128.load(da);
        if (drop) {
          const z = keepFactor(v128.load(PH + (<usize>w << 4)), thr, dscale);
          dpv = f32x4.mul(dpv, z);
          v128.store(sa, f32x4.mul(pv, z));
        } else {
          v128.store(sa, pv);
        }
        v128.store(da, f32x4.mul(f32x4.mul(pv, f32x4.sub(dpv, dd)), slope));
      }
    }
  }
}

/**
 * Backward work item (b·Hk + kh)·nChunks + k: the column blocks c ≡ k (mod nChunks) of key head
 * kh, batch b. Owns those rows of dK and dV (accumulated over every query head of the group) and
 * accumulates dQ into partial buffer k.
 */
export function backward(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const B = pi(p, P_B), nq = pi(p, P_NQ), nk = pi(p, P_NK), H = pi(p, P_H), Hk = pi(p, P_HK);
  const d = pi(p, P_D), dp = pi(p, P_DP), Br = pi(p, P_BR), Bc = pi(p, P_BC);
  const rowBlocks = pi(p, P_ROW_BLOCKS), colBlocks = pi(p, P_COL_BLOCKS);
  const scale = pf(p, P_SCALE), f16 = pi(p, P_F16) != 0, chunks = pi(p, P_CHUNKS);
  const scale2 = pf(p, P_SCALE2);
  const bounds = pu(p, P_BOUNDS), tilePtr = pu(p, P_TILE_PTR), tiles = pu(p, P_TILES);
  const sliceOf = pu(p, P_SLICE_OF);
  const qp = pu(p, P_Q), kp = pu(p, P_K), vp = pu(p, P_V), dop = pu(p, P_DO);
  const qtp = pu(p, P_QT), dotp = pu(p, P_DOT), Dp = pu(p, P_DD), lse2p = pu(p, P_LSE2);
  const dqp = pu(p, P_DQ_PART), dkp = pu(p, P_DK), dvp = pu(p, P_DV);
  const group = H / Hk, nqPad = rowBlocks * Br;
  const ls = <usize>Br << 2, ld = <usize>dp << 2;
  const ST = pu(p, P_SCRATCH) + <usize>tid * pu(p, P_SCRATCH_BYTES);
  const DPT = ST + <usize>Bc * ls;
  const DK = DPT + <usize>Bc * ls;
  const DV = DK + <usize>Bc * ld;
  const PH = DV + <usize>Bc * ld;
  const alibi = pu(p, P_ALIBI);
  const opts = pf(p, P_SOFTCAP2) != 0 || pi(p, P_DROP) != 0 || alibi != 0;
  const sv = f32x4.splat(scale);
  for (let it = nextItem(counter, items, nItems); it >= 0; it = nextItem(counter, items, nItems)) {
    const k = it % chunks, bkh = it / chunks, kh = bkh % Hk, b = bkh / Hk;
    const kb = kp + <usize>bkh * nk * ld, vb = vp + <usize>bkh * nk * ld;
    for (let c = k; c < colBlocks; c += chunks) {
      const j0 = c * Bc, cols = min(Bc, nk - j0);
      memory.fill(DK, 0, <usize>cols * ld);
      memory.fill(DV, 0, <usize>cols * ld);
      const kc = kb + <usize>j0 * ld, vc = vb + <usize>j0 * ld;
      for (let h = kh * group; h < (kh + 1) * group; h++) {
        const bh = b * H + h;
        const slice = load<i32>(sliceOf + (<usize>bh << 2));
        const list = slice * colBlocks + c;
        const bnd = bounds + (<usize>(slice * nk + j0) << 4);
        const dq = dqp + <usize>((k * B * H + bh) * nqPad) * ld;
        const t1 = load<u32>(tilePtr + (<usize>(list + 1) << 2));
        for (let t = load<u32>(tilePtr + (<usize>list << 2)); t < t1; t++) {
          const e = load<u32>(tiles + (<usize>t << 2));
          const r = <i32>(e >> 1);
          const i0 = r * Br, rows = min(Br, nq - i0), rowsPad = (rows + 7) & ~7;
          const blk = <usize>(bh * rowBlocks + r) * dp * ls;
          gemmNN(kc, ld, qtp + blk, ls, ST, ls, cols, rowsPad >> 2, dp, false);
          gemmNN(vc, ld, dotp + blk, ls, DPT, ls, cols, rowsPad >> 2, dp, false);
          const rb = <usize>(bh * nqPad + i0) << 2;
          if (opts) {
            dsTileOpt(ST, DPT, ls, cols, rowsPad, lse2p + rb, Dp + rb, (e & 1) != 0, i0, bnd, p, b, h, j0, PH, alibi ? alibi + (<usize>bh << 3) : 0, scale2);
          } else {
            dsTile(ST, DPT, ls, cols, rowsPad, lse2p + rb, Dp + rb, (e & 1) != 0, i0, bnd, scale2);
          }
          const rowOff = <usize>(bh * nq + i0) * ld;
          gemmNN(ST, ls, dop + rowOff, ld, DV, ld, cols, dp >> 2, rows, true);
          gemmNN(DPT, ls, qp + rowOff, ld, DK, ld, cols, dp >> 2, rows, true);
          gemmTN(DPT, ls, kc, ld, dq + <usize>i0 * ld, ld, rowsPad, dp >> 2, cols, 0);
        }
      }
      for (let j = 0; j < cols; j++) {
        const o = <usize>((b * nk + j0 + j) * Hk + kh) * d;
        const dkr = DK + <usize>j * ld, dvr = DV + <usize>j * ld;
        if (!f16 && (d & 3) == 0) {
          for (let x = 0; x < d; x += 4) {
            v128.store(dkp + ((o + x) << 2), f32x4.mul(v128.load(dkr + (<usize>x << 2)), sv));
            v128.store(dvp + ((o + x) << 2), v128.load(dvr + (<usize>x << 2)));
          }
        } else {
          for (let x = 0; x < d; x++) {
            storeOut(dkp, o + x, load<f32>(dkr + (<usize>x << 2)) * scale, f16);
            storeOut(dvp, o + x, load<f32>(dvr + (<usize>x << 2)), f16);
          }
        }
      }
    }
  }
}

/**
 * dQ reduction, work item b·H·rowBlocks + h·rowBlocks + r: dq = scale · Σ_k partial_k, summed in
 * chunk order (so the bits do not depend on how the work was split), written in the user layout.
 */
export function bwdReduce(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const B = pi(p, P_B), nq = pi(p, P_NQ), H = pi(p, P_H), d = pi(p, P_D), dp = pi(p, P_DP);
  const Br = pi(p, P_BR), rowBlocks = pi(p, P_ROW_BLOCKS), chunks = pi(p, P_CHUNKS);
  const scale = pf(p, P_SCALE), f16 = pi(p, P_F16) != 0;
  const dqp = pu(p, P_DQ_PART), dqo = pu(p, P_DQ);
  const nqPad = rowBlocks * Br, ld = <usize>dp << 2;
  const part = <usize>B * H * nqPad * ld;
  const sv = f32x4.splat(scale);
  for (let it = nextItem(counter, items, nItems); it >= 0; it = nextItem(counter, items, nItems)) {
    const r = it % rowBlocks, bh = it / rowBlocks, h = bh % H, b = bh / H;
    const i0 = r * Br, rows = min(Br, nq - i0);
    for (let i = 0; i < rows; i++) {
      const src = dqp + <usize>(bh * nqPad + i0 + i) * ld;
      const o = <usize>((b * nq + i0 + i) * H + h) * d;
      for (let x = 0; x < dp; x += 4) {
        let s = v128.load(src + (<usize>x << 2));
        for (let k = 1; k < chunks; k++) s = f32x4.add(s, v128.load(src + <usize>k * part + (<usize>x << 2)));
        s = f32x4.mul(s, sv);
        if (!f16 && x + 4 <= d) {
          v128.store(dqo + ((o + x) << 2), s);
        } else {
          const n = min(4, d - x);
          if (n > 0) storeOut(dqo, o + x, f32x4.extract_lane(s, 0), f16);
          if (n > 1) storeOut(dqo, o + x + 1, f32x4.extract_lane(s, 1), f16);
          if (n > 2) storeOut(dqo, o + x + 2, f32x4.extract_lane(s, 2), f16);
          if (n > 3) storeOut(dqo, o + x + 3, f32x4.extract_lane(s, 3), f16);
        }
      }
    }
  }
}
