/**
 * WebGPU backend tests: the standard suite against the float64 reference, kernel variants,
 * GPU-resident tensors, batch splitting under small binding limits, determinism.
 *
 * They run on whatever adapter exists. On a software rasteriser (lavapipe/llvmpipe in CI) each
 * kernel variant takes tens of seconds to compile, so only head dims ≤ 64 run there (one
 * pipeline set per dtype; the split-KV decoding cases, which compile in seconds, run at every head
 * dim); on a hardware GPU, or with GPU_TESTS=full, every case runs. With no
 * adapter at all, every test is reported as ignored and the reason is printed.
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  causalDocument,
  fromGpu,
  readGpuArray,
  stack,
  toGpu,
} from "../mod.ts";
import { exampleMask } from "../masks/mod.ts";
import {
  backwardKernels,
  checkProblem,
  decodeKernels,
  forwardKernel,
  requireGpu,
  setGpuTuning,
} from "../gpu/internal.ts";
import {
  alibiCases,
  type Case,
  checkCase,
  checkMaskedRows,
  decodeCases,
  featureCases,
  sinkCases,
  standardCases,
} from "./_cases.ts";
import { randomTensor, rng, testAdapter, withGpuTuning } from "./_util.ts";

const info = await testAdapter();
if (!info) {
  console.log(
    "WebGPU tests ignored: navigator.gpu.requestAdapter() found no adapter on this machine",
  );
} else {
  console.log(`WebGPU tests on ${info.name} (f16 ${info.f16}, subgroups ${info.subgroups})`);
}
const full = info !== undefined && (!info.software || Deno.env.get("GPU_TESTS") === "full");
const ignore = info === undefined;

// On a software adapter each head dim > 64 compiles its own pipelines for minutes: those cases
// are listed as ignored (GPU_TESTS=full runs them), not left out silently.
const cases: Case[] = standardCases({ large: full });
for (const c of [...cases, ...featureCases()]) {
  const slow = !full && c.d > 64;
  Deno.test({
    name: `webgpu: ${c.name}${slow ? " (software adapter: GPU_TESTS=full runs it)" : ""}`,
    ignore: ignore || slow,
    fn: () => checkCase(c, { backend: "webgpu" }),
  });
}

/** A case on the split-KV decoding kernels, forced, with 3 splits of the keys. */
function splitDecoding(c: Case): void {
  // every head dim, also on a software adapter: the decoding kernels compile in seconds there
  Deno.test({
    name: `webgpu: ${c.name} (split-KV decoding, 3 splits)`,
    ignore,
    async fn() {
      await withGpuTuning({ decode: true, splits: 3 }, async () => {
        await checkCase(c, { backend: "webgpu" });
      });
    },
  });
}

for (const c of decodeCases()) splitDecoding(c);

for (const c of [...sinkCases(), ...alibiCases()]) {
  Deno.test({ name: `webgpu: ${c.name}`, ignore, fn: () => checkCase(c, { backend: "webgpu" }) });
  if (c.nq <= 16) splitDecoding(c);
}

Deno.test({
  name: "webgpu: fully masked rows give 0, -Infinity and zero gradients",
  ignore,
  fn: () => checkMaskedRows({ backend: "webgpu" }),
});

Deno.test({
  name: "webgpu: the workgroup-memory row reduction (no subgroups) matches the reference",
  ignore: ignore || !info?.subgroups,
  async fn() {
    await withGpuTuning({ noSubgroups: true }, async () => {
      for (
        const c of cases.filter((c) =>
          (full || c.d <= 64) && /causal n=97|GQA|f16 causal|random FlashMask #1/.test(c.name)
        )
      ) {
        await checkCase(c, { backend: "webgpu" });
      }
    });
  },
});

Deno.test({
  name:
    "webgpu: the decoding kernel reduces rows by subgroup shuffles where the device has them, else by a tree; both match the reference",
  ignore,
  async fn() {
    const ctx = await requireGpu();
    const r = rng(14);
    const t = (n: number, h: number) => randomTensor(r, [1, n, h, 64], "f32");
    // 4, 8 and 16 rows a workgroup: 64, 32 and 16 invocations a row
    for (const [heads, rows] of [[4, 4], [8, 8], [16, 16]]) {
      const p = checkProblem({ q: t(1, heads), k: t(600, 1), v: t(600, 1) }, {});
      const kern = await decodeKernels(ctx, p, "f32");
      assert.equal(kern.cfg.rows, rows);
      const width = ctx.subgroupLanes >= 2 ? Math.min(32, ctx.subgroupLanes, 256 / rows) : 0;
      assert.equal(kern.cfg.reduceWidth, width, `${rows} rows, subgroups of ${ctx.subgroupLanes}`);
      await withGpuTuning({ noSubgroups: true }, async () => {
        assert.equal((await decodeKernels(ctx, p, "f32")).cfg.reduceWidth, 0);
      });
    }
    // the shuffles: every other decoding test; the tree here
    await withGpuTuning({ noSubgroups: true, decode: true, splits: 3 }, async () => {
      for (const c of decodeCases()) await checkCase(c, { backend: "webgpu" });
    });
  },
});

