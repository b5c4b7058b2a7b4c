import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  stack,
  type Tensor,
  tensor,
} from "../mod.ts";
import { exampleMask } from "../masks/mod.ts";
import { philox4x32 } from "../masks/dropout.ts";
import { tuning } from "../wasm/backend.ts";
import { engine } from "../wasm/_runtime.ts";
import { inputStats } from "../wasm/internal.ts";
import {
  alibiCases,
  type Case,
  checkCase,
  checkMaskedRows,
  featureCases,
  randomMask,
  sinkCases,
  standardCases,
} from "./_cases.ts";
import { assertClose, randomTensor, rng } from "./_util.ts";
import { referenceForward, roundTo } from "../reference/attention.ts";

// Run even tiny problems on the requested number of threads, so threads: 2 really uses workers.
tuning.flopsPerThread = 0;

const one = { batch: 1, heads: 1, kvHeads: 1, dtype: "f32" } as const;

for (const threads of [1, 2]) {
  const opt: AttentionOptions = { backend: "wasm", threads };
  for (const c of standardCases({ large: threads === 1 })) {
    Deno.test(`wasm backend (${threads} thread): ${c.name}`, () => checkCase(c, opt));
  }
  Deno.test(`wasm backend (${threads} thread): fully masked rows`, () => checkMaskedRows(opt));
  // beyond plain masks: windows, packed sequences, ragged caches, block masks, softcap, dropout
  for (const c of featureCases()) {
    Deno.test(`wasm backend (${threads} thread), options: ${c.name}`, () => checkCase(c, opt));
  }
  for (const c of [...sinkCases(), ...alibiCases()]) {
    Deno.test(`wasm backend (${threads} thread): ${c.name}`, () => checkCase(c, opt));
  }
}

