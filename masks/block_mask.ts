/**
 * Block-sparse attention (FlashAttention's block-sparse variant): a 0/1 mask over
 * (row block, column block) tiles, combinable with a FlashMask — an element is visible only if
 * both allow it. Block sizes are multiples of {@linkcode BLOCK_MASK_GRANULE}, so that every
 * backend's tiles lie inside one block and the mask is applied by the scheduler alone: tiles of
 * a zero block are skipped, and no kernel tests it per element.
 *
 * @module
 */

import { checkMaskStructure, type FlashMask, type MaskDims } from "./flashmask.ts";

/** Block sizes must be multiples of this (every backend's tile sizes divide it). */
export const BLOCK_MASK_GRANULE = 128;

/**
 * A block mask: `data[((b·heads + h)·rowBlocks + r)·colBlocks + c]` is 1 when the tile of query
 * rows `[r·blockRows, (r+1)·blockRows)` and keys `[c·blockCols, (c+1)·blockCols)` may be computed.
 * `shape` is `[batch | 1, heads, rowBlocks, colBlocks]`, heads 1, Hk or Hq as for a FlashMask.
 */
export interface BlockMask {
  /** 0/1 per block, row-major in `shape`. */
  readonly data: Uint8Array;
  /** `[batch | 1, heads, ceil(Nq / blockRows), ceil(Nk / blockCols)]`. */
  readonly shape: readonly [number, number, number, number];
  /** Query rows per block (a multiple of 128). */
  readonly blockRows: number;
  /** Keys per block (a multiple of 128). */
  readonly blockCols: number;
}

/**
 * Creates a validated block mask.
 *
 * @example Keep the diagonal blocks and the first block column
 * ```ts
 * import { blockMask } from "./mod.ts";
 *
 * const n = 4; // blocks per side
 * const data = new Uint8Array(n * n).map((_, x) => (x % n === 0 || x % n === Math.floor(x / n) ? 1 : 0));
 * const bm = blockMask(data, [1, 1, n, n], { blockRows: 128, blockCols: 128 });
 * console.log(bm.shape);
 * ```
 */
export function blockMask(
  data: Uint8Array | ArrayLike<number>,
  shape: readonly number[],
  options: { blockRows: number; blockCols: number },
): BlockMask {
  const bm = {
    data: data instanceof Uint8Array ? data : Uint8Array.from(data),
    shape,
    blockRows: options.blockRows,
    blockCols: options.blockCols,
  } as BlockMask;
  checkBlockMaskStructure(bm);
  return bm;
}

function checkBlockMaskStructure(bm: unknown, field = "blockMask"): asserts bm is BlockMask {
  if (typeof bm !== "object" || bm === null) throw new TypeError(`${field} must be a BlockMask`);
  const m = bm as Record<string, unknown>;
  if (!(m.data instanceof Uint8Array)) throw new TypeError(`${field}.data must be a Uint8Array`);
  for (const k of ["blockRows", "blockCols"] as const) {
    const x = m[k];
    if (!Number.isSafeInteger(x) || (x as number) < 1 || (x as number) % BLOCK_MASK_GRANULE !== 0) {
      throw new RangeError(
        `${field}.${k} must be a positive multiple of ${BLOCK_MASK_GRANULE} (the backends' tiles divide it), got ${x}`,
      );
    }
  }
  const s = m.shape;
  if (!Array.isArray(s) || s.length !== 4 || !s.every((x) => Number.isSafeInteger(x) && x >= 1)) {
    throw new RangeError(
      `${field}.shape must be 4 positive integers [batch, heads, rowBlocks, colBlocks]`,
    );
  }
  const n = s[0] * s[1] * s[2] * s[3];
  if (m.data.length !== n) {
    throw new RangeError(`${field}.data.length is ${m.data.length}; shape [${s}] needs ${n}`);
  }
}

/** Checks a block mask against the sizes of an attention call. */
export function checkBlockMask(
  bm: unknown,
  dims: MaskDims,
  field = "options.blockMask",
): asserts bm is BlockMask {
  checkBlockMaskStructure(bm, field);
  const [b, h, r, c] = bm.shape;
  if (b !== 1 && b !== dims.batch) {
    throw new RangeError(`${field}.shape[0] (batch) is ${b}; expected 1 or ${dims.batch}`);
  }
  if (h !== 1 && h !== dims.kvHeads && h !== dims.heads) {
    throw new RangeError(
      `${field}.shape[1] (heads) is ${h}; expected 1, ${dims.kvHeads} or ${dims.heads}`,
    );
  }
  const rb = Math.ceil(dims.nq / bm.blockRows), cb = Math.ceil(dims.nk / bm.blockCols);
  if (r !== rb || c !== cb) {
    throw new RangeError(
      `${field}.shape[2..3] is [${r}, ${c}]; Nq = ${dims.nq}, Nk = ${dims.nk} in blocks of ${bm.blockRows} × ${bm.blockCols} need [${rb}, ${cb}]`,
    );
  }
}

const expanded = new WeakMap<FlashMask, WeakMap<BlockMask, { src: Int32Array; out: FlashMask }>>();

/**
 * The FlashMask with as many slices as the pair (mask, block mask) needs — batch and heads the
 * larger of the two (1 broadcasts; Hk divides Hq) — its columns copied, so that one slice index
 * addresses both the mask bounds and the block mask. Cached per pair.
 */
export function sliceLike(mask: FlashMask, bm: BlockMask): FlashMask {
  checkMaskStructure(mask);
  const [mb, mh, nk, c] = mask.shape;
  const sb = Math.max(mb, bm.shape[0]), sh = Math.max(mh, bm.shape[1]);
  if (sb === mb && sh === mh) return mask;
  let perMask = expanded.get(mask);
  const hit = perMask?.get(bm);
  const src = mask.startEndRowIndices, col = nk * c;
  if (
    hit && hit.out.shape[0] === sb && hit.out.shape[1] === sh && hit.src.length === src.length &&
    hit.src.every((x, i) => x === src[i])
  ) return hit.out;
  const data = new Int32Array(sb * sh * col);
  for (let b = 0; b < sb; b++) {
    for (let h = 0; h < sh; h++) {
      const from = ((mb === 1 ? 0 : b) * mh + Math.floor((h * mh) / sh)) * col;
      data.set(src.subarray(from, from + col), (b * sh + h) * col);
    }
  }
  const out: FlashMask = { startEndRowIndices: data, shape: [sb, sh, nk, c], causal: mask.causal };
  if (!perMask) expanded.set(mask, perMask = new WeakMap());
  perMask.set(bm, { src: src.slice(), out });
  return out;
}
