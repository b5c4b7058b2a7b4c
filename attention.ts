/**
 * Exact scaled-dot-product attention, forward and backward, with FlashMask masks: the public
 * entry points, input validation, and dispatch to a backend.
 *
 * Layout: q is `[batch, Nq, Hq, d]`, k and v are `[batch, Nk, Hk, d]`, Hq a multiple of Hk
 * (GQA/MQA: query head h uses key head `floor(h / (Hq / Hk))`). The output has q's shape;
 * `lse` (natural-log log-sum-exp of the scaled scores) is `[batch, Hq, Nq]`.
 *
 * Causal alignment is bottom-right (FlashAttention >= 2.1): query i sees key j iff
 * `j <= i + (Nk - Nq)`. With Nq = 2 and Nk = 5 (1 = visible):
 *
 * ```
 *            key 0 1 2 3 4
 *   query 0      1 1 1 1 0
 *   query 1      1 1 1 1 1
 * ```
 *
 * A query row that sees no key gets output 0, lse = -Infinity and zero gradients.
 *
 * @module
 */

import {
  type Backend,
  checkFinite,
  checkProblem,
  checkTensor,
  MAX_HEAD_DIM,
  missingFeature,
  type Problem,
} from "./_problem.ts";
import type { FlashMask } from "./masks/flashmask.ts";
import type { BlockMask } from "./masks/block_mask.ts";
import type { WindowSize } from "./masks/builders.ts";
import type { Dropout } from "./masks/dropout.ts";
import { type GpuTensor, isGpuTensor, type Tensor } from "./tensor.ts";
import * as tiled from "./tiled.ts";
import { type GpuArray, gpuBackend, gpuBackward, gpuForward } from "./gpu/backend.ts";
import { gpuContext } from "./gpu/device.ts";
import { wasmBackend } from "./wasm/backend.ts";

export { MAX_HEAD_DIM };

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
  /** Reject NaN or Infinity in host inputs with a RangeError (default true). */
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
   * Block-sparse mask over (row block, column block) tiles, combined with the FlashMask: both
   * must allow a tile for it to be computed.
   */
  blockMask?: BlockMask;
  /**
   * Most threads the WASM backend may use (default `navigator.hardwareConcurrency`); small
   * problems use fewer. Results are bitwise the same for any thread count.
   */
  threads?: number;
}

