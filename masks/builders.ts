/**
 * Builders for the twelve mask types of the FlashMask paper, plus conversion from and to dense
 * masks and stacking into per-batch / per-head masks.
 *
 * Each builder returns a FlashMask of shape `[1, 1, N, C]` in the smallest column layout that
 * represents it exactly (see {@linkcode compactMask}). `allowed(i, j)` below is true when query
 * row `i` may attend to key `j`.
 *
 * @module
 */

import {
  BOUNDS_PER_COLUMN,
  checkMaskIndices,
  checkMaskStructure,
  compactMask,
  type FlashMask,
  maskBounds,
} from "./flashmask.ts";

// Per key column: masked rows [lts, lte) ∪ [uts, ute); compacted into the smallest layout.
function fromRuns(
  nq: number,
  nk: number,
  runs: (j: number, batch: number) => [lts: number, lte: number, uts: number, ute: number],
  batch = 1,
): FlashMask {
  const b = new Int32Array(batch * nk * BOUNDS_PER_COLUMN);
  for (let s = 0; s < batch; s++) {
    for (let j = 0; j < nk; j++) {
      const [lts, lte, uts, ute] = runs(j, s);
      const o = (s * nk + j) * 4;
      b[o] = clamp(lts, nq);
      b[o + 1] = clamp(lte, nq);
      b[o + 2] = clamp(uts, nq);
      b[o + 3] = clamp(ute, nq);
    }
  }
  return compactMask(b, [batch, 1, nk], nq);
}

/** Array check that does not narrow the static type (so readonly element types survive). */
function isList(x: unknown): boolean {
  return Array.isArray(x);
}

function clamp(x: number, n: number): number {
  return Math.min(n, Math.max(0, x));
}

function checkLength(n: unknown, what: string): number {
  if (!Number.isSafeInteger(n) || (n as number) < 1) {
    throw new RangeError(`${what} must be a positive integer, got ${n}`);
  }
  return n as number;
}

function checkCount(n: unknown, what: string): number {
  if (!Number.isSafeInteger(n) || (n as number) < 0) {
    throw new RangeError(`${what} must be a non-negative integer, got ${n}`);
  }
  return n as number;
}

/** Segment index of every position, from segment lengths (each positive). */
function segments(lens: readonly number[], what: string): { start: Int32Array; end: Int32Array } {
  if (!isList(lens) || lens.length === 0) {
    throw new RangeError(`${what} must be a non-empty array of positive integers`);
  }
  let n = 0;
  lens.forEach((l, i) => n += checkLength(l, `${what}[${i}]`));
  const start = new Int32Array(n), end = new Int32Array(n);
  let s = 0;
  for (const l of lens) {
    start.fill(s, s, s + l);
    end.fill(s + l, s, s + l);
    s += l;
  }
  return { start, end };
}

/**
 * No masking: every query sees every key.
 *
 * @example
 * ```ts
 * import { full, visibleFraction } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(visibleFraction(full(3, 5), 3), 1);
 * ```
 */
export function full(nq: number, nk: number = nq): FlashMask {
  checkLength(nq, "full: nq");
  checkLength(nk, "full: nk");
  return fromRuns(nq, nk, () => [nq, nq, 0, 0]);
}

/**
 * Causal: `j <= i`.
 *
 * @example
 * ```ts
 * import { causal, maskPicture } from "./mod.ts";
 *
 * console.log(maskPicture(causal(4)));
 * ```
 */
export function causal(n: number): FlashMask {
  checkLength(n, "causal: n");
  return fromRuns(n, n, (j) => [n, n, 0, j]);
}

/**
 * Causal sliding window: `j <= i && i - j <= window`.
 *
 * @example
 * ```ts
 * import { slidingWindow, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const d = toDense(slidingWindow(4, 1));
 * assert.deepEqual(Array.from(d.subarray(12, 16)), [0, 0, 1, 1]); // row 3 sees keys 2 and 3
 * ```
 */
