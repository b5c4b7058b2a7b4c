/**
 * Tile loads from storage into regions of workgroup memory (`Region` in `_emit.ts`), for the
 * forward and backward kernels: 256 invocations each load ⌈items / 256⌉ vec4 units.
 *
 * Invariants: rows at or past `limit` and columns at or past the head dimension are read as 0;
 * nothing outside them is read (a paged cache's page table is consulted only for rows < limit).
 *
 * The loads stay scalar: vectorised reads and register prefetch of the next chunk measured no
 * faster on an H200 with the earlier flat workgroup memory (the git history of
 * docs/BENCHMARKS.md); not re-measured since the rows of 16.
 *
 * @module
 */

import { type Emit, range, type Region, XYZW } from "./_emit.ts";

/** Where one tensor chunk comes from: `src[base + row·stride + column]`, rows < limit. */
export interface Source {
  /** Storage array name. */
  src: string;
  /** Element offset of row 0, column 0 (WGSL expression). */
  base: string;
  /** Elements between rows (WGSL expression). */
  stride: string;
  /** Index of the tile's first row (WGSL expression, u32). */
  first: string;
  /** Rows at or beyond this are read as 0 (WGSL expression, u32). */
  limit: string;
  /** Columns at or beyond the head dimension (WGSL expression, u32) are read as 0. */
  headDim: string;
  /** Where logical row `row` is stored (default: the row itself); a paged KV cache's `pageRow`. */
  rowOf?: (row: string) => string;
}

/**
 * Loads columns `d0 .. d0+kc` of a tile's R rows into `region` transposed: element (row, kk)
 * goes to logical position `kk·R + pos` (slot kk), 4 positions per vec4. With `perm = 0`,
 * pos = row (invocation ty reads its rows ty·RM.. as vec4s); with `perm = c`,
 * pos = (row % 16)·c + row / 16, so that invocation tx reads rows tx + 16·m (m < c) as vec4s.
 */
export function loadTransposed(
  emit: Emit,
  s: Source,
  o: { region: Region; rows: number; kc: number; d0: string; perm: number; scale?: string },
): void {
  const items = (o.rows / 4) * o.kc;
  for (const u of range(Math.ceil(items / 256))) {
    const guard = (u + 1) * 256 > items;
    emit(`      {
        let e = lid + ${u * 256}u;${guard ? `\n        if (e < ${items}u) {` : ""}
        let kk = e % ${o.kc}u;
        let pos = (e / ${o.kc}u) * 4u;
        let r0 = ${s.first} + ${o.perm ? `pos / ${o.perm}u + 16u * (pos % ${o.perm}u)` : "pos"};
        let dcol = ${o.d0} + kk;
        var x = vec4<f32>(0.0);
        if (dcol < ${s.headDim}) {`);
    for (const z of range(4)) {
      const row = `r0 + ${o.perm ? 16 * z : z}u`;
      emit(
        `          if (${row} < ${s.limit}) { x.${XYZW[z]} = f32(${s.src}[${s.base} + (${
          s.rowOf ? s.rowOf(row) : row
        }) * ${s.stride} + dcol]); }`,
      );
    }
    emit(`        }
        ${o.region.flat(`(kk * ${o.rows}u + pos) / 4u`)} = x${o.scale ? ` * ${o.scale}` : ""};${
      guard ? "\n        }" : ""
    }
      }`);
  }
}

/**
 * Loads `count` rows starting at `s.first` (all D padded columns) into `region` row-major:
 * element (row, col) at logical position `row·D + col` (slot row; owner tx holds columns
 * tx·D/16 ..).
 */
export function loadRows(
  emit: Emit,
  s: Source,
  o: { region: Region; count: number; d: number; scale?: string },
): void {
  const items = (o.count * o.d) / 4;
  for (const u of range(Math.ceil(items / 256))) {
    const guard = (u + 1) * 256 > items;
    emit(`    {
      let e = lid + ${u * 256}u;${guard ? `\n      if (e < ${items}u) {` : ""}
      let row = ${s.first} + e / ${o.d / 4}u;
      let dc = (e % ${o.d / 4}u) * 4u;
      var x = vec4<f32>(0.0);
      if (row < ${s.limit}) {
        let base = ${s.base} + ${s.rowOf ? s.rowOf("row") : "row"} * ${s.stride} + dc;`);
    for (const z of range(4)) {
      emit(
        `        if (dc + ${z}u < ${s.headDim}) { x.${XYZW[z]} = f32(${s.src}[base + ${z}u]); }`,
      );
    }
    emit(`      }
      ${o.region.flat("e")} = x${o.scale ? ` * ${o.scale}` : ""};${guard ? "\n      }" : ""}
    }`);
  }
}
