// Arithmetic on f32x4: the fused multiply-add (relaxed where built so), exp2 and ln, binary16
// conversion, tanh for the softcap, Philox4x32-10 for dropout, and the SIMD finiteness scan.
// Test hooks (philoxAt, tanhAt) expose single functions for the tests.

/** a·b + c: fused (relaxed SIMD) when the build enables it, else multiply then add. */
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

// exp2 on [-127, ~2^22]: 2^n · p(f), n = round(x), f = x − n ∈ [−½, ½], Cephes exp2f polynomial
// (relative error ≈ 1.7e-7). x ≤ −127 (including −∞) gives exactly 0. The constants arrive as
// arguments so that callers hoist them out of their loops (V8 rematerialises v128 constants).

export const EXP2_LO: f32 = -127.0;
export const EXP2_MAGIC: f32 = 12582912.0; // 1.5 · 2^23
export const EXP2_C0: f32 = 1.535336188319500e-4;
export const EXP2_C1: f32 = 1.339887440266574e-3;
export const EXP2_C2: f32 = 9.618437357674640e-3;
export const EXP2_C3: f32 = 5.550332471162809e-2;
export const EXP2_C4: f32 = 2.402264791363012e-1;
export const EXP2_C5: f32 = 6.931472028550421e-1;

// v128 constants the hot loops use, read from memory: as literals, Binaryen folds them back into
// the loops (undoing any hoisting) and V8 re-materialises each one at every use (3 instructions).
export const KF = memory.data<f32>([
  EXP2_LO, EXP2_LO, EXP2_LO, EXP2_LO,
  EXP2_MAGIC, EXP2_MAGIC, EXP2_MAGIC, EXP2_MAGIC,
  EXP2_C0, EXP2_C0, EXP2_C0, EXP2_C0,
  EXP2_C1, EXP2_C1, EXP2_C1, EXP2_C1,
  EXP2_C2, EXP2_C2, EXP2_C2, EXP2_C2,
  EXP2_C3, EXP2_C3, EXP2_C3, EXP2_C3,
  EXP2_C4, EXP2_C4, EXP2_C4, EXP2_C4,
  EXP2_C5, EXP2_C5, EXP2_C5, EXP2_C5,
  1, 1, 1, 1,
  -Infinity, -Infinity, -Infinity, -Infinity,
  0, 0, 0, 0,
], 16);
export const KI = memory.data<i32>([127, 127, 127, 127], 16);
export const K_LO: u32 = 0, K_MAGIC: u32 = 16, K_C0: u32 = 32, K_C1: u32 = 48, K_C2: u32 = 64;
export const K_C3: u32 = 80, K_C4: u32 = 96, K_C5: u32 = 112, K_ONE: u32 = 128, K_NEG_INF: u32 = 144;
export const K_ZERO: u32 = 160;

@inline export function exp2v(
  x: v128,
  lo: v128,
  magic: v128,
  c0: v128,
  c1: v128,
  c2: v128,
  c3: v128,
  c4: v128,
  c5: v128,
  one: v128,
  bias: v128,
): v128 {
  const y = f32x4.pmax(x, lo); // one instruction (f32x4.max is eight on x64)
  // round to nearest even by adding 1.5·2^23: t's low mantissa bits then hold n (cheaper than
  // nearest + trunc_sat, which V8 expands into a fix-up sequence)
  const t = f32x4.add(y, magic);
  const n = f32x4.sub(t, magic);
  const f = f32x4.sub(y, n);
  let p = madd(c0, f, c1);
  p = madd(p, f, c2);
  p = madd(p, f, c3);
  p = madd(p, f, c4);
  p = madd(p, f, c5);
  p = madd(p, f, one);
  const e = i32x4.shl(i32x4.add(t, bias), 23);
  return f32x4.mul(p, e);
}

