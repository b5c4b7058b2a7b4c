/**
 * Kernel time on the device: back-to-back encodings of a kernel in one compute pass, timed with
 * timestamp queries where the device has them (wall time to `onSubmittedWorkDone` otherwise, which
 * in Deno adds a fixed ~10 ms a pass: the same for every kernel timed, so rankings hold). Used by
 * the measured tile choice ({@linkcode tuneGpu} in `tune.ts`) and the benchmarks.
 *
 * @module
 */

import { toF16 } from "../tensor.ts";
import type { GpuContext } from "./device.ts";

/** How long to warm up and to time, in ms of kernel time. */
export interface TimingBudget {
  /** Warm-up passes until this much work has run (clocks ramp up). Default 200. */
  warmMs?: number;
  /** Repetitions per timed pass: enough for this many ms. Default 50. */
  passMs?: number;
}

/**
 * Median time in ms of one encoding, over three timed passes of at least `reps` (or
 * `budget.passMs` of work) back-to-back encodings each, after warm-up passes.
 */
export async function timeKernel(
  ctx: GpuContext,
  encode: (pass: GPUComputePassEncoder) => void,
  reps: number,
  budget: TimingBudget = {},
): Promise<number> {
  const { warmMs = 200, passMs = 50 } = budget;
  const { device } = ctx;
  const qs = ctx.timestamps ? device.createQuerySet({ type: "timestamp", count: 2 }) : undefined;
  const resolve = device.createBuffer({ size: 16, usage: 0x200 | 0x4 }); // QUERY_RESOLVE | COPY_SRC
  const read = device.createBuffer({ size: 16, usage: 0x1 | 0x8 }); // MAP_READ | COPY_DST
  const samples: number[] = [];
  let warm = 0, n = reps;
  try {
    for (let trial = 0; trial < 4 + warm; trial++) {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass(
        qs
          ? {
            timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
          }
          : {},
      );
      for (let r = 0; r < n; r++) encode(pass);
      pass.end();
      let ms: number;
      if (qs) {
        enc.resolveQuerySet(qs, 0, 2, resolve, 0);
        enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
        device.queue.submit([enc.finish()]);
        await read.mapAsync(1);
        const t = new BigUint64Array(read.getMappedRange().slice(0));
        read.unmap();
        ms = Number(t[1] - t[0]) / 1e6;
      } else {
        const t0 = performance.now();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        ms = performance.now() - t0;
      }
      if (trial === 0 && ms < warmMs && warm < 20) {
        warm++; // another warm-up pass, with enough repetitions for passMs per timed pass
        n = Math.max(reps, Math.ceil((passMs * n) / Math.max(ms, 1e-3)));
        trial--;
        continue;
      }
      if (trial > 0) samples.push(ms / n);
    }
  } finally {
    qs?.destroy();
    resolve.destroy();
    read.destroy();
  }
  return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)];
}

/**
 * Deterministic inputs in [-1, 1) for timing kernels (never all zeros, so that every kernel path
 * does real work), as f32 or as f16 bits.
 */
export function sampleData(
  n: number,
  dtype: "f32" | "f16",
  seed: number,
): Float32Array | Uint16Array {
  const x = new Float32Array(n);
  let s = seed * 7919 + 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = (s / 4294967296) * 2 - 1;
  }
  return dtype === "f16" ? toF16(x) : x;
}
