/**
 * Seeded random inputs for tests and benchmarks: never zeros, reproducible from a seed.
 *
 * @module
 */

import { type DType, type Tensor, tensor, toF16 } from "../tensor.ts";

/** A seeded generator of uniform floats in [0, 1) (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n standard normal samples (Box–Muller); never all zeros. */
export function randn(rand: () => number, n: number, sigma = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - rand(), w = rand();
    out[i] = sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * w);
  }
  return out;
}

/** A random tensor of the given shape and dtype. */
export function randomTensor(
  rand: () => number,
  shape: readonly [number, number, number, number],
  dtype: DType = "f32",
  sigma = 1,
): Tensor {
  const x = randn(rand, shape[0] * shape[1] * shape[2] * shape[3], sigma);
  return tensor(dtype === "f16" ? toF16(x) : x, shape, dtype);
}
