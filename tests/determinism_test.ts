/**
 * Determinism: the same inputs give bit-identical outputs and gradients on the same backend,
 * call after call, with other calls in between (which reuse the WASM memory, the GPU's cached
 * schedules and pipelines); and on the WASM backend across thread counts, as it promises.
 */

import assert from "node:assert/strict";
import { attention, attentionBackward, type AttentionOptions, stack, type Tensor } from "../mod.ts";
import { exampleMask } from "../masks/mod.ts";
import { tuning } from "../wasm/backend.ts";
import { randomMask } from "./_cases.ts";
import { randomTensor, rng, testAdapter } from "./_util.ts";

// Run even tiny problems on the requested number of threads, so threads really use workers.
tuning.flopsPerThread = 0;

const info = await testAdapter();

interface Problem {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  dOut: Tensor;
  options: AttentionOptions;
}

/** Odd sizes, GQA 3:1, two batch entries with their own masks; f32 or f16. */
function problem(seed: number, dtype: "f32" | "f16", extra: AttentionOptions = {}): Problem {
  const rand = rng(seed);
  const [b, nq, nk, h, hk, d] = [2, 61, 53, 3, 1, 23];
  return {
    q: randomTensor(rand, [b, nq, h, d], dtype),
    k: randomTensor(rand, [b, nk, hk, d], dtype),
    v: randomTensor(rand, [b, nk, hk, d], dtype),
    dOut: randomTensor(rand, [b, nq, h, d], dtype),
    options: { mask: randomMask(rand, nq, nk, [b, h]), ...extra },
  };
}

/** Every output of forward and backward as raw bits. */
async function bits(p: Problem, backend: AttentionOptions): Promise<Uint32Array[]> {
  const o = { ...p.options, ...backend };
  const { out, lse } = await attention(p.q, p.k, p.v, o);
  const g = await attentionBackward({ q: p.q, k: p.k, v: p.v, out, lse, dOut: p.dOut }, o);
  const u = (x: Float32Array | Uint16Array) =>
    x instanceof Uint16Array
      ? Uint32Array.from(x)
      : new Uint32Array(x.buffer, x.byteOffset, x.length).slice();
  return [u(out.data), u(lse), u(g.dq.data), u(g.dk.data), u(g.dv.data)];
}

const NAMES = ["out", "lse", "dq", "dk", "dv"];

/** Runs `a` three times with `other` calls in between; every run must give the same bits. */
async function repeatable(a: Problem, other: Problem, backend: AttentionOptions): Promise<void> {
  const first = await bits(a, backend);
  for (let round = 0; round < 2; round++) {
    await bits(other, backend); // dirty the state a call could depend on
    const again = await bits(a, backend);
    NAMES.forEach((name, i) => assert.deepEqual(again[i], first[i], `${name}, round ${round}`));
  }
}

const backends: [string, AttentionOptions, boolean][] = [
  // name, options, ignore
  ["js", { backend: "js" }, false],
  ["wasm 1 thread", { backend: "wasm", threads: 1 }, false],
  ["wasm 3 threads", { backend: "wasm", threads: 3 }, false],
  ["webgpu", { backend: "webgpu" }, info === undefined],
];

for (const [name, backend, ignore] of backends) {
  Deno.test({
    name: `${name}: same inputs give bit-identical outputs and gradients, f32 and f16`,
    ignore,
    async fn() {
      await repeatable(problem(1, "f32"), problem(2, "f16"), backend);
      await repeatable(problem(3, "f16"), problem(4, "f32"), backend);
    },
  });
  Deno.test({
    name: `${name}: bit-identical with softcap and dropout`,
    ignore,
    async fn() {
      const extra = { softcap: 5, dropout: { p: 0.3, seed: 77 } };
      await repeatable(problem(5, "f32", extra), problem(6, "f32"), backend);
    },
  });
}

Deno.test("wasm: the same bits for 1, 2 and 3 threads, f16, odd sizes, per-head masks", async () => {
  for (const [seed, dtype] of [[7, "f16"], [8, "f32"]] as const) {
    const p = problem(seed, dtype);
    // long enough for several row and column blocks, so that threads share the work
    const rand = rng(seed);
    const n = 301;
    const big: Problem = {
      q: randomTensor(rand, [1, n, 4, 19], dtype),
      k: randomTensor(rand, [1, n, 2, 19], dtype),
      v: randomTensor(rand, [1, n, 2, 19], dtype),
      dOut: randomTensor(rand, [1, n, 4, 19], dtype),
      options: {
        mask: stack([[
          exampleMask("causalDocument", n).mask,
          exampleMask("shareQuestion", n).mask,
        ]]),
      },
    };
    for (const x of [p, big]) {
      const one = await bits(x, { backend: "wasm", threads: 1 });
      for (const threads of [2, 3]) {
        const got = await bits(x, { backend: "wasm", threads });
        NAMES.forEach((name, i) => assert.deepEqual(got[i], one[i], `${name}, ${threads} threads`));
      }
    }
  }
});
