// The WASM backend's decode path: Nq ≤ 16 against long KV caches, split-KV across
// workers and merged in wasm memory; checked against the float64 reference, bit for bit across
// thread counts, and against the tiled forward path.
import assert from "node:assert/strict";
import { attention, type AttentionOptions, blockMask, type Tensor } from "../mod.ts";
import { DECODE_COLS, decodeGroups, decodeSplits, stats, tuning } from "../wasm/backend.ts";
import { checkProblem } from "../_problem.ts";
import { engine } from "../wasm/_runtime.ts";
import { type Case, checkCase, randomMask } from "./_cases.ts";
import { referenceForward } from "../reference/attention.ts";
import { assertClose, randomTensor, rng } from "./_util.ts";

tuning.flopsPerThread = 0;

const base = { batch: 1, heads: 1, kvHeads: 1, dtype: "f32", forwardOnly: true } as const;

const cases: Case[] = [
  { ...base, name: "Nq 1, Nk 1", nq: 1, nk: 1, d: 8 },
  { ...base, name: "Nq 1, Nk 17, GQA 4:2", heads: 4, kvHeads: 2, nq: 1, nk: 17, d: 16 },
  {
    ...base,
    name: "Nq 3, Nk 1025, GQA 8:2, causal, with backward",
    heads: 8,
    kvHeads: 2,
    nq: 3,
    nk: 1025,
    d: 64,
    causal: true,
    forwardOnly: false,
  },
  {
    ...base,
    name: "Nq 16, Nk 5000, GQA 4:1, ragged kvLength, causal",
    batch: 2,
    heads: 4,
    nq: 16,
    nk: 5000,
    d: 32,
    kvLength: [5000, 2999],
    causal: true,
  },
  {
    ...base,
    name: "Nq 1, Nk 5000, GQA 8:2, d 128, f16, kvLength with an empty cache",
    batch: 3,
    heads: 8,
    kvHeads: 2,
    nq: 1,
    nk: 5000,
    d: 128,
    dtype: "f16",
    kvLength: [4097, 1, 0],
  },
  {
    ...base,
    name: "Nq 3, Nk 1025, d 59 (K and V through panels), kvLength window",
    batch: 2,
    heads: 2,
    nq: 3,
    nk: 1025,
    d: 59,
    kvLength: [1025, 600],
    windowSize: [200, 0],
  },
  {
    ...base,
    name: "Nq 16, Nk 300, GQA 4:2, softcap and dropout, with backward",
    heads: 4,
    kvHeads: 2,
    nq: 16,
    nk: 300,
    d: 16,
    softcap: 3,
    sigma: 2,
    dropout: { p: 0.25, seed: 12345 },
    causal: true,
    forwardOnly: false,
  },
  {
    ...base,
    name: "Nq 4, Nk 260, block mask",
    heads: 2,
    kvHeads: 2,
    nq: 4,
    nk: 260,
    d: 16,
    blockMask: blockMask([1, 0, 1, 0, 1, 1], [1, 2, 1, 3], { blockRows: 128, blockCols: 128 }),
  },
  {
    ...base,
    name: "Nq 2, Nk 100, a mask per query head (one group per head)",
    heads: 3,
    nq: 2,
    nk: 100,
    d: 24,
    mask: randomMask(rng(7), 2, 100, [1, 3]),
  },
];
// every case must have a query length the decode path takes
for (const c of cases) assert.ok(c.nq <= tuning.decodeMaxNq);

for (const threads of [1, 2]) {
  for (const c of cases) {
    Deno.test(`wasm decode (${threads} thread): ${c.name}`, async () => {
      const before = stats.decode;
      await checkCase(c, { backend: "wasm", threads });
      assert.equal(stats.decode, before + 1, "the decode path ran");
    });
  }
}

Deno.test("wasm decode: row groups share K/V per key head and split per mask slice", () => {
  const t = (shape: [number, number, number, number]) => randomTensor(rng(1), shape);
  const q = t([2, 16, 8, 8]), k = t([2, 50, 2, 8]);
  const p = checkProblem({ q, k, v: k }, {});
  // 16 rows a head: 4 heads (64 rows) a group; 4 heads per key head, so one group each
  assert.deepEqual(
    Array.from(decodeGroups(p)),
    [0, 0, 0, 4, 0, 1, 4, 4, 1, 0, 0, 4, 1, 1, 4, 4],
  );
  // a mask per key head: still one group per key head
  const perKeyHead = checkProblem({ q, k, v: k }, { mask: randomMask(rng(2), 16, 50, [1, 2]) });
  assert.deepEqual(Array.from(decodeGroups(perKeyHead)), Array.from(decodeGroups(p)));
  // a mask per query head: one group per head
  const perHead = checkProblem({ q, k, v: k }, { mask: randomMask(rng(3), 16, 50, [1, 8]) });
  assert.deepEqual(
    Array.from(decodeGroups(perHead)).slice(0, 12),
    [0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 2, 1],
  );
  assert.equal(decodeGroups(perHead).length, 4 * 16);
  // Nq 1: all 4 heads of a key head in one group (4 rows)
  const one = checkProblem({ q: t([1, 1, 8, 8]), k: t([1, 50, 2, 8]), v: t([1, 50, 2, 8]) }, {});
  assert.deepEqual(Array.from(decodeGroups(one)), [0, 0, 0, 4, 0, 1, 4, 4]);
  assert.equal(decodeSplits(4, 2048), 8);
  assert.equal(decodeSplits(64, 2048), 1);
  assert.equal(decodeSplits(1, 6), 1, "at least 4 column blocks a split");
  assert.equal(decodeSplits(1, 100000), 32);
});

