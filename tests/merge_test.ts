import assert from "node:assert/strict";
import {
  attention,
  causalDocument,
  flashMask,
  mergeAttention,
  type Tensor,
  tensor,
  toDense,
} from "../mod.ts";
import { exampleMask, MASK_NAMES, sliceKeys } from "../masks/mod.ts";
import { contextParallel } from "../docs/examples/context_parallel.ts";
import { referenceBackward, referenceForward } from "../reference/attention.ts";
import { assertClose, randomTensor, rng } from "./_util.ts";

/** Keys [a, b) of a [1, n, h, d] tensor. */
function keys(t: Tensor, a: number, b: number): Tensor {
  const row = t.shape[2] * t.shape[3];
  return tensor((t.data as Float32Array).slice(a * row, b * row), [
    1,
    b - a,
    t.shape[2],
    t.shape[3],
  ]);
}

Deno.test("sliceKeys keeps every key's masked rows, causal part included", () => {
  for (const name of MASK_NAMES) {
    const n = 37, { mask } = exampleMask(name, n, 2);
    const dense = toDense(mask);
    for (const [a, b] of [[0, 10], [10, 37], [5, 6], [0, 37]]) {
      const s = sliceKeys(mask, a, b, n);
      const d = toDense(s, { nq: n });
      for (let i = 0; i < n; i++) {
        for (let j = a; j < b; j++) {
          assert.equal(d[i * (b - a) + j - a], dense[i * n + j], `${name} [${a},${b}) (${i},${j})`);
        }
      }
    }
  }
  assert.throws(() => sliceKeys(causalDocument([4]), 3, 3, 4), /need 0 <= start < end <= 4/);
});

Deno.test("mergeAttention of key shards equals attention over all keys (float64 reference)", async () => {
  const rand = rng(8);
  const [n, h, d] = [45, 2, 16];
  const q = randomTensor(rand, [1, n, h, d]), k = randomTensor(rand, [1, n, h, d]);
  const v = randomTensor(rand, [1, n, h, d]);
  // rows [10, 20) see nothing at all; shard 1 sees nothing for many rows
  const mask = causalDocument([10, 20, 15]);
  const blank = flashMask(
    new Int32Array(n * 4).map((_, x) => [10, 20, 0, 0][x % 4]),
    [1, 1, n, 4],
    { causal: false },
  );
  for (const m of [mask, blank]) {
    const cuts = [0, 7, 30, 45];
    const parts = [];
    for (let s = 0; s < 3; s++) {
      parts.push(
        await attention(q, keys(k, cuts[s], cuts[s + 1]), keys(v, cuts[s], cuts[s + 1]), {
          mask: sliceKeys(m, cuts[s], cuts[s + 1], n),
          backend: "js",
        }),
      );
    }
    const merged = mergeAttention(parts);
    const ref = referenceForward(q, k, v, { mask: m });
    const f32 = referenceForward(q, k, v, { mask: m }, Math.fround);
    assertClose("merged out", merged.out, ref.out, f32.out);
    assertClose("merged lse", merged.lse, ref.lse, f32.lse);
  }
  assert.throws(() => mergeAttention([]), /non-empty array/);
  const one = await attention(q, k, v, { backend: "js" });
  assert.throws(
    () => mergeAttention([one, { out: keys(q, 0, 5), lse: new Float32Array(10) }]),
    /parts\[1\].out is \[1,5,2,16\]/,
  );
});

Deno.test("context parallelism over Web Workers is exact, forward and backward", async () => {
  const rand = rng(9);
  const [n, h, d] = [50, 2, 8];
  const [q, k, v, dOut] = [0, 1, 2, 3].map(() => randomTensor(rand, [1, n, h, d]));
  const mask = causalDocument([20, 30]);
  const r = await contextParallel(q, k, v, dOut, mask, 3, "js");
  const ref = referenceForward(q, k, v, { mask }),
    f32 = referenceForward(q, k, v, { mask }, Math.fround);
  assertClose("out", r.out, ref.out, f32.out);
  const g = referenceBackward(q, k, v, dOut, { mask });
  const gf = referenceBackward(q, k, v, dOut, { mask }, Math.fround);
  assertClose("dq", r.dq, g.dq, gf.dq);
  assertClose("dk", r.dk, g.dk, gf.dk);
  assertClose("dv", r.dv, g.dv, gf.dv);
});
