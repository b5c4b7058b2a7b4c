/**
 * The types every layer shares: the options and results of the public API, and the contract
 * between the dispatcher and a backend ({@linkcode Problem} in, results out). A leaf module: it
 * imports only types from `tensor.ts` and `masks/`, so backends and the API can both depend on
 * it without importing each other.
 *
 * @module
 */

import type { FlashMask } from "./masks/flashmask.ts";
import type { BlockMask } from "./masks/block_mask.ts";
import type { WindowSize } from "./masks/builders.ts";
import type { Dropout } from "./masks/dropout.ts";
import type { Schedule } from "./masks/schedule.ts";
import type { DType, GpuArray, GpuTensor, Tensor } from "./tensor.ts";
import type { Alibi } from "./terms/alibi.ts";

/** Which implementation computes: `auto` picks WebGPU when a hardware adapter exists, else WASM. */
export type BackendName = "auto" | "webgpu" | "wasm" | "js";

/** Options of {@linkcode attention} and {@linkcode attentionBackward}. */
export interface AttentionOptions {
  /** Column-wise sparse mask; its batch must be 1 or `batch`, its heads 1, Hk or Hq. */
  mask?: FlashMask;
  /** Plain causal masking (bottom-right aligned) when no mask is given. */
  causal?: boolean;
  /** Score scale; default `1 / sqrt(headDim)`. */
  scale?: number;
  /**
   * `auto` (default): WebGPU when a hardware GPU adapter exists, else WASM. `wasm`:
   * AssemblyScript SIMD kernels on worker threads. `js` is the plain TypeScript tiled
   * implementation, the readable specification of the algorithm.
   */
  backend?: BackendName;
  /**
   * Reject NaN or ±Infinity in host inputs with a RangeError naming tensor and position, before
   * anything runs (default true; GPU tensors are never scanned). Without the check, a NaN is
   * never turned into a number, on every backend: every output that depends on it holds a NaN
   * (the `out` row and `lse` of a query that holds one or sees a key that does, the `out` row of
   * a query that sees a value that does, and the gradients these reach). Outputs that share a
   * tile with it may hold NaN too (tiles differ between backends). ±Infinity goes through IEEE
   * arithmetic unchecked; what it gives is not specified.
   */
  checkFinite?: boolean;
  /**
   * FlashAttention's local attention `[left, right]` (-1: unbounded), bottom-right aligned:
   * query i sees key j iff `i + Nk − Nq − left <= j <= i + Nk − Nq + right` (right capped at 0
   * when `causal`). Converted to a FlashMask, so tiles outside the window are skipped. With
   * `mask` it is an error (as in FlashMask): build the window into the mask instead.
   */
  windowSize?: WindowSize;
  /**
   * Packed variable-length sequences (`cu_seqlens` of `flash_attn_varlen_func`): with batch 1 and
   * Nq = Nk = `cuSeqlens[last]`, builds the document (causal: causal-document) mask, so packed
   * sequences cost no padding.
   */
  cuSeqlens?: ArrayLike<number>;
  /**
   * Valid keys per batch entry of a ragged KV cache (`cache_seqlens`): keys at or beyond
   * `kvLength[b]` are masked, and causal / window alignment is bottom-right against each entry's
   * own length.
   */
  kvLength?: ArrayLike<number>;
  /** Score cap: `s ← softcap · tanh(s · scale / softcap)` before the softmax. */
  softcap?: number;
  /**
   * Dropout on the attention probabilities, with a counter-based generator keyed by `seed` and
   * the element position: every backend drops the same elements; pass the same option to
   * {@linkcode attentionBackward}, which regenerates the mask.
   */
  dropout?: Dropout;
  /**
   * Learnable attention sinks (gpt-oss, FlashAttention 4, onnxruntime's `head_sink`): one logit
   * σ_h per query head (length Hq) that joins every softmax of its head and has no value
   * vector: `lse_i = log(exp(σ_h) + Σ_j exp(s_ij))`, `out_i = Σ_j exp(s_ij − lse_i) v_j`. A row
   * that sees no key gets out 0 and lse σ_h. {@linkcode attentionBackward} then also returns
   * `dsinks`. Dropout never drops the sink.
   */
  sinks?: Float32Array;
  /**
   * ALiBi (FlashAttention's `alibi_slopes`): a linear position bias added to each score after
   * the scale and the softcap, `s_ij += −slope · |i + Nk − Nq − j|`, bottom-right aligned like
   * causal (with `kvLength`, against each entry's own length). One slope per query head (length
   * Hq), or per batch entry and head (length batch·Hq, batch-major). No N² bias tensor is made;
   * the slopes get no gradient.
   */
  alibiSlopes?: Float32Array;
  /**
   * A paged KV cache (FlashAttention's `block_table`): k and v are pages of shape
   * `[numPages, pageSize, Hk, d]`, and batch entry b's keys are the pages
   * `data[b·blocksPerSequence + 0, 1, …]` in order, so Nk = blocksPerSequence · pageSize; masks,
   * `causal`, windows and `kvLength` (each entry's valid length) refer to these logical
   * positions. Any page size; every backend reads the pages through the table (WebGPU kernels
   * row by row; WASM in the one copy of the inputs into its memory). Results are bitwise those
   * of the same cache laid out contiguously. Forward only.
   */
  blockTable?: BlockTable;
  /**
   * Block-sparse mask over (row block, column block) tiles, combined with the FlashMask: both
   * must allow a tile for it to be computed.
   */
  blockMask?: BlockMask;
  /**
   * GPU-resident calls: write the results into these tensors of the caller's instead of new
   * buffers (preallocated activations; no buffer is created per call). `attention` takes `out`
   * and `lse`, `attentionBackward` `dq`, `dk`, `dv` (and `dsinks` with sinks); each is optional. They must not overlap
   * the inputs or each other.
   */
  outputs?: GpuOutputs;
  /**
   * GPU-resident calls: record the kernels into this command encoder of the caller's instead of
   * submitting them, so that a framework submits one command buffer per layer or step. The call
   * returns once recorded; the results are valid after the caller submits `encoder.finish()`.
   * Validation errors of the kernels surface at the caller's `finish()`/`submit()`. The inputs
   * must be GPU-resident.
   */
  encoder?: GPUCommandEncoder;
  /**
   * Most threads the WASM backend may use (default `navigator.hardwareConcurrency`); small
   * problems use fewer. Results are bitwise the same for any thread count.
   */
  threads?: number;
}

