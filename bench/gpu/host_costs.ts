/**
 * What the host side of a GPU-resident call is made of: a whole `attention` call (B=1 N=1024
 * H=16 d=64, GPU-resident, outputs given or new), and the WebGPU operations every call performs,
 * each timed alone in microseconds (mean over many). It needs a WebGPU adapter; its figures
 * matter on a hardware one.
 *
 * Run: `deno run -A bench/gpu/host_costs.ts`
 *
 * @module
 */

import { attention, fromGpu, gpuDevice, tensor, toGpu } from "../../mod.ts";
import { checkProblem } from "../../gpu/internal.ts";
const mk = (n: number, h: number, d: number) =>
  tensor(Float32Array.from({ length: n * h * d }, () => Math.random() - 0.5), [1, n, h, d]);
const time = async (what: string, R: number, f: () => unknown) => {
  for (let i = 0; i < 5; i++) await f();
  const t0 = performance.now();
  for (let i = 0; i < R; i++) await f();
  console.log(what.padEnd(40), ((performance.now() - t0) / R * 1000).toFixed(1), "µs");
};
const [n, h, d] = [1024, 16, 64];
const q = await toGpu(mk(n, h, d)), k = await toGpu(mk(n, h, d)), v = await toGpu(mk(n, h, d));
const out = await toGpu(mk(n, h, d));
const lse = { buffer: (await toGpu(mk(1, h, n))).buffer, length: h * n };
const dev = (await gpuDevice())!;
await time("attention (outputs given)", 200, () => attention(q, k, v, { outputs: { out, lse } }));
await fromGpu(out);
await time("attention (new outputs, destroyed)", 200, async () => {
  const r = await attention(q, k, v, {});
  r.out.buffer.destroy();
  r.lse.buffer.destroy();
});
await fromGpu(out);
await time("checkProblem", 1000, () => checkProblem({ q, k, v }, {}));
await time("push+pop 2 error scopes, await", 1000, async () => {
  dev.pushErrorScope("out-of-memory");
  dev.pushErrorScope("validation");
  await Promise.all([dev.popErrorScope(), dev.popErrorScope()]);
});
await time("createBuffer 64 B uniform + writeBuffer + destroy", 1000, () => {
  const b = dev.createBuffer({ size: 64, usage: 0x40 | 0x8 });
  dev.queue.writeBuffer(b, 0, new Uint32Array(16));
  b.destroy();
});
await time("empty encoder+pass+submit", 1000, () => {
  const e = dev.createCommandEncoder();
  const p = e.beginComputePass();
  p.end();
  dev.queue.submit([e.finish()]);
});
await time("await resolved promise x10", 1000, async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
});
await time("setTimeout 0", 100, () => new Promise((r) => setTimeout(r, 0)));
