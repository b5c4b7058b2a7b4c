/**
 * How work reaches the GPU: binding a kernel's buffers by its layout and splitting the batch
 * into chunks that fit the adapter's binding limits ({@linkcode encodeChunks}), uploading host
 * tensors, and one submission per call inside error scopes, with the read-back of host results
 * ({@linkcode submit}).
 *
 * @module
 */

import type { Problem } from "../types.ts";
import {
  type DType,
  fromFloat32,
  type GpuTensor,
  isGpuTensor,
  type Shape4,
  type Tensor,
  toF16,
  toFloat32,
} from "../tensor.ts";
import { COPY_DST, countSubmit, createBuffer, MAP_READ, retirePending, upload } from "./buffers.ts";
import {
  bindGroup,
  bindingAccepted,
  bindingFailed,
  bindingGeneration,
  type BufferRange,
  uniformSlot,
} from "./binding.ts";
import { deviceLostError, type GpuContext, gpuContext, lostWithin, unlessLost } from "./device.ts";
import { elementBytes, type KernelLayout } from "./layout.ts";
import { gpuTuning } from "./tuning.ts";
import { optionValues } from "./_wgsl.ts";

/** The GPU context, or an Error saying that WebGPU cannot be used and what to use instead. */
export async function requireGpu(): Promise<GpuContext> {
  let ctx: GpuContext | undefined;
  try {
    ctx = await gpuContext();
  } catch (e) {
    throw new Error(
      `backend "webgpu": WebGPU could not be initialised (${(e as Error)?.message ?? e}); ` +
        'use backend: "wasm" (or "auto", which falls back to it)',
    );
  }
  if (!ctx) {
    throw new Error(
      'backend "webgpu": no WebGPU adapter was found on this machine; use backend: "wasm" ' +
        '(or "auto", which falls back to it)',
    );
  }
  // the caller's device (useGpuDevice) is not replaced when lost: every call says so
  if (ctx.lost !== undefined) throw deviceLostError(ctx, "the call");
  return ctx;
}

/** One bound buffer: `perBatch` elements of `bytes` bytes for each batch entry. */
interface Binding {
  buffer: GPUBuffer;
  perBatch: number;
  /** Byte offset of batch entry 0. */
  offset?: number;
  bytes: number;
  /** Uniform that receives the element offset of the chunk's first batch entry. */
  offsetField?: string;
}

/**
 * A compiled kernel bound to one problem, ready to be encoded any number of times. It owns no
 * buffer: its uniform blocks and bind groups are the cached ones of `binding.ts`.
 */
export interface KernelPlan {
  /** Records the kernel(s) into a compute pass. */
  encode(pass: GPUComputePassEncoder): void;
}

/** Where a kernel reads or writes a tensor: a whole buffer, or a buffer from a byte offset. */
export type Region = GPUBuffer | { readonly buffer: GPUBuffer; readonly offset?: number };

/** A region as buffer and byte offset. */
export function region(r: Region): { buffer: GPUBuffer; offset: number } {
  return "buffer" in r ? { buffer: r.buffer, offset: r.offset ?? 0 } : { buffer: r, offset: 0 };
}

/**
 * A buffer for one binding of a kernel: `perBatch` elements per batch entry (0: bound whole)
 * from byte `offset` (default 0; a multiple of the device's minStorageBufferOffsetAlignment).
 */
export interface Bound {
  buffer: GPUBuffer;
  perBatch: number;
  offset?: number;
}

/** A region bound with `perBatch` elements per batch entry. */
export function bound(r: Region, perBatch: number): Bound {
  return { ...region(r), perBatch };
}

/**
 * Binds `buffers` (by the names of `layout`'s bindings) and splits the batch into chunks whose
 * bindings each fit the adapter's largest storage binding, with one bind group and uniform block
 * per chunk; each chunk's element offsets go to the uniforms its layout names.
 *
 * The chunks of a set of buffers are worked out once ({@linkcode chunksOf}) and keep their bind
 * group; a call then finds its uniform block by content ({@linkcode uniformSlot}): a decoding
 * step's layers, and every repeated call, do no more.
 */
