/**
 * FlashMask masks: the column-wise sparse representation, builders for the twelve mask types,
 * dense conversion and pictures, and the block-sparse scheduler that drives every kernel.
 *
 * @example
 * ```ts
 * import { causalDocument, maskPicture, schedule } from "./mod.ts";
 *
 * const mask = causalDocument([3, 5]);
 * console.log(maskPicture(mask));
 * const plan = schedule(mask, { nq: 8, nk: 8, blockRows: 4, blockCols: 4 });
 * console.log(plan.density, plan.visibleFraction);
 * ```
 *
 * @module
 */

export {
  BOUNDS_PER_COLUMN,
  checkMask,
  compactMask,
  type FlashMask,
  flashMask,
  maskBounds,
  type MaskDims,
  sliceKeys,
} from "./flashmask.ts";
export {
  causal,
  causalBlockwise,
  causalDocument,
  document,
  type EvictionOptions,
  fromDense,
  type FromDenseOptions,
  full,
  globalSlidingWindow,
  kvCache,
  localWindow,
  type PrefixDocument,
  prefixLmCausal,
  prefixLmDocument,
  qkSparse,
  type QuestionGroup,
  randomEviction,
  shareQuestion,
  slidingWindow,
  stack,
  varlen,
  type WindowSize,
} from "./builders.ts";
export { maskPicture, type PictureOptions, type SliceOptions, toDense } from "./dense.ts";
export {
  classifyTile,
  type Schedule,
  schedule,
  type ScheduleOptions,
  TILE_FULL,
  TILE_PARTIAL,
  TILE_SKIPPED,
  visibleFraction,
} from "./schedule.ts";
export { type ExampleMask, exampleMask, MASK_NAMES, type MaskName } from "./examples.ts";
export {
  checkDropout,
  type Dropout,
  dropoutKeeps,
  dropoutKey,
  dropoutThreshold,
  philox4x32,
} from "./dropout.ts";
export {
  BLOCK_MASK_GRANULE,
  type BlockMask,
  blockMask,
  checkBlockMask,
  sliceLike,
} from "./block_mask.ts";
