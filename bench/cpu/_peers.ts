/**
 * What the benchmarks compare this library with: onnxruntime-web's WASM backend and native
 * onnxruntime-node running the ONNX graphs of `bench/cpu/_onnx.ts`, behind one {@linkcode Peer}
 * interface (session created once, inputs set once, `run()` timed); and the WASM backend's GEMM
 * micro-kernel baseline.
 *
 * Users: `bench/cpu/compare_cpu.ts` (onnxruntime-web on this library's layout, with the mask),
 * `bench/cpu/wasm_report.ts` and `bench/suites/wasm_bench.ts` (onnxruntime-web on head-major inputs,
 * onnxruntime-node's fused MultiHeadAttention).
 *
 * onnxruntime-node needs `ONNXRUNTIME_NODE_INSTALL=skip` when npm installs it (its CPU binaries
 * ship in the package) and `--allow-ffi` at run time.
 *
 * @module
 */

import type { Tensor } from "../../mod.ts";
import { engine } from "../../wasm/internal.ts";
import { additiveMask, matmulSoftmaxModel, mhaModel } from "./_onnx.ts";

/** A model loaded into an onnxruntime session, with its inputs; `run()` is what gets timed. */
export interface Peer {
  /** For tables: runtime, graph and threads. */
  name: string;
  /** The runtime's package version. */
  version: string;
  /** Sets (or replaces) the f32 input `input`; not timed. */
  setInput(input: string, data: Float32Array, dims: number[]): void;
  /** Runs the model once on the current inputs; resolves to the output `out`. */
  run(): Promise<Float32Array>;
  /** Frees the session. */
  release(): Promise<void>;
}

/** The part of the onnxruntime-web and onnxruntime-node APIs used here (the same in both). */
interface Runtime {
  Tensor: new (type: "float32", data: Float32Array, dims: readonly number[]) => unknown;
  InferenceSession: {
    create(model: Uint8Array, options: Record<string, unknown>): Promise<Session>;
  };
}
interface Session {
  run(feeds: Record<string, never>): Promise<Record<string, { data: unknown }>>;
  release(): Promise<void>;
}

async function peer(
  ort: Runtime,
  model: Uint8Array,
  options: Record<string, unknown>,
  name: string,
  version: string,
): Promise<Peer> {
  const session = await ort.InferenceSession.create(model, options);
  const feeds: Record<string, unknown> = {};
  return {
    name,
    version,
    setInput(input, data, dims) {
      feeds[input] = new ort.Tensor("float32", data, dims);
    },
    async run() {
      return (await session.run(feeds as Record<string, never>)).out.data as Float32Array;
    },
    release: () => session.release(),
  };
}

let webThreads: number | undefined;

/**
 * The onnxruntime packages, imported by a specifier the module graph cannot see, so that they
 * are fetched (about 400 MB) when a comparison runs, not when something that imports this module
 * is type-checked or tested (`deno task check`, `deno task test`).
 */
const ORT_WEB = "npm:onnxruntime-web@1.23.2", ORT_NODE = "npm:onnxruntime-node@1.30.0";

/** The part of either onnxruntime module used here. */
type Ort = Runtime & {
  env: {
    versions: { web?: string; node?: string; common: string };
    wasm: { numThreads: number };
    logLevel: string;
  };
};

const importOrt = async (specifier: string) => (await import(specifier)) as Ort;

/** The version of onnxruntime-web the benches load. */
export async function ortWebVersion(): Promise<string> {
  const ort = await importOrt(ORT_WEB);
  return ort.env.versions.web ?? ort.env.versions.common;
}

/**
 * An onnxruntime-web session of `model` on its WASM execution provider with `threads` threads.
 * onnxruntime-web reads its thread count once, when the first session starts its WASM module, so
 * every session of a process must ask for the same count.
 */
