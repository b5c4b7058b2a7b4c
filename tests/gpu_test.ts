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
  type BackwardConfig,
  backwardConfig,
  backwardKernels,
  backwardKey,
  backwardShapes,
  checkProblem,
  decodeKernels,
  forwardConfig,
  forwardKernel,
  forwardKey,
  forwardShapes,
  type ForwardTiles,
  type GpuTuning,
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
  randomMask,
  sinkCases,
  standardCases,
} from "./_cases.ts";
import { randomTensor, rng, testAdapter } from "./_util.ts";

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
      const old = setGpuTuning({ decode: true, splits: 3 });
      try {
        await checkCase(c, { backend: "webgpu" });
      } finally {
        setGpuTuning(old);
      }
    },
  });
}

for (const c of decodeCases()) splitDecoding(c);

/** The smallest subgroup of the test device (lavapipe's is 8; 0 without subgroups). */
const lanes = ignore ? 0 : (await requireGpu()).subgroupLanes;

Deno.test({
  name: `webgpu: the decoding kernel's cooperative first phase (8 invocations a key) is exact${
    lanes < 8 && !ignore ? " (needs subgroups of 8 or more)" : ""
  }`,
  ignore: ignore || lanes < 8,
  async fn() {
    const ctx = await requireGpu();
    // the default only in f32 above d 64 (gpu/decode.ts): the d ≤ 64 cases take it only here
    const old = setGpuTuning({ decode: true, splits: 3, decodeCoop: true });
    try {
      const r = rng(12);
      for (const dtype of ["f32", "f16"] as const) {
        if (dtype === "f16" && !ctx.f16) continue;
        const t = (n: number, h: number) => randomTensor(r, [1, n, h, 64], dtype);
        const kern = await decodeKernels(
          ctx,
          checkProblem({ q: t(1, 4), k: t(600, 1), v: t(600, 1) }, {}),
          dtype,
        );
        assert.ok(
          kern.cfg.coop,
          `${dtype}: the variant is taken (subgroups of ${ctx.subgroupLanes})`,
        );
      }
      // every decoding case, the terms' (sinks, ALiBi), and a paged cache
      const cases = [
        ...decodeCases(),
        ...[...sinkCases(), ...alibiCases()].filter((c) => c.nq <= 16),
        // pages of the largest size up to 32 that divides the cache
        ...decodeCases().slice(0, 2).map((c) => {
          let pageSize = 32;
          while (c.nk % pageSize) pageSize--;
          return { ...c, name: `${c.name}, pages of ${pageSize}`, pageSize };
        }),
      ];
      for (const c of cases) await checkCase(c, { backend: "webgpu" });
    } finally {
      setGpuTuning(old);
    }
  },
});

Deno.test({
  name: "webgpu: the decoding kernel's loads in flight change no bit",
  ignore,
  async fn() {
    const ctx = await requireGpu();
    const r = rng(31);
    const old = setGpuTuning({});
    try {
      // vec4 keys (d 64; f16: 16-byte keys), scalar keys (d 59); 300 keys end inside a tile
      for (const [d, dtype] of [[64, "f32"], [59, "f32"], [64, "f16"]] as const) {
        if (dtype === "f16" && !ctx.f16) continue;
        const q = randomTensor(r, [2, 3, 4, d], dtype);
        const k = randomTensor(r, [2, 300, 2, d], dtype),
          v = randomTensor(r, [2, 300, 2, d], dtype);
        const bits: Uint8Array[] = [];
        for (const loads of [[1, 1], [4, 2], [2, 8], [16, 16]] as const) {
          setGpuTuning({ decode: true, splits: 3, decodeCoop: false, decodeLoads: loads });
          const { out, lse } = await attention(q, k, v, { backend: "webgpu", causal: true });
          const one = new Uint8Array(out.data.byteLength + lse.byteLength);
          one.set(new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength));
          one.set(new Uint8Array(lse.buffer, lse.byteOffset, lse.byteLength), out.data.byteLength);
          bits.push(one);
        }
        for (const b of bits.slice(1)) assert.deepEqual(b, bits[0], `d ${d} ${dtype}`);
      }
    } finally {
      setGpuTuning(old);
    }
  },
});

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
    const old = setGpuTuning({ noSubgroups: true });
    try {
      for (
        const c of cases.filter((c) =>
          (full || c.d <= 64) && /causal n=97|GQA|f16 causal|random FlashMask #1/.test(c.name)
        )
      ) {
        await checkCase(c, { backend: "webgpu" });
      }
    } finally {
      setGpuTuning(old);
    }
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
      const old = setGpuTuning({ noSubgroups: true });
      try {
        assert.equal((await decodeKernels(ctx, p, "f32")).cfg.reduceWidth, 0);
      } finally {
        setGpuTuning(old);
      }
    }
    // the shuffles: every other decoding test; the tree here
    const old = setGpuTuning({ noSubgroups: true, decode: true, splits: 3 });
    try {
      for (const c of decodeCases()) await checkCase(c, { backend: "webgpu" });
    } finally {
      setGpuTuning(old);
    }
  },
});

