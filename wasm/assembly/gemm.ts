// GEMM micro-kernels: register-blocked f32x4 products (6 or 4 rows of A by 2 or 1 vectors of B)
// and the drivers that tile a product with them: NN, TN (A stored transposed) and the score
// GEMM (TN into a fresh C, with the column maxima folded in).

import { madd } from "./math";

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
    for (; n + 2 <= NV; n += 2) nn6x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, acc);
    if (n < NV) nn6x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, acc);
  }
  for (; m + 4 <= M; m += 4) {
    const a = A + <usize>m * la;
    const c = C + <usize>m * lc;
    let n = 0;
    for (; n + 2 <= NV; n += 2) nn4x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, acc);
    if (n < NV) nn4x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, acc);
  }
  for (; m < M; m++) {
    const a = A + <usize>m * la;
    const c = C + <usize>m * lc;
    for (let n = 0; n < NV; n++) nn1x1(a, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), K, acc);
  }
}

@inline function nn6x2(a0: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  let c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  if (acc) {
    c00 = v128.load(c); c01 = v128.load(c, 16);
    c10 = v128.load(c + lc); c11 = v128.load(c + lc, 16);
    c20 = v128.load(c + 2 * lc); c21 = v128.load(c + 2 * lc, 16);
    c30 = v128.load(c + 3 * lc); c31 = v128.load(c + 3 * lc, 16);
    c40 = v128.load(c + 4 * lc); c41 = v128.load(c + 4 * lc, 16);
    c50 = v128.load(c + 5 * lc); c51 = v128.load(c + 5 * lc, 16);
  }
  const a1 = a0 + la, a2 = a1 + la, a3 = a2 + la, a4 = a3 + la, a5 = a4 + la;
  let off: usize = 0;
  const end = <usize>K << 2;
  let b0: v128, b1: v128, x: v128;
  // two k steps per iteration (+10% over one on this machine), then the odd one
  while (off + 8 <= end) {
    b0 = v128.load(b); b1 = v128.load(b, 16);
    x = v128.load32_splat(a0 + off);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = v128.load32_splat(a1 + off);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = v128.load32_splat(a2 + off);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = v128.load32_splat(a3 + off);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    x = v128.load32_splat(a4 + off);
    c40 = madd(x, b0, c40); c41 = madd(x, b1, c41);
    x = v128.load32_splat(a5 + off);
    c50 = madd(x, b0, c50); c51 = madd(x, b1, c51);
    off += 4;
    b += lb;
    b0 = v128.load(b); b1 = v128.load(b, 16);
    x = v128.load32_splat(a0 + off);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = v128.load32_splat(a1 + off);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = v128.load32_splat(a2 + off);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = v128.load32_splat(a3 + off);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    x = v128.load32_splat(a4 + off);
    c40 = madd(x, b0, c40); c41 = madd(x, b1, c41);
    x = v128.load32_splat(a5 + off);
    c50 = madd(x, b0, c50); c51 = madd(x, b1, c51);
    off += 4;
    b += lb;
  }
  if (off < end) {
    b0 = v128.load(b); b1 = v128.load(b, 16);
    x = v128.load32_splat(a0 + off);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = v128.load32_splat(a1 + off);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = v128.load32_splat(a2 + off);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = v128.load32_splat(a3 + off);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    x = v128.load32_splat(a4 + off);
    c40 = madd(x, b0, c40); c41 = madd(x, b1, c41);
    x = v128.load32_splat(a5 + off);
    c50 = madd(x, b0, c50); c51 = madd(x, b1, c51);
    off += 4;
    b += lb;
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + lc, c10); v128.store(c + lc, c11, 16);
  v128.store(c + 2 * lc, c20); v128.store(c + 2 * lc, c21, 16);
  v128.store(c + 3 * lc, c30); v128.store(c + 3 * lc, c31, 16);
  v128.store(c + 4 * lc, c40); v128.store(c + 4 * lc, c41, 16);
  v128.store(c + 5 * lc, c50); v128.store(c + 5 * lc, c51, 16);
}

