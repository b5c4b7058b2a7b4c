/**
 * `deno bench bench/suites/backends_bench.ts`: every backend side by side on the same inputs, with
 * the naive float64 reference (`reference/attention.ts`, O(N²) memory, no tiling) as the baseline.
 * Backends that do not work here are listed as ignored, with the reason printed.
 *
 * @module
 */

import { exampleMask } from "../../masks/mod.ts";
import { referenceBackward, referenceForward } from "../../reference/attention.ts";
import { BACKENDS } from "../cli/_args.ts";
import { probeBackend, supports } from "../cli/_device.ts";
import { makeInputs, type Shape } from "../cli/_run.ts";
import { benchKernel, ITERATIONS, shapeLabel, warmUp } from "./_suite.ts";

const shape: Shape = { batch: 1, seq: 128, heads: 2, kvHeads: 2, dim: 64, dtype: "f32" };
const statuses = [];
for (const name of BACKENDS) statuses.push(await probeBackend(name));
for (const s of statuses) {
  if (!s.available) console.log(`skipping backend ${s.name}: ${s.reason}`);
  else if (!s.backward) console.log(`skipping backend ${s.name} backward: ${s.backwardReason}`);
  if (s.available) await warmUp(s.name, undefined, s.backward ? ["fwd", "bwd"] : ["fwd"]);
}

for (const pass of ["fwd", "bwd"] as const) {
  const group = `${pass === "fwd" ? "forward" : "backward"} causal ${shapeLabel(shape)}`;
  const { q, k, v, dOut } = makeInputs(shape, 1);
  const { mask } = exampleMask("causal", shape.seq);
  Deno.bench({
    name: "naive f64 reference",
    group,
    baseline: true,
    ...ITERATIONS,
    fn() {
      if (pass === "fwd") referenceForward(q, k, v, { mask });
      else referenceBackward(q, k, v, dOut, { mask });
    },
  });
  for (const s of statuses) {
    benchKernel({
      backend: supports(s, pass) ? s.name : null,
      pass,
      shape,
      mask: "causal",
      group,
      name: s.name,
    });
  }
}
