/**
 * The WebGPU backend: chooses kernel configurations for the adapter, uploads inputs and the
 * shared block schedule, dispatches the WGSL kernels (split over batch chunks so that no
 * binding exceeds the adapter's limits) and reads results back in one submission. Tensors may
 * also stay on the GPU ({@linkcode GpuTensor}) so that calls chain without read-backs.
 *
 * Where a kernel is dispatched: {@linkcode planForward} (forward), {@linkcode planDecode}
 * (split-KV decode, combine) and {@linkcode planBackward} (prep, dQ, dK/dV), all through
 * `encodeChunks`.
 *
 * @module
 */

import type { AttentionResult, Backend, Gradients, Problem, SavedForBackward } from "../types.ts";
import type { Schedule } from "../masks/schedule.ts";
import {
  type DType,
  fromFloat32,
  type GpuArray,
  type GpuTensor,
  isGpuTensor,
  type Shape4,
  type Tensor,
  toF16,
  toFloat32,
} from "../tensor.ts";
import {
  deviceLostError,
  type GpuContext,
  gpuContext,
  lostWithin,
  pipeline,
  unlessLost,
} from "./device.ts";
import { fixedHeadDim, optionValues } from "./_wgsl.ts";
import {
  FLOAT_PARAMS,
  FORWARD_PARAMS,
  type ForwardConfig,
  forwardKey,
  forwardSharedBytes,
  forwardWgsl,
} from "./forward_wgsl.ts";
import {
  combineWgsl,
  DECODE_MAX_NQ,
  DECODE_PARAMS,
  DECODE_TILE,
  type DecodeConfig,
  decodeKey,
  decodeWgsl,
} from "./decode_wgsl.ts";
import {
  BACKWARD_PARAMS,
  type BackwardConfig,
  backwardKey,
  backwardSharedBytes,
  dkvWgsl,
  dqWgsl,
  prepWgsl,
} from "./backward_wgsl.ts";

/** Options that tests and benchmarks use to pin a kernel variant. */
export interface GpuTuning {
  /** Force the workgroup-memory row reduction even when subgroups exist. */
  noSubgroups?: boolean;
  /** Override parts of the forward configuration. */
  forward?: Partial<ForwardConfig>;
  /** Override parts of the backward configuration. */
  backward?: Partial<BackwardConfig>;
  /** Pretend the adapter's largest storage binding is this many bytes (tests of splitting). */
  maxBindingBytes?: number;
  /** Force (true) or forbid (false) the split-KV decoding kernels; default: Nq ≤ 16, Nk ≥ 512. */
  decode?: boolean;
  /** Key splits of the decoding kernel (default: about 256 workgroups). */
  splits?: number;
  /** Called right after a call's work is submitted (fault-injection tests: lose the device). */
  afterSubmit?: (device: GPUDevice) => void;
}

let tuning: GpuTuning = {};

/** Pins kernel variants (for tests and benchmarks); returns the previous setting. */
export function setGpuTuning(t: GpuTuning): GpuTuning {
  const old = tuning;
  tuning = t;
  return old;
}

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
  return ctx;
}

function headDimWidth(headDim: number): number {
  return headDim <= 64 ? 4 : headDim <= 128 ? 8 : headDim <= 192 ? 12 : 16;
}

/** The forward configuration for a head dimension on this adapter. */
export function forwardConfig(
  ctx: GpuContext,
  headDim: number,
  dtype: "f32" | "f16",
  score: { softcap?: number; dropout?: unknown } = {},
): ForwardConfig {
  const dn = headDimWidth(headDim);
  // Measured on an H100 (f32, d = 128, N = 16384): rm 8, cn 4 (128 × 64 tiles) 22.8 TFLOP/s;
  // rm 4 cn 4: 20.8; rm 8 cn 8 (kc 16, kv 16): 17.9; rm 4 cn 8: 15.0.
  // Software rasterisers get the smallest tiles: their shader compilers take minutes on the
  // fully unrolled large ones, and they are correctness tools, not fast.
  const small = ctx.software;
  const cfg: ForwardConfig = {
    dtype,
    headDim: fixedHeadDim(headDim, dn),
    rm: dn <= 8 && !small ? 8 : 4,
    cn: dn <= 8 || small ? 4 : 8,
    dn,
    kc: small ? 8 : 16,
    kv: small ? 16 : 32,
    subgroups: ctx.subgroups && !tuning.noSubgroups,
    ...tuning.forward,
    softcap: score.softcap !== undefined,
    dropout: score.dropout !== undefined,
  };
  return fitShared(ctx, cfg, () => forwardSharedBytes(cfg), headDim, [
    () => cfg.kv > 16 && (16 * cfg.cn) % (cfg.kv / 2) === 0 && (cfg.kv /= 2) > 0,
    () => cfg.kc > 4 && (cfg.kc /= 2) > 0,
  ]);
}

/**
 * Shrinks a configuration until its workgroup memory (`need()`) fits the adapter: each step
 * makes one change and says whether it could; the first that can is taken, then `need` again.
 */
function fitShared<T>(
  ctx: GpuContext,
  cfg: T,
  need: () => number,
  headDim: number,
  steps: (() => boolean)[],
): T {
  const limit = ctx.limits.maxComputeWorkgroupStorageSize;
  while (need() > limit) {
    if (!steps.some((step) => step())) {
      throw new RangeError(`head dimension ${headDim} needs more workgroup memory than ${limit}`);
    }
  }
  return cfg;
}

