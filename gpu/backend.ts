/**
 * The WebGPU backend: chooses kernel configurations for the adapter, uploads inputs and the
 * shared block schedule, dispatches the WGSL kernels and reads results back in one submission.
 *
 * @module
 */

import type { AttentionResult, Gradients, SavedForBackward } from "../attention.ts";
import type { Backend, Problem } from "../_problem.ts";
import type { Schedule } from "../masks/schedule.ts";
import { fromFloat32, type Tensor, toF16, toFloat32 } from "../tensor.ts";
import { type GpuContext, gpuContext, pipeline } from "./device.ts";
import {
  FLOAT_PARAMS,
  FORWARD_PARAMS,
  type ForwardConfig,
  forwardKey,
  forwardSharedBytes,
  forwardWgsl,
} from "./forward_wgsl.ts";

/** Options that tests use to pin a kernel variant. */
export interface GpuTuning {
  /** Force the workgroup-memory row reduction even when subgroups exist. */
  noSubgroups?: boolean;
  /** Override parts of the forward configuration. */
  forward?: Partial<ForwardConfig>;
}

let tuning: GpuTuning = {};

/** Pins kernel variants (for tests and benchmarks); returns the previous setting. */
export function setGpuTuning(t: GpuTuning): GpuTuning {
  const old = tuning;
  tuning = t;
  return old;
}

/** The GPU context, or an Error saying that WebGPU cannot be used. */
export async function requireGpu(): Promise<GpuContext> {
  const ctx = await gpuContext();
  if (!ctx) {
    throw new Error(
      'backend "webgpu": no WebGPU adapter was found on this machine; use backend: "wasm" ' +
        '(or "auto", which falls back to it)',
    );
  }
  return ctx;
}

/** The forward configuration for a head dimension on this adapter. */
export function forwardConfig(
  ctx: GpuContext,
  headDim: number,
  dtype: "f32" | "f16",
): ForwardConfig {
  const dn = headDim <= 64 ? 4 : headDim <= 128 ? 8 : headDim <= 192 ? 12 : 16;
  // Measured on an H100 (f32, d = 128, N = 16384): rm 8, cn 4 (128 × 64 tiles) 22.8 TFLOP/s;
  // rm 4 cn 4: 20.8; rm 8 cn 8 (kc 16, kv 16): 17.9; rm 4 cn 8: 15.0.
  const cfg: ForwardConfig = {
    dtype,
    headDim,
    rm: dn <= 8 ? 8 : 4,
    cn: dn <= 8 ? 4 : 8,
    dn,
    kc: 16,
    kv: 32,
    subgroups: ctx.subgroups && !tuning.noSubgroups,
    ...tuning.forward,
  };
  const limit = ctx.limits.maxComputeWorkgroupStorageSize;
  while (forwardSharedBytes(cfg) > limit) {
    if (cfg.kv > 16) cfg.kv /= 2;
    else if (cfg.kc > 8) cfg.kc /= 2;
    else {throw new RangeError(
        `head dimension ${headDim} needs more workgroup memory than ${limit}`,
      );}
  }
  return cfg;
}

// ---------------------------------------------------------------------------------------------
// buffers

const STORAGE = 0x80, COPY_DST = 0x8, COPY_SRC = 0x4, UNIFORM = 0x40, MAP_READ = 0x1;

/** A storage buffer holding `data` (padded to 4 bytes). */
export function upload(ctx: GpuContext, data: ArrayBufferView, label: string): GPUBuffer {
  const bytes = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
  const buf = ctx.device.createBuffer({ size: bytes, usage: STORAGE | COPY_DST | COPY_SRC, label });
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
  return ctx.device.createBuffer({
    size: Math.max(4, Math.ceil(bytes / 4) * 4),
    usage: STORAGE | COPY_SRC | COPY_DST,
    label,
  });
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
  const buf = ctx.device.createBuffer({ size: ab.byteLength, usage: UNIFORM | COPY_DST });
  ctx.device.queue.writeBuffer(buf, 0, ab);
  return buf;
}

interface ScheduleBuffers {
  ctx: GpuContext;
  /** rowPtr, rowTiles, colPtr, colTiles back to back. */
  lists: GPUBuffer;
  rowTilesOff: number;
  colPtrOff: number;
  colTilesOff: number;
  bounds: GPUBuffer;
}

const scheduleBuffers = new WeakMap<Schedule, ScheduleBuffers>();

/** The schedule's lists and bounds on the GPU, uploaded once per schedule and device. */
function scheduleOnGpu(ctx: GpuContext, plan: Schedule): ScheduleBuffers {
  const hit = scheduleBuffers.get(plan);
  if (hit && hit.ctx === ctx && ctx.lost === undefined) return hit;
  const lists = new Uint32Array(
    plan.rowPtr.length + plan.rowTiles.length + plan.colPtr.length + plan.colTiles.length,
  );
  let o = 0;
  for (const a of [plan.rowPtr, plan.rowTiles, plan.colPtr, plan.colTiles]) {
    lists.set(a, o);
    o += a.length;
  }
  const sb: ScheduleBuffers = {
    ctx,
    lists: upload(ctx, lists, "schedule lists"),
    rowTilesOff: plan.rowPtr.length,
    colPtrOff: plan.rowPtr.length + plan.rowTiles.length,
    colTilesOff: plan.rowPtr.length + plan.rowTiles.length + plan.colPtr.length,
    bounds: upload(ctx, plan.bounds, "mask bounds"),
  };
  scheduleBuffers.set(plan, sb);
  return sb;
}

