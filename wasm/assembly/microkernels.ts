// Generated from wasm/microkernels.ts by wasm/build.ts: the GEMM micro-kernels (see there).

import { madd } from "./math";

@inline export function nn6x2(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
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
  const a1 = a + la, a2 = a1 + la, a3 = a2 + la, a4 = a3 + la, a5 = a4 + la;
  let off: usize = 0;
  const end = <usize>K << 2;
  while (off + 8 <= end) {
    b0 = v128.load(b); b1 = v128.load(b, 16);
    x = v128.load32_splat(a + off);
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
    x = v128.load32_splat(a + off);
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
    x = v128.load32_splat(a + off);
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
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
    c40 = f32x4.mul(c40, s); c41 = f32x4.mul(c41, s);
    c50 = f32x4.mul(c50, s); c51 = f32x4.mul(c51, s);
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

@inline export function nn6x1(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0), c10 = c00, c20 = c00, c30 = c00, c40 = c00, c50 = c00;
  if (acc) {
    c00 = v128.load(c);
    c10 = v128.load(c + lc);
    c20 = v128.load(c + 2 * lc);
    c30 = v128.load(c + 3 * lc);
    c40 = v128.load(c + 4 * lc);
    c50 = v128.load(c + 5 * lc);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s);
    s = v128.load32_splat(al, 4); c10 = f32x4.mul(c10, s);
    s = v128.load32_splat(al, 8); c20 = f32x4.mul(c20, s);
    s = v128.load32_splat(al, 12); c30 = f32x4.mul(c30, s);
    s = v128.load32_splat(al, 16); c40 = f32x4.mul(c40, s);
    s = v128.load32_splat(al, 20); c50 = f32x4.mul(c50, s);
  }
  let b0: v128, x: v128, av: v128;
  const a1 = a + la, a2 = a1 + la, a3 = a2 + la, a4 = a3 + la, a5 = a4 + la;
  let off: usize = 0;
  const end = <usize>K << 2;
  while (off < end) {
    b0 = v128.load(b);
    x = v128.load32_splat(a + off);
    c00 = madd(x, b0, c00);
    x = v128.load32_splat(a1 + off);
    c10 = madd(x, b0, c10);
    x = v128.load32_splat(a2 + off);
    c20 = madd(x, b0, c20);
    x = v128.load32_splat(a3 + off);
    c30 = madd(x, b0, c30);
    x = v128.load32_splat(a4 + off);
    c40 = madd(x, b0, c40);
    x = v128.load32_splat(a5 + off);
    c50 = madd(x, b0, c50);
    off += 4;
    b += lb;
  }
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s);
    c10 = f32x4.mul(c10, s);
    c20 = f32x4.mul(c20, s);
    c30 = f32x4.mul(c30, s);
    c40 = f32x4.mul(c40, s);
    c50 = f32x4.mul(c50, s);
  }
  v128.store(c, c00);
  v128.store(c + lc, c10);
  v128.store(c + 2 * lc, c20);
  v128.store(c + 3 * lc, c30);
  v128.store(c + 4 * lc, c40);
  v128.store(c + 5 * lc, c50);
  if (mx) {
    const m0 = f32x4.pmax(f32x4.pmax(f32x4.pmax(c00, c10), f32x4.pmax(c20, c30)), f32x4.pmax(c40, c50));
    v128.store(mx, f32x4.pmax(v128.load(mx), m0));
  }
}

