import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  backendInfo,
  causal,
  flashMask,
  stack,
  type Tensor,
  tensor,
  toF16,
} from "../mod.ts";
import { checkFinite, checkProblem, missingFeature } from "../_problem.ts";
import type { Backend } from "../types.ts";
import { randomTensor, rng, testAdapter } from "./_util.ts";
import { engine } from "../wasm/_runtime.ts";
import { gpuStats } from "../gpu/internal.ts";

const rand = rng(1);
const q = randomTensor(rand, [2, 6, 4, 8]);
const k = randomTensor(rand, [2, 5, 2, 8]);
const v = randomTensor(rand, [2, 5, 2, 8]);

/** Copies of the data of the tensors among `xs`, to check later that nothing changed them. */
function snapshot(xs: unknown[]): () => void {
  const ts = xs.filter((x): x is Tensor =>
    typeof x === "object" && x !== null && "data" in x && ArrayBuffer.isView(x.data)
  );
  const copies = ts.map((t) => t.data.slice());
  const runs = engine().phasesRun, submits = gpuStats().submits;
  return () => {
    ts.forEach((t, i) => assert.deepEqual(t.data, copies[i], "inputs unchanged"));
    assert.equal(engine().phasesRun, runs, "nothing computed on the WASM backend");
    assert.equal(gpuStats().submits, submits, "nothing submitted to the GPU");
  };
}

/** Asserts that `call` is rejected with `type` and a message matching `re`, computing nothing. */
async function rejectsCall(
  call: () => Promise<unknown>,
  inputs: unknown[],
  type: ErrorConstructor,
  re: RegExp,
) {
  const unchanged = snapshot(inputs);
  await assert.rejects(call, (e: Error) => {
    assert.ok(
      e instanceof type,
      `expected ${type.name}, got ${e.constructor.name}: ${e.message}`,
    );
    assert.match(e.message, re);
    return true;
  });
  unchanged();
}

/**
 * Asserts that attention rejects the call with `type` and a message matching `re`, before
 * anything is computed (on the default backend), leaving its inputs as they were.
 */
async function rejects(
  args: [unknown, unknown, unknown, AttentionOptions?],
  type: ErrorConstructor,
  re: RegExp,
) {
  await rejectsCall(
    () => attention(...(args as [Tensor, Tensor, Tensor, AttentionOptions?])),
    args.slice(0, 3),
    type,
    re,
  );
}

Deno.test("tensor() rejects wrong lengths, shapes and dtypes", () => {
  assert.throws(() => tensor(new Float32Array(5), [1, 2, 1, 3]), /data.length is 5.*needs 6/);
  assert.throws(() => tensor(new Float32Array(6), [1, 2, 3]), /4 entries/);
  assert.throws(
    () => tensor(new Float32Array(0), [1, 0, 1, 3]),
    /shape\[1\] \(seqLen\) must be a positive integer/,
  );
  assert.throws(() => tensor(new Float32Array(6), [1, 2, 1, 3], "f16"), TypeError);
  assert.throws(() => tensor(new Uint16Array(6), [1, 2, 1, 3], "f32"), TypeError);
  assert.throws(
    () => tensor(new Float64Array(6) as never, [1, 2, 1, 3]),
    /^TypeError: tensor: data is a Float64Array; pass a Float32Array \(Float32Array\.from\(data\) converts it\)/,
  );
  assert.throws(
    () => tensor(new Uint16Array(6), [1, 2, 1, 3]),
    /^TypeError: tensor: a Uint16Array is taken as binary16 bits only with dtype "f16"/,
  );
  // native binary16: f16 without a dtype, the same bits as toF16 of the same numbers
  const h = Float16Array.from([0.1, -2, 65504, 1e-7, 3, 7]);
  const t = tensor(h, [1, 2, 1, 3]);
  assert.equal(t.dtype, "f16");
  assert.deepEqual(Array.from(t.data), Array.from(toF16([0.1, -2, 65504, 1e-7, 3, 7])));
  assert.throws(
    () => tensor(h, [1, 2, 1, 3], "f32"),
    /dtype "f32" needs a Float32Array, got a Float16Array/,
  );
  assert.throws(() => tensor(new Float32Array(6), [1, 2, 1, 3], "bf16" as never), /dtype/);
  assert.equal(tensor([1, 2], [1, 1, 1, 2], "f16").dtype, "f16");
});

