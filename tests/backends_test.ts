/**
 * backendInfo: it names the backend a call with `backend: "auto"` really runs (checked by the
 * bits of the outputs, which differ between backends), and each backend's forward tile is the
 * one its forward pass schedules with.
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  backendInfo,
  type BackendName,
  gpuInfo,
  mergeAttention,
  toGpu,
} from "../mod.ts";
import { exampleMask } from "../masks/mod.ts";
import { checkProblem } from "../_problem.ts";
import { forwardKernel, requireGpu } from "../gpu/internal.ts";
import { engine } from "../wasm/_runtime.ts";
import { randomTensor, rng } from "../reference/random.ts";
import { testAdapter } from "./_util.ts";

const adapter = await testAdapter();

Deno.test("backendInfo: auto names the backend whose bits a call with auto computes", async () => {
  const rand = rng(41);
  const [q, k, v] = [0, 1, 2].map(() => randomTensor(rand, [1, 50, 2, 24]));
  const mask = exampleMask("slidingWindow", 50).mask;
  const bits = async (backend: BackendName) =>
    new Uint32Array((await attention(q, k, v, { backend, mask })).out.data.buffer);
  const info = await backendInfo();
  const others = (["js", "wasm", "webgpu"] as const).filter((b) => b !== info.name);
  const auto = await bits("auto");
  assert.deepEqual(auto, await bits(info.name));
  // the backends differ in their last bits here, so the comparison above can fail
  for (const b of others) {
    if (b === "webgpu" && !adapter) continue;
    assert.notDeepEqual(auto, await bits(b), `${info.name} and ${b} give the same bits`);
  }
  assert.equal(info.name, adapter && !adapter.software ? "webgpu" : "wasm");
});

Deno.test("backendInfo: js and wasm describe themselves", async () => {
  const js = await backendInfo({ backend: "js", headDim: 96 });
  assert.deepEqual([js.name, js.threads, js.forwardTile], ["js", 1, [32, 32]]);
  const wasm = await backendInfo({ backend: "wasm" });
  assert.equal(wasm.name, "wasm");
  assert.equal(wasm.simd, engine().relaxed ? "relaxed" : "plain");
  assert.equal(wasm.threads, navigator.hardwareConcurrency);
  assert.deepEqual(wasm.forwardTile, [48, 96]);
  assert.match(wasm.device, /WASM .*SIMD, \d+ threads?/);
});

Deno.test({
  name: "backendInfo: the webgpu tile is the forward pass's, for each head dimension",
  ignore: !adapter,
  fn: async () => {
    const ctx = await requireGpu();
    for (const d of [16, 59, 64, 96, 128, 200, 256]) {
      const info = await backendInfo({ backend: "webgpu", headDim: d });
      assert.deepEqual(info.gpu, await gpuInfo());
      const x = randomTensor(rng(d), [1, 8, 1, d]);
      const kern = await forwardKernel(ctx, checkProblem({ q: x, k: x, v: x }, {}), "f32");
      assert.deepEqual(info.forwardTile, [kern.schedule.blockRows, kern.schedule.blockCols]);
    }
  },
});

Deno.test("backendInfo: bad options are errors", async () => {
  await assert.rejects(backendInfo({ backend: "cuda" as BackendName }), TypeError);
  await assert.rejects(backendInfo({ headDim: 0 }), RangeError);
});

Deno.test("every result names the backend that computed it, and for webgpu the adapter", async () => {
  const rand = rng(43);
  const [q, k, v, dOut] = [0, 1, 2, 3].map(() => randomTensor(rand, [1, 20, 2, 8]));
  const names: BackendName[] = ["js", "wasm", ...(adapter ? ["webgpu" as const] : [])];
  for (const backend of names) {
    const f = await attention(q, k, v, { backend });
    const g = await attentionBackward({ q, k, v, out: f.out, lse: f.lse, dOut }, { backend });
    for (const r of [f, g]) {
      assert.equal(r.backend, backend);
      assert.equal(r.adapter, backend === "webgpu" ? adapter!.name : undefined);
    }
  }
  const auto = await attention(q, k, v);
  assert.equal(auto.backend, (await backendInfo()).name, "auto: the backend it picked");
  if (adapter) {
    const [gq, gk, gv] = await Promise.all([q, k, v].map(toGpu));
    const r = await attention(gq, gk, gv);
    assert.deepEqual([r.backend, r.adapter], ["webgpu", adapter.name], "GPU-resident");
  }
  const merged = mergeAttention([await attention(q, k, v, { backend: "wasm" })]);
  assert.equal(merged.backend, "js", "merged in plain TypeScript");
});
