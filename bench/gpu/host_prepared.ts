/**
 * The host's work per layer of a decoding loop, plain calls against prepared ones: 32 layers with
 * their own K and V caches (Nk 4096, Hq 32, Hk 8, d 128, f32), `kvLength` growing a step, each
 * step's layers recorded into one command encoder that is finished and never submitted, so that
 * the GPU's time is left out and what remains is the library's JavaScript and WebGPU's encoding.
 * The two forms alternate block by block, either first.
 *
 * Run: `deno run -A bench/gpu/host_prepared.ts [--steps 40] [--blocks 6]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { attention, gpuDevice, prepareAttention, tensor, toGpu } from "../../mod.ts";
import type { GpuTensor, Shape4 } from "../../mod.ts";

const { values } = parseArgs({
  options: { steps: { type: "string", default: "40" }, blocks: { type: "string", default: "6" } },
});
const device = await gpuDevice();
if (!device) throw new Error("needs a WebGPU adapter");
const L = 32, nk = 4096, hq = 32, hk = 8, d = 128;
const filled = (shape: Shape4) =>
  toGpu(tensor(new Float32Array(shape.reduce((a, b) => a * b)).fill(0.5), shape));
const K: GpuTensor[] = [], V: GpuTensor[] = [], acts: GpuTensor[] = [];
for (let l = 0; l < L; l++) {
  K.push(await filled([1, nk, hk, d])), V.push(await filled([1, nk, hk, d]));
}
for (let l = 0; l <= L; l++) acts.push(await filled([1, 1, hq, d]));
const lse = { buffer: (await filled([1, 1, 1, hq])).buffer, length: hq };
const layers = await Promise.all(
  acts.slice(0, L).map((q, l) =>
    prepareAttention(q, K[l], V[l], { kvLength: [3000], outputs: { out: acts[l + 1], lse } })
  ),
);
type Form = (l: number, kvLength: number[], encoder: GPUCommandEncoder) => Promise<unknown>;
const forms: [string, Form][] = [
  [
    "attention",
    (l, kvLength, encoder) =>
      attention(acts[l], K[l], V[l], { kvLength, outputs: { out: acts[l + 1], lse }, encoder }),
  ],
  ["prepared", (l, kvLength, encoder) => layers[l].run({ kvLength, encoder })],
];
const steps = Number(values.steps);
let t = 3000;
for (let block = 0; block < Number(values.blocks); block++) {
  const line: string[] = [];
  for (const [name, form] of block % 2 ? [...forms].reverse() : forms) {
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) {
      const encoder = device.createCommandEncoder();
      const kvLength = [t = t >= 4000 ? 3001 : t + 1];
      for (let l = 0; l < L; l++) await form(l, kvLength, encoder);
      encoder.finish();
    }
    line.push(`${name} ${((performance.now() - t0) / steps / L * 1000).toFixed(1)} µs/layer`);
  }
  console.log(line.join(" | "));
}
