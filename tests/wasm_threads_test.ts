/**
 * Threads are an optimisation, never a requirement: where a worker cannot be created or never
 * starts, or there is no shared memory, the WASM backend runs on the calling thread with the same
 * bits and keeps no thread; precompiled kernel modules (every build, as `deno task build:bundle`
 * writes one) give the bits of the embedded ones; without WebAssembly, `auto` computes with `js` and says so once.
 */

import assert from "node:assert/strict";
import { backendInfo, setWasmModule } from "../mod.ts";
import { tuning } from "../wasm/backend.ts";
import { Engine, engine, kernelBytes, replaceEngine, startThread } from "../wasm/internal.ts";
import type { Thread } from "../wasm/_threads.ts";
import { runBits, smallProblems } from "./_faults.ts";

tuning.flopsPerThread = 0; // tiny problems still use every thread asked for

const [problem] = smallProblems(1, 5);
const one = { backend: "wasm", threads: 1 } as const;
const three = { backend: "wasm", threads: 3 } as const;

/** Runs `fn` with `eng` as the process-wide engine, then puts the previous one back. */
async function withEngine(eng: Engine, fn: () => Promise<void>): Promise<void> {
  const previous = engine();
  replaceEngine(eng);
  try {
    await fn();
  } finally {
    await eng.terminate();
    replaceEngine(previous);
  }
}

Deno.test("wasm threads: a worker that cannot be created leaves the call on the calling thread", async () => {
  const want = await runBits(problem, one);
  const eng = new Engine();
  const terminated: number[] = [];
  let starts = 0;
  eng.hooks.startThread = async (events) => {
    const n = ++starts;
    if (n === 2) throw new Error("Worker creation is not allowed here"); // as a sandbox says
    const t: Thread = await startThread(events);
    return { ...t, terminate: () => (terminated.push(n), t.terminate()) };
  };
  await withEngine(eng, async () => {
    assert.deepEqual(await runBits(problem, three), want, "the one-thread bits");
    assert.equal(eng.workers, 0, "no thread kept");
    assert.deepEqual(terminated, [1], "the thread that did start was stopped");
    assert.match(eng.threadsMissing ?? "", /could not be started.*not allowed/);
    const info = await backendInfo({ backend: "wasm" });
    assert.equal(info.threads, 1);
    assert.match(info.device, /no worker threads: a worker thread could not be started/);
    assert.deepEqual(await runBits(problem, three), want, "later calls too");
    assert.equal(starts, 2, "and no new attempt");
  });
});

Deno.test("wasm threads: a worker that never answers is given up after its start time", async () => {
  const want = await runBits(problem, one);
  const eng = new Engine();
  let stopped = 0, started = 0;
  eng.hooks.startMs = 200;
  const silent: Thread = {
    post: () => {}, // a thread that never runs (a blocked script)
    ref: () => {},
    unref: () => {},
    terminate: () => Promise.resolve(stopped++),
  };
  eng.hooks.startThread = () => (started++, Promise.resolve({ ...silent }));
  await withEngine(eng, async () => {
    assert.deepEqual(await runBits(problem, three), want);
    assert.ok(started >= 2);
    assert.equal(stopped, started, "every silent thread was stopped");
    assert.match(eng.threadsMissing ?? "", /not started within 200 ms/);
  });
});

Deno.test("wasm threads: without shared memory the kernels run unshared, one thread, same bits", async () => {
  const want = await runBits(problem, one);
  const eng = new Engine({ unshared: "SharedArrayBuffer is not available" });
  assert.ok(!(eng.memory.buffer instanceof SharedArrayBuffer), "an unshared memory");
  await withEngine(eng, async () => {
    assert.deepEqual(await runBits(problem, three), want);
    assert.equal(eng.workers, 0);
  });
});

Deno.test("wasm threads: modules given to setWasmModule (every build) give the embedded kernels' bits", async () => {
  const compile = (relaxed: boolean, unshared: boolean) =>
    WebAssembly.compile(kernelBytes({ relaxed, unshared }));
  for (const build of ["simd", "relaxed"] as const) {
    if (build === "relaxed" && !engine().relaxed) continue; // no relaxed SIMD here
    const embedded = new Engine({ forceSimd: build === "simd" });
    let want: unknown;
    await withEngine(embedded, async () => void (want = await runBits(problem, three)));
    setWasmModule(await compile(build === "relaxed", false), { relaxed: build === "relaxed" });
    try {
      assert.deepEqual(await runBits(problem, three), want, `${build} build`);
      assert.equal(engine().module instanceof WebAssembly.Module, true);
      assert.equal(engine().relaxed, build === "relaxed");
      assert.equal(engine().threadsMissing, undefined, "threads with a given shared build");
    } finally {
      setWasmModule(undefined);
    }
    // the unshared variant, on a runtime without shared memory
    const unshared = new Engine({
      module: await compile(build === "relaxed", true),
      unshared: "test",
    });
    await withEngine(unshared, async () => {
      assert.deepEqual(await runBits(problem, three), want, `${build}, unshared memory`);
    });
  }
  // an -unshared build where shared memory exists: one thread, same bits; a shared build where
  // none exists: an error that names the build to give
  const previous = engine();
  const plain = new Engine({ forceSimd: true });
  let want: unknown;
  await withEngine(plain, async () => void (want = await runBits(problem, three)));
  setWasmModule(await compile(false, true));
  try {
    assert.deepEqual(await runBits(problem, three), want);
    assert.match(
      engine().threadsMissing ?? "",
      /given to setWasmModule imports an unshared memory/,
    );
  } finally {
    await engine().terminate();
    setWasmModule(undefined);
    replaceEngine(previous);
  }
  const shared = await compile(false, false);
  assert.throws(
    () => new Engine({ module: shared, unshared: "SharedArrayBuffer is not available" }),
    /needs a shared memory, and SharedArrayBuffer is not available: give setWasmModule a build importing an unshared memory, as the kernels.wasm of deno task build:bundle/,
  );
  assert.throws(
    () => setWasmModule(new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))),
    /setWasmModule: this module has no "forward" export/,
  );
});

Deno.test("wasm threads: without WebAssembly, auto computes with js and says so once", async () => {
  const script = `
    delete globalThis.WebAssembly;
    const { attention, tensor } = await import(${
    JSON.stringify(new URL("../mod.ts", import.meta.url).href)
  });
    const x = tensor(Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)), [1, 8, 2, 4]);
    const a = await attention(x, x, x, { causal: true });
    const b = await attention(x, x, x, { causal: true, backend: "js" });
    await attention(x, x, x);
    console.log(JSON.stringify([Array.from(a.out.data), Array.from(b.out.data)]));
    await attention(x, x, x, { backend: "wasm" }).catch((e) => console.log(e.message));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim().split("\n");
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const [auto, js] = JSON.parse(stdout[0]);
  assert.deepEqual(auto, js, "auto gave the js bits");
  assert.match(stdout[1], /^backend "wasm": this runtime has no WebAssembly; use backend: "js"/);
  assert.equal(stderr.match(/backend "auto" computes on the CPU with "js" instead/g)?.length, 1);
});
