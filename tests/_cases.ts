/**
 * The correctness suite every backend runs: attention cases (mask types, odd sizes, GQA,
 * Nq != Nk, f16, fully masked rows, random FlashMasks), each checked forward and backward
 * against the float64 reference with tolerances derived from a plain float32 computation.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  type BlockMask,
  blockMask,
  type Dropout,
  type DType,
  type FlashMask,
  flashMask,
  stack,
  type Tensor,
} from "../mod.ts";
import { exampleMask, MASK_NAMES } from "../masks/mod.ts";
import {
  type Magnitudes,
  referenceBackward,
  referenceForward,
  referenceMagnitudes,
  reverseHeadDim,
  reverseRows,
  roundTo,
} from "../reference/attention.ts";
import { assertClose, randomTensor, rng, values } from "./_util.ts";

/** One attention problem. */
export interface Case {
  name: string;
  batch: number;
  nq: number;
  nk: number;
  heads: number;
  kvHeads: number;
  d: number;
  dtype: DType;
  mask?: FlashMask;
  causal?: boolean;
  scale?: number;
  windowSize?: [number, number];
  cuSeqlens?: number[];
  kvLength?: number[];
  blockMask?: BlockMask;
  softcap?: number;
  dropout?: Dropout;
  /** Sink logits, one per query head. */
  sinks?: Float32Array;
  /** ALiBi slopes, Hq or batch·Hq. */
  alibiSlopes?: Float32Array;
  /**
   * Run the forward on a paged copy of the KV cache (`blockTable`, pages of this many keys, in
   * shuffled order): it must give the contiguous cache's results. Nk must be a multiple of it.
   */
  pageSize?: number;
  /** Standard deviation of q and k entries (default 1). */
  sigma?: number;
  /** Makes q, k, v and dOut (default: normal entries, q and k with `sigma`). */
  inputs?: (rand: () => number) => [q: Tensor, k: Tensor, v: Tensor, dOut: Tensor];
  /** Skip the backward check. */
  forwardOnly?: boolean;
  /**
   * Ill-conditioned (huge scores): compare with 8× the error of a plain float32 computation, or
   * with the error that scores known to float32 precision imply (P = exp(s − lse) is off by
   * about |s|·2^-24 relative: the bound is 16·2^-24·max|s|), whichever is larger, and without
   * the absolute caps of 1e-5 (f32) and 3e-3 (f16), which float32 itself cannot meet.
   */
  uncapped?: boolean;
  /**
   * A randomly drawn case (the fuzzer): an output that float32 itself cannot compute (its error
   * would put the bound near that of all zeros) is not compared but listed in `unchecked`.
   */
  drawn?: boolean;
}

/** A random valid FlashMask of a random layout with `slices` = [batch, heads]. */
export function randomMask(
  rand: () => number,
  nq: number,
  nk: number,
  slices: [number, number],
): FlashMask {
  const layouts: [boolean, 1 | 2 | 4][] = [[true, 1], [true, 2], [false, 2], [false, 4]];
  const [causal, c] = layouts[Math.floor(rand() * 4)];
  const data = new Int32Array(slices[0] * slices[1] * nk * c);
  const pick = () => Math.floor(rand() * (nq + 1));
  for (let x = 0; x < data.length / c; x++) {
    const [a, b] = [pick(), pick()].sort((u, v) => u - v);
    const [u0, u1] = [pick(), pick()].sort((u, v) => u - v);
    if (c === 1) data[x] = a;
    else if (c === 2) data.set(causal ? [a, b] : [a, u1], x * c);
    else data.set([a, b, u0, u1], x * c);
  }
  return flashMask(data, [slices[0], slices[1], nk, c], { causal, nq });
}

/**
 * One query's mask over `nk` keys in 256-key tiles (the decoding kernel's): every fifth tile
 * masked whole (left out of the tile list), every seventh partly (every third key), so that the
 * list's entries are not the tiles' indices.
 */
export function skippedTiles(nk: number): FlashMask {
  const data = new Int32Array(nk * 2); // [LTS, UTE] per key: [0, 0] masks the row, [1, 0] not
  for (let j = 0; j < nk; j++) {
    const tile = Math.floor(j / 256);
    data[2 * j] = tile % 5 === 2 || (tile % 7 === 3 && j % 3 === 0) ? 0 : 1;
  }
  return flashMask(data, [1, 1, nk, 2], { causal: false, nq: 1 });
}