@inline function nn6x1(a0: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool): void {
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  if (acc) {
    c0 = v128.load(c); c1 = v128.load(c + lc); c2 = v128.load(c + 2 * lc);
    c3 = v128.load(c + 3 * lc); c4 = v128.load(c + 4 * lc); c5 = v128.load(c + 5 * lc);
  }
  const a1 = a0 + la, a2 = a1 + la, a3 = a2 + la, a4 = a3 + la, a5 = a4 + la;
  let off: usize = 0;
  const end = <usize>K << 2;
  while (off < end) {
    const b0 = v128.load(b);
    c0 = madd(v128.load32_splat(a0 + off), b0, c0);
    c1 = madd(v128.load32_splat(a1 + off), b0, c1);
    c2 = madd(v128.load32_splat(a2 + off), b0, c2);
    c3 = madd(v128.load32_splat(a3 + off), b0, c3);
    c4 = madd(v128.load32_splat(a4 + off), b0, c4);
    c5 = madd(v128.load32_splat(a5 + off), b0, c5);
    off += 4;
    b += lb;
  }
  v128.store(c, c0); v128.store(c + lc, c1); v128.store(c + 2 * lc, c2);
  v128.store(c + 3 * lc, c3); v128.store(c + 4 * lc, c4); v128.store(c + 5 * lc, c5);
}

@inline function nn4x2(a0: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  if (acc) {
    c00 = v128.load(c); c01 = v128.load(c, 16);
    c10 = v128.load(c + lc); c11 = v128.load(c + lc, 16);
    c20 = v128.load(c + 2 * lc); c21 = v128.load(c + 2 * lc, 16);
    c30 = v128.load(c + 3 * lc); c31 = v128.load(c + 3 * lc, 16);
  }
  const a1 = a0 + la, a2 = a1 + la, a3 = a2 + la;
  let off: usize = 0;
  const end = <usize>K << 2;
  while (off < end) {
    const b0 = v128.load(b), b1 = v128.load(b, 16);
    let x = v128.load32_splat(a0 + off);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = v128.load32_splat(a1 + off);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = v128.load32_splat(a2 + off);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = v128.load32_splat(a3 + off);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    off += 4;
    b += lb;
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + lc, c10); v128.store(c + lc, c11, 16);
  v128.store(c + 2 * lc, c20); v128.store(c + 2 * lc, c21, 16);
  v128.store(c + 3 * lc, c30); v128.store(c + 3 * lc, c31, 16);
}

@inline function nn4x1(a0: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool): void {
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  if (acc) {
    c0 = v128.load(c); c1 = v128.load(c + lc); c2 = v128.load(c + 2 * lc); c3 = v128.load(c + 3 * lc);
  }
  const a1 = a0 + la, a2 = a1 + la, a3 = a2 + la;
  let off: usize = 0;
  const end = <usize>K << 2;
  while (off < end) {
    const b0 = v128.load(b);
    c0 = madd(v128.load32_splat(a0 + off), b0, c0);
    c1 = madd(v128.load32_splat(a1 + off), b0, c1);
    c2 = madd(v128.load32_splat(a2 + off), b0, c2);
    c3 = madd(v128.load32_splat(a3 + off), b0, c3);
    off += 4;
    b += lb;
  }
  v128.store(c, c0); v128.store(c + lc, c1); v128.store(c + 2 * lc, c2); v128.store(c + 3 * lc, c3);
}

@inline function nn1x1(a: usize, b: usize, lb: usize, c: usize, K: i32, acc: bool): void {
  let c0 = acc ? v128.load(c) : f32x4.splat(0);
  for (let k = 0; k < K; k++) {
    c0 = madd(v128.load32_splat(a + (<usize>k << 2)), v128.load(b), c0);
    b += lb;
  }
  v128.store(c, c0);
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
    for (; n + 2 <= NV; n += 2) tn6x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, al, 0, true);
    if (n < NV) tn6x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, al);
  }
  for (; m + 4 <= M; m += 4) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    const al = alpha ? alpha + (<usize>m << 2) : 0;
    let n = 0;
    for (; n + 2 <= NV; n += 2) tn4x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, al);
    if (n < NV) tn4x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, al);
  }
  for (; m < M; m++) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    const al = alpha ? alpha + (<usize>m << 2) : 0;
    for (let n = 0; n < NV; n++) tn1x1(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), K, al);
  }
}

