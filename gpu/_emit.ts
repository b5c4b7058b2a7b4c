/**
 * The smallest pieces of generated WGSL: how a line is emitted, and the named register tiles.
 *
 * Every tile kernel runs 256 invocations as a 16 × 16 grid (ty = lid / 16, tx = lid % 16).
 * Register tiles are named vec4 variables `${acc}${i}_${j}`: row i (0 ≤ i < rows) and columns
 * 4j .. 4j+3, so that every index into them is a compile-time constant.
 *
 * @module
 */

/** Adds one line of WGSL. */
export type Emit = (line: string) => void;

/** 0 .. n−1. */
export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Vector component names. */
export const XYZW = ["x", "y", "z", "w"] as const;

/** Component c of register column m: `${acc}${i}_${m >> 2}.xyzw[m & 3]`. */
export function reg(acc: string, i: number, m: number): string {
  return `${acc}${i}_${m >> 2}.${XYZW[m & 3]}`;
}

/** Declares a rows × (cols4·4) register tile initialised to zero. */
export function declareTile(emit: Emit, acc: string, rows: number, cols4: number): void {
  for (const i of range(rows)) {
    for (const j of range(cols4)) emit(`  var ${acc}${i}_${j} = vec4<f32>(0.0);`);
  }
}

/** Sets a register tile to zero. */
export function zeroTile(emit: Emit, acc: string, rows: number, cols4: number): void {
  for (const i of range(rows)) {
    for (const j of range(cols4)) emit(`    ${acc}${i}_${j} = vec4<f32>(0.0);`);
  }
}

/**
 * A tile in the kernel's workgroup memory, `var<workgroup> sm: array<array<vec4<f32>, 16>, R>`
 * (rows of 16 vec4s, one per owner: the ty or tx of the invocation that reads them). Logically
 * `[slot][owner][w]`: slot kk (a step of a product: a head-dimension column or a key) holds 16
 * owners' w vec4s each; vec4 i of owner o in slot kk is `sm[base + kk·w + i][o]`.
 *
 * Why rows of 16: naga clamps every runtime index into a workgroup array (`min(i, N − 1)`, the
 * `Restrict` bounds-check policy of wgpu's Vulkan backend). With a constant row and the owner
 * as the only runtime index, that clamp is one `min(owner, 15u)` shared by every access, and
 * the row stays a constant address offset; a flat index `C + owner·w` is clamped as a whole, an
 * add and a min per access (the rows ran 1.10–1.33× faster on an H200, docs/BENCHMARKS.md).
 * The 16 owners' vec4s of a row are adjacent: 16 invocations reading theirs touch 256
 * consecutive bytes.
 */
export interface Region {
  /** vec4 `i` of owner `owner` in slot `slot` (WGSL u32 expressions or constants). */
  at(slot: number | string, owner: string, i: number): string;
  /** The vec4 at logical offset `f` (a WGSL u32 expression), f = (slot·16 + owner)·w + i. */
  flat(f: string): string;
}

/** The declaration of `sm` with `rows` rows of 16 vec4s. */
export const smDecl = (rows: number): string =>
  `var<workgroup> sm: array<array<vec4<f32>, 16>, ${rows}>;`;

/** Region of `sm` from row `base`, w vec4s per owner and slot. */
export function smRegion(base: number, w: number): Region {
  return {
    at: (slot, owner, i) =>
      typeof slot === "number"
        ? `sm[${base + slot * w + i}][${owner}]`
        : `sm[${base + i}u + (${slot}) * ${w}u][${owner}]`,
    flat: (f) =>
      w === 1
        ? `sm[${base}u + (${f}) / 16u][(${f}) % 16u]`
        : `sm[${base}u + (${f}) / ${16 * w}u * ${w}u + (${f}) % ${w}u][((${f}) / ${w}u) % 16u]`,
  };
}