export function encodeChunks(
  ctx: GpuContext,
  pipe: GPUComputePipeline,
  layout: KernelLayout,
  dtype: "f32" | "f16",
  values: Record<string, number>,
  batch: number,
  buffers: Record<string, Bound>,
  workgroups: (batches: number) => [number, number, number],
): KernelPlan {
  const chunks = chunksOf(ctx, pipe, { layout, dtype, batch, buffers, workgroups });
  const groups: { bind: GPUBindGroup; offset: number; wg: [number, number, number] }[] = [];
  for (const c of chunks) {
    const vals: Record<string, number> = { ...values, batchBase: c.b0 };
    for (const [field, elem] of c.offsets) vals[field] = elem;
    const slot = uniformSlot(ctx, layout, vals);
    // the chunk's bind group, unless the arena was replaced or a call failed since
    const generation = bindingGeneration(ctx);
    if (c.bound?.generation !== generation || c.bound.arena !== slot.buffer) {
      const group = bindGroup(ctx, layout, slot.buffer, c.ranges);
      c.bound = { generation, arena: slot.buffer, group };
    }
    groups.push({ bind: c.bound.group, offset: slot.offset, wg: c.wg });
  }
  return {
    encode(pass) {
      pass.setPipeline(pipe);
      for (const g of groups) {
        pass.setBindGroup(0, g.bind, [g.offset]);
        if (g.wg.every((x) => x > 0)) pass.dispatchWorkgroups(...g.wg);
      }
    },
  };
}

/** One batch chunk of a kernel's bindings: its ranges, offset uniforms, workgroups, bind group. */
interface Chunk {
  b0: number;
  ranges: BufferRange[];
  /** Offset uniforms of the chunk (element offsets of its first entry). */
  offsets: [string, number][];
  wg: [number, number, number];
  /** The bind group over the uniform arena it was made for, in the binding generation then. */
  bound?: { generation: number; arena: GPUBuffer; group: GPUBindGroup };
}

interface ChunkNode {
  next: WeakMap<GPUBuffer, ChunkNode>;
  /** The chunks made last for these buffers, with the sizes and offsets they were made for. */
  last?: { sig: number[]; layout: KernelLayout; chunks: Chunk[] };
}

/** Chunks by pipeline, every bound buffer (weakly held), then sizes and offsets. */
const chunkCache = new WeakMap<GPUComputePipeline, ChunkNode>();

/**
 * The batch chunks of `buffers` for a kernel: found by its pipeline, its buffers and their
 * offsets (the last ones made for those buffers), else worked out.
 */
function chunksOf(ctx: GpuContext, pipe: GPUComputePipeline, r: BindRequest): Chunk[] {
  const { layout, dtype, batch, buffers, workgroups } = r;
  let node = chunkCache.get(pipe) as ChunkNode;
  if (node === undefined) chunkCache.set(pipe, node = { next: new WeakMap() });
  // workgroups(n) is linear in n: its value at the batch fixes it
  const wg = workgroups(batch);
  const sig = [dtype === "f16" ? 1 : 0, batch, gpuTuning().maxBindingBytes ?? -1, ...wg];
  for (const d of layout.bindings) {
    const b = buffers[d.name];
    if (!b) throw new Error(`internal: no buffer for binding ${d.name}`);
    let next: ChunkNode | undefined = node.next.get(b.buffer);
    if (!next) node.next.set(b.buffer, next = { next: new WeakMap<GPUBuffer, ChunkNode>() });
    node = next;
    sig.push(b.offset ?? 0, b.perBatch);
  }
  const known = node.last;
  if (known?.layout === layout && known.sig.length === sig.length) {
    let same = true;
    for (let i = 0; i < sig.length && same; i++) same = known.sig[i] === sig[i];
    if (same) return known.chunks;
  }
  const chunks = makeChunks(ctx, r);
  node.last = { sig, layout, chunks };
  return chunks;
}

/** What one call of a kernel binds: its layout and storage type, the batch, the buffers. */
interface BindRequest {
  layout: KernelLayout;
  dtype: "f32" | "f16";
  batch: number;
  buffers: Record<string, Bound>;
  workgroups: (batches: number) => [number, number, number];
}

