/**
 * Shared set-up of the `deno bench` suites (`bench/*_bench.ts`): which backend they time,
 * problem shapes, inputs, and bench registration that skips unavailable backends with the
 * reason printed.
 *
 * The backend is `FLASHMASK_BENCH_BACKEND` when set, else the one the library's `auto` picks
 * (recognised as in the bench CLI). Kernel groups time only the attention
 * call on prepared inputs (`t.start()` / `t.end()` around it): mask schedule cached, tensors
 * validated and ready; for the WebGPU backend the tensors live on the GPU (`toGpu`) and so do
 * the results, so no upload or read-back is timed (the call still waits for the GPU to finish).
 * End-to-end groups also time building the mask and its schedule, making the host tensors and
 * reading the output back as f32.
 *
 * @module
 */

import {
  attention,
  attentionBackward,
  type GpuArray,
  type GpuTensor,
  type Tensor,
  tensor,
  toF16,
  toFloat32,
  toGpu,
} from "../../mod.ts";
import { exampleMask, type MaskName } from "../../masks/mod.ts";
import { backendOptions, type BackendStatus, chooseBackends, supports } from "../cli/_device.ts";
import { makeInputs, type Shape, warmUp } from "../cli/_run.ts";

export { warmUp };

/** Iterations and warm-ups per bench: the kernels are slow enough that a few suffice. */
export const ITERATIONS = { n: 5, warmup: 1 } as const;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env
  }
}

/**
 * The backend the suites time (null when none can run `pass`), and the status of every backend
 * looked at; reasons for skipping are printed.
 */
export async function suiteBackend(
  pass: "fwd" | "bwd" = "fwd",
): Promise<{ name: string | null; statuses: BackendStatus[] }> {
  const { statuses, chosen, error } = await chooseBackends(
    env("FLASHMASK_BENCH_BACKEND") ?? "auto",
  );
  const s = chosen[0];
  if (error !== undefined) console.log(`skipping: ${error}`);
  else if (!supports(s, pass)) console.log(`skipping backend ${s.name}: ${s.backwardReason}`);
  else {
    await warmUp(s.name, undefined, [pass]);
    return { name: s.name, statuses };
  }
  return { name: null, statuses };
}

/** A label for a shape, used in group names. */
export function shapeLabel(s: Shape): string {
  return `B=${s.batch} N=${s.seq} Hq=${s.heads} Hk=${s.kvHeads} d=${s.dim} ${s.dtype}`;
}

/**
 * Registers the forward (`pass: "fwd"`) or backward kernel bench of one mask type: prepared
 * inputs, cached schedule; only the call is timed.
 */
export function benchKernel(o: {
  backend: string | null;
  pass: "fwd" | "bwd";
  shape: Shape;
  mask: MaskName;
  group: string;
  baseline?: boolean;
  name?: string;
}): void {
  const name = o.name ?? o.mask;
  if (o.backend === null) {
    Deno.bench({ name, group: o.group, ignore: true, fn() {} });
    return;
  }
  const backend = o.backend;
  const { mask } = exampleMask(o.mask, o.shape.seq);
  const options = { ...backendOptions(backend), mask };
  const host = makeInputs(o.shape, 1);
  const gpu = backend === "webgpu";
  let inputs: { q: AnyTensor; k: AnyTensor; v: AnyTensor; dOut: AnyTensor } | undefined;
  let saved: { out: AnyTensor; lse: Float32Array | GpuArray } | undefined;
  /** Frees GPU-resident results (they are new buffers on every call). */
  const free = (...xs: unknown[]) => {
    for (const x of xs) {
      if (gpu && x && typeof x === "object" && "buffer" in x) {
        (x as { buffer: GPUBuffer }).buffer.destroy();
      }
    }
  };
  Deno.bench({
    name,
    group: o.group,
    baseline: o.baseline ?? false,
    ...ITERATIONS,
    async fn(t) {
      if (!inputs) {
        inputs = gpu
          ? {
            q: await toGpu(host.q),
            k: await toGpu(host.k),
            v: await toGpu(host.v),
            dOut: await toGpu(host.dOut),
          }
          : host;
      }
      const { q, k, v, dOut } = inputs;
      const call = attention as (
        ...a: unknown[]
      ) => Promise<{ out: AnyTensor; lse: Float32Array | GpuArray }>;
      if (o.pass === "fwd") {
        t.start();
        const r = await call(q, k, v, options);
        t.end();
        free(r.out, r.lse);
        return;
      }
      saved ??= await call(q, k, v, options);
      const backward = attentionBackward as (
        ...a: unknown[]
      ) => Promise<{ dq: AnyTensor; dk: AnyTensor; dv: AnyTensor }>;
      t.start();
      const g = await backward({ q, k, v, ...saved, dOut }, options);
      t.end();
      free(g.dq, g.dk, g.dv);
    },
  });
}

type AnyTensor = Tensor | GpuTensor;

/**
 * Registers an end-to-end forward bench: from plain Float32Arrays and the mask builder to the
 * output read back as f32 (for f16 this includes the conversions both ways).
 */
export function benchEndToEnd(o: {
  backend: string | null;
  shape: Shape;
  mask: MaskName;
  group: string;
  baseline?: boolean;
}): void {
  const name = `${o.mask} end-to-end`;
  if (o.backend === null) {
    Deno.bench({ name, group: o.group, ignore: true, fn() {} });
    return;
  }
  const backend = o.backend, s = o.shape;
  const raw = makeInputs({ ...s, dtype: "f32" }, 1);
  const data = (t: Tensor) => t.data as Float32Array;
  const make = (x: Float32Array, heads: number): Tensor => {
    const shape = [s.batch, s.seq, heads, s.dim];
    return s.dtype === "f16" ? tensor(toF16(x), shape, "f16") : tensor(x, shape);
  };
  let sink = 0;
  Deno.bench({
    name,
    group: o.group,
    baseline: o.baseline ?? false,
    ...ITERATIONS,
    async fn() {
      const { mask } = exampleMask(o.mask, s.seq); // a new mask object: schedule not cached
      const { out } = await attention(
        make(data(raw.q), s.heads),
        make(data(raw.k), s.kvHeads),
        make(data(raw.v), s.kvHeads),
        { ...backendOptions(backend), mask },
      );
      sink += toFloat32(out)[0];
    },
  });
  if (Number.isNaN(sink)) console.log(sink); // keep the result observable
}
