/**
 * The WASM kernels' parameter block and the inflater of their compressed bytes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { inflateRaw, kernelBytes } from "../wasm/internal.ts";
import { assemblyAbi, MAX_PACKED_TENSORS, P, PARAM_SLOTS } from "../wasm/abi.ts";

Deno.test("wasm: parameter slots are distinct and inside the block", () => {
  assert.ok(assemblyAbi().includes(`P_GROUPS_MAX: i32 = ${P.GROUPS_MAX};`));
  // every slot in the block, none shared, none inside the pack descriptors (4 per tensor from PACK)
  const slots = Object.values(P);
  assert.equal(new Set(slots).size, slots.length, "two parameters share a slot");
  const packEnd = P.PACK + 4 * MAX_PACKED_TENSORS;
  for (const [name, slot] of Object.entries(P)) {
    assert.ok(slot >= 0 && slot < PARAM_SLOTS, `${name} slot ${slot} is outside the block`);
    if (name !== "PACK") {
      assert.ok(slot < P.PACK || slot >= packEnd, `${name} is inside the pack descriptors`);
    }
  }
});

Deno.test("wasm: inflateRaw decodes CompressionStream's raw DEFLATE (stored, fixed and dynamic blocks)", async () => {
  const deflate = async (b: Uint8Array<ArrayBuffer>) =>
    new Uint8Array(
      await new Response(new Blob([b]).stream().pipeThrough(new CompressionStream("deflate-raw")))
        .arrayBuffer(),
    );
  let seed = 7;
  const random = (n: number) =>
    Uint8Array.from({ length: n }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
  const inputs = [
    new Uint8Array(0),
    new TextEncoder().encode("attention"), // a fixed-code block
    random(100_000), // incompressible: stored blocks
    Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) % 13 + (i >> 12)), // long matches
    kernelBytes(), // dynamic blocks
  ];
  for (const x of inputs) {
    assert.deepEqual(inflateRaw(await deflate(x)), x, `${x.length} bytes`);
  }
  // the embedded builds are valid modules; corrupt input is a RangeError, not garbage
  assert.ok(WebAssembly.validate(kernelBytes()));
  const packed = await deflate(kernelBytes());
  assert.throws(() => inflateRaw(packed.subarray(0, packed.length >> 1)), /inflateRaw: input ends/);
  assert.throws(() => inflateRaw(new Uint8Array([0xff, 0xff])), RangeError);
});