/**
 * Runs each item's cases on the webgpu backend against the reference under its tuning override,
 * once per distinct configuration (`key`, read under the override); returns the keys run.
 */
async function eachConfiguration(
  pass: string,
  items: [GpuTuning, Case[], () => string][],
): Promise<Set<string>> {
  const ran = new Set<string>();
  for (const [tuning, cs, key] of items) {
    const old = setGpuTuning(tuning);
    try {
      const k = key();
      if (ran.has(k)) continue;
      ran.add(k);
      for (const c of cs) await checkCase(c, { backend: "webgpu" });
    } finally {
      setGpuTuning(old);
    }
  }
  console.log(`${pass} configurations run: ${[...ran].join(", ")}`);
  return ran;
}

Deno.test({
  name:
    "webgpu: the forward tiles of hardware adapters, and the others tuneGpu may choose there, match the reference (as fitted to this device's workgroup memory)",
  ignore,
  async fn() {
    // lavapipe runs the small tiles by default; these are what hardware adapters get
    // (gpu/forward.ts) and what tuneGpu may choose there (gpu/tune.ts), d ≤ 128. Each is fitted
    // to this device's workgroup memory as it would be on any other: on lavapipe's 32 KiB the
    // shapes with 32-wide chunks (45 KiB) fit down to 16-wide ones, so those run as they are only
    // where the memory allows (the H200's 48 KiB: tests_webgpu.txt). Each distinct configuration
    // runs once, and there must be several.
    const ctx = await requireGpu();
    const rand = rng(17);
    const one = { batch: 1, heads: 2, kvHeads: 1, dtype: "f32" as const };
    const causal = (d: number): Case => ({
      ...one,
      name: `d=${d} causal 150`,
      nq: 150,
      nk: 150,
      d,
      causal: true,
    });
    const masked = (d: number, nq: number, nk: number, kvHeads: number): Case => ({
      ...one,
      kvHeads,
      name: `d=${d} random mask ${nq}×${nk}`,
      nq,
      nk,
      d,
      mask: randomMask(rand, nq, nk, [1, 2 / kvHeads]),
    });
    const tiles: [ForwardTiles, number, Case[]][] = [
      [forwardShapes(false, 4)[0], 64, [causal(64), masked(59, 97, 201, 2)]],
      [forwardShapes(false, 8)[0], 128, [causal(128), masked(96, 130, 70, 1)]],
    ];
    // the 32-wide chunks themselves, on tiles small enough for 32 KiB
    tiles.push([{ rm: 4, cn: 4, kc: 32, kv: 16 }, 96, [masked(96, 97, 130, 2)]]);
    tiles.push([{ rm: 4, cn: 8, kc: 16, kv: 32 }, 59, [masked(59, 97, 130, 2)]]);
    // double-buffered workgroup memory: an odd count of head-dimension chunks (40 = 3 × 16, the
    // last pair half empty), an even one, plain loads
    tiles.push([{ rm: 4, cn: 4, kc: 16, kv: 16, double: true }, 40, [masked(40, 97, 130, 2)]]);
    tiles.push([{ rm: 4, cn: 8, kc: 8, kv: 16, double: true }, 64, [causal(64)]]);
    tiles.push([{ rm: 4, cn: 4, kc: 8, kv: 16, double: true, prefetch: false }, 59, [
      masked(59, 97, 130, 2),
    ]]);
    // f16 storage (the d=128 default double-buffers in both types)
    if (ctx.f16) {
      tiles.push([{ rm: 4, cn: 4, kc: 16, kv: 16, double: true }, 40, [{
        ...masked(40, 97, 130, 2),
        dtype: "f16",
        name: "f16 d=40 random mask 97×130",
      }]]);
    }
    for (const [dn, d] of [[4, 59], [8, 96]]) {
      for (const t of forwardShapes(false, dn).slice(1)) {
        tiles.push([t, d, [masked(d, 97, 130, 2)]]);
      }
    }
    // (each shape as listed: a flag it does not set is off, not the adapter's default)
    const ran = await eachConfiguration(
      "forward",
      tiles.map((
        [forward, d, cs],
      ) => [
        { forward: { double: false, ...forward } },
        cs,
        () => forwardKey(forwardConfig(ctx, d, cs[0].dtype)),
      ]),
    );
    assert.ok(ran.size >= 7, `${ran.size} distinct configurations`);
    for (const w of ["kc32", "kv32"]) assert.ok([...ran].some((k) => k.includes(`:${w}:`)), w);
    assert.ok([...ran].filter((k) => k.includes(":db")).length >= 3, "double buffers");
  },
});

