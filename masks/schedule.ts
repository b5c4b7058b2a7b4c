/**
 * The block-sparse scheduler: classifies every (row block, column block) tile of a FlashMask as
 * skipped, partial or full, once per mask and tile size, and lists the tiles each kernel visits.
 *
 * Tile classification (FlashMask, Wang et al. 2024, §4.2) uses only the per-column-block
 * min/max of the canonical bounds `[lts, lte, uts, ute]` (see {@linkcode maskBounds}). For a
 * tile of rows `[r0, r1)`:
 * - skipped when every column masks all its rows: `maxLTS <= r0 && r1 <= minLTE`, or
 *   `maxUTS <= r0 && r1 <= minUTE`, or the two runs touch and together cover it
 *   (`maxUTS <= r0 && r1 <= minLTE && minUTE >= maxLTS`). Sound: never skips a visible element.
 * - full when no column masks any of its rows: the lower run misses it
 *   (`minLTS >= r1 || maxLTE <= r0`) and so does the upper run. Full tiles do no mask work.
 * - partial otherwise: kernels test each element against its column's bounds.
 *
 * The schedule lists, per (mask slice, row block), the computed column blocks in ascending
 * order (forward pass), and per (mask slice, column block) the computed row blocks (backward
 * pass for dK/dV). A list entry is `(block << 1) | partial`.
 *
 * @module
 */

import { type BlockMask, checkBlockMask } from "./block_mask.ts";
import {
  BOUNDS_PER_COLUMN,
  checkMask,
  checkMaskStructure,
  type FlashMask,
  maskBounds,
  visibleRows,
} from "./flashmask.ts";

/** Class of a tile. */
export const TILE_SKIPPED = 0;
/** Class of a tile whose elements must be tested against the mask. */
export const TILE_PARTIAL = 1;
/** Class of a tile with no masked element. */
export const TILE_FULL = 2;

/** Sizes a schedule is built for. */
export interface ScheduleOptions {
  /** Query length Nq. */
  nq: number;
  /** Key length Nk (must equal the mask's seqLenK). */
  nk: number;
  /** Rows per tile (Br). */
  blockRows: number;
  /** Columns per tile (Bc). */
  blockCols: number;
  /**
   * Block-sparse mask: tiles inside its zero blocks are skipped. Its block sizes must be
   * multiples of the tile sizes, and the mask must have the slices of {@linkcode sliceLike}.
   */
  blockMask?: BlockMask;
}