/**
 * The 6×2 TN micro-kernel, shared by the PV product and the score GEMM (all flags are constants at
 * each call site, so the inlined copies keep only their own branches): `acc` C is loaded (and
 * scaled by alpha when `al` is not 0), else it starts from zero; `mx` not 0: the tile's column
 * maxima are merged into mx after the stores (the score GEMM's fused row maxima of Sᵀ).
 */
@inline function tn6x2(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, al: usize, mx: usize, acc: bool): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  let c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  if (acc) {
    c00 = v128.load(c); c01 = v128.load(c, 16);
    c10 = v128.load(c + lc); c11 = v128.load(c + lc, 16);
    c20 = v128.load(c + 2 * lc); c21 = v128.load(c + 2 * lc, 16);
    c30 = v128.load(c + 3 * lc); c31 = v128.load(c + 3 * lc, 16);
    c40 = v128.load(c + 4 * lc); c41 = v128.load(c + 4 * lc, 16);
    c50 = v128.load(c + 5 * lc); c51 = v128.load(c + 5 * lc, 16);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    s = v128.load32_splat(al, 4); c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    s = v128.load32_splat(al, 8); c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    s = v128.load32_splat(al, 12); c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
    s = v128.load32_splat(al, 16); c40 = f32x4.mul(c40, s); c41 = f32x4.mul(c41, s);
    s = v128.load32_splat(al, 20); c50 = f32x4.mul(c50, s); c51 = f32x4.mul(c51, s);
  }
  let b0: v128, b1: v128, x: v128, av: v128;
  let k = 0;
  // two k steps per iteration (+10% over one on this machine), then the odd one
  for (; k + 2 <= K; k += 2) {
    b0 = v128.load(b); b1 = v128.load(b, 16);
    av = v128.load(a);
    x = i32x4.shuffle(av, av, 0, 0, 0, 0);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = i32x4.shuffle(av, av, 1, 1, 1, 1);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = i32x4.shuffle(av, av, 2, 2, 2, 2);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = i32x4.shuffle(av, av, 3, 3, 3, 3);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    av = v128.load64_splat(a, 16);
    x = i32x4.shuffle(av, av, 0, 0, 0, 0);
    c40 = madd(x, b0, c40); c41 = madd(x, b1, c41);
    x = i32x4.shuffle(av, av, 1, 1, 1, 1);
    c50 = madd(x, b0, c50); c51 = madd(x, b1, c51);
    a += la;
    b += lb;
    b0 = v128.load(b); b1 = v128.load(b, 16);
    av = v128.load(a);
    x = i32x4.shuffle(av, av, 0, 0, 0, 0);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = i32x4.shuffle(av, av, 1, 1, 1, 1);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = i32x4.shuffle(av, av, 2, 2, 2, 2);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = i32x4.shuffle(av, av, 3, 3, 3, 3);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    av = v128.load64_splat(a, 16);
    x = i32x4.shuffle(av, av, 0, 0, 0, 0);
    c40 = madd(x, b0, c40); c41 = madd(x, b1, c41);
    x = i32x4.shuffle(av, av, 1, 1, 1, 1);
    c50 = madd(x, b0, c50); c51 = madd(x, b1, c51);
    a += la;
    b += lb;
  }
  if (k < K) {
    b0 = v128.load(b); b1 = v128.load(b, 16);
    av = v128.load(a);
    x = i32x4.shuffle(av, av, 0, 0, 0, 0);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = i32x4.shuffle(av, av, 1, 1, 1, 1);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = i32x4.shuffle(av, av, 2, 2, 2, 2);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = i32x4.shuffle(av, av, 3, 3, 3, 3);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    av = v128.load64_splat(a, 16);
    x = i32x4.shuffle(av, av, 0, 0, 0, 0);
    c40 = madd(x, b0, c40); c41 = madd(x, b1, c41);
    x = i32x4.shuffle(av, av, 1, 1, 1, 1);
    c50 = madd(x, b0, c50); c51 = madd(x, b1, c51);
    a += la;
    b += lb;
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + lc, c10); v128.store(c + lc, c11, 16);
  v128.store(c + 2 * lc, c20); v128.store(c + 2 * lc, c21, 16);
  v128.store(c + 3 * lc, c30); v128.store(c + 3 * lc, c31, 16);
  v128.store(c + 4 * lc, c40); v128.store(c + 4 * lc, c41, 16);
  v128.store(c + 5 * lc, c50); v128.store(c + 5 * lc, c51, 16);
  if (mx) {
    const m0 = f32x4.pmax(f32x4.pmax(f32x4.pmax(c00, c10), f32x4.pmax(c20, c30)), f32x4.pmax(c40, c50));
    const m1 = f32x4.pmax(f32x4.pmax(f32x4.pmax(c01, c11), f32x4.pmax(c21, c31)), f32x4.pmax(c41, c51));
    v128.store(mx, f32x4.pmax(v128.load(mx), m0));
    v128.store(mx, f32x4.pmax(v128.load(mx, 16), m1), 16);
  }
}

