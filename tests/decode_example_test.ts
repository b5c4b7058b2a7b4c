/**
 * The decode-loop example (docs/examples/decode_loop.ts): a stack of layers decoding tokens with
 * KV caches in GPU buffers written by the caller, `kvLength` growing each step, results in
 * preallocated GPU tensors, each layer's call made anew or prepared once. Its last output has the bits of the same loop run on host arrays
 * with the same kernels (each call uploading the caches and reading back), so the GPU-resident
 * path (cache writes, offsets of the growing length, chaining without waits) changes nothing.
 */

import assert from "node:assert/strict";
import { decodeLoop, decodeLoopOnHost } from "../docs/examples/decode_loop.ts";
import { testAdapter } from "./_util.ts";

const info = await testAdapter();

Deno.test({
  name:
    "decode loop example: GPU-resident layers and caches, awaited or recorded per step, prepared or not, give the host loop's bits",
  ignore: info === undefined,
  async fn() {
    // cache ≥ 512 keys: the split-KV decoding kernels
    const o = { layers: 3, steps: 4, prompt: 530, cache: 600, heads: 4, kvHeads: 2, dim: 32 };
    const host = await decodeLoopOnHost(o, "webgpu");
    const bits = (x: Float32Array | Uint16Array) => new Uint32Array(new Float32Array(x).buffer);
    for (const [record, prepared] of [[false, false], [true, false], [false, true], [true, true]]) {
      const gpu = await decodeLoop({ ...o, record, prepared });
      assert.ok(gpu.tokensPerSecond > 0);
      assert.deepEqual(gpu.out.shape, [1, 1, 4, 32]);
      const how = `${record ? "recorded" : "awaited"}${prepared ? ", prepared" : ""}`;
      assert.deepEqual(bits(gpu.out.data), bits(host.data), how);
    }
    assert.ok(host.data.some((x) => x !== 0));
  },
});