/** The standard suite; `large` adds a 1025-long case. */
export function standardCases(options: { large?: boolean } = {}): Case[] {
  const cases: Case[] = [];
  const base = { batch: 1, heads: 2, kvHeads: 1, dtype: "f32" as DType };
  for (const name of MASK_NAMES) {
    for (const [n, d] of [[17, 8], [97, 59]]) {
      cases.push({
        ...base,
        name: `${name} n=${n} d=${d}`,
        nq: n,
        nk: n,
        d,
        mask: exampleMask(name, n, 4).mask,
      });
    }
  }
  const one = { batch: 1, heads: 1, kvHeads: 1, dtype: "f32" as DType };
  cases.push(
    { ...one, name: "seq 1", nq: 1, nk: 1, d: 8 },
    { ...one, name: "head dim 1", nq: 17, nk: 17, d: 1, causal: true },
    { ...one, name: "head dim 96", nq: 33, nk: 33, d: 96, causal: true },
    { ...one, name: "head dim 128", nq: 20, nk: 20, d: 128 },
    { ...one, name: "head dim 256", nq: 17, nk: 17, d: 256, causal: true },
    { ...one, name: "Nq < Nk causal (bottom-right)", nq: 5, nk: 17, d: 16, causal: true },
    { ...one, name: "Nq > Nk causal (first rows see nothing)", nq: 17, nk: 5, d: 16, causal: true },
    { ...one, name: "Nq != Nk no mask", nq: 33, nk: 20, d: 16 },
    { ...one, name: "custom scale", nq: 17, nk: 17, d: 16, scale: 0.7, causal: true },
    { ...one, name: "large scores", nq: 33, nk: 33, d: 64, sigma: 6, causal: true },
    {
      ...one,
      name: "GQA 4:2 per-key-head mask",
      heads: 4,
      kvHeads: 2,
      nq: 40,
      nk: 40,
      d: 24,
      mask: stack([[exampleMask("slidingWindow", 40).mask, exampleMask("document", 40).mask]]),
    },
    {
      ...one,
      name: "MQA 3:1 per-query-head mask",
      heads: 3,
      kvHeads: 1,
      nq: 23,
      nk: 23,
      d: 16,
      mask: stack([[
        exampleMask("causal", 23).mask,
        exampleMask("prefixLmCausal", 23).mask,
        exampleMask("qkSparse", 23).mask,
      ]]),
    },
    {
      ...one,
      name: "batch 2 with a per-batch mask",
      batch: 2,
      heads: 2,
      kvHeads: 2,
      nq: 31,
      nk: 31,
      d: 16,
      mask: stack([[exampleMask("causalDocument", 31, 1).mask], [
        exampleMask("globalSlidingWindow", 31, 2).mask,
      ]]),
    },
    {
      ...one,
      name: "fully masked rows",
      nq: 12,
      nk: 12,
      d: 8,
      // rows [3, 7) are masked in every column
      mask: flashMask(new Int32Array(12 * 4).map((_, i) => [3, 7, 0, 0][i % 4]), [1, 1, 12, 4], {
        causal: false,
      }),
    },
    {
      ...one,
      name: "f16 causal document",
      dtype: "f16",
      nq: 45,
      nk: 45,
      d: 32,
      mask: exampleMask("causalDocument", 45).mask,
    },
    {
      ...one,
      name: "f16 GQA no mask Nq != Nk",
      dtype: "f16",
      heads: 2,
      kvHeads: 1,
      nq: 17,
      nk: 29,
      d: 59,
    },
  );
  const rand = rng(99);
  for (let t = 0; t < 6; t++) {
    const nq = 1 + Math.floor(rand() * 40), nk = 1 + Math.floor(rand() * 40);
    const heads = [1, 2, 4][t % 3], kvHeads = t % 2 ? 1 : heads;
    const maskHeads = [1, kvHeads, heads][t % 3];
    cases.push({
      ...one,
      name: `random FlashMask #${t} (${nq}x${nk}, ${heads}:${kvHeads} heads)`,
      batch: 1 + (t % 2),
      heads,
      kvHeads,
      nq,
      nk,
      d: 8 + t,
      mask: randomMask(rand, nq, nk, [t % 2 ? 2 : 1, maskHeads]),
      dtype: t === 5 ? "f16" : "f32",
    });
  }
  if (options.large) {
    cases.push({
      ...one,
      name: "n=1025 causal document",
      nq: 1025,
      nk: 1025,
      d: 16,
      mask: exampleMask("causalDocument", 1025).mask,
    });
  }
  return cases;
}

