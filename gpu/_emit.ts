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
