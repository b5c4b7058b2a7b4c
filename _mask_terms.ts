/**
 * The mask options of a call (`mask`, `causal`, `windowSize`, `cuSeqlens`, `kvLength`, with
 * `blockMask` and ALiBi's diagonals) made into the terms of its {@linkcode Problem}: the FlashMask
 * in force, its schedule and slice map; and the same for a prepared call's step with new key
 * lengths ({@linkcode withKvLength}). Masks built from options are cached, so that their
 * schedules are computed once, and a decoding step's layers share the terms of the first.
 *
 * @module
 */

import type { AttentionOptions, Problem } from "./types.ts";
import {
  checkMask,
  type FlashMask,
  flashMask,
  type MaskDims,
  maskSlice,
} from "./masks/flashmask.ts";
import { type BlockMask, sliceLike } from "./masks/block_mask.ts";
import { checkKvLength, checkWindow, kvCache, localWindow, varlen } from "./masks/builders.ts";
import {
  kvCacheWindows,
  scheduleWindows,
  windowedFlashMask,
  type WindowedMask,
} from "./masks/windowed.ts";
import { schedule, unchangingMask } from "./masks/schedule.ts";
import { describe } from "./_options.ts";

/**
 * Problem `p` (validated with `options`) with new valid key lengths: `kvLength` is checked as
 * `options.kvLength` would be, and only the terms it changes are made again (mask, schedule,
 * ALiBi's diagonals). A prepared call's step costs this, not a whole validation.
 */
export function withKvLength(
  p: Problem,
  options: AttentionOptions,
  kvLength: ArrayLike<number>,
  name = "step.kvLength",
): Problem {
  const other = (["mask", "cuSeqlens"] as const).find((key) => options[key] !== undefined);
  if (other) throw new TypeError(`${name} cannot be combined with options.${other}`);
  if (kvLength?.length !== p.batch) {
    throw new RangeError(`${name} must hold ${p.batch} lengths (one per batch entry)`);
  }
  checkKvLength(kvLength, p.nk, name);
  return { ...p, ...maskTerms({ ...options, kvLength }, p, p.blockMask, p.alibi?.slopes) };
}

/** The terms of a problem that its mask options decide. */
export type MaskTerms = Pick<Problem, "mask" | "schedule" | "slice" | "alibi">;

/**
 * The mask in force (with `options.blockMask` `bm`), its schedule and slice map, and ALiBi's
 * `slopes` (already expanded to batch·Hq) with each entry's diagonal offset.
 */
export function maskTerms(
  options: AttentionOptions,
  dims: Pick<Problem, "batch" | "nq" | "nk" | "heads" | "kvHeads">,
  bm: BlockMask | undefined,
  slopes: Float32Array | undefined,
): MaskTerms {
  const { batch, nq, nk, heads } = dims;
  const resolved = resolveMask(options, dims);
  const kvLength = options.kvLength;
  // kvLength is validated with the mask it builds (resolveMask, above)
  const alibi = slopes && {
    slopes,
    offsets: Int32Array.from({ length: batch }, (_, b) => (kvLength?.[b] ?? nk) - nq),
  };
  // a ragged KV cache's windows (never with a block mask): O(batch) a call, not O(batch × Nk);
  // the layers of a decoding step get the same windows object, and its terms made once
  const windows = "template" in resolved ? resolved : undefined;
  const last = lastWindowTerms;
  if (windows && last?.windows === windows && last.heads === heads) return { ...last.terms, alibi };
  const mask = windows ? windowedFlashMask(windows) : resolved as FlashMask;
  const effective = bm ? sliceLike(mask, bm) : mask;
  const terms = {
    mask: effective,
    schedule: (blockRows: number, blockCols: number) =>
      windows
        ? scheduleWindows(windows, blockRows, blockCols)
        : schedule(effective, { nq, nk, blockRows, blockCols, blockMask: bm }),
    slice: (b: number, h: number) => maskSlice(effective, b, h, heads),
  };
  if (windows) lastWindowTerms = { windows, heads, terms };
  return { ...terms, alibi };
}

/** The terms of the windows made last (see {@linkcode maskTerms}). */
let lastWindowTerms:
  | { windows: WindowedMask; heads: number; terms: Omit<MaskTerms, "alibi"> }
  | undefined;