/** Result of {@linkcode attention}. */
export interface AttentionResult {
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
export interface GpuAttentionResult {
  /** Attention output on the GPU, shape of q. */
  out: GpuTensor;
  /** Log-sum-exp `[batch, Hq, Nq]` (float32) on the GPU. */
  lse: GpuArray;
}

/** What {@linkcode attentionBackward} needs when some tensors live on the GPU. */
export interface GpuSavedForBackward {
  q: Tensor | GpuTensor;
  k: Tensor | GpuTensor;
  v: Tensor | GpuTensor;
  out: Tensor | GpuTensor;
  lse: Float32Array | GpuArray;
  dOut: Tensor | GpuTensor;
}

/** Gradients on the GPU. */
export interface GpuGradients {
  dq: GpuTensor;
  dk: GpuTensor;
  dv: GpuTensor;
}

/** Result of {@linkcode attentionBackward}: gradients with the shapes of q, k and v. */
export interface Gradients {
  /** Gradient with respect to q. */
  dq: Tensor;
  /** Gradient with respect to k (summed over the query heads that share each key head). */
  dk: Tensor;
  /** Gradient with respect to v (summed likewise). */
  dv: Tensor;
}

/**
 * Exact attention `softmax(q kᵀ · scale + mask) v`, computed the FlashAttention way: tiled,
 * online softmax, O(N) extra memory; tiles the mask hides entirely are skipped.
 *
 * @example Causal attention on a tiny random problem
 * ```ts
 * import { attention, tensor } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
 * const [b, n, h, d] = [1, 5, 2, 8];
 * const q = tensor(rand(b * n * h * d), [b, n, h, d]);
 * const k = tensor(rand(b * n * h * d), [b, n, h, d]);
 * const v = tensor(rand(b * n * h * d), [b, n, h, d]);
 * const { out, lse } = await attention(q, k, v, { causal: true, backend: "js" });
 * assert.deepEqual(out.shape, [1, 5, 2, 8]);
 * assert.equal(lse.length, b * h * n);
 * ```
 */
export function attention(
  q: Tensor,
  k: Tensor | GpuTensor,
  v: Tensor | GpuTensor,
  options?: AttentionOptions,
): Promise<AttentionResult>;
/** Attention on GPU-resident inputs (WebGPU backend): the results stay on the GPU. */
export function attention(
  q: GpuTensor,
  k: GpuTensor | Tensor,
  v: GpuTensor | Tensor,
  options?: AttentionOptions,
): Promise<GpuAttentionResult>;
export async function attention(
  q: Tensor | GpuTensor,
  k: Tensor | GpuTensor,
  v: Tensor | GpuTensor,
  options: AttentionOptions = {},
): Promise<AttentionResult | GpuAttentionResult> {
  const p = checkProblem({ q, k, v }, options);
  const named: Named[] = [["q", q], ["k", k], ["v", v]];
  if (isGpuTensor(q) || isGpuTensor(k) || isGpuTensor(v)) {
    checkHostFinite(p, named);
    requireWebGpu(options);
    checkFeatures(gpuBackend, p);
    return await gpuForward(p, q, k, v, isGpuTensor(q));
  }
  return await run(options, p, named, (b) => b.forward(p, q, k as Tensor, v as Tensor));
}

/**
 * Gradients of attention by recomputation from the saved log-sum-exp (FlashAttention-2
 * backward): `D = rowsum(dOut ∘ out)`, `P = exp(s·scale − lse)`, `dS = P ∘ (dP − D)`.
 * Pass the same options as to the forward call.
 *
 * @example
 * ```ts
 * import { attention, attentionBackward, tensor } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
 * const shape = [1, 4, 1, 8] as const;
 * const [q, k, v, dOut] = [0, 1, 2, 3].map(() => tensor(rand(32), shape));
 * const { out, lse } = await attention(q, k, v, { backend: "js" });
 * const { dq, dk, dv } = await attentionBackward({ q, k, v, out, lse, dOut }, { backend: "js" });
 * assert.deepEqual([dq.shape, dk.shape, dv.shape], [shape, shape, shape]);
 * ```
 */
export function attentionBackward(
  saved: SavedForBackward,
  options?: AttentionOptions,
): Promise<Gradients>;
/** Gradients of attention on GPU-resident tensors (WebGPU backend): they stay on the GPU. */
export function attentionBackward(
  saved: GpuSavedForBackward,
  options?: AttentionOptions,
): Promise<GpuGradients>;
export async function attentionBackward(
  saved: SavedForBackward | GpuSavedForBackward,
  options: AttentionOptions = {},
): Promise<Gradients | GpuGradients> {
  if (typeof saved !== "object" || saved === null) {
    throw new TypeError("attentionBackward: saved must be an object { q, k, v, out, lse, dOut }");
  }
  const p = checkProblem(saved, options);
  const { q, out, lse, dOut } = saved;
  for (const [name, t] of [["out", out], ["dOut", dOut]] as const) {
    checkTensor(t, name);
    if (t.dtype !== q.dtype) {
      throw new TypeError(`${name}.dtype is ${t.dtype} but q.dtype is ${q.dtype}`);
    }
    for (let i = 0; i < 4; i++) {
      if (t.shape[i] !== q.shape[i]) {
        throw new RangeError(`${name}.shape [${t.shape}] must equal q.shape [${q.shape}]`);
      }
    }
  }
  const lseLength = p.batch * p.heads * p.nq;
  if (isGpuArray(lse)) {
    if (lse.length !== lseLength || lse.buffer.size < lseLength * 4) {
      throw new RangeError(`lse.length is ${lse.length}; expected batch·Hq·Nq = ${lseLength}`);
    }
  } else {
    if (!(lse instanceof Float32Array)) throw new TypeError("lse must be a Float32Array");
    if (lse.length !== lseLength) {
      throw new RangeError(`lse.length is ${lse.length}; expected batch·Hq·Nq = ${lseLength}`);
    }
  }
  const { k, v } = saved;
  const named: Named[] = [["q", q], ["k", k], ["v", v], ["out", out], ["dOut", dOut]];
  if (p.checkFinite && lse instanceof Float32Array) {
    for (let i = 0; i < lse.length; i++) {
      if (Number.isNaN(lse[i]) || lse[i] === Infinity) {
        throw new RangeError(`lse[${i}] is ${lse[i]}; only finite values or -Infinity are valid`);
      }
    }
  }
  if ([q, k, v, out, dOut].some(isGpuTensor) || isGpuArray(lse)) {
    checkHostFinite(p, named);
    requireWebGpu(options);
    checkFeatures(gpuBackend, p);
    return await gpuBackward(p, saved, isGpuTensor(q));
  }
  return await run(options, p, named, (b) => b.backward(p, saved as SavedForBackward));
}

const jsBackend: Backend = {
  name: "js",
  features: new Set(["softcap", "dropout", "blockMask"]),
  forward: (p, q, k, v) => Promise.resolve(tiled.forward(p, q, k, v)),
  backward: (p, s) => Promise.resolve(tiled.backward(p, s)),
};

/** Throws if backend `b` lacks an option the problem uses. */
function checkFeatures(b: Backend, p: Problem): void {
  const f = missingFeature(b, p);
  if (f) {
    throw new TypeError(
      `backend "${b.name}" does not implement options.${f} yet; use backend "js" (or "auto")`,
    );
  }
}

function isGpuArray(x: unknown): x is GpuArray {
  return typeof x === "object" && x !== null && "buffer" in x && "length" in x &&
    !ArrayBuffer.isView(x);
}

/** A call's input tensors by name, for error messages. */
type Named = [string, Tensor | GpuTensor];

/** Scans the host tensors for NaN and ±∞ (unless `checkFinite: false`). */
function checkHostFinite(p: Problem, tensors: Named[]) {
  if (!p.checkFinite) return;
  for (const [name, t] of tensors) if (!isGpuTensor(t)) checkFinite(t, name);
}

function requireWebGpu(options: AttentionOptions): void {
  const name = options.backend ?? "auto";
  if (name !== "auto" && name !== "webgpu") {
    throw new TypeError(`GPU-resident tensors need backend "webgpu" (or "auto"), not "${name}"`);
  }
}

let warnedFallback = false;

/**
 * Runs a call on the chosen backend. `auto` uses WebGPU when a hardware adapter exists (software
 * rasterisers such as llvmpipe are slower than WASM), else WASM; if the GPU fails during the call
 * (device lost, out of memory), it says so once and computes the call with WASM.
 */
async function run<T>(
  options: AttentionOptions,
  p: Problem,
  tensors: Named[],
  compute: (b: Backend) => Promise<T>,
): Promise<T> {
  // a backend that checks finiteness itself does it on its own copies of the inputs (faster)
  const call = (b: Backend) => {
    if (!b.checksFinite) checkHostFinite(p, tensors);
    return compute(b);
  };
  const name = options.backend ?? "auto";
  if (name !== "auto") {
    const b = { js: jsBackend, wasm: wasmBackend, webgpu: gpuBackend }[name];
    checkFeatures(b, p);
    return await call(b);
  }
  // auto: the fastest backend that implements every option used
  const cpu = missingFeature(wasmBackend, p) ? jsBackend : wasmBackend;
  const ctx = await gpuContext().catch(() => undefined);
  if (!ctx || ctx.software || missingFeature(gpuBackend, p)) return await call(cpu);
  try {
    return await call(gpuBackend);
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) throw e;
    if (!warnedFallback) {
      warnedFallback = true;
      console.warn(
        `attention: WebGPU failed (${(e as Error).message}); computing with ${cpu.name} instead`,
      );
    }
    return await call(cpu);
  }
}