export function slidingWindow(n: number, window: number): FlashMask {
  checkLength(n, "slidingWindow: n");
  checkCount(window, "slidingWindow: window");
  return fromRuns(n, n, (j) => [j + window + 1, n, 0, j]);
}

/**
 * Causal document mask (packed sequences): `doc(i) == doc(j) && j <= i`.
 *
 * @param docLens document lengths, summing to N.
 * @example
 * ```ts
 * import { causalDocument } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(causalDocument([2, 3]).shape, [1, 1, 5, 1]);
 * ```
 */
export function causalDocument(docLens: readonly number[]): FlashMask {
  const { end } = segments(docLens, "causalDocument: docLens");
  const n = end.length;
  return fromRuns(n, n, (j) => [end[j], n, 0, j]);
}

/**
 * Bidirectional document mask: `doc(i) == doc(j)`.
 *
 * @param docLens document lengths, summing to N.
 * @example
 * ```ts
 * import { document } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(document([2, 3]).shape, [1, 1, 5, 2]);
 * ```
 */
export function document(docLens: readonly number[]): FlashMask {
  const { start, end } = segments(docLens, "document: docLens");
  const n = end.length;
  return fromRuns(n, n, (j) => [end[j], n, 0, start[j]]);
}

/** One group of {@linkcode shareQuestion}: a question segment followed by its answers. */
export interface QuestionGroup {
  /** Length of the shared question. */
  question: number;
  /** Lengths of the answers that share it. */
  answers: readonly number[];
}

/**
 * Shared-question mask (one question, several answers, as in reward-model training): segments
 * are laid out group by group, question first; `allowed(i, j)` iff i and j are in the same
 * group, `j <= i`, and j is in the group's question or in the same segment as i.
 *
 * @example
 * ```ts
 * import { shareQuestion, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const m = shareQuestion([{ question: 2, answers: [1, 1] }]);
 * assert.deepEqual(Array.from(toDense(m).subarray(12, 16)), [1, 1, 0, 1]); // row 3: question + itself
 * ```
 */
export function shareQuestion(groups: readonly QuestionGroup[]): FlashMask {
  if (!isList(groups) || groups.length === 0) {
    throw new RangeError("shareQuestion: groups must be a non-empty array");
  }
  const segEnd: number[] = [];
  groups.forEach((g, gi) => {
    const q = checkLength(g?.question, `shareQuestion: groups[${gi}].question`);
    if (!isList(g.answers)) {
      throw new RangeError(`shareQuestion: groups[${gi}].answers must be an array`);
    }
    const ans = g.answers.map((a, ai) =>
      checkLength(a, `shareQuestion: groups[${gi}].answers[${ai}]`)
    );
    const groupEnd = q + ans.reduce((x, y) => x + y, 0);
    const base = segEnd.length;
    for (let i = 0; i < q; i++) segEnd.push(base + groupEnd); // question keys: seen to group end
    let s = base + q;
    for (const a of ans) {
      for (let i = 0; i < a; i++) segEnd.push(s + a); // answer keys: seen to answer end
      s += a;
    }
  });
  const n = segEnd.length;
  return fromRuns(n, n, (j) => [segEnd[j], n, 0, j]);
}

/**
 * Global tokens plus a bidirectional sliding window:
 * `i < globalTokens || j < globalTokens || (i - left <= j && j <= i + right)`.
 *
 * @example
 * ```ts
 * import { globalSlidingWindow, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const d = toDense(globalSlidingWindow(5, 1, 1, 1));
 * assert.deepEqual(Array.from(d.subarray(20, 25)), [1, 0, 0, 1, 1]); // row 4
 * ```
 */
