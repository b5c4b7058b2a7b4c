/**
 * Exact scaled-dot-product attention for Deno, the FlashAttention way (tiled, online softmax,
 * O(N) extra memory, backward by recomputation), with FlashMask column-wise sparse masks that
 * let kernels skip fully masked tiles.
 *
 * @example Causal-document attention and its gradients
 * ```ts
 * import { attention, attentionBackward, causalDocument, tensor } from "./mod.ts";
 *
 * const [b, n, h, d] = [1, 12, 2, 16];
 * const rand = () => tensor(Float32Array.from({ length: b * n * h * d }, Math.random), [b, n, h, d]);
 * const [q, k, v, dOut] = [rand(), rand(), rand(), rand()];
 * const mask = causalDocument([5, 7]);
 * const { out, lse } = await attention(q, k, v, { mask });
 * const { dq, dk, dv } = await attentionBackward({ q, k, v, out, lse, dOut }, { mask });
 * console.log(out.shape, dq.shape, dk.shape, dv.shape);
 * ```
 *
 * The schedule, canonical mask bounds, Philox dropout and the example masks are in the `./masks`
 * subpath (`masks/mod.ts`).
 *
 * @module
 */

export {
  type DType,
  fromF16,
  type GpuArray,
  type GpuTensor,
  type Shape4,
  type Tensor,
  tensor,
  toF16,
  toFloat32,
} from "./tensor.ts";
export { attention, attentionBackward, MAX_HEAD_DIM } from "./attention.ts";
export { type AttentionStep, prepareAttention, type PreparedAttention } from "./prepared.ts";
export type {
  AttentionOptions,
  AttentionResult,
  BackendInfo,
  BackendName,
  BlockTable,
  Computed,
  ComputedBy,
  GpuAttentionResult,
  GpuGradients,
  GpuInfo,
  GpuOutputs,
  GpuSavedForBackward,
  Gradients,
  SavedForBackward,
} from "./types.ts";
export { backendInfo, type BackendInfoOptions } from "./backends.ts";
export { mergeAttention } from "./merge.ts";
export { type FlashMask, flashMask, type MaskDims } from "./masks/flashmask.ts";
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
  type PrefixDocument,
  prefixLmCausal,
  prefixLmDocument,
  qkSparse,
  type QuestionGroup,
  randomEviction,
  shareQuestion,
  slidingWindow,
  stack,
  type WindowSize,
} from "./masks/builders.ts";
export { maskPicture, type PictureOptions, type SliceOptions, toDense } from "./masks/dense.ts";
export { type BlockMask, blockMask } from "./masks/block_mask.ts";
export type { Dropout } from "./masks/dropout.ts";
export {
  fromGpu,
  gpuDevice,
  gpuInfo,
  type GpuTuneCandidate,
  type GpuTuneEntry,
  type GpuTuneOptions,
  type GpuTunePass,
  type GpuTuneReport,
  readGpuArray,
  toGpu,
  tuneGpu,
  useGpuDevice,
} from "./gpu/mod.ts";
export { setWasmModule } from "./wasm/_runtime.ts";
