/**
 * What a GPU-resident call costs beyond its kernels: for each shape, the wall time per call of R
 * awaited GPU-resident `attention` calls followed by one read-back (R: `--reps`, or enough calls
 * for 300 ms of kernels, at most 3000; results into preallocated tensors, as a model's layers
 * would call it), and of R calls recorded into the caller's command encoders (one submission per
 * 32 calls), both again with the call prepared once (`prepareAttention`), next to the kernels' own
 * time from timestamp queries; and the decode-loop example's tokens per second for a stack of
 * layers next to the layers × kernel time, each form with and without prepared calls.
 *
 * Then the prefill shapes side by side with onnxruntime-web's WebGPU execution provider in the
 * same process, on the same device and buffers ({@linkcode ortSideBySide}).
 *
 * Run: `deno run -A bench/gpu/call_overhead.ts [--reps 300] [--layers 32] [--max-seq N]
 * [--ort MODULE | --no-ort] [--json FILE]` (`--max-seq` leaves out the prefill shapes longer than
 * N, for software adapters; `--ort` imports onnxruntime-web from a file where no registry is).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  attention,
  fromGpu,
  type GpuArray,
  type GpuTensor,
  prepareAttention,
  tensor,
  toGpu,
  useGpuDevice,
} from "../../mod.ts";
import {
  checkProblem,
  decodeBuffers,
  decodeKernels,
  forwardKernel,
  type GpuContext,
  planDecode,
  planForward,
  requireGpu,
  storage,
  timeKernel,
  usesDecode,
} from "../../gpu/internal.ts";
import { decodeLoop } from "../../docs/examples/decode_loop.ts";
import { mhaModel } from "../cpu/_onnx.ts";

/** One measured shape. */
export interface OverheadRow {
  shape: string;
  /** Calls timed before the one read-back (`--reps`, or more where kernels are short). */
  calls: number;
  /** One read-back of the output when the GPU is idle (Deno's fixed cost of a read-back). */
  readBackMs: number;
  /** Wall time per awaited call, the final read-back shared out over the calls. */
  wallMs: number;
  /** Wall time per call recorded into the caller's encoders, 32 calls a submission. */
  recordedMs: number;
  /** As `wallMs`, with the call prepared once (`prepareAttention`) and run each time. */
  preparedMs: number;
  /** As `recordedMs`, with the call prepared once. */
  preparedRecordedMs: number;
  /** The kernels' time per call (timestamp queries). */
  kernelMs: number;
  /** wallMs − kernelMs. */
  overheadMs: number;
  /** The same call with host arrays in and out (one upload, submission and read-back each). */
  hostMs: number;
}

/** Calls before the clock starts. */
const WARM = 30;

const SHAPES = [
  { name: "decode", batch: 1, nq: 1, nk: 4096, heads: 32, kvHeads: 8, d: 128 },
  ...[128, 1024, 4096].flatMap((n) =>
    [64, 128].map((d) => ({ name: "prefill", batch: 1, nq: n, nk: n, heads: 16, kvHeads: 16, d }))
  ),
];

function random(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = (s / 4294967296) * 2 - 1;
  }
  return x;
}

/** Kernel time of one call of problem `p` on buffers `b`, by timestamp queries. */
async function kernelMs(
  ctx: GpuContext,
  q: GpuTensor,
  k: GpuTensor,
  v: GpuTensor,
  out: GpuTensor,
  lse: GpuArray,
): Promise<number> {
  const p = checkProblem({ q, k, v }, {});
  const b = { q, k, v, out, lse };
  if (usesDecode(p)) {
    const kern = await decodeKernels(ctx, p, "f32");
    const plan = planDecode(ctx, p, { ...b, ...decodeBuffers(ctx, p, kern) }, kern);
    return await timeKernel(ctx, (pass) => plan.encode(pass), 20);
  }
  const plan = planForward(ctx, p, b, await forwardKernel(ctx, p, "f32"));
  return await timeKernel(ctx, (pass) => plan.encode(pass), 20);
}

/**
 * Wall time per call of `reps` calls (after `WARM` uncounted ones, the queue drained), then a
 * read-back of `out`: each call awaited and submitted, or (`record`) recorded into the caller's
 * encoders, one submission per 32 calls, as a model's layers would be.
 */
