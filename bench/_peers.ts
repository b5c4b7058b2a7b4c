/**
 * Shared setup of the WASM benchmarks: random inputs, the GEMM micro-kernel baseline, and the
 * peer implementations (onnxruntime-web's WASM backend, native onnxruntime-node) on graphs built in
 * code by `bench/_onnx.ts`.
 *
 * onnxruntime-node needs `ONNXRUNTIME_NODE_INSTALL=skip` when npm installs it (its CPU binaries
 * ship in the package) and `--allow-ffi` at run time.
 *
 * @module
 */

import { type Tensor, tensor } from "../mod.ts";
import { engine } from "../wasm/_runtime.ts";
import { matmulSoftmaxGraph, mhaGraph } from "./_onnx.ts";

/** A random `[b, n, h, d]` f32 tensor with entries in [-0.5, 0.5). */
export function randomInput(b: number, n: number, h: number, d: number, seed = 1): Tensor {
  let s = seed >>> 0;
  const data = new Float32Array(b * n * h * d);
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return tensor(data, [b, n, h, d]);
}

// The micro-kernel baseline: C (48 × 64) += Aᵀ·B with K = 64, all in L1, repeated.
const GM = 48, GNV = 16, GK = 64;
/** Flops of one repetition of the GEMM micro-kernel baseline. */
export const GEMM_FLOPS_PER_REP = 2 * GM * GNV * 4 * GK;

/**
 * Runs the GEMM micro-kernel baseline (the attention kernels' own 6×2 f32x4 micro-kernel, relaxed
 * SIMD where supported) for `reps` repetitions on the calling thread; returns elapsed ms.
 */
export function gemmBaseline(reps: number): number {
  const eng = engine();
  eng.ensure(1 << 21);
  const base = 1 << 20, a = base, b = base + 65536, c = base + 2 * 65536;
  const f = new Float32Array(eng.memory.buffer, base, 3 * 16384);
  if (f[0] === 0) { for (let i = 0; i < f.length; i++) f[i] = ((i * 7919) % 1000) / 1000 - 0.5; }
  // keep C bounded: start from zero each call
  new Float32Array(eng.memory.buffer, c, GM * GNV * 4).fill(0);
  const t0 = performance.now();
  eng.exports.gemmBench(a, b, c, GM, GNV, GK, reps);
  return performance.now() - t0;
}

/** Head-major copies `[H, N, d]` (q scaled by 1/√d) and kᵀ `[H, d, N]` for the ONNX MatMul graph. */
function headMajor(t: Tensor, scale: number, transpose: boolean): Float32Array {
  const [, n, h, d] = t.shape;
  const src = t.data as Float32Array, out = new Float32Array(src.length);
  for (let i = 0; i < n; i++) {
    for (let hh = 0; hh < h; hh++) {
      for (let x = 0; x < d; x++) {
        const v = src[(i * h + hh) * d + x] * scale;
        out[transpose ? (hh * d + x) * n + i : (hh * n + i) * d + x] = v;
      }
    }
  }
  return out;
}

/** A peer that runs forward attention on fixed inputs; `run()` resolves when done. */
export interface Peer {
  name: string;
  run(): Promise<void>;
}

/**
 * onnxruntime-web (WASM backend), MatMul → Softmax → MatMul on head-major inputs, batch 1, no
 * mask. It gets its preferred layout for free: q pre-scaled, k pre-transposed (not timed).
 */
export async function ortWeb(q: Tensor, k: Tensor, v: Tensor, threads: number): Promise<Peer> {
  const ort = await import("onnxruntime-web");
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = "error";
  const [, n, h, d] = q.shape;
  const session = await ort.InferenceSession.create(matmulSoftmaxGraph(h, n, d), {
    executionProviders: ["wasm"],
  });
  const feeds = {
    q: new ort.Tensor("float32", headMajor(q, 1 / Math.sqrt(d), false), [h, n, d]),
    kT: new ort.Tensor("float32", headMajor(k, 1, true), [h, d, n]),
    v: new ort.Tensor("float32", headMajor(v, 1, false), [h, n, d]),
  };
  return {
    name: `onnxruntime-web wasm (${threads} thread)`,
    run: async () => {
      await session.run(feeds);
    },
  };
}

/**
 * Native onnxruntime-node, com.microsoft MultiHeadAttention on `[B, N, H·d]`, with `mask` (when
 * given) as a dense additive `[1, 1, N, N]` attention bias: 0 where visible, −∞ where masked.
 */
export async function ortNode(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  threads: number,
  mask?: Uint8Array,
): Promise<Peer> {
  const ort = await import("onnxruntime-node");
  const [b, n, h, d] = q.shape;
  const session = await ort.InferenceSession.create(mhaGraph(b, n, h, d, mask !== undefined), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
  });
  const shape = [b, n, h * d];
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
    q: new ort.Tensor("float32", q.data as Float32Array, shape),
    k: new ort.Tensor("float32", k.data as Float32Array, shape),
    v: new ort.Tensor("float32", v.data as Float32Array, shape),
  };
  if (mask) {
    const bias = new Float32Array(n * n);
    for (let i = 0; i < bias.length; i++) bias[i] = mask[i] ? 0 : -Infinity;
    feeds.bias = new ort.Tensor("float32", bias, [1, 1, n, n]);
  }
  return {
    name: `onnxruntime-node MHA${mask ? " + dense mask" : ""} (${threads} thread)`,
    run: async () => {
      await session.run(feeds);
    },
  };
}
