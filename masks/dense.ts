/**
 * Dense views of a FlashMask: the allowed matrix of one slice, and pictures of it at element
 * and tile level. For tests, tools and people; kernels never build these.
 *
 * @module
 */

import {
  BOUNDS_PER_COLUMN,
  checkMask,
  type FlashMask,
  maskBounds,
  visibleRows,
} from "./flashmask.ts";
import { classifyTile, schedule, TILE_FULL, TILE_SKIPPED } from "./schedule.ts";

/** Which slice of a mask to look at, and the query length. */
export interface SliceOptions {
  /** Batch index (ignored when the mask broadcasts over batch). Default 0. */
  batch?: number;
  /** Mask head index (ignored when the mask has one head). Default 0. */
  head?: number;
  /** Query length Nq (default: the mask's seqLenK). */
  nq?: number;
}

/** Validates the slice options and returns [slice index, nq, bounds of all slices]. */
function sliceOf(mask: FlashMask, options: SliceOptions): [number, number, Int32Array] {
  const nq = options.nq ?? mask.shape[2];
  checkMask(mask, {
    batch: mask.shape[0],
    heads: mask.shape[1],
    kvHeads: mask.shape[1],
    nq,
    nk: mask.shape[2],
  });
  const [mb, mh] = mask.shape;
  const b = options.batch ?? 0, h = options.head ?? 0;
  if (!Number.isSafeInteger(b) || b < 0 || (mb > 1 && b >= mb)) {
    throw new RangeError(`batch ${b} is outside the mask's ${mb} batch entries`);
  }
  if (!Number.isSafeInteger(h) || h < 0 || (mh > 1 && h >= mh)) {
    throw new RangeError(`head ${h} is outside the mask's ${mh} heads`);
  }
  return [(mb === 1 ? 0 : b) * mh + (mh === 1 ? 0 : h), nq, maskBounds(mask, nq)];
}

/**
 * The dense allowed matrix of one mask slice: `allowed[i * nk + j]` is 1 when query i sees key
 * j. Uses O(Nq·Nk) memory: for tests and small pictures only.
 *
 * @example
 * ```ts
 * import { causal, toDense } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(Array.from(toDense(causal(2))), [1, 0, 1, 1]);
 * ```
 */
export function toDense(mask: FlashMask, options: SliceOptions = {}): Uint8Array {
  const [s, nq, bounds] = sliceOf(mask, options);
  const nk = mask.shape[2];
  const out = new Uint8Array(nq * nk).fill(1);
  for (let j = 0; j < nk; j++) {
    const o = (s * nk + j) * BOUNDS_PER_COLUMN;
    for (let i = bounds[o]; i < bounds[o + 1]; i++) out[i * nk + j] = 0;
    for (let i = bounds[o + 2]; i < bounds[o + 3]; i++) out[i * nk + j] = 0;
  }
  return out;
}

/** Options of {@linkcode maskPicture}. */
export interface PictureOptions extends SliceOptions {
  /** Most characters per side; larger masks are drawn downsampled. Default 48. */
  maxSize?: number;
  /** Draw tile classes for this tile size instead of elements. */
  blocks?: { blockRows: number; blockCols: number };
}

/**
 * A text picture of one mask slice. Element level: █ visible, ░ masked, ▒ a downsampled cell
 * with both. Tile level (`blocks`): █ full tile, ▓ partial tile, ░ skipped tile.
 * Memory is O(Nk) whatever the mask size.
 *
 * @example
 * ```ts
 * import { causal, maskPicture } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(maskPicture(causal(3)), "█░░\n██░\n███");
 * assert.equal(maskPicture(causal(4), { blocks: { blockRows: 2, blockCols: 2 } }), "▓░\n█▓");
 * ```
 */
export function maskPicture(mask: FlashMask, options: PictureOptions = {}): string {
  const [s, nq, bounds] = sliceOf(mask, options);
  const nk = mask.shape[2];
  const max = options.maxSize ?? 48;
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new RangeError(`maxSize must be a positive integer, got ${max}`);
  }
  if (options.blocks) {
    const plan = schedule(mask, { nq, nk, ...options.blocks });
    const tc = plan.colBlocks;
    return grid(plan.rowBlocks, tc, max, (r0, r1, c0, c1) => {
      let full = 0, skipped = 0;
      for (let r = r0; r < r1; r++) {
        const y0 = r * plan.blockRows, y1 = Math.min(nq, y0 + plan.blockRows);
        for (let c = c0; c < c1; c++) {
          const k = classifyTile(plan.blockBounds, (s * tc + c) * 8, y0, y1);
          if (k === TILE_FULL) full++;
          else if (k === TILE_SKIPPED) skipped++;
        }
      }
      const n = (r1 - r0) * (c1 - c0);
      return full === n ? "█" : skipped === n ? "░" : "▓";
    });
  }
  return grid(nq, nk, max, (r0, r1, c0, c1) => {
    let visible = 0;
    for (let j = c0; j < c1; j++) {
      visible += visibleRows(bounds, (s * nk + j) * BOUNDS_PER_COLUMN, r0, r1);
    }
    return visible === (r1 - r0) * (c1 - c0) ? "█" : visible === 0 ? "░" : "▒";
  });
}

/** Draws a rows × cols grid in at most max × max characters, one cell per character. */
function grid(
  rows: number,
  cols: number,
  max: number,
  cell: (r0: number, r1: number, c0: number, c1: number) => string,
): string {
  const h = Math.min(rows, max), w = Math.min(cols, max);
  const lines: string[] = [];
  for (let a = 0; a < h; a++) {
    const r0 = Math.floor(a * rows / h), r1 = Math.floor((a + 1) * rows / h);
    let line = "";
    for (let b = 0; b < w; b++) {
      line += cell(r0, r1, Math.floor(b * cols / w), Math.floor((b + 1) * cols / w));
    }
    lines.push(line);
  }
  return lines.join("\n");
}