export function globalSlidingWindow(
  n: number,
  globalTokens: number,
  left: number,
  right: number,
): FlashMask {
  checkLength(n, "globalSlidingWindow: n");
  const g = checkCount(globalTokens, "globalSlidingWindow: globalTokens");
  checkCount(left, "globalSlidingWindow: left");
  checkCount(right, "globalSlidingWindow: right");
  // key j >= g is seen by rows [0, g) and [j - right, j + left]
  return fromRuns(n, n, (j) => j < g ? [n, n, 0, 0] : [j + left + 1, n, g, j - right]);
}

/**
 * Causal blockwise mask (in-context learning with demonstrations): causal, rows attend within
 * their own block, and the last block attends to everything before it:
 * `j <= i && (block(i) == block(j) || block(i) is the last block)`.
 *
 * @example
 * ```ts
 * import { causalBlockwise, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const d = toDense(causalBlockwise([2, 1, 2]));
 * assert.deepEqual(Array.from(d.subarray(10, 15)), [0, 0, 1, 0, 0]); // row 2: its own block only
 * assert.deepEqual(Array.from(d.subarray(15, 20)), [1, 1, 1, 1, 0]); // row 3: last block sees all
 * ```
 */
export function causalBlockwise(blockLens: readonly number[]): FlashMask {
  const { end } = segments(blockLens, "causalBlockwise: blockLens");
  const n = end.length;
  const lastStart = n - blockLens[blockLens.length - 1];
  return fromRuns(n, n, (j) => [end[j], lastStart, 0, j]);
}

/**
 * Prefix-LM: the first `prefixLen` keys are visible to every query, the rest are causal:
 * `j < prefixLen || j <= i`.
 *
 * @example
 * ```ts
 * import { prefixLmCausal, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(Array.from(toDense(prefixLmCausal(3, 2)).subarray(0, 3)), [1, 1, 0]);
 * ```
 */
export function prefixLmCausal(n: number, prefixLen: number): FlashMask {
  checkLength(n, "prefixLmCausal: n");
  const p = checkCount(prefixLen, "prefixLmCausal: prefixLen");
  if (p > n) throw new RangeError(`prefixLmCausal: prefixLen ${p} is greater than n ${n}`);
  return fromRuns(n, n, (j) => [n, n, 0, j < p ? 0 : j]);
}

/** One document of {@linkcode prefixLmDocument}: its length and bidirectional prefix length. */
export interface PrefixDocument {
  /** Document length. */
  length: number;
  /** Length of its bidirectional prefix (at most `length`). */
  prefix: number;
}

/**
 * Prefix-LM over packed documents: `doc(i) == doc(j) && (j - docStart < prefix || j <= i)`.
 *
 * @example
 * ```ts
 * import { prefixLmDocument } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const m = prefixLmDocument([{ length: 3, prefix: 2 }, { length: 2, prefix: 1 }]);
 * assert.deepEqual(m.shape, [1, 1, 5, 2]);
 * ```
 */
export function prefixLmDocument(docs: readonly PrefixDocument[]): FlashMask {
  if (!isList(docs)) throw new RangeError("prefixLmDocument: docs must be an array");
  docs.forEach((d, i) => {
    const p = checkCount(d?.prefix, `prefixLmDocument: docs[${i}].prefix`);
    if (p > d.length) {
      throw new RangeError(
        `prefixLmDocument: docs[${i}].prefix ${p} exceeds its length ${d.length}`,
      );
    }
  });
  const { start, end } = segments(docs.map((d) => d.length), "prefixLmDocument: docs[].length");
  const prefix = docs.flatMap((d) => Array(d.length).fill(d.prefix) as number[]);
  const n = end.length;
  return fromRuns(n, n, (j) => [end[j], n, 0, j - start[j] < prefix[j] ? start[j] : j]);
}