function makeChunks(ctx: GpuContext, r: BindRequest): Chunk[] {
  const { layout, dtype, batch, buffers, workgroups } = r;
  const bindings: Binding[] = layout.bindings.map((d) => {
    const b = buffers[d.name];
    if (!b) throw new Error(`internal: no buffer for binding ${d.name}`);
    if (!d.offset && b.perBatch !== 0) {
      throw new Error(`internal: binding ${d.name} is split by batch but has no offset uniform`);
    }
    return { ...b, bytes: elementBytes(d.type, dtype), offsetField: d.offset };
  });
  const extra = Object.keys(buffers).filter((n) => !layout.bindings.some((d) => d.name === n));
  if (extra.length) throw new Error(`internal: ${extra} bound but not in the kernel's layout`);
  const limit = Math.min(
    gpuTuning().maxBindingBytes ?? Infinity,
    ctx.limits.maxStorageBufferBindingSize,
  );
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  const range = (b: Binding, b0: number, b1: number) => {
    const base = b.offset ?? 0;
    if (b.perBatch === 0) return { offset: base, size: b.buffer.size - base, elem: 0 };
    const start = base + b0 * b.perBatch * b.bytes, end = base + b1 * b.perBatch * b.bytes;
    const offset = Math.floor(start / align) * align;
    const size = Math.min(b.buffer.size - offset, Math.ceil((end - offset) / 4) * 4);
    return { offset, size: Math.max(4, size), elem: (start - offset) / b.bytes };
  };
  const chunks: Chunk[] = [];
  for (let b0 = 0; b0 < batch;) {
    // grow the chunk while every binding fits
    let b1 = b0 + 1;
    const fits = (e: number) =>
      workgroups(e - b0).every((x) => x <= maxGroups) &&
      bindings.every((b) => range(b, b0, e).size <= limit);
    if (!fits(b1)) {
      const big = bindings.find((b) => range(b, b0, b0 + 1).size > limit);
      if (!big) {
        throw new RangeError(
          `one batch entry needs ${
            workgroups(1)
          } workgroups; this adapter allows ${maxGroups} per dimension`,
        );
      }
      throw new RangeError(
        `one batch entry of ${big.buffer.label || "a tensor"} needs a ${
          range(big, b0, b0 + 1).size
        }-byte binding; ` +
          `the GPU device allows ${limit} (maxStorageBufferBindingSize; request a larger one ` +
          "in requestDevice's requiredLimits where the adapter allows)",
      );
    }
    while (b1 < batch && fits(b1 + 1)) b1++;
    const offsets: [string, number][] = [];
    const ranges: BufferRange[] = bindings.map((b, i) => {
      const r = range(b, b0, b1);
      if (b.offsetField) offsets.push([b.offsetField, r.elem]);
      else if (r.elem !== 0 || (b0 > 0 && b.perBatch > 0)) {
        throw new Error(`internal: binding ${i + 1} needs an offset uniform`);
      }
      return { buffer: b.buffer, offset: r.offset, size: r.size };
    });
    chunks.push({ b0, ranges, offsets, wg: workgroups(b1 - b0) });
    b0 = b1;
  }
  return chunks;
}

/** Uniform values every kernel takes from the problem: sizes, the mask slice map, scale, options. */
export function problemUniforms(p: Problem): Record<string, number> {
  const [mb, mh] = p.mask.shape;
  return {
    nq: p.nq,
    nk: p.nk,
    heads: p.heads,
    kvHeads: p.kvHeads,
    headDim: p.headDim,
    maskBatchStride: mb === 1 ? 0 : mh,
    maskHeadDiv: p.heads / mh,
    qkScale: p.scale * Math.LOG2E,
    ...optionValues(p.softcap, p.dropout),
    ...(p.pages ? { pageSize: p.pages.pageSize, perSequence: p.pages.perSequence } : {}),
  };
}

/**
 * Whether a kernel over a schedule's lists (`ptr` and `order`: rowPtr and rowOrder, or colPtr and
 * colOrder) should launch in the longest-first order: where its lists differ in length, launched
 * a head at a time in block order, the last head's longest lists ran alone at the end (an H200,
 * N = 16384: the eleven masks' forward took 3–14 % less time longest first, heads fastest). Where
 * every list has one length there is nothing to balance, and the plain launch keeps the block
 * index uniform (launched heads first, reading it from the order, the dense backward measured
 * 2.4 % slower: docs/BENCHMARKS.md).
 */
export function unevenLists(ptr: Uint32Array, order: Uint32Array, blocks: number): boolean {
  const len = (at: number, i: number) => ptr[at + i + 1] - ptr[at + i];
  for (let at = 0; at < order.length; at += blocks) {
    if (len(at, order[at]) !== len(at, order[at + blocks - 1])) return true;
  }
  return false;
}

/**
 * The grid of a kernel with one workgroup per (block, head, batch): `ordered` (see
 * {@linkcode unevenLists}), (heads, places in the slice's order, batch), so every head's longest
 * lists start first and the shortest run last; otherwise (blocks, heads, batch), a head's blocks
 * launched together.
 */
export function launchGrid(
  ordered: boolean | undefined,
  blocks: number,
  heads: number,
): (n: number) => [number, number, number] {
  return ordered ? (n) => [heads, blocks, n] : (n) => [blocks, heads, n];
}

/** The storage type on this adapter: f16 tensors stay f16 when the adapter has shader-f16. */
export function deviceType(ctx: GpuContext, dtype: DType): "f32" | "f16" {
  return dtype === "f16" && ctx.f16 ? "f16" : "f32";
}

/** A host or GPU tensor as a device region of `dtype` (uploading host data). */
export function onDevice(
  ctx: GpuContext,
  t: Tensor | GpuTensor,
  dtype: "f32" | "f16",
  name: string,
  temps: GPUBuffer[],
): Region {
  if (isGpuTensor(t)) return { buffer: t.buffer, offset: t.offset ?? 0 };
  const data = t.dtype === dtype
    ? t.data
    : dtype === "f32"
    ? toFloat32(t)
    : toF16(t.data as Float32Array);
  const buf = upload(ctx, data, name);
  temps.push(buf);
  return buf;
}

