/**
 * WGSL merge of the split-KV decoding kernels' partial results (`decode_wgsl.ts` describes the
 * partials): one workgroup per (query head · query, batch); lse = log Σ exp(lseₛ),
 * out = Σ exp(lseₛ − lse)·oₛ, rows no split sees get 0 and −∞, a head's sink joins the softmax.
 *
 * @module
 */

import { headDimExpr } from "./_wgsl.ts";
import { combineLayout, type DecodeConfig, decodeHeader } from "./decode_wgsl.ts";

/**
 * The combining kernel: invocation (split group g, vec4 column cw) over splits g, g + 256/CW, …,
 * after the row's max (a tree); group 0 sums the groups' weighted sums.
 */
export function combineWgsl(c: DecodeConfig): string {
  const R = c.rows, CW = c.cw, SG = 256 / CW, HD = headDimExpr(c.headDim);
  return `${decodeHeader(c, combineLayout(c))}
var<workgroup> cm: array<f32, 256>;
var<workgroup> cs: array<f32, ${SG}>;
var<workgroup> ca: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = wid.x;                         // (hq, i) in lse order
  let bl = wid.y;
  let hq = row / P.nq;
  let i = row % P.nq;
  let group = P.heads / P.kvHeads;
  let kh = hq / group;
  let rr = (hq - kh * group) * P.nq + i;
  let chunk = rr / ${R}u;
  let r = rr % ${R}u;
  let slot0 = ((bl * P.kvHeads + kh) * P.chunks + chunk) * P.splits;
  var mt = NEG;
  for (var s = t; s < P.splits; s += 256u) { mt = max(mt, plse[P.plseOff + (slot0 + s) * ${R}u + r]); }
  cm[t] = mt;
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (t < stride) { cm[t] = max(cm[t], cm[t + stride]); }
  }
  var m = workgroupUniformLoad(&cm[0]);${
    c.sinks
      ? "\n  let sink = sinks[P.sinksOff + hq]; // the sink joins once, with weight exp(σ − m) and no value\n  m = max(m, sink);"
      : ""
  }
  // m stays NEG where no split saw a key (every plse −∞, so every w is 0); a NaN plse makes sum
  // NaN whether or not max() passes it on
  let mUse = select(m, 0.0, m == NEG);
  let g = t / ${CW}u;
  let cw = t % ${CW}u;
  var acc = vec4<f32>(0.0);
  var sum = 0.0;
  for (var s = g; s < P.splits; s += ${SG}u) {
    let w = exp(plse[P.plseOff + (slot0 + s) * ${R}u + r] - mUse);
    sum = sum + w;
    acc = fma(vec4<f32>(w), part[P.partOff + ((slot0 + s) * ${R}u + r) * ${CW}u + cw], acc);
  }
  ca[t] = acc;
  if (cw == 0u) { cs[g] = sum; }
  workgroupBarrier();
  if (g == 0u) {
    var total = ${c.sinks ? "exp(sink - mUse)" : "0.0"};
    var all = vec4<f32>(0.0);
    for (var gg = 0u; gg < ${SG}u; gg++) {
      total = total + cs[gg];
      all = all + ca[gg * ${CW}u + cw];
    }
    let seen = !(total == 0.0);
    let val = select(vec4<f32>(0.0), all / total, seen);
    let ob = P.oOff + ((bl * P.nq + i) * P.heads + hq) * ${HD} + cw * 4u;
    for (var z = 0u; z < 4u; z++) {
      if (cw * 4u + z < ${HD}) { out[ob + z] = ${c.dtype}(val[z]); }
    }
    if (cw == 0u) {
      lse[P.lseOff + (bl * P.heads + hq) * P.nq + i] = select(P.negInf, m + log(total), seen);
    }
  }
}`;
}
