/**
 * The WebGPU backend's entry points: a forward or backward call on a validated problem, with
 * host or GPU-resident tensors. Each call compiles (or finds) its pipelines, then creates its
 * buffers, binds and encodes every kernel and submits them in one synchronous step
 * (`dispatch.ts`), and reads host results back.
 *
 * Where things live: device and pipeline cache `device.ts`; buffers, uniforms and the schedule
 * on the GPU `buffers.ts`; chunked binding, submission and read-back `dispatch.ts`; one module
 * per pass with its configuration and plan (`forward.ts`, `backward.ts`, `decode.ts`) beside its
 * WGSL generator (`*_wgsl.ts`); each kernel's uniforms and bindings declared once (`layout.ts`);
 * overrides for tests and benchmarks `tuning.ts`.
 *
 * @module
 */

import type {
  AttentionResult,
  Backend,
  BackendInfo,
  Gradients,
  Problem,
  SavedForBackward,
} from "../types.ts";
import type { GpuArray, GpuTensor, Shape4, Tensor } from "../tensor.ts";
import { checkGpuBuffers, storage, upload } from "./buffers.ts";
import {
  deviceType,
  hostTensor,
  type KernelPlan,
  onDevice,
  requireGpu,
  residentBuffers,
  submit,
} from "./dispatch.ts";
import { adapterInfo } from "./device.ts";
import { type ForwardBuffers, forwardConfig, forwardKernel, planForward } from "./forward.ts";
import {
  type BackwardBuffers,
  backwardKernels,
  type BackwardPlan,
  planBackward,
} from "./backward.ts";
import { decodeKernels, decodeScratch, planDecode, usesDecode } from "./decode.ts";

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

/** The adapter, and the forward tile its configuration chooses at `headDim` (f32). */
async function info(headDim: number): Promise<BackendInfo> {
  const ctx = await requireGpu();
  const cfg = forwardConfig(ctx, headDim, "f32");
  const gpu = adapterInfo(ctx);
  const yes = (b: boolean) => (b ? "yes" : "no");
  return {
    name: "webgpu",
    device: `${gpu.name}${gpu.software ? " (software)" : ""}, shader-f16 ${yes(gpu.f16)}, ` +
      `subgroups ${yes(gpu.subgroups)}, timestamp-query ${yes(gpu.timestamps)}`,
    gpu,
    threads: 1,
    forwardTile: [16 * cfg.rm, 16 * cfg.cn],
  };
}

/** The WebGPU backend for host tensors. */
export const gpuBackend: Backend = {
  name: "webgpu",
  features: new Set(["blockMask", "softcap", "dropout"]),
  forward: (p, q, k, v) => gpuForward(p, q, k, v, false) as Promise<AttentionResult>,
  backward: (p, s: SavedForBackward) => gpuBackward(p, s, false) as Promise<Gradients>,
  info,
};