/** The page table of a paged KV cache (see `AttentionOptions.blockTable`). */
export interface BlockTable {
  /** Page indices, `[batch, blocksPerSequence]` row-major, each in `[0, numPages)`. */
  data: Int32Array;
  /** `[batch, blocksPerSequence]`. */
  shape: readonly [number, number];
}

/** Where GPU-resident results go (see `AttentionOptions.outputs`). */
export interface GpuOutputs {
  /** attention: the output, q's shape, the device's storage type. */
  out?: GpuTensor;
  /** attention: the log-sum-exp, batch·Hq·Nq float32. */
  lse?: GpuArray;
  /** attentionBackward: the gradient of q. */
  dq?: GpuTensor;
  /** attentionBackward: the gradient of k. */
  dk?: GpuTensor;
  /** attentionBackward: the gradient of v. */
  dv?: GpuTensor;
  /** attentionBackward with `sinks`: the sinks' gradient, Hq float32. */
  dsinks?: GpuArray;
}

/** Which backend computed a result, and for `webgpu` on which adapter. */
export interface ComputedBy {
  /** The backend that computed it (with `auto`, the one picked, or the one fallen back to). */
  backend: "js" | "wasm" | "webgpu";
  /** The GPU adapter (webgpu only), e.g. "NVIDIA H200". */
  adapter?: string;
}

