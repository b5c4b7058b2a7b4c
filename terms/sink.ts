/**
 * The attention sink, a softmax term: one logit σ_h per query head that joins the softmax of
 * every row of its head and has no value vector (gpt-oss, FlashAttention 4's `learnable_sink`,
 * onnxruntime's `head_sink`):
 *
 *   lse_i = log(exp(σ_h) + Σ_j exp(s_ij)),   P_ij = exp(s_ij − lse_i),   out_i = Σ_j P_ij v_j.
 *
 * Every kernel composes it the same way: the online softmax of a row starts from the sink's
 * state instead of the empty one, running max m = σ_h and sum l = exp(σ_h − m) = 1 (O = 0), and
 * then proceeds unchanged; a row that sees no key ends with out = 0/1 = 0 and lse = σ_h. Split-KV
 * decoding adds the state once, in the combine. The backward is unchanged (P is recomputed from
 * the lse, which includes the sink; D = rowsum(dOut ∘ out) is still Σ_j P_ij dP_ij), plus the
 * sink's own gradient:
 *
 *   dσ_h = −Σ_{b,i} exp(σ_h − lse_{b,h,i}) · D_{b,h,i}.
 *
 * Dropout never drops the sink (it has no value). The float64 reference is
 * `reference/attention.ts` (`softmax` with a sink, `referenceSinkGradient`).
 *
 * @module
 */

/**
 * dσ_h from the saved forward results (host arrays, float32 `out` and `dOut` in the user layout
 * `[B, Nq, Hq, d]`, `lse` `[B, Hq, Nq]`), summed in float64 in (b, i) order: the `js` and `wasm`
 * backends' sink gradient.
 */
export function sinkGradient(
  sinks: Float32Array,
  out: Float32Array,
  dOut: Float32Array,
  lse: Float32Array,
  dims: { batch: number; nq: number; heads: number; headDim: number },
): Float32Array {
  const { batch, nq, heads, headDim: d } = dims;
  const g = new Float32Array(heads);
  for (let h = 0; h < heads; h++) {
    let sum = 0;
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < nq; i++) {
        const o = ((b * nq + i) * heads + h) * d;
        let D = 0;
        for (let x = 0; x < d; x++) D += dOut[o + x] * out[o + x];
        sum += Math.exp(sinks[h] - lse[(b * heads + h) * nq + i]) * D;
      }
    }
    g[h] = -sum;
  }
  return g;
}
