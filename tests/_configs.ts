/**
 * What the kernel-configuration tests share (`gpu_configs*_test.ts`: one file per group, so that
 * on a software rasteriser's cold shader cache their kernels compile side by side under
 * `deno test --parallel`): running cases once per distinct configuration, and the backward's
 * configurations with their cases.
 */

import {
  type BackwardConfig,
  backwardConfig,
  backwardKey,
  type GpuContext,
  type GpuTuning,
} from "../gpu/internal.ts";
import { type Case, checkCase, randomMask } from "./_cases.ts";
import { withGpuTuning } from "./_util.ts";

/**
 * Runs each item's cases on the webgpu backend against the reference under its tuning override,
 * once per distinct configuration (`key`, read under the override); returns the keys run.
 */
export async function eachConfiguration(
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

/** A 97 × 130 case under a random mask, two query heads on one key head. */
export function maskedGqa(rand: () => number, d: number, dtype: "f32" | "f16" = "f32"): Case {
  return {
    name: `${dtype} d=${d} random mask 97×130, GQA 2:1`,
    batch: 1,
    nq: 97,
    nk: 130,
    heads: 2,
    kvHeads: 1,
    d,
    dtype,
    mask: randomMask(rand, 97, 130, [1, 2]),
  };
}

/**
 * Runs backward configurations (each as listed: a flag it does not set is off, not the adapter's
 * default) with their cases, once per distinct dK/dV kernel; returns the kernels' keys.
 */
export function eachBackward(
  ctx: GpuContext,
  pass: string,
  configs: [Partial<BackwardConfig>, Case][],
): Promise<Set<string>> {
  return eachConfiguration(
    pass,
    configs.map(([backward, c]) => [
      { backward: { nextTile: false, ...backward } },
      [c],
      () => backwardKey("dkv", backwardConfig(ctx, c.d, c.dtype)),
    ]),
  );
}
