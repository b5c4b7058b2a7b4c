/**
 * The FlashMask column-wise sparse mask: its type, validation, and the canonical per-column
 * bounds that every kernel reads.
 *
 * For key column `j` a FlashMask stores up to two masked runs of query rows (end exclusive),
 * exactly as PaddlePaddle's `flashmask_attention`:
 *
 * | layout (`causal`, columns)      | masked query rows of column j               |
 * |---------------------------------|---------------------------------------------|
 * | causal, 1 `[LTS]`               | causal part ∪ [LTS, Nq)                     |
 * | causal, 2 `[LTS, LTE]`          | causal part ∪ [LTS, LTE)                    |
 * | non-causal, 2 `[LTS, UTE]`      | [LTS, Nq) ∪ [0, UTE)                        |
 * | non-causal, 4 `[LTS, LTE, UTS, UTE]` | [LTS, LTE) ∪ [UTS, UTE)                |
 *
 * The causal part is aligned bottom-right, as in FlashAttention >= 2.1: query `i` sees key `j`
 * only if `j <= i + (Nk - Nq)`, so column `j` has rows `[0, j - (Nk - Nq))` masked.
 *
 * Every layout reduces to the same canonical form, {@linkcode maskBounds}: four int32 per
 * column, a lower run `[lts, lte)` and an upper run `[uts, ute)`, empty runs normalised to
 * `[Nq, Nq)` and `[0, 0)`. This is the one contract between masks and kernels: a kernel masks
 * element (i, j) iff `lts <= i < lte || uts <= i < ute`, and never looks at the layout.
 *
 * @module
 */

/** Number of int32 bounds per column in the canonical form: `[lts, lte, uts, ute]`. */
export const BOUNDS_PER_COLUMN = 4;

/**
 * A FlashMask: per key column, up to two masked row intervals (see the module doc).
 *
 * `shape` is `[batch | 1, heads, seqLenK, columns]`; `heads` is 1 (broadcast), Hk (one mask
 * per key head: query head h uses mask head `floor(h / (Hq / Hk))`) or Hq (one per query head).
 * `startEndRowIndices` holds the columns' bounds row-major in that shape.
 *
 * Kernels cache the block schedule of a mask: treat a mask as immutable once it has been used
 * (a changed mask is detected and rescheduled, at the cost of one comparison pass).
 */
export interface FlashMask {
  /** Row bounds, row-major in `shape`: `[LTS]`, `[LTS, LTE]`, `[LTS, UTE]` or `[LTS, LTE, UTS, UTE]`. */
  readonly startEndRowIndices: Int32Array;
  /** `[batch | 1, heads, seqLenK, columns]`. */
  readonly shape: readonly [number, number, number, 1 | 2 | 4];
  /** Whether the causal part is masked in addition to the stored runs. */
  readonly causal: boolean;
}

/** Sizes a mask is checked against. `heads` is Hq and `kvHeads` Hk of the attention call. */
export interface MaskDims {
  /** Batch size (a mask batch of 1 broadcasts). */
  batch: number;
  /** Query heads Hq. */
  heads: number;
  /** Key/value heads Hk. */
  kvHeads: number;
  /** Query sequence length Nq: row indices lie in [0, Nq]. */
  nq: number;
  /** Key sequence length Nk: must equal `shape[2]`. */
  nk: number;
}

/** Names of the stored columns of each layout, in storage order. */
export function columnNames(causal: boolean, columns: number): readonly string[] {
  if (causal) return columns === 1 ? ["LTS"] : ["LTS", "LTE"];
  return columns === 2 ? ["LTS", "UTE"] : ["LTS", "LTE", "UTS", "UTE"];
}

/**
 * Creates a FlashMask and checks its structure (and its row indices when `nq` is given).
 *
 * @example A causal mask over 4 keys in which key 0 is hidden from rows 2 and 3
 * ```ts
 * import { flashMask, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const m = flashMask(new Int32Array([2, 4, 4, 4]), [1, 1, 4, 1], { causal: true });
 * assert.deepEqual(Array.from(toDense(m)), [
 *   1, 0, 0, 0,
 *   1, 1, 0, 0,
 *   0, 1, 1, 0,
 *   0, 1, 1, 1,
 * ]);
 * ```
 */
