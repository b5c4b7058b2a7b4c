// Benchmark baselines: the GEMM micro-kernels alone, resident in cache (the machine's ceiling).

import { gemmNN, gemmTN } from "./gemm";

/**
 * The GEMM micro-kernel ceiling for the benchmarks: `reps` times C (M × 4·NV) = Aᵀ·B with
 * A (K × M) and B (K × 4·NV) resident in cache, through the same 6×2 TN micro-kernel the
 * attention kernels use. 2·M·4·NV·K·reps flops.
 */
export function gemmBench(A: usize, Bm: usize, C: usize, M: i32, NV: i32, K: i32, reps: i32): void {
  for (let r = 0; r < reps; r++) {
    gemmTN(A, <usize>M << 2, Bm, <usize>NV << 4, C, <usize>NV << 4, M, NV, K, 0);
  }
}

/** Same with the NN micro-kernel: C (M × 4·NV) = A·B, A (M × K), B (K × 4·NV). */
export function gemmBenchNN(A: usize, Bm: usize, C: usize, M: i32, NV: i32, K: i32, reps: i32): void {
  for (let r = 0; r < reps; r++) {
    gemmNN(A, <usize>K << 2, Bm, <usize>NV << 4, C, <usize>NV << 4, M, NV, K, true);
  }
}
