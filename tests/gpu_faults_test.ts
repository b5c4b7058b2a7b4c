/**
 * WebGPU reliability: bad GPU inputs (a buffer of another device, a destroyed buffer, a buffer
 * beyond maxBufferSize, no adapter at all), a device lost during a call, 100 concurrent calls,
 * library buffers released after every call, failed ones included, and (only with
 * FLASHMASK_GPU_OOM=1) a real out-of-device-memory error.
 *
 * The tests that need an adapter are ignored without one; the no-adapter test replaces the
 * adapter lookup (`setAdapterSource`) and runs everywhere.
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  fromGpu,
  gpuDevice,
  gpuInfo,
  readGpuArray,
  type Tensor,
  tensor,
  toGpu,
} from "../mod.ts";
import { gpuStats } from "../gpu/internal.ts";
import { setAdapterSource } from "../gpu/device.ts";
import { engine } from "../wasm/_runtime.ts";
import { concurrentCalls, rejectsWith, runBits, smallProblems, within } from "./_faults.ts";
import { randomTensor, rng, testAdapter, withGpuTuning } from "./_util.ts";

const info = await testAdapter();
const ignore = info === undefined;
const STORAGE = 0x80, COPY_SRC = 0x4, COPY_DST = 0x8;

const rand = rng(5);
const q = randomTensor(rand, [1, 40, 2, 16]);
const k = randomTensor(rand, [1, 33, 1, 16]);
const v = randomTensor(rand, [1, 33, 1, 16]);
const dOut = randomTensor(rand, [1, 40, 2, 16]);
const gpu = { backend: "webgpu" } as const;

/** A GPU tensor holding `t` in a buffer created directly on `device`. */
function bufferOn(
  device: GPUDevice,
  t: Tensor,
): { buffer: GPUBuffer; shape: Tensor["shape"]; dtype: "f32" } {
  const buffer = device.createBuffer({
    size: t.data.byteLength,
    usage: STORAGE | COPY_SRC | COPY_DST,
  });
  device.queue.writeBuffer(buffer, 0, t.data as Float32Array<ArrayBuffer>);
  return { buffer, shape: t.shape, dtype: "f32" };
}

/** Asserts that a failed call created no buffer it left behind and submitted nothing. */
async function leavesNothing(call: () => Promise<unknown>): Promise<void> {
  const before = gpuStats();
  await call();
  const after = gpuStats();
  assert.equal(after.submits, before.submits, "nothing was submitted");
  assert.equal(after.liveBuffers, before.liveBuffers, "no library buffer left behind");
}

Deno.test({
  name: "webgpu: a GPU tensor from another device is a TypeError naming it, before any dispatch",
  ignore,
  async fn() {
    await attention(q, k, v, gpu); // compile first, so that only the check is timed below
    const adapter = await navigator.gpu.requestAdapter();
    const other = await adapter!.requestDevice();
    try {
      const [fq, fk, fdo] = [q, k, dOut].map((t) => bufferOn(other, t));
      const re = (name: string) => new RegExp(`^${name}\\.buffer .*belongs to another device`);
      await leavesNothing(() => rejectsWith(attention(q, fk, v, gpu), TypeError, re("k")));
      await leavesNothing(() => rejectsWith(attention(fq, k, v), TypeError, re("q")));
      const { out, lse } = await attention(q, k, v, gpu);
      await leavesNothing(() =>
        rejectsWith(
          attentionBackward({ q, k, v, out, lse, dOut: fdo }, gpu),
          TypeError,
          re("dOut"),
        )
      );
      const fl = { buffer: bufferOn(other, tensor(lse, [1, 1, 2, 40])).buffer, length: lse.length };
      await leavesNothing(() =>
        rejectsWith(attentionBackward({ q, k, v, out, lse: fl, dOut }, gpu), TypeError, re("lse"))
      );
      await rejectsWith(fromGpu(fq), TypeError, re("t"));
      await rejectsWith(readGpuArray(fl), TypeError, re("a"));
      // the same data on the library's own device works
      const own = bufferOn((await gpuDevice())!, k);
      const ok = await attention(q, own, v, gpu);
      assert.deepEqual(ok.out.data, (await attention(q, k, v, gpu)).out.data);
      own.buffer.destroy();
    } finally {
      other.destroy();
    }
  },
});

