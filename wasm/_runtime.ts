/**
 * The WASM runtime: picks the relaxed-SIMD or plain-SIMD build of the kernels, owns the one shared
 * `WebAssembly.Memory` (grown on demand, never shrunk, reused by every call), and a pool of worker
 * threads that run kernel phases on that memory.
 *
 * Loading needs no permissions: the compiled kernels are base64 text in a generated TypeScript
 * module, and the worker is a small script given as a `data:` URL, so importing this library from
 * an http(s) URL works with no `--allow-*` flags. Workers are `node:worker_threads` workers, which
 * Deno implements on its web workers; they are used for `unref()`: an idle pool must not keep the
 * process alive (a web `Worker` has no way to say so). They are ref'd only while a call runs.
 *
 * A phase is one exported kernel run over a list of work items: each participating thread calls
 * `kernel(params, tid, counter, items, nItems)`, which takes item indices from the shared atomic
 * `counter` until the list is exhausted. Which thread computes which item never changes a result:
 * every output element is written by exactly one item, in a fixed order.
 *
 * @module
 */

import { Worker } from "node:worker_threads";
import { KERNELS_RELAXED, KERNELS_SIMD } from "./_generated/kernels.ts";

/** Bytes per WebAssembly page. */
export const PAGE_BYTES = 65536;
/** Largest wasm32 memory: 65536 pages, 4 GiB. */
export const MAX_MEMORY_BYTES = 65536 * PAGE_BYTES;
/**
 * Where buffers start. Page 0 holds only the module's static data: read-only constant tables
 * (every instantiation rewrites the same bytes, harmless on the shared memory).
 */
export const HEAP_BASE = PAGE_BYTES;

/** A kernel export: `(params, tid, counter, items, nItems)`. */
type KernelFn = (p: number, tid: number, counter: number, items: number, nItems: number) => void;

/** A GEMM micro-kernel bench export: `(a, b, c, m, nv, k, reps)`. */
type GemmBenchFn = (
  a: number,
  b: number,
  c: number,
  m: number,
  nv: number,
  k: number,
  reps: number,
) => void;

/** The exports of the kernel module. */
export interface KernelExports {
  pack: KernelFn;
  forward: KernelFn;
  bwdPrep: KernelFn;
  backward: KernelFn;
  bwdReduce: KernelFn;
  decodePrep: KernelFn;
  decode: KernelFn;
  decodeCombine: KernelFn;
  /** Index of the first NaN or ±∞ among `n` f32 (or binary16 when `f16` is 1) at `src`, or −1. */
  firstNonFinite: (src: number, n: number, f16: number) => number;
  /** Test hook: Philox4x32-10 of four counters (layout in wasm/assembly/kernels.ts). */
  philoxAt: (io: number) => void;
  /** Test hook: the decode panels' binary16 → f32 conversion of `n` halves. */
  halvesAt: (src: number, dst: number, n: number) => void;
  /** Test hook: the softcap's f32x4 tanh, in place on `n` floats. */
  tanhAt: (io: number, n: number) => void;
  /** The GEMM micro-kernel ceiling (bench baseline), through the TN micro-kernel. */
  gemmBench: GemmBenchFn;
  /** Same through the NN micro-kernel. */
  gemmBenchNN: GemmBenchFn;
}

/** Name of a phase kernel. */
export type PhaseName =
  | "pack"
  | "forward"
  | "bwdPrep"
  | "backward"
  | "bwdReduce"
  | "decodePrep"
  | "decode"
  | "decodeCombine";

/** One phase: a kernel over `nItems` items listed at `items`, taking them from `counter`. */
export interface Phase {
  fn: PhaseName;
  params: number;
  counter: number;
  items: number;
  nItems: number;
}