/**
 * Cases of the options beyond plain masks: local windows, packed sequences, ragged KV
 * caches, block-sparse masks, softcap and dropout, each forward and backward.
 */
export function featureCases(): Case[] {
  const one = { batch: 1, heads: 2, kvHeads: 1, dtype: "f32" as DType, d: 16 };
  const rand = rng(17);
  const blocks = (b: number, h: number, r: number, c: number) =>
    blockMask(
      Uint8Array.from({ length: b * h * r * c }, () => (rand() < 0.6 ? 1 : 0)),
      [b, h, r, c],
      { blockRows: 128, blockCols: 128 },
    );
  return [
    { ...one, name: "windowSize [5, 3]", nq: 40, nk: 40, windowSize: [5, 3] },
    {
      ...one,
      name: "windowSize [7, -1] causal, Nq < Nk",
      nq: 23,
      nk: 50,
      windowSize: [7, -1],
      causal: true,
    },
    { ...one, name: "windowSize [-1, 2], Nq > Nk", nq: 45, nk: 30, windowSize: [-1, 2] },
    {
      ...one,
      name: "cuSeqlens causal",
      nq: 50,
      nk: 50,
      heads: 1,
      cuSeqlens: [0, 7, 30, 31, 50],
      causal: true,
    },
    {
      ...one,
      name: "cuSeqlens with a window",
      nq: 50,
      nk: 50,
      heads: 1,
      cuSeqlens: [0, 20, 50],
      windowSize: [4, 0],
    },
    {
      ...one,
      name: "kvLength causal, 3 new queries",
      batch: 3,
      nq: 3,
      nk: 37,
      kvLength: [37, 10, 0],
      causal: true,
    },
    {
      ...one,
      name: "kvLength window",
      batch: 2,
      nq: 5,
      nk: 29,
      kvLength: [29, 13],
      windowSize: [6, 0],
    },
    {
      ...one,
      name: "blockMask 128 x 128",
      heads: 2,
      kvHeads: 2,
      nq: 300,
      nk: 260,
      blockMask: blocks(1, 2, 3, 3),
    },
    {
      ...one,
      name: "blockMask with a causal document mask, per batch",
      batch: 2,
      nq: 260,
      nk: 260,
      d: 8,
      mask: exampleMask("causalDocument", 260, 5).mask,
      blockMask: blocks(2, 1, 3, 3),
    },
    { ...one, name: "softcap 2", nq: 33, nk: 33, softcap: 2, causal: true, sigma: 3 },
    {
      ...one,
      name: "softcap 30 with a mask",
      nq: 40,
      nk: 40,
      softcap: 30,
      mask: exampleMask("document", 40).mask,
    },
    {
      // scores ≪ softcap: tanh near 0, where an exp-based tanh loses digits (fuzz seed 122)
      ...one,
      name: "softcap 50 on small scores, one key, GQA 6:3",
      heads: 6,
      kvHeads: 3,
      nq: 78,
      nk: 1,
      d: 4,
      softcap: 50,
    },
    {
      // a per-key-head block mask with a per-query-head FlashMask (fuzz seed 1336)
      ...one,
      name: "blockMask per key head, FlashMask per query head",
      heads: 6,
      kvHeads: 2,
      nq: 140,
      nk: 150,
      mask: randomMask(rand, 140, 150, [1, 6]),
      blockMask: blocks(1, 2, 2, 2),
    },
    { ...one, name: "dropout 0.2", nq: 37, nk: 37, dropout: { p: 0.2, seed: 42 } },
    {
      ...one,
      name: "dropout 0.5 causal GQA",
      heads: 4,
      kvHeads: 2,
      nq: 29,
      nk: 29,
      dropout: { p: 0.5, seed: 2 ** 40 + 7 },
      causal: true,
    },
    {
      ...one,
      name: "dropout with softcap and a window",
      nq: 31,
      nk: 31,
      dropout: { p: 0.1, seed: 3 },
      softcap: 5,
      windowSize: [6, 6],
    },
  ];
}

/** A term's cases on every mask builder at n = 37 (`base`: the case without its mask). */
function everyMaskBuilder(term: string, base: Omit<Case, "name" | "nq" | "nk">): Case[] {
  return MASK_NAMES.map((name) => ({
    ...base,
    name: `${term}, ${name} n=37`,
    nq: 37,
    nk: 37,
    mask: exampleMask(name, 37, 4).mask,
  }));
}

