/**
 * The GPU-resident tensors of a call, checked against the device before anything is encoded:
 * dtypes the device can store, offsets the device can bind, and the caller's output tensors
 * (shape, dtype, size, and no overlap with the inputs or each other).
 *
 * @module
 */

import type { GpuArray, GpuTensor, Shape4, Tensor } from "../tensor.ts";
import type { GpuOutputs } from "../types.ts";
import type { GpuContext } from "./device.ts";

/** A call's tensors by name. */
export type Named = [name: string, tensor: Tensor | GpuTensor | GpuArray | Float32Array][];

/** An output the caller may give: its name, and the shape (tensor) or length (array) it needs. */
export type OutputSpec = [name: keyof GpuOutputs, need: Shape4 | number];

function isGpu(t: unknown): t is GpuTensor | GpuArray {
  return typeof t === "object" && t !== null && "buffer" in t && !ArrayBuffer.isView(t) &&
    !("data" in t);
}

/** Bytes a GPU tensor or array covers. */
function extent(t: GpuTensor | GpuArray): number {
  if ("shape" in t) {
    const [a, b, c, d] = t.shape;
    return a * b * c * d * (t.dtype === "f16" ? 2 : 4);
  }
  return t.length * 4;
}

/**
 * Checks the GPU-resident inputs of a call on `ctx`: an f16 tensor needs a device with
 * shader-f16, and every offset the device's minStorageBufferOffsetAlignment.
 *
 * @throws {TypeError} naming the tensor and the feature to request.
 * @throws {RangeError} naming the tensor, its offset and the alignment.
 */
export function checkResident(ctx: GpuContext, named: Named): void {
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  for (const [name, t] of named) {
    if (!isGpu(t)) continue;
    if ("dtype" in t && t.dtype === "f16" && !ctx.f16) {
      throw new TypeError(
        `${name} is an f16 GpuTensor, but the GPU device has no "shader-f16" feature: request it ` +
          `(requestDevice({ requiredFeatures: ["shader-f16"] }), then useGpuDevice) or pass f32`,
      );
    }
    const offset = t.offset ?? 0;
    if (offset % align !== 0) {
      throw new RangeError(
        `${name}.offset is ${offset} bytes; the GPU device binds storage at multiples of ` +
          `${align} (minStorageBufferOffsetAlignment)`,
      );
    }
  }
}

/**
 * Checks the caller's output tensors of a call (`options.outputs`): only the names in `specs`,
 * each a GPU tensor of the needed shape and the device's storage type `dt` (or a float32 array
 * of the needed length), within its buffer, aligned, and overlapping neither an input nor another
 * output; nor in the buffer of an input named in `readWith` (read by a kernel that writes the
 * output: WebGPU does not let one dispatch bind a buffer both read-only and writable).
 */
export function checkOutputs(
  ctx: GpuContext,
  outputs: GpuOutputs | undefined,
  specs: OutputSpec[],
  dt: "f32" | "f16",
  inputs: Named,
  readWith: readonly string[],
): void {
  if (outputs === undefined) return;
  if (typeof outputs !== "object" || outputs === null) {
    throw new TypeError("options.outputs must be an object of GPU tensors");
  }
  const allowed = specs.map(([n]) => n);
  for (const key of Object.keys(outputs)) {
    if (!allowed.includes(key as keyof GpuOutputs)) {
      throw new TypeError(
        `options.outputs.${key} is not an output of this call; it takes ${allowed.join(", ")}`,
      );
    }
  }
  const given: [string, GpuTensor | GpuArray][] = [];
  for (const [name, need] of specs) {
    const t = outputs[name] as GpuTensor | GpuArray | undefined;
    if (t === undefined) continue;
    const field = `options.outputs.${name}`;
    if (!isGpu(t) || typeof GPUBuffer === "undefined" || !(t.buffer instanceof GPUBuffer)) {
      const want = typeof need === "number" ? "{ buffer, length }" : "{ buffer, shape, dtype }";
      throw new TypeError(`${field} must be a GPU tensor ${want} with a GPUBuffer`);
    }
    if (typeof need === "number") {
      if ("shape" in t || t.length !== need) {
        throw new RangeError(
          `${field} must be a float32 GpuArray of length ${need}, got ${
            "length" in t ? t.length : "a tensor"
          }`,
        );
      }
    } else {
      const gt = t as GpuTensor;
      if (!Array.isArray(gt.shape) || gt.shape.some((x, i) => x !== need[i])) {
        throw new RangeError(`${field}.shape must be [${need}], got [${gt.shape}]`);
      }
      if (gt.dtype !== dt) {
        throw new TypeError(
          `${field}.dtype must be "${dt}" (the device's storage type), got ${
            JSON.stringify(gt.dtype)
          }`,
        );
      }
    }
    const offset = t.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError(`${field}.offset must be a non-negative integer, got ${offset}`);
    }
    if (t.buffer.size < offset + extent(t)) {
      throw new RangeError(
        `${field}.buffer.size is ${t.buffer.size} bytes; it needs ${offset + extent(t)}`,
      );
    }
    given.push([field, t]);
  }
  checkResident(ctx, given as Named);
  // no output may overlap an input or another output
  const all = [...inputs.filter(([, t]) => isGpu(t)), ...given] as [string, GpuTensor | GpuArray][];
  for (let i = 0; i < given.length; i++) {
    const [name, t] = given[i];
    const a0 = t.offset ?? 0, a1 = a0 + extent(t);
    for (const [other, u] of all) {
      if (u === t || u.buffer !== t.buffer) continue;
      const b0 = u.offset ?? 0, b1 = b0 + extent(u);
      if (a0 < b1 && b0 < a1) {
        throw new RangeError(
          `${name} overlaps ${other} (bytes ${a0}–${a1} and ${b0}–${b1} of one buffer); ` +
            "results must go to memory the call does not read",
        );
      }
      if (readWith.includes(other)) {
        throw new RangeError(
          `${name} is in the GPUBuffer of ${other}, which the kernel writing it reads; WebGPU ` +
            "cannot bind one buffer both read-only and writable in a dispatch: give the " +
            "results a buffer of their own",
        );
      }
    }
  }
}

/** The GPU buffers of a call's tensors with their names, for the device check. */
export function gpuBuffers(named: Named): [string, GPUBuffer][] {
  return named.filter(([, t]) => isGpu(t)).map(([n, t]) => [n, (t as GpuTensor).buffer]);
}
