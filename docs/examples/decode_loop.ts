/**
 * Autoregressive decoding with a KV cache on the GPU: a stack of layers, each with its K and V
 * cache in one GPU buffer of the maximum length, written by the caller one token at a time
 * (`queue.writeBuffer`); every step calls attention once per layer on GPU-resident tensors, with
 * `kvLength` growing by one, the keys past it masked, and the results written into preallocated
 * tensors (`options.outputs`). Nothing waits for the GPU until the one read-back at the end.
 *
 * With `record`, a step's layers are recorded into one command encoder (`options.encoder`) and
 * submitted once, as a framework that batches its own kernels would. With `prepared`, each layer's
 * call is prepared once (`prepareAttention`: validated, checked on the device and compiled before
 * the first token) and run each step with the new `kvLength`.
 *
 * A real model would put its projections and MLP between the attention calls (its own kernels on
 * the same device, `gpuDevice()` or one given to `useGpuDevice`); here a layer's output is the
 * next layer's query, and the new keys and values are pseudo-random.
 *
 * Run: `deno run -A docs/examples/decode_loop.ts [--layers 32] [--steps 64] [--cache 4096]
 * [--record] [--prepared]` (prints tokens per second; needs a WebGPU adapter).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  attention,
  fromGpu,
  type GpuArray,
  gpuDevice,
  type GpuTensor,
  prepareAttention,
  type Tensor,
  tensor,
} from "../../mod.ts";

/** Sizes of the decode loop. */
export interface DecodeLoopOptions {
  layers: number;
  /** Tokens generated (one attention call per layer each). */
  steps: number;
  /** Keys already in the cache before the first step. */
  prompt: number;
  /** Capacity of each layer's cache (prompt + steps at most). */
  cache: number;
  heads: number;
  kvHeads: number;
  dim: number;
  /** Seed of the pseudo-random tokens. */
  seed?: number;
  /** Record each step's layers into one command encoder, submitted once per step. */
  record?: boolean;
  /** Prepare each layer's call once (`prepareAttention`) and run it each step. */
  prepared?: boolean;
}

/** What the loop produced and how long it took. */
export interface DecodeLoopResult {
  /** The last layer's output for the last token, `[1, 1, heads, dim]`. */
  out: Tensor;
  /** Wall time of the steps, the final read-back included, in ms. */
  ms: number;
  tokensPerSecond: number;
}

/** Pseudo-random values for (step, layer, what): the same in every run and for any replay. */
export function token(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    x[i] = (s / 4294967296) * 2 - 1;
  }
  return x;
}

/** The seed of a (step, layer, part) draw. */
export const seedOf = (seed: number, step: number, layer: number, part: number) =>
  seed * 1000003 + step * 7919 + layer * 131 + part;

/** Runs the decode loop on the library's GPU device. */
export async function decodeLoop(o: DecodeLoopOptions): Promise<DecodeLoopResult> {
  const device = await gpuDevice();
  if (!device) throw new Error("the decode loop needs a WebGPU adapter");
  const { layers, steps, prompt, cache, heads, kvHeads, dim } = o;
  const seed = o.seed ?? 1;
  if (prompt + steps > cache) throw new RangeError("prompt + steps exceeds the cache");
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const row = kvHeads * dim * 4; // bytes of one token's keys (or values) in a cache
  const kvShape = [1, cache, kvHeads, dim] as const, qShape = [1, 1, heads, dim] as const;
  const buffer = (size: number) => device.createBuffer({ size, usage });
  const K: GpuTensor[] = [], V: GpuTensor[] = [];
  for (let l = 0; l < layers; l++) {
    K.push({ buffer: buffer(cache * row), shape: kvShape, dtype: "f32" });
    V.push({ buffer: buffer(cache * row), shape: kvShape, dtype: "f32" });
    // the prompt's keys and values, one write per cache (each write is a call into the runtime)
    const n = kvHeads * dim, pk = new Float32Array(prompt * n), pv = new Float32Array(prompt * n);
    for (let t = 0; t < prompt; t++) {
      pk.set(token(n, seedOf(seed, -t - 1, l, 1)), t * n);
      pv.set(token(n, seedOf(seed, -t - 1, l, 2)), t * n);
    }
    device.queue.writeBuffer(K[l].buffer, 0, pk);
    device.queue.writeBuffer(V[l].buffer, 0, pv);
  }
  // one activation per layer: layer l reads acts[l] and writes acts[l + 1]
  const acts: GpuTensor[] = Array.from({ length: layers + 1 }, () => ({
    buffer: buffer(heads * dim * 4),
    shape: qShape,
    dtype: "f32",
  }));
  const lse: GpuArray = { buffer: buffer(heads * 4), length: heads };
  // a prepared call per layer: everything but the key length is fixed
  const layer = o.prepared
    ? await Promise.all(
      acts.slice(0, layers).map((q, l) =>
        prepareAttention(q, K[l], V[l], { kvLength: [prompt], outputs: { out: acts[l + 1], lse } })
      ),
    )
    : undefined;
  // the prompt's upload is not part of decoding: let the queue finish it before the clock starts
  await device.queue.onSubmittedWorkDone();
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    const t = prompt + s; // position of the new token
    device.queue.writeBuffer(acts[0].buffer, 0, token(heads * dim, seedOf(seed, s, 0, 0)));
    // the writes of a step all reach the queue before its work (each layer has its own cache)
    const encoder = o.record ? device.createCommandEncoder() : undefined;
    for (let l = 0; l < layers; l++) {
      device.queue.writeBuffer(K[l].buffer, t * row, token(kvHeads * dim, seedOf(seed, s, l, 1)));
      device.queue.writeBuffer(V[l].buffer, t * row, token(kvHeads * dim, seedOf(seed, s, l, 2)));
      if (layer) await layer[l].run({ kvLength: [t + 1], encoder });
      else {
        await attention(acts[l], K[l], V[l], {
          kvLength: [t + 1],
          outputs: { out: acts[l + 1], lse },
          encoder,
        });
      }
    }
    if (encoder) device.queue.submit([encoder.finish()]);
  }
  const out = await fromGpu(acts[layers]);
  const ms = performance.now() - t0;
  for (const t of [...K, ...V, ...acts, lse]) t.buffer.destroy();
  return { out, ms, tokensPerSecond: (1000 * steps) / ms };
}

