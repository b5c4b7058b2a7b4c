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
 * @module
 */

export {
  type DType,
  fromF16,
  type Shape4,
  type Tensor,
  tensor,
  toF16,
  toFloat32,
} from "./tensor.ts";
export {
  attention,
  attentionBackward,
  type AttentionOptions,
  type AttentionResult,
  type BackendName,
  type GpuAttentionResult,
  type GpuGradients,
  type GpuSavedForBackward,
  type Gradients,
  MAX_HEAD_DIM,
  type SavedForBackward,
} from "./attention.ts";
export * from "./masks/mod.ts";
export { mergeAttention } from "./merge.ts";
export {
  fromGpu,
  type GpuArray,
  gpuDevice,
  type GpuInfo,
  gpuInfo,
  readGpuArray,
  toGpu,
} from "./gpu/mod.ts";