export function flashMask(
  startEndRowIndices: Int32Array | ArrayLike<number>,
  shape: readonly number[],
  options: { causal: boolean; nq?: number },
): FlashMask {
  const data = startEndRowIndices instanceof Int32Array
    ? startEndRowIndices
    : Int32Array.from(startEndRowIndices);
  const mask = { startEndRowIndices: data, shape, causal: options.causal } as FlashMask;
  checkMaskStructure(mask, "mask");
  if (options.nq !== undefined) checkMaskIndices(mask, options.nq, "mask");
  return mask;
}

/**
 * Checks a FlashMask's type, shape, layout and length (not its row indices).
 *
 * @throws {TypeError} for a value of the wrong type; {@linkcode RangeError} for a bad shape.
 */
export function checkMaskStructure(mask: unknown, field = "mask"): asserts mask is FlashMask {
  if (typeof mask !== "object" || mask === null) {
    throw new TypeError(`${field} must be a FlashMask object`);
  }
  const m = mask as Record<string, unknown>;
  if (!(m.startEndRowIndices instanceof Int32Array)) {
    throw new TypeError(`${field}.startEndRowIndices must be an Int32Array`);
  }
  if (typeof m.causal !== "boolean") {
    throw new TypeError(`${field}.causal must be a boolean`);
  }
  const shape = m.shape;
  if (!Array.isArray(shape) || shape.length !== 4) {
    throw new RangeError(`${field}.shape must be [batch, heads, seqLenK, columns]`);
  }
  for (let i = 0; i < 3; i++) {
    if (!Number.isSafeInteger(shape[i]) || shape[i] < 1) {
      throw new RangeError(`${field}.shape[${i}] must be a positive integer, got ${shape[i]}`);
    }
  }
  const c = shape[3];
  if (m.causal ? c !== 1 && c !== 2 : c !== 2 && c !== 4) {
    throw new RangeError(
      `${field}.shape[3] (columns) must be ${
        m.causal ? "1 or 2 for a causal" : "2 or 4 for a non-causal"
      } mask, got ${c}`,
    );
  }
  const n = shape[0] * shape[1] * shape[2] * c;
  if (m.startEndRowIndices.length !== n) {
    throw new RangeError(
      `${field}.startEndRowIndices.length is ${m.startEndRowIndices.length} but shape [${
        shape.join(", ")
      }] needs ${n}`,
    );
  }
}

/**
 * Checks every row index of a structurally valid mask: each in [0, nq], and start <= end for
 * each stored [start, end) pair. O(size of the mask).
 *
 * @throws {RangeError} naming the batch, head, key column and bound of the first bad index.
 */
export function checkMaskIndices(mask: FlashMask, nq: number, field = "mask"): void {
  const [mb, mh, nk, c] = mask.shape;
  const d = mask.startEndRowIndices;
  const names = columnNames(mask.causal, c);
  const where = (s: number, j: number, k: number) =>
    `${field}.startEndRowIndices[${s * nk * c + j * c + k}] (batch ${Math.floor(s / mh)}, head ${
      s % mh
    }, key ${j}, ${names[k]})`;
  for (let s = 0; s < mb * mh; s++) {
    for (let j = 0; j < nk; j++) {
      const o = (s * nk + j) * c;
      for (let k = 0; k < c; k++) {
        const x = d[o + k];
        if (x < 0 || x > nq) {
          throw new RangeError(`${where(s, j, k)} = ${x} is outside [0, ${nq}] (Nq = ${nq})`);
        }
      }
      // [LTS, LTE) is stored at 0, 1 when there are 2 causal or 4 columns; [UTS, UTE) at 2, 3.
      if ((c === 2 && mask.causal) || c === 4) {
        if (d[o] > d[o + 1]) {
          throw new RangeError(`${where(s, j, 0)} = ${d[o]} is greater than LTE = ${d[o + 1]}`);
        }
      }
      if (c === 4 && d[o + 2] > d[o + 3]) {
        throw new RangeError(`${where(s, j, 2)} = ${d[o + 2]} is greater than UTE = ${d[o + 3]}`);
      }
    }
  }
}