@inline export function nn4x2(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  if (acc) {
    c00 = v128.load(c); c01 = v128.load(c, 16);
    c10 = v128.load(c + lc); c11 = v128.load(c + lc, 16);
    c20 = v128.load(c + 2 * lc); c21 = v128.load(c + 2 * lc, 16);
    c30 = v128.load(c + 3 * lc); c31 = v128.load(c + 3 * lc, 16);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    s = v128.load32_splat(al, 4); c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    s = v128.load32_splat(al, 8); c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    s = v128.load32_splat(al, 12); c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
  }
  let b0: v128, b1: v128, x: v128, av: v128;
  const a1 = a + la, a2 = a1 + la, a3 = a2 + la;
  let off: usize = 0;
  const end = <usize>K << 2;
  while (off < end) {
    b0 = v128.load(b); b1 = v128.load(b, 16);
    x = v128.load32_splat(a + off);
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
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + lc, c10); v128.store(c + lc, c11, 16);
  v128.store(c + 2 * lc, c20); v128.store(c + 2 * lc, c21, 16);
  v128.store(c + 3 * lc, c30); v128.store(c + 3 * lc, c31, 16);
  if (mx) {
    const m0 = f32x4.pmax(f32x4.pmax(c00, c10), f32x4.pmax(c20, c30));
    const m1 = f32x4.pmax(f32x4.pmax(c01, c11), f32x4.pmax(c21, c31));
    v128.store(mx, f32x4.pmax(v128.load(mx), m0));
    v128.store(mx, f32x4.pmax(v128.load(mx, 16), m1), 16);
  }
}

@inline export function nn4x1(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0), c10 = c00, c20 = c00, c30 = c00;
  if (acc) {
    c00 = v128.load(c);
    c10 = v128.load(c + lc);
    c20 = v128.load(c + 2 * lc);
    c30 = v128.load(c + 3 * lc);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s);
    s = v128.load32_splat(al, 4); c10 = f32x4.mul(c10, s);
    s = v128.load32_splat(al, 8); c20 = f32x4.mul(c20, s);
    s = v128.load32_splat(al, 12); c30 = f32x4.mul(c30, s);
  }
  let b0: v128, x: v128, av: v128;
  const a1 = a + la, a2 = a1 + la, a3 = a2 + la;
  let off: usize = 0;
  const end = <usize>K << 2;
  while (off < end) {
    b0 = v128.load(b);
    x = v128.load32_splat(a + off);
    c00 = madd(x, b0, c00);
    x = v128.load32_splat(a1 + off);
    c10 = madd(x, b0, c10);
    x = v128.load32_splat(a2 + off);
    c20 = madd(x, b0, c20);
    x = v128.load32_splat(a3 + off);
    c30 = madd(x, b0, c30);
    off += 4;
    b += lb;
  }
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s);
    c10 = f32x4.mul(c10, s);
    c20 = f32x4.mul(c20, s);
    c30 = f32x4.mul(c30, s);
  }
  v128.store(c, c00);
  v128.store(c + lc, c10);
  v128.store(c + 2 * lc, c20);
  v128.store(c + 3 * lc, c30);
  if (mx) {
    const m0 = f32x4.pmax(f32x4.pmax(c00, c10), f32x4.pmax(c20, c30));
    v128.store(mx, f32x4.pmax(v128.load(mx), m0));
  }
}

@inline export function nn1x1(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0);
  if (acc) {
    c00 = v128.load(c);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s);
  }
  let b0: v128, x: v128, av: v128;
  let off: usize = 0;
  const end = <usize>K << 2;
  while (off < end) {
    b0 = v128.load(b);
    x = v128.load32_splat(a + off);
    c00 = madd(x, b0, c00);
    off += 4;
    b += lb;
  }
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s);
  }
  v128.store(c, c00);
}