/**
 * Natural log of a positive finite x (here the softmax sum l ≥ 1 in practice), to f64 accuracy
 * far beyond the f32 result: x = 2^e·m with m ∈ [√½, √2), ln m = 2·atanh(s), s = (m − 1)/(m + 1),
 * |s| ≤ 0.172, series to s^19. Written out as a series.
 */
export function ln(x: f64): f64 {
  const bits = reinterpret<u64>(x);
  let e = <i32>((bits >> 52) & 0x7ff) - 1023;
  let m = reinterpret<f64>((bits & 0x000fffffffffffff) | 0x3ff0000000000000);
  if (e == -1023) return ln(x * 4503599627370496.0) - 36.04365338911715; // subnormal: ·2^52
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e++;
  }
  const s = (m - 1) / (m + 1), s2 = s * s;
  let t = 1.0 / 19;
  t = t * s2 + 1.0 / 17;
  t = t * s2 + 1.0 / 15;
  t = t * s2 + 1.0 / 13;
  t = t * s2 + 1.0 / 11;
  t = t * s2 + 1.0 / 9;
  t = t * s2 + 1.0 / 7;
  t = t * s2 + 1.0 / 5;
  t = t * s2 + 1.0 / 3;
  t = t * s2 + 1.0;
  return <f64>e * Math.LN2 + 2 * s * t;
}

/** binary16 bits → f32 (exact). */
@inline export function h2f(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e == 0) {
    const v = <f32>m * 5.9604644775390625e-8; // m · 2^-24
    return sign ? -v : v;
  }
  if (e == 31) return reinterpret<f32>(sign | 0x7f800000 | (m << 13));
  return reinterpret<f32>(sign | ((e + 112) << 23) | (m << 13));
}

/** f32 → binary16 bits, round to nearest even (as tensor.ts f16Bits). */
function f2h(x: f32): u32 {
  const b = reinterpret<u32>(x);
  const sign = (b >> 16) & 0x8000;
  const exp = (b >> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp == 0xff) return sign | 0x7c00 | (mant != 0 ? 0x200 : 0);
  const e = <i32>exp - 112;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m24 = mant | 0x800000;
    const shift = <u32>(14 - e);
    const half = <u32>1 << (shift - 1);
    const rem = m24 & ((<u32>1 << shift) - 1);
    let m = m24 >> shift;
    if (rem > half || (rem == half && (m & 1) == 1)) m++;
    return sign | m;
  }
  const rem = mant & 0x1fff;
  let h = sign | (<u32>e << 10) | (mant >> 13);
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1)) h++;
  return h;
}

/** Stores one output value (f32, or binary16 bits when f16) at element index `idx` of `base`. */
@inline export function storeOut(base: usize, idx: usize, v: f32, f16: bool): void {
  if (f16) store<u16>(base + (idx << 1), <u16>f2h(v));
  else store<f32>(base + (idx << 2), v);
}

// binary16 → f32 conversion constants (i32 lanes): the kept bits of a sign-extended half shifted
// left by 13 (sign, exponent, mantissa), 2^112 (as f32 bits), the f16 exponent field, f32 infinity.
export const KH = memory.data<i32>([
  0x8fffe000, 0x8fffe000, 0x8fffe000, 0x8fffe000,
  0x77800000, 0x77800000, 0x77800000, 0x77800000,
  0x7c00, 0x7c00, 0x7c00, 0x7c00,
  0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000,
], 16);

/**
 * Four binary16 values, sign-extended to i32 lanes, → f32x4, exactly: (h << 13) keeps the sign in
 * bit 31 and puts exponent and mantissa where f32 has them; ·2^112 re-biases the exponent (f16
 * subnormals become f32 normals, ±0 stays ±0); an all-ones exponent (infinity, NaN) gets the f32
 * one by or-ing it in. The constants are those of KH, passed in so that loops load them once.
 */
@inline export function h2f4(h: v128, keep: v128, pow112: v128, hexp: v128, inf: v128): v128 {
  return v128.or(h2f4Finite(h, keep, pow112), v128.and(i32x4.eq(v128.and(h, hexp), hexp), inf));
}

