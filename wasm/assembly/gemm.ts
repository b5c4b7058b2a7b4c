// GEMM drivers: tile a product with the register-blocked micro-kernels (6 or 4 rows of A by 2 or
// 1 vectors of B, generated from one template in wasm/microkernels.ts): NN, TN (A stored
// transposed) and the score GEMM (TN into a fresh C, with the column maxima folded in).

import { madd } from "./math";
import { nn1x1, nn4x1, nn4x2, nn6x1, nn6x2, st4x2, tn1x1, tn4x1, tn4x2, tn6x1, tn6x2 } from "./microkernels";

// All matrices are f32, row-major, strides in bytes. N is counted in 4-lane vectors.

/**
 * NN: C[m][n] (+)= Σ_k A[m][k]·B[k][n] for m < M, n < 4·NV, k < K. A's elements are broadcast
 * (6 rows at a time), B's rows are loaded as vectors (2 at a time). `acc` false: C is overwritten.
 */
export function gemmNN(
  A: usize,
  la: usize,
  Bm: usize,
  lb: usize,
  C: usize,
  lc: usize,
  M: i32,
  NV: i32,
  K: i32,
  acc: bool,
): void {
  let m = 0;
  for (; m + 6 <= M && M - m != 8; m += 6) {
    const a = A + <usize>m * la;
    const c = C + <usize>m * lc;
    let n = 0;
    for (; n + 2 <= NV; n += 2) nn6x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, acc, 0, 0);
    if (n < NV) nn6x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, acc, 0, 0);
  }
  for (; m + 4 <= M; m += 4) {
    const a = A + <usize>m * la;
    const c = C + <usize>m * lc;
    let n = 0;
    for (; n + 2 <= NV; n += 2) nn4x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, acc, 0, 0);
    if (n < NV) nn4x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, acc, 0, 0);
  }
  for (; m < M; m++) {
    const a = A + <usize>m * la;
    const c = C + <usize>m * lc;
    for (let n = 0; n < NV; n++) nn1x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, acc, 0, 0);
  }
}

/**
 * TN: C[m][n] = C[m][n]·alpha[m] + Σ_k A[k][m]·B[k][n] for m < M, n < 4·NV, k < K: A is stored
 * transposed (k-major), so the 6 broadcast elements of a step are adjacent. `alpha` 0: no scaling.
 */
export function gemmTN(
  A: usize,
  la: usize,
  Bm: usize,
  lb: usize,
  C: usize,
  lc: usize,
  M: i32,
  NV: i32,
  K: i32,
  alpha: usize,
): void {
  let m = 0;
  for (; m + 6 <= M && M - m != 8; m += 6) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    const al = alpha ? alpha + (<usize>m << 2) : 0;
    let n = 0;
    for (; n + 2 <= NV; n += 2) tn6x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, true, al, 0);
    if (n < NV) tn6x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, true, al, 0);
  }
  for (; m + 4 <= M; m += 4) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    const al = alpha ? alpha + (<usize>m << 2) : 0;
    let n = 0;
    for (; n + 2 <= NV; n += 2) tn4x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, true, al, 0);
    if (n < NV) tn4x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, true, al, 0);
  }
  for (; m < M; m++) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    const al = alpha ? alpha + (<usize>m << 2) : 0;
    for (let n = 0; n < NV; n++) tn1x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, true, al, 0);
  }
}

/**
 * The score GEMM: C[m][n] = Σ_k A[k][m]·B[k][n] (TN, C overwritten) for m < M, n < 4·NV, k < K,
 * A a transposed K panel (k-major, so the 6 broadcast elements of a step are adjacent), times the
 * f32 at `SC` (scale · log2 e on the f32 scores, as FlashAttention-2 applies it). `MX` (0: none):
 * the column maxima over m are folded into MX[n] (the tile's row maxima in the softmax, saving it
 * a pass over the tile).
 */
export function gemmScores(
  A: usize,
  la: usize,
  Bm: usize,
  lb: usize,
  C: usize,
  lc: usize,
  M: i32,
  NV: i32,
  K: i32,
  MX: usize,
  SC: usize,
): void {
  let m = 0;
  for (; m + 6 <= M && M - m != 8; m += 6) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    let n = 0;
    for (; n + 2 <= NV; n += 2) {
      tn6x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, false, SC, MX ? MX + (<usize>n << 4) : 0);
    }
    if (n < NV) stCol(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, MX ? MX + (<usize>n << 4) : 0, 6, SC);
  }
  for (; m + 4 <= M; m += 4) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    let n = 0;
    for (; n + 2 <= NV; n += 2) {
      st4x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, false, SC, MX ? MX + (<usize>n << 4) : 0);
    }
    if (n < NV) stCol(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, MX ? MX + (<usize>n << 4) : 0, 4, SC);
  }
  if (m < M) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    for (let n = 0; n < NV; n++) {
      stCol(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, MX ? MX + (<usize>n << 4) : 0, M - m, SC);
    }
  }
}

/** One column vector of `rows` rows (taken two at a time): remainders of the score GEMM. */
function stCol(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, mx: usize, rows: i32, sc: usize): void {
  const scale = v128.load32_splat(sc);
  for (let r = 0; r < rows; r += 2) {
    const two = rows - r >= 2;
    let c0 = f32x4.splat(0), c1 = c0;
    let ak = a + (<usize>r << 2), bk = b;
    for (let k = 0; k < K; k++) {
      const b0 = v128.load(bk);
      c0 = madd(v128.load32_splat(ak), b0, c0);
      if (two) c1 = madd(v128.load32_splat(ak, 4), b0, c1);
      ak += la;
      bk += lb;
    }
    c0 = f32x4.mul(c0, scale);
    c1 = f32x4.mul(c1, scale);
    v128.store(c + <usize>r * lc, c0);
    if (two) v128.store(c + <usize>(r + 1) * lc, c1);
    if (mx) {
      let m = f32x4.pmax(v128.load(mx), c0);
      if (two) m = f32x4.pmax(m, c1);
      v128.store(mx, m);
    }
  }
}