/** The block schedule of one mask at one tile size; built by {@linkcode schedule}. */
export interface Schedule {
  /** Query length Nq. */
  readonly nq: number;
  /** Key length Nk. */
  readonly nk: number;
  /** Rows per tile. */
  readonly blockRows: number;
  /** Columns per tile. */
  readonly blockCols: number;
  /** `ceil(nq / blockRows)`. */
  readonly rowBlocks: number;
  /** `ceil(nk / blockCols)`. */
  readonly colBlocks: number;
  /** Mask slices (mask batch × mask heads). */
  readonly slices: number;
  /** Canonical bounds `[lts, lte, uts, ute]` per (slice, key column): what partial tiles test. */
  readonly bounds: Int32Array;
  /**
   * What kernels read the bounds from: key column j of slice s has the canonical bounds of
   * column `sliceColumn[s] + j` of `columnBounds`. For a mask given as a FlashMask, `columnBounds`
   * is `bounds` and `sliceColumn[s]` is `s·nk`; the slices of a ragged KV cache are windows of one
   * template shared by every length (`columnBounds`), so a decoding step writes O(batch) of them.
   */
  readonly columnBounds: Int32Array;
  /** Per slice: the column of `columnBounds` where its key 0 is. */
  readonly sliceColumn: Int32Array;
  /**
   * Per (slice, column block): min and max of each bound,
   * `[minLTS, maxLTS, minLTE, maxLTE, minUTS, maxUTS, minUTE, maxUTE]`.
   */
  readonly blockBounds: Int32Array;
  /** Forward lists: tiles of (slice s, row block r) are `rowTiles[rowPtr[i] .. rowPtr[i+1])`, i = s·rowBlocks + r. */
  readonly rowPtr: Uint32Array;
  /** Forward list entries `(colBlock << 1) | partial`, ascending in colBlock. */
  readonly rowTiles: Uint32Array;
  /** Backward lists: tiles of (slice s, column block c) are `colTiles[colPtr[i] .. colPtr[i+1])`, i = s·colBlocks + c. */
  readonly colPtr: Uint32Array;
  /** Backward list entries `(rowBlock << 1) | partial`, ascending in rowBlock. */
  readonly colTiles: Uint32Array;
  /**
   * Per slice, its row blocks from the most listed tiles to the fewest (ties: lower block first):
   * `rowOrder[s·rowBlocks + i]`. Kernels that start the longest lists first keep every processor
   * busy to the end (longest processing time first); a permutation, so any order is exact.
   */
  readonly rowOrder: Uint32Array;
  /** Per slice, its column blocks from the most listed tiles to the fewest, as `rowOrder`. */
  readonly colOrder: Uint32Array;
  /** Tile counts over all slices. */
  readonly tiles: { readonly full: number; readonly partial: number; readonly skipped: number };
  /** Fraction of tiles computed (full + partial) over all tiles. */
  readonly density: number;
  /** Exact fraction of visible (query, key) elements, averaged over slices. */
  readonly visibleFraction: number;
}

/**
 * Classifies the tile of rows `[r0, r1)` of a column block from the block's min/max bounds
 * (`blockBounds` at offset `o`).
 */
export function classifyTile(blockBounds: Int32Array, o: number, r0: number, r1: number): number {
  const minLTS = blockBounds[o], maxLTS = blockBounds[o + 1];
  const minLTE = blockBounds[o + 2], maxLTE = blockBounds[o + 3];
  const minUTS = blockBounds[o + 4], maxUTS = blockBounds[o + 5];
  const minUTE = blockBounds[o + 6], maxUTE = blockBounds[o + 7];
  if (
    (maxLTS <= r0 && r1 <= minLTE) || (maxUTS <= r0 && r1 <= minUTE) ||
    (maxUTS <= r0 && r1 <= minLTE && minUTE >= maxLTS)
  ) return TILE_SKIPPED;
  if ((minLTS >= r1 || maxLTE <= r0) && (minUTS >= r1 || maxUTE <= r0)) return TILE_FULL;
  return TILE_PARTIAL;
}

/** Masks the library built from options and never hands out: their indices cannot change. */
const unchanging = new WeakSet<FlashMask>();

/**
 * Marks a mask the library built itself and keeps to itself (from `causal`, `windowSize`,
 * `kvLength`, …): the schedule cache then trusts its indices instead of comparing them with its
 * copy on every call (O(size of the mask), which a decoding step pays once per layer otherwise).
 */
export function unchangingMask<T extends FlashMask>(mask: T): T {
  unchanging.add(mask);
  return mask;
}

const cache = new WeakMap<
  FlashMask,
  { copy: Int32Array; plans: Map<string, { plan: Schedule; blocks?: Uint8Array }> }
>();

/**
 * The block schedule of `mask` for tiles of `blockRows × blockCols`. Validates the mask
 * against `nq`/`nk`, then builds the schedule in O(size of mask + tiles), or returns the one
 * cached on the mask for these sizes (a mask whose indices changed since is rescheduled).
 *
 * @throws {TypeError | RangeError} if the mask is invalid for these sizes.
 * @example
 * ```ts
 * import { causal, schedule } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const s = schedule(causal(256), { nq: 256, nk: 256, blockRows: 64, blockCols: 64 });
 * assert.deepEqual(s.tiles, { full: 6, partial: 4, skipped: 6 });
 * assert.equal(s.density, 10 / 16);
 * ```
 */