/** A small problem with a per-batch mask, its inputs and gradients seed. */
function problem(seed: number, dtype: "f32" | "f16" = "f32") {
  const rand = rng(seed);
  const [b, n, h, hk, d] = [3, 45, 4, 2, 23]; // rows of 23 floats: unaligned batch offsets
  const mask = stack([[exampleMask("causalDocument", n, 1).mask], [
    exampleMask("document", n, 2).mask,
  ], [
    exampleMask("slidingWindow", n, 3).mask,
  ]]);
  return {
    q: randomTensor(rand, [b, n, h, d], dtype),
    k: randomTensor(rand, [b, n, hk, d], dtype),
    v: randomTensor(rand, [b, n, hk, d], dtype),
    dOut: randomTensor(rand, [b, n, h, d], dtype),
    mask,
  };
}

Deno.test({
  name: "webgpu: GPU-resident tensors give the same bits as host tensors, forward and backward",
  ignore,
  async fn() {
    const { q, k, v, dOut, mask } = problem(1);
    const host = await attention(q, k, v, { mask, backend: "webgpu" });
    const hg = await attentionBackward({ q, k, v, ...host, dOut }, { mask, backend: "webgpu" });
    const [gq, gk, gv, gdo] = await Promise.all([q, k, v, dOut].map(toGpu));
    const dev = await attention(gq, gk, gv, { mask });
    assert.deepEqual((await fromGpu(dev.out)).data, host.out.data);
    assert.deepEqual(await readGpuArray(dev.lse), host.lse);
    const dg = await attentionBackward({ q: gq, k: gk, v: gv, ...dev, dOut: gdo }, { mask });
    assert.deepEqual((await fromGpu(dg.dq)).data, hg.dq.data);
    assert.deepEqual((await fromGpu(dg.dk)).data, hg.dk.data);
    assert.deepEqual((await fromGpu(dg.dv)).data, hg.dv.data);
    // mixing host and GPU inputs works; the result lives where q does
    const mixed = await attention(q, gk, v, { mask, backend: "webgpu" });
    assert.deepEqual(mixed.out.data, host.out.data);
    await assert.rejects(
      () => attention(gq, gk, gv, { mask, backend: "wasm" }),
      /need backend "webgpu"/,
    );
    for (const t of [gq, gk, gv, gdo, dev.out, dg.dq, dg.dk, dg.dv]) t.buffer.destroy();
    dev.lse.buffer.destroy();
  },
});

Deno.test({
  name: "webgpu: dispatches split over batch chunks under a small binding limit give the same bits",
  ignore,
  async fn() {
    const { q, k, v, dOut, mask } = problem(2);
    const whole = await attention(q, k, v, { mask, backend: "webgpu" });
    const wg = await attentionBackward({ q, k, v, ...whole, dOut }, { mask, backend: "webgpu" });
    // one batch entry of q is 45·4·23·4 = 16560 bytes: force one batch entry per dispatch
    await withGpuTuning({ maxBindingBytes: 20000 }, async () => {
      const split = await attention(q, k, v, { mask, backend: "webgpu" });
      assert.deepEqual(split.out.data, whole.out.data);
      assert.deepEqual(split.lse, whole.lse);
      const sg = await attentionBackward({ q, k, v, ...split, dOut }, { mask, backend: "webgpu" });
      assert.deepEqual([sg.dq.data, sg.dk.data, sg.dv.data], [wg.dq.data, wg.dk.data, wg.dv.data]);
      setGpuTuning({ maxBindingBytes: 1000 });
      await assert.rejects(
        () => attention(q, k, v, { mask, backend: "webgpu" }),
        /one batch entry of q needs a 16560-byte binding; the GPU device allows 1000 \(maxStorageBufferBindingSize; request a larger one/,
      );
    });
  },
});

Deno.test({
  name: "webgpu: same inputs give bit-identical outputs and gradients",
  ignore,
  async fn() {
    const { q, k, v, dOut } = problem(3, info?.f16 ? "f16" : "f32");
    const mask = causalDocument([20, 25]);
    const a = await attention(q, k, v, { mask, backend: "webgpu" });
    const b = await attention(q, k, v, { mask, backend: "webgpu" });
    assert.deepEqual(b.out.data, a.out.data);
    const ga = await attentionBackward({ q, k, v, ...a, dOut }, { mask, backend: "webgpu" });
    const gb = await attentionBackward({ q, k, v, ...a, dOut }, { mask, backend: "webgpu" });
    assert.deepEqual([gb.dq.data, gb.dk.data, gb.dv.data], [ga.dq.data, ga.dk.data, ga.dv.data]);
  },
});

Deno.test({
  name:
    "webgpu: a masked problem's kernels launch its longest tile lists first; an unmasked one's in block order",
  ignore,
  async fn() {
    const ctx = await requireGpu();
    const rand = rng(5);
    // 300 rows: several row and column blocks at every tile size
    const [q, k, v] = [0, 1, 2].map(() => randomTensor(rand, [1, 300, 2, 16]));
    for (const [options, ordered] of [[{}, false], [{ causal: true }, true]] as const) {
      const p = checkProblem({ q, k, v }, options);
      const fwd = await forwardKernel(ctx, p, "f32");
      const bwd = await backwardKernels(ctx, p, "f32");
      assert.equal(fwd.cfg.ordered, ordered, `forward ${JSON.stringify(options)}`);
      assert.equal(bwd.cfg.ordered, ordered, `backward ${JSON.stringify(options)}`);
    }
  },
});

Deno.test({
  name: "auto uses WebGPU only on a hardware adapter (software rasterisers are slower than WASM)",
  ignore,
  async fn() {
    const { q, k, v, mask } = problem(4);
    const auto = await attention(q, k, v, { mask });
    const want = await attention(q, k, v, { mask, backend: info!.software ? "wasm" : "webgpu" });
    assert.deepEqual(auto.out.data, want.out.data);
  },
});