/** The backward configuration for a head dimension on this adapter. */
export function backwardConfig(
  ctx: GpuContext,
  headDim: number,
  dtype: "f32" | "f16",
  score: { softcap?: number; dropout?: unknown } = {},
): BackwardConfig {
  const dn = headDimWidth(headDim);
  // Measured on an H100 (f32, d = 128, N = 16384, useful TFLOP/s): rm 4 cn 4 rn 4 cm 4: 13.3;
  // rm 8 cn 4 / cm 8: 12.4; rm 4 cn 8: 11.9; rn 8: 11.4.
  const small = ctx.software;
  const cfg: BackwardConfig = {
    dtype,
    headDim: fixedHeadDim(headDim, dn),
    rm: 4,
    cn: 4,
    rn: 4,
    cm: 4,
    dn,
    kc: small ? 8 : 16,
    kv: small ? 16 : 32,
    split: false,
    ...tuning.backward,
    softcap: score.softcap !== undefined,
    dropout: score.dropout !== undefined,
  };
  const need = () => {
    const b = backwardSharedBytes(cfg);
    return Math.max(b.dq, b.dkv);
  };
  return fitShared(ctx, cfg, need, headDim, [
    () => cfg.kv > 16 && (cfg.kv /= 2) > 0,
    () => !cfg.split && (cfg.split = true),
    () => cfg.kc > 4 && (cfg.kc /= 2) > 0,
  ]);
}

// ---------------------------------------------------------------------------------------------
// buffers

const STORAGE = 0x80, COPY_DST = 0x8, COPY_SRC = 0x4, UNIFORM = 0x40, MAP_READ = 0x1;

/** A storage buffer holding `data` (padded to 4 bytes). */
export function upload(ctx: GpuContext, data: ArrayBufferView, label: string): GPUBuffer {
  const bytes = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
  const buf = createBuffer(ctx, bytes, STORAGE | COPY_DST | COPY_SRC, label);
  if (data.byteLength > 0) {
    const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (data.byteLength % 4 === 0) ctx.device.queue.writeBuffer(buf, 0, src);
    else {
      const padded = new Uint8Array(bytes);
      padded.set(src);
      ctx.device.queue.writeBuffer(buf, 0, padded);
    }
  }
  return buf;
}

/** An uninitialised storage buffer of at least `bytes` (rounded up to 4). */
export function storage(ctx: GpuContext, bytes: number, label: string): GPUBuffer {
  return createBuffer(
    ctx,
    Math.max(4, Math.ceil(bytes / 4) * 4),
    STORAGE | COPY_SRC | COPY_DST,
    label,
  );
}

/** The largest GPU buffer this process has created, for memory reports (no N² buffer exists). */
export const gpuMemoryStats = { largestBytes: 0, largestLabel: "" };

/** What the library knows of a buffer it created. */
interface OwnedBuffer {
  ctx: GpuContext;
  bytes: number;
  destroyed: boolean;
}

/**
 * Buffers the library created (inputs it uploads, outputs, schedules, uniforms, staging): their
 * device, size, and whether `destroy()` was called (their `destroy` is wrapped to record it).
 */
const owned = new WeakMap<GPUBuffer, OwnedBuffer>();
/** Live (created, not destroyed) library buffers per context. */
const live = new Map<GpuContext, { buffers: number; bytes: number }>();

/**
 * Library-created GPU buffers not yet destroyed, on devices not lost (the buffers of a lost
 * device are gone with it): GPU-resident outputs the caller holds, the cached block schedules
 * (at most {@linkcode MAX_SCHEDULE_BUFFERS} per device), and the buffers of calls in flight. Soak runs and
 * tests check that it stays flat.
 */
export function gpuStats(): GpuStats {
  let liveBuffers = 0, liveBytes = 0, cachedSchedules = 0;
  for (const [ctx, n] of live) {
    if (ctx.lost !== undefined) {
      live.delete(ctx);
      continue;
    }
    liveBuffers += n.buffers;
    liveBytes += n.bytes;
    cachedSchedules += scheduleBuffers.get(ctx)?.size ?? 0;
  }
  return { liveBuffers, liveBytes, cachedSchedules, submits };
}

/** What {@linkcode gpuStats} reports. */
export interface GpuStats {
  /** Library-created buffers not destroyed, on devices not lost. */
  liveBuffers: number;
  /** Their bytes. */
  liveBytes: number;
  /** How many of them are cached block schedules. */
  cachedSchedules: number;
  /** Submissions of kernel work so far (tests check that rejected calls submit nothing). */
  submits: number;
}

let submits = 0;

/** Creates a buffer on the context's device, registered as the library's. */
function tracked(ctx: GpuContext, desc: GPUBufferDescriptor): GPUBuffer {
  const buf = ctx.device.createBuffer(desc);
  const rec: OwnedBuffer = { ctx, bytes: desc.size, destroyed: false };
  owned.set(buf, rec);
  let n = live.get(ctx);
  if (!n) live.set(ctx, n = { buffers: 0, bytes: 0 });
  n.buffers++;
  n.bytes += desc.size;
  const destroy = buf.destroy.bind(buf);
  Object.defineProperty(buf, "destroy", {
    configurable: true,
    writable: true,
    value: () => {
      if (!rec.destroyed) {
        rec.destroyed = true;
        n.buffers--;
        n.bytes -= desc.size;
      }
      destroy();
    },
  });
  return buf;
}

/** A registered buffer of `size` bytes; a RangeError beyond the adapter's maxBufferSize. */
export function createBuffer(
  ctx: GpuContext,
  size: number,
  usage: number,
  label: string,
): GPUBuffer {
  if (size > gpuMemoryStats.largestBytes) {
    gpuMemoryStats.largestBytes = size;
    gpuMemoryStats.largestLabel = label;
  }
  if (size > ctx.limits.maxBufferSize) {
    throw new RangeError(
      `${label} needs a ${size}-byte GPU buffer; this adapter's maxBufferSize is ${ctx.limits.maxBufferSize}`,
    );
  }
  return tracked(ctx, { size, usage, label });
}