Deno.test("attention rejects malformed tensors, naming the tensor and field", async () => {
  await rejects([null, k, v], TypeError, /^q must be a Tensor/);
  await rejects([{ ...q, shape: [2, 6, 4] }, k, v], RangeError, /q.shape must have 4 entries/);
  await rejects([q, { ...k, dtype: "f64" }, v], TypeError, /k.dtype must be "f32" or "f16"/);
  await rejects([q, k, { ...v, data: new Float32Array(3) }], RangeError, /v.data.length is 3/);
  await rejects(
    [q, k, { ...v, data: new Uint16Array(80) }],
    TypeError,
    /v.data must be a Float32Array/,
  );
});

Deno.test("attention rejects mismatched sizes and dtypes", async () => {
  const kf16 = tensor(toF16(k.data as Float32Array), k.shape, "f16");
  await rejects([q, kf16, v], TypeError, /k.dtype is f16 but q.dtype is f32/);
  await rejects(
    [q, randomTensor(rand, [1, 5, 2, 8]), v],
    RangeError,
    /k.shape\[0\] \(batch\) is 1; q has 2/,
  );
  await rejects(
    [q, randomTensor(rand, [2, 5, 2, 7]), v],
    RangeError,
    /k.shape\[3\] \(headDim\) is 7/,
  );
  await rejects(
    [q, k, randomTensor(rand, [2, 4, 2, 8])],
    RangeError,
    /v.shape .* must equal k.shape/,
  );
  await rejects(
    [q, k, randomTensor(rand, [2, 5, 1, 8])],
    RangeError,
    /^v.shape \[2,5,1,8\] must equal k.shape \[2,5,2,8\]/,
  );
  await rejects([q, k, randomTensor(rand, [2, 5, 2, 8], "f16")], TypeError, /^v.dtype is f16/);
  await rejects(
    [randomTensor(rand, [2, 6, 4, 8], "f16"), k, v],
    TypeError,
    /^k.dtype is f32 but q.dtype is f16/,
  );
  await rejects(
    [q, randomTensor(rand, [2, 5, 3, 8]), randomTensor(rand, [2, 5, 3, 8])],
    RangeError,
    /multiple of k.shape\[2\]/,
  );
  const big = randomTensor(rand, [1, 2, 1, 257]);
  await rejects([big, big, big], RangeError, /headDim\) = 257 exceeds the supported maximum 256/);
});

Deno.test("attention rejects bad options", async () => {
  await rejects([q, k, v, { scale: NaN }], RangeError, /options.scale must be a finite number/);
  await rejects([q, k, v, { backend: "cuda" as never }], TypeError, /options.backend/);
  await rejects([q, k, v, { causal: 1 as never }], TypeError, /options.causal must be a boolean/);
  await rejects([q, k, v, null as never], TypeError, /options must be an object, got null/);
  await rejects(
    [q, k, v, { causal: "true" as never }],
    TypeError,
    /options.causal must be a boolean, got string \("true"\)/,
  );
  await rejects(
    [q, k, v, { scale: "0.5" as never }],
    TypeError,
    /options.scale must be a finite number, got string \("0.5"\)/,
  );
  await rejects(
    [q, k, v, { threads: "2" as never }],
    TypeError,
    /options.threads must be an integer from 1 to 1024, got string \("2"\)/,
  );
  await rejects(
    [q, k, v, { softcap: -1 }],
    RangeError,
    /options.softcap must be a positive finite number, got -1/,
  );
});

Deno.test("attentionBackward called positionally shows the object form", async () => {
  await assert.rejects(
    () => (attentionBackward as (...a: unknown[]) => Promise<unknown>)(q, k, v),
    /^TypeError: attentionBackward takes the saved tensors as one object, not positionally: attentionBackward\(\{ q, k, v, out, lse, dOut \}, options\)/,
  );
});