@inline function tn6x1(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, al: usize): void {
  let c0 = v128.load(c), c1 = v128.load(c + lc), c2 = v128.load(c + 2 * lc);
  let c3 = v128.load(c + 3 * lc), c4 = v128.load(c + 4 * lc), c5 = v128.load(c + 5 * lc);
  if (al) {
    c0 = f32x4.mul(c0, v128.load32_splat(al));
    c1 = f32x4.mul(c1, v128.load32_splat(al, 4));
    c2 = f32x4.mul(c2, v128.load32_splat(al, 8));
    c3 = f32x4.mul(c3, v128.load32_splat(al, 12));
    c4 = f32x4.mul(c4, v128.load32_splat(al, 16));
    c5 = f32x4.mul(c5, v128.load32_splat(al, 20));
  }
  for (let k = 0; k < K; k++) {
    const b0 = v128.load(b);
    c0 = madd(v128.load32_splat(a), b0, c0);
    c1 = madd(v128.load32_splat(a, 4), b0, c1);
    c2 = madd(v128.load32_splat(a, 8), b0, c2);
    c3 = madd(v128.load32_splat(a, 12), b0, c3);
    c4 = madd(v128.load32_splat(a, 16), b0, c4);
    c5 = madd(v128.load32_splat(a, 20), b0, c5);
    a += la;
    b += lb;
  }
  v128.store(c, c0); v128.store(c + lc, c1); v128.store(c + 2 * lc, c2);
  v128.store(c + 3 * lc, c3); v128.store(c + 4 * lc, c4); v128.store(c + 5 * lc, c5);
}

@inline function tn4x2(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, al: usize): void {
  let c00 = v128.load(c), c01 = v128.load(c, 16);
  let c10 = v128.load(c + lc), c11 = v128.load(c + lc, 16);
  let c20 = v128.load(c + 2 * lc), c21 = v128.load(c + 2 * lc, 16);
  let c30 = v128.load(c + 3 * lc), c31 = v128.load(c + 3 * lc, 16);
  if (al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    s = v128.load32_splat(al, 4); c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    s = v128.load32_splat(al, 8); c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    s = v128.load32_splat(al, 12); c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
  }
  for (let k = 0; k < K; k++) {
    const b0 = v128.load(b), b1 = v128.load(b, 16), av = v128.load(a);
    let x = i32x4.shuffle(av, av, 0, 0, 0, 0);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = i32x4.shuffle(av, av, 1, 1, 1, 1);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = i32x4.shuffle(av, av, 2, 2, 2, 2);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = i32x4.shuffle(av, av, 3, 3, 3, 3);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    a += la;
    b += lb;
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + lc, c10); v128.store(c + lc, c11, 16);
  v128.store(c + 2 * lc, c20); v128.store(c + 2 * lc, c21, 16);
  v128.store(c + 3 * lc, c30); v128.store(c + 3 * lc, c31, 16);
}

