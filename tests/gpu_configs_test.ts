/**
 * WebGPU kernel configurations against the float64 reference: the forward tiles and backward
 * configurations hardware adapters take (and those tuneGpu may choose there), plain loads, and
 * the decoding kernel's cooperative first phase and loads in flight. Apart from `gpu_test.ts`
 * because on a software rasteriser these kernels compile for minutes on a cold shader cache:
 * as their own file they run beside the rest (`deno test --parallel`).
 *
 * With no adapter at all, every test is reported as ignored.
 */

import assert from "node:assert/strict";
import { attention } from "../mod.ts";
import {
  type BackwardConfig,
  backwardConfig,
  backwardKey,
  backwardShapes,
  checkProblem,
  decodeKernels,
  forwardConfig,
  forwardKey,
  forwardShapes,
  type ForwardTiles,
  type GpuTuning,
  requireGpu,
  setGpuTuning,
} from "../gpu/internal.ts";
import { alibiCases, type Case, checkCase, decodeCases, randomMask, sinkCases } from "./_cases.ts";
import { randomTensor, rng, testAdapter, withGpuTuning } from "./_util.ts";

const ignore = (await testAdapter()) === undefined;

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
    await withGpuTuning({ decode: true, splits: 3, decodeCoop: true }, async () => {
      const r = rng(12);
      for (const dtype of ["f32", "f16"] as const) {
        if (dtype === "f16" && !ctx.f16) return;
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
    });
  },
});

Deno.test({
  name: "webgpu: the decoding kernel's loads in flight change no bit",
  ignore,
  async fn() {
    const ctx = await requireGpu();
    const r = rng(31);
    await withGpuTuning({}, async () => {
      // vec4 keys (d 64; f16: 16-byte keys), scalar keys (d 59); 300 keys end inside a tile
      for (const [d, dtype] of [[64, "f32"], [59, "f32"], [64, "f16"]] as const) {
        if (dtype === "f16" && !ctx.f16) return;
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
    });
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
    await withGpuTuning(tuning, async () => {
      const k = key();
      if (ran.has(k)) return;
      ran.add(k);
      for (const c of cs) await checkCase(c, { backend: "webgpu" });
    });
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