Deno.test({
  name: "webgpu: a destroyed buffer is an Error naming the tensor, not a hang",
  ignore,
  async fn() {
    const mine = await toGpu(k); // registered by the library
    mine.buffer.destroy();
    const theirs = bufferOn((await gpuDevice())!, v); // created by the caller on gpuDevice()
    theirs.buffer.destroy();
    const re = (name: string) => new RegExp(`^${name}\\.buffer has been destroyed`);
    await leavesNothing(() => rejectsWith(attention(q, mine, v, gpu), Error, re("k")));
    await leavesNothing(() => rejectsWith(attention(q, k, theirs, gpu), Error, re("v")));
    const gq = await toGpu(q);
    const res = await attention(gq, k, v);
    res.out.buffer.destroy();
    await leavesNothing(() =>
      rejectsWith(
        attentionBackward({ q: gq, k, v, out: res.out, lse: res.lse, dOut }, gpu),
        Error,
        re("out"),
      )
    );
    await rejectsWith(fromGpu(res.out), Error, re("t"));
    res.lse.buffer.destroy();
    await rejectsWith(readGpuArray(res.lse), Error, re("a"));
    gq.buffer.destroy();
  },
});

Deno.test({
  name: "webgpu: a buffer beyond maxBufferSize is a RangeError naming it, before computing",
  ignore,
  async fn() {
    const device = (await gpuDevice())!;
    const max = device.limits.maxBufferSize;
    // q with one more element than maxBufferSize holds, without allocating it: the backend
    // looks at its size before it reads any data (checkFinite: false skips the scan)
    const heads = Math.ceil((max + 1) / 4 / 32);
    const n = heads * 32;
    const data = new Proxy(new Float32Array(1), {
      get: (t, key) => key === "length" ? n : key === "byteLength" ? 4 * n : Reflect.get(t, key),
    });
    const big = { data, shape: [1, 1, heads, 32], dtype: "f32" } as Tensor;
    const small = randomTensor(rand, [1, 1, 1, 32]);
    await attention(small, small, small, gpu); // compile first
    await leavesNothing(() =>
      rejectsWith(
        attention(big, small, small, { ...gpu, checkFinite: false }),
        RangeError,
        new RegExp(`^q needs a ${4 * n}-byte GPU buffer; this adapter's maxBufferSize is ${max}`),
      )
    );
  },
});

Deno.test('backend "webgpu" without an adapter is an Error that names backend "wasm"', async () => {
  const old = setAdapterSource(() => Promise.resolve(null));
  try {
    assert.equal(await gpuInfo(), undefined);
    assert.equal(await gpuDevice(), undefined);
    const runs = engine().phasesRun;
    const re = /no WebGPU adapter was found on this machine; use backend: "wasm"/;
    await rejectsWith(attention(q, k, v, gpu), Error, re);
    const { out, lse } = await attention(q, k, v, { backend: "js" });
    await rejectsWith(attentionBackward({ q, k, v, out, lse, dOut }, gpu), Error, re);
    await rejectsWith(toGpu(q), Error, re);
    assert.equal(engine().phasesRun, runs, "nothing computed");
    // auto falls back to the CPU and gives the wasm backend's bits
    const auto = await attention(q, k, v);
    assert.deepEqual(auto.out.data, (await attention(q, k, v, { backend: "wasm" })).out.data);
    // an adapter lookup that throws says so too
    setAdapterSource(() => Promise.reject(new Error("driver exploded")));
    await rejectsWith(
      attention(q, k, v, gpu),
      Error,
      /WebGPU could not be initialised \(driver exploded\); use backend: "wasm"/,
    );
    assert.deepEqual((await attention(q, k, v)).out.data, auto.out.data);
  } finally {
    setAdapterSource(old);
  }
  if (!ignore) {
    // the real adapter is found again
    assert.ok(await gpuInfo());
    await attention(q, k, v, gpu);
  }
});

