/**
 * The measured tile choice (`tuneGpu`): its options are checked before anything runs; it times
 * every candidate, keeps the fastest, and later forward calls of that type and width compile and
 * use it and stay exact; a choice other than the default is honoured and exact too.
 */

import assert from "node:assert/strict";
import { tuneGpu } from "../mod.ts";
import {
  checkProblem,
  chooseTiles,
  defaultTiles,
  forgetForwardKernels,
  forwardConfig,
  forwardKernel,
  requireGpu,
} from "../gpu/internal.ts";
import { type Case, checkCase } from "./_cases.ts";
import { randomTensor, rng, testAdapter } from "./_util.ts";

const info = await testAdapter();
const ignore = info === undefined;

const tiles = (c: { rm: number; cn: number; kc: number; kv: number }) =>
  `rm${c.rm} cn${c.cn} kc${c.kc} kv${c.kv}`;

/** A forward case at d 64 (width 4): odd lengths, causal, GQA. */
const d64: Case = {
  name: "tuned tiles: 97 queries, 61 keys, causal, GQA 4:2, d 64",
  batch: 1,
  nq: 97,
  nk: 61,
  heads: 4,
  kvHeads: 2,
  d: 64,
  dtype: "f32",
  causal: true,
};

Deno.test("tuneGpu: bad options are clear errors before anything runs", async () => {
  const cases: [unknown, ErrorConstructor | RangeErrorConstructor, RegExp][] = [
    [{ dtype: ["f32"] }, TypeError, /options\.dtype is not an option; did you mean dtypes\?/],
    [{ dtypes: ["f64"] }, TypeError, /options\.dtypes\[0\] must be "f32" or "f16", got string/],
    [{ dtypes: [] }, TypeError, /options\.dtypes must be a non-empty array/],
    [{ headDims: [64, 0] }, RangeError, /options\.headDims\[1\] must be an integer from 1 to 256/],
    [{ headDims: 64 }, TypeError, /options\.headDims must be a non-empty array, got number/],
    [{ seq: 8 }, RangeError, /options\.seq must be an integer from 16 to 65536, got number \(8\)/],
    [{ heads: "2" }, TypeError, /options\.heads must be an integer from 1 to 65536, got string/],
    [null, TypeError, /tuneGpu options must be an object, got null/],
  ];
  for (const [o, type, message] of cases) {
    await assert.rejects(tuneGpu(o as never), (e: Error) => {
      assert.ok(e instanceof type, `${JSON.stringify(o)}: ${e}`);
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test({
  name: "tuneGpu: times every candidate, keeps the fastest, and forward calls use it exactly",
  ignore,
  async fn() {
    const ctx = await requireGpu();
    try {
      const report = await tuneGpu({ dtypes: ["f32"], headDims: [64, 59], seq: 64, heads: 2 });
      assert.equal(report.adapter, ctx.name);
      assert.equal(report.timer, ctx.timestamps ? "timestamps" : "wall");
      // 59 and 64 share a width: timed once, as the first given
      assert.equal(report.entries.length, 1);
      const [e] = report.entries;
      assert.equal(e.dtype, "f32");
      assert.equal(e.headDim, 64);
      assert.ok(e.candidates.length >= 2, `${e.candidates.length} candidates`);
      assert.equal(new Set(e.candidates.map((c) => c.tiles)).size, e.candidates.length);
      for (const c of e.candidates) assert.ok(Number.isFinite(c.ms) && c.ms > 0, `${c.tiles}`);
      const fastest = e.candidates.reduce((a, b) => (b.ms < a.ms ? b : a));
      assert.equal(e.tiles, fastest.tiles);
      // the choice serves the width's head dims, and the kernels compiled after the tune
      assert.equal(tiles(forwardConfig(ctx, 59, "f32")), e.tiles);
      const t = (n: number) => randomTensor(rng(1), [1, n, 2, 64]);
      const p = checkProblem({ q: t(33), k: t(33), v: t(33) }, {});
      assert.equal(tiles((await forwardKernel(ctx, p, "f32")).cfg), e.tiles);
      await checkCase(d64, { backend: "webgpu" });
    } finally {
      chooseTiles(ctx, "f32", 4, defaultTiles(ctx, 4));
      forgetForwardKernels(ctx);
    }
  },
});

Deno.test({
  name: "tuneGpu: a choice other than the default is compiled, used and exact",
  ignore,
  async fn() {
    const ctx = await requireGpu();
    const other = { ...defaultTiles(ctx, 4), kc: defaultTiles(ctx, 4).kc === 16 ? 32 : 16 };
    assert.notEqual(tiles(other), tiles(defaultTiles(ctx, 4)));
    try {
      chooseTiles(ctx, "f32", 4, other);
      forgetForwardKernels(ctx);
      const t = (n: number) => randomTensor(rng(2), [1, n, 2, 64]);
      const p = checkProblem({ q: t(33), k: t(33), v: t(33) }, {});
      assert.equal(tiles((await forwardKernel(ctx, p, "f32")).cfg), tiles(other));
      await checkCase(d64, { backend: "webgpu" });
    } finally {
      chooseTiles(ctx, "f32", 4, defaultTiles(ctx, 4));
      forgetForwardKernels(ctx);
    }
  },
});
