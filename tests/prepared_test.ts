/**
 * Prepared attention (`prepareAttention`): a call validated, checked on the device and compiled
 * once, then run per step with that step's `kvLength`. Each step gives the bits of the same
 * `attention` call (and is close to the float64 reference), on the decoding and the prefill
 * kernels, submitted or recorded into the caller's encoder, into the caller's outputs or its
 * own; steps never wait for the GPU; bad steps and bad preparations are clear errors before
 * anything runs, and a GPU failure reaches the step it happens in. Ignored without a WebGPU
 * adapter.
 */

import assert from "node:assert/strict";
import {
  attention,
  type AttentionOptions,
  causalDocument,
  fromGpu,
  type GpuArray,
  gpuDevice,
  type GpuTensor,
  prepareAttention,
  readGpuArray,
  type Shape4,
  toGpu,
} from "../mod.ts";
import { referenceForward } from "../reference/attention.ts";
import { assertClose, gpuWaitsDuring, randomTensor, rng, testAdapter } from "./_util.ts";

const info = await testAdapter();
const ignore = info === undefined;
const bits = (x: Float32Array | Uint16Array) => new Uint32Array(new Float32Array(x).buffer);

/** Random GPU tensors of the given shapes (and their host copies). */
async function tensors(seed: number, ...shapes: Shape4[]) {
  const rand = rng(seed);
  const host = shapes.map((s) => randomTensor(rand, s));
  return { host, gpu: await Promise.all(host.map(toGpu)) };
}

/** A fresh GPU tensor of `shape` and a float32 array of `n`, for results. */
async function outputs(shape: Shape4, n: number): Promise<{ out: GpuTensor; lse: GpuArray }> {
  const rand = rng(5);
  const out = await toGpu(randomTensor(rand, shape));
  const lse = await toGpu(randomTensor(rand, [1, 1, 1, n]));
  return { out, lse: { buffer: lse.buffer, length: n } };
}

/** A step's result has the bits of `attention` on the same tensors with `options`. */
async function assertBitsOfAttention(
  got: { out: GpuTensor; lse: GpuArray },
  [q, k, v]: GpuTensor[],
  options: AttentionOptions,
  at: string,
): Promise<void> {
  const want = await attention(q, k, v, options);
  assert.deepEqual(bits((await fromGpu(got.out)).data), bits((await fromGpu(want.out)).data), at);
  assert.deepEqual(bits(await readGpuArray(got.lse)), bits(await readGpuArray(want.lse)), at);
  want.out.buffer.destroy(), want.lse.buffer.destroy();
}

const CASES: {
  name: string;
  q: Shape4;
  kv: Shape4;
  options: AttentionOptions;
  steps: number[][];
}[] = [
  // one query against ≥ 512 keys: the split-KV decoding kernels; head dim 59
  {
    name: "decode",
    q: [1, 1, 4, 59],
    kv: [1, 600, 2, 59],
    options: { kvLength: [530] },
    steps: [[531], [532], [600], [1], [0], [532]],
  },
  // 17 queries, two entries of different lengths: the forward kernel, causal and a window
  {
    name: "prefill",
    q: [2, 17, 2, 96],
    kv: [2, 97, 1, 96],
    options: { kvLength: [40, 97], causal: true, windowSize: [20, 0] },
    steps: [[41, 97], [97, 17], [17, 60]],
  },
];