@inline export function tn6x2(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
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
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
    c40 = f32x4.mul(c40, s); c41 = f32x4.mul(c41, s);
    c50 = f32x4.mul(c50, s); c51 = f32x4.mul(c51, s);
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

@inline export function tn6x1(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0), c10 = c00, c20 = c00, c30 = c00, c40 = c00, c50 = c00;
  if (acc) {
    c00 = v128.load(c);
    c10 = v128.load(c + lc);
    c20 = v128.load(c + 2 * lc);
    c30 = v128.load(c + 3 * lc);
    c40 = v128.load(c + 4 * lc);
    c50 = v128.load(c + 5 * lc);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s);
    s = v128.load32_splat(al, 4); c10 = f32x4.mul(c10, s);
    s = v128.load32_splat(al, 8); c20 = f32x4.mul(c20, s);
    s = v128.load32_splat(al, 12); c30 = f32x4.mul(c30, s);
    s = v128.load32_splat(al, 16); c40 = f32x4.mul(c40, s);
    s = v128.load32_splat(al, 20); c50 = f32x4.mul(c50, s);
  }
  let b0: v128, x: v128, av: v128;
  let k = 0;
  for (; k < K; k++) {
    b0 = v128.load(b);
    x = v128.load32_splat(a);
    c00 = madd(x, b0, c00);
    x = v128.load32_splat(a, 4);
    c10 = madd(x, b0, c10);
    x = v128.load32_splat(a, 8);
    c20 = madd(x, b0, c20);
    x = v128.load32_splat(a, 12);
    c30 = madd(x, b0, c30);
    x = v128.load32_splat(a, 16);
    c40 = madd(x, b0, c40);
    x = v128.load32_splat(a, 20);
    c50 = madd(x, b0, c50);
    a += la;
    b += lb;
  }
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s);
    c10 = f32x4.mul(c10, s);
    c20 = f32x4.mul(c20, s);
    c30 = f32x4.mul(c30, s);
    c40 = f32x4.mul(c40, s);
    c50 = f32x4.mul(c50, s);
  }
  v128.store(c, c00);
  v128.store(c + lc, c10);
  v128.store(c + 2 * lc, c20);
  v128.store(c + 3 * lc, c30);
  v128.store(c + 4 * lc, c40);
  v128.store(c + 5 * lc, c50);
  if (mx) {
    const m0 = f32x4.pmax(f32x4.pmax(f32x4.pmax(c00, c10), f32x4.pmax(c20, c30)), f32x4.pmax(c40, c50));
    v128.store(mx, f32x4.pmax(v128.load(mx), m0));
  }
}

@inline export function tn4x2(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  if (acc) {
    c00 = v128.load(c); c01 = v128.load(c, 16);
    c10 = v128.load(c + lc); c11 = v128.load(c + lc, 16);
    c20 = v128.load(c + 2 * lc); c21 = v128.load(c + 2 * lc, 16);
    c30 = v128.load(c + 3 * lc); c31 = v128.load(c + 3 * lc, 16);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    s = v128.load32_splat(al, 4); c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    s = v128.load32_splat(al, 8); c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    s = v128.load32_splat(al, 12); c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
  }
  let b0: v128, b1: v128, x: v128, av: v128;
  let k = 0;
  for (; k < K; k++) {
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
    a += la;
    b += lb;
  }
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + lc, c10); v128.store(c + lc, c11, 16);
  v128.store(c + 2 * lc, c20); v128.store(c + 2 * lc, c21, 16);
  v128.store(c + 3 * lc, c30); v128.store(c + 3 * lc, c31, 16);
  if (mx) {
    const m0 = f32x4.pmax(f32x4.pmax(c00, c10), f32x4.pmax(c20, c30));
    const m1 = f32x4.pmax(f32x4.pmax(c01, c11), f32x4.pmax(c21, c31));
    v128.store(mx, f32x4.pmax(v128.load(mx), m0));
    v128.store(mx, f32x4.pmax(v128.load(mx, 16), m1), 16);
  }
}

