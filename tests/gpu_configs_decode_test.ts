/**
 * The WebGPU decoding kernel's variants against the float64 reference: its cooperative first
 * phase and its loads in flight (a kernel-configuration group: `tests/_configs.ts`). With no
 * adapter at all, every test is reported as ignored.
 */

import assert from "node:assert/strict";
import { attention } from "../mod.ts";
import {
  checkProblem,
  decodeKernels,
  type GpuContext,
  requireGpu,
  setGpuTuning,
} from "../gpu/internal.ts";
import type { DecodeConfig } from "../gpu/decode_wgsl.ts";
import { alibiCases, type Case, checkCase, decodeCases, sinkCases } from "./_cases.ts";
import { randomTensor, rng, testAdapter, withGpuTuning } from "./_util.ts";

const ignore = (await testAdapter()) === undefined;

/** The smallest subgroup of the test device (lavapipe's is 8; 0 without subgroups). */
const lanes = ignore ? 0 : (await requireGpu()).subgroupLanes;

/** Every decoding case, the terms' (sinks, ALiBi), and paged caches. */
function variantCases(): Case[] {
  return [
    ...decodeCases(),
    ...[...sinkCases(), ...alibiCases()].filter((c) => c.nq <= 16),
    // pages of the largest size up to 32 that divides the cache
    ...decodeCases().slice(0, 2).map((c) => {
      let pageSize = 32;
      while (c.nk % pageSize) pageSize--;
      return { ...c, name: `${c.name}, pages of ${pageSize}`, pageSize };
    }),
  ];
}

/** The decoding configuration of one token of 4 query heads against 600 keys, per storage type. */
async function configs(ctx: GpuContext): Promise<[string, DecodeConfig][]> {
  const r = rng(12), out: [string, DecodeConfig][] = [];
  for (const dtype of ctx.f16 ? ["f32", "f16"] as const : ["f32"] as const) {
    const t = (n: number, h: number) => randomTensor(r, [1, n, h, 64], dtype);
    const p = checkProblem({ q: t(1, 4), k: t(600, 1), v: t(600, 1) }, {});
    out.push([dtype, (await decodeKernels(ctx, p, dtype)).cfg]);
  }
  return out;
}

Deno.test({
  name: `webgpu: the decoding kernel's cooperative first phase (8 invocations a key) is exact${
    lanes < 8 && !ignore ? " (needs subgroups of 8 or more)" : ""
  }`,
  ignore: ignore || lanes < 8,
  async fn() {
    const ctx = await requireGpu();
    // the default only in f32 above d 64 (gpu/decode.ts): the d ≤ 64 cases take it only here
    await withGpuTuning(
      { decode: true, splits: 3, decodeCoop: true, decodeLanes: false },
      async () => {
        for (const [dtype, cfg] of await configs(ctx)) {
          assert.ok(cfg.coop, `${dtype}: the variant is taken (subgroups of ${ctx.subgroupLanes})`);
        }
        for (const c of variantCases()) await checkCase(c, { backend: "webgpu" });
      },
    );
  },
});

Deno.test({
  name: `webgpu: the decoding kernel's lane groups (no barrier a tile) are exact${
    lanes < 8 && !ignore ? " (needs subgroups of 8 or more)" : ""
  }`,
  ignore: ignore || lanes < 8,
  async fn() {
    const ctx = await requireGpu();
    // the widest groups the device allows (the default's 32 on an H200), and groups of 8
    for (const decodeLanes of new Set([Math.min(32, lanes), 8])) {
      await withGpuTuning({ decode: true, splits: 3, decodeLanes }, async () => {
        for (const [dtype, cfg] of await configs(ctx)) {
          assert.equal(cfg.lanes, decodeLanes, `${dtype}: the variant is taken`);
        }
        for (const c of variantCases()) {
          await checkCase({ ...c, name: `${c.name} (lane groups of ${decodeLanes})` }, {
            backend: "webgpu",
          });
        }
      });
    }
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