Deno.test({
  name:
    "prepared attention: each step gives the bits of attention with its kvLength (decoding and prefill kernels, submitted or recorded, caller's or own outputs)",
  ignore,
  async fn() {
    const device = (await gpuDevice())!;
    for (const c of CASES) {
      const { host, gpu } = await tensors(11, c.q, c.kv, c.kv);
      const [q, k, v] = gpu;
      const lseLen = c.q[0] * c.q[1] * c.q[2];
      for (const [record, given] of [[false, false], [true, true], [false, true], [true, false]]) {
        const mine = given ? await outputs(c.q, lseLen) : undefined;
        const prep = await prepareAttention(q, k, v, { ...c.options, outputs: mine });
        assert.equal(prep.backend, "webgpu");
        const what = `${c.name}, ${record ? "recorded" : "submitted"}, ${given ? "given" : "own"}`;
        let first: GpuTensor | undefined;
        for (const kvLength of [undefined, ...c.steps]) {
          const encoder = record ? device.createCommandEncoder() : undefined;
          const r = await prep.run({ kvLength, encoder });
          if (encoder) device.queue.submit([encoder.finish()]);
          assert.equal(r.backend, "webgpu");
          if (given) assert.equal(r.out, mine!.out, "the caller's output");
          first ??= r.out;
          assert.equal(r.out, first, "every step writes the same outputs");
          const options = { ...c.options, ...(kvLength ? { kvLength } : {}) };
          const at = `${what}, kvLength ${kvLength ?? c.options.kvLength}`;
          await assertBitsOfAttention(r, [q, k, v], options, at);
          if (kvLength?.[0] === c.steps[0][0]) {
            const ref = referenceForward(host[0], host[1], host[2], options);
            const f32 = referenceForward(host[0], host[1], host[2], options, Math.fround);
            assertClose(`${at}: out`, await fromGpu(r.out), ref.out, f32.out);
          }
        }
        const last = bits((await fromGpu(first!)).data);
        prep.destroy();
        if (given) {
          // the caller's outputs are left alone: readable, with the last step's bits
          assert.deepEqual(bits((await fromGpu(mine!.out)).data), last, `${what}: after destroy`);
          mine!.out.buffer.destroy(), mine!.lse.buffer.destroy();
        } else {
          // destroyed (a read is an error naming it); a later step makes new ones
          await assert.rejects(() => fromGpu(first!), /destroyed/);
          const r = await prep.run();
          assert.notEqual(r.out, first);
          prep.destroy();
        }
      }
      for (const t of gpu) t.buffer.destroy();
    }
  },
});

Deno.test({
  name: "prepared attention: steps never wait for the GPU (no onSubmittedWorkDone, no mapAsync)",
  ignore,
  async fn() {
    const { gpu: [q, k, v] } = await tensors(3, [1, 1, 4, 32], [1, 700, 2, 32], [1, 700, 2, 32]);
    const prep = await prepareAttention(q, k, v, { kvLength: [600] });
    await prep.run(); // compiled and bound before watching
    const dev = (await gpuDevice())!;
    const waits = await gpuWaitsDuring(dev, async () => {
      for (let t = 601; t < 610; t++) await prep.run({ kvLength: [t] });
      const encoder = dev.createCommandEncoder();
      for (let t = 610; t < 615; t++) await prep.run({ kvLength: [t], encoder });
      dev.queue.submit([encoder.finish()]);
    });
    assert.deepEqual(waits, [], "prepared steps waited for the GPU");
    const r = await prep.run({ kvLength: [614] });
    const want = await attention(q, k, v, { kvLength: [614] });
    let got: Float32Array | Uint16Array | undefined;
    // the watch sees a read-back
    const reads = await gpuWaitsDuring(dev, async () => void (got = (await fromGpu(r.out)).data));
    assert.ok(reads.includes("mapAsync"));
    assert.deepEqual(bits(got!), bits((await fromGpu(want.out)).data));
    prep.destroy();
    for (const t of [q, k, v, want.out, want.lse]) t.buffer.destroy();
  },
});

Deno.test({
  name: "prepared attention: bad preparations and steps are clear errors before anything runs",
  ignore,
  async fn() {
    const kv: Shape4 = [2, 40, 2, 16];
    const { host, gpu: [q, k, v, q40] } = await tensors(4, [2, 3, 2, 16], kv, kv, kv);
    await assert.rejects(
      () => prepareAttention(host[0] as unknown as GpuTensor, k, v),
      (e: Error) => e instanceof TypeError && /q is on the host/.test(e.message),
    );
    await assert.rejects(
      async () =>
        prepareAttention(q, k, v, { encoder: (await gpuDevice())!.createCommandEncoder() }),
      (e: Error) => e instanceof TypeError && /run\(\{ encoder \}\)/.test(e.message),
    );
    await assert.rejects(
      () => prepareAttention(q, k, v, { casual: true } as AttentionOptions),
      (e: Error) => e instanceof TypeError && /did you mean causal/.test(e.message),
    );
    await assert.rejects(
      () => prepareAttention(q, k, v, { backend: "wasm" }),
      (e: Error) => e instanceof TypeError && /backend "webgpu"/.test(e.message),
    );
    const prep = await prepareAttention(q, k, v, { causal: true });
    const expect = async (step: unknown, type: typeof TypeError, re: RegExp) =>
      await assert.rejects(
        () => prep.run(step as Parameters<typeof prep.run>[0]),
        (e: Error) => e instanceof type && re.test(e.message),
      );
    await expect({ kvlength: [3, 4] }, TypeError, /step\.kvlength .*did you mean kvLength/);
    await expect(7, TypeError, /step must be an object/);
    await expect({ kvLength: [3] }, RangeError, /step\.kvLength must hold 2 lengths/);
    await expect({ kvLength: [3, 41] }, RangeError, /step\.kvLength\[1\] = 41 .*\[0, 40\]/);
    await expect({ kvLength: [3, 2.5] }, RangeError, /step\.kvLength\[1\] = 2\.5/);
    await expect({ encoder: {} }, TypeError, /step\.encoder must be a GPUCommandEncoder/);
    const masked = await prepareAttention(q40, k, v, { mask: causalDocument([10, 30]) });
    await assert.rejects(
      () => masked.run({ kvLength: [3, 4] }),
      (e: Error) =>
        e instanceof TypeError &&
        /step\.kvLength cannot be combined with options\.mask/.test(e.message),
    );
    prep.destroy(), masked.destroy();
    for (const t of [q, k, v, q40]) t.buffer.destroy();
  },
});