const probeLayouts = new WeakMap<GpuContext, GPUBindGroupLayout>();

/**
 * Checks, before anything is dispatched, that GPU-resident inputs can be used on the library's
 * device: each buffer the library created is known (its device, whether it was destroyed); any
 * other buffer is bound once in a validation error scope (a ~15 µs probe), whose error says
 * whether it belongs to another device or was destroyed.
 *
 * @throws {TypeError} for a buffer of another device (or of a lost one), naming the tensor.
 * @throws {Error} for a destroyed buffer, naming the tensor.
 */
export async function checkGpuBuffers(
  ctx: GpuContext,
  buffers: [name: string, buffer: GPUBuffer][],
): Promise<void> {
  const probes: [string, Promise<GPUError | null>][] = [];
  for (const [name, buf] of buffers) {
    if ((buf.usage & STORAGE) === 0) {
      throw new TypeError(`${name}.buffer needs GPUBufferUsage.STORAGE`);
    }
    const rec = owned.get(buf);
    if (rec?.destroyed) throw destroyedError(name);
    if (rec && rec.ctx.device !== ctx.device) {
      throw new TypeError(
        `${name}.buffer was created on a GPU device that has since been lost or replaced ` +
          `(${
            rec.ctx.lost ?? "not the library's current device"
          }); upload the tensor again (toGpu)`,
      );
    }
    if (rec) continue;
    let layout = probeLayouts.get(ctx);
    if (!layout) {
      layout = ctx.device.createBindGroupLayout({
        entries: [{ binding: 0, visibility: 4, buffer: { type: "read-only-storage" } }],
      });
      probeLayouts.set(ctx, layout);
    }
    ctx.device.pushErrorScope("validation");
    ctx.device.createBindGroup({
      layout,
      entries: [{ binding: 0, resource: { buffer: buf, size: Math.min(4, buf.size) } }],
    });
    probes.push([name, ctx.device.popErrorScope()]);
  }
  if (probes.length === 0) return;
  const errors = await unlessLost(
    ctx,
    Promise.all(probes.map(([, p]) => p)),
    "the check of GPU tensors",
  );
  errors.forEach((e, i) => {
    if (!e) return;
    const name = probes[i][0];
    if (/destroy/i.test(e.message)) throw destroyedError(name);
    throw new TypeError(
      `${name}.buffer cannot be used on the library's GPUDevice: it belongs to another device ` +
        `(create GPU tensors with toGpu, or buffers on gpuDevice()). WebGPU said: ${e.message}`,
    );
  });
}

function destroyedError(name: string): Error {
  return new Error(
    `${name}.buffer has been destroyed (GPUBuffer.destroy()); a destroyed buffer cannot be read`,
  );
}

/** Uniform buffer of `fields` in order (u32, or f32 for the names in FLOAT_PARAMS). */
function uniforms(
  ctx: GpuContext,
  fields: readonly string[],
  values: Record<string, number>,
): GPUBuffer {
  const n = Math.ceil(fields.length / 4) * 4;
  const ab = new ArrayBuffer(n * 4);
  const u = new Uint32Array(ab), f = new Float32Array(ab);
  fields.forEach((name, i) => {
    const x = values[name];
    if (x === undefined) throw new Error(`internal: uniform ${name} not set`);
    if (FLOAT_PARAMS.has(name)) f[i] = x;
    else u[i] = x;
  });
  const buf = tracked(ctx, { size: ab.byteLength, usage: UNIFORM | COPY_DST });
  ctx.device.queue.writeBuffer(buf, 0, ab);
  return buf;
}

/** The schedule on the GPU: rowPtr, rowTiles, colPtr, colTiles and the bounds, in one buffer. */
interface ScheduleBuffer {
  ctx: GpuContext;
  buffer: GPUBuffer;
  rowTilesOff: number;
  colPtrOff: number;
  colTilesOff: number;
  boundsOff: number;
}

/**
 * Most schedules kept on the GPU per device. A mask that changes every call (a new mask per
 * training step) must not leave one buffer per call behind: the garbage collector does not see
 * GPU memory, so cached schedule buffers are evicted and destroyed, least recently used first.
 */
export const MAX_SCHEDULE_BUFFERS = 32;

const scheduleBuffers = new WeakMap<GpuContext, Map<Schedule, ScheduleBuffer>>();

/**
 * The schedule on the GPU, uploaded once per schedule and device (cached, least recently used
 * evicted). Eviction happens while binding another call; calls bind and submit synchronously, so
 * an evicted buffer is never bound afterwards, and work already submitted keeps it alive.
 */
function scheduleOnGpu(ctx: GpuContext, plan: Schedule): ScheduleBuffer {
  let cache = scheduleBuffers.get(ctx);
  if (!cache) scheduleBuffers.set(ctx, cache = new Map());
  const hit = cache.get(plan);
  if (hit) {
    cache.delete(plan); // most recently used last
    cache.set(plan, hit);
    return hit;
  }
  const parts = [plan.rowPtr, plan.rowTiles, plan.colPtr, plan.colTiles, plan.bounds];
  const offs: number[] = [];
  let n = 0;
  for (const a of parts) {
    offs.push(n);
    n += a.length;
  }
  const all = new Uint32Array(n);
  parts.forEach((a, i) => all.set(new Uint32Array(a.buffer, a.byteOffset, a.length), offs[i]));
  const sb: ScheduleBuffer = {
    ctx,
    buffer: upload(ctx, all, "schedule"),
    rowTilesOff: offs[1],
    colPtrOff: offs[2],
    colTilesOff: offs[3],
    boundsOff: offs[4],
  };
  cache.set(plan, sb);
  for (const [old, b] of cache) {
    if (cache.size <= MAX_SCHEDULE_BUFFERS) break;
    cache.delete(old);
    b.buffer.destroy();
  }
  return sb;
}

