/**
 * Tensors: the host-side data type shared by every backend, and IEEE binary16 conversion.
 *
 * A {@linkcode Tensor} is a dense row-major array of shape `[batch, seqLen, heads, headDim]`
 * (the FlashAttention / FlashMask layout). `f32` tensors hold a `Float32Array`; `f16` tensors
 * hold IEEE binary16 bit patterns in a `Uint16Array`.
 *
 * @module
 */

/** Element type of a tensor: `"f32"` (Float32Array) or `"f16"` (binary16 bits in a Uint16Array). */
export type DType = "f32" | "f16";

/** Shape of an attention tensor: `[batch, seqLen, heads, headDim]`, row-major. */
export type Shape4 = readonly [number, number, number, number];

/**
 * A host tensor: a row-major array with shape `[batch, seqLen, heads, headDim]`.
 *
 * Build one with {@linkcode tensor}, which validates it.
 */
export interface Tensor {
  /** The elements, row-major; binary16 bit patterns when `dtype` is `"f16"`. */
  readonly data: Float32Array | Uint16Array;
  /** `[batch, seqLen, heads, headDim]`. */
  readonly shape: Shape4;
  /** Element type. */
  readonly dtype: DType;
}

/**
 * A tensor that lives in a WebGPU buffer (row-major, same layout as {@linkcode Tensor}), so
 * that calls on the WebGPU backend can be chained without read-backs. A plain
 * `{ buffer, shape, dtype }` object made by the caller will do: the buffer needs
 * `GPUBufferUsage.STORAGE` (and `COPY_SRC` to be read back), must belong to the device the
 * library computes on (`gpuDevice()`, or the one given to `useGpuDevice`), and holds the
 * elements from byte `offset` on.
 */
export interface GpuTensor {
  /** The data, row-major; binary16 when `dtype` is `"f16"`. */
  readonly buffer: GPUBuffer;
  /** `[batch, seqLen, heads, headDim]`. */
  readonly shape: Shape4;
  /** Element type. */
  readonly dtype: DType;
  /**
   * Byte offset of the first element in `buffer` (default 0): a multiple of the device's
   * `minStorageBufferOffsetAlignment` (256 on most devices), so that a tensor can be a slice of a
   * larger buffer (a KV cache, a packed QKV activation).
   */
  readonly offset?: number;
}

/** A float32 array that lives in a GPU buffer (the lse of a GPU-resident forward pass). */
export interface GpuArray {
  /** The data. */
  readonly buffer: GPUBuffer;
  /** Number of float32 elements. */
  readonly length: number;
  /** Byte offset of the first element (default 0), aligned as for {@linkcode GpuTensor}. */
  readonly offset?: number;
}

/** Whether `t` is a {@linkcode GpuTensor} (has a `buffer` instead of `data`). */
export function isGpuTensor(t: unknown): t is GpuTensor {
  return typeof t === "object" && t !== null && "buffer" in t && !("data" in t);
}

const SHAPE_NAMES = ["batch", "seqLen", "heads", "headDim"] as const;

/** The runtime's native binary16 array, where it has one (Deno 2.9, recent browsers). */
const Float16 = (globalThis as { Float16Array?: typeof Float16Array }).Float16Array;

/**
 * Creates a validated {@linkcode Tensor}.
 *
 * `data` may be a `Float32Array` (dtype `"f32"`), a `Uint16Array` of binary16 bit patterns
 * (dtype `"f16"`), or a plain array of numbers, which is converted to `dtype` (default `"f32"`;
 * values, not bit patterns). Typed arrays are used as they are, not copied.
 *
 * @throws {TypeError} if `data` is not one of the accepted types or does not match `dtype`.
 * @throws {RangeError} if the shape is not four positive integers or its product is not
 *   `data.length`.
 *
 * @example Make a tensor of shape [1, 2, 1, 3]
 * ```ts
 * import { tensor } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const t = tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [1, 2, 1, 3]);
 * assert.equal(t.dtype, "f32");
 * assert.throws(() => tensor(new Float32Array(5), [1, 2, 1, 3]), RangeError);
 * ```
 */
