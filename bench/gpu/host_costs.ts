/**
 * What the host side of a GPU-resident call is made of. For a few shapes, R awaited calls with
 * preallocated outputs (as a model's layers make them), then R calls recorded into command
 * encoders: the wall time per call, and the time spent inside each WebGPU method the calls use
 * (every method of the device, queue, encoder and pass wrapped with a timer), the rest being the
 * library's JavaScript. Then the WebGPU operations a call would otherwise need, each timed alone.
 * It needs a WebGPU adapter; its figures matter on a hardware one.
 *
 * Run: `deno run -A bench/gpu/host_costs.ts [--reps 300]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { attention, fromGpu, gpuDevice, type GpuTensor, tensor, toGpu } from "../../mod.ts";

const { values } = parseArgs({ options: { reps: { type: "string", default: "300" } } });
const R = Number(values.reps);

/** Time spent inside each wrapped method: [ms, calls]. */
const spent = new Map<string, [number, number]>();

function wrap(proto: Record<string, unknown>, cls: string, names: string[]): void {
  for (const name of names) {
    const f = proto[name] as (...a: unknown[]) => unknown;
    proto[name] = function (this: unknown, ...a: unknown[]) {
      const t0 = performance.now();
      try {
        return f.apply(this, a);
      } finally {
        const e = spent.get(`${cls}.${name}`) ?? [0, 0];
        e[0] += performance.now() - t0;
        e[1]++;
        spent.set(`${cls}.${name}`, e);
      }
    };
  }
}

const g = globalThis as unknown as Record<string, { prototype: Record<string, unknown> }>;
wrap(g.GPUDevice.prototype, "device", [
  "createBuffer",
  "createBindGroup",
  "createCommandEncoder",
  "pushErrorScope",
  "popErrorScope",
]);
wrap(g.GPUQueue.prototype, "queue", ["writeBuffer", "submit"]);
wrap(g.GPUCommandEncoder.prototype, "encoder", ["beginComputePass", "finish"]);
wrap(g.GPUComputePassEncoder.prototype, "pass", [
  "setPipeline",
  "setBindGroup",
  "dispatchWorkgroups",
  "end",
]);

const dev = (await gpuDevice())!;
const random = (shape: [number, number, number, number]) =>
  toGpu(tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b) }, Math.random), shape));

const shapes: { name: string; nq: number; nk: number; hq: number; hk: number; d: number }[] = [
  { name: "decode Nq=1 Nk=4096 Hq=32 Hk=8 d=128", nq: 1, nk: 4096, hq: 32, hk: 8, d: 128 },
  { name: "prefill N=128 H=16 d=64", nq: 128, nk: 128, hq: 16, hk: 16, d: 64 },
  { name: "prefill N=1024 H=16 d=64", nq: 1024, nk: 1024, hq: 16, hk: 16, d: 64 },
];

for (const s of shapes) {
  const q = await random([1, s.nq, s.hq, s.d]);
  const k = await random([1, s.nk, s.hk, s.d]), v = await random([1, s.nk, s.hk, s.d]);
  const out: GpuTensor = await random([1, s.nq, s.hq, s.d]);
  const lse = { buffer: (await random([1, s.hq, s.nq, 1])).buffer, length: s.hq * s.nq };
  for (const recorded of [false, true]) {
    let encoder = recorded ? dev.createCommandEncoder() : undefined;
    const call = (i: number) => {
      if (recorded && i % 32 === 0) {
        if (i > 0) dev.queue.submit([encoder!.finish()]);
        encoder = dev.createCommandEncoder();
      }
      return attention(q, k, v, { outputs: { out, lse }, encoder });
    };
    for (let i = 0; i < 30; i++) await call(i);
    await fromGpu(out);
    spent.clear();
    const t0 = performance.now();
    for (let i = 0; i < R; i++) await call(i);
    const wall = ((performance.now() - t0) / R) * 1000;
    const during = [...spent];
    if (encoder) dev.queue.submit([encoder.finish()]);
    await fromGpu(out);
    console.log(
      `${s.name}, ${recorded ? "recorded, 32 calls a submission" : "awaited"}: ` +
        `${wall.toFixed(1)} µs a call`,
    );
    let inside = 0;
    for (const [name, [ms, n]] of during.sort((a, b) => b[1][0] - a[1][0])) {
      inside += ms;
      const us = (ms / R) * 1000;
      if (us >= 0.5) {
        console.log(`  ${name.padEnd(28)} ${us.toFixed(1).padStart(7)} µs  ${(n / R).toFixed(2)}×`);
      }
    }
    console.log(
      `  ${"the library's JavaScript".padEnd(28)} ${
        (wall - (inside / R) * 1000).toFixed(1).padStart(7)
      } µs`,
    );
  }
  for (const t of [q, k, v, out, lse]) t.buffer.destroy();
}

const time = async (what: string, n: number, f: () => unknown) => {
  for (let i = 0; i < 5; i++) await f();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await f();
  console.log(what.padEnd(52), (((performance.now() - t0) / n) * 1000).toFixed(1), "µs");
};
console.log("\nWebGPU operations alone (wrapped as above):");
await time("empty encoder + pass + submit", 1000, () => {
  const e = dev.createCommandEncoder();
  e.beginComputePass().end();
  dev.queue.submit([e.finish()]);
});
await time("64-byte uniform buffer: create, write, destroy", 1000, () => {
  const b = dev.createBuffer({ size: 64, usage: 0x40 | 0x8 });
  dev.queue.writeBuffer(b, 0, new Uint32Array(16));
  b.destroy();
});
const layout = dev.createBindGroupLayout({
  entries: [0, 1, 2, 3].map((binding) => ({
    binding,
    visibility: 4,
    buffer: { type: "read-only-storage" as const },
  })),
});
const bufs = [0, 1, 2, 3].map(() => dev.createBuffer({ size: 1024, usage: 0x80 }));
await time("bind group of 4 storage buffers", 1000, () =>
  dev.createBindGroup({
    layout,
    entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })),
  }));
