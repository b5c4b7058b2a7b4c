/**
 * The WASM runtime: picks the relaxed-SIMD or plain-SIMD build of the kernels, owns the one
 * `WebAssembly.Memory` (grown on demand, never shrunk, reused by every call), and a pool of worker
 * threads that run kernel phases on that memory.
 *
 * Loading needs no permissions: the compiled kernels are base64 text in a generated TypeScript
 * module, and the worker is a small script given as a `data:` URL, so importing this library from
 * an http(s) URL works with no `--allow-*` flags. Where code cannot be compiled from bytes
 * (Cloudflare Workers, pages whose content security policy forbids it), the program hands over a
 * precompiled module ({@linkcode setWasmModule}: the `kernels.wasm` that `deno task build:bundle`
 * writes beside the one-file bundle).
 *
 * Threads are an optimisation, never a requirement (`_threads.ts`): the memory is shared where
 * `SharedArrayBuffer` exists (and a page is cross-origin isolated); otherwise the kernels run on
 * an unshared memory on the calling thread. If a worker cannot be created or started, the call
 * runs on the calling thread and later calls do too: a thread-count-invariant result, the same
 * bits. Idle workers never keep the process alive.
 *
 * A phase is one exported kernel run over a list of work items: each participating thread calls
 * `kernel(params, tid, counter, items, nItems)`, which takes item indices from the shared atomic
 * `counter` until the list is exhausted. Which thread computes which item never changes a result:
 * every output element is written by exactly one item, in a fixed order.
 *
 * @module
 */

import { KERNELS, RELAXED_BYTES, SIMD_BYTES } from "./_generated/kernels.ts";
import { inflateRaw } from "./_inflate.ts";
import { sharedMemoryMissing, startThread, type Thread } from "./_threads.ts";
import { unsharedMemoryImport } from "./_unshared.ts";

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
  halvesAt: (src: number, dst: number, n: number, finite: number) => void;
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

/** The bytes of an embedded build, a fresh copy: base64 of one raw DEFLATE stream of both. */
function decode(relaxed: boolean): Uint8Array<ArrayBuffer> {
  const s = atob(KERNELS);
  const packed = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) packed[i] = s.charCodeAt(i);
  const both = inflateRaw(packed);
  if (both.length !== RELAXED_BYTES + SIMD_BYTES) throw new Error("corrupt embedded kernels");
  return relaxed ? both.slice(0, RELAXED_BYTES) : both.slice(RELAXED_BYTES);
}

/**
 * The bytes of an embedded kernel build (tests compile them to stand for builds given to
 * {@linkcode setWasmModule}): relaxed or plain SIMD, importing a shared memory or not.
 */
export function kernelBytes(
  { relaxed = false, unshared = false }: { relaxed?: boolean; unshared?: boolean } = {},
): Uint8Array<ArrayBuffer> {
  const bytes = decode(relaxed);
  return unshared ? unsharedMemoryImport(bytes) : bytes;
}

interface PoolWorker {
  worker: Thread;
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
  afterPost?: (phase: PhaseName, workers: Thread[]) => void;
  /**
   * Replaces how a thread is started (tests make the n-th start fail, as a sandbox or a content
   * security policy would).
   */
  startThread?: typeof startThread;
  /** How long a thread may take to start (default {@linkcode THREAD_START_MS}). */
  startMs?: number;
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

  constructor(options: EngineOptions = {}) {
    let missing = options.unshared ?? sharedMemoryMissing();
    const given = options.module ?? wasmModuleGiven;
    let module: WebAssembly.Module;
    if (given) {
      module = given;
      this.relaxed = relaxedModules.has(given);
    } else {
      const relaxed = decode(true);
      this.relaxed = !options.forceSimd && WebAssembly.validate(relaxed);
      const bytes = this.relaxed ? relaxed : decode(false);
      module = new WebAssembly.Module(missing ? unsharedMemoryImport(bytes) : bytes);
    }
    const memory = (shared: boolean) =>
      new WebAssembly.Memory(
        { initial: 2, maximum: 65536, shared } as WebAssembly.MemoryDescriptor,
      );
    let mem = memory(missing === undefined);
    let instance: WebAssembly.Instance;
    try {
      instance = new WebAssembly.Instance(module, { env: { memory: mem } });
    } catch (e) {
      // a given build imports the other kind of memory: an -unshared build where shared memory
      // exists runs on the calling thread; a shared build needs SharedArrayBuffer
      if (!given || missing !== undefined) {
        throw new Error(
          `the kernel module needs a shared memory, and ${missing}: give setWasmModule a build ` +
            `importing an unshared memory, as the kernels.wasm of deno task build:bundle (${
              (e as Error).message
            })`,
        );
      }
      missing = "the kernel module given to setWasmModule imports an unshared memory";
      mem = memory(false);
      instance = new WebAssembly.Instance(module, { env: { memory: mem } });
    }
    this.module = module;
    this.memory = mem;
    this.exports = instance.exports as unknown as KernelExports;
    this.threadsMissing = missing;
  }