/**
 * Attention sinks (one logit per query head) with every mask builder, a random FlashMask, GQA,
 * Nq ≠ Nk, f16, softcap, dropout, ragged caches with an empty entry (rows that see no key: out 0,
 * lse σ) and decoding shapes; sinks from −3 to 4, so that they take from nothing to most of a
 * row's probability.
 */
export function sinkCases(): Case[] {
  const rand = rng(29);
  const sinks = (h: number) => Float32Array.from({ length: h }, () => -3 + 7 * rand());
  const one = { batch: 1, heads: 3, kvHeads: 1, dtype: "f32" as DType, d: 16, sinks: sinks(3) };
  const cases = everyMaskBuilder("sinks", one);
  cases.push(
    { ...one, name: "sinks, no mask, Nq > Nk, d=59", nq: 41, nk: 19, d: 59 },
    { ...one, name: "sinks, causal Nq > Nk (rows that see nothing)", nq: 23, nk: 9, causal: true },
    {
      ...one,
      name: "sinks, random FlashMask per query head, GQA 6:2",
      heads: 6,
      kvHeads: 2,
      sinks: sinks(6),
      nq: 70,
      nk: 53,
      mask: randomMask(rand, 70, 53, [1, 6]),
    },
    {
      ...one,
      name: "sinks, f16, causal, d=40",
      dtype: "f16",
      nq: 33,
      nk: 33,
      d: 40,
      causal: true,
    },
    { ...one, name: "sinks with softcap 5", nq: 29, nk: 29, softcap: 5, sigma: 2, causal: true },
    {
      ...one,
      name: "sinks with dropout 0.3 and a window",
      nq: 31,
      nk: 31,
      dropout: { p: 0.3, seed: 5 },
      windowSize: [6, 2],
    },
    {
      ...one,
      name: "sinks, kvLength [40, 0, 7] causal, 2 new queries (an empty cache entry)",
      batch: 3,
      nq: 2,
      nk: 40,
      kvLength: [40, 0, 7],
      causal: true,
    },
    {
      ...one,
      name: "sinks, decode: 1 query against 300 keys, GQA 8:2, d=64",
      heads: 8,
      kvHeads: 2,
      sinks: sinks(8),
      nq: 1,
      nk: 300,
      d: 64,
    },
  );
  return cases;
}

/**
 * ALiBi with every mask builder, GQA, Nq ≠ Nk (bottom-right alignment), per-batch slopes, ragged
 * caches (alignment per entry), packed sequences, f16, softcap, dropout, sinks and decoding
 * shapes; slopes as ALiBi's (2^(−8h/Hq)) and a few larger ones, so that the bias reorders scores.
 */
export function alibiCases(): Case[] {
  const slopes = (h: number, x = 1) =>
    Float32Array.from({ length: h }, (_, i) => x * 2 ** (-8 * (i + 1) / h));
  const one = {
    batch: 1,
    heads: 3,
    kvHeads: 1,
    dtype: "f32" as DType,
    d: 16,
    alibiSlopes: slopes(3),
  };
  const cases = everyMaskBuilder("alibi", one);
  cases.push(
    { ...one, name: "alibi, no mask, Nq < Nk, d=59", nq: 19, nk: 41, d: 59 },
    { ...one, name: "alibi, causal Nq > Nk (rows that see nothing)", nq: 23, nk: 9, causal: true },
    {
      ...one,
      name: "alibi per batch entry and head (batch·Hq slopes), GQA 4:2, causal",
      batch: 2,
      heads: 4,
      kvHeads: 2,
      alibiSlopes: Float32Array.from([0.5, 0.25, 1, 2, 0.125, 0.75, 0.0625, 3]),
      nq: 30,
      nk: 45,
      causal: true,
    },
    {
      ...one,
      name: "alibi, f16, a window, d=40",
      dtype: "f16",
      nq: 33,
      nk: 33,
      d: 40,
      windowSize: [9, 3],
    },
    {
      ...one,
      name: "alibi with softcap 5, sinks and dropout 0.2",
      nq: 29,
      nk: 29,
      softcap: 5,
      sigma: 2,
      sinks: Float32Array.from([0.5, -1, 2]),
      dropout: { p: 0.2, seed: 9 },
      causal: true,
      alibiSlopes: slopes(3, 4),
    },
    {
      ...one,
      name: "alibi, cuSeqlens causal",
      heads: 1,
      alibiSlopes: slopes(1, 2),
      nq: 40,
      nk: 40,
      cuSeqlens: [0, 11, 25, 40],
      causal: true,
    },
    {
      ...one,
      name: "alibi, kvLength [40, 0, 7] causal, 2 new queries (aligned per entry)",
      batch: 3,
      nq: 2,
      nk: 40,
      kvLength: [40, 0, 7],
      causal: true,
    },
    {
      ...one,
      name: "alibi, decode: 1 query against 300 keys, GQA 8:2, d=64",
      heads: 8,
      kvHeads: 2,
      alibiSlopes: slopes(8),
      nq: 1,
      nk: 300,
      d: 64,
    },
  );
  return cases;
}