/**
 * Checks a mask against the sizes of an attention call: structure, batch and head
 * broadcasting, seqLenK, and every row index.
 *
 * @throws {TypeError | RangeError} naming the offending field and index.
 */
export function checkMask(
  mask: unknown,
  dims: MaskDims,
  field = "mask",
): asserts mask is FlashMask {
  checkMaskStructure(mask, field);
  const [mb, mh, nk] = mask.shape;
  if (mb !== 1 && mb !== dims.batch) {
    throw new RangeError(`${field}.shape[0] (batch) is ${mb}; expected 1 or ${dims.batch}`);
  }
  if (mh !== 1 && mh !== dims.kvHeads && mh !== dims.heads) {
    throw new RangeError(
      `${field}.shape[1] (heads) is ${mh}; expected 1, ${dims.kvHeads} (key heads) or ${dims.heads} (query heads)`,
    );
  }
  if (nk !== dims.nk) {
    throw new RangeError(`${field}.shape[2] (seqLenK) is ${nk}; expected ${dims.nk}`);
  }
  checkMaskIndices(mask, dims.nq, field);
}

/** End of the causal part of column `j`: rows `[0, causalEnd)` are masked (bottom-right). */
export function causalEnd(j: number, nq: number, nk: number): number {
  return Math.min(nq, Math.max(0, j - (nk - nq)));
}

/**
 * The canonical bounds of a valid mask: `[lts, lte, uts, ute]` per (slice, column), slices
 * being the mask's `batch × heads` in order. Element (i, j) of slice s is masked iff
 * `lts <= i < lte || uts <= i < ute`. Empty runs are `[nq, nq)` and `[0, 0)`. O(size of mask).
 *
 * @example
 * ```ts
 * import { causal, maskBounds } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * // causal(3): key j is masked for rows [0, j); the lower run is empty.
 * assert.deepEqual(Array.from(maskBounds(causal(3), 3)), [3, 3, 0, 0, 3, 3, 0, 1, 3, 3, 0, 2]);
 * ```
 */
export function maskBounds(mask: FlashMask, nq: number): Int32Array {
  const [mb, mh, nk, c] = mask.shape;
  const src = mask.startEndRowIndices;
  const out = new Int32Array(mb * mh * nk * BOUNDS_PER_COLUMN);
  for (let s = 0; s < mb * mh; s++) {
    for (let j = 0; j < nk; j++) {
      const i = (s * nk + j) * c;
      let lts: number, lte: number, uts: number, ute: number;
      if (mask.causal) {
        lts = src[i];
        lte = c === 1 ? nq : src[i + 1];
        uts = 0;
        ute = causalEnd(j, nq, nk);
      } else if (c === 2) {
        lts = src[i];
        lte = nq;
        uts = 0;
        ute = src[i + 1];
      } else {
        lts = src[i];
        lte = src[i + 1];
        uts = src[i + 2];
        ute = src[i + 3];
      }
      if (lts >= lte) lts = lte = nq;
      if (uts >= ute) uts = ute = 0;
      const o = (s * nk + j) * BOUNDS_PER_COLUMN;
      out[o] = lts;
      out[o + 1] = lte;
      out[o + 2] = uts;
      out[o + 3] = ute;
    }
  }
  return out;
}

/** Visible rows of `[r0, r1)` in the canonical column at `bounds[o .. o+4)`. */
export function visibleRows(bounds: Int32Array, o: number, r0: number, r1: number): number {
  const lts = bounds[o], lte = bounds[o + 1], uts = bounds[o + 2], ute = bounds[o + 3];
  const lo = Math.max(0, Math.min(lte, r1) - Math.max(lts, r0));
  const up = Math.max(0, Math.min(ute, r1) - Math.max(uts, r0));
  const both = Math.max(0, Math.min(lte, ute, r1) - Math.max(lts, uts, r0));
  return r1 - r0 - (lo + up - both);
}

/**
 * The mask slice used by query head `h` of batch `b`: slices are `maskBatch × maskHeads`,
 * a mask batch of 1 broadcasts, and mask head = `floor(h / (Hq / maskHeads))`.
 */