const builtMasks = new Map<string, FlashMask>();

/** A mask built from options, cached by its arguments so that its schedule is computed once. */
function built(key: string, make: () => FlashMask): FlashMask {
  let m = builtMasks.get(key);
  if (!m) {
    if (builtMasks.size > 64) builtMasks.clear();
    builtMasks.set(key, m = unchangingMask(make()));
  }
  return m;
}

/**
 * The FlashMask in force: `mask`, or one built from `windowSize`, `cuSeqlens` or `kvLength`
 * (with `causal`), or plain full / causal. A window with a FlashMask is an error, as in FlashMask.
 */
function resolveMask(options: AttentionOptions, dims: MaskDims): FlashMask | WindowedMask {
  const { batch, nq, nk } = dims;
  if (options.causal !== undefined && typeof options.causal !== "boolean") {
    throw new TypeError(`options.causal must be a boolean, got ${describe(options.causal)}`);
  }
  const causal = options.causal ?? false;
  const given = (["mask", "cuSeqlens", "kvLength"] as const).filter((k) =>
    options[k] !== undefined
  );
  if (given.length > 1) {
    throw new TypeError(`options.${given[0]} and options.${given[1]} cannot be combined`);
  }
  const win = options.windowSize;
  if (options.mask !== undefined) {
    if (win !== undefined) {
      throw new TypeError(
        "options.windowSize cannot be combined with options.mask (as in FlashMask): " +
          "build the window into the mask (localWindow, slidingWindow, globalSlidingWindow)",
      );
    }
    checkMask(options.mask, dims, "options.mask");
    if (options.causal !== undefined && options.causal !== options.mask.causal) {
      throw new TypeError(
        `options.causal is ${options.causal} but options.mask.causal is ${options.mask.causal}; ` +
          "a FlashMask carries its own causal flag",
      );
    }
    return options.mask;
  }
  const w = win === undefined ? "" : `${win[0]},${win[1]}`;
  if (options.cuSeqlens !== undefined) {
    const cu = options.cuSeqlens;
    const total = cu?.[cu.length - 1];
    if (batch !== 1 || nq !== nk || total !== nq) {
      throw new RangeError(
        `options.cuSeqlens packs sequences into batch 1 with Nq = Nk = cuSeqlens[last]; got batch ${batch}, Nq ${nq}, Nk ${nk}, cuSeqlens[last] ${total}`,
      );
    }
    return built(
      `cu:${causal}:${w}:${Array.from(cu).join(",")}`,
      () => varlen(cu, { causal, windowSize: win }),
    );
  }
  if (options.kvLength !== undefined) {
    const kl = options.kvLength;
    if (kl?.length !== batch) {
      throw new RangeError(`options.kvLength must hold ${batch} lengths (one per batch entry)`);
    }
    checkKvLength(kl, nk, "options.kvLength");
    if (win !== undefined) checkWindow(win, "options.windowSize");
    if (options.blockMask === undefined) return kvCacheWindows(kl, nq, nk, causal, win);
    return built(
      `kv:${nq}:${nk}:${causal}:${w}:${Array.from(kl).join(",")}`,
      () => kvCache(kl, nq, nk, { causal, windowSize: win }),
    );
  }
  if (win !== undefined) {
    return built(`win:${nq}:${nk}:${causal}:${w}`, () => localWindow(nq, nk, win, { causal }));
  }
  return plainMask(nq, nk, causal);
}

const implicitMasks = new Map<string, FlashMask>();

/** A plain full or causal mask for (nq, nk), cached so its schedule is computed once. */
function plainMask(nq: number, nk: number, causal: boolean): FlashMask {
  const key = `${nq},${nk},${causal}`;
  let m = implicitMasks.get(key);
  if (!m) {
    if (implicitMasks.size > 64) implicitMasks.clear();
    // causal: [LTS = nq] per key; full: [LTS = nq, UTE = 0] per key (nothing masked)
    const bounds = new Int32Array(causal ? nk : 2 * nk);
    for (let j = 0; j < nk; j++) bounds[causal ? j : 2 * j] = nq;
    m = unchangingMask(flashMask(bounds, [1, 1, nk, causal ? 1 : 2], { causal }));
    implicitMasks.set(key, m);
  }
  return m;
}
