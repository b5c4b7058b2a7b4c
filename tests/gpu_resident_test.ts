/**
 * GPU-resident calls inside a program's own GPU work: calls that return without waiting for the
 * GPU, the caller's device (`useGpuDevice`), the caller's buffers as inputs (with byte offsets)
 * and as outputs (`options.outputs`), work recorded into the caller's encoder
 * (`options.encoder`), and the errors of each. Ignored without a WebGPU adapter.
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  type AttentionResult,
  causalDocument,
  fromGpu,
  type GpuArray,
  type GpuAttentionResult,
  gpuDevice,
  type GpuGradients,
  type GpuTensor,
  readGpuArray,
  type Tensor,
  toGpu,
  useGpuDevice,
} from "../mod.ts";
import { gpuStats } from "../gpu/internal.ts";
import { checkCase } from "./_cases.ts";
import { referenceBackward, referenceForward } from "../reference/attention.ts";
import { assertClose, gpuWaitsDuring, randomTensor, rng, testAdapter } from "./_util.ts";

const info = await testAdapter();
const ignore = info === undefined;
const STORAGE = 0x80, COPY_SRC = 0x4, COPY_DST = 0x8;
const gpu = { backend: "webgpu" } as const;

const rand = rng(77);
const shape = [2, 45, 4, 32] as const, kvShape = [2, 45, 2, 32] as const;
const q = randomTensor(rand, shape), k = randomTensor(rand, kvShape);
const v = randomTensor(rand, kvShape), dOut = randomTensor(rand, shape);
const mask = causalDocument([20, 25]);

const bits = (x: Float32Array | Uint16Array) => new Uint32Array(new Float32Array(x).buffer);

/** A device of the test's own, with the adapter's limits and shader-f16 where it has it. */
async function ownDevice(features: GPUFeatureName[] = ["shader-f16"]): Promise<GPUDevice> {
  const adapter = (await navigator.gpu.requestAdapter())!;
  const lim = adapter.limits;
  return await adapter.requestDevice({
    requiredFeatures: features.filter((f) => adapter.features.has(f)),
    requiredLimits: {
      maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxBufferSize: lim.maxBufferSize,
    },
  });
}

/** Runs `fn` with the library on a device of the test's own, then back on its own device. */
async function withOwnDevice(fn: (device: GPUDevice) => Promise<void>): Promise<void> {
  const device = await ownDevice();
  useGpuDevice(device);
  try {
    await fn(device);
  } finally {
    useGpuDevice(undefined);
    device.destroy();
  }
}

/** Host tensors packed into one buffer of `device` at 256-aligned offsets after `lead` bytes. */
function packed(device: GPUDevice, ts: Tensor[], lead: number): GpuTensor[] {
  const align = device.limits.minStorageBufferOffsetAlignment;
  const offsets: number[] = [];
  let end = lead;
  for (const t of ts) {
    end = Math.ceil(end / align) * align;
    offsets.push(end);
    end += t.data.byteLength;
  }
  const buffer = device.createBuffer({ size: end, usage: STORAGE | COPY_SRC | COPY_DST });
  ts.forEach((t, i) => device.queue.writeBuffer(buffer, offsets[i], t.data as Float32Array));
  return ts.map((t, i) => ({ buffer, shape: t.shape, dtype: t.dtype, offset: offsets[i] }));
}

/**
 * q, k, v and dOut packed in one buffer of `device`, and the forward and backward results of
 * plain calls on them (new output buffers), to compare other ways of calling with.
 */
async function packedCalls(device: GPUDevice) {
  const [gq, gk, gv, gd] = packed(device, [q, k, v, dOut], 0);
  const want = await attention(gq, gk, gv, { ...gpu, mask });
  const wantG = await attentionBackward({ q: gq, k: gk, v: gv, ...want, dOut: gd }, {
    ...gpu,
    mask,
  });
  return { gq, gk, gv, gd, want, wantG };
}