// ---------------------------------------------------------------------------------------------
// dispatch over batch chunks

/** One bound buffer: `perBatch` elements of `bytes` bytes for each batch entry. */
interface Binding {
  buffer: GPUBuffer;
  perBatch: number;
  bytes: number;
  /** Uniform that receives the element offset of the chunk's first batch entry. */
  offsetField?: string;
}

/** A compiled kernel bound to one problem, ready to be encoded any number of times. */
export interface KernelPlan {
  /** Records the kernel(s) into a compute pass. */
  encode(pass: GPUComputePassEncoder): void;
  /** Frees the uniform buffers. */
  destroy(): void;
}

/**
 * Splits the batch into chunks whose bindings each fit the adapter's largest storage binding,
 * and prepares one bind group and uniform block per chunk. `bindings` are in binding order after
 * the uniform block (binding 0); `extra` are bound whole (the schedule).
 */
function encodeChunks(
  ctx: GpuContext,
  pipe: GPUComputePipeline,
  fields: readonly string[],
  values: Record<string, number>,
  batch: number,
  bindings: Binding[],
  workgroups: (batches: number) => [number, number, number],
): KernelPlan {
  const limit = Math.min(
    tuning.maxBindingBytes ?? Infinity,
    ctx.limits.maxStorageBufferBindingSize,
  );
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  const range = (b: Binding, b0: number, b1: number) => {
    if (b.perBatch === 0) return { offset: 0, size: b.buffer.size, elem: 0 };
    const start = b0 * b.perBatch * b.bytes, end = b1 * b.perBatch * b.bytes;
    const offset = Math.floor(start / align) * align;
    const size = Math.min(b.buffer.size - offset, Math.ceil((end - offset) / 4) * 4);
    return { offset, size: Math.max(4, size), elem: (start - offset) / b.bytes };
  };
  const groups: { bind: GPUBindGroup; ub: GPUBuffer; wg: [number, number, number] }[] = [];
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
        `one batch entry of ${big.buffer.label} needs a ${
          big.perBatch * big.bytes
        }-byte binding; ` +
          `this adapter allows ${limit} (maxStorageBufferBindingSize)`,
      );
    }
    while (b1 < batch && fits(b1 + 1)) b1++;
    const vals: Record<string, number> = { ...values, batchBase: b0 };
    const entries: GPUBindGroupEntry[] = bindings.map((b, i) => {
      const r = range(b, b0, b1);
      if (b.offsetField) vals[b.offsetField] = r.elem;
      else if (r.elem !== 0 || (b0 > 0 && b.perBatch > 0)) {
        throw new Error(`internal: binding ${i + 1} needs an offset uniform`);
      }
      return { binding: i + 1, resource: { buffer: b.buffer, offset: r.offset, size: r.size } };
    });
    const ub = uniforms(ctx, fields, vals);
    groups.push({
      ub,
      bind: ctx.device.createBindGroup({
        layout: pipe.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: ub } }, ...entries],
      }),
      wg: workgroups(b1 - b0),
    });
    b0 = b1;
  }
  return {
    encode(pass) {
      pass.setPipeline(pipe);
      for (const g of groups) {
        pass.setBindGroup(0, g.bind);
        if (g.wg.every((x) => x > 0)) pass.dispatchWorkgroups(...g.wg);
      }
    },
    destroy: () => groups.forEach((g) => g.ub.destroy()),
  };
}

/** The schedule bound whole: per-batch size 0. */
const whole = (buffer: GPUBuffer): Binding => ({ buffer, perBatch: 0, bytes: 4 });

function maskUniforms(p: Problem) {
  const [mb, mh] = p.mask.shape;
  return { maskBatchStride: mb === 1 ? 0 : mh, maskHeadDiv: p.heads / mh };
}

/** Device buffers of one forward call. */
export interface ForwardBuffers {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  out: GPUBuffer;
  lse: GPUBuffer;
}

/** A compiled forward pass for one problem, with its configuration and schedule. */
export interface ForwardPlan extends KernelPlan {
  cfg: ForwardConfig;
  schedule: Schedule;
}

/** The compiled forward kernel for a problem and its schedule. */
export interface ForwardKernel {
  cfg: ForwardConfig;
  pipe: GPUComputePipeline;
  schedule: Schedule;
  dtype: "f32" | "f16";
}

/** Compiles (or finds) the forward kernel of problem `p` for storage type `dtype`. */
export async function forwardKernel(
  ctx: GpuContext,
  p: Problem,
  dtype: "f32" | "f16",
): Promise<ForwardKernel> {
  const cfg = forwardConfig(ctx, p.headDim, dtype, p);
  const pipe = await pipeline(ctx, forwardKey(cfg), () => forwardWgsl(cfg));
  return { cfg, pipe, schedule: p.schedule(16 * cfg.rm, 16 * cfg.cn), dtype };
}