/**
 * QK-sparse mask: causal, with keys in `[start, end)` hidden from queries before `end`:
 * `j <= i && !(start <= j && j < end && i < end)`.
 *
 * @example
 * ```ts
 * import { qkSparse, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const d = toDense(qkSparse(4, 1, 3));
 * assert.deepEqual(Array.from(d.subarray(8, 12)), [1, 0, 0, 0]); // row 2 cannot see keys 1, 2
 * assert.deepEqual(Array.from(d.subarray(12, 16)), [1, 1, 1, 1]);
 * ```
 */
export function qkSparse(n: number, start: number, end: number): FlashMask {
  checkLength(n, "qkSparse: n");
  checkCount(start, "qkSparse: start");
  checkCount(end, "qkSparse: end");
  if (start > end || end > n) {
    throw new RangeError(`qkSparse: need 0 <= start <= end <= n, got start ${start}, end ${end}`);
  }
  return fromRuns(n, n, (j) => start <= j && j < end ? [j, end, 0, j] : [n, n, 0, j]);
}

/** Options of {@linkcode randomEviction}. */
export interface EvictionOptions {
  /** First row that evicts a key (1 <= startRow <= n; default `ceil(n / 2)`). */
  startRow?: number;
  /** Seed of the generator that picks the evicted keys (default 0). */
  seed?: number;
}

/**
 * Random eviction (a KV-cache eviction pattern): causal, and every row `r >= startRow` evicts
 * one earlier key not yet evicted, chosen by a seeded generator; key `j` evicted at row
 * `evict(j)` is hidden from rows `>= evict(j)`: `j <= i && i < evict(j)`.
 * Same seed, same mask.
 *
 * @example
 * ```ts
 * import { randomEviction, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const a = toDense(randomEviction(8, { startRow: 3, seed: 7 }));
 * assert.deepEqual(a, toDense(randomEviction(8, { startRow: 3, seed: 7 })));
 * ```
 */
export function randomEviction(n: number, options: EvictionOptions = {}): FlashMask {
  checkLength(n, "randomEviction: n");
  const startRow = options.startRow ?? Math.max(1, Math.ceil(n / 2));
  if (!Number.isSafeInteger(startRow) || startRow < 1 || startRow > n) {
    throw new RangeError(
      `randomEviction: startRow must be an integer in [1, ${n}], got ${startRow}`,
    );
  }
  const evict = evictionRows(n, startRow, options.seed ?? 0);
  return fromRuns(n, n, (j) => [evict[j], n, 0, j]);
}

/** Row at which each key is evicted (n if never), by the seeded generator of randomEviction. */
export function evictionRows(n: number, startRow: number, seed: number): Int32Array {
  const evict = new Int32Array(n).fill(n);
  const avail: number[] = [];
  for (let k = 0; k < startRow; k++) avail.push(k);
  const rand = splitmix32(seed);
  for (let r = startRow; r < n; r++) {
    const idx = Math.floor(rand() * avail.length);
    evict[avail[idx]] = r;
    avail[idx] = avail[avail.length - 1];
    avail.pop();
    avail.push(r); // key r is "earlier" for the rows after it
  }
  return evict;
}

/** A small seeded generator of floats in [0, 1). */
export function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

/** Options of {@linkcode fromDense}. */
export interface FromDenseOptions {
  /** Force a causal (`true`) or non-causal (`false`) layout; default: the smallest. */
  causal?: boolean;
}

/**
 * Converts a dense mask (`allowed[i * nk + j]` nonzero when query i may see key j) into the
 * smallest FlashMask that represents it.
 *
 * @throws {RangeError} naming the column if a column has more than two masked runs, or if
 *   `causal: true` is asked and a key above the (bottom-right) diagonal is visible.
 * @example
 * ```ts
 * import { fromDense, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const dense = new Uint8Array([1, 0, 1, 1]);
 * const m = fromDense(dense, 2, 2);
 * assert.equal(m.causal, true);
 * assert.deepEqual(toDense(m), dense);
 * ```
 */
