// FlashAttention-2 forward and backward kernels, and split-KV decoding, for the WASM backend
// (AssemblyScript, v128 f32x4).
//
// What it computes: exactly what tiled.ts specifies. Forward: out = softmax(q kᵀ·scale + mask) v
// and lse (natural log) per (batch, query head, row). Backward: D = rowsum(dO∘O), P recomputed
// from lse, dS = P∘(dP − D), dQ = dS·K·scale, dK = dSᵀ·Q·scale, dV = Pᵀ·dO. Options: softcap
// (score ← c·tanh(score / c) before the softmax; dS multiplied by 1 − tanh²) and dropout (P∘Z in
// O and dV, Z = 1/(1 − p) or 0 from Philox4x32-10 at (b, h, i, j) as masks/dropout.ts; l and lse
// are those of the undropped P; dS = P∘(dP∘Z − D)). Block masks need no kernel work: the host
// picks tiles that divide the blocks and the schedule skips the zero blocks' tiles.
//
// Shapes: host tensors are [B, N, H, d] row-major ("user layout"); the pack kernel copies them into
// head-major "packed" rows [B, H, N, dp] (dp = d rounded up to a multiple of 4, zero padded) so a
// tile's rows are contiguous; the forward pass packs K as transposed panels [B, Hk, N/Bc, dp, Bc]
// instead, so that its score GEMM is TN like the P·V one (one base pointer, the 6 broadcasts of
// a step adjacent). lse is [B, Hq, Nq]. Outputs are written in the user layout, f32 or binary16
// bits. The forward reads q in place; decoding reads q, and k and v (f32 with d % 4 = 0) in place
// in the user layout (no pack phase).
//
// Tiling: Br query rows × Bc key columns per tile (Br a multiple of 8, Bc of 4; both in the
// parameter block), driven by the shared block schedule: the forward item (b, h, row block) walks
// rowTiles of its mask slice, the backward item (b, key head, chunk) walks, for each column block
// c ≡ chunk (mod nChunks), the colTiles of every query head of the group. Scores are kept
// transposed, Sᵀ[j][r] (Bc × Br): lanes hold four query rows, so row max/sum of the online
// softmax are plain vector ops, and one Philox call (4 words for 4 aligned keys of one row, over
// 4 lanes = rows) covers a 4 × 4 block. GEMMs use 6×2 register blocking (6 elements of A, 2
// vectors of B: 12 f32x4 accumulators), 4-row blocks for the remainder of M; in the TN kernels the
// 6 adjacent A elements of a step come from one 4-lane and one 2-lane load, splat by shuffles
// (4 loads a step instead of 8: loads are what the bounds checks make expensive, see below). The
// forward score GEMM of a full tile also folds the row maxima, so the softmax makes one pass over
// the tile. Decode item (batch entry, range of column blocks): for each column block, every row
// group of the entry (the rows (h, i) of the query heads of one key head that share a mask
// slice), so K and V stream in memory order; the score GEMM there is a dot-product form along d
// (few rows); `decodeCombine` merges the ranges.
//
// Code generation notes (V8 in Deno, x64; see docs/BENCHMARKS.md): every wasm load and store is
// bounds-checked explicitly (no guard-page trap handler), so micro-kernels are judged by loads per
// multiply-add; f32x4.max/min lower to 8 instructions, pmax/pmin to 1 (inputs are finite or −∞
// here, where they agree); v128 constants used in loops are read from a static table (as
// literals Binaryen folds them back into the loop and V8 re-materialises each use).
//
// Invariants: skipped tiles are never touched (they are not in the lists); full tiles do no mask
// work; partial tiles test each element against its column's canonical bounds
// [lts, lte) ∪ [uts, ute) and nothing else (no mask semantics are derived here). Scores are in
// log2 units (q is pre-scaled by scale·log2 e) so exp is exp2. A row that sees nothing keeps
// m = −∞, l = 0 and gets out 0, lse −∞; in the backward pass its lse2 is +∞, so P = 0 exactly.
// Every output element is produced by exactly one work item, in a fixed order, so results do not
// depend on the thread count: dQ is accumulated per chunk into its own partial buffer (the chunk
// count depends on the problem only) and the partials are summed in chunk order by `bwdReduce`;
// decode splits (their number depends on the problem only) are merged in split order.
// Nothing is allocated here: every buffer is laid out by wasm/backend.ts in the shared memory,
// addressed through the parameter block `p` (slot numbers below match the P table there).

