/**
 * Attention dropout's random mask: a counter-based generator (Philox4x32-10, Salmon et al.,
 * SC'11), keyed by the seed and counted by position, so that every backend drops exactly the same
 * elements and the backward pass regenerates the mask instead of storing it.
 *
 * Element (batch b, query head h, row i, key j) is kept iff word `j & 3` of
 * `philox4x32_10(counter = [j >>> 2, i, h, b], key = [seed mod 2^32, floor(seed / 2^32)])`
 * is at least `threshold = round(p · 2^32)` (clamped to 2^32 − 1); kept probabilities are scaled
 * by `1 / (1 − p)`. The WGSL and AssemblyScript kernels implement the same function.
 *
 * @module
 */

/** Dropout on the attention probabilities. */
export interface Dropout {
  /** Probability of dropping an element, in [0, 1). */
  p: number;
  /** Seed: a non-negative integer below 2^53. */
  seed: number;
}

const M0 = 0xd2511f53, M1 = 0xcd9e8d57, W0 = 0x9e3779b9, W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two u32. */
function mulhi(a: number, b: number): number {
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const lo = a0 * b0, m1 = a1 * b0, m2 = a0 * b1;
  const carry = ((lo >>> 16) + (m1 & 0xffff) + (m2 & 0xffff)) >>> 16;
  return (a1 * b1 + (m1 >>> 16) + (m2 >>> 16) + carry) >>> 0;
}

/**
 * Philox4x32-10: four 32-bit random words for a 128-bit counter and a 64-bit key.
 *
 * @example The Random123 known-answer vector
 * ```ts
 * import { philox4x32 } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(Array.from(philox4x32([0, 0, 0, 0], [0, 0])), [
 *   0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8,
 * ]);
 * ```
 */
export function philox4x32(
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
): Uint32Array {
  let [c0, c1, c2, c3] = counter.map((x) => x >>> 0);
  let k0 = key[0] >>> 0, k1 = key[1] >>> 0;
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return Uint32Array.of(c0, c1, c2, c3);
}

/** The u32 threshold below which a word drops its element: round(p · 2^32), at most 2^32 − 1. */
export function dropoutThreshold(p: number): number {
  return Math.min(0xffffffff, Math.round(p * 2 ** 32));
}

/** The Philox key of a seed: [low 32 bits, high 21 bits]. */
export function dropoutKey(seed: number): [number, number] {
  return [seed % 2 ** 32 >>> 0, Math.floor(seed / 2 ** 32) >>> 0];
}

/**
 * Whether dropout keeps element (b, h, i, j). Reference form; kernels compute one Philox call
 * per 4 consecutive keys.
 *
 * @example
 * ```ts
 * import { dropoutKeeps } from "./mod.ts";
 *
 * let kept = 0;
 * for (let j = 0; j < 10000; j++) if (dropoutKeeps({ p: 0.1, seed: 7 }, 0, 0, 0, j)) kept++;
 * console.log(kept / 10000); // about 0.9
 * ```
 */
export function dropoutKeeps(d: Dropout, b: number, h: number, i: number, j: number): boolean {
  const words = philox4x32([j >>> 2, i, h, b], dropoutKey(d.seed));
  return words[j & 3] >= dropoutThreshold(d.p);
}

/** Checks a dropout option: p in [0, 1), seed a non-negative safe integer. */
export function checkDropout(d: unknown, field = "options.dropout"): asserts d is Dropout {
  if (typeof d !== "object" || d === null) {
    throw new TypeError(`${field} must be an object { p, seed }`);
  }
  const { p, seed } = d as Record<string, unknown>;
  if (typeof p !== "number" || !(p >= 0 && p < 1)) {
    throw new RangeError(`${field}.p must be a number in [0, 1), got ${p}`);
  }
  if (!Number.isSafeInteger(seed) || (seed as number) < 0) {
    throw new RangeError(`${field}.seed must be a non-negative safe integer, got ${seed}`);
  }
}