export function fromDense(
  allowed: Uint8Array,
  nq: number,
  nk: number,
  options: FromDenseOptions = {},
): FlashMask {
  checkLength(nq, "fromDense: nq");
  checkLength(nk, "fromDense: nk");
  if (!(allowed instanceof Uint8Array) || allowed.length !== nq * nk) {
    throw new RangeError(`fromDense: allowed must be a Uint8Array of nq * nk = ${nq * nk} entries`);
  }
  const b = new Int32Array(nk * 4);
  for (let j = 0; j < nk; j++) {
    const found: number[] = [];
    for (let i = 0; i < nq;) {
      if (allowed[i * nk + j]) {
        i++;
        continue;
      }
      const s = i;
      while (i < nq && !allowed[i * nk + j]) i++;
      found.push(s, i);
    }
    if (found.length > 4) {
      throw new RangeError(
        `fromDense: key column ${j} has ${
          found.length / 2
        } masked runs; a FlashMask holds at most 2`,
      );
    }
    b.set([found[2] ?? nq, found[3] ?? nq, found[0] ?? 0, found[1] ?? 0], j * 4);
  }
  return compactMask(b, [1, 1, nk], nq, options);
}

/**
 * Stacks single masks into one per-batch / per-head FlashMask: `masks[b][h]` becomes slice
 * (b, h) of a mask of shape `[masks.length, masks[0].length, nk, C]`, in the smallest layout
 * that holds them all.
 *
 * @param options.nq query length (default: the masks' seqLenK), needed when causal and
 *   non-causal masks are mixed.
 * @example Two heads with different windows
 * ```ts
 * import { slidingWindow, stack } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const m = stack([[slidingWindow(8, 2), slidingWindow(8, 4)]]);
 * assert.deepEqual(m.shape, [1, 2, 8, 1]);
 * ```
 */
export function stack(
  masks: readonly (readonly FlashMask[])[],
  options: { nq?: number } = {},
): FlashMask {
  if (!isList(masks) || masks.length === 0 || !isList(masks[0])) {
    throw new RangeError("stack: masks must be a non-empty array of arrays (batch × heads)");
  }
  const heads = masks[0].length;
  if (heads === 0) throw new RangeError("stack: masks[0] must not be empty");
  let nk = -1;
  masks.forEach((row, b) => {
    if (!isList(row) || row.length !== heads) {
      throw new RangeError(`stack: masks[${b}] must hold ${heads} masks like masks[0]`);
    }
    row.forEach((m, h) => {
      checkMaskStructure(m, `stack: masks[${b}][${h}]`);
      if (m.shape[0] !== 1 || m.shape[1] !== 1) {
        throw new RangeError(`stack: masks[${b}][${h}] must have shape [1, 1, N, C]`);
      }
      if (nk < 0) nk = m.shape[2];
      if (m.shape[2] !== nk) {
        throw new RangeError(`stack: masks[${b}][${h}].shape[2] is ${m.shape[2]}, expected ${nk}`);
      }
    });
  });
  const nq = options.nq ?? nk;
  masks.forEach((row, b) =>
    row.forEach((m, h) => checkMaskIndices(m, nq, `stack: masks[${b}][${h}]`))
  );
  const all = new Int32Array(masks.length * heads * nk * BOUNDS_PER_COLUMN);
  masks.flat().forEach((m, s) => all.set(maskBounds(m, nq), s * nk * BOUNDS_PER_COLUMN));
  return compactMask(all, [masks.length, heads, nk], nq);
}

// ---------------------------------------------------------------------------------------------
// Sequence layouts of FlashAttention's API, as FlashMasks (what the `windowSize`, `cuSeqlens`
// and `kvLength` options of attention() build).

/** FlashAttention's `window_size`: `[left, right]`, -1 meaning unbounded. */
export type WindowSize = readonly [left: number, right: number];