Deno.test({
  name: "prepared attention: a buffer destroyed after preparing fails the step, naming the tensor",
  ignore,
  async fn() {
    const { gpu: [q, k, v] } = await tensors(6, [1, 5, 2, 16], [1, 30, 2, 16], [1, 30, 2, 16]);
    const prep = await prepareAttention(q, k, v, { kvLength: [20] });
    await prep.run({ kvLength: [21] });
    k.buffer.destroy();
    await assert.rejects(() => prep.run({ kvLength: [22] }), /\bk\b.*destroyed|destroyed.*\bk\b/);
    prep.destroy();
    q.buffer.destroy(), v.buffer.destroy();
  },
});

Deno.test({
  name:
    "prepared attention: random shapes, terms and step sequences (GQA, f16, windows, softcap, sinks, ALiBi, a paged cache) give attention's bits at every step",
  ignore,
  async fn() {
    const rand = rng(2026);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const device = (await gpuDevice())!;
    for (let trial = 0; trial < 14; trial++) {
      const batch = pick([1, 2, 3]), nq = pick([1, 3, 17]), nk = pick([40, 97, 530]);
      const [heads, kvHeads] = pick([[4, 2], [2, 2], [4, 1]] as const);
      const d = pick([16, 59, 96]);
      const dtype = info!.f16 && rand() < 0.3 ? "f16" : "f32";
      const paged = trial % 5 === 4;
      const pageSize = 16, perSequence = Math.ceil(nk / pageSize);
      const pages = batch * perSequence + 1; // one spare page, so the table is a permutation
      const kvShape: Shape4 = paged ? [pages, pageSize, kvHeads, d] : [batch, nk, kvHeads, d];
      const r = () => rng(Math.floor(rand() * 1e9));
      const hq = randomTensor(r(), [batch, nq, heads, d], dtype);
      const hk = randomTensor(r(), kvShape, dtype), hv = randomTensor(r(), kvShape, dtype);
      const [q, k, v] = await Promise.all([hq, hk, hv].map(toGpu));
      const logical = paged ? perSequence * pageSize : nk;
      const lengths = () => Array.from({ length: batch }, () => Math.floor(rand() * (logical + 1)));
      const options: AttentionOptions = { kvLength: lengths() };
      if (rand() < 0.5) options.causal = true;
      if (rand() < 0.3) options.windowSize = [pick([0, 7, 30]), pick([0, 5])];
      if (rand() < 0.3) options.softcap = 20;
      if (rand() < 0.3) options.sinks = Float32Array.from({ length: heads }, () => rand() - 0.5);
      if (rand() < 0.3) {
        options.alibiSlopes = Float32Array.from({ length: heads }, (_, h) => 2 ** -(h + 1));
      }
      if (rand() < 0.3) options.scale = 0.3;
      if (paged) {
        const order = Array.from({ length: pages }, (_, i) => i).sort(() => rand() - 0.5);
        options.blockTable = {
          data: Int32Array.from(order.slice(0, batch * perSequence)),
          shape: [batch, perSequence],
        };
      }
      const what = `trial ${trial}: B${batch} Nq${nq} Nk${logical} H${heads}/${kvHeads} d${d} ` +
        `${dtype}${paged ? " paged" : ""} ${
          Object.keys(options).filter((o) => o !== "kvLength").join(",")
        }`;
      const prep = await prepareAttention(q, k, v, options);
      for (let s = 0; s < 3; s++) {
        const kvLength = lengths();
        const encoder = s === 1 ? device.createCommandEncoder() : undefined;
        const got = await prep.run({ kvLength, encoder });
        if (encoder) device.queue.submit([encoder.finish()]);
        const at = `${what}, step ${s} kvLength [${kvLength}]`;
        await assertBitsOfAttention(got, [q, k, v], { ...options, kvLength }, at);
      }
      prep.destroy();
      for (const t of [q, k, v]) t.buffer.destroy();
    }
  },
});
