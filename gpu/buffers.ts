/**
 * GPU buffers the library creates: uploads, outputs and scratch (registered, so that
 * {@linkcode gpuStats} can report what is live and destroyed buffers are recognised), uniform
 * blocks, the block schedule uploaded once per schedule and device (least recently used
 * evicted), and the check that GPU-resident inputs belong to the library's device.
 *
 * @module
 */

import { BOUNDS_PER_COLUMN } from "../masks/flashmask.ts";
import type { Schedule } from "../masks/schedule.ts";
import { isTemplate } from "../masks/windowed.ts";
import { type GpuContext, unlessLost } from "./device.ts";
import { gpuTuning } from "./tuning.ts";

/** GPUBufferUsage flags (as numbers: the GPUBufferUsage global is absent without WebGPU). */
export const STORAGE = 0x80, COPY_DST = 0x8, COPY_SRC = 0x4, UNIFORM = 0x40, MAP_READ = 0x1;

/** A storage buffer holding `data` (padded to 4 bytes). */
export function upload(ctx: GpuContext, data: ArrayBufferView, label: string): GPUBuffer {
  const bytes = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
  const buf = createBuffer(ctx, bytes, STORAGE | COPY_DST | COPY_SRC, label);
  if (data.byteLength > 0) {
    // (a view of a SharedArrayBuffer is written as well: the type says ArrayBuffer only)
    const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength) as Uint8Array<
      ArrayBuffer
    >;
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
  /** Kept in one of the library's caches (schedules, scratch, uniform blocks). */
  cached?: boolean;
}

/**
 * Buffers the library created (inputs it uploads, outputs, schedules, uniforms, staging): their
 * device, size, and whether `destroy()` was called (their `destroy` is wrapped to record it).
 */
const owned = new WeakMap<GPUBuffer, OwnedBuffer>();
/** Live (created, not destroyed) library buffers per context. */
const live = new Map<GpuContext, Counts>();

interface Counts {
  buffers: number;
  bytes: number;
  cached: number;
}

/** Whatever was counted of a buffer, uncounted (destroyed, or released to the collector). */
function uncount(rec: OwnedBuffer): void {
  rec.destroyed = true;
  const n = live.get(rec.ctx);
  if (!n) return;
  n.buffers--;
  n.bytes -= rec.bytes;
  if (rec.cached) n.cached--;
}

/** Counts a library buffer as kept in a cache (see {@linkcode GpuStats.cachedBuffers}). */
export function markCached(buf: GPUBuffer): GPUBuffer {
  const rec = owned.get(buf);
  if (rec && !rec.destroyed && !rec.cached) {
    rec.cached = true;
    live.get(rec.ctx)!.cached++;
  }
  return buf;
}

/**
 * Library-created GPU buffers not yet destroyed, on devices not lost (the buffers of a lost
 * device are gone with it): GPU-resident outputs the caller holds, the cached block schedules
 * (at most {@linkcode MAX_SCHEDULE_BUFFERS} per device), the scratch and uniform blocks calls
 * reuse, and the buffers of calls in flight. Soak runs and
 * tests check that it stays flat.
 */
export function gpuStats(): GpuStats {
  let liveBuffers = 0, liveBytes = 0, cachedSchedules = 0, cachedBuffers = 0;
  for (const [ctx, n] of live) {
    if (ctx.lost !== undefined) {
      live.delete(ctx);
      continue;
    }
    liveBuffers += n.buffers;
    liveBytes += n.bytes;
    cachedSchedules += scheduleBuffers.get(ctx)?.cache.size ?? 0;
    cachedBuffers += n.cached;
  }
  return { liveBuffers, liveBytes, cachedSchedules, cachedBuffers, submits };
}

/** What {@linkcode gpuStats} reports. */
export interface GpuStats {
  /** Library-created buffers not destroyed, on devices not lost. */
  liveBuffers: number;
  /** Their bytes. */
  liveBytes: number;
  /** Block schedules held on the GPU (several share a buffer; a large one has its own). */
  cachedSchedules: number;
  /**
   * How many of them the library keeps in its caches: the schedules, the scratch of split-KV
   * decoding and the uniform blocks (a call's own buffers are `liveBuffers − cachedBuffers`).
   */
  cachedBuffers: number;
  /** Submissions of kernel work so far (tests check that rejected calls submit nothing). */
  submits: number;
}