/** Throws a RangeError unless `w` is `[left, right]`, integers ≥ -1. */
export function checkWindow(w: unknown, what: string): [number, number] {
  if (!isList(w) || (w as number[]).length !== 2) {
    throw new RangeError(`${what} must be [left, right]`);
  }
  const [l, r] = w as number[];
  for (const [x, name] of [[l, "left"], [r, "right"]] as const) {
    if (!Number.isSafeInteger(x) || x < -1) {
      throw new RangeError(`${what} ${name} must be an integer >= -1 (-1: unbounded), got ${x}`);
    }
  }
  return [l, r];
}

/** Masked runs of key column j for a window/causal constraint at offset `off` = Nk − Nq. */
function windowRuns(
  j: number,
  off: number,
  left: number,
  right: number,
  causal: boolean,
): [number, number, number, number] {
  // visible rows i: j - off - right <= i <= j - off + left (and i >= j - off when causal)
  const r = causal ? 0 : right; // causal caps the right side at the diagonal
  const ute = r < 0 ? 0 : j - off - r;
  const lts = left < 0 ? Infinity : j - off + left + 1;
  return [lts, Infinity, 0, ute];
}

/**
 * FlashAttention's local attention (`window_size`), bottom-right aligned: query i sees key j iff
 * `i + (nk − nq) − left <= j <= i + (nk − nq) + right`, with -1 for an unbounded side; with
 * `causal`, also `j <= i + (nk − nq)`.
 *
 * @example A window of 2 keys back and 1 ahead
 * ```ts
 * import { localWindow, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const d = toDense(localWindow(5, 5, [2, 1]));
 * assert.deepEqual(Array.from(d.subarray(10, 15)), [1, 1, 1, 1, 0]); // row 2 sees keys 0..3
 * ```
 */
export function localWindow(
  nq: number,
  nk: number,
  windowSize: WindowSize,
  options: { causal?: boolean } = {},
): FlashMask {
  checkLength(nq, "localWindow: nq");
  checkLength(nk, "localWindow: nk");
  const [left, right] = checkWindow(windowSize, "localWindow: windowSize");
  return fromRuns(nq, nk, (j) => windowRuns(j, nk - nq, left, right, options.causal ?? false));
}

/**
 * Packed variable-length sequences, as `cu_seqlens` of `flash_attn_varlen_func`: sequence s holds
 * positions `[cuSeqlens[s], cuSeqlens[s + 1])`; a document mask (causal: causal document; with a
 * window, within each sequence), so packed sequences cost no padding and their cross-sequence
 * tiles are skipped.
 *
 * @example
 * ```ts
 * import { causalDocument, toDense, varlen } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(toDense(varlen([0, 3, 8], { causal: true })), toDense(causalDocument([3, 5])));
 * ```
 */
export function varlen(
  cuSeqlens: ArrayLike<number>,
  options: { causal?: boolean; windowSize?: WindowSize } = {},
): FlashMask {
  if (!cuSeqlens || typeof cuSeqlens.length !== "number" || cuSeqlens.length < 2) {
    throw new RangeError("cuSeqlens must hold at least 2 cumulative lengths [0, ..., N]");
  }
  if (cuSeqlens[0] !== 0) throw new RangeError(`cuSeqlens[0] must be 0, got ${cuSeqlens[0]}`);
  for (let s = 1; s < cuSeqlens.length; s++) {
    if (!Number.isSafeInteger(cuSeqlens[s]) || cuSeqlens[s] <= cuSeqlens[s - 1]) {
      throw new RangeError(
        `cuSeqlens[${s}] = ${cuSeqlens[s]} must be an integer greater than cuSeqlens[${s - 1}] = ${
          cuSeqlens[s - 1]
        }`,
      );
    }
  }
  const n = cuSeqlens[cuSeqlens.length - 1];
  const [left, right] = options.windowSize
    ? checkWindow(options.windowSize, "varlen: windowSize")
    : [-1, -1];
  const start = new Int32Array(n), end = new Int32Array(n);
  for (let s = 1; s < cuSeqlens.length; s++) {
    start.fill(cuSeqlens[s - 1], cuSeqlens[s - 1], cuSeqlens[s]);
    end.fill(cuSeqlens[s], cuSeqlens[s - 1], cuSeqlens[s]);
  }
  return fromRuns(n, n, (j) => {
    const [lts, , , ute] = windowRuns(j, 0, left, right, options.causal ?? false);
    return [Math.min(lts, end[j]), n, 0, Math.max(ute, start[j])];
  });
}

