/**
 * The WASM backend below the public API, for benchmarks and tests (not a stable interface): the
 * process-wide engine (loaded kernels, shared memory, worker pool; its exports include the GEMM
 * micro-kernel the benchmarks use as the machine's ceiling, and per-phase timings of the last
 * call), the forward tile, and the API's JavaScript finiteness scan (to time against).
 *
 * @module
 */

export { Engine, engine, kernelBytes, replaceEngine, THREAD_START_MS } from "./_runtime.ts";
export { inflateRaw } from "./_inflate.ts";
export { logicalCores, sharedMemoryMissing, startThread } from "./_threads.ts";
export { unsharedMemoryImport } from "./_unshared.ts";
export { BLOCK_COLS, BLOCK_ROWS } from "./backend.ts";
export { inputStats } from "./_frame.ts";
/** The API's JavaScript scan for NaN and ±∞, which this backend replaces by a SIMD scan. */
export { checkFinite } from "../_problem.ts";