/** out and lse of a call as raw bits. */
async function bits(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions) {
  const { out, lse } = await attention(q, k, v, options);
  return [new Uint32Array(Float32Array.from(out.data).buffer), new Uint32Array(lse.buffer)];
}

Deno.test("wasm decode: same bits for 1, 2 and 3 threads (splits with no key included)", async () => {
  const rand = rng(31);
  const [B, nq, nk, H, Hk, d] = [2, 3, 3000, 4, 2, 40];
  const q = randomTensor(rand, [B, nq, H, d]);
  const k = randomTensor(rand, [B, nk, Hk, d]), v = randomTensor(rand, [B, nk, Hk, d]);
  const options: AttentionOptions = {
    backend: "wasm",
    kvLength: [3000, 700],
    causal: true,
    softcap: 4,
    dropout: { p: 0.1, seed: 5 },
  };
  // 2 batch entries of 47 column blocks: 11 splits each; batch 1 sees 11 tiles, so most of its
  // splits see none
  assert.equal(decodeSplits(2, Math.ceil(nk / DECODE_COLS)), 11);
  const ref = await bits(q, k, v, { ...options, threads: 1 });
  for (const threads of [2, 3]) {
    const got = await bits(q, k, v, { ...options, threads });
    assert.deepEqual(got[0], ref[0], `out with ${threads} threads`);
    assert.deepEqual(got[1], ref[1], `lse with ${threads} threads`);
  }
});

Deno.test("wasm decode: agrees with the tiled forward path", async () => {
  const rand = rng(32);
  const [B, nq, nk, H, Hk, d] = [1, 5, 2000, 8, 2, 64];
  const q = randomTensor(rand, [B, nq, H, d]);
  const k = randomTensor(rand, [B, nk, Hk, d]), v = randomTensor(rand, [B, nk, Hk, d]);
  const options: AttentionOptions = { backend: "wasm", threads: 2, causal: true };
  const a = await attention(q, k, v, options);
  const saved = tuning.decodeMaxNq;
  tuning.decodeMaxNq = 0;
  const before = stats.decode;
  try {
    const b = await attention(q, k, v, options);
    assert.equal(stats.decode, before, "the tiled path ran");
    // each path against the float64 reference, with the plain float32 computation's error
    const ref = referenceForward(q, k, v, { causal: true });
    const f32 = referenceForward(q, k, v, { causal: true }, Math.fround);
    for (const [path, r] of [["decode", a], ["tiled", b]] as const) {
      assertClose(`${path} out`, r.out, ref.out, f32.out);
      assertClose(`${path} lse`, r.lse, ref.lse, f32.lse);
    }
  } finally {
    tuning.decodeMaxNq = saved;
  }
});

Deno.test("wasm decode: the f16 → f32 panel conversions are exact for all 65536 halves (the finite ones: every finite half)", () => {
  const eng = engine();
  eng.ensure(1 << 21);
  const src = 1 << 19, dst = 1 << 20, n = 65536;
  const h = new Uint16Array(eng.memory.buffer, src, n);
  for (let i = 0; i < n; i++) h[i] = i;
  for (const finite of [0, 1]) {
    eng.exports.halvesAt(src, dst, n, finite);
    const got = new Uint32Array(eng.memory.buffer, dst, n);
    for (let i = 0; i < n; i++) {
      const sign = (i & 0x8000) << 16, e = (i >> 10) & 0x1f, m = i & 0x3ff;
      let want: number;
      if (e === 31) {
        if (finite) continue; // (scanned inputs have none)
        want = (sign | 0x7f800000 | (m << 13)) >>> 0; // infinities and NaN payloads
      } else if (e === 0) {
        want = new Uint32Array(Float32Array.of((sign ? -1 : 1) * m * 2 ** -24).buffer)[0];
      } else want = (sign | ((e + 112) << 23) | (m << 13)) >>> 0;
      if (got[i] !== want) {
        assert.fail(`half 0x${i.toString(16)}, finite ${finite}: got 0x${got[i].toString(16)}`);
      }
    }
  }
});