// ---- parameter block slots (i32 index) -------------------------------------------------------
const P_B: i32 = 0;
const P_NQ: i32 = 1;
const P_NK: i32 = 2;
const P_H: i32 = 3;
const P_HK: i32 = 4;
const P_D: i32 = 5;
const P_DP: i32 = 6;
const P_BR: i32 = 7;
const P_BC: i32 = 8;
const P_ROW_BLOCKS: i32 = 9;
const P_COL_BLOCKS: i32 = 10;
const P_SCALE: i32 = 11; // f32
const P_SCALE2: i32 = 12; // f32, scale · log2(e)
const P_F16: i32 = 13; // outputs are binary16
const P_BOUNDS: i32 = 14;
const P_TILE_PTR: i32 = 15;
const P_TILES: i32 = 16;
const P_SLICE_OF: i32 = 17; // i32 per (b, h): mask slice
const P_Q: i32 = 18; // packed rows (backward) or raw, user layout (forward, decode)
const P_K: i32 = 19; // panels (forward), packed rows (backward), raw (decode)
const P_V: i32 = 20;
const P_OUT: i32 = 21; // forward: out (user layout); backward: packed O
const P_LSE: i32 = 22; // [B, H, Nq] f32
const P_SCRATCH: i32 = 23;
const P_SCRATCH_BYTES: i32 = 24;
const P_DO: i32 = 25; // packed dO
const P_QT: i32 = 26; // backward: per (b, h, row block) qᵀ·scale2, dp × Br
const P_DOT: i32 = 27; // backward: per (b, h, row block) dOᵀ, dp × Br
const P_DD: i32 = 28; // backward: D, [B, H, nqPad]
const P_LSE2: i32 = 29; // backward: lse · log2 e (+∞ for rows that see nothing), [B, H, nqPad]
const P_DQ_PART: i32 = 30; // backward: [nChunks, B, H, nqPad, dp]
const P_CHUNKS: i32 = 31;
const P_DK: i32 = 32; // user layout outputs
const P_DV: i32 = 33;
const P_DQ: i32 = 34;
const P_NPACK: i32 = 35; // pack: number of tensors
const P_PACK: i32 = 36; // pack: 4 slots per tensor: src, dst, seq, heads
const P_IN_F16: i32 = 56; // inputs are binary16
const P_SOFTCAP2: i32 = 57; // f32: softcap · log2 e (0: no softcap)
const P_DROP: i32 = 58; // dropout on
const P_DROP_THR: i32 = 59; // u32: a Philox word below this drops its element
const P_DROP_SCALE: i32 = 60; // f32: 1 / (1 − p)
const P_SEED_LO: i32 = 61; // u32: Philox key word 0
const P_SEED_HI: i32 = 62; // u32: Philox key word 1
const P_GROUPS: i32 = 63; // decode: row groups, 4 × i32 each: b, key head, first head, heads
// (decode also uses P_QT: per row group, Q · scale · log2 e, ROWS_MAX × dp)
const P_SPLITS: i32 = 64; // decode: key splits per batch entry
const P_ROWS_MAX: i32 = 65; // decode: most rows of a group, rounded up to 4
const P_PART: i32 = 66; // decode: per (row group, split), O (ROWS_MAX × dp), then m and l (ROWS_MAX each)
const P_KV_DIRECT: i32 = 67; // decode: K and V are read in place (f32 and d % 4 == 0)
const P_PACK_T: i32 = 68; // pack: this tensor goes into transposed panels (−1: none)
const P_GROUP_PTR: i32 = 69; // decode: row groups of batch b are [ptr[b], ptr[b + 1])
const P_DEC_ROWS: i32 = 70; // decode: per row group, query row then head of each row (i32)
const P_GROUPS_MAX: i32 = 71; // decode: most row groups of one batch entry