async function perCall(
  ctx: GpuContext,
  call: (encoder?: GPUCommandEncoder) => Promise<unknown>,
  record: boolean,
  reps: number,
  out: GpuTensor,
): Promise<number> {
  let encoder = record ? ctx.device.createCommandEncoder() : undefined;
  const one = async (i: number) => {
    if (encoder && i % 32 === 31) {
      ctx.device.queue.submit([encoder.finish()]);
      encoder = ctx.device.createCommandEncoder();
    }
    await call(encoder);
  };
  const flush = () => {
    if (!encoder) return;
    ctx.device.queue.submit([encoder.finish()]);
    encoder = ctx.device.createCommandEncoder();
  };
  // warm: compiled, the JIT settled (the first tens of calls run ~2× slower), the queue drained
  for (let i = 0; i < WARM; i++) await one(i);
  flush();
  await fromGpu(out);
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await one(i);
  flush();
  await fromGpu(out);
  return (performance.now() - t0) / reps;
}

/** Measures every shape. */
export async function measure(reps: number, maxSeq = Infinity): Promise<OverheadRow[]> {
  const ctx = await requireGpu();
  const rows: OverheadRow[] = [];
  for (const s of SHAPES.filter((s) => s.nq <= maxSeq)) {
    const up = async (shape: readonly [number, number, number, number], seed: number) =>
      await toGpu(tensor(random(shape[0] * shape[1] * shape[2] * shape[3], seed), shape));
    const q = await up([s.batch, s.nq, s.heads, s.d], 1);
    const k = await up([s.batch, s.nk, s.kvHeads, s.d], 2);
    const v = await up([s.batch, s.nk, s.kvHeads, s.d], 3);
    const out = await up([s.batch, s.nq, s.heads, s.d], 4);
    const lse: GpuArray = {
      buffer: storage(ctx, s.batch * s.heads * s.nq * 4, "lse"),
      length: s.batch * s.heads * s.nq,
    };
    const options = { outputs: { out, lse } };
    const prepared = await prepareAttention(q, k, v, options);
    const once = (encoder?: GPUCommandEncoder) => attention(q, k, v, { ...options, encoder });
    const step = (encoder?: GPUCommandEncoder) => prepared.run({ encoder });
    const kms = await kernelMs(ctx, q, k, v, out, lse);
    // enough calls for 300 ms of kernels (at most 3000): the one read-back's fixed cost (Deno
    // sleeps ~10 ms in it, readBackMs) then adds at most a few µs to a call
    const calls = Math.max(reps, Math.min(3000, Math.ceil(300 / kms)));
    const wallMs = await perCall(ctx, once, false, calls, out);
    const recordedMs = await perCall(ctx, once, true, calls, out);
    const preparedMs = await perCall(ctx, step, false, calls, out);
    const preparedRecordedMs = await perCall(ctx, step, true, calls, out);
    const t0 = performance.now();
    await fromGpu(out); // the GPU is idle: the read-back alone
    const readBackMs = performance.now() - t0;
    // the same call with host arrays: upload, kernels, read-back of out and lse, every call
    const [hq, hk, hv] = await Promise.all([q, k, v].map(fromGpu));
    const hostReps = Math.max(3, Math.min(reps, 10));
    await attention(hq, hk, hv, { backend: "webgpu" });
    const t1 = performance.now();
    for (let i = 0; i < hostReps; i++) await attention(hq, hk, hv, { backend: "webgpu" });
    const hostMs = (performance.now() - t1) / hostReps;
    const shape =
      `${s.name} B=${s.batch} Nq=${s.nq} Nk=${s.nk} Hq=${s.heads} Hk=${s.kvHeads} d=${s.d}`;
    rows.push({
      shape,
      calls,
      readBackMs,
      wallMs,
      recordedMs,
      preparedMs,
      preparedRecordedMs,
      kernelMs: kms,
      overheadMs: wallMs - kms,
      hostMs,
    });
    for (const t of [q, k, v, out, lse]) t.buffer.destroy();
  }
  return rows;
}