/** What a backend returns: a result without {@linkcode ComputedBy}, which the API adds. */
export type Computed<T> = Omit<T, keyof ComputedBy>;

/** Result of {@linkcode attention}. */
export interface AttentionResult extends ComputedBy {
  /** Attention output, shape and dtype of q. */
  out: Tensor;
  /** Natural-log log-sum-exp of the scaled scores, `[batch, Hq, Nq]`; -Infinity for rows that see no key. */
  lse: Float32Array;
}

/** What {@linkcode attentionBackward} needs: the forward inputs and results, and dOut. */
export interface SavedForBackward {
  /** Queries `[batch, Nq, Hq, d]`. */
  q: Tensor;
  /** Keys `[batch, Nk, Hk, d]`. */
  k: Tensor;
  /** Values `[batch, Nk, Hk, d]`. */
  v: Tensor;
  /** Forward output. */
  out: Tensor;
  /** Forward log-sum-exp. */
  lse: Float32Array;
  /** Gradient of the loss with respect to `out`. */
  dOut: Tensor;
}

/** Result of {@linkcode attention} on GPU-resident inputs. */
export interface GpuAttentionResult extends ComputedBy {
  /** Attention output on the GPU, shape of q. */
  out: GpuTensor;
  /** Log-sum-exp `[batch, Hq, Nq]` (float32) on the GPU. */
  lse: GpuArray;
}

/** What {@linkcode attentionBackward} needs when some tensors live on the GPU. */
export interface GpuSavedForBackward {
  /** Queries `[batch, Nq, Hq, d]`. */
  q: Tensor | GpuTensor;
  /** Keys `[batch, Nk, Hk, d]`. */
  k: Tensor | GpuTensor;
  /** Values `[batch, Nk, Hk, d]`. */
  v: Tensor | GpuTensor;
  /** Forward output. */
  out: Tensor | GpuTensor;
  /** Forward log-sum-exp `[batch, Hq, Nq]`. */
  lse: Float32Array | GpuArray;
  /** Gradient of the loss with respect to `out`. */
  dOut: Tensor | GpuTensor;
}

/** Gradients on the GPU, with the shapes of q, k and v. */
export interface GpuGradients extends ComputedBy {
  /** Gradient with respect to q. */
  dq: GpuTensor;
  /** Gradient with respect to k (summed over the query heads that share each key head). */
  dk: GpuTensor;
  /** Gradient with respect to v (summed likewise). */
  dv: GpuTensor;
  /** With `options.sinks`: the gradient of each sink logit (Hq float32) on the GPU. */
  dsinks?: GpuArray;
}

/** Result of {@linkcode attentionBackward}: gradients with the shapes of q, k and v. */
export interface Gradients extends ComputedBy {
  /** Gradient with respect to q. */
  dq: Tensor;
  /** Gradient with respect to k (summed over the query heads that share each key head). */
  dk: Tensor;
  /** Gradient with respect to v (summed likewise). */
  dv: Tensor;
  /**
   * With `options.sinks`: the gradient of each sink logit,
   * `dσ_h = −Σ_{b,i} exp(σ_h − lse_{b,h,i})·D_{b,h,i}`, `D = rowsum(dOut ∘ out)`.
   */
  dsinks?: Float32Array;
}

/** Largest head dimension any backend supports. */
export const MAX_HEAD_DIM = 256;

