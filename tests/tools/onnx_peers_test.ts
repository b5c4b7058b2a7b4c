/**
 * The ONNX models of the CPU comparisons run in onnxruntime-web and onnxruntime-node and match
 * the float64 reference. Under `deno task test:tools`: it fetches onnxruntime (about 400 MB).
 *
 * @module
 */

import assert from "node:assert/strict";
import { toDense } from "../../masks/dense.ts";
import { exampleMask } from "../../masks/examples.ts";
import { additiveMask, attentionModel } from "../../bench/cpu/_onnx.ts";
import { ortNode, ortWeb, ortWebPeer } from "../../bench/cpu/_peers.ts";
import { makeInputs } from "../../bench/cli/_run.ts";
import { referenceForward } from "../../reference/attention.ts";
import { relErr } from "../_util.ts";

Deno.test("the ONNX models run in onnxruntime and match the float64 reference", async () => {
  const [n, h, d] = [40, 2, 16];
  const { q, k, v } = makeInputs(
    { batch: 1, seq: n, heads: h, kvHeads: h, dim: d, dtype: "f32" },
    3,
  );
  const { mask } = exampleMask("causalDocument", n);
  const ref = referenceForward(q, k, v, { mask }).out;
  const refDense = referenceForward(q, k, v).out;
  const close = (what: string, x: ArrayLike<number>, r: ArrayLike<number>) => {
    const e = relErr(x, r);
    assert.ok(e <= 1e-5, `${what}: relative error ${e}`);
  };

  // onnxruntime-web, this library's layout, the mask as an additive input.
  const web = await ortWebPeer(attentionModel({ batch: 1, seq: n, heads: h, dim: d }), 1, "t");
  for (const [x, t] of [["q", q], ["k", k], ["v", v]] as const) {
    web.setInput(x, t.data as Float32Array, [1, n, h, d]);
  }
  web.setInput("mask", additiveMask(toDense(mask)), [n, n]);
  close("attentionModel (onnxruntime-web)", await web.run(), ref);
  await web.release();

  // onnxruntime-web, head-major prepared inputs, no mask: out is [H, N, d].
  const hm = await ortWeb(q, k, v, 1);
  const outHm = await hm.run(), out = new Float32Array(outHm.length);
  for (let hh = 0; hh < h; hh++) {
    for (let i = 0; i < n; i++) {
      for (let x = 0; x < d; x++) out[(i * h + hh) * d + x] = outHm[(hh * n + i) * d + x];
    }
  }
  close("matmulSoftmaxModel (onnxruntime-web)", out, refDense);
  await hm.release();

  // onnxruntime-node, fused MultiHeadAttention, with and without the dense mask.
  for (const allowed of [toDense(mask), undefined]) {
    const p = await ortNode(q, k, v, 1, allowed);
    close(p.name, await p.run(), allowed ? ref : refDense);
    await p.release();
  }
});
