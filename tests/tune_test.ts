/**
 * The measured choices (`tuneGpu`): its options are checked before anything runs; it times every
 * candidate, keeps the fastest (the default unless another beats it by a margin), and later calls of that pass, type and width compile and use it
 * and stay exact; a choice other than the default is honoured and exact too.
 */

import assert from "node:assert/strict";
import { tuneGpu } from "../mod.ts";
import {
  backwardConfig,
  backwardKernels,
  backwardShapes,
  checkProblem,
  chooseBackward,
  chooseDecode,
  chooseTiles,
  decodeKernels,
  defaultBackwardTiles,
  defaultPhases,
  defaultTiles,
  forgetDecodeKernels,
  forgetForwardKernels,
  forwardConfig,
  forwardKernel,
  phaseCandidates,
  requireGpu,
  TUNE_MARGIN,
} from "../gpu/internal.ts";
import type { BackwardTiles, GpuContext } from "../gpu/internal.ts";
import { type Case, checkCase, decodeCases } from "./_cases.ts";
import { randomTensor, rng, testAdapter } from "./_util.ts";

const info = await testAdapter();
const ignore = info === undefined;

const ahead = (c: { prefetch?: boolean }) => c.prefetch ? " read ahead" : "";
const tiles = (c: { rm: number; cn: number; kc: number; kv: number; prefetch?: boolean }) =>
  `rm${c.rm} cn${c.cn} kc${c.kc} kv${c.kv}${ahead(c)}`;
const bwdTiles = (c: BackwardTiles & { split?: boolean }) =>
  `rm${c.rm} cn${c.cn} rn${c.rn} cm${c.cm} kc${c.kc} kv${c.kv}${c.split ? " split" : ""}${
    ahead(c)
  }`;
const phases = (c: { coop?: boolean; loads: readonly number[] }) =>
  `${c.coop ? "coop " : ""}loads ${c.loads.join(":")}`;

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
/** Decoding cases at d 64 (width 16): GQA 4 (the cooperative phase's shape), ragged, f16. */
const decoding = decodeCases().filter((c) =>
  ["decode 1 query, 1025 keys, GQA 4", "decode ragged kvLength causal", "decode f16 window"]
    .includes(c.name)
);

/** Puts the defaults back (the choices are per device, and the tests share it). */
function restore(ctx: GpuContext): void {
  chooseTiles(ctx, "f32", 4, defaultTiles(ctx, 4));
  chooseBackward(ctx, "f32", 4, defaultBackwardTiles(ctx, 4, "f32"));
  for (const dtype of ["f32", "f16"] as const) {
    chooseDecode(ctx, dtype, 16, defaultPhases(dtype, 16));
  }
  forgetForwardKernels(ctx);
  forgetDecodeKernels(ctx);
}

/** A well-formed report entry, for the option checks. */
const entry = {
  pass: "forward",
  dtype: "f32",
  headDim: 64,
  choice: "rm4 cn4 kc8 kv16 read ahead",
  candidates: [{ choice: "rm4 cn4 kc8 kv16 read ahead", ms: 1 }],
};

