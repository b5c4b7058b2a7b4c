/**
 * The backward shapes tuneGpu may choose on a hardware adapter against the float64 reference
 * (a kernel-configuration group: `tests/_configs.ts`). With no adapter at all, every test is
 * reported as ignored.
 */

import assert from "node:assert/strict";
import { type BackwardConfig, backwardShapes, requireGpu } from "../gpu/internal.ts";
import type { Case } from "./_cases.ts";
import { eachBackward, maskedGqa } from "./_configs.ts";
import { rng, testAdapter } from "./_util.ts";

const ignore = (await testAdapter()) === undefined;

Deno.test({
  name:
    "webgpu: every backward shape tuneGpu may choose on a hardware adapter matches the reference (as fitted to this device's workgroup memory)",
  ignore,
  async fn() {
    const ctx = await requireGpu();
    const rand = rng(37);
    const configs: [Partial<BackwardConfig>, Case][] = [];
    // the f16 list differs at d > 64 only
    for (const [dn, d, types] of [[4, 59, ["f32"]], [8, 96, ["f32", "f16"]]] as const) {
      for (const dtype of types) {
        if (dtype === "f16" && !ctx.f16) continue;
        for (const t of backwardShapes(false, dn, dtype)) {
          configs.push([t, maskedGqa(rand, d, dtype)]);
        }
      }
    }
    const ran = await eachBackward(ctx, "backward shapes", configs);
    assert.ok(ran.size >= 6, `${ran.size} distinct configurations`);
    assert.ok([...ran].some((k) => k.includes(":cm8:")), "128-query dK/dV tiles");
  },
});