Deno.test("unknown options are TypeErrors that name them and suggest the option meant", async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ casual: true }, /^options\.casual is not an option; did you mean causal\? \(valid: mask, /],
    [{ is_causal: true }, /^options\.is_causal is not an option; did you mean causal\?/],
    [{ softmax_scale: 1 }, /^options\.softmax_scale is not an option; did you mean scale\?/],
    [{ window_size: [1, 1] }, /^options\.window_size is not an option; did you mean windowSize\?/],
    [{ cache_seqlens: [5, 5] }, /^options\.cache_seqlens .*did you mean kvLength\?/],
    [{ theads: 2 }, /^options\.theads is not an option; did you mean threads\?/],
    [{ foo: 1 }, /^options\.foo is not an option \(valid: mask, causal, scale, backend, /],
  ];
  for (const [options, re] of cases) {
    await rejects([q, k, v, options as never], TypeError, re);
  }
  const { out, lse } = await attention(q, k, v, { backend: "js" });
  await rejectsCall(
    () => attentionBackward({ q, k, v, out, lse, dOut: out }, { casual: true } as never),
    [q, k, v, out],
    TypeError,
    /^options\.casual is not an option; did you mean causal\?/,
  );
  await assert.rejects(
    () => backendInfo({ head_dim: 64 } as never),
    /^TypeError: options\.head_dim is not an option; did you mean headDim\? \(valid: backend, headDim\)/,
  );
});

Deno.test("attention rejects masks that do not fit the call", async () => {
  const m5 = causal(5);
  await rejects(
    [q, k, v, { mask: causal(6) }],
    RangeError,
    /options.mask.shape\[2\] \(seqLenK\) is 6; expected 5/,
  );
  await rejects(
    [q, k, v, { mask: stack([[m5], [m5], [m5]]) }],
    RangeError,
    /options.mask.shape\[0\] \(batch\) is 3/,
  );
  await rejects(
    [q, k, v, { mask: stack([[m5, m5, m5]]) }],
    RangeError,
    /options.mask.shape\[1\] \(heads\) is 3; expected 1, 2 .* or 4/,
  );
  // row indices are checked against Nq = 6 of this call
  const m = flashMask(new Int32Array([7, 7, 7, 7, 7]), [1, 1, 5, 1], { causal: true });
  await rejects(
    [q, k, v, { mask: m }],
    RangeError,
    /startEndRowIndices\[0\] \(batch 0, head 0, key 0, LTS\) = 7 is outside \[0, 6\]/,
  );
  // start > end: LTS > LTE (causal, 2 columns) and UTS > UTE (4 columns)
  const lte = flashMask(new Int32Array(10).fill(3).fill(4, 6, 7), [1, 1, 5, 2], { causal: true });
  await rejects(
    [q, k, v, { mask: lte }],
    RangeError,
    /^options.mask.startEndRowIndices\[6\] \(batch 0, head 0, key 3, LTS\) = 4 is greater than LTE = 3/,
  );
  const ute = new Int32Array(2 * 4 * 5).fill(0);
  ute.set([6, 6, 5, 2], 4 * 5 + 4 * 2); // batch 1, key 2: [LTS, LTE) empty, UTS 5 > UTE 2
  await rejects(
    [q, k, v, { mask: flashMask(ute, [2, 1, 5, 4], { causal: false }) }],
    RangeError,
    /^options.mask.startEndRowIndices\[30\] \(batch 1, head 0, key 2, UTS\) = 5 is greater than UTE = 2/,
  );
  // negative index
  await rejects(
    [q, k, v, {
      mask: flashMask(new Int32Array([0, 0, -1, 0, 0]), [1, 1, 5, 1], { causal: true }),
    }],
    RangeError,
    /^options.mask.startEndRowIndices\[2\] \(batch 0, head 0, key 2, LTS\) = -1 is outside \[0, 6\]/,
  );
  await rejects(
    [q, k, v, { mask: m5, causal: false }],
    TypeError,
    /options.causal is false but options.mask.causal is true/,
  );
  await rejects(
    [q, k, v, { mask: { shape: [1, 1, 5, 1], causal: true } as never }],
    TypeError,
    /options.mask.startEndRowIndices must be an Int32Array/,
  );
});

Deno.test("attention rejects NaN and Infinity, naming the tensor and the position", async () => {
  const bad = q.data.slice() as Float32Array;
  bad[8 * 4 + 3] = NaN; // batch 0, row 1, head 0, dim 3
  await rejects(
    [{ ...q, data: bad }, k, v],
    RangeError,
    /q.data\[35\] \(batch 0, row 1, head 0, dim 3\) is not finite/,
  );
  const badK = toF16(k.data as Float32Array);
  badK[17] = 0x7c00; // +Infinity
  const kh = tensor(badK, k.shape, "f16");
  const qh = tensor(toF16(q.data as Float32Array), q.shape, "f16");
  const vh = tensor(toF16(v.data as Float32Array), v.shape, "f16");
  await rejects([qh, kh, vh], RangeError, /k.data\[17\]/);
  // checkFinite: false lets it through (the caller takes responsibility)
  await attention({ ...q, data: bad }, k, v, { checkFinite: false, backend: "js" });
});

