/**
 * Validation of attention calls (shared by every backend): tensors, sizes, options and mask,
 * checked before anything is computed, and the {@linkcode Problem} handed to a backend.
 *
 * @module
 */

import type { AttentionOptions, Backend, Feature, Problem } from "./types.ts";
import { MAX_HEAD_DIM } from "./types.ts";
import { checkBlockMask } from "./masks/block_mask.ts";
import { checkDropout } from "./masks/dropout.ts";
import { ATTENTION_OPTIONS, checkKeys, describe } from "./_options.ts";
import { maskTerms } from "./_mask_terms.ts";
import { checkShape, type GpuArray, type GpuTensor, isGpuTensor, type Tensor } from "./tensor.ts";

/** The features a problem uses. */
export function featuresOf(p: Problem): Feature[] {
  const f: Feature[] = [];
  if (p.softcap !== undefined) f.push("softcap");
  if (p.dropout !== undefined) f.push("dropout");
  if (p.blockMask !== undefined) f.push("blockMask");
  if (p.sinks !== undefined) f.push("sinks");
  if (p.alibi !== undefined) f.push("alibiSlopes");
  if (p.pages !== undefined) f.push("blockTable");
  return f;
}

/** The first feature of `p` that backend `b` lacks, if any. */
export function missingFeature(b: Backend, p: Problem): Feature | undefined {
  return featuresOf(p).find((f) => !b.features.has(f));
}

/**
 * A numeric option: a TypeError naming the actual type when `x` is not a number, else a
 * RangeError when it is not `what` (`ok`).
 */
function checkNumber(x: unknown, name: string, ok: boolean, what: string): void {
  if (typeof x !== "number") throw new TypeError(`${name} must be ${what}, got ${describe(x)}`);
  if (!ok) throw new RangeError(`${name} must be ${what}, got ${x}`);
}

/** The byte offset of a GPU tensor or array (default 0): a non-negative multiple of 4. */
export function checkOffset(offset: unknown, name: string): number {
  if (offset === undefined) return 0;
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0 || offset % 4) {
    throw new RangeError(
      `${name}.offset must be a non-negative multiple of 4 bytes, got ${String(offset)}`,
    );
  }
  return offset;
}

/** Checks that a value is a GPU float32 array `{ buffer, length, offset? }` within its buffer. */
export function checkGpuArray(a: unknown, name: string): asserts a is GpuArray {
  const x = a as Record<string, unknown> | null;
  if (
    typeof x !== "object" || x === null || typeof GPUBuffer === "undefined" ||
    !(x.buffer instanceof GPUBuffer)
  ) {
    throw new TypeError(`${name} must be a GpuArray { buffer: GPUBuffer, length, offset? }`);
  }
  const length = x.length;
  if (typeof length !== "number" || !Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`${name}.length must be a non-negative integer, got ${String(length)}`);
  }
  const end = checkOffset(x.offset, name) + length * 4;
  if (x.buffer.size < end) {
    throw new RangeError(`${name}.buffer.size is ${x.buffer.size} bytes; it needs ${end}`);
  }
}

