/**
 * ALiBi beyond the reference comparisons of `alibiCases`: the validation of
 * `options.alibiSlopes`, and slopes of 0 giving exactly the call without ALiBi.
 */

import assert from "node:assert/strict";
import { attention, type AttentionOptions, type Tensor } from "../mod.ts";
import { randomTensor, rng } from "./_util.ts";

const r = rng(4);
const [q, k, v]: Tensor[] = [5, 9, 9].map((n) => randomTensor(r, [2, n, 2, 8], "f32"));

Deno.test("alibi: options.alibiSlopes is validated before anything runs", async () => {
  const call = (alibiSlopes: unknown) =>
    attention(q, k, v, { backend: "js", alibiSlopes } as unknown as AttentionOptions);
  await assert.rejects(
    call([0.5, 0.25]),
    /TypeError: options\.alibiSlopes must be a Float32Array of 2 \(Hq\) or 4 \(batch·Hq\) slopes, got a Array/,
  );
  await assert.rejects(
    call(new Float32Array(3)),
    /RangeError: options\.alibiSlopes\.length is 3; expected 2 \(one slope per query head\) or 4 \(batch·Hq\)/,
  );
  await assert.rejects(
    call(Float32Array.from([0.5, Infinity])),
    /RangeError: options\.alibiSlopes\[1\] is Infinity; slopes must be finite/,
  );
  await assert.rejects(
    attention(q, k, v, { alibi_slopes: new Float32Array(2) } as unknown as AttentionOptions),
    /options\.alibi_slopes.*alibiSlopes/,
  );
});

Deno.test("alibi: zero slopes give the bits of the call without ALiBi", async () => {
  const plain = await attention(q, k, v, { backend: "js", causal: true });
  for (const slopes of [new Float32Array(2), new Float32Array(4)]) {
    const zero = await attention(q, k, v, { backend: "js", causal: true, alibiSlopes: slopes });
    assert.deepEqual(zero.out.data, plain.out.data);
    assert.deepEqual(zero.lse, plain.lse);
  }
});