/**
 * Decoding shapes (few queries against a long cache): single and multiple queries, GQA,
 * ragged caches, per-query-head masks, the score options, odd head dims and f16.
 */
export function decodeCases(): Case[] {
  const one = { batch: 1, heads: 8, kvHeads: 2, dtype: "f32" as DType, d: 64 };
  const rand = rng(23);
  return [
    { ...one, name: "decode 1 query, 1025 keys, GQA 4", nq: 1, nk: 1025 },
    { ...one, name: "decode 3 queries causal, 300 keys", nq: 3, nk: 300, causal: true },
    {
      ...one,
      name: "decode 16 queries, 17 keys, d 59",
      nq: 16,
      nk: 17,
      d: 59,
      heads: 2,
      kvHeads: 1,
    },
    { ...one, name: "decode 1 key", nq: 2, nk: 1, heads: 2, kvHeads: 2, d: 8 },
    {
      ...one,
      name: "decode ragged kvLength causal",
      batch: 3,
      nq: 2,
      nk: 700,
      kvLength: [700, 260, 0],
      causal: true,
    },
    {
      ...one,
      name: "decode per-query-head mask",
      heads: 4,
      kvHeads: 2,
      nq: 4,
      nk: 520,
      mask: randomMask(rand, 4, 520, [1, 4]),
    },
    {
      ...one,
      name: "decode softcap and dropout",
      nq: 2,
      nk: 600,
      softcap: 10,
      dropout: { p: 0.25, seed: 5 },
    },
    {
      ...one,
      name: "decode f16 window",
      dtype: "f16",
      nq: 1,
      nk: 800,
      windowSize: [200, 0],
      causal: true,
    },
    {
      ...one,
      name: "decode 1 query, 100001 keys, every fifth tile masked (a tile list of 313 entries)",
      nq: 1,
      nk: 100001,
      d: 8,
      heads: 2,
      kvHeads: 1,
      mask: skippedTiles(100001),
    },
    // d 96 and 128: the widths whose defaults differ (the cooperative first phase in f32)
    { ...one, name: "decode d 128, 1 query, 1100 keys, GQA 4", nq: 1, nk: 1100, d: 128 },
    { ...one, name: "decode d 96, 2 queries, 1025 keys, GQA 2", nq: 2, nk: 1025, d: 96, heads: 4 },
    {
      ...one,
      name: "decode d 128 f16, 1 query, 1100 keys, GQA 4, causal",
      dtype: "f16",
      nq: 1,
      nk: 1100,
      d: 128,
      causal: true,
    },
  ];
}

/** A case's inputs, options and float64 references, computed once for any number of backends. */
/** Float64 gradients (`dsinks` with sinks). */
type Grads64 = { dq: Float64Array; dk: Float64Array; dv: Float64Array; dsinks?: Float64Array };

export interface PreparedCase {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  dOut: Tensor;
  /** The case's attention options (no backend). */
  opt: AttentionOptions;
  /**
   * Reference forward (float64) and its plain float32 baselines: summing over the head dim in
   * order, and (`f32r`, with `orders: 2`) in reverse order; the worse one sets the tolerance.
   */
  forward: {
    ref: { out: Float64Array; lse: Float64Array };
    f32: { out: Float64Array; lse: Float64Array };
    f32r?: { out: Float64Array; lse: Float64Array };
  };
  /** Reference gradients (float64) and the float32 baselines (undefined: forward only). */
  backward?: {
    ref: Grads64;
    f32: Grads64;
    f32r?: Grads64;
  };
  /** Rounding-error magnitudes of the outputs (with `thorough`; see referenceMagnitudes). */
  magnitudes?: Magnitudes;
}

