/**
 * GPU-resident tensors for the WebGPU backend: move tensors to and from the library's device,
 * so that a model can chain attention calls without read-backs (in Deno each read-back waits for
 * the GPU to go idle: 12.6 ms a call at the smallest shape on the H200, docs/BENCHMARKS.md).
 *
 * @example Keep q, k, v on the GPU across forward and backward
 * ```ts
 * import { attention, attentionBackward, fromGpu, gpuInfo, tensor, toGpu } from "../mod.ts";
 *
 * if (await gpuInfo()) {
 *   const rand = () => tensor(Float32Array.from({ length: 64 }, Math.random), [1, 8, 1, 8]);
 *   const [q, k, v, dOut] = await Promise.all([rand(), rand(), rand(), rand()].map(toGpu));
 *   const { out, lse } = await attention(q, k, v, { causal: true });
 *   const { dq } = await attentionBackward({ q, k, v, out, lse, dOut }, { causal: true });
 *   console.log((await fromGpu(out)).shape, (await fromGpu(dq)).shape);
 * }
 * ```
 *
 * @module
 */

import { checkGpuArray, checkTensor } from "../_problem.ts";
import type { GpuArray, GpuTensor, Tensor } from "../tensor.ts";
import type { GpuInfo } from "../types.ts";
import { checkGpuBuffers, createBuffer, upload } from "./buffers.ts";
import { mapRead, READ_BACK_USAGE, requireGpu } from "./dispatch.ts";
import { adapterInfo, gpuContext, unlessLost } from "./device.ts";
export { useGpuDevice } from "./device.ts";
export {
  type GpuTuneCandidate,
  type GpuTuneEntry,
  type GpuTuneOptions,
  type GpuTunePass,
  type GpuTuneReport,
  tuneGpu,
} from "./tune.ts";

export type { GpuArray, GpuInfo };

/**
 * The adapter the WebGPU backend uses, or undefined when there is none.
 *
 * @example
 * ```ts
 * import { gpuInfo } from "../mod.ts";
 *
 * console.log((await gpuInfo())?.name ?? "no WebGPU adapter");
 * ```
 */
export async function gpuInfo(): Promise<GpuInfo | undefined> {
  const ctx = await gpuContext().catch(() => undefined);
  return ctx && adapterInfo(ctx);
}

/**
 * The GPUDevice the WebGPU backend computes on (create your own buffers on it), or undefined.
 *
 * @example
 * ```ts
 * import { gpuDevice } from "../mod.ts";
 *
 * const device = await gpuDevice();
 * console.log(device ? "have a device" : "no WebGPU");
 * ```
 */
export async function gpuDevice(): Promise<GPUDevice | undefined> {
  return (await gpuContext().catch(() => undefined))?.device;
}

/**
 * Uploads a host tensor to a new storage buffer on the library's device.
 *
 * @throws {Error} when there is no WebGPU adapter.
 * @example
 * ```ts
 * import { fromGpu, gpuInfo, tensor, toGpu } from "../mod.ts";
 * import assert from "node:assert/strict";
 *
 * if (await gpuInfo()) {
 *   const t = tensor(new Float32Array([1, 2, 3, 4]), [1, 2, 1, 2]);
 *   assert.deepEqual((await fromGpu(await toGpu(t))).data, t.data);
 * }
 * ```
 */
export async function toGpu(t: Tensor): Promise<GpuTensor> {
  checkTensor(t, "t");
  const ctx = await requireGpu();
  if (t.dtype === "f16" && !ctx.f16) {
    throw new TypeError("this adapter has no shader-f16: upload f16 data as f32 (fromF16)");
  }
  return { buffer: upload(ctx, (t as Tensor).data, "tensor"), shape: t.shape, dtype: t.dtype };
}

/**
 * Reads a GPU tensor back into a host tensor.
 *
 * @example
 * ```ts
 * import { attention, fromGpu, gpuInfo, tensor, toGpu } from "../mod.ts";
 *
 * if (await gpuInfo()) {
 *   const x = await toGpu(tensor(Float32Array.from({ length: 16 }, Math.random), [1, 4, 1, 4]));
 *   const { out } = await attention(x, x, x);
 *   console.log((await fromGpu(out)).data);
 * }
 * ```
 */
export async function fromGpu(t: GpuTensor): Promise<Tensor> {
  checkTensor(t, "t");
  const n = t.shape[0] * t.shape[1] * t.shape[2] * t.shape[3];
  const bytes = await readBuffer(t.buffer, t.offset ?? 0, n * (t.dtype === "f16" ? 2 : 4), "t");
  return {
    data: t.dtype === "f16" ? new Uint16Array(bytes) : new Float32Array(bytes),
    shape: t.shape,
    dtype: t.dtype,
  };
}

/**
 * Reads a GPU float32 array (such as the lse of a GPU-resident forward pass) back.
 *
 * @example
 * ```ts
 * import { attention, gpuInfo, readGpuArray, tensor, toGpu } from "../mod.ts";
 *
 * if (await gpuInfo()) {
 *   const x = await toGpu(tensor(Float32Array.from({ length: 16 }, Math.random), [1, 4, 1, 4]));
 *   const { lse } = await attention(x, x, x, { causal: true });
 *   console.log(await readGpuArray(lse));
 * }
 * ```
 */
export async function readGpuArray(a: GpuArray): Promise<Float32Array> {
  checkGpuArray(a, "a");
  return new Float32Array(await readBuffer(a.buffer, a.offset ?? 0, a.length * 4, "a"));
}

async function readBuffer(
  buffer: GPUBuffer,
  offset: number,
  bytes: number,
  name: string,
): Promise<ArrayBuffer> {
  const ctx = await requireGpu();
  await checkGpuBuffers(ctx, [[name, buffer]]);
  const size = Math.ceil(bytes / 4) * 4;
  const staging = createBuffer(ctx, Math.max(4, size), READ_BACK_USAGE, "read-back");
  try {
    ctx.device.pushErrorScope("validation");
    let scope;
    try {
      const enc = ctx.device.createCommandEncoder();
      if (size > 0) enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
      ctx.device.queue.submit([enc.finish()]);
    } finally {
      scope = ctx.device.popErrorScope(); // popped before any await (concurrent calls)
    }
    const err = await unlessLost(ctx, scope, "a read-back");
    if (err) throw new Error(`WebGPU rejected the read-back of ${name}: ${err.message}`);
    return await mapRead(ctx, staging, `the read-back of ${name}`, bytes);
  } finally {
    staging.destroy();
  }
}