export function tensor(
  data: Float32Array | Float16Array | Uint16Array | readonly number[],
  shape: readonly number[],
  dtype?: DType,
): Tensor {
  if (dtype !== undefined && dtype !== "f32" && dtype !== "f16") {
    throw new TypeError(`tensor: dtype must be "f32" or "f16", got ${JSON.stringify(dtype)}`);
  }
  const s = checkShape(shape, "tensor: shape");
  let arr: Float32Array | Uint16Array;
  if (Float16 && data instanceof Float16) {
    // native binary16 (Deno 2.9, recent browsers): the same bits, viewed as a Uint16Array
    if (dtype === "f32") {
      throw new TypeError(
        'tensor: dtype "f32" needs a Float32Array, got a Float16Array (Float32Array.from(data) ' +
          'converts it, or leave the dtype out for "f16")',
      );
    }
    arr = new Uint16Array(data.buffer, data.byteOffset, data.length);
  } else if (data instanceof Float32Array) {
    if (dtype === "f16") {
      throw new TypeError(
        'tensor: dtype "f16" needs a Uint16Array of binary16 bits, got a Float32Array ' +
          "(convert it with toF16)",
      );
    }
    arr = data;
  } else if (data instanceof Uint16Array) {
    if (dtype !== "f16") {
      throw new TypeError(
        `tensor: a Uint16Array is taken as binary16 bits only with dtype "f16" ` +
          `(tensor(data, shape, "f16")), got dtype ${JSON.stringify(dtype)}; ` +
          "for numbers, pass a Float32Array",
      );
    }
    arr = data;
  } else if (Array.isArray(data)) {
    arr = dtype === "f16" ? toF16(data) : Float32Array.from(data);
  } else if (ArrayBuffer.isView(data)) {
    throw new TypeError(
      `tensor: data is a ${data.constructor.name}; pass a Float32Array (Float32Array.from(data) ` +
        'converts it), a Float16Array, or binary16 bits in a Uint16Array with dtype "f16"',
    );
  } else {
    throw new TypeError(
      "tensor: data must be a Float32Array, a Float16Array, a Uint16Array of binary16 bits " +
        'with dtype "f16", or an array of numbers',
    );
  }
  const n = s[0] * s[1] * s[2] * s[3];
  if (arr.length !== n) {
    throw new RangeError(
      `tensor: data.length is ${arr.length} but shape [${s.join(", ")}] needs ${n} elements`,
    );
  }
  return { data: arr, shape: s, dtype: arr instanceof Float32Array ? "f32" : "f16" };
}

/** Validates a 4-D shape of positive integers; `what` names it in errors. */
export function checkShape(shape: unknown, what: string): Shape4 {
  if (!Array.isArray(shape) || shape.length !== 4) {
    throw new RangeError(`${what} must have 4 entries [batch, seqLen, heads, headDim]`);
  }
  for (let i = 0; i < 4; i++) {
    const d = shape[i];
    if (!Number.isSafeInteger(d) || d < 1) {
      throw new RangeError(
        `${what}[${i}] (${SHAPE_NAMES[i]}) must be a positive integer, got ${d}`,
      );
    }
  }
  return Object.freeze([shape[0], shape[1], shape[2], shape[3]]) as Shape4;
}

// ---------------------------------------------------------------------------------------------
// binary16 conversion

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Rounds one number to binary16 (round to nearest, ties to even) and returns its bits. */
export function f16Bits(x: number): number {
  F32[0] = x;
  const b = U32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf, NaN
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00; // overflow
  if (e <= 0) { // subnormal or zero in binary16
    if (e < -10) return sign;
    const m24 = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = m24 & ((1 << shift) - 1);
    let m = m24 >>> shift;
    if (rem > half || (rem === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  const rem = mant & 0x1fff;
  let h = sign | (e << 10) | (mant >>> 13);
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // a carry rounds into the exponent
  return h;
}

let f16Table: Float32Array | undefined;

/** The value of binary16 bits `h`. */
export function f16Value(h: number): number {
  return (f16Table ??= buildF16Table())[h & 0xffff];
}

function buildF16Table(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0
      ? sign * m * 2 ** -24
      : e === 31
      ? (m !== 0 ? NaN : sign * Infinity)
      : sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
}

/**
 * Converts numbers to binary16 bit patterns (round to nearest even).
 *
 * @example
 * ```ts
 * import { fromF16, toF16 } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const bits = toF16([1, 0.1, 65504]);
 * assert.deepEqual(Array.from(fromF16(bits)), [1, 0.0999755859375, 65504]);
 * ```
 */
export function toF16(values: ArrayLike<number>): Uint16Array {
  // the runtime's conversion where it has one: the same bits (tested), ~5× faster
  if (Float16 && values instanceof Float32Array) {
    return new Uint16Array(Float16.from(values).buffer);
  }
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16Bits(values[i]);
  return out;
}

/**
 * Converts binary16 bit patterns to a Float32Array (exact).
 *
 * @example
 * ```ts
 * import { fromF16 } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(fromF16(new Uint16Array([0x3c00]))[0], 1);
 * ```
 */
export function fromF16(bits: Uint16Array): Float32Array {
  const table = f16Table ??= buildF16Table();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

/**
 * The tensor's elements as a Float32Array: the data itself for f32 tensors (not a copy), a
 * converted copy for f16 tensors.
 *
 * @example
 * ```ts
 * import { tensor, toF16, toFloat32 } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const t = tensor(toF16([0.5, 2]), [1, 1, 1, 2], "f16");
 * assert.deepEqual(Array.from(toFloat32(t)), [0.5, 2]);
 * ```
 */
export function toFloat32(t: Tensor): Float32Array {
  return t.data instanceof Float32Array ? t.data : fromF16(t.data);
}

/** Wraps f32 results as a tensor of `dtype`, converting to binary16 when asked. */
export function fromFloat32(data: Float32Array, shape: Shape4, dtype: DType): Tensor {
  return { data: dtype === "f16" ? toF16(data) : data, shape, dtype };
}
