import assert from "node:assert/strict";
import { testAdapter } from "./_util.ts";
import { attention, type BackendName, tensor } from "../mod.ts";
import { dropoutKeeps, dropoutThreshold, philox4x32 } from "../masks/mod.ts";

Deno.test("Philox4x32-10 matches the Random123 known-answer vectors", () => {
  const kat: [[number, number, number, number], [number, number], number[]][] = [
    [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
    [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [
      0x408f276d,
      0x41c83b0e,
      0xa20bc7c6,
      0x6d5451fd,
    ]],
    [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [
      0xd16cfe09,
      0x94fdcceb,
      0x5001e420,
      0x24126ea1,
    ]],
  ];
  for (const [ctr, key, want] of kat) assert.deepEqual(Array.from(philox4x32(ctr, key)), want);
});

Deno.test("dropout keeps about 1 - p of the elements, independently of position", () => {
  for (const p of [0.1, 0.5, 0.9]) {
    let kept = 0;
    const n = 40000;
    for (let x = 0; x < n; x++) {
      if (dropoutKeeps({ p, seed: 123 }, x % 3, x % 5, x >> 8, x & 255)) kept++;
    }
    // binomial: 5 standard deviations
    const sd = Math.sqrt(n * p * (1 - p));
    assert.ok(Math.abs(kept - n * (1 - p)) < 5 * sd, `p = ${p}: kept ${kept} of ${n}`);
  }
  assert.equal(dropoutThreshold(0), 0);
  assert.equal(dropoutThreshold(0.999999999999), 0xffffffff);
  // different seeds give different masks
  let same = 0;
  for (let j = 0; j < 1000; j++) {
    if (
      dropoutKeeps({ p: 0.5, seed: 1 }, 0, 0, 0, j) ===
        dropoutKeeps({ p: 0.5, seed: 2 }, 0, 0, 0, j)
    ) same++;
  }
  assert.ok(same > 400 && same < 600);
});

Deno.test("every backend drops exactly the same elements", async () => {
  // v = one-hot rows, so out[i] = (P ∘ Z / (1 − p))[i, :] shows which elements were dropped
  const [nq, nk, h] = [33, 20, 3];
  const v = new Float32Array(nk * h * nk);
  for (let j = 0; j < nk; j++) for (let x = 0; x < h; x++) v[(j * h + x) * nk + j] = 1;
  const rand = (n: number) =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
  const q = tensor(rand(nq * h * nk), [1, nq, h, nk]),
    k = tensor(rand(nk * h * nk), [1, nk, h, nk]);
  const dropout = { p: 0.3, seed: 99 };
  const backends: BackendName[] = ["js"];
  if (await testAdapter()) backends.push("webgpu");
  backends.push("wasm");
  const patterns: string[] = [];
  for (const backend of backends) {
    const { out } = await attention(q, k, tensor(v, [1, nk, h, nk]), { dropout, backend });
    patterns.push(Array.from(out.data, (x) => (x === 0 ? "0" : "1")).join(""));
  }
  const want = Array.from({ length: nq * h * nk }, (_, x) => {
    const j = x % nk, hh = Math.floor(x / nk) % h, i = Math.floor(x / (nk * h));
    return dropoutKeeps(dropout, 0, hh, i, j) ? "1" : "0";
  }).join("");
  for (const [i, p] of patterns.entries()) assert.equal(p, want, `backend ${backends[i]}`);
});