/** {@link h2f4} for finite halves only (an all-ones exponent comes out finite): 3 operations, not 7. */
@inline export function h2f4Finite(h: v128, keep: v128, pow112: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shl(h, 13), keep), pow112);
}

// tanh on f32x4 for the softcap: |x| < 0.625: odd Taylor series to x^17 (f32 Horner, ≈1 ulp);
// else 1 − 2/(e^{2|x|} + 1) with exp2v (≤ 3 units of 2^-24 relative, checked in
// tests/wasm_test.ts); the sign is restored at the end, and 2|x|·log2 e is capped at 64 (tanh is
// 1 in f32 long before).
const TANH_C1: f32 = -0.3333333333333333;
const TANH_C2: f32 = 0.13333333333333333;
const TANH_C3: f32 = -0.05396825396825397;
const TANH_C4: f32 = 0.021869488536155203;
const TANH_C5: f32 = -0.008863235529902197;
const TANH_C6: f32 = 0.003592128036572481;
const TANH_C7: f32 = -0.0014558343870513183;
const TANH_C8: f32 = 0.0005900274409455859;

@inline export function tanhv(x: v128): v128 {
  const sign = v128.and(x, i32x4.splat(0x80000000));
  const a = f32x4.abs(x);
  const x2 = f32x4.mul(a, a);
  let p = madd(f32x4.splat(TANH_C8), x2, f32x4.splat(TANH_C7));
  p = madd(p, x2, f32x4.splat(TANH_C6));
  p = madd(p, x2, f32x4.splat(TANH_C5));
  p = madd(p, x2, f32x4.splat(TANH_C4));
  p = madd(p, x2, f32x4.splat(TANH_C3));
  p = madd(p, x2, f32x4.splat(TANH_C2));
  p = madd(p, x2, f32x4.splat(TANH_C1));
  const small = madd(a, f32x4.mul(p, x2), a);
  const y = f32x4.pmin(f32x4.mul(a, f32x4.splat(2.8853900817779268)), f32x4.splat(64));
  const e = exp2v(
    y,
    f32x4.splat(EXP2_LO),
    f32x4.splat(EXP2_MAGIC),
    f32x4.splat(EXP2_C0),
    f32x4.splat(EXP2_C1),
    f32x4.splat(EXP2_C2),
    f32x4.splat(EXP2_C3),
    f32x4.splat(EXP2_C4),
    f32x4.splat(EXP2_C5),
    f32x4.splat(1.0),
    i32x4.splat(127),
  );
  const one = f32x4.splat(1.0);
  const large = f32x4.sub(one, f32x4.div(f32x4.splat(2.0), f32x4.add(e, one)));
  const r = v128.bitselect(small, large, f32x4.lt(a, f32x4.splat(0.625)));
  return v128.or(r, sign);
}

// Philox4x32-10 (Salmon et al., SC'11; masks/dropout.ts is the reference) on four counters at
// once, lane by lane: the 32×32 → 64-bit products are exact u64 multiplies (i64x2.extmul), their
// high and low words split by shuffles. Dropout counts element (b, h, i, j) as
// [j >>> 2, i, h, b] with key [seed mod 2^32, floor(seed / 2^32)] and keeps it iff word j & 3 is
// at least the threshold round(p · 2^32).
const PHILOX_M0: u32 = 0xd2511f53;
const PHILOX_M1: u32 = 0xcd9e8d57;
const PHILOX_W0: u32 = 0x9e3779b9;
const PHILOX_W1: u32 = 0xbb67ae85;

