/**
 * Prepared attention: a forward call on GPU-resident tensors that is validated, checked against
 * the device and compiled once, then run once per step. A decoding loop's layer changes only how
 * many keys of its cache are valid between steps; its prepared call then costs one step's mask
 * schedule (found in a cache), its uniform slot and the encoding: no option, tensor or buffer
 * is checked again, and no kernel is looked up.
 *
 * Everything `attention` checks is checked by {@linkcode prepareAttention}; a step checks its
 * own fields (`kvLength` as `options.kvLength` would be). What the prepared call holds is fixed:
 * its tensors' buffers and offsets (their contents are the caller's to change: the queue orders
 * the caller's writes before the steps submitted after them), its options, its outputs and its
 * GPU device: after that device is lost, every step fails with the device-lost Error; prepare the
 * call again on the device that replaces it.
 *
 * @module
 */

import { checkProblem } from "./_problem.ts";
import { withKvLength } from "./_mask_terms.ts";
import { checkKeys } from "./_options.ts";
import type { AttentionOptions, GpuAttentionResult, Problem } from "./types.ts";
import { type GpuTensor, isGpuTensor } from "./tensor.ts";
import { gpuBackend, type GpuForwardResult, prepareGpuForward } from "./gpu/backend.ts";
import { checkFeatures, computedBy, requireWebGpu } from "./backends.ts";

/** One step of a prepared call. */
export interface AttentionStep {
  /**
   * The valid key length of each batch entry for this step, as `options.kvLength` (it replaces
   * the prepared one; undefined: the prepared options' mask).
   */
  kvLength?: ArrayLike<number>;
  /** Record the step into this command encoder of the caller's, who submits it. */
  encoder?: GPUCommandEncoder;
}

/** The fields of an {@linkcode AttentionStep}. */
const STEP_FIELDS = ["kvLength", "encoder"] as const satisfies readonly (keyof AttentionStep)[];

/** A forward attention call prepared once and run once per step ({@linkcode prepareAttention}). */
export interface PreparedAttention {
  /** The backend that runs it: always `"webgpu"`. */
  readonly backend: "webgpu";
  /** The GPU adapter, e.g. "NVIDIA H200". */
  readonly adapter?: string;
  /**
   * Encodes one step and submits it (or records it into `step.encoder`); resolves once it is
   * submitted or recorded, without waiting for the GPU. Every step writes the same outputs: the
   * caller's `options.outputs`, else two GPU tensors the first step creates.
   */
  run(step?: AttentionStep): Promise<GpuAttentionResult>;
  /** Destroys the outputs the call created (not the caller's); a later step creates new ones. */
  destroy(): void;
}

/**
 * Prepares attention on GPU-resident `q`, `k`, `v` with `options` (as {@linkcode attention}'s,
 * except `encoder`, which each step takes) for steps that differ only in `kvLength`: the layers
 * of a decoding loop, or any call repeated on the same buffers.
 *
 * @example One layer of a decoding loop: prepared once, run a step per token
 * ```ts
 * import { fromGpu, gpuDevice, prepareAttention, tensor, toGpu } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const device = await gpuDevice(); // undefined where WebGPU has no adapter
 * if (device) {
 *   const [heads, kvHeads, d, cache] = [4, 2, 16, 600];
 *   const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
 *   const q = await toGpu(tensor(rand(heads * d), [1, 1, heads, d]));
 *   const k = await toGpu(tensor(rand(cache * kvHeads * d), [1, cache, kvHeads, d]));
 *   const v = await toGpu(tensor(rand(cache * kvHeads * d), [1, cache, kvHeads, d]));
 *   const layer = await prepareAttention(q, k, v, { kvLength: [500] });
 *   for (let t = 500; t < 510; t++) {
 *     // a model would write token t's keys and values into k and v here
 *     const encoder = device.createCommandEncoder();
 *     await layer.run({ kvLength: [t + 1], encoder }); // recorded: the caller submits
 *     device.queue.submit([encoder.finish()]);
 *   }
 *   const { out } = await layer.run({ kvLength: [510] }); // submitted; nothing waits
 *   assert.deepEqual((await fromGpu(out)).shape, [1, 1, heads, d]); // the one read-back
 *   layer.destroy();
 *   for (const t of [q, k, v]) t.buffer.destroy();
 * }
 * ```
 *
 * @throws {TypeError | RangeError} as `attention` does, and when a tensor is on the host
 * (prepared calls are for GPU-resident tensors: use `attention` for host arrays).
 */
export async function prepareAttention(
  q: GpuTensor,
  k: GpuTensor,
  v: GpuTensor,
  options: AttentionOptions = {},
): Promise<PreparedAttention> {
  const p = checkProblem({ q, k, v }, options);
  const host = ([["q", q], ["k", k], ["v", v]] as const).filter(([, t]) => !isGpuTensor(t));
  if (host.length) {
    throw new TypeError(
      `prepareAttention takes GPU-resident tensors, but ${host.map(([n]) => n).join(", ")} ${
        host.length > 1 ? "are" : "is"
      } on the host (move them with toGpu, or call attention)`,
    );
  }
  if (options.encoder !== undefined) {
    throw new TypeError(
      "options.encoder is given to each step of a prepared call: run({ encoder })",
    );
  }
  requireWebGpu(options);
  checkFeatures(gpuBackend, p);
  const call = await prepareGpuForward(p, q, k, v, { resident: true, outputs: options.outputs });
  const { adapter } = await computedBy("webgpu");
  const kept = { ...options };
  let result: GpuAttentionResult | undefined;
  return {
    backend: "webgpu",
    adapter,
    async run(step: AttentionStep = {}) {
      const problem = stepProblem(p, kept, step);
      const r = await call.run(problem, step.encoder) as GpuForwardResult;
      if (result?.out !== r.out || result.lse !== r.lse) {
        result = { out: r.out, lse: r.lse, backend: "webgpu", adapter };
      }
      return result;
    },
    destroy: () => call.destroy(),
  };
}

/** The problem of one step: the prepared one, with the step's key lengths. */
function stepProblem(p: Problem, options: AttentionOptions, step: AttentionStep): Problem {
  if (typeof step !== "object" || step === null) {
    throw new TypeError(`step must be an object { kvLength?, encoder? }, got ${String(step)}`);
  }
  checkKeys(step, STEP_FIELDS, "step");
  const enc = step.encoder;
  if (enc !== undefined && !(enc instanceof GPUCommandEncoder)) {
    throw new TypeError("step.encoder must be a GPUCommandEncoder");
  }
  return step.kvLength === undefined ? p : withKvLength(p, options, step.kvLength);
}
