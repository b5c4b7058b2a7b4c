/**
 * The WebGPU backend below the public API, for benchmarks and tests (not a stable interface):
 * compile a pass's pipelines for a problem, bind them to buffers and encode them into a compute
 * pass yourself (to time kernels with timestamp queries), pin kernel variants, and read the
 * library's GPU memory counters.
 *
 * ```ts ignore
 * import { checkProblem } from "../_problem.ts";
 * import { forwardKernel, planForward, requireGpu, storage } from "./internal.ts";
 *
 * const ctx = await requireGpu();
 * const kern = await forwardKernel(ctx, problem, "f32"); // compiled once per configuration
 * const plan = planForward(ctx, problem, { q, k, v, out, lse }, kern);
 * plan.encode(pass); // as many times as you like
 * ```
 *
 * @module
 */

export { checkProblem } from "../_problem.ts";
export { gpuMemoryStats, type GpuStats, gpuStats, storage, upload } from "./buffers.ts";
export type { GpuContext } from "./device.ts";
export { type KernelPlan, launchGrid, requireGpu, unevenLists } from "./dispatch.ts";
export {
  defaultTiles,
  forgetForwardKernels,
  type ForwardBuffers,
  forwardConfig,
  forwardKernel,
  type ForwardPlan,
  forwardShapes,
  planForward,
} from "./forward.ts";
export { type ForwardConfig, forwardKey } from "./forward_wgsl.ts";
export {
  type BackwardBuffers,
  backwardConfig,
  backwardKernels,
  type BackwardPlan,
  backwardShapes,
  defaultBackwardTiles,
  planBackward,
} from "./backward.ts";
export { type BackwardConfig, backwardKey } from "./backward_wgsl.ts";
export {
  decodeBuffers,
  decodeConfig,
  decodeKernels,
  decodeScratch,
  decodeSource,
  decodeWorkgroupBytes,
  defaultPhases,
  forgetDecodeKernels,
  planDecode,
  usesDecode,
} from "./decode.ts";
export {
  type BackwardTiles,
  chooseBackward,
  chooseDecode,
  chooseTiles,
  type DecodePhases,
  type ForwardTiles,
  type GpuTuning,
  setGpuTuning,
} from "./tuning.ts";
export { sampleData, timeKernel, type TimingBudget } from "./timing.ts";
export { phaseCandidates, TUNE_MARGIN } from "./tune.ts";