  /**
   * Why calls run on the calling thread only, or undefined while worker threads may be used: no
   * shared memory, or a worker that could not be started.
   */
  threadsMissing: string | undefined;

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
    let pool: PoolWorker[] = [];
    if (threads > 1 && this.threadsMissing === undefined) {
      try {
        pool = await this.#pool(threads);
      } catch (e) {
        // threads are an optimisation: this call and later ones run on the calling thread
        this.threadsMissing = (e as Error).message;
      }
    }
    const i32 = new Int32Array(this.memory.buffer);
    if (pool.length === 0) {
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
      w.worker.post(msg);
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

  /**
   * The first `n` threads of the pool, started as needed. If one cannot be created or started
   * (within {@linkcode THREAD_START_MS}), every thread started by this attempt is terminated and
   * it throws: the pool never keeps a thread that failed to start, and none keeps the process
   * alive.
   */
  async #pool(n: number): Promise<PoolWorker[]> {
    const fresh: PoolWorker[] = [];
    const started: Promise<void>[] = [];
    const start = this.hooks.startThread ?? startThread;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      while (this.#workers.length + fresh.length < n) {
        const w = { pending: undefined } as unknown as PoolWorker;
        w.worker = await start({
          message: (m) => {
            const p = w.pending;
            w.pending = undefined;
            if (m === null) p?.resolve();
            else p?.reject(new Error(`WASM backend worker failed: ${m}`));
          },
          gone: (why) => this.#retire(w, why),
        });
        fresh.push(w);
        w.worker.ref();
        const ready = this.#send(w, { module: this.module, memory: this.memory });
        ready.catch(() => {}); // awaited below, unless a later start fails first
        started.push(ready);
      }
      const late = new Promise<never>((_, reject) => {
        const ms = this.hooks.startMs ?? THREAD_START_MS;
        timer = setTimeout(() => reject(new Error(`not started within ${ms} ms`)), ms);
      });
      await Promise.race([Promise.all(started), late]);
    } catch (e) {
      for (const w of fresh) this.#retire(w, "a thread of its start failed");
      throw new Error(`a worker thread could not be started (${(e as Error)?.message ?? e})`);
    } finally {
      clearTimeout(timer);
      for (const w of fresh) if (!w.dead) w.worker.unref();
    }
    this.#workers.push(...fresh);
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

/** How a worker thread may take to start before the engine runs on the calling thread. */
export const THREAD_START_MS = 10000;

/** Options of an {@linkcode Engine}. */
export interface EngineOptions {
  /** Load the plain SIMD build even where relaxed SIMD is supported (tests of the fallback). */
  forceSimd?: boolean;
  /** A precompiled kernel module instead of compiling the embedded bytes. */
  module?: WebAssembly.Module;
  /** Run on an unshared memory, on the calling thread, for this reason (tests). */
  unshared?: string;
}

let shared: Engine | undefined;
let wasmModuleGiven: WebAssembly.Module | undefined;
const relaxedModules = new WeakSet<WebAssembly.Module>();

/**
 * Makes the WASM backend use `module`, a precompiled build of its kernels, instead of compiling
 * the bytes it embeds: for runtimes that forbid compiling code from bytes (Cloudflare Workers,
 * pages with a content security policy without `wasm-unsafe-eval`). `deno task build:bundle`
 * writes one, `kernels.wasm`, beside the one-file bundle: plain SIMD, importing an unshared memory,
 * so it runs on the calling thread (such runtimes have no worker threads); the relaxed-SIMD and
 * shared-memory (threaded) builds are accepted too. Call it before the first WASM call;
 * `relaxed` says which build it is (only reported by `backendInfo`); `undefined` goes back to the
 * embedded bytes.
 *
 * @example
 * ```ts
 * import { attention, setWasmModule, tensor } from "../mod.ts";
 * import { kernelBytes } from "./internal.ts";
 *
 * // kernelBytes gives the bytes of the kernels.wasm that `deno task build:bundle` writes; a page
 * // would compile `fetch("./kernels.wasm")`, and in Cloudflare Workers
 * // `import kernels from "./kernels.wasm";` gives the compiled module directly
 * const kernels = await WebAssembly.compile(kernelBytes({ unshared: true }));
 * setWasmModule(kernels);
 * const x = tensor(new Float32Array(64).fill(0.5), [1, 8, 1, 8]);
 * await attention(x, x, x, { backend: "wasm" });
 * setWasmModule(undefined);
 * ```
 */
export function setWasmModule(
  module: WebAssembly.Module | undefined,
  options: { relaxed?: boolean } = {},
): void {
  if (module === undefined) {
    wasmModuleGiven = undefined;
    shared = undefined;
    return;
  }
  if (typeof WebAssembly === "undefined" || !(module instanceof WebAssembly.Module)) {
    throw new TypeError("setWasmModule: module must be a WebAssembly.Module");
  }
  const names = WebAssembly.Module.exports(module).map((e) => e.name);
  for (const need of ["forward", "backward", "decode", "pack"]) {
    if (!names.includes(need)) {
      throw new TypeError(
        `setWasmModule: this module has no "${need}" export; it is not a build of this ` +
          "library's kernels (kernels.wasm, written by deno task build:bundle)",
      );
    }
  }
  if (options.relaxed) relaxedModules.add(module);
  wasmModuleGiven = module;
  shared = undefined;
}

/**
 * The process-wide engine, created on first use; `forceSimd` (first call only) loads the plain
 * SIMD build even where relaxed SIMD is supported (tests use it to check the fallback).
 */
export function engine(options: EngineOptions = {}): Engine {
  if (shared) return shared;
  if (typeof WebAssembly === "undefined") {
    throw new Error('backend "wasm": this runtime has no WebAssembly; use backend: "js"');
  }
  try {
    return shared = new Engine(options);
  } catch (e) {
    throw new Error(
      `backend "wasm": the kernels could not be loaded (${(e as Error)?.message ?? e}); ` +
        "where code cannot be compiled from bytes, give setWasmModule a precompiled build " +
        '(the kernels.wasm of deno task build:bundle), or use backend: "js"',
    );
  }
}

/**
 * Replaces the process-wide engine (tests: an engine on unshared memory); undefined makes the
 * next call create one again.
 */
export function replaceEngine(e: Engine | undefined): void {
  shared = e;
}
