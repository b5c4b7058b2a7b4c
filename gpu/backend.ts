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
  Computed,
  GpuOutputs,
  Gradients,
  Problem,
  SavedForBackward,
} from "../types.ts";
import type { GpuArray, GpuTensor, Shape4, Tensor } from "../tensor.ts";
import { checkGpuBuffers, release, storage, upload } from "./buffers.ts";
import { sinksSlot } from "./binding.ts";
import { deviceType, hostTensor, onDevice, requireGpu, submit } from "./dispatch.ts";
import { checkOutputs, checkResident, gpuBuffers, type Named, type OutputSpec } from "./io.ts";
import { adapterInfo, type GpuContext } from "./device.ts";
import {
  type ForwardBuffers,
  forwardConfig,
  forwardKernel,
  planForward,
  rescheduleForward,
} from "./forward.ts";
import { type BackwardBuffers, backwardKernels, planBackward } from "./backward.ts";
import {
  decodeBuffers,
  decodeKernels,
  planDecode,
  rescheduleDecode,
  usesDecode,
} from "./decode.ts";
import { planSinkGrad, sinkGradKernel } from "./sink.ts";

/** How a GPU call hands back its results. */
export interface GpuIo {
  /** Results stay on the GPU (GPU-resident q); otherwise they are read back. */
  resident: boolean;
  /** The caller's tensors to write results into (resident calls). */
  outputs?: GpuOutputs;
  /** Record into this encoder of the caller's instead of submitting (resident calls). */
  encoder?: GPUCommandEncoder;
}

/**
 * The buffers a call creates: destroyed when the call ends (after its submission: the queue
 * keeps them alive for the work already submitted) or, when the work was recorded into the
 * caller's encoder, released to the garbage collector, since the caller has not submitted yet.
 */
class CallBuffers {
  readonly temps: GPUBuffer[] = [];
  add<T extends GPUBuffer>(b: T): T {
    this.temps.push(b);
    return b;
  }
  end(recorded: boolean): void {
    this.temps.forEach(recorded ? release : (t) => t.destroy());
  }
}

/**
 * A submission WebGPU rejected for a destroyed buffer (one destroyed after its probe, which later
 * calls skip): probes the call's buffers again so that the error names the tensor; otherwise
 * rethrows `e`.
 */
async function nameDestroyed(
  ctx: GpuContext,
  buffers: [string, GPUBuffer][],
  e: unknown,
): Promise<never> {
  if (e instanceof Error && /destroy/i.test(e.message)) await checkGpuBuffers(ctx, buffers, true);
  throw e;
}

/** The results of a forward call that stay on the GPU. */
export interface GpuForwardResult {
  out: GpuTensor;
  lse: GpuArray;
}

/**
 * A forward call bound to its tensors: checked against the device and compiled once, then run
 * for any number of steps (each a problem of the same sizes and options, with its own key
 * lengths: `withKvLength`). Its outputs (unless the caller's) are made by the first run and
 * written by every run after it.
 */
export interface GpuForwardCall {
  /** Binds, encodes and submits (or records into `encoder`) one step of the call. */
  run(
    p: Problem,
    encoder?: GPUCommandEncoder,
  ): Promise<Computed<AttentionResult> | GpuForwardResult>;
  /** Destroys the outputs the call made (not the caller's). */
  destroy(): void;
}

/** Forward pass; GPU-resident outputs when `io.resident`. */
export async function gpuForward(
  p: Problem,
  q: Tensor | GpuTensor,
  k: Tensor | GpuTensor,
  v: Tensor | GpuTensor,
  io: GpuIo,
): Promise<Computed<AttentionResult> | GpuForwardResult> {
  return await (await prepareGpuForward(p, q, k, v, io)).run(p, io.encoder);
}

/**
 * Checks a forward call's GPU tensors and outputs on the device and compiles its kernels; the
 * returned call binds and submits ({@linkcode GpuForwardCall}).
 */