/**
 * Draws a case's inputs (seeded) and computes its references. With `thorough` (the fuzzer) the
 * float32 baseline is also computed with the head dimension reversed (another summation order
 * of every dot product), and the outputs' rounding-error magnitudes are computed, so that
 * neither a baseline that is lucky in one order nor outputs that cancel set too tight a bound.
 */
export function prepareCase(c: Case, seed = 1, options: { thorough?: boolean } = {}): PreparedCase {
  const rand = rng(seed);
  const sigma = c.sigma ?? 1;
  const [q, k, v, dOut] = c.inputs?.(rand) ?? [
    randomTensor(rand, [c.batch, c.nq, c.heads, c.d], c.dtype, sigma),
    randomTensor(rand, [c.batch, c.nk, c.kvHeads, c.d], c.dtype, sigma),
    randomTensor(rand, [c.batch, c.nk, c.kvHeads, c.d], c.dtype),
    randomTensor(rand, [c.batch, c.nq, c.heads, c.d], c.dtype),
  ];
  const opt = {
    mask: c.mask,
    causal: c.causal,
    scale: c.scale,
    windowSize: c.windowSize,
    cuSeqlens: c.cuSeqlens,
    kvLength: c.kvLength,
    blockMask: c.blockMask,
    softcap: c.softcap,
    dropout: c.dropout,
    sinks: c.sinks,
    alibiSlopes: c.alibiSlopes,
  };
  const f32 = referenceForward(q, k, v, opt, Math.fround);
  const pc: PreparedCase = {
    q,
    k,
    v,
    dOut,
    opt,
    forward: { ref: referenceForward(q, k, v, opt), f32 },
    backward: c.forwardOnly ? undefined : {
      ref: referenceBackward(q, k, v, dOut, opt),
      f32: referenceBackward(q, k, v, dOut, opt, Math.fround, f32.out),
    },
  };
  if (options.thorough) {
    pc.magnitudes = referenceMagnitudes(q, k, v, dOut, opt);
    const [rq, rk, rv, rdo] = [q, k, v, dOut].map(reverseHeadDim);
    const fr = referenceForward(rq, rk, rv, opt, Math.fround);
    pc.forward.f32r = { out: reverseRows(fr.out, c.d), lse: fr.lse };
    if (pc.backward) {
      const g = referenceBackward(rq, rk, rv, rdo, opt, Math.fround, fr.out);
      pc.backward.f32r = {
        dq: reverseRows(g.dq, c.d),
        dk: reverseRows(g.dk, c.d),
        dv: reverseRows(g.dv, c.d),
        dsinks: g.dsinks,
      };
    }
  }
  return pc;
}

/**
 * Runs a prepared case through `attention` / `attentionBackward` with `extra` options (the
 * backend) and checks it against the reference; returns the results.
 */
export async function checkPrepared(
  c: Case,
  pc: PreparedCase,
  extra: AttentionOptions,
): Promise<
  { out: Tensor; lse: Float32Array; dq?: Tensor; dk?: Tensor; dv?: Tensor; unchecked: string[] }
