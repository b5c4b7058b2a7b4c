/**
 * GPU buffers the library creates: uploads, outputs and scratch (registered, so that
 * {@linkcode gpuStats} can report what is live and destroyed buffers are recognised), uniform
 * blocks, the block schedule uploaded once per schedule and device (least recently used
 * evicted), and the check that GPU-resident inputs belong to the library's device.
 *
 * @module
 */

import type { Schedule } from "../masks/schedule.ts";
import { type GpuContext, unlessLost } from "./device.ts";
import { FLOAT_PARAMS } from "./layout.ts";

/** GPUBufferUsage flags (as numbers: the GPUBufferUsage global is absent without WebGPU). */
export const STORAGE = 0x80, COPY_DST = 0x8, COPY_SRC = 0x4, UNIFORM = 0x40, MAP_READ = 0x1;

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
  rec.destroyed = true; // for the counters: gone from the library's hands
  const n = live.get(rec.ctx);
  if (n) n.buffers--, n.bytes -= rec.bytes;
  owned.delete(buf);
}

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
 * Caller buffers a probe found usable, and on which device: later calls skip their probe (it is
 * a bind group creation and an error scope, ~25 µs a buffer). A buffer destroyed after its probe
 * makes the submission fail validation; the entry points then check again with `recheck` to name
 * it.
 */
const verified = new WeakMap<GPUBuffer, GPUDevice>();

/**
 * Checks, before anything is dispatched, that GPU-resident inputs can be used on the library's
 * device: each buffer the library created is known (its device, whether it was destroyed); any
 * other buffer is bound once in a validation error scope (a probe: the bind group alone took 23 µs on
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

/** Uniform buffer of `fields` in order (u32, or f32 for the names in FLOAT_PARAMS). */
export function uniforms(
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
export interface ScheduleBuffer {
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
export function scheduleOnGpu(ctx: GpuContext, plan: Schedule): ScheduleBuffer {
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
    // a caller's encoder may still hold work that reads it (see GpuContext.recorded)
    if (ctx.recorded) release(b.buffer);
    else b.buffer.destroy();
  }
  return sb;
}
