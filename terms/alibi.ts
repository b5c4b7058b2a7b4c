/**
 * ALiBi, a score term (FlashAttention's `alibi_slopes`): a linear bias on the distance from the
 * bottom-right aligned diagonal, added after the scale and the softcap, before the mask:
 *
 *   s_ij += −slope_{b,h} · |i + offset_b − j|,   offset_b = (kvLength[b] ?? Nk) − Nq.
 *
 * It needs no N² tensor: kernels compute it per score from the row, the key, and one
 * (slope, offset) pair per (batch entry, query head). In log2 units (the kernels' scores are
 * multiplied by scale · log2 e) the slope is slope · log2 e. The backward adds the same bias when it
 * recomputes the scores; the slopes get no gradient, and the bias does not change dS's slope.
 * Where each backend composes it: `bias` in `tiled.ts`, `alibiTile` in `gpu/_wgsl.ts` (forward,
 * dQ, dK/dV) and in the decode kernel (`gpu/decode_wgsl.ts`), `alibiTile` in
 * `wasm/assembly/tile.ts` and the backward's `dsTileOpt`. The float64 reference is `scoreRow` in
 * `reference/attention.ts`.
 *
 * @module
 */

/** What a validated call holds (`Problem.alibi`): slopes `[batch·Hq]`, offsets `[batch]`. */
export interface Alibi {
  readonly slopes: Float32Array;
  readonly offsets: Int32Array;
}

/**
 * The kernels' table: per (batch entry, query head), f32 (slope · log2 e, offset), batch-major;
 * the WGSL kernels read it as `vec2<f32>`, the WASM ones as two f32 per pair.
 */
export function alibiTable(a: Alibi, heads: number): Float32Array {
  const table = new Float32Array(2 * a.slopes.length);
  for (let x = 0; x < a.slopes.length; x++) {
    table[2 * x] = a.slopes[x] * Math.LOG2E;
    table[2 * x + 1] = a.offsets[Math.floor(x / heads)];
  }
  return table;
}
