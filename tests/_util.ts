/**
 * Test helpers: seeded random inputs and error measures with tolerances derived from rounding.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type DType, type Tensor, toFloat32 } from "../tensor.ts";
import type { AttentionOptions } from "../types.ts";
export { randn, randomTensor, rng } from "../reference/random.ts";
import { gpuInfo } from "../gpu/mod.ts";
import { type GpuTuning, setGpuTuning } from "../gpu/internal.ts";

/**
 * The WebGPU adapter the tests run on (undefined: none, and the WebGPU tests are ignored). With
 * `FLASHMASK_REQUIRE_GPU=1` (CI sets it: Deno finds at least Mesa's llvmpipe there) a missing
 * adapter is an error instead, so that the WebGPU tests cannot all be skipped unnoticed.
 */
export async function testAdapter(): ReturnType<typeof gpuInfo> {
  const info = await gpuInfo();
  if (!info && Deno.env.get("FLASHMASK_REQUIRE_GPU") === "1") {
    throw new Error(
      "FLASHMASK_REQUIRE_GPU=1 but WebGPU found no adapter: the GPU tests would skip",
    );
  }
  return info;
}

/**
 * Runs `fn` under the kernel-variant override `tuning` (`setGpuTuning`), then restores the one
 * before, whether `fn` returns or throws.
 */
export async function withGpuTuning<T>(tuning: GpuTuning, fn: () => Promise<T>): Promise<T> {
  const old = setGpuTuning(tuning);
  try {
    return await fn();
  } finally {
    setGpuTuning(old);
  }
}

/**
 * Every backend as a test target: [name, options, ignore]. WebGPU is ignored (listed, not left
 * out) where the machine has no adapter; wasm runs on 2 threads.
 */
export async function backendTargets(): Promise<[string, AttentionOptions, boolean][]> {
  const info = await testAdapter();
  return [
    ["js", { backend: "js" }, false],
    ["wasm", { backend: "wasm", threads: 2 }, false],
    ["webgpu", { backend: "webgpu" }, info === undefined],
  ];
}

/**
 * Differences below this (2^-100 ≈ 7.9e-31) do not count: probabilities below 2^-126 may be
 * flushed to 0 (the WASM exp2 does so by design, GPUs flush subnormals), and the gradient terms
 * they carry are that small.
 */
const NEGLIGIBLE = 2 ** -100;

/**
 * ‖a − ref‖ / ‖ref‖ (0 when both are 0; the absolute ‖a − ref‖ when ref is 0), differences
 * below 2^-100 ignored. Infinite entries must match exactly.
 */