export function schedule(mask: FlashMask, options: ScheduleOptions): Schedule {
  const { nq, nk, blockRows, blockCols } = options;
  for (const [k, v] of Object.entries({ nq, nk, blockRows, blockCols })) {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new RangeError(`schedule: ${k} must be a positive integer, got ${v}`);
    }
  }
  checkMaskStructure(mask, "mask");
  const bm = options.blockMask;
  const key = `${nq},${nk},${blockRows},${blockCols},${bm ? blockMaskId(bm) : ""}`;
  let entry = cache.get(mask);
  if (entry && !unchanging.has(mask) && !sameData(entry.copy, mask.startEndRowIndices)) {
    entry = undefined;
  }
  const hit = entry?.plans.get(key);
  if (hit && (!bm || sameData(hit.blocks!, bm.data))) return hit.plan;
  const [mb, mh] = mask.shape;
  // a mask the library built for these sizes is valid by construction (O(size of the mask) saved)
  if (!unchanging.has(mask)) checkMask(mask, { batch: mb, heads: mh, kvHeads: mh, nq, nk });
  if (bm) {
    // The mask is the call's effective one (sliceLike): its heads are the larger of the two,
    // and the block mask's (1, Hk or Hq of the call) divide them.
    const bh = (bm as unknown as { shape?: readonly number[] }).shape?.[1] ?? 0;
    const kvHeads = bh > 0 && mh % bh === 0 ? bh : mh;
    checkBlockMask(bm, { batch: mb, heads: mh, kvHeads, nq, nk }, "blockMask");
    if (bm.blockRows % blockRows || bm.blockCols % blockCols) {
      throw new RangeError(
        `blockMask blocks of ${bm.blockRows} × ${bm.blockCols} are not multiples of this kernel's ${blockRows} × ${blockCols} tiles`,
      );
    }
  }
  if (!entry) {
    entry = { copy: mask.startEndRowIndices.slice(), plans: new Map() };
    cache.set(mask, entry);
  }
  const plan = buildSchedule(mask, nq, nk, blockRows, blockCols, bm);
  entry.plans.set(key, { plan, blocks: bm?.data.slice() });
  return plan;
}

const blockMaskIds = new WeakMap<BlockMask, number>();
let nextBlockMaskId = 1;

function blockMaskId(bm: BlockMask): number {
  let id = blockMaskIds.get(bm);
  if (id === undefined) blockMaskIds.set(bm, id = nextBlockMaskId++);
  return id;
}