Deno.test("tuneGpu: bad options are clear errors before anything runs", async () => {
  const cases: [unknown, ErrorConstructor | RangeErrorConstructor, RegExp][] = [
    [{ dtype: ["f32"] }, TypeError, /options\.dtype is not an option; did you mean dtypes\?/],
    [{ dtypes: ["f64"] }, TypeError, /options\.dtypes\[0\] must be "f32" or "f16", got string/],
    [{ dtypes: [] }, TypeError, /options\.dtypes must be a non-empty array/],
    [
      { passes: ["sideways"] },
      TypeError,
      /options\.passes\[0\] must be "forward", "backward" or "decode"/,
    ],
    [{ headDims: [64, 0] }, RangeError, /options\.headDims\[1\] must be an integer from 1 to 256/],
    [{ headDims: 64 }, TypeError, /options\.headDims must be a non-empty array, got number/],
    [{ seq: 8 }, RangeError, /options\.seq must be an integer from 16 to 65536, got number \(8\)/],
    [{ heads: "2" }, TypeError, /options\.heads must be an integer from 1 to 65536, got string/],
    [null, TypeError, /tuneGpu options must be an object, got null/],
    [{ reuse: "report" }, TypeError, /options\.reuse must be a tuneGpu report, got string/],
    [{ reuse: { adapter: 1, entries: [] } }, TypeError, /options\.reuse\.adapter must be a string/],
    [
      { reuse: { adapter: "a", entries: [{ ...entry, pass: "fwd" }] } },
      TypeError,
      /options\.reuse\.entries\[0\]\.pass must be "forward", "backward" or "decode", got string/,
    ],
    [
      { reuse: { adapter: "a", entries: [{ ...entry, headDim: 0 }] } },
      TypeError,
      /options\.reuse\.entries\[0\]\.headDim must be an integer from 1 to 256, got number \(0\)/,
    ],
    [
      { reuse: { adapter: "a", entries: [entry, { ...entry, candidates: [{ choice: 1 }] }] } },
      TypeError,
      /options\.reuse\.entries\[1\]\.candidates\[0\] must be \{ choice: string, ms: number \}/,
    ],
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
  name:
    "tuneGpu: times every candidate, keeps the fastest (the default unless another beats it by the margin), and later calls use it exactly",
  ignore,
  async fn() {
    const ctx = await requireGpu();
    try {
      const report = await tuneGpu({ dtypes: ["f32"], headDims: [64, 59], seq: 64, heads: 4 });
      assert.equal(report.adapter, ctx.name);
      assert.equal(report.timer, ctx.timestamps ? "timestamps" : "wall");
      // 59 and 64 share a width in every pass: timed once each, as the first given
      assert.deepEqual(report.entries.map((e) => [e.pass, e.dtype, e.headDim]), [
        ["forward", "f32", 64],
        ["backward", "f32", 64],
        ["decode", "f32", 64],
      ]);
      for (const e of report.entries) {
        assert.ok(e.candidates.length >= 2, `${e.pass}: ${e.candidates.length} candidates`);
        assert.equal(new Set(e.candidates.map((c) => c.choice)).size, e.candidates.length);
        for (const c of e.candidates) assert.ok(Number.isFinite(c.ms) && c.ms > 0, c.choice);
        const fastest = e.candidates.reduce((a, b) => (b.ms < a.ms ? b : a));
        const first = e.candidates[0];
        const kept = fastest.ms < first.ms * (1 - TUNE_MARGIN) ? fastest : first;
        assert.equal(e.choice, kept.choice);
      }
      const [fwd, bwd, dec] = report.entries;
      // the choices serve the width's head dims, in the kernels compiled after the tune
      assert.equal(tiles(forwardConfig(ctx, 59, "f32")), fwd.choice);
      assert.equal(bwdTiles(backwardConfig(ctx, 59, "f32")), bwd.choice);
      const t = (n: number, h: number) => randomTensor(rng(1), [1, n, h, 64]);
      const p = checkProblem({ q: t(33, 2), k: t(33, 2), v: t(33, 2) }, {});
      assert.equal(tiles((await forwardKernel(ctx, p, "f32")).cfg), fwd.choice);
      assert.equal(bwdTiles((await backwardKernels(ctx, p, "f32")).cfg), bwd.choice);
      const pd = checkProblem({ q: t(1, 4), k: t(600, 1), v: t(600, 1) }, {});
      assert.equal(phases((await decodeKernels(ctx, pd, "f32")).cfg), dec.choice);
      await checkCase(d64, { backend: "webgpu" });
      for (const c of decoding.filter((c) => c.dtype === "f32")) {
        await checkCase(c, { backend: "webgpu" });
      }
      // the report, saved and read back, is taken again without timing: every entry the same
      // choice (so every candidate is named alike without compiling), used by later kernels
      restore(ctx);
      const saved = JSON.parse(JSON.stringify(report));
      const again = await tuneGpu({
        dtypes: ["f32"],
        headDims: [59],
        seq: 64,
        heads: 4,
        reuse: saved,
      });
      assert.deepEqual(
        again.entries,
        report.entries.map((e) => ({ ...e, reused: true })),
      );
      assert.equal(tiles(forwardConfig(ctx, 59, "f32")), fwd.choice);
      assert.equal(bwdTiles(backwardConfig(ctx, 59, "f32")), bwd.choice);
      assert.equal(phases((await decodeKernels(ctx, pd, "f32")).cfg), dec.choice);
      // made on another adapter, or a choice that is no longer a candidate: measured
      const small = { passes: ["forward"] as const, dtypes: ["f32"] as const, headDims: [64] };
      for (
        const reuse of [{ ...saved, adapter: `not ${ctx.name}` }, {
          ...saved,
          entries: [{ ...saved.entries[0], choice: "rm1 cn1 kc1 kv1" }],
        }]
      ) {
        const [e] = (await tuneGpu({ ...small, seq: 64, heads: 4, reuse })).entries;
        assert.equal(e.reused, undefined);
        assert.ok(e.candidates.length >= 2 && e.candidates.every((c) => c.ms > 0));
      }
    } finally {
      restore(ctx);
    }
  },
});

Deno.test({
  name: "tuneGpu: choices other than the defaults are compiled, used and exact",
  ignore,
  async fn() {
    const ctx = await requireGpu();
    assert.equal(decoding.length, 3);
    try {
      const other = {
        ...defaultTiles(ctx, 4),
        kc: defaultTiles(ctx, 4).kc === 16 ? 32 : 16,
      };
      chooseTiles(ctx, "f32", 4, other);
      forgetForwardKernels(ctx);
      const t = (n: number, h: number) => randomTensor(rng(2), [1, n, h, 64]);
      const p = checkProblem({ q: t(33, 2), k: t(33, 2), v: t(33, 2) }, {});
      // (f32 reads ahead where the choice does not say otherwise)
      const cfg = (await forwardKernel(ctx, p, "f32")).cfg;
      assert.equal(tiles(cfg), tiles({ ...other, prefetch: true }));
      await checkCase(d64, { backend: "webgpu" });
      // the default tiles with plain loads (f32 reads ahead by default), forward and backward
      chooseTiles(ctx, "f32", 4, { ...defaultTiles(ctx, 4), prefetch: false });
      chooseBackward(ctx, "f32", 4, { ...defaultBackwardTiles(ctx, 4, "f32"), prefetch: false });
      forgetForwardKernels(ctx);
      assert.equal((await forwardKernel(ctx, p, "f32")).cfg.prefetch, false);
      assert.equal((await backwardKernels(ctx, p, "f32")).cfg.prefetch, false);
      await checkCase(d64, { backend: "webgpu" });
      // every backward candidate but the default, forward and backward against the reference
      for (const b of backwardShapes(ctx.software, 4, "f32").slice(1)) {
        chooseBackward(ctx, "f32", 4, b);
        const cfg = (await backwardKernels(ctx, p, "f32")).cfg;
        assert.equal(bwdTiles(cfg), bwdTiles(backwardConfig(ctx, 64, "f32", {}, b)));
        assert.deepEqual([cfg.rm, cfg.cn, cfg.rn, cfg.cm], [b.rm, b.cn, b.rn, b.cm], bwdTiles(b));
        await checkCase(d64, { backend: "webgpu" });
      }
      // every decoding candidate but the default, in both types, on the decoding cases
      for (const dtype of ["f32", "f16"] as const) {
        if (dtype === "f16" && !ctx.f16) continue;
        for (const ph of phaseCandidates(dtype, 16).slice(1)) {
          chooseDecode(ctx, dtype, 16, ph);
          forgetDecodeKernels(ctx);
          const u = (n: number, h: number) => randomTensor(rng(3), [1, n, h, 64], dtype);
          const pd = checkProblem({ q: u(1, 4), k: u(600, 1), v: u(600, 1) }, {});
          const cfg = (await decodeKernels(ctx, pd, dtype)).cfg;
          assert.deepEqual(cfg.loads, ph.loads, `${dtype} ${phases(ph)}`);
          assert.equal(cfg.coop, ph.coop && ctx.subgroupLanes >= 8, `${dtype} ${phases(ph)}`);
          for (const c of decoding.filter((c) => c.dtype === dtype)) {
            await checkCase(c, { backend: "webgpu" });
          }
        }
      }
    } finally {
      restore(ctx);
    }
  },
});