let submits = 0;

/** Counts one submission of kernel work (for {@linkcode gpuStats}). */
export function countSubmit(): void {
  submits++;
}

/**
 * Hands a library buffer over to the garbage collector: it is no longer counted as live and is
 * not destroyed by the library (the buffers of work recorded into a caller's encoder, which the
 * caller submits later: destroying them first would invalidate that submission).
 */
export function release(buf: GPUBuffer): void {
  const rec = owned.get(buf);
  if (!rec || rec.destroyed) return;
  uncount(rec); // for the counters: gone from the library's hands
  owned.delete(buf);
}

/** Creates a buffer on the context's device, registered as the library's. */
function tracked(ctx: GpuContext, desc: GPUBufferDescriptor): GPUBuffer {
  const buf = ctx.device.createBuffer(desc);
  const rec: OwnedBuffer = { ctx, bytes: desc.size, destroyed: false };
  owned.set(buf, rec);
  let n = live.get(ctx);
  if (!n) live.set(ctx, n = { buffers: 0, bytes: 0, cached: 0 });
  n.buffers++;
  n.bytes += desc.size;
  const destroy = buf.destroy.bind(buf);
  Object.defineProperty(buf, "destroy", {
    configurable: true,
    writable: true,
    value: () => {
      if (!rec.destroyed) uncount(rec);
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
 * Caller buffers a probe found usable, and on which device: later calls skip their probe (it is
 * a bind group creation and an error scope, ~25 µs a buffer). A buffer destroyed after its probe
 * makes the submission fail validation; the entry points then check again with `recheck` to name
 * it.
 */
const verified = new WeakMap<GPUBuffer, GPUDevice>();

/**
 * Checks, before anything is dispatched, that GPU-resident inputs can be used on the library's
 * device: each buffer the library created is known (its device, whether it was destroyed); any
 * other buffer is bound once in a validation error scope (a probe: a bind group took 18–26 µs on
 * the H200, `bench/gpu/host_costs.ts`), whose error says
 * whether it belongs to another device or was destroyed.
 *
 * Buffers that passed a probe on this device are not probed again unless `recheck`.
 *
 * @throws {TypeError} for a buffer of another device (or of a lost one), naming the tensor.
 * @throws {Error} for a destroyed buffer, naming the tensor.
 */
export async function checkGpuBuffers(
  ctx: GpuContext,
  buffers: [name: string, buffer: GPUBuffer][],
  recheck = false,
): Promise<void> {
  const probes: [string, Promise<GPUError | null>][] = [];
  const probed: GPUBuffer[] = [];
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
    if (rec || (!recheck && verified.get(buf) === ctx.device)) continue;
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
    probed.push(buf);
  }
  if (probes.length === 0) return;
  const errors = await unlessLost(
    ctx,
    Promise.all(probes.map(([, p]) => p)),
    "the check of GPU tensors",
  );
  errors.forEach((e, i) => {
    if (!e) return void verified.set(probed[i], ctx.device);
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

/**
 * A schedule on the GPU: rowPtr, rowTiles, colPtr, colTiles, rowOrder, colOrder and the per-slice
 * bounds table in `buffer`; each offset counts u32 elements from the buffer's start (the kernels
 * take them as uniforms, so that schedules sharing a buffer share bind groups). `sched[boundsOff + s]` is the
 * element where slice s's canonical bounds start (its key 0), in the same buffer.
 */
export interface ScheduleBuffer {
  ctx: GpuContext;
  buffer: GPUBuffer;
  rowPtrOff: number;
  rowTilesOff: number;
  colPtrOff: number;
  colTilesOff: number;
  rowOrderOff: number;
  colOrderOff: number;
  boundsOff: number;
}

/**
 * Most schedules kept on the GPU per device. A mask that changes every call (a new mask per
 * training step, a new `kvLength` per decoding step) must not leave one schedule per call behind:
 * the garbage collector does not see GPU memory, so cached schedules are dropped, least recently
 * used first.
 */
export const MAX_SCHEDULE_BUFFERS = 32;

/**
 * Bytes of the buffer that small schedules share (at least; one that must hold a large bounds
 * template is larger). They are written into it one after another and never rewritten (work
 * already submitted, or recorded into a caller's encoder, keeps reading what it was bound with);
 * a full one is replaced, and destroyed at the start of the next call. A schedule larger than a
 * quarter of it gets a buffer of its own.
 */
const SHARED_SCHEDULE_BYTES = 1 << 22;

interface Schedules {
  cache: Map<Schedule, ScheduleBuffer>;
  /** The shared buffer, and where the bounds arrays written into it start (u32 elements). */
  shared?: { buffer: GPUBuffer; used: number; columns: Map<Int32Array, number> };
}

const scheduleBuffers = new WeakMap<GpuContext, Schedules>();

/**
 * The largest buffer a kernel binds whole (the schedules, the term arena): the device's largest
 * storage binding, or the tests' tuned one, in 16-byte units.
 */
export function wholeBindingLimit(ctx: GpuContext): number {
  return Math.floor(
    Math.min(ctx.limits.maxStorageBufferBindingSize, gpuTuning().maxBindingBytes ?? Infinity) / 16,
  ) * 16;
}

/**
 * The schedule on the GPU, uploaded once per schedule and device (cached, least recently used
 * dropped). Its bounds (`columnBounds`) are written once per shared buffer: a ragged KV cache's
 * template serves every decoding step, which writes only its tile lists and bounds table.
 * Dropping happens while binding another call; calls bind and submit synchronously, so a dropped
 * schedule is never bound afterwards, and work already submitted keeps its buffer alive.
 */
export function scheduleOnGpu(ctx: GpuContext, plan: Schedule): ScheduleBuffer {
  let s = scheduleBuffers.get(ctx);
  if (!s) scheduleBuffers.set(ctx, s = { cache: new Map() });
  const { cache } = s;
  const limit = wholeBindingLimit(ctx); // bound whole
  const shared = Math.min(SHARED_SCHEDULE_BYTES, limit);
  if (s.shared && s.shared.buffer.size > limit) {
    // the limit shrank (tests tune it): schedules in the shared buffer are uploaded again
    dropShared(ctx, s);
  }
  const hit = cache.get(plan);
  if (hit) {
    cache.delete(plan); // most recently used last
    cache.set(plan, hit);
    return hit;
  }
  const lists = [
    plan.rowPtr,
    plan.rowTiles,
    plan.colPtr,
    plan.colTiles,
    plan.rowOrder,
    plan.colOrder,
  ];
  const offs: number[] = [];
  let n = 0;
  for (const a of lists) {
    offs.push(n);
    n += a.length;
  }
  const tableAt = n;
  n += plan.slices;
  const columns = plan.columnBounds, own = !isTemplate(columns);
  const bytes = (x: number) => Math.ceil(x / 4) * 16;
  let buffer: GPUBuffer, base: number, columnsAt: number;
  const alone = bytes(n) + bytes(columns.length);
  if (own && alone * 4 > shared) {
    // a large mask's own schedule: a buffer of its own, the bounds after the lists
    base = 0;
    columnsAt = bytes(n) / 4;
    buffer = markCached(createBuffer(ctx, alone, STORAGE | COPY_DST, "schedule"));
    write(ctx, buffer, 0, lists, plan, offs, tableAt, columnsAt, n);
    ctx.device.queue.writeBuffer(buffer, columnsAt * 4, columns as Int32Array<ArrayBuffer>);
  } else {
    let sh = s.shared;
    const known = own ? undefined : sh?.columns.get(columns);
    const need = bytes(n) + (known === undefined ? bytes(columns.length) : 0);
    if (!sh || sh.used + need > sh.buffer.size) {
      if (sh) dropShared(ctx, s);
      const size = Math.min(limit, Math.max(shared, 4 * bytes(columns.length)));
      if (size < bytes(n) + bytes(columns.length)) {
        throw new RangeError(
          `a mask's schedule needs ${bytes(n) + bytes(columns.length)} bytes in one binding; ` +
            `this device binds at most ${limit}`,
        );
      }
      const buf = createBuffer(ctx, size, STORAGE | COPY_DST, "schedules");
      sh = s.shared = { buffer: markCached(buf), used: 0, columns: new Map() };
    }
    buffer = sh.buffer;
    columnsAt = sh.columns.get(columns) ?? -1;
    if (columnsAt < 0) {
      columnsAt = sh.used / 4;
      ctx.device.queue.writeBuffer(buffer, sh.used, columns as Int32Array<ArrayBuffer>);
      sh.used += bytes(columns.length);
      if (!own) sh.columns.set(columns, columnsAt);
    }
    base = sh.used / 4;
    write(ctx, buffer, sh.used, lists, plan, offs, tableAt, columnsAt, n);
    sh.used += bytes(n);
  }
  const sb: ScheduleBuffer = {
    ctx,
    buffer,
    rowPtrOff: base,
    rowTilesOff: base + offs[1],
    colPtrOff: base + offs[2],
    colTilesOff: base + offs[3],
    rowOrderOff: base + offs[4],
    colOrderOff: base + offs[5],
    boundsOff: base + tableAt,
  };
  cache.set(plan, sb);
  for (const [old, b] of cache) {
    if (cache.size <= MAX_SCHEDULE_BUFFERS) break;
    cache.delete(old);
    if (b.buffer !== s.shared?.buffer) retire(ctx, b.buffer);
  }
  return sb;
}

/** Writes a schedule's lists and its bounds table (absolute u32 elements) at byte `at`. */
function write(
  ctx: GpuContext,
  buffer: GPUBuffer,
  at: number,
  lists: Uint32Array[],
  plan: Schedule,
  offs: number[],
  tableAt: number,
  columnsAt: number,
  n: number,
): void {
  const all = new Uint32Array(Math.ceil(n / 4) * 4);
  lists.forEach((a, i) => all.set(a, offs[i]));
  for (let x = 0; x < plan.slices; x++) {
    all[tableAt + x] = columnsAt + plan.sliceColumn[x] * BOUNDS_PER_COLUMN;
  }
  ctx.device.queue.writeBuffer(buffer, at, all);
}

/** Retires the shared buffer: the schedules in it are uploaded again when next used. */
function dropShared(ctx: GpuContext, s: Schedules): void {
  const old = s.shared!.buffer;
  for (const [k, v] of s.cache) if (v.buffer === old) s.cache.delete(k);
  retireLater(ctx, old); // the call being bound may use it
  s.shared = undefined;
}

const retiring = new WeakMap<GpuContext, GPUBuffer[]>();

/**
 * A buffer dropped from a cache while a call is being bound, which that call may still bind: it
 * is retired ({@linkcode retire}) when the next call starts ({@linkcode retirePending}).
 */
export function retireLater(ctx: GpuContext, buf: GPUBuffer): void {
  let list = retiring.get(ctx);
  if (!list) retiring.set(ctx, list = []);
  list.push(buf);
}

/** Retires the buffers {@linkcode retireLater} set aside (at the start of a call). */
export function retirePending(ctx: GpuContext): void {
  const list = retiring.get(ctx);
  if (!list?.length) return;
  retiring.delete(ctx);
  for (const b of list) retire(ctx, b);
}

/**
 * A buffer the library drops from a cache: destroyed, or, when work may have been recorded into
 * a caller's encoder and not yet submitted (see GpuContext.recorded), left to the garbage
 * collector. Work already submitted keeps a destroyed buffer alive until it completes.
 */
export function retire(ctx: GpuContext, buf: GPUBuffer): void {
  if (ctx.recorded) release(buf);
  else buf.destroy();
}

const scratchBuffers = new WeakMap<GpuContext, Map<string, GPUBuffer>>();

/**
 * A storage buffer of at least `bytes` for intermediate results that live within one call (the
 * split-KV decoding partials), one per `role` and device, reused by every call and grown when
 * too small. Reuse is safe: a call writes and reads it within its own compute pass, and passes
 * run one after another in queue order.
 */
export function scratch(ctx: GpuContext, role: string, bytes: number): GPUBuffer {
  let cache = scratchBuffers.get(ctx);
  if (!cache) scratchBuffers.set(ctx, cache = new Map());
  const old = cache.get(role);
  if (old && old.size >= bytes) return old;
  if (old) retire(ctx, old);
  const buf = markCached(storage(ctx, Math.max(bytes, (old?.size ?? 0) * 2), role));
  cache.set(role, buf);
  return buf;
}