Deno.test("every backend rejects NaN and ±Infinity alike, in every tensor, computing nothing", async () => {
  // the API scans for js and webgpu; the WASM backend scans its own copies with SIMD (in its
  // tiled forward, its decode path for Nq ≤ 16 and its backward): same errors, same positions
  const backends: ("js" | "wasm" | "webgpu")[] = ["js", "wasm"];
  if (await testAdapter()) backends.push("webgpu");
  const r = rng(7);
  for (const nq of [40, 3]) {
    const [qs, ks, vs] = [[1, nq, 4, 20], [1, 37, 2, 20], [1, 37, 2, 20]].map((shape) =>
      randomTensor(r, shape as [number, number, number, number])
    );
    const { out, lse } = await attention(qs, ks, vs, { backend: "js" });
    const dOut = randomTensor(r, qs.shape);
    for (const dtype of ["f32", "f16"] as const) {
      const cast = (t: Tensor) =>
        dtype === "f32" ? t : tensor(toF16(t.data as Float32Array), t.shape, "f16");
      const saved: Record<string, Tensor> = {
        q: cast(qs),
        k: cast(ks),
        v: cast(vs),
        out: cast(out),
        dOut: cast(dOut),
      };
      for (
        const [name, at] of [["q", 0], ["k", 1499], ["v", 777], ["out", 61], ["dOut", 20]] as const
      ) {
        const t = saved[name];
        for (
          const [i, bits, value] of [[0, 0x7e00, NaN], [1, 0x7c00, Infinity], [
            2,
            0xfc00,
            -Infinity,
          ]] as const
        ) {
          const data = t.data.slice();
          const pos = (at + i * 3) % data.length;
          if (dtype === "f16") data[pos] = bits;
          else data[pos] = value;
          const bad = { ...saved, [name]: tensor(data, t.shape, dtype) };
          const re = new RegExp(
            `^${name}.data\\[${pos}\\] \\(batch 0, row \\d+, head \\d+, dim \\d+\\) is not finite`,
          );
          for (const backend of backends) {
            if (name !== "out" && name !== "dOut") {
              await rejectsCall(
                () => attention(bad.q, bad.k, bad.v, { backend }),
                Object.values(bad),
                RangeError,
                re,
              );
            }
            await rejectsCall(
              () => attentionBackward({ ...bad, lse } as never, { backend }),
              Object.values(bad),
              RangeError,
              re,
            );
          }
        }
      }
    }
  }
});

Deno.test("attentionBackward rejects bad out, dOut and lse with the error type, naming them", async () => {
  const { out, lse } = await attention(q, k, v, { backend: "js" });
  const dOut = randomTensor(rand, [2, 6, 4, 8]);
  const call = (s: Record<string, unknown>, type: ErrorConstructor, re: RegExp) => {
    const saved = { q, k, v, out, lse, dOut, ...s };
    return rejectsCall(
      () => attentionBackward(saved as never, { backend: "wasm" }),
      Object.values(saved),
      type,
      re,
    );
  };
  const f16 = (t: Tensor) => tensor(toF16(t.data as Float32Array), t.shape, "f16");
  await call({ out: f16(out) }, TypeError, /^out.dtype is f16 but q.dtype is f32/);
  await call({ dOut: f16(dOut) }, TypeError, /^dOut.dtype is f16 but q.dtype is f32/);
  await call({ out: { ...out, data: new Float32Array(5) } }, RangeError, /^out.data.length is 5/);
  await call({ dOut: null }, TypeError, /^dOut must be a Tensor/);
  await call({ out: randomTensor(rand, [2, 5, 4, 8]) }, RangeError, /^out.shape .* must equal q/);
  await call({ lse: new Float32Array(47) }, RangeError, /^lse.length is 47; expected .* 48/);
  await call({ lse: new Float64Array(48) }, TypeError, /^lse must be a Float32Array/);
  const badOut = out.data.slice() as Float32Array;
  badOut[40] = Infinity; // batch 0, row 1, head 1, dim 0
  await call(
    { out: { ...out, data: badOut } },
    RangeError,
    /^out.data\[40\] \(batch 0, row 1, head 1, dim 0\) is not finite/,
  );
  const badDo = dOut.data.slice() as Float32Array;
  badDo[badDo.length - 1] = -Infinity;
  await call(
    { dOut: { ...dOut, data: badDo } },
    RangeError,
    /^dOut.data\[383\] \(batch 1, row 5, head 3, dim 7\)/,
  );
  const badLse = lse.slice();
  badLse[47] = Infinity;
  await call({ lse: badLse }, RangeError, /^lse\[47\] is Infinity/);
  // -Infinity is a valid lse (a row that sees no key)
  badLse[47] = -Infinity;
  await attentionBackward({ q, k, v, out, lse: badLse, dOut }, { backend: "js" });
  const badV = v.data.slice() as Float32Array;
  badV[3] = NaN;
  await call(
    { v: { ...v, data: badV } },
    RangeError,
    /^v.data\[3\] \(batch 0, row 0, head 0, dim 3\)/,
  );
});