export function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  assert.equal(a.length, ref.length, "length");
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(ref[i])) {
      assert.equal(a[i], ref[i], `entry ${i}: expected ${ref[i]}, got ${a[i]}`);
      continue;
    }
    assert.ok(Number.isFinite(a[i]), `entry ${i} is ${a[i]}, expected ${ref[i]}`);
    const diff = Math.abs(a[i] - ref[i]);
    if (diff > NEGLIGIBLE) num += diff ** 2;
    den += ref[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Values of a tensor or array as numbers. */
export function values(x: Tensor | ArrayLike<number>): ArrayLike<number> {
  return "dtype" in x ? toFloat32(x as Tensor) : x as ArrayLike<number>;
}

/**
 * Asserts that `actual` is as close to the float64 reference as rounding allows: its relative
 * error must be at most `factor` times that of a plain float32 computation of the same thing
 * (`baseline`, rounded to the same output dtype), with a floor of a few float32 ulps
 * (2^-21 ≈ 4.8e-7) for problems a plain computation happens to get exact, and never above
 * `cap` (default: the bound, 1e-5 for f32 and 3e-3 for f16) unless the plain float32
 * computation itself misses the cap (then 8× its error is the bound); and never below twice the
 * worst plain computation's error (another summation order may land on either side of a cap
 * the plain computations only just meet). Ill-conditioned problems
 * (huge scores) pass `cap: Infinity` and a `floor` for the error that float32 scores imply.
 */
export function assertClose(
  what: string,
  actual: Tensor | ArrayLike<number>,
  ref: ArrayLike<number>,
  baseline: Tensor | ArrayLike<number>,
  options: {
    dtype?: DType;
    factor?: number;
    cap?: number;
    floor?: number;
    /** More plain float32 computations (other summation orders): the worst one counts. */
    baselines?: (Tensor | ArrayLike<number>)[];
    /**
     * First-order rounding-error magnitudes of the outputs (`referenceMagnitudes`): the bound is
     * at least one float32 unit roundoff of them, relative to the reference, whatever the cap
     * (about the level of 8× a plain computation's error on typical problems; it matters where
     * the outputs cancel, which a plain computation in one summation order may not show).
     */
    magnitudes?: ArrayLike<number>;
    /**
     * What to do when the bound would pass all zeros (a plain float32 computation misses the
     * output by so much that it is rounding noise): "fail" (the default: a hand-written case
     * must be well posed) or "skip" (a randomly drawn one may not be: not compared, and the
     * result says so).
     */
    illPosed?: "fail" | "skip";
  } = {},
): { err: number; base: number; checked: boolean } {
  const err = relErr(values(actual), ref);
  const base = Math.max(
    relErr(values(baseline), ref),
    ...(options.baselines ?? []).map((b) => relErr(values(b), ref)),
  );
  const cap = options.cap ?? (options.dtype === "f16" ? 3e-3 : 1e-5);
  const factor = options.factor ?? 8;
  // The cap applies to problems a plain float32 computation solves within it; where even that
  // misses it (ill-conditioned gradients, or outputs that cancel to ~0), 8× its error is the bound.
  let bound = base > cap
    ? factor * base
    : Math.max(Math.min(cap, Math.max(factor * base, options.floor ?? 2 ** -21)), 2 * base);
  if (options.magnitudes) {
    let m = 0, r = 0;
    for (let i = 0; i < ref.length; i++) {
      if (!Number.isFinite(ref[i])) continue;
      m += options.magnitudes[i] ** 2;
      r += ref[i] ** 2;
    }
    const cond = 2 ** -24 * Math.sqrt(m) / (r === 0 ? 1 : Math.sqrt(r));
    bound = Math.max(bound, cond);
  }
  // All zeros are at relative error 1: a bound near it would pass them, so such a case is not a
  // test (make it better conditioned instead).
  if (bound > 0.25 && options.illPosed === "skip") return { err, base, checked: false };
  assert.ok(
    bound <= 0.25,
    `${what}: the bound ${bound.toExponential(2)} (plain f32 computation: ${
      base.toExponential(2)
    }) could not tell the answer from zeros; this comparison is ill-posed`,
  );
  assert.ok(
    err <= bound,
    `${what}: relative error ${err.toExponential(2)} exceeds ${bound.toExponential(2)} ` +
      `(plain f32 computation: ${base.toExponential(2)})`,
  );
  return { err, base, checked: true };
}

/**
 * Watches `device` for anything that waits for the GPU (`queue.onSubmittedWorkDone`,
 * `GPUBuffer.mapAsync`) while `fn` runs: returns the names of the calls made, in order.
 */
export async function gpuWaitsDuring(
  device: GPUDevice,
  fn: () => Promise<void>,
): Promise<string[]> {
  const waits: string[] = [];
  const done = device.queue.onSubmittedWorkDone.bind(device.queue);
  const mapAsync = GPUBuffer.prototype.mapAsync;
  device.queue.onSubmittedWorkDone = () => (waits.push("onSubmittedWorkDone"), done());
  GPUBuffer.prototype.mapAsync = function (...a: Parameters<GPUBuffer["mapAsync"]>) {
    waits.push("mapAsync");
    return mapAsync.apply(this, a);
  };
  try {
    await fn();
  } finally {
    device.queue.onSubmittedWorkDone = done;
    GPUBuffer.prototype.mapAsync = mapAsync;
  }
  return waits;
}