/** Binds the forward kernel to buffers `b` (synchronous: no other task runs in between). */
export function planForward(
  ctx: GpuContext,
  p: Problem,
  b: ForwardBuffers,
  kern: ForwardKernel,
): ForwardPlan {
  const { cfg, pipe, schedule: plan, dtype } = kern;
  const sb = scheduleOnGpu(ctx, plan);
  const bytes = dtype === "f16" ? 2 : 4;
  const qn = p.nq * p.heads * p.headDim, kn = p.nk * p.kvHeads * p.headDim;
  const kernel = encodeChunks(
    ctx,
    pipe,
    FORWARD_PARAMS,
    {
      nq: p.nq,
      nk: p.nk,
      heads: p.heads,
      kvHeads: p.kvHeads,
      headDim: p.headDim,
      rowBlocks: plan.rowBlocks,
      ...maskUniforms(p),
      tilesOff: sb.rowTilesOff,
      boundsOff: sb.boundsOff,
      qkScale: p.scale * Math.LOG2E,
      negInf: -Infinity,
      ...optionValues(p.softcap, p.dropout),
    },
    p.batch,
    [
      { buffer: b.q, perBatch: qn, bytes, offsetField: "qOff" },
      { buffer: b.k, perBatch: kn, bytes, offsetField: "kOff" },
      { buffer: b.v, perBatch: kn, bytes, offsetField: "kOff" },
      { buffer: b.out, perBatch: qn, bytes, offsetField: "oOff" },
      { buffer: b.lse, perBatch: p.heads * p.nq, bytes: 4, offsetField: "lseOff" },
      whole(sb.buffer),
    ],
    (n) => [plan.rowBlocks, p.heads, n],
  );
  return { ...kernel, cfg, schedule: plan };
}

/** Device buffers of one backward call. */
export interface BackwardBuffers {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  out: GPUBuffer;
  dOut: GPUBuffer;
  lse: GPUBuffer;
  /** Scratch: (lse·log2 e, D) per query row, batch·Hq·Nq·8 bytes. */
  stats: GPUBuffer;
  dq: GPUBuffer;
  dk: GPUBuffer;
  dv: GPUBuffer;
}

/** A compiled backward pass (prep, dQ, dK/dV) for one problem. */
export interface BackwardPlan extends KernelPlan {
  cfg: BackwardConfig;
  /** Schedule of the dQ kernel (row lists). */
  dqSchedule: Schedule;
  /** Schedule of the dK/dV kernel (column lists). */
  dkvSchedule: Schedule;
}

/** The compiled backward kernels for a problem and their schedules. */
export interface BackwardKernels {
  cfg: BackwardConfig;
  pipes: [prep: GPUComputePipeline, dq: GPUComputePipeline, dkv: GPUComputePipeline];
  dqSchedule: Schedule;
  dkvSchedule: Schedule;
  dtype: "f32" | "f16";
}

/** Compiles (or finds) the backward kernels of problem `p` for storage type `dtype`. */
export async function backwardKernels(
  ctx: GpuContext,
  p: Problem,
  dtype: "f32" | "f16",
): Promise<BackwardKernels> {
  const cfg = backwardConfig(ctx, p.headDim, dtype, p);
  const pipes = await Promise.all([
    pipeline(ctx, backwardKey("prep", cfg), () => prepWgsl(cfg)),
    pipeline(ctx, backwardKey("dq", cfg), () => dqWgsl(cfg)),
    pipeline(ctx, backwardKey("dkv", cfg), () => dkvWgsl(cfg)),
  ]);
  return {
    cfg,
    pipes,
    dqSchedule: p.schedule(16 * cfg.rm, 16 * cfg.cn),
    dkvSchedule: p.schedule(16 * cfg.cm, 16 * cfg.rn),
    dtype,
  };
}