Deno.test("attentionBackward validates out, dOut and lse", async () => {
  const { out, lse } = await attention(q, k, v, { backend: "js" });
  const dOut = randomTensor(rand, [2, 6, 4, 8]);
  const call = (s: Record<string, unknown>) =>
    attentionBackward({ q, k, v, out, lse, dOut, ...s } as never);
  await assert.rejects(
    () => call({ lse: new Float32Array(3) }),
    /lse.length is 3; expected batch·Hq·Nq = 48/,
  );
  await assert.rejects(() => call({ lse: Array.from(lse) }), /lse must be a Float32Array/);
  await assert.rejects(
    () => call({ dOut: randomTensor(rand, [2, 6, 4, 7]) }),
    /dOut.shape .* must equal q.shape/,
  );
  const nanLse = lse.slice();
  nanLse[5] = NaN;
  await assert.rejects(() => call({ lse: nanLse }), /lse\[5\] is NaN/);
  await assert.rejects(() => attentionBackward(null as never), /saved must be an object/);
});

Deno.test("attention rejects bad window, varlen, KV-cache, block-mask, softcap and dropout options before computing", async () => {
  const m = causal(5);
  await rejects(
    [q, k, v, { mask: m, windowSize: [2, 0] }],
    TypeError,
    /windowSize cannot be combined with options.mask/,
  );
  await rejects(
    [q, k, v, { windowSize: [2] as never }],
    RangeError,
    /windowSize must be \[left, right\]/,
  );
  await rejects(
    [q, k, v, { cuSeqlens: [0, 6] }],
    RangeError,
    /cuSeqlens packs sequences into batch 1/,
  );
  await rejects([q, k, v, { kvLength: [5] }], RangeError, /kvLength must hold 2 lengths/);
  await rejects(
    [q, k, v, { kvLength: [5, 6] }],
    RangeError,
    /kvLength\[1\] = 6 must be an integer in \[0, 5\]/,
  );
  await rejects(
    [q, k, v, { mask: m, kvLength: [5, 5] }],
    TypeError,
    /options.mask and options.kvLength cannot be combined/,
  );
  await rejects(
    [q, k, v, { softcap: 0 }],
    RangeError,
    /options.softcap must be a positive finite number/,
  );
  await rejects(
    [q, k, v, { dropout: { p: 1, seed: 0 } }],
    RangeError,
    /options.dropout.p must be a number in \[0, 1\)/,
  );
  await rejects([q, k, v, { dropout: { p: 0.1, seed: -1 } }], RangeError, /options.dropout.seed/);
  const bm = { data: new Uint8Array(1), shape: [1, 1, 1, 1], blockRows: 64, blockCols: 128 };
  await rejects(
    [q, k, v, { blockMask: bm as never }],
    RangeError,
    /blockRows must be a positive multiple of 128/,
  );
  const bm2 = { ...bm, blockRows: 128, shape: [1, 1, 2, 1], data: new Uint8Array(2) };
  await rejects(
    [q, k, v, { blockMask: bm2 as never }],
    RangeError,
    /blockMask.shape\[2..3\] is \[2, 1\]; .* need \[1, 1\]/,
  );
  // a backend without an option refuses it instead of ignoring it (every built-in backend now
  // implements them all, so a stand-in backend is asked)
  const p = checkProblem({ q, k, v }, { softcap: 5, dropout: { p: 0.1, seed: 1 } });
  const lacking: Backend = {
    name: "stand-in",
    features: new Set(["dropout"]),
    forward: () => Promise.reject(new Error("not called")),
    backward: () => Promise.reject(new Error("not called")),
    info: () => Promise.reject(new Error("not called")),
  };
  assert.equal(missingFeature(lacking, p), "softcap");
  assert.equal(
    missingFeature({ ...lacking, features: new Set(["softcap", "dropout"]) }, p),
    undefined,
  );
});

