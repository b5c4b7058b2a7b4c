/**
 * WebGPU backward configurations against the float64 reference: those hardware adapters take
 * (a kernel-configuration group: `tests/_configs.ts`; the shapes tuneGpu may choose are in
 * `gpu_configs_tune_test.ts`). With no adapter at all, every test is reported as ignored.
 */

import assert from "node:assert/strict";
import { type BackwardConfig, requireGpu } from "../gpu/internal.ts";
import type { Case } from "./_cases.ts";
import { eachBackward, maskedGqa } from "./_configs.ts";
import { rng, testAdapter } from "./_util.ts";

const ignore = (await testAdapter()) === undefined;

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
    const masked = (d: number, dtype: "f32" | "f16" = "f32") => maskedGqa(rand, d, dtype);
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
    const ran = await eachBackward(ctx, "backward", configs);
    assert.ok([...ran].filter((k) => k.includes(":kc16:")).length >= 2, [...ran].join(", "));
    assert.ok([...ran].some((k) => k.includes(":kv32")), "32-wide value chunks");
    assert.ok([...ran].some((k) => k.includes(":rn8:")), "128-key tiles");
    assert.ok([...ran].filter((k) => k.includes(":nt")).length >= 3, "next tile read ahead");
  },
});
