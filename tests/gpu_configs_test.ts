/**
 * WebGPU forward configurations against the float64 reference: the tiles hardware adapters take
 * (and those tuneGpu may choose there), and the forward and backward with plain loads (a
 * kernel-configuration group: `tests/_configs.ts`). With no adapter at all, every test is
 * reported as ignored.
 */

import assert from "node:assert/strict";
import {
  backwardConfig,
  backwardKey,
  forwardConfig,
  forwardKey,
  forwardShapes,
  type ForwardTiles,
  type GpuTuning,
  requireGpu,
} from "../gpu/internal.ts";
import { type Case, randomMask } from "./_cases.ts";
import { eachConfiguration } from "./_configs.ts";
import { rng, testAdapter } from "./_util.ts";

const ignore = (await testAdapter()) === undefined;

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