export async function prepareGpuForward(
  p0: Problem,
  q: Tensor | GpuTensor,
  k: Tensor | GpuTensor,
  v: Tensor | GpuTensor,
  io: GpuIo,
): Promise<GpuForwardCall> {
  const ctx = await requireGpu();
  const dt = deviceType(ctx, p0.dtype);
  const shape: Shape4 = [p0.batch, p0.nq, p0.heads, p0.headDim];
  const lseLen = p0.batch * p0.heads * p0.nq;
  const inputs: Named = [["q", q], ["k", k], ["v", v]];
  checkResident(ctx, inputs);
  checkOutputs(ctx, io.outputs, [["out", shape], ["lse", lseLen]], dt, inputs, ["q", "k", "v"]);
  const given = io.outputs ?? {};
  const buffers = gpuBuffers([...inputs, ...(Object.entries(given) as Named)]);
  await checkGpuBuffers(ctx, buffers);
  const dec = usesDecode(p0) ? await decodeKernels(ctx, p0, dt) : undefined;
  const kern = dec ? undefined : await forwardKernel(ctx, p0, dt);
  const outBytes = p0.batch * p0.nq * p0.heads * p0.headDim * (dt === "f16" ? 2 : 4);
  // the outputs the call makes: kept when resident, read back and destroyed otherwise
  let made: Partial<GpuForwardResult> = {};
  return {
    destroy() {
      made.out?.buffer.destroy();
      made.lse?.buffer.destroy();
      made = {};
    },
    async run(p, encoder) {
      const call = new CallBuffers();
      let out: GpuTensor | undefined, lse: GpuArray | undefined;
      let fresh: GPUBuffer[] = [];
      try {
        const [o, l] = await submit(ctx, () => {
          const qr = onDevice(ctx, q, dt, "q", call.temps);
          const kr = onDevice(ctx, k, dt, "k", call.temps);
          const vr = onDevice(ctx, v, dt, "v", call.temps);
          const own = (n: number, label: string) => fresh[fresh.push(storage(ctx, n, label)) - 1];
          if (!io.resident) made = {}; // host results: read back, then destroyed with the call
          out = given.out ?? (made.out ??= { buffer: own(outBytes, "out"), shape, dtype: dt });
          lse = given.lse ?? (made.lse ??= { buffer: own(lseLen * 4, "lse"), length: lseLen });
          if (!io.resident) fresh.forEach((b) => call.add(b));
          const b: ForwardBuffers = { q: qr, k: kr, v: vr, out, lse };
          const same = p === p0; // the kernels hold p0's schedule
          const plan = dec
            ? planDecode(
              ctx,
              p,
              { ...b, ...decodeBuffers(ctx, p, dec) },
              same ? dec : rescheduleDecode(dec, p),
            )
            : planForward(ctx, p, b, same ? kern! : rescheduleForward(kern!, p));
          return {
            encode: plan.encode,
            reads: io.resident ? [] : [[out.buffer, outBytes], [lse.buffer, lseLen * 4]],
          };
        }, encoder);
        fresh = [];
        if (io.resident) return { out: out!, lse: lse! };
        return { out: hostTensor(o, shape, p.dtype, dt), lse: new Float32Array(l) };
      } catch (e) {
        // outputs made by a failed run are not kept
        if (made.out && fresh.includes(made.out.buffer)) made.out = undefined;
        if (made.lse && fresh.includes(made.lse.buffer)) made.lse = undefined;
        if (io.resident) fresh.forEach((b) => b.destroy());
        return await nameDestroyed(ctx, buffers, e);
      } finally {
        call.end(encoder !== undefined);
      }
    },
  };
}

/** The tensors of a backward call. */
export interface GpuSaved {
  q: Tensor | GpuTensor;
  k: Tensor | GpuTensor;
  v: Tensor | GpuTensor;
  out: Tensor | GpuTensor;
  dOut: Tensor | GpuTensor;
  lse: Float32Array | GpuArray;
}

/** Backward pass; GPU-resident gradients when `io.resident`. */
export async function gpuBackward(
  p: Problem,
  s: GpuSaved,
  io: GpuIo,
): Promise<
  Computed<Gradients> | { dq: GpuTensor; dk: GpuTensor; dv: GpuTensor; dsinks?: GpuArray }