Deno.test({
  name:
    "webgpu: the backward's hardware configurations (16-wide head-dimension chunks; 128-row and 128-key tiles; 32-wide value chunks, split; the next tile read ahead) match the reference (as fitted to this device's workgroup memory)",
  ignore,
  async fn() {
    // lavapipe's default backward takes 8-wide chunks; hardware adapters take 16-wide ones, 32-wide
    // value chunks where they fit, and 128-key tiles at d ≤ 64 (gpu/backward.ts). Each distinct
    // configuration runs once (forward and backward against the reference), and there must be
    // several with 16-wide chunks.
    const ctx = await requireGpu();
    const rand = rng(29);
    const masked = (d: number, dtype: "f32" | "f16" = "f32"): Case => ({
      name: `${dtype} d=${d} random mask 97×130, GQA 2:1`,
      batch: 1,
      nq: 97,
      nk: 130,
      heads: 2,
      kvHeads: 1,
      d,
      dtype,
      mask: randomMask(rand, 97, 130, [1, 2]),
    });
    const configs: [Partial<BackwardConfig>, Case][] = [
      [{ kc: 16, kv: 16 }, masked(64)],
      [{ kc: 16, kv: 16, rn: 8 }, masked(64)],
      [{ kc: 16, kv: 16 }, masked(96)],
      [{ kc: 16, kv: 32, split: true }, masked(59)],
      // the next tile's first chunk read during this tile's last product: tile lists of 2–3
      // entries with partial tiles, two query heads a key head (the dK/dV kernel's head loop)
      [{ kc: 16, kv: 16, rm: 8, nextTile: true }, masked(128)],
      [{ kc: 8, kv: 16, nextTile: true }, masked(59)],
      [{ kc: 16, kv: 16, rn: 8, nextTile: true, split: true }, masked(96)],
    ];
    // f16 storage: what tuneGpu may choose there (gpu/backward.ts)
    if (ctx.f16) configs.push([{ kc: 16, kv: 16, rm: 8, nextTile: true }, masked(128, "f16")]);
    // every hardware shape tuneGpu may choose (the f16 list differs at d > 64 only)
    for (const [dn, d, types] of [[4, 59, ["f32"]], [8, 96, ["f32", "f16"]]] as const) {
      for (const dtype of types) {
        if (dtype === "f16" && !ctx.f16) continue;
        for (const t of backwardShapes(false, dn, dtype)) configs.push([t, masked(d, dtype)]);
      }
    }
    // (each configuration as listed: a flag it does not set is off, not the adapter's default)
    const ran = await eachConfiguration(
      "backward",
      configs.map(([backward, c]) => [
        { backward: { nextTile: false, ...backward } },
        [c],
        () => backwardKey("dkv", backwardConfig(ctx, c.d, c.dtype)),
      ]),
    );
    assert.ok([...ran].filter((k) => k.includes(":kc16:")).length >= 2, [...ran].join(", "));
    assert.ok([...ran].some((k) => k.includes(":kv32")), "32-wide value chunks");
    assert.ok([...ran].some((k) => k.includes(":rn8:")), "128-key tiles");
    assert.ok([...ran].filter((k) => k.includes(":nt")).length >= 3, "next tile read ahead");
    assert.ok([...ran].some((k) => k.includes(":cm8:")), "128-query dK/dV tiles");
  },
});

Deno.test({
  name:
    "webgpu: the forward and backward match the reference with plain loads, not read ahead (the defaults are every other test's)",
  ignore,
  async fn() {
    // plain loads (each chunk read after the barrier, not during the product before) take another
    // path through every load and store of the tile loops: odd sizes, a ragged last tile, GQA, a
    // mask with partial tiles
    const ctx = await requireGpu();
    const rand = rng(41);
    const cases = (dtype: "f32" | "f16"): Case[] => [
      {
        name: `${dtype} causal 150, d=59, GQA 2:1`,
        batch: 1,
        nq: 150,
        nk: 150,
        heads: 2,
        kvHeads: 1,
        d: 59,
        dtype,
        causal: true,
      },
      {
        name: `${dtype} random mask 97×130, d=96`,
        batch: 2,
        nq: 97,
        nk: 130,
        heads: 2,
        kvHeads: 2,
        d: 96,
        dtype,
        mask: randomMask(rand, 97, 130, [2, 2]),
      },
    ];
    for (const dtype of ["f32", "f16"] as const) {
      assert.equal(forwardConfig(ctx, 96, dtype).prefetch, true, `${dtype} forward`);
      assert.equal(backwardConfig(ctx, 96, dtype).prefetch, true, `${dtype} backward`);
    }
    const plain = (ctx.f16 ? ["f32", "f16"] as const : ["f32"] as const).map((dtype) => {
      const prefetch = false;
      const key = () =>
        `${forwardKey(forwardConfig(ctx, 96, dtype))} ${
          backwardKey("dkv", backwardConfig(ctx, 96, dtype))
        }`;
      return [{ forward: { prefetch }, backward: { prefetch } }, cases(dtype), key] as [
        GpuTuning,
        Case[],
        () => string,
      ];
    });
    const ran = await eachConfiguration("plain loads", plain);
    assert.equal(ran.size, plain.length);
    for (const k of ran) {
      // the forward's and backward's keys say whether they read ahead
      assert.ok(!/:pf\b/.test(k), k);
    }
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
    const old = setGpuTuning({ maxBindingBytes: 20000 });
    try {
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
    } finally {
      setGpuTuning(old);
    }
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