/**
 * A ragged KV cache: batch entry b holds `kvLength[b]` valid keys (the rest of the Nk slots are
 * masked for every query); causal and window alignment are bottom-right against each entry's own
 * length, as in `flash_attn_with_kvcache`: query i sees key j iff `j < kvLength[b]` and, when
 * causal, `j <= i + (kvLength[b] − nq)`. Shape `[batch, 1, nk, C]`.
 *
 * @example Two cache entries of 3 and 5 valid keys, one new query each
 * ```ts
 * import { kvCache, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const m = kvCache([3, 5], 1, 6, { causal: true });
 * assert.deepEqual(Array.from(toDense(m, { batch: 0, nq: 1 })), [1, 1, 1, 0, 0, 0]);
 * assert.deepEqual(Array.from(toDense(m, { batch: 1, nq: 1 })), [1, 1, 1, 1, 1, 0]);
 * ```
 */
export function kvCache(
  kvLength: ArrayLike<number>,
  nq: number,
  nk: number,
  options: { causal?: boolean; windowSize?: WindowSize } = {},
): FlashMask {
  checkLength(nq, "kvCache: nq");
  checkLength(nk, "kvCache: nk");
  checkKvLength(kvLength, nk, "kvLength");
  const [left, right] = options.windowSize
    ? checkWindow(options.windowSize, "kvCache: windowSize")
    : [-1, -1];
  const causalFlag = options.causal ?? false, batch = kvLength.length;
  const b = new Int32Array(batch * nk * BOUNDS_PER_COLUMN);
  for (let s = 0; s < batch; s++) {
    for (let j = 0; j < nk; j++) {
      b.set(kvCacheColumn(j - kvLength[s], nq, left, right, causalFlag), (s * nk + j) * 4);
    }
  }
  return compactMask(b, [batch, 1, nk], nq);
}

/** Throws a RangeError unless `kvLength` holds integers in [0, nk], at least one. */
export function checkKvLength(kvLength: ArrayLike<number>, nk: number, what: string): void {
  if (!kvLength || typeof kvLength.length !== "number" || kvLength.length < 1) {
    throw new RangeError(`${what} must hold one length per batch entry`);
  }
  for (let b = 0; b < kvLength.length; b++) {
    const len = kvLength[b];
    if (!Number.isSafeInteger(len) || len < 0 || len > nk) {
      throw new RangeError(`${what}[${b}] = ${len} must be an integer in [0, ${nk}] (Nk)`);
    }
  }
}

/**
 * The canonical bounds of a ragged KV cache's column at `t = j − kvLength[b]` (they depend on
 * nothing else): past the entry's length every row is masked, before it the window or causal
 * constraint aligned to the length.
 */
export function kvCacheColumn(
  t: number,
  nq: number,
  left: number,
  right: number,
  causal: boolean,
): [number, number, number, number] {
  // masked: [0, ute) ∪ [lts, nq), in the form compactMask gives it (a run from row 0 is the
  // upper one), so that a schedule's tiles are those of the kvCache mask
  if (t >= 0) return [nq, nq, 0, nq];
  const [lts, , , ute] = windowRuns(t + nq, 0, left, right, causal);
  const lo = clamp(lts, nq), up = clamp(ute, nq);
  if (lo <= up) return [nq, nq, 0, nq];
  return [lo, nq, 0, up];
}
