/**
 * Worker threads wherever JavaScript runs, and how many to use. Nothing here is imported
 * statically from `node:`: the library loads in browsers, edge runtimes and bundlers as is.
 *
 * - Deno and Node: `node:worker_threads`, imported on first use. In Deno a web `Worker` keeps the
 *   process alive until it is terminated, and an idle pool must not (a program that made one
 *   call must still exit); `node:worker_threads` workers can be `unref()`'d.
 * - Elsewhere (browsers, Bun, other runtimes with web workers): a module `Worker`, unref'd where
 *   the runtime can (Bun).
 * - No workers at all: {@linkcode startThread} rejects, and the engine runs on the calling thread.
 *
 * A thread runs {@linkcode WORKER_BODY}: it instantiates the kernel module on the shared memory
 * it is sent, then runs the phases it is sent, answering `null` or an error text each time.
 *
 * @module
 */

/** What the engine needs of a thread. */
export interface Thread {
  post(message: unknown): void;
  /** Keeps the process alive while a call runs on the thread (where the runtime has a process). */
  ref(): void;
  /** Lets the process exit while the thread is idle. */
  unref(): void;
  terminate(): Promise<unknown>;
}

/** What a thread reports. */
export interface ThreadEvents {
  message(m: string | null): void;
  /** The thread failed or exited: it is gone. */
  gone(why: string): void;
}

/** The worker's body, after `on(handler)` and `send(message)` are defined for its runtime. */
const WORKER_BODY = `
let ex;
on((m) => {
  try {
    if (m.module) {
      ex = new WebAssembly.Instance(m.module, { env: { memory: m.memory } }).exports;
    } else {
      ex[m.fn](m.params, m.tid, m.counter, m.items, m.nItems);
    }
    send(null);
  } catch (e) {
    send(String(e && e.stack || e));
  }
});
`;

const NODE_WORKER = `import { parentPort } from "node:worker_threads";
const on = (f) => parentPort.on("message", f);
const send = (m) => parentPort.postMessage(m);
${WORKER_BODY}`;

const WEB_WORKER = `const on = (f) => { self.onmessage = (e) => f(e.data); };
const send = (m) => self.postMessage(m);
${WORKER_BODY}`;

const dataUrl = (src: string) => `data:text/javascript;base64,${btoa(src)}`;

interface NodeWorker {
  on(event: string, f: (x: never) => void): void;
  postMessage(m: unknown): void;
  ref(): void;
  unref(): void;
  terminate(): Promise<number>;
}

const runtime = globalThis as unknown as {
  Deno?: unknown;
  process?: { versions?: { node?: string; bun?: string } };
  Worker?: new (url: string, options: { type: "module" }) => Worker & {
    ref?(): void;
    unref?(): void;
  };
  navigator?: { hardwareConcurrency?: number };
};

/** Whether this runtime's threads are `node:worker_threads` (Deno, Node). */
function usesNodeThreads(): boolean {
  if (runtime.Deno !== undefined) return true;
  const v = runtime.process?.versions;
  return v?.node !== undefined && v.bun === undefined;
}

/** `node:worker_threads`, loaded once (a non-literal specifier: bundlers leave it alone). */
let nodeThreads: Promise<{ Worker: new (url: URL) => NodeWorker }> | undefined;
const NODE_THREADS = "node:worker_threads";

/**
 * Starts a thread running the worker body, or rejects (no workers in this runtime, or the
 * runtime refused one: a sandbox, a page's content security policy).
 */
export async function startThread(events: ThreadEvents): Promise<Thread> {
  if (usesNodeThreads()) {
    nodeThreads ??= import(NODE_THREADS);
    const { Worker } = await nodeThreads;
    const w = new Worker(new URL(dataUrl(NODE_WORKER)));
    w.on("message", (m: string | null) => events.message(m));
    w.on("error", (e: Error) => events.gone(`worker error: ${e?.message ?? e}`));
    w.on("exit", (code: number) => events.gone(`worker exited with code ${code}`));
    return {
      post: (m) => w.postMessage(m),
      ref: () => w.ref(),
      unref: () => w.unref(),
      terminate: () => w.terminate(),
    };
  }
  const WebWorker = runtime.Worker;
  if (typeof WebWorker !== "function") throw new Error("this runtime has no Worker");
  const w = new WebWorker(dataUrl(WEB_WORKER), { type: "module" });
  w.onmessage = (e) => events.message(e.data);
  w.onerror = (e) => {
    e.preventDefault?.();
    events.gone(`worker error: ${e.message ?? e}`);
  };
  w.onmessageerror = () => events.gone("worker message error");
  let refd = true;
  return {
    post: (m) => w.postMessage(m),
    // (Bun's workers can be unref'd, and must be ref'd again while a call waits on them)
    ref: () => {
      if (!refd) w.ref?.();
      refd = true;
    },
    unref: () => {
      if (refd) w.unref?.();
      refd = false;
    },
    terminate: () => Promise.resolve(w.terminate()),
  };
}

/**
 * Why threads cannot share the kernels' memory here, or undefined where they can: a
 * `SharedArrayBuffer` (and a page that is cross-origin isolated) is needed.
 */
export function sharedMemoryMissing(): string | undefined {
  if (typeof SharedArrayBuffer === "undefined") return "SharedArrayBuffer is not available";
  if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) {
    return "the page is not cross-origin isolated (serve it with COOP/COEP headers)";
  }
  return undefined;
}

let osCount: number | undefined;
// Node 20 has no navigator: ask node:os once, without a static import (settles before any call
// a program makes after an await; until then one thread is the count)
if (runtime.navigator?.hardwareConcurrency === undefined && usesNodeThreads()) {
  const os = "node:os";
  import(os).then(
    (m: { availableParallelism?: () => number; cpus?: () => unknown[] }) =>
      osCount = m.availableParallelism?.() ?? m.cpus?.().length,
    () => {},
  );
}

/**
 * The machine's logical cores: `navigator.hardwareConcurrency`, else `os.availableParallelism()`
 * (Node without `navigator`), else 1.
 */
export function logicalCores(): number {
  return runtime.navigator?.hardwareConcurrency || osCount || 1;
}
