/**
 * `deno bench bench/suites/forward_bench.ts`: the forward pass on every mask type at one shape, the
 * full (dense) mask as the baseline, so the ratios show what tile skipping buys; and an
 * end-to-end group (mask building, tensor creation, f16 conversion, readback included).
 *
 * @module
 */

import { MASK_NAMES } from "../../masks/mod.ts";
import type { Shape } from "../cli/_run.ts";
import { benchEndToEnd, benchKernel, shapeLabel, suiteBackend } from "./_suite.ts";

const { name: backend } = await suiteBackend();
const shape: Shape = { batch: 1, seq: 256, heads: 2, kvHeads: 2, dim: 64, dtype: "f32" };

const group = `forward ${backend} ${shapeLabel(shape)}`;
for (const mask of MASK_NAMES) {
  benchKernel({ backend, pass: "fwd", shape, mask, group, baseline: mask === "full" });
}
for (const dtype of ["f32", "f16"] as const) {
  const s = { ...shape, dtype };
  const e2e = `forward end-to-end ${backend} ${shapeLabel(s)}`;
  for (const mask of ["full", "causal", "causalDocument"] as const) {
    benchEndToEnd({ backend, shape: s, mask, group: e2e, baseline: mask === "full" });
  }
}