@inline function tn4x1(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, al: usize): void {
  let c0 = v128.load(c), c1 = v128.load(c + lc), c2 = v128.load(c + 2 * lc), c3 = v128.load(c + 3 * lc);
  if (al) {
    c0 = f32x4.mul(c0, v128.load32_splat(al));
    c1 = f32x4.mul(c1, v128.load32_splat(al, 4));
    c2 = f32x4.mul(c2, v128.load32_splat(al, 8));
    c3 = f32x4.mul(c3, v128.load32_splat(al, 12));
  }
  for (let k = 0; k < K; k++) {
    const b0 = v128.load(b), av = v128.load(a);
    c0 = madd(i32x4.shuffle(av, av, 0, 0, 0, 0), b0, c0);
    c1 = madd(i32x4.shuffle(av, av, 1, 1, 1, 1), b0, c1);
    c2 = madd(i32x4.shuffle(av, av, 2, 2, 2, 2), b0, c2);
    c3 = madd(i32x4.shuffle(av, av, 3, 3, 3, 3), b0, c3);
    a += la;
    b += lb;
  }
  v128.store(c, c0); v128.store(c + lc, c1); v128.store(c + 2 * lc, c2); v128.store(c + 3 * lc, c3);
}

@inline function tn1x1(a: usize, la: usize, b: usize, lb: usize, c: usize, K: i32, al: usize): void {
  let c0 = v128.load(c);
  if (al) c0 = f32x4.mul(c0, v128.load32_splat(al));
  for (let k = 0; k < K; k++) {
    c0 = madd(v128.load32_splat(a), v128.load(b), c0);
    a += la;
    b += lb;
  }
  v128.store(c, c0);
}

/**
 * The score GEMM: C[m][n] = Σ_k A[k][m]·B[k][n] (TN, C overwritten) for m < M, n < 4·NV, k < K,
 * A a transposed K panel (k-major, so the 6 broadcast elements of a step are adjacent). `MX`
 * (0: none): the column maxima over m are folded into MX[n] (the tile's row maxima in the
 * softmax, saving it a pass over the tile).
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
): void {
  let m = 0;
  for (; m + 6 <= M && M - m != 8; m += 6) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    let n = 0;
    for (; n + 2 <= NV; n += 2) {
      tn6x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, 0, MX ? MX + (<usize>n << 4) : 0, false);
    }
    if (n < NV) stCol(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, MX ? MX + (<usize>n << 4) : 0, 6);
  }
  for (; m + 4 <= M; m += 4) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    let n = 0;
    for (; n + 2 <= NV; n += 2) {
      st4x2(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, MX ? MX + (<usize>n << 4) : 0);
    }
    if (n < NV) stCol(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, MX ? MX + (<usize>n << 4) : 0, 4);
  }
  if (m < M) {
    const a = A + (<usize>m << 2);
    const c = C + <usize>m * lc;
    for (let n = 0; n < NV; n++) {
      stCol(a, la, Bm + (<usize>n << 4), lb, c + (<usize>n << 4), lc, K, MX ? MX + (<usize>n << 4) : 0, M - m);
    }
  }
}

@inline function st4x2(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, mx: usize): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (let k = 0; k < K; k++) {
    const b0 = v128.load(b), b1 = v128.load(b, 16);
    let x = v128.load32_splat(a);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = v128.load32_splat(a, 4);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = v128.load32_splat(a, 8);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = v128.load32_splat(a, 12);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    a += la;
    b += lb;
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + lc, c10); v128.store(c + lc, c11, 16);
  v128.store(c + 2 * lc, c20); v128.store(c + 2 * lc, c21, 16);
  v128.store(c + 3 * lc, c30); v128.store(c + 3 * lc, c31, 16);
  if (mx) {
    v128.store(mx, f32x4.pmax(v128.load(mx), f32x4.pmax(f32x4.pmax(c00, c10), f32x4.pmax(c20, c30))));
    v128.store(mx, f32x4.pmax(v128.load(mx, 16), f32x4.pmax(f32x4.pmax(c01, c11), f32x4.pmax(c21, c31))), 16);
  }
}


/** One column vector of `rows` rows (taken two at a time): remainders of the score GEMM. */
function stCol(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, mx: usize, rows: i32): void {
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
    v128.store(c + <usize>r * lc, c0);
    if (two) v128.store(c + <usize>(r + 1) * lc, c1);
    if (mx) {
      let m = f32x4.pmax(v128.load(mx), c0);
      if (two) m = f32x4.pmax(m, c1);
      v128.store(mx, m);
    }
  }
}
