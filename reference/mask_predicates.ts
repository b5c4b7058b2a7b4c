/**
 * Dense predicates of the twelve mask types, written from their definitions (the table in the
 * README), independently of the builders: what the tests and the mask export compare with.
 *
 * @module
 */

import { evictionRows } from "../masks/builders.ts";
import type { MaskName } from "../masks/examples.ts";

type Allowed = (i: number, j: number) => boolean;

/** Index of the segment holding position x, for segment lengths. */
function segmentOf(lens: number[]): (x: number) => number {
  return (x) => {
    let s = 0;
    for (let k = 0; k < lens.length; k++) {
      s += lens[k];
      if (x < s) return k;
    }
    return lens.length;
  };
}

/** allowed(i, j) of the mask type `name` built with arguments `args`. */
// deno-lint-ignore no-explicit-any
export function definition(name: MaskName, args: any[]): Allowed {
  switch (name) {
    case "full":
      return () => true;
    case "causal":
      return (i, j) => j <= i;
    case "slidingWindow": {
      const w = args[1];
      return (i, j) => j <= i && i - j <= w;
    }
    case "causalDocument": {
      const doc = segmentOf(args[0]);
      return (i, j) => doc(i) === doc(j) && j <= i;
    }
    case "document": {
      const doc = segmentOf(args[0]);
      return (i, j) => doc(i) === doc(j);
    }
    case "shareQuestion": {
      const groups: { question: number; answers: number[] }[] = args[0];
      const segLens = groups.flatMap((g) => [g.question, ...g.answers]);
      const groupOfSeg = groups.flatMap((g, gi) => Array(1 + g.answers.length).fill(gi));
      const isQuestion = groups.flatMap((g) => [true, ...g.answers.map(() => false)]);
      const seg = segmentOf(segLens);
      return (i, j) => {
        const si = seg(i), sj = seg(j);
        return groupOfSeg[si] === groupOfSeg[sj] && j <= i && (isQuestion[sj] || si === sj);
      };
    }
    case "globalSlidingWindow": {
      const [, g, left, right] = args;
      return (i, j) => i < g || j < g || (i - left <= j && j <= i + right);
    }
    case "causalBlockwise": {
      const blocks: number[] = args[0];
      const block = segmentOf(blocks);
      return (i, j) => j <= i && (block(i) === block(j) || block(i) === blocks.length - 1);
    }
    case "prefixLmCausal": {
      const p = args[1];
      return (i, j) => j < p || j <= i;
    }
    case "prefixLmDocument": {
      const docs: { length: number; prefix: number }[] = args[0];
      const doc = segmentOf(docs.map((d) => d.length));
      const starts = docs.map((_, k) => docs.slice(0, k).reduce((a, d) => a + d.length, 0));
      return (i, j) => doc(i) === doc(j) && (j - starts[doc(j)] < docs[doc(j)].prefix || j <= i);
    }
    case "qkSparse": {
      const [, start, end] = args;
      return (i, j) => j <= i && !(start <= j && j < end && i < end);
    }
    case "randomEviction": {
      const [n, { startRow, seed }] = args;
      const evict = evictionRows(n, startRow, seed);
      return (i, j) => j <= i && i < evict[j];
    }
  }
}

/** The dense allowed matrix of a predicate. */
export function denseOf(allowed: Allowed, nq: number, nk: number): Uint8Array {
  const out = new Uint8Array(nq * nk);
  for (let i = 0; i < nq; i++) for (let j = 0; j < nk; j++) out[i * nk + j] = allowed(i, j) ? 1 : 0;
  return out;
}
