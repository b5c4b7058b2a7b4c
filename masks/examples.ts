/**
 * The twelve mask types of the FlashMask paper at a given length, with typical parameters:
 * what the benchmarks run and the tests sweep. Parameters are drawn from a seeded generator,
 * so the same (name, n, seed) always gives the same mask.
 *
 * @module
 */

import {
  causal,
  causalBlockwise,
  causalDocument,
  document,
  full,
  globalSlidingWindow,
  type PrefixDocument,
  prefixLmCausal,
  prefixLmDocument,
  qkSparse,
  type QuestionGroup,
  randomEviction,
  shareQuestion,
  slidingWindow,
  splitmix32,
} from "./builders.ts";
import type { FlashMask } from "./flashmask.ts";

/** Names of the twelve mask types, in the order of the paper's figures. */
export const MASK_NAMES = [
  "full",
  "causal",
  "slidingWindow",
  "causalDocument",
  "document",
  "shareQuestion",
  "globalSlidingWindow",
  "causalBlockwise",
  "prefixLmCausal",
  "prefixLmDocument",
  "qkSparse",
  "randomEviction",
] as const;

/** One of the twelve mask types. */
export type MaskName = typeof MASK_NAMES[number];

/** A mask of one of the twelve types and the builder arguments that made it. */
export interface ExampleMask {
  /** Mask type. */
  name: MaskName;
  /** The mask, shape `[1, 1, n, C]`. */
  mask: FlashMask;
  /** Arguments passed to the builder of that name. */
  args: unknown[];
}

/**
 * A mask of type `name` over `n` tokens with typical parameters: windows of n/8, global
 * tokens and prefixes of n/16 to n/4, 2–6 documents or blocks of random lengths.
 *
 * @example
 * ```ts
 * import { exampleMask, MASK_NAMES } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * for (const name of MASK_NAMES) assert.equal(exampleMask(name, 64).mask.shape[2], 64);
 * ```
 */
export function exampleMask(name: MaskName, n: number, seed = 1): ExampleMask {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`exampleMask: n must be a positive integer, got ${n}`);
  }
  const rand = splitmix32(seed * 7919 + n);
  const parts = () => split(n, 2 + Math.floor(rand() * 5), rand);
  const frac = (f: number) => Math.max(1, Math.floor(n * f));
  switch (name) {
    case "full":
      return { name, mask: full(n, n), args: [n, n] };
    case "causal":
      return { name, mask: causal(n), args: [n] };
    case "slidingWindow":
      return { name, mask: slidingWindow(n, frac(1 / 8)), args: [n, frac(1 / 8)] };
    case "causalDocument": {
      const docs = parts();
      return { name, mask: causalDocument(docs), args: [docs] };
    }
    case "document": {
      const docs = parts();
      return { name, mask: document(docs), args: [docs] };
    }
    case "shareQuestion": {
      const groups: QuestionGroup[] = split(n, 1 + Math.floor(rand() * 2), rand).map((len) => {
        const [question, ...answers] = split(len, Math.min(len, 2 + Math.floor(rand() * 3)), rand);
        return { question, answers };
      });
      return { name, mask: shareQuestion(groups), args: [groups] };
    }
    case "globalSlidingWindow": {
      const g = Math.min(n, frac(1 / 16)), w = frac(1 / 16);
      return { name, mask: globalSlidingWindow(n, g, w, w), args: [n, g, w, w] };
    }
    case "causalBlockwise": {
      const blocks = parts();
      return { name, mask: causalBlockwise(blocks), args: [blocks] };
    }
    case "prefixLmCausal":
      return { name, mask: prefixLmCausal(n, frac(1 / 4)), args: [n, frac(1 / 4)] };
    case "prefixLmDocument": {
      const docs: PrefixDocument[] = parts().map((length) => ({
        length,
        prefix: Math.floor(length * rand()),
      }));
      return { name, mask: prefixLmDocument(docs), args: [docs] };
    }
    case "qkSparse": {
      const start = Math.floor(n / 4), end = Math.max(start, Math.floor(n / 2));
      return { name, mask: qkSparse(n, start, end), args: [n, start, end] };
    }
    case "randomEviction": {
      const opts = { startRow: Math.max(1, Math.floor(n / 2)), seed };
      return { name, mask: randomEviction(n, opts), args: [n, opts] };
    }
    default:
      throw new RangeError(`exampleMask: unknown mask type ${JSON.stringify(name)}`);
  }
}

/** Splits n into min(parts, n) positive random lengths. */
function split(n: number, parts: number, rand: () => number): number[] {
  const k = Math.max(1, Math.min(parts, n));
  const cuts = new Set<number>();
  while (cuts.size < k - 1) cuts.add(1 + Math.floor(rand() * (n - 1)));
  const points = [0, ...[...cuts].sort((a, b) => a - b), n];
  return points.slice(1).map((p, i) => p - points[i]);
}