Deno.test({
  name: "webgpu: a device lost during a call rejects it with an Error; the next call recreates it",
  ignore,
  async fn() {
    const want = await attention(q, k, v, gpu);
    const wantG = await attentionBackward({ q, k, v, ...want, dOut }, gpu);
    const resident = await toGpu(k);
    const lost = /^WebGPU device lost during .*destroyed.*next call creates a new device/;
    // 1. the device is destroyed while the work is in flight (right after its submission)
    for (const call of ["forward", "backward"]) {
      const device = (await gpuDevice())!;
      await withGpuTuning({ afterSubmit: (d) => d.destroy() }, async () => {
        const p = call === "forward"
          ? attention(q, k, v, gpu)
          : attentionBackward({ q, k, v, ...want, dOut }, gpu);
        await rejectsWith(p, Error, lost, 30_000);
      });
      // the next call gets a new device and the same bits
      const again = await within(attention(q, k, v, gpu), 60_000, "the call after the loss");
      assert.ok(again.ok, `the call after the loss failed: ${!again.ok && again.error.message}`);
      assert.deepEqual(again.value.out.data, want.out.data);
      assert.notEqual(await gpuDevice(), device, "a new device");
    }
    const g = await attentionBackward({ q, k, v, ...want, dOut }, gpu);
    assert.deepEqual([g.dq.data, g.dk.data, g.dv.data], [
      wantG.dq.data,
      wantG.dk.data,
      wantG.dv.data,
    ]);
    // 2. a GPU tensor of the lost device is refused, naming it
    await rejectsWith(
      attention(q, resident, v, gpu),
      TypeError,
      /^k\.buffer was created on a GPU device that has since been lost/,
    );
    // 3. destroyed at various moments with several calls in flight: every call settles (with
    // the right bits, or with the device-lost Error) and the device comes back
    for (const delay of [0, 1, 5, 20, 60]) {
      const device = (await gpuDevice())!;
      const calls = [0, 1, 2, 3].map((i) =>
        i % 2
          ? attention(q, k, v, gpu).then((r) => assert.deepEqual(r.out.data, want.out.data))
          : attentionBackward({ q, k, v, ...want, dOut }, gpu).then((r) =>
            assert.deepEqual(r.dq.data, wantG.dq.data)
          )
      );
      await new Promise((r) => setTimeout(r, delay));
      device.destroy();
      for (const c of calls) {
        const r = await within(c, 30_000, `a call with the device destroyed after ${delay} ms`);
        if (!r.ok) assert.match(r.error.message, lost, `delay ${delay}`);
      }
      const after = await attention(q, k, v, gpu);
      assert.deepEqual(after.out.data, want.out.data);
    }
  },
});

Deno.test({
  name: "webgpu: 100 concurrent calls from async tasks all return the right bits",
  ignore,
  async fn() {
    // compile once first: concurrent calls of an uncompiled configuration share one compile,
    // but on a software adapter that compile alone takes tens of seconds
    await runBits(smallProblems(1, 1)[0], gpu);
    const before = gpuStats();
    await concurrentCalls(() => gpu);
    const after = gpuStats();
    assert.equal(
      after.liveBuffers - after.cachedBuffers,
      before.liveBuffers - before.cachedBuffers,
      "every call released its buffers",
    );
  },
});

Deno.test({
  name:
    "webgpu: GPU-resident outputs are the only buffers a call leaves; destroying them frees all",
  ignore,
  async fn() {
    const before = gpuStats();
    const [gq, gk, gv, gdo] = await Promise.all([q, k, v, dOut].map(toGpu));
    const f = await attention(gq, gk, gv);
    const g = await attentionBackward({ q: gq, k: gk, v: gv, ...f, dOut: gdo }, {});
    const during = gpuStats();
    // 4 inputs + out, lse + dq, dk, dv (and the cached schedules, scratch and uniform blocks)
    assert.equal(
      during.liveBuffers - during.cachedBuffers,
      before.liveBuffers - before.cachedBuffers + 9,
    );
    for (const t of [gq, gk, gv, gdo, f.out, g.dq, g.dk, g.dv]) t.buffer.destroy();
    f.lse.buffer.destroy();
    const after = gpuStats();
    assert.equal(
      after.liveBuffers - after.cachedBuffers,
      before.liveBuffers - before.cachedBuffers,
    );
  },
});

// Real out-of-memory: fills the device's memory with buffers, then calls. Only where asked
// (FLASHMASK_GPU_OOM=1): on a software adapter the "device memory" is this machine's RAM.
Deno.test({
  name:
    "webgpu: out of device memory is an Error that says so, not a hang; freeing memory recovers",
  ignore: ignore || Deno.env.get("FLASHMASK_GPU_OOM") !== "1",
  async fn() {
    const device = (await gpuDevice())!;
    const [small] = smallProblems(1, 7);
    const want = await runBits(small, gpu);
    const hog: GPUBuffer[] = [];
    // allocate the largest buffers that still fit, halving down to 1 MiB
    for (let size = device.limits.maxBufferSize; size >= 1 << 20;) {
      device.pushErrorScope("out-of-memory");
      const b = device.createBuffer({ size, usage: STORAGE });
      if (await device.popErrorScope()) {
        b.destroy();
        size = Math.floor(size / 2 / 4) * 4;
      } else {
        hog.push(b);
      }
      if (hog.length > 100_000) break;
    }
    const hogged = hog.reduce((a, b) => a + b.size, 0);
    console.log(`hogged ${(hogged / 2 ** 30).toFixed(1)} GiB in ${hog.length} buffers`);
    try {
      const big = randomTensor(rand, [1, 4096, 8, 64]);
      await rejectsWith(attention(big, big, big, gpu), Error, /WebGPU ran out of memory/);
    } finally {
      for (const b of hog) b.destroy();
    }
    assert.deepEqual(await runBits(small, gpu), want, "the next call works again");
  },
});