> {
  const { q, k, v, dOut, opt } = pc;
  const unchecked: string[] = [];
  const illPosed = c.drawn ? "skip" as const : "fail" as const;
  const check = (what: string, ...args: Parameters<typeof assertClose>) => {
    const r = assertClose(args[0], args[1], args[2], args[3], { ...args[4], illPosed });
    if (!r.checked) unchecked.push(what);
  };
  const copies = [q, k, v, dOut].map((t) => t.data.slice());
  const options: AttentionOptions = { ...opt, ...extra };
  const { out, lse } = await attention(q, k, v, options);
  if (c.pageSize) {
    // the same cache in shuffled pages: bitwise the contiguous results
    const paged = pagedCache(k, v, c.pageSize, c.batch * c.nq + c.nk);
    const r = await attention(q, paged.k, paged.v, { ...options, blockTable: paged.table });
    assert.deepEqual(r.out.data, out.data, `${c.name}: paged out`);
    assert.deepEqual(r.lse, lse, `${c.name}: paged lse`);
  }
  const { ref, f32, f32r } = pc.forward;
  // The floor of a few float32 ulps (2^-21) grows like the square root of the longest sum
  // (rounding errors of a long sum add up like a random walk; the baselines sum the rows and
  // keys in one order only)
  const longest = Math.max(c.nk, c.nq * (c.heads / c.kvHeads), c.d);
  const floor = 2 ** -21 * Math.max(1, Math.sqrt(longest / 64));
  const od = c.uncapped
    ? {
      dtype: c.dtype,
      cap: Infinity,
      floor: Math.max(floor, 16 * 2 ** -24 * maxScore(q, k, opt.scale)),
    }
    : { dtype: c.dtype, floor };
  assert.equal(out.dtype, c.dtype);
  assert.deepEqual(out.shape, q.shape);
  const mg = pc.magnitudes;
  const more = (x: Float64Array | undefined, m: Float64Array | undefined, round = true) => ({
    ...(x ? { baselines: [round ? roundTo(x, c.dtype) : x] } : {}),
    ...(m ? { magnitudes: m } : {}),
  });
  check("out", `${c.name}: out`, out, ref.out, roundTo(f32.out, c.dtype), {
    ...od,
    ...more(f32r?.out, mg?.out),
  });
  // lse ≈ the largest score: rounding the scores moves it by ~|s|·2^-24, a relative error of a
  // few ulps, so the score floor of the uncapped cases (which P and out need) does not apply
  check("lse", `${c.name}: lse`, lse, ref.lse, f32.lse, {
    dtype: "f32",
    floor,
    ...more(f32r?.lse, mg?.lse, false),
  });
  let grads: { dq: Tensor; dk: Tensor; dv: Tensor } | undefined;
  if (pc.backward) {
    const g = await attentionBackward({ q, k, v, out, lse, dOut }, options);
    const { ref: rg, f32: fg, f32r: fr } = pc.backward;
    for (
      const [name, t, r, f, f2, m] of [
        ["dq", g.dq, rg.dq, fg.dq, fr?.dq, mg?.dq],
        ["dk", g.dk, rg.dk, fg.dk, fr?.dk, mg?.dk],
        ["dv", g.dv, rg.dv, fg.dv, fr?.dv, mg?.dv],
      ] as const
    ) {
      assert.equal(t.dtype, c.dtype);
      assert.deepEqual(t.shape, name === "dq" ? q.shape : k.shape);
      check(name, `${c.name}: ${name}`, t, r, roundTo(f, c.dtype), { ...od, ...more(f2, m) });
    }
    assert.equal(g.dsinks !== undefined, rg.dsinks !== undefined, "dsinks with sinks only");
    if (rg.dsinks) {
      // a sum over every row of the head: its floor grows with the number of rows summed; with
      // huge scores (uncapped) exp(σ − lse) carries the float32 lse's error, as P does
      const rows = c.batch * c.nq;
      const sumFloor = 2 ** -21 * Math.max(1, Math.sqrt(rows / 64));
      check("dsinks", `${c.name}: dsinks`, g.dsinks!, rg.dsinks, fg.dsinks!, {
        dtype: "f32",
        ...(c.uncapped ? { cap: od.cap } : {}),
        floor: Math.max(sumFloor, c.uncapped ? od.floor : 0),
        ...more(fr?.dsinks, mg?.dsinks, false),
      });
    }
    grads = g;
  }
  [q, k, v, dOut].forEach((t: Tensor, i) =>
    assert.deepEqual(t.data, copies[i], "inputs unchanged")
  );
  return { out, lse, ...grads, unchecked };
}

/**
 * k and v `[B, Nk, Hk, d]` as a paged cache: pages of `pageSize` keys in an order shuffled by
 * `seed`, and its page table.
 */
export function pagedCache(
  k: Tensor,
  v: Tensor,
  pageSize: number,
  seed: number,
): { k: Tensor; v: Tensor; table: { data: Int32Array; shape: [number, number] } } {
  const [B, nk, Hk, d] = k.shape, per = nk / pageSize, n = B * per, len = pageSize * Hk * d;
  const rand = rng(seed);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const page = (t: Tensor): Tensor => {
    const src = t.data, dst = new (src.constructor as Float32ArrayConstructor)(src.length);
    order.forEach((p, s) =>
      dst.set((src as Float32Array).subarray(s * len, (s + 1) * len), p * len)
    );
    return { data: dst, shape: [n, pageSize, Hk, d], dtype: t.dtype } as Tensor;
  };
  return { k: page(k), v: page(v), table: { data: Int32Array.from(order), shape: [B, per] } };
}

