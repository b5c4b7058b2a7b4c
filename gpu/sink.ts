/**
 * The attention sinks' gradient on the GPU (the term is defined in `terms/sink.ts`):
 * `dσ_h = −Σ_{b,i} exp(σ_h − lse_{b,h,i})·D_{b,h,i}`, from the row stats the backward's prep
 * kernel writes (`stats[(b·Hq + h)·Nq + i] = (lse·log2 e, D)`).
 *
 * Shapes: stats `[B, Hq, Nq]` of vec2<f32>, sinks and dsinks `[Hq]` f32.
 * Tiling: one workgroup of 256 invocations per head; invocation t sums rows t, t + 256, … in
 * order, then a tree in workgroup memory: the order is fixed, so the bits are too.
 *
 * @module
 */

import type { Problem } from "../types.ts";
import { pipelineLayout } from "./binding.ts";
import { type GpuContext, pipeline } from "./device.ts";
import { bound, encodeChunks, type KernelPlan, type Region } from "./dispatch.ts";
import type { KernelLayout } from "./layout.ts";
import { layoutWgsl } from "./layout.ts";

/** Uniforms and bindings of the sink-gradient kernel (stats bound whole: every batch entry). */
export const SINK_GRAD_LAYOUT: KernelLayout = {
  params: ["nq", "heads", "batchTotal", "sinksOff"],
  bindings: [
    { name: "stats", type: "vec2<f32>" },
    { name: "sinks", type: "f32" },
    { name: "dsinks", type: "f32", write: true },
  ],
};

/** The kernel's WGSL (it has no compile-time constants). */
export function sinkGradWgsl(): string {
  return `${layoutWgsl(SINK_GRAD_LAYOUT, "f32")}
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let h = wid.x;
  let sink2 = sinks[P.sinksOff + h] * 1.4426950408889634;
  var acc = 0.0;
  let n = P.batchTotal * P.nq;
  for (var r = t; r < n; r += 256u) {
    let st = stats[((r / P.nq) * P.heads + h) * P.nq + r % P.nq];
    acc = acc + exp2(sink2 - st.x) * st.y; // exp(σ − lse)·D
  }
  red[t] = acc;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w = w / 2u) {
    if (t < w) { red[t] = red[t] + red[t + w]; }
    workgroupBarrier();
  }
  if (t == 0u) { dsinks[h] = -red[0]; }
}`;
}

/** Compiles (or finds) the sink-gradient kernel. */
export function sinkGradKernel(ctx: GpuContext): Promise<GPUComputePipeline> {
  return pipeline(ctx, "sink-grad", sinkGradWgsl, pipelineLayout(ctx, SINK_GRAD_LAYOUT));
}

/**
 * Binds the kernel: stats (all rows), the sinks (in the term arena, from element `at`) and the
 * dsinks output (synchronous).
 */
export function planSinkGrad(
  ctx: GpuContext,
  p: Problem,
  pipe: GPUComputePipeline,
  b: { stats: Region; sinks: { buffer: GPUBuffer; at: number }; dsinks: Region },
): KernelPlan {
  return encodeChunks(
    ctx,
    pipe,
    SINK_GRAD_LAYOUT,
    "f32",
    { nq: p.nq, heads: p.heads, batchTotal: p.batch, sinksOff: b.sinks.at },
    1,
    {
      stats: bound(b.stats, 0),
      sinks: bound(b.sinks.buffer, 0),
      dsinks: bound(b.dsinks, 0),
    },
    () => [p.heads, 1, 1],
  );
}