/** Philox4x32-10 of counters (c0, c1, c2, c3) lane-wise, key (k0, k1); the 4 words go to `out`. */
export function philox(c0: v128, c1: v128, c2: v128, c3: v128, k0: u32, k1: u32, out: usize): void {
  const m0 = i32x4.splat(PHILOX_M0), m1 = i32x4.splat(PHILOX_M1);
  for (let r = 0; r < 10; r++) {
    const a0 = i64x2.extmul_low_i32x4_u(c0, m0), a1 = i64x2.extmul_high_i32x4_u(c0, m0);
    const b0 = i64x2.extmul_low_i32x4_u(c2, m1), b1 = i64x2.extmul_high_i32x4_u(c2, m1);
    const hi0 = i32x4.shuffle(a0, a1, 1, 3, 5, 7), lo0 = i32x4.shuffle(a0, a1, 0, 2, 4, 6);
    const hi1 = i32x4.shuffle(b0, b1, 1, 3, 5, 7), lo1 = i32x4.shuffle(b0, b1, 0, 2, 4, 6);
    c0 = v128.xor(v128.xor(hi1, c1), i32x4.splat(k0));
    c1 = lo1;
    c2 = v128.xor(v128.xor(hi0, c3), i32x4.splat(k1));
    c3 = lo0;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  v128.store(out, c0);
  v128.store(out, c1, 16);
  v128.store(out, c2, 32);
  v128.store(out, c3, 48);
}

/** Dropout factor of each lane: `scale` where the Philox word is ≥ the threshold, else 0. */
@inline export function keepFactor(word: v128, thr: v128, scale: v128): v128 {
  return v128.and(i32x4.ge_u(word, thr), scale);
}

/**
 * Test hook: Philox4x32-10 of four counters, lane l being (c0[l], c1[l], c2[l], c3[l]) with
 * c_k = 4 × u32 at io + 16k, key 2 × u32 at io + 64; word w of lane l goes to io + 80 + 16w + 4l.
 */
export function philoxAt(io: usize): void {
  philox(
    v128.load(io),
    v128.load(io, 16),
    v128.load(io, 32),
    v128.load(io, 48),
    load<u32>(io, 64),
    load<u32>(io, 68),
    io + 80,
  );
}

/**
 * Index of the first NaN or ±∞ among `n` values at `src` (f32, or binary16 bits when `f16`), or
 * −1: a value is not finite when its exponent bits are all ones. Runs on the calling thread,
 * before any phase, over the raw copies of the inputs (the API's finiteness check, 4× faster
 * than a scan in JavaScript); 64 bytes per step, then the step that has one is rescanned.
 */
export function firstNonFinite(src: usize, n: i32, f16: bool): i32 {
  const esz: i32 = f16 ? 2 : 4, per = 64 / esz;
  const m = f16 ? i16x8.splat(0x7c00) : i32x4.splat(0x7f800000);
  let i = 0;
  for (; i + per <= n; i += per) {
    const a = src + <usize>(i * esz);
    const x0 = v128.and(v128.load(a), m), x1 = v128.and(v128.load(a, 16), m);
    const x2 = v128.and(v128.load(a, 32), m), x3 = v128.and(v128.load(a, 48), m);
    const hit = f16
      ? v128.or(v128.or(i16x8.eq(x0, m), i16x8.eq(x1, m)), v128.or(i16x8.eq(x2, m), i16x8.eq(x3, m)))
      : v128.or(v128.or(i32x4.eq(x0, m), i32x4.eq(x1, m)), v128.or(i32x4.eq(x2, m), i32x4.eq(x3, m)));
    if (v128.any_true(hit)) break;
  }
  for (; i < n; i++) {
    const bad = f16
      ? (load<u16>(src + (<usize>i << 1)) & 0x7c00) == 0x7c00
      : (load<u32>(src + (<usize>i << 2)) & 0x7f800000) == 0x7f800000;
    if (bad) return i;
  }
  return -1;
}

/** Test hook: x ← tanh(x) (the softcap's tanhv) for n f32 at `io`, n a multiple of 4. */
export function tanhAt(io: usize, n: i32): void {
  for (let x = 0; x < n; x += 4) {
    const a = io + (<usize>x << 2);
    v128.store(a, tanhv(v128.load(a)));
  }
}