function sameData(a: Int32Array | Uint8Array, b: Int32Array | Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function buildSchedule(
  mask: FlashMask,
  nq: number,
  nk: number,
  br: number,
  bc: number,
  bm?: BlockMask,
): Schedule {
  const slices = mask.shape[0] * mask.shape[1];
  // Block mask: slice s = b·heads + h reads block-mask slice (b or 0, h scaled to its heads).
  const allowed = (s: number, r: number, c: number) => {
    if (!bm) return true;
    const [bb, bh, rb, cb] = bm.shape, heads = mask.shape[1];
    const b = Math.floor(s / heads), h = s % heads;
    const bs = (bb === 1 ? 0 : b) * bh + Math.floor((h * bh) / heads);
    const row = Math.floor((r * br) / bm.blockRows), col = Math.floor((c * bc) / bm.blockCols);
    return bm.data[(bs * rb + row) * cb + col] !== 0;
  };
  const tc = Math.ceil(nk / bc);
  const bounds = maskBounds(mask, nq);

  // Per (slice, column block): min/max of each bound over the block's columns.
  const blockBounds = new Int32Array(slices * tc * 8);
  for (let s = 0; s < slices; s++) {
    for (let c = 0; c < tc; c++) {
      const o = (s * tc + c) * 8;
      for (let k = 0; k < 4; k++) {
        blockBounds[o + 2 * k] = 0x7fffffff;
        blockBounds[o + 2 * k + 1] = -1;
      }
      for (let j = c * bc; j < Math.min(nk, (c + 1) * bc); j++) {
        const b = (s * nk + j) * BOUNDS_PER_COLUMN;
        for (let k = 0; k < 4; k++) {
          const x = bounds[b + k];
          if (x < blockBounds[o + 2 * k]) blockBounds[o + 2 * k] = x;
          if (x > blockBounds[o + 2 * k + 1]) blockBounds[o + 2 * k + 1] = x;
        }
      }
    }
  }

  const sliceColumn = Int32Array.from({ length: slices }, (_, s) => s * nk);
  const visible = bm ? blockVisibleFraction(bounds, nq, nk, br, bc, allowed) : undefined;
  return tileSchedule({ nq, nk, br, bc, slices }, blockBounds, {
    bounds: () => bounds,
    columnBounds: bounds,
    sliceColumn,
    visible,
  }, bm && allowed);
}

/** Where a schedule's kernels read the canonical bounds (see {@linkcode Schedule}). */
export interface ScheduleColumns {
  /** The per-(slice, column) bounds, made when first read. */
  bounds: () => Int32Array;
  columnBounds: Int32Array;
  sliceColumn: Int32Array;
  /** The visible fraction when known up front (under a block mask). */
  visible?: number;
}

/**
 * Per slice, the blocks of its `blocks` lists (`ptr` delimits them) from the longest list to the
 * shortest, ties in block order: a counting sort, O(slices · (blocks + longest list)).
 */
function longestFirst(ptr: Uint32Array, slices: number, blocks: number): Uint32Array {
  const order = new Uint32Array(slices * blocks);
  for (let s = 0; s < slices; s++) {
    const at = s * blocks;
    let longest = 0;
    for (let i = 0; i < blocks; i++) longest = Math.max(longest, ptr[at + i + 1] - ptr[at + i]);
    // start[len]: where the blocks with lists of `len` tiles begin (longest first)
    const start = new Uint32Array(longest + 2);
    for (let i = 0; i < blocks; i++) start[longest - (ptr[at + i + 1] - ptr[at + i]) + 1]++;
    for (let l = 1; l < start.length; l++) start[l] += start[l - 1];
    for (let i = 0; i < blocks; i++) {
      order[at + start[longest - (ptr[at + i + 1] - ptr[at + i])]++] = i;
    }
  }
  return order;
}

/**
 * The tile lists of a schedule from the per-(slice, column block) min/max of the bounds: the part
 * of scheduling every mask representation shares. O(tiles).
 */
export function tileSchedule(
  sizes: { nq: number; nk: number; br: number; bc: number; slices: number },
  blockBounds: Int32Array,
  columns: ScheduleColumns,
  allowed?: (s: number, r: number, c: number) => boolean,
): Schedule {
  const { nq, nk, br, bc, slices } = sizes;
  const tr = Math.ceil(nq / br), tc = Math.ceil(nk / bc);
  // Classify every tile, then list the computed ones per row block and per column block.
  const cls = new Uint8Array(slices * tr * tc);
  let full = 0, partial = 0;
  const rowPtr = new Uint32Array(slices * tr + 1);
  const colPtr = new Uint32Array(slices * tc + 1);
  for (let s = 0; s < slices; s++) {
    for (let r = 0; r < tr; r++) {
      const r0 = r * br, r1 = Math.min(nq, r0 + br);
      for (let c = 0; c < tc; c++) {
        const k = !allowed || allowed(s, r, c)
          ? classifyTile(blockBounds, (s * tc + c) * 8, r0, r1)
          : 0;
        cls[(s * tr + r) * tc + c] = k;
        if (k === TILE_SKIPPED) continue;
        if (k === TILE_FULL) full++;
        else partial++;
        rowPtr[s * tr + r + 1]++;
        colPtr[s * tc + c + 1]++;
      }
    }
  }
  for (let i = 1; i < rowPtr.length; i++) rowPtr[i] += rowPtr[i - 1];
  for (let i = 1; i < colPtr.length; i++) colPtr[i] += colPtr[i - 1];
  const rowTiles = new Uint32Array(full + partial);
  const colTiles = new Uint32Array(full + partial);
  const colFill = colPtr.slice(0, slices * tc);
  let w = 0;
  for (let s = 0; s < slices; s++) {
    for (let r = 0; r < tr; r++) {
      for (let c = 0; c < tc; c++) {
        const k = cls[(s * tr + r) * tc + c];
        if (k === TILE_SKIPPED) continue;
        const p = k === TILE_PARTIAL ? 1 : 0;
        rowTiles[w++] = (c << 1) | p;
        colTiles[colFill[s * tc + c]++] = (r << 1) | p;
      }
    }
  }
  const total = slices * tr * tc;
  const rowOrder = longestFirst(rowPtr, slices, tr), colOrder = longestFirst(colPtr, slices, tc);
  // O(size of the mask): without a block mask (whose data the caller may change later), computed
  // when first read rather than on every call that builds a mask
  let visible = columns.visible, bounds: Int32Array | undefined;
  const allBounds = () => bounds ??= columns.bounds();
  return {
    nq,
    nk,
    blockRows: br,
    blockCols: bc,
    rowBlocks: tr,
    colBlocks: tc,
    slices,
    get bounds() {
      return allBounds();
    },
    columnBounds: columns.columnBounds,
    sliceColumn: columns.sliceColumn,
    blockBounds,
    rowPtr,
    rowTiles,
    colPtr,
    colTiles,
    rowOrder,
    colOrder,
    tiles: { full, partial, skipped: total - full - partial },
    density: (full + partial) / total,
    get visibleFraction() {
      return visible ??= boundsVisibleFraction(allBounds(), nq);
    },
  };
}

/** Exact visible fraction under a block mask: per column, rows of allowed tiles only. */
function blockVisibleFraction(
  bounds: Int32Array,
  nq: number,
  nk: number,
  br: number,
  bc: number,
  allowed: (s: number, r: number, c: number) => boolean,
): number {
  const slices = bounds.length / (nk * BOUNDS_PER_COLUMN), tr = Math.ceil(nq / br);
  let visible = 0;
  for (let s = 0; s < slices; s++) {
    for (let j = 0; j < nk; j++) {
      const o = (s * nk + j) * BOUNDS_PER_COLUMN;
      for (let r = 0; r < tr; r++) {
        if (allowed(s, r, Math.floor(j / bc))) {
          visible += visibleRows(bounds, o, r * br, Math.min(nq, (r + 1) * br));
        }
      }
    }
  }
  return visible / (slices * nq * nk);
}

/** Exact fraction of visible elements of canonical bounds (all slices and columns). */
export function boundsVisibleFraction(bounds: Int32Array, nq: number): number {
  let visible = 0;
  const cols = bounds.length / BOUNDS_PER_COLUMN;
  for (let x = 0; x < cols; x++) visible += visibleRows(bounds, x * BOUNDS_PER_COLUMN, 0, nq);
  return visible / (cols * nq);
}

/**
 * Exact fraction of (query, key) elements a mask leaves visible, averaged over its slices.
 *
 * @example
 * ```ts
 * import { causal, visibleFraction } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(visibleFraction(causal(4), 4), 10 / 16);
 * ```
 */
export function visibleFraction(mask: FlashMask, nq: number): number {
  checkMask(mask, {
    batch: mask.shape[0],
    heads: mask.shape[1],
    kvHeads: mask.shape[1],
    nq,
    nk: mask.shape[2],
  });
  return boundsVisibleFraction(maskBounds(mask, nq), nq);
}