/** Host data in the storage type the kernels read (f16 only where the adapter has it). */
function hostData(t: Tensor, dtype: "f32" | "f16"): Float32Array | Uint16Array {
  if (dtype === t.dtype) return t.data;
  return dtype === "f32" ? toFloat32(t) : toF16(t.data as Float32Array);
}

async function readBack(ctx: GpuContext, enc: GPUCommandEncoder, parts: [GPUBuffer, number][]) {
  const total = parts.reduce((a, [, n]) => a + Math.ceil(n / 4) * 4, 0);
  const staging = ctx.device.createBuffer({ size: Math.max(4, total), usage: MAP_READ | COPY_DST });
  let off = 0;
  for (const [buf, n] of parts) {
    const bytes = Math.ceil(n / 4) * 4;
    if (bytes > 0) enc.copyBufferToBuffer(buf, 0, staging, off, bytes);
    off += bytes;
  }
  ctx.device.queue.submit([enc.finish()]);
  await staging.mapAsync(MAP_READ);
  const copy = staging.getMappedRange().slice(0);
  staging.unmap();
  staging.destroy();
  const out: ArrayBuffer[] = [];
  off = 0;
  for (const [, n] of parts) {
    out.push(copy.slice(off, off + n));
    off += Math.ceil(n / 4) * 4;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// forward

/** Device buffers of one forward call. */
export interface ForwardBuffers {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  out: GPUBuffer;
  lse: GPUBuffer;
}

/** A compiled forward kernel bound to one problem, ready to be encoded any number of times. */
export interface ForwardPlan {
  cfg: ForwardConfig;
  schedule: Schedule;
  /** Storage type on the device. */
  dtype: "f32" | "f16";
  /** Records one forward pass into `pass`. */
  encode(pass: GPUComputePassEncoder): void;
  /** Frees the uniform buffer. */
  destroy(): void;
}

/** Prepares the forward kernel of problem `p` on buffers `b` (storage type `dtype`). */
export async function planForward(
  ctx: GpuContext,
  p: Problem,
  b: ForwardBuffers,
  dtype: "f32" | "f16",
): Promise<ForwardPlan> {
  const cfg = forwardConfig(ctx, p.headDim, dtype);
  const plan = p.schedule(16 * cfg.rm, 16 * cfg.cn);
  const pipe = await pipeline(ctx, forwardKey(cfg), () => forwardWgsl(cfg));
  const sb = scheduleOnGpu(ctx, plan);
  const [mb, mh] = p.mask.shape;
  const ub = uniforms(ctx, FORWARD_PARAMS, {
    nq: p.nq,
    nk: p.nk,
    heads: p.heads,
    kvHeads: p.kvHeads,
    rowBlocks: plan.rowBlocks,
    maskBatchStride: mb === 1 ? 0 : mh,
    maskHeadDiv: p.heads / mh,
    tilesOff: sb.rowTilesOff,
    batchBase: 0,
    qOff: 0,
    kOff: 0,
    oOff: 0,
    lseOff: 0,
    qkScale: p.scale * Math.LOG2E,
    negInf: -Infinity,
  });
  const bind = ctx.device.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [ub, b.q, b.k, b.v, b.out, b.lse, sb.lists, sb.bounds].map((buffer, binding) => ({
      binding,
      resource: { buffer },
    })),
  });
  return {
    cfg,
    schedule: plan,
    dtype,
    encode(pass) {
      pass.setPipeline(pipe);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(plan.rowBlocks, p.heads, p.batch);
    },
    destroy: () => ub.destroy(),
  };
}

async function forward(p: Problem, q: Tensor, k: Tensor, v: Tensor): Promise<AttentionResult> {
  const ctx = await requireGpu();
  const dtype = p.dtype === "f16" && ctx.f16 ? "f16" : "f32";
  const bytesPer = dtype === "f16" ? 2 : 4;
  const temps: GPUBuffer[] = [];
  try {
    const b: ForwardBuffers = {
      q: upload(ctx, hostData(q, dtype), "q"),
      k: upload(ctx, hostData(k, dtype), "k"),
      v: upload(ctx, hostData(v, dtype), "v"),
      out: storage(ctx, q.data.length * bytesPer, "out"),
      lse: storage(ctx, p.batch * p.heads * p.nq * 4, "lse"),
    };
    temps.push(b.q, b.k, b.v, b.out, b.lse);
    const plan = await planForward(ctx, p, b, dtype);
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    plan.encode(pass);
    pass.end();
    const [outBytes, lseBytes] = await readBack(ctx, enc, [
      [b.out, q.data.length * bytesPer],
      [b.lse, p.batch * p.heads * p.nq * 4],
    ]);
    plan.destroy();
    const lse = new Float32Array(lseBytes);
    const outData = dtype === "f16" ? new Uint16Array(outBytes) : new Float32Array(outBytes);
    const out = p.dtype === dtype
      ? { data: outData, shape: q.shape, dtype: p.dtype }
      : fromFloat32(outData as Float32Array, q.shape, p.dtype);
    return { out, lse };
  } finally {
    for (const b of temps) b.destroy();
  }
}

function backward(_p: Problem, _s: SavedForBackward): Promise<Gradients> {
  return Promise.reject(new Error('backend "webgpu": backward is not implemented yet'));
}

/** The WebGPU backend. */
export const gpuBackend: Backend = { forward, backward };