/** Reads `bytes` of a buffer from `offset` (a test helper: its own staging buffer). */
async function read(device: GPUDevice, buffer: GPUBuffer, offset: number, bytes: number) {
  const staging = device.createBuffer({ size: bytes, usage: 0x1 | COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, offset, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(0x1);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return out;
}

Deno.test({
  name:
    "webgpu: awaited GPU-resident calls never wait for the GPU (no onSubmittedWorkDone, no mapAsync)",
  ignore,
  async fn() {
    const [gq, gk, gv, gd] = await Promise.all([q, k, v, dOut].map(toGpu));
    // compile first, so that only the calls themselves are watched
    const warm = await attention(gq, gk, gv, { ...gpu, mask });
    await attentionBackward({ q: gq, k: gk, v: gv, out: warm.out, lse: warm.lse, dOut: gd }, {
      ...gpu,
      mask,
    });
    const dev = (await gpuDevice())!;
    // a chain: each output is the next call's query
    let x = gq;
    const results: GpuAttentionResult[] = [];
    let g: GpuGradients | undefined;
    const waits = await gpuWaitsDuring(dev, async () => {
      for (let i = 0; i < 5; i++) {
        const r = await attention(x, gk, gv, { ...gpu, mask });
        results.push(r);
        x = { ...r.out, shape: gq.shape };
      }
      g = await attentionBackward(
        { q: gq, k: gk, v: gv, out: results[0].out, lse: results[0].lse, dOut: gd },
        { ...gpu, mask },
      );
    });
    assert.deepEqual(waits, [], "GPU-resident calls waited for the GPU");
    // the same chain with host arrays (each call waits and reads back) gives the same bits
    let hx = q;
    const hostWaits = await gpuWaitsDuring(dev, async () => {
      for (let i = 0; i < 5; i++) hx = (await attention(hx, k, v, { ...gpu, mask })).out;
    });
    assert.ok(hostWaits.includes("mapAsync"), "host calls read back");
    assert.deepEqual(bits((await fromGpu(x)).data), bits(hx.data));
    const host = await attention(q, k, v, { ...gpu, mask });
    const hg = await attentionBackward({ q, k, v, ...host, dOut }, { ...gpu, mask });
    assert.deepEqual(bits((await fromGpu(g!.dq)).data), bits(hg.dq.data));
    assert.deepEqual(bits(await readGpuArray(results[0].lse)), bits(host.lse));
    for (const r of results) r.out.buffer.destroy(), r.lse.buffer.destroy();
    for (const t of [gq, gk, gv, gd, g!.dq, g!.dk, g!.dv]) t.buffer.destroy();
  },
});

Deno.test({
  name: "webgpu: the caller's device and buffers (packed, at offsets) match the float64 reference",
  ignore,
  fn: () =>
    withOwnDevice(async (device) => {
      const got = useGpuDevice(device);
      assert.ok(got && got.name.length > 0);
      for (const lead of [0, 300]) {
        const [gq, gk, gv, gd] = packed(device, [q, k, v, dOut], lead);
        assert.equal(gq.buffer, gk.buffer);
        const r = await attention(gq, gk, gv, { ...gpu, mask });
        const g = await attentionBackward(
          { q: gq, k: gk, v: gv, out: r.out, lse: r.lse, dOut: gd },
          { ...gpu, mask },
        );
        const ref = referenceForward(q, k, v, { mask }),
          f32 = referenceForward(q, k, v, { mask }, Math.fround);
        assertClose("out", await fromGpu(r.out), ref.out, f32.out);
        assertClose("lse", await readGpuArray(r.lse), ref.lse, f32.lse);
        const gr = referenceBackward(q, k, v, dOut, { mask });
        const gf = referenceBackward(q, k, v, dOut, { mask }, Math.fround);
        assertClose("dq", await fromGpu(g.dq), gr.dq, gf.dq);
        assertClose("dk", await fromGpu(g.dk), gr.dk, gf.dk);
        assertClose("dv", await fromGpu(g.dv), gr.dv, gf.dv);
        gq.buffer.destroy();
      }
    }),
});

Deno.test({
  name: "webgpu: results go into the caller's tensors (options.outputs), same bits as new ones",
  ignore,
  fn: () =>
    withOwnDevice(async (device) => {
      const { gq, gk, gv, gd, want, wantG } = await packedCalls(device);
      // one activation buffer for out, lse, dq, dk, dv, at aligned offsets
      const align = device.limits.minStorageBufferOffsetAlignment;
      const up = (n: number) => Math.ceil(n / align) * align;
      const qb = q.data.byteLength, kb = k.data.byteLength, lb = 2 * 4 * 45 * 4;
      const offs = [0, up(qb), up(qb) + up(lb), 2 * up(qb) + up(lb), 2 * up(qb) + up(lb) + up(kb)];
      const size = offs[4] + kb;
      const buffer = device.createBuffer({ size, usage: STORAGE | COPY_SRC | COPY_DST });
      const out: GpuTensor = { buffer, shape, dtype: "f32", offset: offs[0] };
      const lse: GpuArray = { buffer, length: 2 * 4 * 45, offset: offs[1] };
      const before = gpuStats().liveBuffers;
      const r = await attention(gq, gk, gv, { ...gpu, mask, outputs: { out, lse } });
      assert.equal(r.out, out);
      assert.equal(r.lse, lse);
      const dq: GpuTensor = { buffer, shape, dtype: "f32", offset: offs[2] };
      const dk: GpuTensor = { buffer, shape: kvShape, dtype: "f32", offset: offs[3] };
      const dv: GpuTensor = { buffer, shape: kvShape, dtype: "f32", offset: offs[4] };
      const g = await attentionBackward({ q: gq, k: gk, v: gv, out, lse, dOut: gd }, {
        ...gpu,
        mask,
        outputs: { dq, dk, dv },
      });
      assert.deepEqual([g.dq, g.dk, g.dv], [dq, dk, dv]);
      assert.equal(gpuStats().liveBuffers, before, "the calls created no output buffer");
      const all = await read(device, buffer, 0, size);
      const at = (o: number, n: number) => bits(all.subarray(o / 4, o / 4 + n / 4));
      assert.deepEqual(at(offs[0], qb), bits((await fromGpu(want.out)).data));
      assert.deepEqual(at(offs[1], lb), bits(await readGpuArray(want.lse)));
      // the read-back helpers read from a tensor's offset
      assert.deepEqual(bits(await readGpuArray(lse)), at(offs[1], lb));
      assert.deepEqual(bits((await fromGpu(dk)).data), at(offs[3], kb));
      assert.deepEqual(at(offs[2], qb), bits((await fromGpu(wantG.dq)).data));
      assert.deepEqual(at(offs[3], kb), bits((await fromGpu(wantG.dk)).data));
      assert.deepEqual(at(offs[4], kb), bits((await fromGpu(wantG.dv)).data));
    }),
});

Deno.test({
  name: "webgpu: calls recorded into the caller's encoder run when the caller submits",
  ignore,
  fn: () =>
    withOwnDevice(async (device) => {
      const { gq, gk, gv, gd, want, wantG } = await packedCalls(device);
      const encoder = device.createCommandEncoder();
      const submits = gpuStats().submits, live = gpuStats().liveBuffers;
      const r = await attention(gq, gk, gv, { ...gpu, mask, encoder });
      const g = await attentionBackward({ q: gq, k: gk, v: gv, ...r, dOut: gd }, {
        ...gpu,
        mask,
        encoder,
      });
      assert.equal(gpuStats().submits, submits, "nothing submitted by the library");
      assert.equal(gpuStats().liveBuffers, live + 5, "only the results are the library's");
      device.queue.submit([encoder.finish()]);
      assert.deepEqual(bits((await fromGpu(r.out)).data), bits((await fromGpu(want.out)).data));
      assert.deepEqual(bits((await fromGpu(g.dk)).data), bits((await fromGpu(wantG.dk)).data));
    }),
});

Deno.test({
  name: "webgpu: GPU-resident misuse is a clear error before anything runs",
  ignore,
  fn: () =>
    withOwnDevice(async (device) => {
      const [gq, gk, gv] = packed(device, [q, k, v], 0);
      const submits = gpuStats().submits;
      const bad = (
        options: object,
        re: RegExp,
        type: ErrorConstructor,
        qq: Tensor | GpuTensor = gq,
      ) =>
        assert.rejects(
          () => attention(qq as GpuTensor, gk, gv, { ...gpu, mask, ...options }),
          (e) => e instanceof type && re.test((e as Error).message),
        );
      await assert.rejects(
        () => attention({ ...gq, offset: gq.offset! + 4 }, gk, gv, { ...gpu, mask }),
        /q\.offset is \d+ bytes; the GPU device binds storage at multiples of \d+/,
      );
      const buf = device.createBuffer({ size: 1 << 16, usage: STORAGE | COPY_SRC });
      await bad({ outputs: { out: { ...gq } } }, /options\.outputs\.out overlaps q/, RangeError);
      const [pq, pk, pv, pout] = packed(device, [q, k, v, q], 0); // out beside the inputs
      await assert.rejects(
        () => attention(pq, pk, pv, { ...gpu, mask, outputs: { out: pout } }),
        /options\.outputs\.out is in the GPUBuffer of q, which the kernel writing it reads/,
      );
      await bad(
        { outputs: { out: { buffer: buf, shape: [1, 45, 4, 32], dtype: "f32" } } },
        /options\.outputs\.out\.shape must be \[2,45,4,32\]/,
        RangeError,
      );
      await bad(
        { outputs: { dq: { buffer: buf, shape, dtype: "f32" } } },
        /options\.outputs\.dq is not an output of this call; it takes out, lse/,
        TypeError,
      );
      await bad(
        { outputs: { lse: { buffer: buf, length: 3 } } },
        /options\.outputs\.lse must be a float32 GpuArray of length 360/,
        RangeError,
      );
      await bad(
        { outputs: {} },
        /options\.outputs needs GPU-resident tensors, but q is on the host/,
        TypeError,
        q,
      );
      await bad(
        { encoder: device.createCommandEncoder() },
        /options\.encoder needs GPU-resident tensors, but q is on the host/,
        TypeError,
        q,
      );
      await bad(
        { encoder: {} },
        /options\.encoder must be a GPUCommandEncoder, got a Object/,
        TypeError,
      );
      assert.equal(gpuStats().submits, submits, "a rejected call submits nothing");
    }),
});

Deno.test({
  name: "webgpu: what the caller's device lacks is named, with what to request",
  ignore,
  async fn() {
    const plain = await (await navigator.gpu.requestAdapter())!.requestDevice();
    useGpuDevice(plain);
    try {
      if (!plain.features.has("shader-f16")) {
        const t = {
          buffer: plain.createBuffer({ size: 1024, usage: STORAGE }),
          shape: [1, 4, 1, 64],
          dtype: "f16",
        } as const;
        await assert.rejects(() => attention(t, t, t, gpu), /no "shader-f16" feature: request it/);
      }
      // d = 256 needs more workgroup memory than a device with default limits (16 KiB) has
      const big = randomTensor(rng(3), [1, 8, 1, 256]);
      const gb = packed(plain, [big], 0)[0];
      await assert.rejects(
        () => attention(gb, gb, gb, gpu),
        /needs \d+ bytes of workgroup memory; the GPU device allows 16384 \(maxComputeWorkgroupStorageSize\): create it with requestDevice/,
      );
      // a lost caller's device is not replaced behind the caller's back
      plain.destroy();
      await (plain.lost);
      await assert.rejects(
        () => attention(gb, gb, gb, gpu),
        /the device given to useGpuDevice is gone/,
      );
    } finally {
      useGpuDevice(undefined);
    }
  },
});

Deno.test({
  name:
    "webgpu: a caller's device with WebGPU's default 16 KiB of workgroup memory runs head dimensions up to 128, forward and backward, and decodes with fewer rows a workgroup, against the reference",
  ignore,
  async fn() {
    const plain = await (await navigator.gpu.requestAdapter())!.requestDevice();
    assert.equal(plain.limits.maxComputeWorkgroupStorageSize, 16384);
    useGpuDevice(plain);
    try {
      for (const d of [64, 128]) {
        await checkCase({
          name: `d=${d}, causal, 70 × 70, GQA 2:1 on 16 KiB`,
          batch: 1,
          nq: 70,
          nk: 70,
          heads: 2,
          kvHeads: 1,
          d,
          dtype: "f32",
          causal: true,
        }, gpu);
      }
      // the split-KV decoding kernels: 16 rows (8 query heads × 2 queries) take 8 a workgroup
      await checkCase({
        name: "decode d=128, 2 queries, GQA 8:1, 600 keys on 16 KiB",
        batch: 1,
        nq: 2,
        nk: 600,
        heads: 8,
        kvHeads: 1,
        d: 128,
        dtype: "f32",
      }, gpu);
    } finally {
      useGpuDevice(undefined);
      plain.destroy();
    }
  },
});

Deno.test({
  name: "webgpu: more masks recorded into one encoder than the schedule cache holds stay valid",
  ignore,
  fn: () =>
    withOwnDevice(async (device) => {
      const t = randomTensor(rng(8), [1, 40, 1, 16]);
      const [gq, gk, gv] = packed(device, [t, t, t], 0);
      const n = 40; // > MAX_SCHEDULE_BUFFERS (32): the cache evicts while the encoder is open
      const windows = Array.from({ length: n }, (_, i) => [i % 39, 0] as [number, number]);
      const want = [];
      for (const w of windows.slice(0, 3)) {
        want.push(await fromGpu((await attention(gq, gk, gv, { ...gpu, windowSize: w })).out));
      }
      const encoder = device.createCommandEncoder();
      const outs = [];
      for (const w of windows) {
        outs.push((await attention(gq, gk, gv, { ...gpu, windowSize: w, encoder })).out);
      }
      device.pushErrorScope("validation");
      device.queue.submit([encoder.finish()]);
      assert.equal(await device.popErrorScope(), null, "the recorded work is still valid");
      for (let i = 0; i < 3; i++) {
        assert.deepEqual(bits((await fromGpu(outs[i])).data), bits(want[i].data));
      }
    }),
});

Deno.test({
  name: "webgpu: a caller's buffer destroyed after it was used (and no longer probed) is named",
  ignore,
  async fn() {
    const device = (await gpuDevice())!;
    const t = randomTensor(rng(9), [1, 8, 1, 16]);
    const make = () => {
      const buffer = device.createBuffer({ size: 512, usage: STORAGE | COPY_DST | COPY_SRC });
      device.queue.writeBuffer(buffer, 0, t.data as Float32Array);
      return { buffer, shape: t.shape, dtype: "f32" } as const;
    };
    const [gq, gk, gv] = [make(), make(), make()];
    const r = await attention(gq, gk, gv, gpu); // probed once, then trusted
    assert.deepEqual(
      bits((await fromGpu(r.out)).data),
      bits((await attention(t, t, t, gpu)).out.data),
    );
    gk.buffer.destroy();
    await assert.rejects(() => attention(gq, gk, gv, gpu), /^Error: k\.buffer has been destroyed/);
    for (const x of [gq, gv, r.out, r.lse]) x.buffer.destroy();
  },
});

/** Counts the device's GPU object creations and buffer writes (and bytes) while `fn` runs. */
async function counting(device: GPUDevice, fn: () => Promise<unknown>) {
  const n = { bindGroups: 0, buffers: 0, writes: 0, bytes: 0 };
  const { createBindGroup, createBuffer } = device;
  const { writeBuffer } = device.queue;
  device.createBindGroup = (d) => (n.bindGroups++, createBindGroup.call(device, d));
  device.createBuffer = (d) => (n.buffers++, createBuffer.call(device, d));
  device.queue.writeBuffer = (...a: Parameters<GPUQueue["writeBuffer"]>) => (
    n.writes++, n.bytes += (a[2] as ArrayBufferView).byteLength, writeBuffer.apply(device.queue, a)
  );
  try {
    await fn();
  } finally {
    device.createBindGroup = createBindGroup;
    device.createBuffer = createBuffer;
    device.queue.writeBuffer = writeBuffer;
  }
  return n;
}

Deno.test({
  name:
    "webgpu: a repeated call creates no GPU object; a new kvLength writes only uniforms and tile lists (and ALiBi its table)",
  ignore,
  fn: () =>
    withOwnDevice(async (device) => {
      // a decode-shaped call (split-KV kernels and their scratch), into the caller's outputs
      const r = rng(5);
      const tq = randomTensor(r, [1, 1, 4, 32]), tk = randomTensor(r, [1, 600, 2, 32]);
      const tv = randomTensor(r, [1, 600, 2, 32]), to = randomTensor(r, [1, 1, 4, 32]);
      const [gq, gk, gv] = packed(device, [tq, tk, tv], 0);
      const [out] = packed(device, [to], 1); // at an offset: fromGpu reads from there
      assert.deepEqual(bits((await fromGpu(out)).data), bits(to.data as Float32Array));
      const lse: GpuArray = {
        buffer: device.createBuffer({ size: 16, usage: STORAGE | COPY_SRC }),
        length: 4,
      };
      // ALiBi's diagonal offsets change with kvLength: its table is written, nothing is made
      for (const terms of [{}, { alibiSlopes: new Float32Array([0.5, 0.25, 0.125, 0.0625]) }]) {
        const what = "alibiSlopes" in terms ? " with ALiBi" : "";
        const call = (kvLength: number) =>
          attention(gq, gk, gv, { ...gpu, ...terms, kvLength: [kvLength], outputs: { out, lse } });
        for (const kvLength of [600, 433]) {
          await call(kvLength); // first: binds and writes what it needs
          const again = await counting(device, () => call(kvLength));
          assert.deepEqual(
            again,
            { bindGroups: 0, buffers: 0, writes: 0, bytes: 0 },
            `a repeated call${what}`,
          );
          const want = await attention(tq, tk, tv, { ...gpu, ...terms, kvLength: [kvLength] });
          assert.deepEqual(bits((await fromGpu(out)).data), bits(want.out.data as Float32Array));
        }
        for (const kvLength of [434, 435]) {
          const grown = await counting(device, () => call(kvLength));
          assert.equal(grown.bindGroups + grown.buffers, 0, `a new kvLength${what} makes nothing`);
          assert.ok(grown.writes > 0, "and writes its uniforms");
          // the mask's bounds are one template for every length (2·Nk columns of 16 bytes): a new
          // length writes its tile lists and a bounds table, not the bounds
          assert.ok(grown.bytes < (2 * 600 * 16) / 4, `a new kvLength wrote ${grown.bytes} bytes`);
          const want = await attention(tq, tk, tv, { ...gpu, ...terms, kvLength: [kvLength] });
          assert.deepEqual(bits((await fromGpu(out)).data), bits(want.out.data as Float32Array));
        }
      }
    }),
});

Deno.test({
  name: "webgpu: a paged cache's new page table (a decoding step's) makes no buffer or bind group",
  ignore,
  fn: () =>
    withOwnDevice(async (device) => {
      const r = rng(8);
      const pageSize = 16, pages = 40, perSequence = 36; // 576 logical keys: the decoding kernels
      const tq = randomTensor(r, [1, 1, 4, 32]), to = randomTensor(r, [1, 1, 4, 32]);
      const tk = randomTensor(r, [pages, pageSize, 2, 32]);
      const tv = randomTensor(r, [pages, pageSize, 2, 32]);
      const [gq, gk, gv] = packed(device, [tq, tk, tv], 0);
      const [out] = packed(device, [to], 0);
      const lse: GpuArray = {
        buffer: device.createBuffer({ size: 16, usage: STORAGE | COPY_SRC }),
        length: 4,
      };
      const table = (shift: number) => ({
        data: Int32Array.from({ length: perSequence }, (_, i) => (i * 7 + shift) % pages),
        shape: [1, perSequence] as [number, number],
      });
      const options = (shift: number, kvLength: number) => ({
        ...gpu,
        blockTable: table(shift),
        kvLength: [kvLength],
      });
      const call = (shift: number, kvLength: number) =>
        attention(gq, gk, gv, { ...options(shift, kvLength), outputs: { out, lse } });
      await call(0, 570); // first: binds and writes what it needs
      assert.deepEqual(
        await counting(device, () => call(0, 570)),
        { bindGroups: 0, buffers: 0, writes: 0, bytes: 0 },
        "a repeated call",
      );
      for (const [shift, kvLength] of [[3, 571], [5, 572]]) {
        const n = await counting(device, () => call(shift, kvLength));
        assert.equal(n.bindGroups + n.buffers, 0, "a new page table makes nothing");
        const want = await attention(tq, tk, tv, options(shift, kvLength));
        assert.deepEqual(bits((await fromGpu(out)).data), bits(want.out.data as Float32Array));
      }
    }),
});

Deno.test({
  name:
    "webgpu: more distinct calls recorded into one encoder than a uniform arena holds stay valid",
  ignore,
  fn: () =>
    withOwnDevice(async (device) => {
      const t = randomTensor(rng(9), [1, 300, 1, 8]);
      const [gq, gk, gv] = packed(device, [t, t, t], 0);
      const lengths = Array.from({ length: 300 }, (_, i) => i + 1); // 300 distinct uniform blocks
      const check = [0, 1, 2, 150, 298, 299];
      const want: AttentionResult[] = [];
      for (const i of check) {
        want.push(await attention(t, t, t, { ...gpu, kvLength: [lengths[i]] }));
      }
      const encoder = device.createCommandEncoder();
      const outs: GpuTensor[] = [];
      for (const n of lengths) {
        outs.push((await attention(gq, gk, gv, { ...gpu, kvLength: [n], encoder })).out);
      }
      device.pushErrorScope("validation");
      device.queue.submit([encoder.finish()]);
      assert.equal(await device.popErrorScope(), null, "the recorded work is still valid");
      for (const [j, i] of check.entries()) {
        const got = (await fromGpu(outs[i])).data;
        assert.deepEqual(bits(got), bits(want[j].out.data as Float32Array), `kvLength ${i + 1}`);
      }
    }),
});
