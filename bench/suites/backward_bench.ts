/**
 * `deno bench bench/suites/backward_bench.ts`: the backward pass (dq, dk, dv from the saved lse) on
 * every mask type at one shape, the full mask as the baseline; and the same with GQA
 * (4 query heads sharing 1 key/value head), where dk and dv sum over the group.
 *
 * @module
 */

import { MASK_NAMES } from "../../masks/mod.ts";
import type { Shape } from "../cli/_run.ts";
import { benchKernel, shapeLabel, suiteBackend } from "./_suite.ts";

const { name: backend } = await suiteBackend("bwd");
const shape: Shape = { batch: 1, seq: 256, heads: 2, kvHeads: 2, dim: 64, dtype: "f32" };

const group = `backward ${backend} ${shapeLabel(shape)}`;
for (const mask of MASK_NAMES) {
  benchKernel({ backend, pass: "bwd", shape, mask, group, baseline: mask === "full" });
}
const gqa: Shape = { ...shape, seq: 128, heads: 4, kvHeads: 1 };
const gqaGroup = `backward GQA ${backend} ${shapeLabel(gqa)}`;
for (const mask of ["full", "causal", "document", "slidingWindow"] as const) {
  benchKernel({
    backend,
    pass: "bwd",
    shape: gqa,
    mask,
    group: gqaGroup,
    baseline: mask === "full",
  });
}
