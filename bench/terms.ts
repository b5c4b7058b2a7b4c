/**
 * What each score or softmax term costs: the forward at one shape with the term and without it,
 * in the same process, alternating (so that drifts of the machine hit both alike); the median
 * time of each and their ratio. Terms: `sinks` (one logit per query head), `alibi` (ALiBi's
 * slopes 2^(−8h/Hq)), `softcap` (for comparison: a tanh per score).
 *
 * webgpu: GPU-resident inputs and preallocated outputs, R calls then one read-back, wall time per
 * call (at N = 4096 the kernels dominate it). wasm: host tensors, one call per sample.
 *
 * Run: `deno run -A bench/terms.ts --backend wasm|webgpu [--n 4096] [--heads 8] [--d 64]
 * [--causal] [--samples 7] [--reps 20]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  attention,
  type AttentionOptions,
  backendInfo,
  fromGpu,
  type GpuArray,
  gpuDevice,
  type GpuTensor,
  type Tensor,
  tensor,
  toGpu,
} from "../mod.ts";

const { values } = parseArgs({
  options: {
    backend: { type: "string", default: "wasm" },
    n: { type: "string", default: "4096" },
    heads: { type: "string", default: "8" },
    d: { type: "string", default: "64" },
    causal: { type: "boolean", default: false },
    samples: { type: "string", default: "7" },
    reps: { type: "string", default: "20" },
  },
});
const backend = values.backend as "wasm" | "webgpu";
const N = Number(values.n), H = Number(values.heads), d = Number(values.d);
const samples = Number(values.samples), reps = backend === "webgpu" ? Number(values.reps) : 1;
const causal = values.causal;

let seed = 1;
const rand = (n: number) =>
  Float32Array.from(
    { length: n },
    () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5,
  );
const shape = [1, N, H, d] as const;
const host: Tensor[] = [0, 1, 2].map(() => tensor(rand(N * H * d), shape));
const terms: Record<string, AttentionOptions> = {
  none: {},
  sinks: { sinks: Float32Array.from({ length: H }, (_, h) => h / H - 0.5) },
  alibi: { alibiSlopes: Float32Array.from({ length: H }, (_, h) => 2 ** (-8 * (h + 1) / H)) },
  softcap: { softcap: 30 },
};

type Call = (extra: AttentionOptions) => Promise<void>;
let call: Call;
if (backend === "webgpu") {
  const device = await gpuDevice();
  if (!device) throw new Error("no WebGPU adapter");
  const [q, k, v] = await Promise.all(host.map(toGpu));
  const out: GpuTensor = {
    buffer: device.createBuffer({ size: N * H * d * 4, usage: 0x80 | 0x4 | 0x8 }),
    shape,
    dtype: "f32",
  };
  const lse: GpuArray = {
    buffer: device.createBuffer({ size: N * H * 4, usage: 0x80 | 0x4 | 0x8 }),
    length: N * H,
  };
  call = async (extra) => {
    for (let r = 0; r < reps; r++) {
      await attention(q, k, v, { causal, ...extra, outputs: { out, lse } });
    }
    await fromGpu(out); // waits for the queue
  };
} else {
  call = async (extra) => {
    await attention(host[0], host[1], host[2], { backend, causal, ...extra });
  };
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
const times: Record<string, number[]> = Object.fromEntries(Object.keys(terms).map((t) => [t, []]));
// compile and warm up; a term the backend does not implement yet is left out, and said so
const missing: string[] = [];
for (const t of Object.keys(terms)) {
  try {
    await call(terms[t]);
  } catch (e) {
    if (!(e instanceof TypeError && /does not implement/.test(e.message))) throw e;
    missing.push(t);
    delete terms[t];
    delete times[t];
  }
}
for (let s = 0; s < samples; s++) {
  for (const t of Object.keys(terms)) {
    const t0 = performance.now();
    await call(terms[t]);
    times[t].push((performance.now() - t0) / reps);
  }
}
const info = await backendInfo({ backend });
if (missing.length) console.log(`not implemented by ${backend} yet: ${missing.join(", ")}`);
console.log(
  `${info.device}; forward B=1 N=${N} H=${H} d=${d} f32${causal ? " causal" : ""}, ` +
    `median of ${samples} samples${reps > 1 ? ` of ${reps} calls` : ""}, alternating`,
);
console.log("term      ms / call   × without");
const base = median(times.none);
for (const t of Object.keys(terms)) {
  const m = median(times[t]);
  console.log(`${t.padEnd(8)} ${m.toFixed(3).padStart(10)}   ${(m / base).toFixed(3)}`);
}