> {
  const ctx = await requireGpu();
  const dt = deviceType(ctx, p.dtype);
  const qs: Shape4 = [p.batch, p.nq, p.heads, p.headDim];
  const ks: Shape4 = [p.batch, p.nk, p.kvHeads, p.headDim];
  const inputs: Named = [["q", s.q], ["k", s.k], ["v", s.v], ["out", s.out], ["dOut", s.dOut], [
    "lse",
    s.lse,
  ]];
  checkResident(ctx, inputs);
  // out and lse are read by the preprocessing kernel only, which writes none of the gradients
  const specs: OutputSpec[] = [["dq", qs], ["dk", ks], ["dv", ks]];
  if (p.sinks) specs.push(["dsinks", p.heads]);
  checkOutputs(ctx, io.outputs, specs, dt, inputs, ["q", "k", "v", "dOut"]);
  const given = io.outputs ?? {};
  const buffers = gpuBuffers([...inputs, ...(Object.entries(given) as Named)]);
  await checkGpuBuffers(ctx, buffers);
  const kern = await backwardKernels(ctx, p, dt);
  const sinkPipe = p.sinks ? await sinkGradKernel(ctx) : undefined;
  const bytes = dt === "f16" ? 2 : 4;
  const qBytes = p.batch * p.nq * p.heads * p.headDim * bytes;
  const kBytes = p.batch * p.nk * p.kvHeads * p.headDim * bytes;
  const call = new CallBuffers();
  const made: GPUBuffer[] = [];
  const grads: Partial<Record<"dq" | "dk" | "dv", GpuTensor>> = {};
  let dsinks: GpuArray | undefined;
  try {
    const got = await submit(ctx, () => {
      const lse = s.lse instanceof Float32Array
        ? call.add(upload(ctx, s.lse, "lse"))
        : { buffer: s.lse.buffer, offset: s.lse.offset ?? 0 };
      const inputs = {
        q: onDevice(ctx, s.q, dt, "q", call.temps),
        k: onDevice(ctx, s.k, dt, "k", call.temps),
        v: onDevice(ctx, s.v, dt, "v", call.temps),
        out: onDevice(ctx, s.out, dt, "out", call.temps),
        dOut: onDevice(ctx, s.dOut, dt, "dOut", call.temps),
        lse,
      };
      const stats = call.add(storage(ctx, p.batch * p.heads * p.nq * 8, "row stats"));
      for (
        const [name, sh, n] of [["dq", qs, qBytes], ["dk", ks, kBytes], ["dv", ks, kBytes]] as const
      ) {
        grads[name] = given[name] ??
          { buffer: made[made.push(storage(ctx, n, name)) - 1], shape: sh, dtype: dt };
      }
      // the sinks' gradient: from the prep kernel's row stats (gpu/sink.ts)
      if (sinkPipe) {
        dsinks = given.dsinks ??
          { buffer: made[made.push(storage(ctx, p.heads * 4, "dsinks")) - 1], length: p.heads };
      }
      if (!io.resident) made.forEach((b) => call.add(b));
      const b: BackwardBuffers = { ...inputs, stats, dq: grads.dq!, dk: grads.dk!, dv: grads.dv! };
      const plan = planBackward(ctx, p, b, kern);
      const sink = sinkPipe && dsinks
        ? planSinkGrad(ctx, p, sinkPipe, { stats, sinks: sinksSlot(ctx, p), dsinks })
        : undefined;
      return {
        encode: (pass) => {
          plan.encode(pass);
          sink?.encode(pass);
        },
        reads: io.resident ? [] : [
          [grads.dq!.buffer, qBytes],
          [grads.dk!.buffer, kBytes],
          [grads.dv!.buffer, kBytes],
          ...(dsinks ? [[dsinks.buffer, p.heads * 4] as [GPUBuffer, number]] : []),
        ],
      };
    }, io.encoder);
    if (io.resident) {
      return {
        dq: grads.dq!,
        dk: grads.dk!,
        dv: grads.dv!,
        ...(dsinks ? { dsinks } : {}),
      };
    }
    return {
      dq: hostTensor(got[0], qs, p.dtype, dt),
      dk: hostTensor(got[1], ks, p.dtype, dt),
      dv: hostTensor(got[2], ks, p.dtype, dt),
      ...(dsinks ? { dsinks: new Float32Array(got[3]) } : {}),
    };
  } catch (e) {
    if (io.resident) made.forEach((b) => b.destroy());
    return await nameDestroyed(ctx, buffers, e);
  } finally {
    call.end(io.encoder !== undefined);
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
  features: new Set(["blockMask", "softcap", "dropout", "sinks", "alibiSlopes", "blockTable"]),
  forward: (p, q, k, v) =>
    gpuForward(p, q, k, v, { resident: false }) as Promise<Computed<AttentionResult>>,
  backward: (p, s: SavedForBackward) =>
    gpuBackward(p, s, { resident: false }) as Promise<Computed<Gradients>>,
  info,
};