export function maskSlice(mask: FlashMask, b: number, h: number, heads: number): number {
  const [mb, mh] = mask.shape;
  return (mb === 1 ? 0 : b) * mh + Math.floor(h / (heads / mh));
}

/**
 * Builds the smallest FlashMask (fewest columns; causal preferred on a tie) whose masked set
 * equals the given canonical bounds in every column of every slice.
 *
 * @param bounds canonical `[lts, lte, uts, ute]` per (slice, column), as from {@linkcode maskBounds}.
 * @param shape `[batch, heads, nk]` of the slices.
 * @param nq query length the bounds refer to.
 * @param layout restrict to causal (`true`) or non-causal (`false`) layouts.
 * @throws {RangeError} if `layout.causal` is true and no causal layout represents the mask.
 */
export function compactMask(
  bounds: Int32Array,
  shape: readonly [number, number, number],
  nq: number,
  layout?: { causal?: boolean },
): FlashMask {
  const [mb, mh, nk] = shape;
  const cols = mb * mh * nk;
  // Per column: the masked set as two sorted, disjoint, non-adjacent runs (empty = [nq, nq)).
  const runs = new Int32Array(cols * 4);
  const fits = sortRuns(bounds, runs, nk, nq);
  const causal1 = (fits & FITS_CAUSAL1) !== 0, causal2 = (fits & FITS_CAUSAL2) !== 0;
  const plain2 = (fits & FITS_PLAIN2) !== 0;
  let causal: boolean, c: 1 | 2 | 4;
  if (layout?.causal === true) {
    if (!causal2) throw new RangeError("the mask cannot be represented by a causal FlashMask");
    causal = true, c = causal1 ? 1 : 2;
  } else if (layout?.causal === false) causal = false, c = plain2 ? 2 : 4;
  else if (causal1) causal = true, c = 1;
  else if (causal2) causal = true, c = 2;
  else if (plain2) causal = false, c = 2;
  else causal = false, c = 4;
  const out = new Int32Array(cols * c);
  writeLayout(runs, out, nk, nq, causal, c);
  return { startEndRowIndices: out, shape: [mb, mh, nk, c], causal };
}

const FITS_CAUSAL1 = 1, FITS_CAUSAL2 = 2, FITS_PLAIN2 = 4;

// The two loops of compactMask, each its own small function: they run on every call that builds
// a mask (a decoding step's kvLength), and V8 kept dropping the optimised code of the one large
// function (no allocation per column either).

/** Canonical bounds → sorted runs per column; which layouts can hold them (FITS_* bits). */
function sortRuns(bounds: Int32Array, runs: Int32Array, nk: number, nq: number): number {
  let causal1 = true, causal2 = true, plain2 = true;
  const cols = runs.length / 4;
  for (let x = 0; x < cols; x++) {
    const o = x * BOUNDS_PER_COLUMN;
    let a0 = bounds[o], a1 = bounds[o + 1], b0 = bounds[o + 2], b1 = bounds[o + 3];
    if (a0 >= a1) a0 = a1 = nq;
    if (b0 >= b1) b0 = b1 = nq;
    if (b0 < a0) {
      const t0 = a0, t1 = a1;
      a0 = b0, a1 = b1, b0 = t0, b1 = t1;
    }
    if (b0 <= a1) {
      a1 = Math.max(a1, b1);
      b0 = b1 = nq;
    }
    runs[x * 4] = a0, runs[x * 4 + 1] = a1, runs[x * 4 + 2] = b0, runs[x * 4 + 3] = b1;
    if (!causalRest(a0, a1, b0, b1, causalEnd(x % nk, nq, nk), nq)) causal1 = causal2 = false;
    else if (restEnd !== nq) causal1 = false;
    // non-causal, 2 columns: [0, UTE) ∪ [LTS, nq)
    if (b0 < b1 ? a0 !== 0 || b1 !== nq : a0 < a1 && a0 !== 0 && a1 !== nq) plain2 = false;
  }
  return (causal1 ? FITS_CAUSAL1 : 0) | (causal2 ? FITS_CAUSAL2 : 0) | (plain2 ? FITS_PLAIN2 : 0);
}