Deno.test("wasm backend: Philox4x32-10 kernel equals the reference, lane by lane", () => {
  const eng = engine();
  eng.ensure(1 << 20);
  const io = 1 << 19;
  const rand = rng(21);
  const u32 = () => Math.floor(rand() * 2 ** 32);
  // Random123 known-answer counters in lanes 0-2, a random one in lane 3; then random keys
  const kat: [number, number, number, number][] = [
    [0, 0, 0, 0],
    [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
  ];
  const keys: [number, number][] = [[0, 0], [0xffffffff, 0xffffffff], [0xa4093822, 0x299f31d0]];
  for (let t = 0; t < 8; t++) {
    const ctr = Array.from({ length: 4 }, (_, l) => kat[l] ?? [u32(), u32(), u32(), u32()]);
    const key: [number, number] = keys[t] ?? [u32(), u32()];
    const m = new Uint32Array(eng.memory.buffer, io, 36);
    for (let c = 0; c < 4; c++) for (let l = 0; l < 4; l++) m[4 * c + l] = ctr[l][c];
    m.set(key, 16);
    eng.exports.philoxAt(io);
    for (let l = 0; l < 4; l++) {
      const want = Array.from(philox4x32(ctr[l], key));
      const got = [0, 1, 2, 3].map((w) => m[20 + 4 * w + l]);
      assert.deepEqual(got, want, `key ${key}, lane ${l}`);
    }
  }
});

Deno.test("wasm backend: the softcap tanh is within 4 units of 2^-24 of Math.tanh", () => {
  const eng = engine();
  eng.ensure(1 << 21);
  const io = 1 << 20, n = 40000;
  const x = new Float32Array(eng.memory.buffer, io, n);
  for (let i = 0; i < n; i++) x[i] = (i % 2 ? -1 : 1) * (i < n / 2 ? i * 1e-4 : (i - n / 2) * 2e-3);
  const want = Array.from(x, Math.tanh);
  eng.exports.tanhAt(io, n);
  let worst = 0;
  for (let i = 0; i < n; i++) {
    const err = want[i] === 0 ? Math.abs(x[i]) : Math.abs(x[i] - want[i]) / Math.abs(want[i]);
    worst = Math.max(worst, err);
  }
  assert.ok(worst <= 4 * 2 ** -24, `worst relative error ${worst}`);
  assert.equal(x[n / 2 + 2 * 4000], 1, "tanh(16) is 1");
});

// The size sweep: head dims at seq 97 (GQA, causal document), seq lengths at d = 64.
const sweep: Case[] = [
  ...[1, 8, 59, 64, 96, 128, 256].map((d): Case => ({
    ...one,
    heads: 2,
    name: `head dim ${d}, seq 97, causal document, GQA 2:1`,
    nq: 97,
    nk: 97,
    d,
    mask: exampleMask("causalDocument", 97).mask,
  })),
  ...[1, 17, 97].map((n): Case => ({
    ...one,
    name: `seq ${n}, d 64, sliding window`,
    nq: n,
    nk: n,
    d: 64,
    mask: exampleMask("slidingWindow", n).mask,
  })),
  { ...one, name: "seq 1025, d 64, causal", nq: 1025, nk: 1025, d: 64, causal: true },
  { ...one, name: "seq 1025 x 17 (Nq > Nk), d 32, random FlashMask", nq: 1025, nk: 17, d: 32 },
  { ...one, name: "seq 17 x 1025 (Nq < Nk), d 32, causal", nq: 17, nk: 1025, d: 32, causal: true },
];
sweep[sweep.length - 2].mask = randomMask(rng(5), 1025, 17, [1, 1]);
for (const c of sweep) {
  Deno.test(`wasm backend sweep: ${c.name}`, () => checkCase(c, { backend: "wasm", threads: 2 }));
}

/** Runs forward and backward and returns every output as raw bits. */
async function bits(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  dOut: Tensor,
  options: AttentionOptions,
): Promise<Uint32Array[]> {
  const { out, lse } = await attention(q, k, v, options);
  const g = await attentionBackward({ q, k, v, out, lse, dOut }, options);
  const u = (x: Float32Array | Uint16Array) => new Uint32Array(Float32Array.from(x).buffer);
  return [u(out.data), u(lse), u(g.dq.data), u(g.dk.data), u(g.dv.data)];
}

Deno.test("wasm backend: same input gives the same bits for 1, 2 and 3 threads", async () => {
  const rand = rng(11);
  // 2 batches × 2 key heads: 8 dQ chunks, so dQ really is summed from partials.
  const [B, n, H, Hk, d] = [2, 300, 4, 2, 40];
  const q = randomTensor(rand, [B, n, H, d]), dOut = randomTensor(rand, [B, n, H, d]);
  const k = randomTensor(rand, [B, n, Hk, d]), v = randomTensor(rand, [B, n, Hk, d]);
  const mask = stack([[exampleMask("causalDocument", n).mask, exampleMask("document", n).mask], [
    exampleMask("slidingWindow", n).mask,
    exampleMask("qkSparse", n).mask,
  ]]);
  const ref = await bits(q, k, v, dOut, { backend: "wasm", threads: 1, mask });
  for (const threads of [2, 3]) {
    const got = await bits(q, k, v, dOut, { backend: "wasm", threads, mask });
    ["out", "lse", "dq", "dk", "dv"].forEach((name, i) =>
      assert.deepEqual(got[i], ref[i], `${name} with ${threads} threads`)
    );
  }
  assert.ok(engine().workers >= 3, "three workers ran");
});

Deno.test("wasm backend: 1,000 calls keep memory flat", async () => {
  // in a process of its own: the test runner's other modules (run beside this one with
  // --parallel) share its resident memory
  const url = (path: string) => new URL(path, import.meta.url).href;
  const script = `
    import { attention, attentionBackward } from "${url("../mod.ts")}";
    import { engine } from "${url("../wasm/_runtime.ts")}";
    import { randomTensor, rng } from "${url("./_util.ts")}";
    const rand = rng(12);
    const shape = [1, 128, 4, 32];
    const [q, k, v, dOut] = [0, 1, 2, 3].map(() => randomTensor(rand, shape));
    const run = (i) => {
      const options = { backend: "wasm", threads: 1 + (i % 2), causal: true };
      return attention(q, k, v, options).then(({ out, lse }) =>
        i % 4 === 0 ? attentionBackward({ q, k, v, out, lse, dOut }, options) : undefined
      );
    };
    for (let i = 0; i < 20; i++) await run(i); // warm up: memory, workers, JIT
    const before = [engine().bytes, engine().workers, Deno.memoryUsage().rss];
    for (let i = 0; i < 1000; i++) await run(i);
    const after = [engine().bytes, engine().workers, Deno.memoryUsage().rss];
    console.log(JSON.stringify({ before, after }));
    await engine().terminate();
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const { before, after } = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.equal(after[0], before[0], "wasm memory did not grow");
  assert.equal(after[1], before[1], "no new workers");
  // Each call moves ~0.3 MB in and out; a leak of that per call would be ~300 MB.
  const grown = (after[2] - before[2]) / 2 ** 20;
  assert.ok(grown < 64, `resident memory grew by ${grown.toFixed(1)} MiB over 1,000 calls`);
});

Deno.test("wasm backend: inputs beyond a 4 GiB wasm memory are a RangeError before computing", async () => {
  // A q of 2^30 f32 elements (4 GiB) without allocating it: only its length is looked at.
  const huge = (shape: [number, number, number, number]) => {
    const n = shape[0] * shape[1] * shape[2] * shape[3];
    const data = new Proxy(new Float32Array(1), {
      get: (t, key) => key === "length" ? n : Reflect.get(t, key),
    });
    return { data, shape, dtype: "f32" } as Tensor;
  };
  const q = huge([1, 65536, 64, 256]);
  const k = huge([1, 16, 64, 256]);
  for (
    const call of [
      () => attention(q, k, k, { backend: "wasm", checkFinite: false }),
      () =>
        attentionBackward({ q, k, v: k, out: q, lse: new Float32Array(64 * 65536), dOut: q }, {
          backend: "wasm",
          checkFinite: false,
        }),
    ]
  ) {
    await assert.rejects(call, (e: Error) => {
      assert.ok(e instanceof RangeError, `${e.constructor.name}: ${e.message}`);
      assert.match(e.message, /GiB of WASM memory.*4 GiB/);
      return true;
    });
  }
  const small = tensor(new Float32Array(8), [1, 1, 1, 8]);
  const { out } = await attention(small, small, small, { backend: "wasm" });
  assert.equal(out.data.length, 8, "the backend still works afterwards");
});

Deno.test("wasm backend: options.threads is validated", async () => {
  const t = tensor(new Float32Array(8).fill(0.5), [1, 1, 1, 8]);
  for (const threads of [0, -1, 1.5, NaN, 2000]) {
    await assert.rejects(
      () => attention(t, t, t, { backend: "wasm", threads }),
      /options\.threads/,
    );
  }
});

Deno.test("wasm, checkFinite: false: only the key rows the tiles read are copied, and the memory's other rows are never read", async () => {
  const eng = engine();
  const r = rng(41);
  const [B, nk, H, Hk] = [2, 700, 4, 2];
  // decoding (Nq 1, 64-key tiles) and the tiled forward (Nq 37, 96-key tiles) against valid keys
  // [300, 513]; the forward also with a window, whose first blocks no tile reads
  const calls = [
    { nq: 1, d: 64, options: { kvLength: [300, 513] }, rows: [[0, 320], [0, 576]] },
    { nq: 37, d: 59, options: { kvLength: [300, 513], causal: true }, rows: [[0, 384], [0, 576]] },
    { nq: 37, d: 16, options: { windowSize: [50, 0] }, rows: [[576, 700], [576, 700]] },
  ] as const;
  for (const [i, c] of calls.entries()) {
    for (const dtype of ["f32", "f16"] as const) {
      const what = `call ${i} ${dtype}`;
      const q = randomTensor(r, [B, c.nq, H, c.d], dtype);
      const k = randomTensor(r, [B, nk, Hk, c.d], dtype);
      const v = randomTensor(r, [B, nk, Hk, c.d], dtype);
      // the rows outside the read ones poisoned in the inputs (unchecked call), and NaN in all of
      // the memory before each call
      const [kp, vp] = [k, v].map((t) => {
        const data = t.data.slice(), row = Hk * c.d;
        const nan = data instanceof Uint16Array ? 0x7e00 : NaN; // binary16 bits, or a float array
        for (let b = 0; b < B; b++) {
          const [lo, hi] = c.rows[b];
          data.fill(nan, (b * nk) * row, (b * nk + lo) * row);
          data.fill(nan, (b * nk + hi) * row, (b + 1) * nk * row);
        }
        return { ...t, data } as Tensor;
      });
      const options: AttentionOptions = { backend: "wasm", threads: 2, ...c.options };
      const poison = () => new Uint32Array(eng.memory.buffer).fill(0x7fc00000, 65536 / 4);
      const eb = dtype === "f16" ? 2 : 4;
      const keyRows = c.rows.reduce((a, [lo, hi]) => a + hi - lo, 0);
      const bytes = (B * c.nq * H + 2 * keyRows * Hk) * c.d * eb; // q whole, k and v rows read
      poison();
      let copied = inputStats.bytes;
      const want = await attention(q, k, v, options); // checked: every row copied and scanned
      const all = B * (c.nq * H + 2 * nk * Hk) * c.d * eb;
      assert.equal(inputStats.bytes - copied, all, `${what}: bytes copied, checked (every row)`);
      poison();
      copied = inputStats.bytes;
      const got = await attention(q, kp, vp, { ...options, checkFinite: false });
      assert.equal(inputStats.bytes - copied, bytes, `${what}: bytes copied, unchecked`);
      assert.deepEqual(got.out.data, want.out.data, `${what}: out`);
      assert.deepEqual(got.lse, want.lse, `${what}: lse`);
      const ref = referenceForward(q, k, v, c.options);
      const f32 = referenceForward(q, k, v, c.options, Math.fround);
      assertClose(`${what}: out`, got.out, ref.out, roundTo(f32.out, dtype), { dtype });
      assertClose(`${what}: lse`, got.lse, ref.lse, f32.lse);
      // with the check, every row is scanned in order: a NaN in a row no tile reads is found
      // before one in a row read after it (a NaN added in the second read row of entry 0)
      const kd = kp.data.slice(), lo = c.rows[0][0];
      kd[(lo + 1) * Hk * c.d] = kd instanceof Uint16Array ? 0x7e00 : NaN;
      await assert.rejects(
        () => attention(q, { ...kp, data: kd } as Tensor, vp, options),
        new RegExp(
          `k\\.data\\[\\d+\\] \\(batch 0, row ${lo === 0 ? 1 : 0}, head 0, dim 0\\) is not finite`,
        ),
        `${what}: the first NaN`,
      );
    }
  }
});