/** Checks that a value is a well-formed Tensor; `name` is used in errors. */
export function checkTensor(t: unknown, name: string): asserts t is Tensor | GpuTensor {
  if (typeof t !== "object" || t === null) throw new TypeError(`${name} must be a Tensor`);
  const x = t as Record<string, unknown>;
  const shape = checkShape(x.shape, `${name}.shape`);
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${name}.dtype must be "f32" or "f16", got ${JSON.stringify(x.dtype)}`);
  }
  if (isGpuTensor(t)) {
    const buf = t.buffer as unknown;
    if (typeof GPUBuffer === "undefined" || !(buf instanceof GPUBuffer)) {
      throw new TypeError(`${name}.buffer must be a GPUBuffer`);
    }
    const need = shape[0] * shape[1] * shape[2] * shape[3] * (x.dtype === "f16" ? 2 : 4);
    const offset = checkOffset(x.offset, name);
    if (buf.size < offset + need) {
      throw new RangeError(
        `${name}.buffer.size is ${buf.size} bytes; shape [${shape}] needs ${need}` +
          (offset ? ` from offset ${offset}, ${offset + need} in all` : ""),
      );
    }
    if ((buf.usage & 0x80) === 0) {
      throw new TypeError(`${name}.buffer needs GPUBufferUsage.STORAGE`);
    }
    return;
  }
  const want = x.dtype === "f32" ? Float32Array : Uint16Array;
  if (!(x.data instanceof want)) {
    throw new TypeError(`${name}.data must be a ${want.name} for dtype ${x.dtype}`);
  }
  const n = shape[0] * shape[1] * shape[2] * shape[3];
  if ((x.data as Float32Array | Uint16Array).length !== n) {
    throw new RangeError(
      `${name}.data.length is ${(x.data as Float32Array).length}; shape [${shape}] needs ${n}`,
    );
  }
}

/** Validates q, k, v and the options of a call; nothing is computed on failure. */
export function checkProblem(
  t: { q: unknown; k: unknown; v: unknown },
  options: AttentionOptions,
): Problem {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  checkKeys(options, ATTENTION_OPTIONS, "options");
  checkTensor(t.q, "q");
  checkTensor(t.k, "k");
  checkTensor(t.v, "v");
  const { q, k, v } = t;
  for (const [name, x] of [["k", k], ["v", v]] as const) {
    if (x.dtype !== q.dtype) {
      throw new TypeError(`${name}.dtype is ${x.dtype} but q.dtype is ${q.dtype}`);
    }
  }
  const [batch, nq, heads, headDim] = q.shape;
  const [kb, kn, kvHeads, kd] = k.shape;
  const pages = options.blockTable === undefined
    ? undefined
    : checkBlockTable(options.blockTable, batch, kb, kn);
  // with a page table, k and v hold pages and Nk is the logical key length
  const nk = pages ? pages.perSequence * pages.pageSize : kn;
  if (!pages && kb !== batch) throw new RangeError(`k.shape[0] (batch) is ${kb}; q has ${batch}`);
  if (kd !== headDim) throw new RangeError(`k.shape[3] (headDim) is ${kd}; q has ${headDim}`);
  for (let i = 0; i < 4; i++) {
    if (v.shape[i] !== k.shape[i]) {
      throw new RangeError(`v.shape [${v.shape}] must equal k.shape [${k.shape}]`);
    }
  }
  if (heads % kvHeads !== 0) {
    throw new RangeError(
      `q.shape[2] (heads) = ${heads} must be a multiple of k.shape[2] (key heads) = ${kvHeads}`,
    );
  }
  if (headDim > MAX_HEAD_DIM) {
    throw new RangeError(
      `q.shape[3] (headDim) = ${headDim} exceeds the supported maximum ${MAX_HEAD_DIM}`,
    );
  }
  const scale = options.scale ?? 1 / Math.sqrt(headDim);
  checkNumber(scale, "options.scale", Number.isFinite(scale), "a finite number");
  const backend = options.backend ?? "auto";
  if (!["auto", "webgpu", "wasm", "js"].includes(backend)) {
    throw new TypeError(
      `options.backend must be "auto", "webgpu", "wasm" or "js", got ${describe(backend)}`,
    );
  }
  const enc = options.encoder;
  if (
    enc !== undefined &&
    (typeof GPUCommandEncoder === "undefined" || !(enc instanceof GPUCommandEncoder))
  ) {
    throw new TypeError(`options.encoder must be a GPUCommandEncoder, got ${describe(enc)}`);
  }
  if (
    options.outputs !== undefined &&
    (typeof options.outputs !== "object" || options.outputs === null)
  ) {
    throw new TypeError(
      `options.outputs must be an object of GPU tensors, got ${describe(options.outputs)}`,
    );
  }
  const threads = options.threads;
  if (threads !== undefined) {
    const ok = Number.isSafeInteger(threads) && threads >= 1 && threads <= 1024;
    checkNumber(threads, "options.threads", ok, "an integer from 1 to 1024");
  }
  const bm = options.blockMask;
  if (bm !== undefined) checkBlockMask(bm, { batch, heads, kvHeads, nq, nk });
  const softcap = options.softcap;
  if (softcap !== undefined) {
    checkNumber(
      softcap,
      "options.softcap",
      softcap > 0 && softcap < Infinity,
      "a positive finite number",
    );
  }
  if (options.dropout !== undefined) checkDropout(options.dropout);
  const dropout = options.dropout && options.dropout.p > 0 ? { ...options.dropout } : undefined;
  const sinks = options.sinks === undefined ? undefined : checkSinks(options.sinks, heads);
  const slopes = options.alibiSlopes === undefined
    ? undefined
    : checkAlibi(options.alibiSlopes, batch, heads);
  const sizes = { batch, nq, nk, heads, kvHeads, headDim };
  return {
    ...sizes,
    scale,
    dtype: q.dtype,
    ...maskTerms(options, sizes, bm, slopes),
    threads,
    checkFinite: options.checkFinite ?? true,
    softcap,
    dropout,
    sinks,
    pages,
    blockMask: bm,
  };
}

/**
 * `options.blockTable` against k's pages `[numPages, pageSize, …]`: an Int32Array of
 * `[batch, blocksPerSequence]` page indices, each in `[0, numPages)`.
 */
function checkBlockTable(
  t: unknown,
  batch: number,
  numPages: number,
  pageSize: number,
): { table: Int32Array; perSequence: number; pageSize: number } {
  const bt = t as { data?: unknown; shape?: unknown };
  if (typeof t !== "object" || t === null || !(bt.data instanceof Int32Array)) {
    throw new TypeError(
      `options.blockTable must be { data: Int32Array, shape: [batch, blocksPerSequence] }, got ${
        describe(t)
      }`,
    );
  }
  const shape = bt.shape as number[];
  if (
    !Array.isArray(shape) || shape.length !== 2 || shape[0] !== batch ||
    !Number.isSafeInteger(shape[1]) || shape[1] < 1
  ) {
    throw new RangeError(
      `options.blockTable.shape must be [${batch} (batch), blocksPerSequence ≥ 1], got ${
        JSON.stringify(bt.shape)
      }`,
    );
  }
  if (bt.data.length !== batch * shape[1]) {
    throw new RangeError(
      `options.blockTable.data.length is ${bt.data.length}; shape [${shape}] needs ${
        batch * shape[1]
      }`,
    );
  }
  for (let i = 0; i < bt.data.length; i++) {
    const page = bt.data[i];
    if (page < 0 || page >= numPages) {
      throw new RangeError(
        `options.blockTable.data[${i}] (batch ${Math.floor(i / shape[1])}, block ${
          i % shape[1]
        }) = ${page} is not a page of k: expected 0 to ${numPages - 1} (k.shape[0])`,
      );
    }
  }
  return { table: bt.data.slice(), perSequence: shape[1], pageSize };
}

/**
 * `options.alibiSlopes`: a Float32Array of Hq or batch·Hq finite slopes; expanded to batch·Hq
 * (each batch entry's diagonal offset comes with the mask: `maskTerms`).
 */
function checkAlibi(
  slopes: unknown,
  batch: number,
  heads: number,
): Float32Array {
  if (!(slopes instanceof Float32Array)) {
    throw new TypeError(
      `options.alibiSlopes must be a Float32Array of ${heads} (Hq) or ${
        batch * heads
      } (batch·Hq) slopes, got ${describe(slopes)}`,
    );
  }
  if (slopes.length !== heads && slopes.length !== batch * heads) {
    throw new RangeError(
      `options.alibiSlopes.length is ${slopes.length}; expected ${heads} (one slope per query head) or ${
        batch * heads
      } (batch·Hq)`,
    );
  }
  for (let i = 0; i < slopes.length; i++) {
    if (!Number.isFinite(slopes[i])) {
      throw new RangeError(`options.alibiSlopes[${i}] is ${slopes[i]}; slopes must be finite`);
    }
  }
  const all = new Float32Array(batch * heads);
  for (let b = 0; b < batch; b++) {
    all.set(
      slopes.length === heads ? slopes : slopes.subarray(b * heads, (b + 1) * heads),
      b * heads,
    );
  }
  return all;
}

/** `options.sinks`: a Float32Array of one finite logit per query head; a copy. */
function checkSinks(sinks: unknown, heads: number): Float32Array {
  if (!(sinks instanceof Float32Array)) {
    throw new TypeError(
      `options.sinks must be a Float32Array of ${heads} logits (one per query head), got ${
        describe(sinks)
      }`,
    );
  }
  if (sinks.length !== heads) {
    throw new RangeError(
      `options.sinks.length is ${sinks.length}; expected ${heads} (one logit per query head)`,
    );
  }
  for (let h = 0; h < heads; h++) {
    if (!Number.isFinite(sinks[h])) {
      throw new RangeError(`options.sinks[${h}] is ${sinks[h]}; sink logits must be finite`);
    }
  }
  return sinks.slice();
}

/**
 * Throws a RangeError naming the first NaN or infinite element of a host tensor; `outer` names
 * its first dimension (`"page"` for the k and v of a paged cache).
 */
export function checkFinite(t: Tensor, name: string, outer = "batch"): void {
  const d = t.data;
  let bad = -1;
  if (d instanceof Float32Array) {
    // x·0 is 0 for finite x and NaN for NaN or ±Infinity: a branch-free sum per chunk, then a
    // scan of the chunk that has one (1.6× faster than testing every element)
    for (let s = 0; s < d.length && bad < 0; s += 4096) {
      const e = Math.min(d.length, s + 4096);
      let acc = 0;
      for (let i = s; i < e; i++) acc += d[i] * 0;
      if (acc === 0) continue;
      for (let i = s; i < e; i++) {
        if (d[i] - d[i] !== 0) {
          bad = i;
          break;
        }
      }
    }
  } else {
    for (let i = 0; i < d.length; i++) {
      if ((d[i] & 0x7c00) === 0x7c00) {
        bad = i;
        break;
      }
    }
  }
  if (bad >= 0) throw notFinite(t, name, bad, outer);
}

/** The error for a tensor whose element `bad` (a flat index into its data) is NaN or ±∞. */
export function notFinite(t: Tensor, name: string, bad: number, outer = "batch"): RangeError {
  const [, n, h, dim] = t.shape;
  const at = [
    Math.floor(bad / (n * h * dim)),
    Math.floor(bad / (h * dim)) % n,
    Math.floor(bad / dim) % h,
    bad % dim,
  ];
  return new RangeError(
    `${name}.data[${bad}] (${outer} ${at[0]}, row ${at[1]}, head ${at[2]}, dim ${
      at[3]
    }) is not finite; ` +
      "pass checkFinite: false to skip this check",
  );
}