function decode(b64: string): Uint8Array<ArrayBuffer> {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// The worker: instantiates the module on the shared memory, then runs phases it is sent.
const WORKER_SOURCE = `
import { parentPort } from "node:worker_threads";
let ex;
parentPort.on("message", (m) => {
  try {
    if (m.module) {
      ex = new WebAssembly.Instance(m.module, { env: { memory: m.memory } }).exports;
    } else {
      ex[m.fn](m.params, m.tid, m.counter, m.items, m.nItems);
    }
    parentPort.postMessage(null);
  } catch (e) {
    parentPort.postMessage(String(e && e.stack || e));
  }
});
`;

interface PoolWorker {
  worker: Worker;
  pending?: { resolve: () => void; reject: (e: Error) => void };
  /** Set when the thread has exited or failed; it is out of the pool. */
  dead?: string;
}

/** Internal hooks for fault-injection tests. */
export interface EngineHooks {
  /**
   * Called after a phase's messages have been posted to the workers, with the workers of the
   * call (tests terminate one here to simulate a thread that dies during a call).
   */
  afterPost?: (phase: PhaseName, workers: Worker[]) => void;
}

/** The loaded kernels, their memory and the worker pool. One per process (see {@linkcode engine}). */
export class Engine {
  /** Whether the relaxed-SIMD build was loaded (else the plain SIMD build). */
  readonly relaxed: boolean;
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
  /** The main thread's instance. */
  readonly exports: KernelExports;
  #workers: PoolWorker[] = [];
  #lock: Promise<unknown> = Promise.resolve();
  /** Fault-injection hooks (tests only). */
  hooks: EngineHooks = {};
  /** Phases run so far (a statistic: tests check that rejected calls compute nothing). */
  phasesRun = 0;
  /** Wall time of the last {@linkcode Engine.run} in ms: the kernel phases, without copies. */
  lastRunMs = 0;
  /** Wall time of each phase of the last {@linkcode Engine.run} in ms, in order. */
  lastPhaseMs: number[] = [];

  constructor(options: { forceSimd?: boolean } = {}) {
    const relaxed = decode(KERNELS_RELAXED);
    this.relaxed = !options.forceSimd && WebAssembly.validate(relaxed);
    this.module = new WebAssembly.Module(this.relaxed ? relaxed : decode(KERNELS_SIMD));
    this.memory = new WebAssembly.Memory({ initial: 2, maximum: 65536, shared: true });
    const instance = new WebAssembly.Instance(this.module, { env: { memory: this.memory } });
    this.exports = instance.exports as unknown as KernelExports;
  }

  /** Current size of the shared memory in bytes. */
  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** Number of worker threads started so far. */
  get workers(): number {
    return this.#workers.length;
  }

  /** Grows the memory to at least `bytes` (never shrinks). */
  ensure(bytes: number): void {
    if (bytes > MAX_MEMORY_BYTES) {
      throw new RangeError(`WASM backend: needs ${bytes} bytes, more than a 4 GiB wasm memory`);
    }
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return;
    const pages = Math.ceil((bytes - have) / PAGE_BYTES);
    try {
      this.memory.grow(pages);
    } catch (e) {
      throw new RangeError(
        `WASM backend: could not grow the shared memory to ${bytes} bytes (${
          (e as Error).message
        })`,
      );
    }
  }

  /** Runs `fn` with the engine to itself: calls are serialised (they share one memory). */
  exclusive<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => {});
    return run;
  }

  /**
   * Runs the phases in order on `threads` threads (1: the calling thread, synchronously).
   *
   * If a worker thread dies or fails during a phase, the call fails with an Error once every
   * other thread of the phase has finished with the shared memory (so the next call cannot be
   * overwritten by a straggler); the dead thread leaves the pool and the next call starts a new
   * one.
   */
  async run(phases: Phase[], threads: number): Promise<void> {
    const i32 = new Int32Array(this.memory.buffer);
    if (threads <= 1) {
      const t0 = performance.now();
      this.lastPhaseMs = [];
      for (const ph of phases) {
        const t1 = performance.now();
        i32[ph.counter >> 2] = 0;
        this.phasesRun++;
        this.exports[ph.fn](ph.params, 0, ph.counter, ph.items, ph.nItems);
        this.lastPhaseMs.push(performance.now() - t1);
      }
      this.lastRunMs = performance.now() - t0;
      return;
    }
    const pool = await this.#pool(threads);
    for (const w of pool) w.worker.ref();
    try {
      const t0 = performance.now();
      this.lastPhaseMs = [];
      for (const ph of phases) {
        const t1 = performance.now();
        Atomics.store(i32, ph.counter >> 2, 0);
        this.phasesRun++;
        const sent = pool.map((w, tid) => this.#send(w, { ...ph, tid }));
        this.hooks.afterPost?.(ph.fn, pool.map((w) => w.worker));
        const settled = await Promise.allSettled(sent);
        const failed = settled.find((x) => x.status === "rejected");
        if (failed) {
          const why = (failed as PromiseRejectedResult).reason;
          throw new Error(
            `WASM backend: a worker thread failed during the ${ph.fn} phase ` +
              `(${why?.message ?? why}); the call was abandoned and nothing was returned; ` +
              "the next call starts a new thread",
          );
        }
        this.lastPhaseMs.push(performance.now() - t1);
      }
      this.lastRunMs = performance.now() - t0;
    } finally {
      for (const w of pool) if (!w.dead) w.worker.unref();
    }
  }

  #send(w: PoolWorker, msg: unknown): Promise<void> {
    if (w.dead) return Promise.reject(new Error(w.dead));
    return new Promise<void>((resolve, reject) => {
      w.pending = { resolve, reject };
      w.worker.postMessage(msg);
    });
  }

  /** Takes a thread out of the pool for good, failing the phase it was running. */
  #retire(w: PoolWorker, why: string): void {
    if (w.dead) return;
    w.dead = why;
    this.#workers = this.#workers.filter((x) => x !== w);
    const p = w.pending;
    w.pending = undefined;
    p?.reject(new Error(why));
    w.worker.terminate().catch(() => {});
  }

  async #pool(n: number): Promise<PoolWorker[]> {
    const url = new URL(`data:text/javascript;base64,${btoa(WORKER_SOURCE)}`);
    const fresh: Promise<void>[] = [];
    while (this.#workers.length < n) {
      const w: PoolWorker = { worker: new Worker(url) };
      w.worker.on("message", (m: string | null) => {
        const p = w.pending;
        w.pending = undefined;
        if (m === null) p?.resolve();
        else p?.reject(new Error(`WASM backend worker failed: ${m}`));
      });
      w.worker.on("error", (e: Error) => this.#retire(w, `worker error: ${e?.message ?? e}`));
      w.worker.on("exit", (code: number) => this.#retire(w, `worker exited with code ${code}`));
      this.#workers.push(w);
      w.worker.ref();
      fresh.push(this.#send(w, { module: this.module, memory: this.memory }));
    }
    try {
      await Promise.all(fresh);
    } catch (e) {
      throw new Error(`WASM backend: a worker thread failed to start (${(e as Error).message})`);
    } finally {
      for (const w of this.#workers) w.worker.unref();
    }
    // (fewer than n only if one died since it started: items are shared out, fewer threads do)
    return this.#workers.slice(0, n);
  }

  /** Stops every worker thread (a later call starts them again). */
  async terminate(): Promise<void> {
    const ws = this.#workers;
    this.#workers = [];
    for (const w of ws) w.dead = "the pool was terminated";
    await Promise.all(ws.map((w) => w.worker.terminate()));
  }
}

let shared: Engine | undefined;

/**
 * The process-wide engine, created on first use; `forceSimd` (first call only) loads the plain
 * SIMD build even where relaxed SIMD is supported (tests use it to check the fallback).
 */
export function engine(options: { forceSimd?: boolean } = {}): Engine {
  return shared ??= new Engine(options);
}