@inline function pi(p: usize, slot: i32): i32 {
  return load<i32>(p + (<usize>slot << 2));
}

@inline function pu(p: usize, slot: i32): usize {
  return <usize>load<u32>(p + (<usize>slot << 2));
}

@inline function pf(p: usize, slot: i32): f32 {
  return load<f32>(p + (<usize>slot << 2));
}

/** Takes the next work item index, or −1 when all are taken. */
@inline function nextItem(counter: usize, items: usize, nItems: i32): i32 {
  const idx = atomic.add<i32>(counter, 1);
  return idx < nItems ? load<i32>(items + (<usize>idx << 2)) : -1;
}

// ---- arithmetic helpers ----------------------------------------------------------------------

/** a·b + c: fused (relaxed SIMD) when the build enables it, else multiply then add. */
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

// exp2 on [-127, ~2^22]: 2^n · p(f), n = round(x), f = x − n ∈ [−½, ½], Cephes exp2f polynomial
// (relative error ≈ 1.7e-7). x ≤ −127 (including −∞) gives exactly 0. The constants arrive as
// arguments so that callers hoist them out of their loops (V8 rematerialises v128 constants).

const EXP2_LO: f32 = -127.0;
const EXP2_MAGIC: f32 = 12582912.0; // 1.5 · 2^23
const EXP2_C0: f32 = 1.535336188319500e-4;
const EXP2_C1: f32 = 1.339887440266574e-3;
const EXP2_C2: f32 = 9.618437357674640e-3;
const EXP2_C3: f32 = 5.550332471162809e-2;
const EXP2_C4: f32 = 2.402264791363012e-1;
const EXP2_C5: f32 = 6.931472028550421e-1;