/**
 * The same loop on host arrays with another backend (the tests compare it with the GPU loop):
 * the caches are host arrays filled with the same values.
 */
export async function decodeLoopOnHost(
  o: DecodeLoopOptions,
  backend: "webgpu" | "wasm" | "js",
): Promise<Tensor> {
  const { layers, steps, prompt, cache, heads, kvHeads, dim } = o;
  const seed = o.seed ?? 1;
  const n = kvHeads * dim;
  const K = Array.from({ length: layers }, () => new Float32Array(cache * n));
  const V = Array.from({ length: layers }, () => new Float32Array(cache * n));
  for (let l = 0; l < layers; l++) {
    for (let t = 0; t < prompt; t++) {
      K[l].set(token(n, seedOf(seed, -t - 1, l, 1)), t * n);
      V[l].set(token(n, seedOf(seed, -t - 1, l, 2)), t * n);
    }
  }
  let x = tensor(new Float32Array(heads * dim), [1, 1, heads, dim]);
  for (let s = 0; s < steps; s++) {
    const t = prompt + s;
    x = tensor(token(heads * dim, seedOf(seed, s, 0, 0)), [1, 1, heads, dim]);
    for (let l = 0; l < layers; l++) {
      K[l].set(token(n, seedOf(seed, s, l, 1)), t * n);
      V[l].set(token(n, seedOf(seed, s, l, 2)), t * n);
      const k = tensor(K[l], [1, cache, kvHeads, dim]), v = tensor(V[l], [1, cache, kvHeads, dim]);
      x = (await attention(x, k, v, { kvLength: [t + 1], backend })).out;
    }
  }
  return x;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      layers: { type: "string", default: "32" },
      steps: { type: "string", default: "64" },
      cache: { type: "string", default: "4096" },
      heads: { type: "string", default: "32" },
      "kv-heads": { type: "string", default: "8" },
      dim: { type: "string", default: "128" },
      record: { type: "boolean", default: false },
      prepared: { type: "boolean", default: false },
    },
  });
  const cache = Number(values.cache), steps = Number(values.steps);
  const o: DecodeLoopOptions = {
    layers: Number(values.layers),
    steps,
    prompt: cache - steps,
    cache,
    heads: Number(values.heads),
    kvHeads: Number(values["kv-heads"]),
    dim: Number(values.dim),
    record: values.record,
    prepared: values.prepared,
  };
  // compile the kernels and let the JIT settle first
  await decodeLoop({ ...o, steps: Math.min(steps, 16), prompt: cache - Math.min(steps, 16) });
  const r = await decodeLoop(o);
  console.log(
    `${o.layers} layers, ${steps} tokens against ${o.prompt}–${cache} cached keys ` +
      `(Hq ${o.heads}, Hk ${o.kvHeads}, d ${o.dim}, f32${o.record ? ", recorded" : ""}${
        o.prepared ? ", prepared" : ""
      }): ${r.tokensPerSecond.toFixed(1)} tokens/s ` +
      `(${(r.ms / steps).toFixed(2)} ms a token, ${
        (r.ms / steps / o.layers).toFixed(3)
      } ms a layer)`,
  );
}
