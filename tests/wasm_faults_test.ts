/**
 * WASM backend reliability: a worker thread that dies during a call fails that call with an
 * Error (no hang) and the pool recovers; 100 concurrent calls all return the right bits.
 */

import assert from "node:assert/strict";
import { tuning } from "../wasm/backend.ts";
import { engine, type PhaseName } from "../wasm/_runtime.ts";
import { concurrentCalls, rejectsWith, runBits, smallProblems } from "./_faults.ts";
import { randomMask } from "./_cases.ts";
import { randomTensor, rng } from "./_util.ts";

// Run even tiny problems on the requested number of threads, so threads: 2 really uses workers.
tuning.flopsPerThread = 0;

Deno.test("wasm backend: a worker that dies during a call fails it; the pool recovers", async () => {
  // Nk = 200 (three column blocks) and two key heads: the backward phases have items for
  // two threads too
  const rand = rng(3);
  const s = {
    q: randomTensor(rand, [1, 60, 4, 16]),
    k: randomTensor(rand, [1, 200, 2, 16]),
    v: randomTensor(rand, [1, 200, 2, 16]),
    dOut: randomTensor(rand, [1, 60, 4, 16]),
    mask: randomMask(rand, 60, 200, [1, 2]),
  };
  const one = await runBits(s, { backend: "wasm", threads: 1 });
  const two = { backend: "wasm", threads: 2 } as const;
  assert.deepEqual(await runBits(s, two), one, "two threads give the one-thread bits");
  const eng = engine();
  const phases: PhaseName[] = ["pack", "forward", "bwdPrep", "backward", "bwdReduce"];
  for (const phase of phases) {
    let killed = 0;
    eng.hooks.afterPost = (ph, workers) => {
      if (ph !== phase || killed++) return;
      workers[workers.length - 1].terminate(); // the thread dies with its work in progress
    };
    try {
      await rejectsWith(
        runBits(s, two),
        Error,
        new RegExp(`^WASM backend: a worker thread failed during the ${phase} phase .*exited`),
        30_000,
      );
    } finally {
      eng.hooks.afterPost = undefined;
    }
    assert.equal(killed, 1, `the ${phase} phase ran on workers`);
    // the next call starts a new thread and gets the right bits
    assert.deepEqual(await runBits(s, two), one, `after a death in ${phase}`);
    assert.equal(eng.workers, 2, "the pool is back to two threads");
  }
});

Deno.test("wasm backend: every thread dying at once still fails cleanly and recovers", async () => {
  const [s] = smallProblems(1, 4);
  const want = await runBits(s, { backend: "wasm", threads: 1 });
  const three = { backend: "wasm", threads: 3 } as const;
  engine().hooks.afterPost = (_, workers) => workers.forEach((w) => w.terminate());
  try {
    await rejectsWith(runBits(s, three), Error, /worker thread failed during the pack phase/);
  } finally {
    engine().hooks.afterPost = undefined;
  }
  assert.deepEqual(await runBits(s, three), want);
});

Deno.test("wasm backend: 100 concurrent calls from async tasks all return the right bits", () =>
  concurrentCalls((i) => ({ backend: "wasm", threads: 1 + (i % 3) })));

Deno.test("js backend: 100 concurrent calls from async tasks all return the right bits", () =>
  concurrentCalls(() => ({ backend: "js" })));