/** The largest |q·k|·scale over all query and key pairs (masked or not). */
function maxScore(q: Tensor, k: Tensor, scale?: number): number {
  const [B, nq, H, d] = q.shape, [, nk, Hk] = k.shape;
  const a = values(q), b = values(k);
  let m = 0;
  for (let bb = 0; bb < B; bb++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor((h * Hk) / H);
      for (let i = 0; i < nq; i++) {
        for (let j = 0; j < nk; j++) {
          let dot = 0;
          for (let x = 0; x < d; x++) {
            dot += a[((bb * nq + i) * H + h) * d + x] * b[((bb * nk + j) * Hk + kh) * d + x];
          }
          m = Math.max(m, Math.abs(dot));
        }
      }
    }
  }
  return m * (scale ?? 1 / Math.sqrt(d));
}

/** Runs one case through `attention` / `attentionBackward` and checks it against the reference. */
export async function checkCase(c: Case, extra: AttentionOptions, seed = 1): Promise<void> {
  await checkPrepared(c, prepareCase(c, seed), extra);
}

/**
 * Checks that rows that see no key give out 0, lse -Infinity and zero gradients, and that
 * nothing is NaN or infinite: a few hidden rows (f32), hidden rows across tile boundaries with
 * GQA (f16), a call in which every row is hidden, and the hidden rows again with softcap and
 * dropout where the backend implements them (it refuses them with a TypeError otherwise).
 */
export async function checkMaskedRows(extra: AttentionOptions): Promise<void> {
  const variants: {
    name: string;
    n: number;
    heads: number;
    kvHeads: number;
    d: number;
    dtype: DType;
    hidden: [number, number];
    options?: AttentionOptions;
  }[] = [
    { name: "rows 2..4", n: 9, heads: 1, kvHeads: 1, d: 8, dtype: "f32", hidden: [2, 5] },
    {
      name: "rows 40..69 (across tiles), GQA, f16",
      n: 100,
      heads: 4,
      kvHeads: 2,
      d: 24,
      dtype: "f16",
      hidden: [40, 70],
    },
    { name: "every row", n: 21, heads: 2, kvHeads: 1, d: 8, dtype: "f32", hidden: [0, 21] },
    {
      name: "rows 3..9 with softcap and dropout",
      n: 30,
      heads: 2,
      kvHeads: 1,
      d: 8,
      dtype: "f32",
      hidden: [3, 10],
      options: { softcap: 3, dropout: { p: 0.3, seed: 9 } },
    },
  ];
  const rand = rng(3);
  for (const t of variants) {
    const { n, d, hidden: [h0, h1] } = t;
    const what = `fully masked ${t.name}`;
    // non-causal, 4 columns: every column masks rows [h0, h1)
    const mask = flashMask(
      new Int32Array(n * 4).map((_, i) => [h0, h1, 0, 0][i % 4]),
      [1, 1, n, 4],
      { causal: false },
    );
    const q = randomTensor(rand, [1, n, t.heads, d], t.dtype);
    const dOut = randomTensor(rand, [1, n, t.heads, d], t.dtype);
    const k = randomTensor(rand, [1, n, t.kvHeads, d], t.dtype);
    const v = randomTensor(rand, [1, n, t.kvHeads, d], t.dtype);
    const options = { ...t.options, mask, ...extra };
    const { out, lse } = await attention(q, k, v, options);
    const g = await attentionBackward({ q, k, v, out, lse, dOut }, options);
    const [o, dq] = [out, g.dq].map(values);
    for (let i = 0; i < n; i++) {
      const isHidden = i >= h0 && i < h1;
      for (let h = 0; h < t.heads; h++) {
        assert.equal(lse[h * n + i] === -Infinity, isHidden, `${what}: row ${i} head ${h} lse`);
        if (!isHidden) continue;
        for (let x = 0; x < d; x++) {
          const at = (i * t.heads + h) * d + x;
          assert.ok(o[at] === 0, `${what}: row ${i} out is ${o[at]}`);
          assert.ok(dq[at] === 0, `${what}: row ${i} dq is ${dq[at]}`);
        }
      }
    }
    for (const [name, x] of [["out", out], ["dq", g.dq], ["dk", g.dk], ["dv", g.dv]] as const) {
      const vals = values(x);
      for (let i = 0; i < vals.length; i++) {
        assert.ok(Number.isFinite(vals[i]), `${what}: ${name}[${i}] is ${vals[i]}`);
      }
      if (h0 === 0 && h1 === n) {
        assert.ok(Array.prototype.every.call(vals, (y: number) => y === 0), `${what}: ${name} 0`);
      }
    }
  }
}