/** A validated attention call: sizes, scale, the mask in force, and its schedules. */
export interface Problem {
  readonly batch: number;
  readonly nq: number;
  readonly nk: number;
  /** Query heads Hq. */
  readonly heads: number;
  /** Key/value heads Hk. */
  readonly kvHeads: number;
  readonly headDim: number;
  readonly scale: number;
  readonly dtype: DType;
  /** The mask in force: the user's, or a plain full / causal mask. */
  readonly mask: FlashMask;
  /** The block schedule of the mask for a tile size (cached on the mask). */
  schedule(blockRows: number, blockCols: number): Schedule;
  /** Mask slice used by query head h of batch b. */
  slice(b: number, h: number): number;
  /** `options.threads`: most threads a backend may use (undefined: its default). */
  readonly threads?: number;
  /** `options.checkFinite` (default true): host inputs must hold no NaN or ±∞. */
  readonly checkFinite: boolean;
  /** Scores are capped as `softcap·tanh(s·scale / softcap)` (undefined: no cap). */
  readonly softcap?: number;
  /** Dropout on P (undefined when off or p = 0). */
  readonly dropout?: Dropout;
  /** One sink logit per query head (a copy of `options.sinks`; undefined without). */
  readonly sinks?: Float32Array;
  /**
   * ALiBi: a slope per (batch, query head), `[batch·Hq]`, and per batch entry the offset of its
   * diagonal, `kvLength[b] − Nq` (or `Nk − Nq`): s_ij += −slope·|i + offset − j|.
   */
  readonly alibi?: Alibi;
  /**
   * A paged KV cache: k and v hold pages of `pageSize` keys; logical key j of batch entry b is
   * row `table[b·perSequence + floor(j / pageSize)]·pageSize + j mod pageSize` of them.
   */
  readonly pages?: {
    readonly table: Int32Array;
    readonly perSequence: number;
    readonly pageSize: number;
  };
  /** The block-sparse mask, if any (already applied by `schedule`). */
  readonly blockMask?: BlockMask;
}

/** A backend: forward and backward on validated problems. */
export interface Backend {
  /** Its name, for messages. */
  readonly name: string;
  /** The options that need kernel support it implements (the others make it refuse the call). */
  readonly features: ReadonlySet<Feature>;
  /**
   * True when it checks the host tensors for NaN and ±∞ itself when `p.checkFinite` (with
   * {@linkcode notFinite}'s errors, before anything is computed); otherwise the API scans them
   * with {@linkcode checkFinite} before the call.
   */
  readonly checksFinite?: boolean;
  forward(p: Problem, q: Tensor, k: Tensor, v: Tensor): Promise<Computed<AttentionResult>>;
  backward(p: Problem, saved: SavedForBackward): Promise<Computed<Gradients>>;
  /** What it runs on here; rejects with the reason when it cannot run. */
  info(headDim: number): Promise<BackendInfo>;
}

/** What the library's WebGPU device offers. */
export interface GpuInfo {
  /** Adapter description, e.g. "NVIDIA H100 80GB HBM3". */
  name: string;
  /** binary16 storage (f16 tensors stay f16 on the GPU). */
  f16: boolean;
  /** Subgroup shuffles of at least 16 lanes. */
  subgroups: boolean;
  /** Timestamp queries. */
  timestamps: boolean;
  /** A software rasteriser: `backend: "auto"` prefers WASM. */
  software: boolean;
}

/** What computes a call: the backend, and what it runs on. */
export interface BackendInfo {
  /** The backend (for `auto`: the one it picks on this machine). */
  name: "webgpu" | "wasm" | "js";
  /** One line for people: the adapter and its features, or the WASM build and threads. */
  device: string;
  /** WebGPU: the adapter. */
  gpu?: GpuInfo;
  /** WASM: the relaxed-SIMD build, or the plain SIMD one. */
  simd?: "relaxed" | "plain";
  /** Most threads a call uses by default (`options.threads` overrides it). */
  threads: number;
  /** Query rows × keys of one tile of the forward pass at the head dimension asked for. */
  forwardTile: [rows: number, cols: number];
}

/** Options that need kernel support (the mask-like ones become FlashMasks and need none). */
export type Feature = "softcap" | "dropout" | "blockMask" | "sinks" | "alibiSlopes" | "blockTable";