@inline export function tn4x1(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0), c10 = c00, c20 = c00, c30 = c00;
  if (acc) {
    c00 = v128.load(c);
    c10 = v128.load(c + lc);
    c20 = v128.load(c + 2 * lc);
    c30 = v128.load(c + 3 * lc);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s);
    s = v128.load32_splat(al, 4); c10 = f32x4.mul(c10, s);
    s = v128.load32_splat(al, 8); c20 = f32x4.mul(c20, s);
    s = v128.load32_splat(al, 12); c30 = f32x4.mul(c30, s);
  }
  let b0: v128, x: v128, av: v128;
  let k = 0;
  for (; k < K; k++) {
    b0 = v128.load(b);
    av = v128.load(a);
    x = i32x4.shuffle(av, av, 0, 0, 0, 0);
    c00 = madd(x, b0, c00);
    x = i32x4.shuffle(av, av, 1, 1, 1, 1);
    c10 = madd(x, b0, c10);
    x = i32x4.shuffle(av, av, 2, 2, 2, 2);
    c20 = madd(x, b0, c20);
    x = i32x4.shuffle(av, av, 3, 3, 3, 3);
    c30 = madd(x, b0, c30);
    a += la;
    b += lb;
  }
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s);
    c10 = f32x4.mul(c10, s);
    c20 = f32x4.mul(c20, s);
    c30 = f32x4.mul(c30, s);
  }
  v128.store(c, c00);
  v128.store(c + lc, c10);
  v128.store(c + 2 * lc, c20);
  v128.store(c + 3 * lc, c30);
  if (mx) {
    const m0 = f32x4.pmax(f32x4.pmax(c00, c10), f32x4.pmax(c20, c30));
    v128.store(mx, f32x4.pmax(v128.load(mx), m0));
  }
}

@inline export function tn1x1(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0);
  if (acc) {
    c00 = v128.load(c);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s);
  }
  let b0: v128, x: v128, av: v128;
  let k = 0;
  for (; k < K; k++) {
    b0 = v128.load(b);
    x = v128.load32_splat(a);
    c00 = madd(x, b0, c00);
    a += la;
    b += lb;
  }
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s);
  }
  v128.store(c, c00);
}

@inline export function st4x2(a: usize, la: usize, b: usize, lb: usize, c: usize, lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  if (acc) {
    c00 = v128.load(c); c01 = v128.load(c, 16);
    c10 = v128.load(c + lc); c11 = v128.load(c + lc, 16);
    c20 = v128.load(c + 2 * lc); c21 = v128.load(c + 2 * lc, 16);
    c30 = v128.load(c + 3 * lc); c31 = v128.load(c + 3 * lc, 16);
  }
  if (acc && al) {
    let s = v128.load32_splat(al); c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    s = v128.load32_splat(al, 4); c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    s = v128.load32_splat(al, 8); c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    s = v128.load32_splat(al, 12); c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
  }
  let b0: v128, b1: v128, x: v128, av: v128;
  let k = 0;
  for (; k < K; k++) {
    b0 = v128.load(b); b1 = v128.load(b, 16);
    x = v128.load32_splat(a);
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
  if (!acc && al) {
    const s = v128.load32_splat(al);
    c00 = f32x4.mul(c00, s); c01 = f32x4.mul(c01, s);
    c10 = f32x4.mul(c10, s); c11 = f32x4.mul(c11, s);
    c20 = f32x4.mul(c20, s); c21 = f32x4.mul(c21, s);
    c30 = f32x4.mul(c30, s); c31 = f32x4.mul(c31, s);
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + lc, c10); v128.store(c + lc, c11, 16);
  v128.store(c + 2 * lc, c20); v128.store(c + 2 * lc, c21, 16);
  v128.store(c + 3 * lc, c30); v128.store(c + 3 * lc, c31, 16);
  if (mx) {
    const m0 = f32x4.pmax(f32x4.pmax(c00, c10), f32x4.pmax(c20, c30));
    const m1 = f32x4.pmax(f32x4.pmax(c01, c11), f32x4.pmax(c21, c31));
    v128.store(mx, f32x4.pmax(v128.load(mx), m0));
    v128.store(mx, f32x4.pmax(v128.load(mx, 16), m1), 16);
  }
}