/** One shape side by side with onnxruntime-web's WebGPU execution provider. */
export interface OrtRow {
  shape: string;
  /** This library: wall time per awaited GPU-resident call. */
  oursMs: number;
  /** onnxruntime-web: wall time per awaited `session.run` on GPU-resident inputs. */
  ortMs: number;
  /** Largest difference between the two outputs. */
  maxDiff: number;
}

/**
 * This library and onnxruntime-web's WebGPU execution provider (its fused com.microsoft
 * `MultiHeadAttention`) in one process on one device (onnxruntime's, given to `useGpuDevice`), on
 * the same GPU buffers: `[B, N, H, d]` is the `[B, N, H·d]` layout MultiHeadAttention takes. Each
 * side: R awaited calls with outputs on the GPU, then one read-back. `module` is the onnxruntime-web
 * WebGPU module to import (its `dist/ort.webgpu.bundle.min.mjs` where no registry is reachable).
 */
export async function ortSideBySide(
  reps: number,
  maxSeq: number,
  module: string,
): Promise<{ version: string; device: string; rows: OrtRow[] }> {
  // a file path (the carried dist/ort.webgpu.bundle.min.mjs, with ort-wasm-simd-threaded.asyncify
  // .mjs and .wasm beside it, which it loads from there in Deno) is taken from the working directory
  const url = /^(npm|https?|file):/.test(module)
    ? module
    : new URL(module, `file://${Deno.cwd()}/`).href;
  const ort = await import(url);
  ort.env.logLevel = "error";

  const rows: OrtRow[] = [];
  let device = "";
  for (const s of SHAPES.filter((s) => s.name === "prefill" && s.nq <= maxSeq)) {
    const { batch: b, nq: n, heads: h, d } = s;
    const session = await ort.InferenceSession.create(mhaModel(b, n, h, d), {
      executionProviders: ["webgpu"],
      preferredOutputLocation: "gpu-buffer",
    });
    const info = useGpuDevice(await ort.env.webgpu.device);
    device = info?.name ?? "";
    const shape = [b, n, h, d] as const;
    const [q, k, v, out] = await Promise.all(
      [1, 2, 3, 4].map((seed) => toGpu(tensor(random(b * n * h * d, seed), shape))),
    );
    const lse: GpuArray = {
      buffer: (await toGpu(tensor(new Float32Array(b * h * n), [b, h, n, 1]))).buffer,
      length: b * h * n,
    };
    const feeds = Object.fromEntries(
      [["q", q], ["k", k], ["v", v]].map(([name, t]) => [
        name,
        ort.Tensor.fromGpuBuffer((t as GpuTensor).buffer, {
          dataType: "float32",
          dims: [b, n, h * d],
        }),
      ]),
    );
    const options = { outputs: { out, lse } };
    const time = async (call: () => Promise<unknown>, read: () => Promise<Float32Array>) => {
      for (let i = 0; i < WARM; i++) await call();
      await read();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) await call();
      const data = await read();
      return [(performance.now() - t0) / reps, data] as const;
    };
    let last: { out: { getData(): Promise<Float32Array>; dispose(): void } } | undefined;
    const [oursMs, ours] = await time(
      () => attention(q, k, v, options),
      async () => (await fromGpu(out)).data as Float32Array,
    );
    const [ortMs, theirs] = await time(async () => {
      last?.out.dispose();
      last = await session.run(feeds);
    }, () => last!.out.getData());
    let maxDiff = 0;
    for (let i = 0; i < ours.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(ours[i] - theirs[i]));
    }
    rows.push({ shape: `B=${b} N=${n} H=${h} d=${d}`, oursMs, ortMs, maxDiff });
    last?.out.dispose();
    await session.release();
    for (const t of [q, k, v, out, lse]) t.buffer.destroy();
    useGpuDevice(undefined);
  }
  return { version: ort.env.versions?.web ?? "", device, rows };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      reps: { type: "string", default: "300" },
      layers: { type: "string", default: "32" },
      "max-seq": { type: "string" },
      ort: { type: "string", default: "npm:onnxruntime-web@1.23.2/webgpu" },
      "no-ort": { type: "boolean" },
      json: { type: "string" },
    },
  });
  const reps = Number(values.reps), layers = Number(values.layers);
  const ctx = await requireGpu();
  console.log(`device: ${ctx.name}; ${reps} awaited GPU-resident calls, then one read-back`);
  const rows = await measure(reps, Number(values["max-seq"] ?? Infinity));
  console.log(
    "shape                                            calls  wall ms/call  kernel ms  overhead ms  wall/kernel  recorded ms/call  recorded/kernel  prepared: wall/kernel  recorded/kernel  host arrays ms/call  idle read-back ms",
  );
  for (const r of rows) {
    console.log(
      `${r.shape.padEnd(48)} ${String(r.calls).padStart(5)} ${r.wallMs.toFixed(3).padStart(12)} ${
        r.kernelMs.toFixed(3).padStart(10)
      } ${r.overheadMs.toFixed(3).padStart(12)} ${
        (r.wallMs / r.kernelMs).toFixed(2).padStart(12)
      } ${r.recordedMs.toFixed(3).padStart(17)} ${
        (r.recordedMs / r.kernelMs).toFixed(2).padStart(16)
      } ${(r.preparedMs / r.kernelMs).toFixed(2).padStart(22)} ${
        (r.preparedRecordedMs / r.kernelMs).toFixed(2).padStart(16)
      } ${r.hostMs.toFixed(2).padStart(20)} ${r.readBackMs.toFixed(2).padStart(18)}`,
    );
  }
  // the decode example: `layers` layers, 64 tokens against ~4096 cached keys, each layer call
  // awaited or each step's layers recorded into one encoder, each call made anew or prepared
  const o = { layers, steps: 64, prompt: 4096 - 64, cache: 4096, heads: 32, kvHeads: 8, dim: 128 };
  const perLayerKernel = rows[0].kernelMs;
  const loops = [];
  const forms = [[false, false], [true, false], [false, true], [true, true]] as const;
  for (const [record, prepared] of forms) {
    await decodeLoop({ ...o, record, prepared, steps: 16, prompt: 4096 - 16 });
  }
  // two rounds, the second in the opposite order: the host's speed drifts within a run
  for (const round of [0, 1]) {
    for (const [record, prepared] of round ? [...forms].reverse() : forms) {
      const loop = await decodeLoop({ ...o, record, prepared });
      loops.push({ round, record, prepared, ...loop, out: undefined });
      const how = [record ? "recorded, one submission a token" : "", prepared ? "prepared" : ""];
      console.log(
        `decode loop${how.some((x) => x) ? ` (${how.filter((x) => x).join(", ")})` : ""}: ` +
          `${layers} layers × ${o.steps} tokens at Nk≈4096: ` +
          `${loop.tokensPerSecond.toFixed(1)} tokens/s, ${(loop.ms / o.steps).toFixed(2)} ms a ` +
          `token, ${(loop.ms / o.steps / layers).toFixed(3)} ms a layer; ${layers} × kernel ` +
          `time = ${(layers * perLayerKernel).toFixed(2)} ms a token`,
      );
    }
  }
  let ort;
  if (!values["no-ort"]) {
    ort = await ortSideBySide(reps, Number(values["max-seq"] ?? Infinity), values.ort!);
    console.log(
      `\nside by side with onnxruntime-web ${ort.version} WebGPU (MultiHeadAttention), same device ` +
        `(${ort.device}) and buffers, f32, wall time per awaited call:`,
    );
    console.log(
      "shape                        ours ms  onnxruntime-web ms  ours faster  max |diff|",
    );
    for (const r of ort.rows) {
      console.log(
        `${r.shape.padEnd(26)} ${r.oursMs.toFixed(3).padStart(9)} ${
          r.ortMs.toFixed(3).padStart(19)
        } ${(r.ortMs / r.oursMs).toFixed(2).padStart(11)}×  ${r.maxDiff.toExponential(1)}`,
      );
    }
  }
  if (values.json) {
    await Deno.writeTextFile(
      values.json,
      JSON.stringify(
        { date: new Date().toISOString(), device: ctx.name, reps, rows, loops, ort },
        null,
        2,
      ),
    );
  }
}