/** Sorted runs per column → the stored columns of the chosen layout. */
function writeLayout(
  runs: Int32Array,
  out: Int32Array,
  nk: number,
  nq: number,
  causal: boolean,
  c: number,
): void {
  const cols = runs.length / 4;
  for (let x = 0; x < cols; x++) {
    const a0 = runs[x * 4], a1 = runs[x * 4 + 1], b0 = runs[x * 4 + 2], b1 = runs[x * 4 + 3];
    const o = x * c;
    if (causal) {
      causalRest(a0, a1, b0, b1, causalEnd(x % nk, nq, nk), nq);
      out[o] = restStart;
      if (c === 2) out[o + 1] = restEnd;
    } else if (c === 2) {
      const lone = b0 >= b1; // at most one run
      out[o] = lone ? (a0 < a1 && a0 !== 0 ? a0 : nq) : b0; // LTS
      out[o + 1] = a0 === 0 && a0 < a1 ? a1 : 0; // UTE
    } else if (b0 < b1) { // lower slot = later run, upper slot = earlier run
      out[o] = b0, out[o + 1] = b1, out[o + 2] = a0, out[o + 3] = a1;
    } else if (a0 < a1 && a0 > 0 && a1 === nq) {
      out[o] = a0, out[o + 1] = a1, out[o + 2] = 0, out[o + 3] = 0;
    } else {
      out[o] = nq, out[o + 1] = nq, out[o + 2] = a0 < a1 ? a0 : 0, out[o + 3] = a0 < a1 ? a1 : 0;
    }
  }
}

/** The run {@linkcode causalRest} found: `[restStart, restEnd)` (module scratch, no allocation). */
let restStart = 0, restEnd = 0;

/**
 * For sorted runs [a0, a1), [b0, b1) and causal part [0, ce): whether the masked set contains
 * the causal part and leaves at most one run once it is removed; that run, `[nq, nq)` if none, is
 * then in `[restStart, restEnd)`.
 */
function causalRest(
  a0: number,
  a1: number,
  b0: number,
  b1: number,
  ce: number,
  nq: number,
): boolean {
  let s = a0, e = a1;
  if (ce > 0) {
    if (a0 !== 0 || a1 < ce) return false;
    if (a1 > ce) s = ce;
    else s = e = nq;
  }
  if (b0 < b1) {
    if (s < e) return false;
    s = b0, e = b1;
  }
  if (s < e) restStart = s, restEnd = e;
  else restStart = restEnd = nq;
  return true;
}

/**
 * The mask of keys `[start, end)` only, as seen by the same `nq` queries: what one rank of a
 * sequence-parallel (ring / context-parallel) computation applies to its key shard. Exact: key j
 * of the result masks the same query rows as key `start + j` of `mask` (including the causal
 * part, which is aligned to the whole key range). O(size of the shard).
 *
 * @example The second half of a causal mask over 8 keys
 * ```ts
 * import { causal, sliceKeys, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const shard = sliceKeys(causal(8), 4, 8, 8);
 * assert.deepEqual(Array.from(toDense(shard, { nq: 8 }).subarray(20, 24)), [1, 1, 0, 0]); // row 5
 * ```
 */
export function sliceKeys(mask: FlashMask, start: number, end: number, nq: number): FlashMask {
  checkMaskStructure(mask);
  const [mb, mh, nk] = mask.shape;
  if (
    !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end > nk ||
    start >= end
  ) {
    throw new RangeError(`sliceKeys: need 0 <= start < end <= ${nk}, got [${start}, ${end})`);
  }
  checkMaskIndices(mask, nq);
  const all = maskBounds(mask, nq), n = end - start;
  const out = new Int32Array(mb * mh * n * BOUNDS_PER_COLUMN);
  for (let s = 0; s < mb * mh; s++) {
    const from = (s * nk + start) * BOUNDS_PER_COLUMN;
    out.set(all.subarray(from, from + n * BOUNDS_PER_COLUMN), s * n * BOUNDS_PER_COLUMN);
  }
  return compactMask(out, [mb, mh, n], nq);
}