/** Binds the backward kernels to buffers `b` (synchronous). */
export function planBackward(
  ctx: GpuContext,
  p: Problem,
  b: BackwardBuffers,
  kern: BackwardKernels,
): BackwardPlan {
  const { cfg, dtype, dqSchedule: dqPlan, dkvSchedule: kvPlan } = kern;
  const [prepPipe, dqPipe, kvPipe] = kern.pipes;
  const dqSb = scheduleOnGpu(ctx, dqPlan), kvSb = scheduleOnGpu(ctx, kvPlan);
  const bytes = dtype === "f16" ? 2 : 4;
  const qn = p.nq * p.heads * p.headDim, kn = p.nk * p.kvHeads * p.headDim;
  const rows = p.heads * p.nq;
  const base = {
    nq: p.nq,
    nk: p.nk,
    heads: p.heads,
    kvHeads: p.kvHeads,
    headDim: p.headDim,
    ...maskUniforms(p),
    qkScale: p.scale * Math.LOG2E,
    scale: p.scale,
    ...optionValues(p.softcap, p.dropout),
    qOff: 0,
    kOff: 0,
    statsOff: 0,
    lseOff: 0,
  };
  const q = { perBatch: qn, bytes, offsetField: "qOff" };
  const k = { perBatch: kn, bytes, offsetField: "kOff" };
  const stats = { buffer: b.stats, perBatch: rows, bytes: 8, offsetField: "statsOff" };
  const prep = encodeChunks(
    ctx,
    prepPipe,
    BACKWARD_PARAMS,
    { ...base, rowBlocks: 0, colBlocks: 0, ptrOff: 0, tilesOff: 0, boundsOff: 0 },
    p.batch,
    [
      { buffer: b.out, ...q },
      { buffer: b.dOut, ...q },
      { buffer: b.lse, perBatch: rows, bytes: 4, offsetField: "lseOff" },
      stats,
    ],
    (n) => [Math.ceil(p.nq / 256), n * p.heads, 1],
  );
  const dq = encodeChunks(
    ctx,
    dqPipe,
    BACKWARD_PARAMS,
    {
      ...base,
      rowBlocks: dqPlan.rowBlocks,
      colBlocks: dqPlan.colBlocks,
      ptrOff: 0,
      tilesOff: dqSb.rowTilesOff,
      boundsOff: dqSb.boundsOff,
    },
    p.batch,
    [
      { buffer: b.q, ...q },
      { buffer: b.k, ...k },
      { buffer: b.v, ...k },
      { buffer: b.dOut, ...q },
      stats,
      { buffer: b.dq, ...q },
      whole(dqSb.buffer),
    ],
    (n) => [dqPlan.rowBlocks, p.heads, n],
  );
  const dkv = encodeChunks(
    ctx,
    kvPipe,
    BACKWARD_PARAMS,
    {
      ...base,
      rowBlocks: kvPlan.rowBlocks,
      colBlocks: kvPlan.colBlocks,
      ptrOff: kvSb.colPtrOff,
      tilesOff: kvSb.colTilesOff,
      boundsOff: kvSb.boundsOff,
    },
    p.batch,
    [
      { buffer: b.q, ...q },
      { buffer: b.k, ...k },
      { buffer: b.v, ...k },
      { buffer: b.dOut, ...q },
      stats,
      { buffer: b.dk, ...k },
      { buffer: b.dv, ...k },
      whole(kvSb.buffer),
    ],
    (n) => [kvPlan.colBlocks, p.kvHeads, n],
  );
  return {
    cfg,
    dqSchedule: dqPlan,
    dkvSchedule: kvPlan,
    encode(pass) {
      prep.encode(pass);
      dq.encode(pass);
      dkv.encode(pass);
    },
    destroy() {
      prep.destroy();
      dq.destroy();
      dkv.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// calls

/** The storage type on this adapter: f16 tensors stay f16 when the adapter has shader-f16. */
function deviceType(ctx: GpuContext, dtype: DType): "f32" | "f16" {
  return dtype === "f16" && ctx.f16 ? "f16" : "f32";
}

/** A host or GPU tensor as a device buffer of `dtype` (uploading host data). */
function onDevice(
  ctx: GpuContext,
  t: Tensor | GpuTensor,
  dtype: "f32" | "f16",
  name: string,
  temps: GPUBuffer[],
): GPUBuffer {
  if (isGpuTensor(t)) {
    if (t.dtype !== dtype) {
      throw new TypeError(`${name} is an f16 GpuTensor but this adapter has no shader-f16`);
    }
    return t.buffer;
  }
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
 * and submits it as one compute pass, all synchronously inside error scopes, so that concurrent
 * calls cannot interleave with it; then reads back.
 */
async function submit(
  ctx: GpuContext,
  setup: () => { encode: (pass: GPUComputePassEncoder) => void; reads: [GPUBuffer, number][] },
): Promise<ArrayBuffer[]> {
  const { device } = ctx;
  if (ctx.lost !== undefined) throw deviceLostError(ctx, "the submission of the kernels");
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let reads: [GPUBuffer, number][] = [];
  let staging: GPUBuffer | undefined;
  let failure: unknown;
  try {
    const work = setup();
    reads = work.reads;
    const enc = device.createCommandEncoder();
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
    device.queue.submit([enc.finish()]);
    submits++;
    tuning.afterSubmit?.(device);
  } catch (e) {
    failure = e;
  }
  // pop both scopes before awaiting, so that no other call's scope is popped in between
  const scopes = Promise.all([device.popErrorScope(), device.popErrorScope()]);
  let validation: GPUError | null, oom: GPUError | null;
  try {
    [validation, oom] = await unlessLost(ctx, scopes, "the submission of the kernels");
  } catch (e) {
    staging?.destroy();
    throw e;
  }
  if (oom || validation || failure) staging?.destroy();
  if (oom) throw new Error(`WebGPU ran out of memory: ${oom.message}`);
  if (validation) throw new Error(`WebGPU rejected the work: ${validation.message}`);
  if (failure) throw failure;
  if (!staging) {
    await unlessLost(ctx, device.queue.onSubmittedWorkDone(), "the kernels");
    return [];
  }
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

/** The buffers of the GPU-resident tensors among `ts`, with their names. */
function residentBuffers(ts: [string, Tensor | GpuTensor][]): [string, GPUBuffer][] {
  return ts.filter(([, t]) => isGpuTensor(t)).map(([n, t]) => [n, (t as GpuTensor).buffer]);
}

/** Wraps device bytes as a tensor of the problem's dtype. */
function hostTensor(
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

// ---------------------------------------------------------------------------------------------
// split-KV decoding

/** Whether problem `p` takes the split-KV decoding kernels (few queries, long keys). */
export function usesDecode(p: Problem): boolean {
  if (tuning.decode !== undefined) return tuning.decode && p.nq <= DECODE_MAX_NQ && !p.blockMask;
  return p.nq <= DECODE_MAX_NQ && p.nk >= 512 && p.blockMask === undefined;
}

/** The compiled decoding kernels and their sizes. */
export interface DecodeKernels {
  cfg: DecodeConfig;
  pipes: [decode: GPUComputePipeline, combine: GPUComputePipeline];
  schedule: Schedule;
  dtype: "f32" | "f16";
  rowsTotal: number;
  chunks: number;
  splits: number;
  tilesPerSplit: number;
}

/** Compiles (or finds) the decoding kernels of problem `p`. */
export async function decodeKernels(
  ctx: GpuContext,
  p: Problem,
  dtype: "f32" | "f16",
): Promise<DecodeKernels> {
  const group = p.heads / p.kvHeads, mh = p.mask.shape[1];
  const rowsTotal = group * p.nq;
  let cw = 1;
  while (cw * 4 < p.headDim) cw *= 2;
  const rows = rowsTotal <= 4 ? 4 : rowsTotal <= 8 ? 8 : 16;
  const cfg: DecodeConfig = {
    dtype,
    headDim: p.headDim === 4 * cw ? p.headDim : 0,
    cw,
    rows,
    shared: mh <= p.kvHeads, // every query head of a GQA group uses one mask slice
    vec: p.headDim % 4 === 0,
    softcap: p.softcap !== undefined,
    dropout: p.dropout !== undefined,
  };
  const chunks = Math.ceil(rowsTotal / rows);
  const tiles = Math.ceil(p.nk / DECODE_TILE);
  // about 512 workgroups: measured on an H100 (Nq 1, Nk 131072, Hk 8, f16), 32 splits read K
  // and V at 1211 GB/s, 64 at 1670, 128 at 1412, 256 at 1153
  const want = tuning.splits ?? Math.ceil(512 / (p.kvHeads * chunks * p.batch));
  const tilesPerSplit = Math.ceil(tiles / Math.max(1, Math.min(tiles, want)));
  const pipes = await Promise.all([
    pipeline(ctx, decodeKey("decode", cfg), () => decodeWgsl(cfg)),
    pipeline(ctx, decodeKey("combine", cfg), () => combineWgsl(cfg)),
  ]);
  return {
    cfg,
    pipes,
    schedule: p.schedule(DECODE_MAX_NQ, DECODE_TILE),
    dtype,
    rowsTotal,
    chunks,
    splits: Math.ceil(tiles / tilesPerSplit),
    tilesPerSplit,
  };
}

/** Scratch bytes of the decoding partials, per batch entry: [outputs, lses]. */
export function decodeScratch(p: Problem, kern: DecodeKernels): [number, number] {
  const n = p.kvHeads * kern.chunks * kern.splits * kern.cfg.rows;
  return [n * kern.cfg.cw * 16, n * 4];
}

/** Binds the decoding kernels to buffers (synchronous). */
export function planDecode(
  ctx: GpuContext,
  p: Problem,
  b: ForwardBuffers & { part: GPUBuffer; plse: GPUBuffer },
  kern: DecodeKernels,
): KernelPlan {
  const sb = scheduleOnGpu(ctx, kern.schedule);
  const bytes = kern.dtype === "f16" ? 2 : 4;
  const qn = p.nq * p.heads * p.headDim, kn = p.nk * p.kvHeads * p.headDim;
  const [partBytes, plseBytes] = decodeScratch(p, kern);
  const values = {
    nq: p.nq,
    nk: p.nk,
    heads: p.heads,
    kvHeads: p.kvHeads,
    headDim: p.headDim,
    rowsTotal: kern.rowsTotal,
    chunks: kern.chunks,
    splits: kern.splits,
    tilesPerSplit: kern.tilesPerSplit,
    ...maskUniforms(p),
    rowBlocks: kern.schedule.rowBlocks,
    tilesOff: sb.rowTilesOff,
    boundsOff: sb.boundsOff,
    qkScale: p.scale * Math.LOG2E,
    negInf: -Infinity,
    ...optionValues(p.softcap, p.dropout),
  };
  const part = { buffer: b.part, perBatch: partBytes / 16, bytes: 16, offsetField: "partOff" };
  const plse = { buffer: b.plse, perBatch: plseBytes / 4, bytes: 4, offsetField: "plseOff" };
  const defaults = { qOff: 0, kOff: 0, oOff: 0, lseOff: 0, partOff: 0, plseOff: 0 };
  const decode = encodeChunks(
    ctx,
    kern.pipes[0],
    DECODE_PARAMS,
    { ...values, ...defaults },
    p.batch,
    [
      { buffer: b.q, perBatch: qn, bytes, offsetField: "qOff" },
      { buffer: b.k, perBatch: kn, bytes, offsetField: "kOff" },
      { buffer: b.v, perBatch: kn, bytes, offsetField: "kOff" },
      whole(sb.buffer),
      part,
      plse,
    ],
    (n) => [kern.splits, p.kvHeads * kern.chunks, n],
  );
  const combine = encodeChunks(
    ctx,
    kern.pipes[1],
    DECODE_PARAMS,
    { ...values, ...defaults },
    p.batch,
    [
      part,
      plse,
      { buffer: b.out, perBatch: qn, bytes, offsetField: "oOff" },
      { buffer: b.lse, perBatch: p.heads * p.nq, bytes: 4, offsetField: "lseOff" },
    ],
    (n) => [Math.ceil((p.heads * p.nq * kern.cfg.cw) / 256), n, 1],
  );
  return {
    encode(pass) {
      decode.encode(pass);
      combine.encode(pass);
    },
    destroy() {
      decode.destroy();
      combine.destroy();
    },
  };
}

/** Forward pass; GPU-resident outputs when `resident`. */
export async function gpuForward(
  p: Problem,
  q: Tensor | GpuTensor,
  k: Tensor | GpuTensor,
  v: Tensor | GpuTensor,
  resident: boolean,
): Promise<AttentionResult | { out: GpuTensor; lse: GpuArray }> {
  const ctx = await requireGpu();
  await checkGpuBuffers(ctx, residentBuffers([["q", q], ["k", k], ["v", v]]));
  const dt = deviceType(ctx, p.dtype);
  const dec = usesDecode(p) ? await decodeKernels(ctx, p, dt) : undefined;
  const kern = dec ? undefined : await forwardKernel(ctx, p, dt);
  const outBytes = p.batch * p.nq * p.heads * p.headDim * (dt === "f16" ? 2 : 4);
  const lseLen = p.batch * p.heads * p.nq;
  const temps: GPUBuffer[] = [];
  let plan: KernelPlan | undefined, b: ForwardBuffers | undefined;
  try {
    const [o, l] = await submit(ctx, () => {
      b = {
        q: onDevice(ctx, q, dt, "q", temps),
        k: onDevice(ctx, k, dt, "k", temps),
        v: onDevice(ctx, v, dt, "v", temps),
        out: storage(ctx, outBytes, "out"),
        lse: storage(ctx, lseLen * 4, "lse"),
      };
      if (!resident) temps.push(b.out, b.lse);
      if (dec) {
        const [partBytes, plseBytes] = decodeScratch(p, dec);
        const part = storage(ctx, partBytes * p.batch, "decode partial outputs");
        const plse = storage(ctx, plseBytes * p.batch, "decode partial lse");
        temps.push(part, plse);
        plan = planDecode(ctx, p, { ...b, part, plse }, dec);
      } else plan = planForward(ctx, p, b, kern!);
      return {
        encode: plan.encode,
        reads: resident ? [] : [[b.out, outBytes], [b.lse, lseLen * 4]],
      };
    });
    const shape: Shape4 = [p.batch, p.nq, p.heads, p.headDim];
    if (resident) {
      return { out: { buffer: b!.out, shape, dtype: dt }, lse: { buffer: b!.lse, length: lseLen } };
    }
    return { out: hostTensor(o, shape, p.dtype, dt), lse: new Float32Array(l) };
  } catch (e) {
    if (resident && b) b.out.destroy(), b.lse.destroy();
    throw e;
  } finally {
    plan?.destroy();
    for (const t of temps) t.destroy();
  }
}

/** Backward pass; GPU-resident gradients when `resident`. */
export async function gpuBackward(
  p: Problem,
  s: {
    q: Tensor | GpuTensor;
    k: Tensor | GpuTensor;
    v: Tensor | GpuTensor;
    out: Tensor | GpuTensor;
    dOut: Tensor | GpuTensor;
    lse: Float32Array | GpuArray;
  },
  resident: boolean,
): Promise<Gradients | { dq: GpuTensor; dk: GpuTensor; dv: GpuTensor }> {
  const ctx = await requireGpu();
  const named = residentBuffers([["q", s.q], ["k", s.k], ["v", s.v], ["out", s.out], [
    "dOut",
    s.dOut,
  ]]);
  if (!(s.lse instanceof Float32Array)) named.push(["lse", s.lse.buffer]);
  await checkGpuBuffers(ctx, named);
  const dt = deviceType(ctx, p.dtype);
  const kern = await backwardKernels(ctx, p, dt);
  const bytes = dt === "f16" ? 2 : 4;
  const qBytes = p.batch * p.nq * p.heads * p.headDim * bytes;
  const kBytes = p.batch * p.nk * p.kvHeads * p.headDim * bytes;
  const temps: GPUBuffer[] = [];
  let plan: BackwardPlan | undefined, b: BackwardBuffers | undefined;
  try {
    const got = await submit(ctx, () => {
      const lse = s.lse instanceof Float32Array ? upload(ctx, s.lse, "lse") : s.lse.buffer;
      if (s.lse instanceof Float32Array) temps.push(lse);
      b = {
        q: onDevice(ctx, s.q, dt, "q", temps),
        k: onDevice(ctx, s.k, dt, "k", temps),
        v: onDevice(ctx, s.v, dt, "v", temps),
        out: onDevice(ctx, s.out, dt, "out", temps),
        dOut: onDevice(ctx, s.dOut, dt, "dOut", temps),
        lse,
        stats: storage(ctx, p.batch * p.heads * p.nq * 8, "row stats"),
        dq: storage(ctx, qBytes, "dq"),
        dk: storage(ctx, kBytes, "dk"),
        dv: storage(ctx, kBytes, "dv"),
      };
      temps.push(b.stats);
      if (!resident) temps.push(b.dq, b.dk, b.dv);
      plan = planBackward(ctx, p, b, kern);
      return {
        encode: plan.encode,
        reads: resident ? [] : [[b.dq, qBytes], [b.dk, kBytes], [b.dv, kBytes]],
      };
    });
    const qs: Shape4 = [p.batch, p.nq, p.heads, p.headDim];
    const ks: Shape4 = [p.batch, p.nk, p.kvHeads, p.headDim];
    if (resident) {
      return {
        dq: { buffer: b!.dq, shape: qs, dtype: dt },
        dk: { buffer: b!.dk, shape: ks, dtype: dt },
        dv: { buffer: b!.dv, shape: ks, dtype: dt },
      };
    }
    return {
      dq: hostTensor(got[0], qs, p.dtype, dt),
      dk: hostTensor(got[1], ks, p.dtype, dt),
      dv: hostTensor(got[2], ks, p.dtype, dt),
    };
  } catch (e) {
    if (resident && b) b.dq.destroy(), b.dk.destroy(), b.dv.destroy();
    throw e;
  } finally {
    plan?.destroy();
    for (const t of temps) t.destroy();
  }
}

/** The WebGPU backend for host tensors. */
export const gpuBackend: Backend = {
  name: "webgpu",
  features: new Set(["blockMask", "softcap", "dropout"]),
  forward: (p, q, k, v) => gpuForward(p, q, k, v, false) as Promise<AttentionResult>,
  backward: (p, s: SavedForBackward) => gpuBackward(p, s, false) as Promise<Gradients>,
};