export async function ortWebPeer(model: Uint8Array, threads: number, graph: string): Promise<Peer> {
  const ort = await importOrt(ORT_WEB);
  if (webThreads !== undefined && webThreads !== threads) {
    throw new RangeError(
      `onnxruntime-web already runs with ${webThreads} threads in this process; ${threads} asked`,
    );
  }
  webThreads = threads;
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = "error";
  const version = await ortWebVersion();
  const name = `onnxruntime-web ${version} wasm ${graph} (${threads} thread${plural(threads)})`;
  return await peer(ort, model, { executionProviders: ["wasm"] }, name, version);
}

/** A native onnxruntime-node (CPU) session of `model` with `threads` intra-op threads. */
export async function ortNodePeer(
  model: Uint8Array,
  threads: number,
  graph: string,
): Promise<Peer> {
  const ort = await importOrt(ORT_NODE);
  const version = ort.env.versions.node ?? ort.env.versions.common;
  const name = `onnxruntime-node ${version} ${graph} (${threads} thread${plural(threads)})`;
  const options = { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3 };
  return await peer(ort, model, options, name, version);
}

const plural = (n: number) => (n === 1 ? "" : "s");

/** Head-major copies `[H, N, d]` (times `scale`), or `[H, d, N]` when `transpose`, of batch 0. */
function headMajor(t: Tensor, scale: number, transpose: boolean): Float32Array {
  const [, n, h, d] = t.shape;
  const src = t.data as Float32Array, out = new Float32Array(n * h * d);
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

/**
 * onnxruntime-web (WASM backend) on `matmulSoftmaxModel`: forward attention of batch 0 of q, k, v
 * (f32 `[1, N, H, d]`), no mask. It gets its preferred layout for free: q pre-scaled, k
 * pre-transposed, both prepared here, not timed.
 */
export async function ortWeb(q: Tensor, k: Tensor, v: Tensor, threads: number): Promise<Peer> {
  const [, n, h, d] = q.shape;
  const p = await ortWebPeer(matmulSoftmaxModel(h, n, d), threads, "MatMul-Softmax-MatMul");
  p.setInput("q", headMajor(q, 1 / Math.sqrt(d), false), [h, n, d]);
  p.setInput("kT", headMajor(k, 1, true), [h, d, n]);
  p.setInput("v", headMajor(v, 1, false), [h, n, d]);
  return p;
}

/**
 * Native onnxruntime-node on `mhaModel` (com.microsoft MultiHeadAttention) on f32 q, k, v
 * `[B, N, H, d]`, with `allowed` (when given: a dense `[N, N]` 0/1 matrix, `toDense` of a mask)
 * as an additive attention bias: 0 where visible, −∞ where masked.
 */
export async function ortNode(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  threads: number,
  allowed?: Uint8Array,
): Promise<Peer> {
  const [b, n, h, d] = q.shape;
  const graph = `MHA${allowed ? " + dense mask" : ""}`;
  const p = await ortNodePeer(mhaModel(b, n, h, d, allowed !== undefined), threads, graph);
  for (const [input, t] of [["q", q], ["k", k], ["v", v]] as const) {
    p.setInput(input, t.data as Float32Array, [b, n, h * d]);
  }
  if (allowed) p.setInput("bias", additiveMask(allowed), [1, 1, n, n]);
  return p;
}

// The micro-kernel baseline: C (48 × 64) += Aᵀ·B with K = 64, all in L1, repeated. In the
// engine's memory from 1 MiB: A, B, the calling thread's C, then one C per worker thread (64 KiB
// apart; an attention call in between overwrites them).
const GM = 48, GNV = 16, GK = 64, GEMM_AT = 1 << 20;
const gemmC = (thread: number) => GEMM_AT + (thread + 3) * 65536;

/**
 * The C of the last baseline run on the calling thread (`thread` −1) or on worker thread `thread`
 * of {@linkcode gemmBaselineThreads} (a copy; tests compare them).
 */
export function gemmResult(thread: number): Float32Array {
  return new Float32Array(engine().memory.buffer, gemmC(thread), GM * GNV * 4).slice();
}
/** Flops of one repetition of the GEMM micro-kernel baseline. */
export const GEMM_FLOPS_PER_REP = 2 * GM * GNV * 4 * GK;

/**
 * Runs the GEMM micro-kernel baseline (the attention kernels' own 6×2 f32x4 micro-kernel, relaxed
 * SIMD where supported) for `reps` repetitions on the calling thread; returns elapsed ms.
 */
export function gemmBaseline(reps: number): number {
  const eng = engine();
  eng.ensure(1 << 21);
  const base = GEMM_AT, a = base, b = base + 65536, c = gemmC(-1);
  // A and B afresh each call (an attention call in between reuses this memory), C (and the
  // C of each thread of gemmBaselineThreads) from zero, so that it stays bounded
  const f = new Float32Array(eng.memory.buffer, base, 2 * 16384);
  for (let i = 0; i < f.length; i++) f[i] = ((i * 7919) % 1000) / 1000 - 0.5;
  new Float32Array(eng.memory.buffer, c, 8 * 16384).fill(0);
  const t0 = performance.now();
  eng.exports.gemmBench(a, b, c, GM, GNV, GK, reps);
  return performance.now() - t0;
}

// Two threads of the baseline at once: workers of their own on the engine's module and memory
// (A and B shared, C per thread), so that the machine's two-thread ceiling is measured the same
// way as the one-thread one.
const GEMM_WORKER = `
import { parentPort } from "node:worker_threads";
let ex;
parentPort.on("message", (m) => {
  if (m.module) ex = new WebAssembly.Instance(m.module, { env: { memory: m.memory } }).exports;
  else ex.gemmBench(m.a, m.b, m.c, m.m, m.nv, m.k, m.reps);
  parentPort.postMessage(null);
});
`;
const gemmWorkers: import("node:worker_threads").Worker[] = [];
/** Most worker threads of the baseline: the C's gemmBaseline zeroes (8 from gemmC(−1)) less one. */
const GEMM_MAX_THREADS = 7;

/**
 * Runs the GEMM micro-kernel baseline on `threads` worker threads at once, `reps` repetitions
 * each; returns the wall ms of the slowest (so `threads · reps` repetitions in that time). The
 * workers are started when first needed and stay (unref'd: they do not keep the process alive);
 * a worker that fails rejects the call.
 */
export async function gemmBaselineThreads(reps: number, threads = 2): Promise<number> {
  if (!Number.isInteger(threads) || threads < 1 || threads > GEMM_MAX_THREADS) {
    throw new RangeError(
      `threads must be an integer from 1 to ${GEMM_MAX_THREADS}, got ${threads}`,
    );
  }
  const { Worker } = await import("node:worker_threads");
  const eng = engine();
  gemmBaseline(1); // fills A and B, zeroes the C's
  const url = new URL(`data:text/javascript;base64,${btoa(GEMM_WORKER)}`);
  const call = (w: InstanceType<typeof Worker>, msg: unknown) =>
    new Promise<void>((resolve, reject) => {
      const fail = (e: unknown) => reject(new Error(`GEMM baseline worker failed: ${e}`));
      w.once("error", fail);
      w.once("message", () => {
        w.off("error", fail);
        resolve();
      });
      w.postMessage(msg);
    });
  while (gemmWorkers.length < threads) {
    const w = new Worker(url);
    await call(w, { module: eng.module, memory: eng.memory });
    w.unref();
    gemmWorkers.push(w);
  }
  const t0 = performance.now();
  await Promise.all(
    gemmWorkers.slice(0, threads).map((w, i) => {
      w.ref();
      const msg = { a: GEMM_AT, b: GEMM_AT + 65536, c: gemmC(i), m: GM, nv: GNV, k: GK, reps };
      return call(w, msg).finally(() => w.unref());
    }),
  );
  return performance.now() - t0;
}
