/**
 * Attention sinks beyond the reference comparisons of `sinkCases`: the sink gradient against
 * finite differences (of the float64 reference, and of a backend's own forward), the exact
 * values of rows that see no key, the validation of `options.sinks`, and GPU-resident calls.
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  fromGpu,
  gpuDevice,
  readGpuArray,
  toFloat32,
  toGpu,
} from "../mod.ts";
import { localWindow } from "../masks/mod.ts";
import { referenceBackward, referenceForward } from "../reference/attention.ts";
import { assertClose, randomTensor, rng, testAdapter } from "./_util.ts";

const shape = { batch: 2, nq: 7, nk: 11, heads: 3, kvHeads: 1, d: 8 };

function inputs(seed: number) {
  const r = rng(seed), { batch, nq, nk, heads, kvHeads, d } = shape;
  return {
    q: randomTensor(r, [batch, nq, heads, d], "f32"),
    k: randomTensor(r, [batch, nk, kvHeads, d], "f32"),
    v: randomTensor(r, [batch, nk, kvHeads, d], "f32"),
    dOut: randomTensor(r, [batch, nq, heads, d], "f32"),
    sinks: Float32Array.from([0.7, -1.5, 2.5]),
  };
}

Deno.test("sinks: the reference's dsinks equal finite differences of Σ dOut ∘ out", () => {
  const { q, k, v, dOut, sinks } = inputs(3);
  const opt = { causal: true, sinks };
  const g = referenceBackward(q, k, v, dOut, opt).dsinks!;
  const dO = toFloat32(dOut);
  const loss = (s: Float32Array | number[]) => {
    const out = referenceForward(q, k, v, { causal: true, sinks: s }).out;
    return out.reduce((a, x, i) => a + x * dO[i], 0);
  };
  for (let h = 0; h < 3; h++) {
    const e = 1e-5, up = [...sinks], down = [...sinks];
    up[h] += e;
    down[h] -= e;
    const fd = (loss(up) - loss(down)) / (2 * e);
    assert.ok(Math.abs(g[h] - fd) <= 1e-7 * Math.max(1, Math.abs(fd)), `h ${h}: ${g[h]} vs ${fd}`);
  }
});

Deno.test("sinks: js dsinks equal finite differences of its own forward", async () => {
  const { q, k, v, dOut, sinks } = inputs(5);
  const options: AttentionOptions = { backend: "js", mask: localWindow(7, 11, [3, 0]), sinks };
  const { out, lse } = await attention(q, k, v, options);
  const { dsinks } = await attentionBackward({ q, k, v, out, lse, dOut }, options);
  const dO = toFloat32(dOut);
  const loss = async (s: Float32Array) => {
    const o = toFloat32((await attention(q, k, v, { ...options, sinks: s })).out);
    return o.reduce((a, x, i) => a + x * dO[i], 0);
  };
  for (let h = 0; h < 3; h++) {
    const e = 1e-2, up = sinks.slice(), down = sinks.slice();
    up[h] += e;
    down[h] -= e;
    const fd = (await loss(up) - await loss(down)) / (2 * e);
    // central differences of a float32 output: O(e²) truncation plus 2^-24/e of rounding
    assert.ok(Math.abs(dsinks![h] - fd) <= 2e-4 * Math.max(1, Math.abs(fd)), `h ${h}`);
  }
});

Deno.test("sinks: a row that sees no key gets out 0 and lse σ_h exactly; dsinks only with sinks", async () => {
  const { q, k, v, dOut, sinks } = inputs(7);
  // kvLength 0 for batch entry 1: its rows see nothing
  const options: AttentionOptions = { backend: "js", kvLength: [11, 0], causal: true, sinks };
  const { out, lse } = await attention(q, k, v, options);
  const o = toFloat32(out), { nq, heads, d } = shape;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < nq; i++) {
      assert.equal(lse[(1 * heads + h) * nq + i], sinks[h]);
      for (let x = 0; x < d; x++) assert.equal(o[((1 * nq + i) * heads + h) * d + x], 0);
    }
  }
  const plain = await attentionBackward({ q, k, v, out, lse, dOut }, { backend: "js" });
  assert.equal(plain.dsinks, undefined);
});

Deno.test("sinks: options.sinks is validated before anything runs", async () => {
  const { q, k, v } = inputs(1);
  const call = (sinks: unknown) =>
    attention(q, k, v, { backend: "js", sinks } as unknown as AttentionOptions);
  await assert.rejects(
    call([1, 2, 3]),
    (e) =>
      e instanceof TypeError &&
      /options\.sinks must be a Float32Array of 3 logits \(one per query head\), got a Array/
        .test(e.message),
  );
  await assert.rejects(
    call(new Float32Array(2)),
    /RangeError: options\.sinks\.length is 2; expected 3 \(one logit per query head\)/,
  );
  await assert.rejects(
    call(Float32Array.from([0, NaN, 0])),
    /RangeError: options\.sinks\[1\] is NaN; sink logits must be finite/,
  );
  await assert.rejects(
    attention(q, k, v, { head_sink: new Float32Array(3) } as unknown as AttentionOptions),
    /options\.head_sink.*sinks/,
  );
  // the caller's array is copied: changing it after the call changes nothing
  const s = Float32Array.from([1, 1, 1]);
  const a = await attention(q, k, v, { backend: "js", sinks: s });
  const b = await attention(q, k, v, { backend: "js", sinks: Float32Array.from([1, 1, 1]) });
  assert.deepEqual(a.lse, b.lse);
  assert.deepEqual(Array.from(s), [1, 1, 1]);
});

Deno.test({
  name: "sinks: GPU-resident forward and backward (dsinks a GPU array) match the js backend",
  ignore: await testAdapter() === undefined,
  async fn() {
    const { q, k, v, dOut, sinks } = inputs(9);
    const options: AttentionOptions = { causal: true, sinks };
    const js = await attention(q, k, v, { ...options, backend: "js" });
    const gjs = await attentionBackward({ q, k, v, ...js, dOut }, { ...options, backend: "js" });
    const gq = await toGpu(q), gk = await toGpu(k), gv = await toGpu(v), gd = await toGpu(dOut);
    const r = await attention(gq, gk, gv, options);
    const g = await attentionBackward(
      { q: gq, k: gk, v: gv, out: r.out, lse: r.lse, dOut: gd },
      options,
    );
    assert.ok(g.dsinks, "dsinks on the GPU");
    assert.equal(g.dsinks.length, 3);
    const near = (what: string, a: ArrayLike<number>, b: ArrayLike<number>) =>
      assertClose(what, a, Float64Array.from(b), b, { floor: 2 ** -19 });
    near("out", toFloat32(await fromGpu(r.out)), toFloat32(js.out));
    near("lse", await readGpuArray(r.lse), js.lse);
    near("dsinks", await readGpuArray(g.dsinks), gjs.dsinks!);
    near("dq", toFloat32(await fromGpu(g.dq)), toFloat32(gjs.dq));
    // into the caller's buffer (at an offset), as the other gradients can be
    const device = (await gpuDevice())!;
    const buffer = device.createBuffer({
      size: 512,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    });
    const mine = { buffer, length: 3, offset: 256 };
    const g2 = await attentionBackward(
      { q: gq, k: gk, v: gv, out: r.out, lse: r.lse, dOut: gd },
      { ...options, outputs: { dsinks: mine } },
    );
    assert.equal(g2.dsinks, mine);
    assert.deepEqual(await readGpuArray(mine), await readGpuArray(g.dsinks));
    await assert.rejects(
      attentionBackward(
        { q: gq, k: gk, v: gv, out: r.out, lse: r.lse, dOut: gd },
        { causal: true, outputs: { dsinks: mine } },
      ),
      /options\.outputs\.dsinks is not an output of this call; it takes dq, dk, dv/,
    );
  },
});
