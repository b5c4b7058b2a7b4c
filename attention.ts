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
 * A query row that sees no key gets output 0, lse = -Infinity and zero gradients. With
 * `checkFinite: false`, a NaN input makes NaN every output that depends on it (see
 * {@linkcode AttentionOptions.checkFinite}).
 *
 * @module
 */

import { checkFinite, checkOffset, checkProblem, checkTensor } from "./_problem.ts";
import type {
  AttentionOptions,
  AttentionResult,
  Backend,
  ComputedBy,
  GpuAttentionResult,
  GpuGradients,
  GpuSavedForBackward,
  Gradients,
  Problem,
  SavedForBackward,
} from "./types.ts";
import { type GpuArray, type GpuTensor, isGpuTensor, type Tensor } from "./tensor.ts";
import { gpuBackend, gpuBackward, gpuForward, type GpuIo } from "./gpu/backend.ts";
import { checkFeatures, computedBy, pickBackend, requireWebGpu } from "./backends.ts";

export type {
  AttentionOptions,
  AttentionResult,
  BackendName,
  GpuAttentionResult,
  GpuGradients,
  GpuSavedForBackward,
  Gradients,
  SavedForBackward,
} from "./types.ts";
export { MAX_HEAD_DIM } from "./types.ts";

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
    return {
      ...await gpuForward(p, q, k, v, gpuIo(options, named)),
      ...await computedBy("webgpu"),
    };
  }
  refuseGpuOptions(options);
  return await run(
    options,
    p,
    named,
    (b) => b.forward(p, q, k as Tensor, v as Tensor),
  ) as AttentionResult;
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
  if ("shape" in saved && ("data" in saved || "buffer" in saved)) {
    throw new TypeError(
      "attentionBackward takes the saved tensors as one object, not positionally: " +
        "attentionBackward({ q, k, v, out, lse, dOut }, options), with out and lse from attention",
    );
  }
  if (options?.blockTable !== undefined) {
    throw new TypeError(
      "options.blockTable: attention over a paged KV cache is forward only (as " +
        "flash_attn_with_kvcache); train on contiguous k and v",
    );
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
    if (lse.length !== lseLength) {
      throw new RangeError(`lse.length is ${lse.length}; expected batch·Hq·Nq = ${lseLength}`);
    }
    const end = checkOffset(lse.offset, "lse") + lseLength * 4;
    if (lse.buffer.size < end) {
      throw new RangeError(`lse.buffer.size is ${lse.buffer.size} bytes; it needs ${end}`);
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
    if (options.encoder !== undefined && !isGpuArray(lse)) {
      throw new TypeError("options.encoder needs GPU-resident tensors, but lse is on the host");
    }
    return { ...await gpuBackward(p, saved, gpuIo(options, named)), ...await computedBy("webgpu") };
  }
  refuseGpuOptions(options);
  return await run(options, p, named, (b) => b.backward(p, saved as SavedForBackward)) as Gradients;
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
  for (const [name, t] of tensors) {
    // the k and v of a paged cache are pages
    const outer = p.pages && (name === "k" || name === "v") ? "page" : "batch";
    if (!isGpuTensor(t)) checkFinite(t, name, outer);
  }
}

/**
 * How a GPU call hands back its results: resident when q is on the GPU; `outputs` and `encoder`
 * need GPU-resident inputs (q for outputs, every tensor for an encoder).
 */
function gpuIo(options: AttentionOptions, tensors: Named[]): GpuIo {
  const resident = isGpuTensor(tensors[0][1]);
  for (const key of ["outputs", "encoder"] as const) {
    if (options[key] === undefined) continue;
    const host = key === "outputs" ? (resident ? [] : ["q"]) : tensors
      .filter(([, t]) => !isGpuTensor(t)).map(([n]) => n);
    if (host.length) {
      throw new TypeError(
        `options.${key} needs GPU-resident tensors, but ${host.join(", ")} ${
          host.length > 1 ? "are" : "is"
        } on the host (move ${host.length > 1 ? "them" : "it"} with toGpu)`,
      );
    }
  }
  return { resident, outputs: options.outputs, encoder: options.encoder };
}

/** The options that only GPU-resident calls take are refused by the host path. */
function refuseGpuOptions(options: AttentionOptions): void {
  for (const key of ["outputs", "encoder"] as const) {
    if (options[key] !== undefined) {
      throw new TypeError(
        `options.${key} needs GPU-resident tensors (toGpu) and backend "webgpu" or "auto"`,
      );
    }
  }
}

let warnedFallback = false;

/**
 * Runs a call on the chosen backend. `auto` uses WebGPU when a hardware adapter exists (software
 * rasterisers such as llvmpipe are slower than WASM), else WASM; if the GPU fails during the call
 * (device lost, out of memory), it says so once and computes the call with WASM.
 */
async function run<T extends object>(
  options: AttentionOptions,
  p: Problem,
  tensors: Named[],
  compute: (b: Backend) => Promise<T>,
): Promise<T & ComputedBy> {
  // a backend that checks finiteness itself does it on its own copies of the inputs (faster)
  const call = async (b: Backend) => {
    if (!b.checksFinite) checkHostFinite(p, tensors);
    const r = await compute(b);
    return { ...r, ...await computedBy(b.name as ComputedBy["backend"]) };
  };
  const name = options.backend ?? "auto";
  const { backend, fallback } = await pickBackend(name, p);
  if (name !== "auto") checkFeatures(backend, p);
  if (!fallback) return await call(backend);
  try {
    return await call(backend);
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) throw e;
    if (!warnedFallback) {
      warnedFallback = true;
      console.warn(
        `attention: WebGPU failed (${
          (e as Error).message
        }); computing with ${fallback.name} instead`,
      );
    }
    return await call(fallback);
  }
}