/**
 * Runs `setup` (which creates buffers and returns the kernels to encode and the buffers to read)
 * and encodes it as one compute pass, all synchronously inside error scopes, so that concurrent
 * calls cannot interleave with it. Then, with an `encoder` of the caller's, nothing more: the
 * caller submits. Otherwise it submits, and with buffers to read, maps them back; without, it
 * returns at once: nothing waits for the GPU (the queue orders later work after this one, and a
 * device lost meanwhile fails the next call or read-back).
 */
export async function submit(
  ctx: GpuContext,
  setup: () => { encode: (pass: GPUComputePassEncoder) => void; reads: [GPUBuffer, number][] },
  encoder?: GPUCommandEncoder,
): Promise<ArrayBuffer[]> {
  const { device } = ctx;
  if (ctx.lost !== undefined) throw deviceLostError(ctx, "the submission of the kernels");
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let reads: [GPUBuffer, number][] = [];
  let staging: GPUBuffer | undefined;
  let failure: unknown;
  if (encoder) ctx.recorded = true; // before setup: it may drop schedules from the cache
  retirePending(ctx); // what earlier calls replaced: their work is submitted or recorded
  try {
    const work = setup();
    reads = work.reads;
    const enc = encoder ?? device.createCommandEncoder();
    const pass = enc.beginComputePass();
    work.encode(pass);
    pass.end();
    const total = reads.reduce((a, [, n]) => a + Math.ceil(n / 4) * 4, 0);
    if (total > 0) staging = createBuffer(ctx, total, MAP_READ | COPY_DST, "read-back");
    let off = 0;
    for (const [buf, n] of reads) {
      const bytes = Math.ceil(n / 4) * 4;
      enc.copyBufferToBuffer(buf, 0, staging!, off, bytes);
      off += bytes;
    }
    if (!encoder) {
      device.queue.submit([enc.finish()]);
      countSubmit();
      gpuTuning().afterSubmit?.(device);
    }
  } catch (e) {
    failure = e;
  }
  // pop both scopes before awaiting, so that no other call's scope is popped in between (they
  // report the device-timeline validation of this call, not the GPU's progress: no wait)
  const scopes = Promise.all([device.popErrorScope(), device.popErrorScope()]);
  let validation: GPUError | null, oom: GPUError | null;
  try {
    [validation, oom] = await unlessLost(ctx, scopes, "the submission of the kernels");
  } catch (e) {
    staging?.destroy();
    throw e;
  }
  if (oom || validation || failure) {
    staging?.destroy();
    bindingFailed(ctx);
  } else bindingAccepted(ctx);
  if (oom) throw new Error(`WebGPU ran out of memory: ${oom.message}`);
  if (validation) throw new Error(`WebGPU rejected the work: ${validation.message}`);
  if (failure) throw failure;
  if (!staging) return [];
  let copy: ArrayBuffer;
  try {
    copy = await mapRead(ctx, staging, "the read-back");
  } finally {
    staging.destroy();
  }
  const out: ArrayBuffer[] = [];
  let off = 0;
  for (const [, n] of reads) {
    out.push(copy.slice(off, off + n));
    off += Math.ceil(n / 4) * 4;
  }
  return out;
}

/** Usage flags of a read-back staging buffer. */
export const READ_BACK_USAGE = MAP_READ | COPY_DST;

/**
 * Maps a read-back staging buffer (`READ_BACK_USAGE`) and returns a copy of its contents, or of
 * their first `bytes` (the caller destroys it). Deno reports some device losses only after the failed map: that case is
 * the device-lost Error too, not a map error.
 */
export async function mapRead(
  ctx: GpuContext,
  staging: GPUBuffer,
  what: string,
  bytes?: number,
): Promise<ArrayBuffer> {
  try {
    await unlessLost(ctx, staging.mapAsync(MAP_READ), what);
  } catch (e) {
    // give the loss notice a moment to arrive
    await lostWithin(ctx, 50);
    if (ctx.lost !== undefined) throw deviceLostError(ctx, what);
    throw new Error(`WebGPU read-back failed (${what}): ${(e as Error)?.message ?? e}`);
  }
  const copy = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  return copy;
}

/** Wraps device bytes as a tensor of the problem's dtype. */
export function hostTensor(
  bytes: ArrayBuffer,
  shape: Shape4,
  dtype: DType,
  devType: "f32" | "f16",
): Tensor {
  const data = devType === "f16" ? new Uint16Array(bytes) : new Float32Array(bytes);
  return dtype === devType
    ? { data, shape, dtype }
    : fromFloat32(data as Float32Array, shape, dtype);
}