// v128 constants the hot loops use, read from memory: as literals, Binaryen folds them back into
// the loops (undoing any hoisting) and V8 re-materialises each one at every use (3 instructions).
const KF = memory.data<f32>([
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
const KI = memory.data<i32>([127, 127, 127, 127], 16);
const K_LO: u32 = 0, K_MAGIC: u32 = 16, K_C0: u32 = 32, K_C1: u32 = 48, K_C2: u32 = 64;
const K_C3: u32 = 80, K_C4: u32 = 96, K_C5: u32 = 112, K_ONE: u32 = 128, K_NEG_INF: u32 = 144;
const K_ZERO: u32 = 160;

@inline function exp2v(
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
function ln(x: f64): f64 {
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
@inline function h2f(h: u32): f32 {
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
@inline function storeOut(base: usize, idx: usize, v: f32, f16: bool): void {
  if (f16) store<u16>(base + (idx << 1), <u16>f2h(v));
  else store<f32>(base + (idx << 2), v);
}

// binary16 → f32 conversion constants (i32 lanes): the kept bits of a sign-extended half shifted
// left by 13 (sign, exponent, mantissa), 2^112 (as f32 bits), the f16 exponent field, f32 infinity.
const KH = memory.data<i32>([
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
@inline function h2f4(h: v128, keep: v128, pow112: v128, hexp: v128, inf: v128): v128 {
  const v = f32x4.mul(v128.and(i32x4.shl(h, 13), keep), pow112);
  return v128.or(v, v128.and(i32x4.eq(v128.and(h, hexp), hexp), inf));
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

@inline function tanhv(x: v128): v128 {
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
function philox(c0: v128, c1: v128, c2: v128, c3: v128, k0: u32, k1: u32, out: usize): void {
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
@inline function keepFactor(word: v128, thr: v128, scale: v128): v128 {
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

/** Test hook: the decode panels' binary16 → f32 conversion of n halves at `src` into `dst`. */
export function halvesAt(src: usize, dst: usize, n: i32): void {
  loadPanel(src, <usize>n << 1, 1, n, n, true, dst);
}

/** Test hook: x ← tanh(x) (the softcap's tanhv) for n f32 at `io`, n a multiple of 4. */
export function tanhAt(io: usize, n: i32): void {
  for (let x = 0; x < n; x += 4) {
    const a = io + (<usize>x << 2);
    v128.store(a, tanhv(v128.load(a)));
  }
}

// ---- GEMM micro-kernels ----------------------------------------------------------------------
// All matrices are f32, row-major, strides in bytes. N is counted in 4-lane vectors.

/**
 * NN: C[m][n] (+)= Σ_k A[m][k]·B[k][n] for m < M, n < 4·NV, k < K. A's elements are broadcast
 * (6 rows at a time), B's rows are loaded as vectors (2 at a time). `acc` false: C is overwritten.
 */
function gemmNN(
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
function gemmTN(
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
function gemmScores(
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

// ---- mask and softmax on a transposed score tile ---------------------------------------------

/**
 * Partial tile: sets Sᵀ[j][r] to −∞ where query row RI[r] is inside column j's masked runs
 * [lts, lte) ∪ [uts, ute) (bounds at `bnd`, 4 × i32 per column; RI: i32 per tile row, every one
 * in [lo, hi)). A column whose runs miss [lo, hi) is left alone and one whose run covers it is
 * filled, so only the columns the mask's edges cross are tested row by row.
 */
function maskTile(S: usize, ls: usize, cols: i32, rowsPad: i32, RI: usize, bnd: usize, lo: i32, hi: i32): void {
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
      const iv = v128.load(RI + go);
      const hit = v128.or(
        v128.and(i32x4.ge_s(iv, lts), i32x4.lt_s(iv, lte)),
        v128.and(i32x4.ge_s(iv, uts), i32x4.lt_s(iv, ute)),
      );
      v128.store(row + go, v128.bitselect(negInf, v128.load(row + go), hit));
    }
  }
}

/** Softcap on a log2-domain score tile: Sᵀ ← C·tanh(Sᵀ / C), C = softcap · log2 e. */
function capTile(S: usize, ls: usize, cols: i32, rowsPad: i32, cap: f32): void {
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
function dropTile(
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
function softmaxTile(S: usize, ls: usize, cols: i32, rowsPad: i32, M: usize, L: usize, AL: usize, MX: usize): void {
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

// ---- pack: user layout [B, N, H, d] (f32 or binary16) → packed [B, H, N, dp] f32 ------------

/** Work item t·B·H + b·H + h (over the tensors of the descriptor table) packs one head. */
export function pack(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const B = pi(p, P_B), d = pi(p, P_D), dp = pi(p, P_DP), f16 = pi(p, P_IN_F16) != 0;
  const n = pi(p, P_NPACK);
  for (let it = nextItem(counter, items, nItems); it >= 0; it = nextItem(counter, items, nItems)) {
    let t = 0, rest = it;
    for (; t < n; t++) {
      const cnt = B * pi(p, P_PACK + 4 * t + 3);
      if (rest < cnt) break;
      rest -= cnt;
    }
    const src = pu(p, P_PACK + 4 * t), dst = pu(p, P_PACK + 4 * t + 1);
    const seq = pi(p, P_PACK + 4 * t + 2), heads = pi(p, P_PACK + 4 * t + 3);
    const b = rest / heads, h = rest % heads;
    const rowStride = <usize>heads * d;
    let s = <usize>(b * seq * heads + h) * d; // element index of (b, 0, h, 0)
    if (t == pi(p, P_PACK_T)) {
      // transposed panels [B, heads, colBlocks, dp, Bc]: panel c holds keys [c·Bc, c·Bc + Bc)
      const Bc = pi(p, P_BC), blocks = (seq + Bc - 1) / Bc, lp = <usize>Bc << 2;
      const panel = <usize>dp * lp;
      const o = dst + <usize>(b * heads + h) * blocks * panel;
      // zero what no key fills: rows d..dp of every panel, and the last panel (keys past seq)
      if (d < dp) {
        for (let c = 0; c < blocks; c++) memory.fill(o + <usize>c * panel + <usize>d * lp, 0, <usize>(dp - d) * lp);
      }
      if (seq % Bc) memory.fill(o + <usize>(blocks - 1) * panel, 0, panel);
      let j = 0;
      if (!f16 && d == dp) {
        // 4 keys × 4 dims at a time, transposed in registers (Bc is a multiple of 4)
        for (; j + 4 <= seq; j += 4) {
          const col = o + <usize>(j / Bc) * panel + (<usize>(j % Bc) << 2);
          const r0 = src + (s << 2), r1 = r0 + (rowStride << 2);
          const r2 = r1 + (rowStride << 2), r3 = r2 + (rowStride << 2);
          for (let x = 0; x < d; x += 4) {
            const xo = <usize>x << 2;
            const a = v128.load(r0 + xo), b = v128.load(r1 + xo);
            const c = v128.load(r2 + xo), e = v128.load(r3 + xo);
            const ab0 = i32x4.shuffle(a, b, 0, 4, 1, 5), ab1 = i32x4.shuffle(a, b, 2, 6, 3, 7);
            const ce0 = i32x4.shuffle(c, e, 0, 4, 1, 5), ce1 = i32x4.shuffle(c, e, 2, 6, 3, 7);
            const w = col + <usize>x * lp;
            v128.store(w, i64x2.shuffle(ab0, ce0, 0, 2));
            v128.store(w + lp, i64x2.shuffle(ab0, ce0, 1, 3));
            v128.store(w + 2 * lp, i64x2.shuffle(ab1, ce1, 0, 2));
            v128.store(w + 3 * lp, i64x2.shuffle(ab1, ce1, 1, 3));
          }
          s += rowStride << 2;
        }
      }
      for (; j < seq; j++) {
        const col = o + <usize>(j / Bc) * panel + (<usize>(j % Bc) << 2);
        for (let x = 0; x < d; x++) {
          const v = f16 ? h2f(load<u16>(src + ((s + x) << 1))) : load<f32>(src + ((s + x) << 2));
          store<f32>(col + <usize>x * lp, v);
        }
        s += rowStride;
      }
      continue;
    }
    let o = dst + (<usize>(b * heads + h) * seq * dp << 2);
    for (let r = 0; r < seq; r++) {
      if (f16) {
        for (let x = 0; x < d; x++) store<f32>(o + (<usize>x << 2), h2f(load<u16>(src + ((s + x) << 1))));
      } else {
        let x = 0;
        for (; x + 4 <= d; x += 4) v128.store(o + (<usize>x << 2), v128.load(src + ((s + x) << 2)));
        for (; x < d; x++) store<f32>(o + (<usize>x << 2), load<f32>(src + ((s + x) << 2)));
      }
      for (let x = d; x < dp; x++) store<f32>(o + (<usize>x << 2), 0);
      s += rowStride;
      o += <usize>dp << 2;
    }
  }
}

// ---- forward -----------------------------------------------------------------------------------

/**
 * Forward work item b·H·rowBlocks + h·rowBlocks + r: rows [r·Br, r·Br + Br) of query head h,
 * batch b. Writes those rows of out (user layout) and lse.
 */
export function forward(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const nq = pi(p, P_NQ), nk = pi(p, P_NK), H = pi(p, P_H), Hk = pi(p, P_HK);
  const d = pi(p, P_D), dp = pi(p, P_DP), Br = pi(p, P_BR), Bc = pi(p, P_BC);
  const rowBlocks = pi(p, P_ROW_BLOCKS), scale2 = pf(p, P_SCALE2), f16 = pi(p, P_F16) != 0;
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
  for (let it = nextItem(counter, items, nItems); it >= 0; it = nextItem(counter, items, nItems)) {
    const r = it % rowBlocks, bh = it / rowBlocks, h = bh % H, b = bh / H;
    const kh = h / group, slice = load<i32>(sliceOf + (<usize>bh << 2));
    const i0 = r * Br, rows = min(Br, nq - i0), rowsPad = (rows + 7) & ~7;
    // Qᵀ · scale · log2 e from q in place (user layout), zero in padded rows and columns
    let q = qp + (<usize>((b * nq + i0) * H + h) * d) * eb;
    for (let i = 0; i < rowsPad; i++) {
      const dst = QT + (<usize>i << 2);
      let x = 0;
      if (i < rows) {
        for (; x < d; x++) {
          const v = inF16 ? h2f(load<u16>(q + (<usize>x << 1))) : load<f32>(q + (<usize>x << 2));
          store<f32>(dst + <usize>x * ls, v * scale2);
        }
      }
      for (; x < dp; x++) store<f32>(dst + <usize>x * ls, 0);
      q += qs;
    }
    for (let g = 0; g < rowsPad; g += 4) {
      v128.store(M + (<usize>g << 2), negInf);
      v128.store(L + (<usize>g << 2), zero);
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
      // full tiles without softcap: the score GEMM also takes the row maxima
      const fused = (e & 1) == 0 && cap == 0;
      if (fused) {
        for (let g = 0; g < rowsPad; g += 4) v128.store(MX + (<usize>g << 2), negInf);
      }
      gemmScores(kb + <usize>c * panel, <usize>Bc << 2, QT, ls, ST, ls, cols, rowsPad >> 2, dp, fused ? MX : 0);
      if (cap != 0) capTile(ST, ls, cols, rowsPad, cap);
      if (e & 1) maskTile(ST, ls, cols, rowsPad, RI, bounds + (<usize>(slice * nk + j0) << 4), i0, i0 + rowsPad);
      softmaxTile(ST, ls, cols, rowsPad, M, L, AL, fused ? MX : 0);
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
function finishRow(row: usize, m: usize, l: usize, outp: usize, oi: usize, d: i32, f16: bool, lse: usize): void {
  const lv = load<f32>(l), mv = load<f32>(m);
  if (lv > 0) {
    if (!f16 && (d & 3) == 0) {
      const lvv = f32x4.splat(lv);
      for (let x = 0; x < d; x += 4) {
        v128.store(outp + ((oi + x) << 2), f32x4.div(v128.load(row + (<usize>x << 2)), lvv));
      }
    } else {
      for (let x = 0; x < d; x++) storeOut(outp, oi + x, load<f32>(row + (<usize>x << 2)) / lv, f16);
    }
    store<f32>(lse, <f32>(<f64>mv * Math.LN2 + ln(<f64>lv)));
  } else {
    for (let x = 0; x < d; x++) storeOut(outp, oi + x, 0, f16);
    store<f32>(lse, -Infinity);
  }
}

// ---- backward ----------------------------------------------------------------------------------

/**
 * Backward preparation, work item b·H·rowBlocks + h·rowBlocks + r: Qᵀ·scale2 and dOᵀ of the row
 * block (dp × Br, zero padded), D = rowsum(dO∘O), lse2 = lse·log2 e (+∞ for rows that see nothing
 * and for padding), and zeroed dQ partial rows of every chunk.
 */
export function bwdPrep(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const B = pi(p, P_B), nq = pi(p, P_NQ), H = pi(p, P_H), dp = pi(p, P_DP), Br = pi(p, P_BR);
  const rowBlocks = pi(p, P_ROW_BLOCKS), scale2 = pf(p, P_SCALE2), chunks = pi(p, P_CHUNKS);
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
        store<f32>(qt + <usize>x * ls + (<usize>i << 2), load<f32>(q + <usize>i * ld + xo) * scale2);
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
 * Recomputes Pᵀ = 2^(Sᵀ − lse2) (0 where masked, for partial tiles) into S and
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
): void {
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
        const hit = v128.or(
          v128.and(i32x4.ge_s(iv, lts), i32x4.lt_s(iv, lte)),
          v128.and(i32x4.ge_s(iv, uts), i32x4.lt_s(iv, ute)),
        );
        let pv = exp2v(f32x4.pmin(f32x4.sub(v128.load(s + go), v128.load(lse2 + go)), zero), lo, magic, c0, c1, c2, c3, c4, c5, one, bias);
        pv = v128.bitselect(zero, pv, hit);
        v128.store(s + go, pv);
        v128.store(dp + go, f32x4.mul(pv, f32x4.sub(v128.load(dp + go), v128.load(Dv + go))));
        iv = i32x4.add(iv, four);
      }
    } else {
      for (let g = 0; g < rowsPad; g += 4) {
        const go = <usize>g << 2;
        const pv = exp2v(f32x4.pmin(f32x4.sub(v128.load(s + go), v128.load(lse2 + go)), zero), lo, magic, c0, c1, c2, c3, c4, c5, one, bias);
        v128.store(s + go, pv);
        v128.store(dp + go, f32x4.mul(pv, f32x4.sub(v128.load(dp + go), v128.load(Dv + go))));
      }
    }
  }
}

/**
 * dsTile with the options: softcap (Sᵀ ← C·tanh(Sᵀ/C) before the exp, dSᵀ multiplied by the
 * slope 1 − tanh²) and dropout (S ← Pᵀ∘Z for dV, dSᵀ = Pᵀ∘(dPᵀ∘Z − D), Z regenerated by Philox for
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
): void {
  const cap = pf(p, P_SOFTCAP2), drop = pi(p, P_DROP) != 0;
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
        let sv = v128.load(sa);
        let slope = one;
        if (cap != 0) {
          const t = tanhv(f32x4.mul(sv, inv));
          sv = f32x4.mul(capv, t);
          slope = f32x4.sub(one, f32x4.mul(t, t));
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
          const hit = v128.or(
            v128.and(i32x4.ge_s(iv, v128.load32_splat(o)), i32x4.lt_s(iv, v128.load32_splat(o, 4))),
            v128.and(i32x4.ge_s(iv, v128.load32_splat(o, 8)), i32x4.lt_s(iv, v128.load32_splat(o, 12))),
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
  const opts = pf(p, P_SOFTCAP2) != 0 || pi(p, P_DROP) != 0;
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
            dsTileOpt(ST, DPT, ls, cols, rowsPad, lse2p + rb, Dp + rb, (e & 1) != 0, i0, bnd, p, b, h, j0, PH);
          } else {
            dsTile(ST, DPT, ls, cols, rowsPad, lse2p + rb, Dp + rb, (e & 1) != 0, i0, bnd);
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

// ---- decoding (split-KV, flash-decoding) --------------------------------------------------------

/**
 * Copies `cols` rows of `d` values (f32, or binary16 converted) with row stride `src` bytes into a
 * packed f32 panel (dp floats a row, zero padded).
 */
function loadPanel(src: usize, ls: usize, cols: i32, d: i32, dp: i32, f16: bool, dst: usize): void {
  const ld = <usize>dp << 2;
  const keep = v128.load(KH), pow112 = v128.load(KH, 16), hexp = v128.load(KH, 32);
  const inf = v128.load(KH, 48);
  for (let j = 0; j < cols; j++) {
    const s = src + <usize>j * ls, o = dst + <usize>j * ld;
    let x = 0;
    if (f16) {
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
 * row sums are gathered into one vector of Sᵀ. `MX` (0: none): row maxima, as in gemmScores.
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
): void {
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
      const s0 = sum4(a00, a10, a20, a30), s1 = sum4(a01, a11, a21, a31);
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
      const s0 = sum4(a0, a1, a2, a3);
      v128.store(S + <usize>j * ls + go, s0);
      mx = f32x4.pmax(mx, s0);
    }
    if (MX) v128.store(MX + go, mx);
  }
}

/**
 * Decode preparation, work item g (a row group): the group's Q · scale · log2 e (RPad × dp,
 * zero padded), and the query row and head of each of its rows (for the mask and dropout). A row
 * group is the query rows (h, i), h in [h0, h0 + nh) (heads of one key head that share one mask
 * slice), i < Nq, in row r = (h − h0)·Nq + i, so K and V are read once for the whole group.
 */
export function decodePrep(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const nq = pi(p, P_NQ), H = pi(p, P_H), d = pi(p, P_D), dp = pi(p, P_DP);
  const scale2 = pf(p, P_SCALE2), f16 = pi(p, P_IN_F16) != 0, qp = pu(p, P_Q);
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
        if (r < R && x < d) v = (f16 ? h2f(load<u16>(q + (<usize>x << 1))) : load<f32>(q + (<usize>x << 2))) * scale2;
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
  const bounds = pu(p, P_BOUNDS), tilePtr = pu(p, P_TILE_PTR), tiles = pu(p, P_TILES);
  const sliceOf = pu(p, P_SLICE_OF), rowBlocks = pi(p, P_ROW_BLOCKS), H = pi(p, P_H);
  const kp = pu(p, P_K), vp = pu(p, P_V);
  const groups = pu(p, P_GROUPS), groupPtr = pu(p, P_GROUP_PTR);
  const splits = pi(p, P_SPLITS), rowsMax = pi(p, P_ROWS_MAX);
  const part = pu(p, P_PART), direct = pi(p, P_KV_DIRECT) != 0;
  const qtAll = pu(p, P_QT), rowsAll = pu(p, P_DEC_ROWS);
  const cap = pf(p, P_SOFTCAP2), drop = pi(p, P_DROP) != 0;
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
        loadPanel(kp + src, <usize>d * eb, cols * Hk, d, dp, f16, PK);
        loadPanel(vp + src, <usize>d * eb, cols * Hk, d, dp, f16, PV);
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
        // full tiles without softcap: the score GEMM also takes the row maxima
        const fused = (e & 1) == 0 && cap == 0;
        if (fused) {
          for (let r = 0; r < RPad; r += 4) v128.store(MX + (<usize>r << 2), negInf);
        }
        if (direct) {
          gemmDots(kt, lk, QR, ld, ST, ls, cols, RPad, d, fused ? MX : 0);
        } else {
          gemmDots(PK + <usize>kh * ld, lp, QR, ld, ST, ls, cols, RPad, dp, fused ? MX : 0);
        }
        if (cap != 0) capTile(ST, ls, cols, RPad, cap);
        if (e & 1) maskTile(ST, ls, cols, RPad, RI, bounds + (<usize>(slice * nk + j0) << 4), 0, nq);
        softmaxTile(ST, ls, cols, RPad, M, L, AL, fused ? MX : 0);
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
  for (let g = nextItem(counter, items, nItems); g >= 0; g = nextItem(counter, items, nItems)) {
    const desc = groups + (<usize>g << 4);
    const b = load<i32>(desc), h0 = load<i32>(desc, 8), nh = load<i32>(desc, 12);
    const first = part + <usize>g * splits * partBytes;
    for (let r = 0; r < nh * nq; r++) {
      const h = h0 + r / nq, i = r % nq;
      const mOff = <usize>rowsMax * ld + (<usize>r << 2), lOff = mOff + (<usize>rowsMax << 2);
      let mMax: f32 = -Infinity;
      for (let s = 0; s < splits; s++) mMax = max(mMax, load<f32>(first + <usize>s * partBytes + mOff));
      let lSum: f32 = 0;
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

// ---- bench baseline ----------------------------------------------------------------------------

/**
 * The GEMM micro-kernel ceiling for the benchmarks: `reps` times C (M × 4·NV) = Aᵀ·B with
 * A (K × M) and B (K × 4·NV) resident in cache, through the same 6×2 TN micro-kernel the
 * attention kernels use. 2·M·4·NV·K·reps flops.
 */
export function gemmBench(A: usize, Bm: usize, C: usize, M: i32, NV: i32, K: i32, reps: i32): void {
  for (let r = 0; r < reps; r++) {
    gemmTN(A, <usize>M << 2, Bm, <usize>NV << 4, C, <usize>NV << 4, M, NV, K, 0);
  }
}

/** Same with the NN micro-kernel: C (M × 4·NV) = A·B, A (M × K), B (K × 4·NV). */
export function gemmBenchNN(A: usize, Bm: usize, C: usize, M: i32, NV: i32, K: i32, reps: i32): void {
  for (let r = 0; r < reps; r++) {
    gemmNN(A, <usize>K << 2, Bm, <usize>NV << 4, C, <usize>NV << 4, M, NV, K, true);
  }
}