Deno.test("checkFinite names the first bad element wherever it is (chunk edges, several bad)", () => {
  const n = 3 * 4096 + 5, shape = [1, n, 1, 1] as const;
  for (
    const [positions, want] of [
      [[n - 1], n - 1],
      [[4095], 4095],
      [[4096, 9000], 4096],
      [[8191, 8190], 8190],
      [[0, n - 1], 0],
    ] as [number[], number][]
  ) {
    for (const value of [NaN, Infinity, -Infinity]) {
      const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 1e30);
      for (const at of positions) data[at] = value;
      assert.throws(
        () => checkFinite(tensor(data, shape), "x"),
        (e: Error) => e instanceof RangeError && e.message.startsWith(`x.data[${want}] `),
      );
    }
  }
  checkFinite(tensor(new Float32Array(n).fill(-3.4e38), shape), "x"); // finite extremes pass
});

Deno.test("the WASM backend finds NaN past its first copy chunk, where the API would", async () => {
  // it copies and scans inputs in chunks of 2^14 elements: positions in later chunks and at edges
  const r = rng(8);
  const qs = randomTensor(r, [1, 20, 2, 20]), ks = randomTensor(r, [1, 1001, 2, 20]);
  for (const dtype of ["f32", "f16"] as const) {
    const cast = (t: Tensor) =>
      dtype === "f32" ? t : tensor(toF16(t.data as Float32Array), t.shape, "f16");
    for (const pos of [16383, 16384, 16385, 32768 + 7, 40039]) {
      const data = cast(ks).data.slice();
      data[pos] = dtype === "f32" ? NaN : 0x7e00;
      const bad = tensor(data, ks.shape, dtype);
      for (const backend of ["js", "wasm"] as const) {
        await rejectsCall(
          () => attention(cast(qs), bad, cast(ks), { backend }),
          [bad],
          RangeError,
          new RegExp(`^k.data\\[${pos}\\] `),
        );
      }
    }
  }
});

Deno.test("the WASM scan finds the first NaN or ±Infinity at step edges, f32 and binary16", () => {
  const eng = engine(), n = 1000, at = 1 << 20;
  eng.ensure(at + n * 4);
  const cases: [number[], number][] = [
    [[], -1],
    [[0], 0],
    [[15], 15],
    [[16, 40], 16],
    [[31, 17], 17],
    [[63], 63],
    [[64], 64],
    [[n - 1], n - 1],
    [[n - 2, 3], 3],
  ];
  for (const [positions, want] of cases) {
    for (const value of [NaN, Infinity, -Infinity]) {
      const f = new Float32Array(eng.memory.buffer, at, n);
      f.set(Float32Array.from({ length: n }, (_, i) => (i % 2 ? -3.4e38 : 1e-45 * i)));
      for (const p of positions) f[p] = value;
      assert.equal(eng.exports.firstNonFinite(at, n, 0), want, `f32 ${value} at ${positions}`);
      assert.equal(eng.exports.firstNonFinite(at, Math.min(n, 17), 0), want < 17 ? want : -1);
      const h = new Uint16Array(eng.memory.buffer, at, n);
      h.set(toF16(Float32Array.from({ length: n }, (_, i) => (i % 2 ? -65504 : i / 7))));
      for (const p of positions) h[p] = value === -Infinity ? 0xfc00 : value ? 0x7c00 : 0x7e01;
      assert.equal(eng.exports.firstNonFinite(at, n, 1), want, `f16 ${value} at ${positions}`);
    }
  }
});
