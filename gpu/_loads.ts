/**
 * Tile loads from storage into regions of workgroup memory (`Region` in `_emit.ts`), for the
 * forward and backward kernels: 256 invocations each load ⌈items / 256⌉ vec4 units, in two
 * steps: `fetch…` reads storage into vec4 registers, `put…` stores them into the region. A plain
 * load puts right after it fetches; a kernel that reads ahead (f32) fetches the next chunk after
 * the barrier that publishes this one, so that the reads' latency overlaps the product instead
 * of stalling every invocation after each barrier (docs/BENCHMARKS.md: 1.2–1.3× forward,
 * 1.1–1.2× backward on an H200).
 *
 * Invariants: rows at or past `limit` and columns at or past the head dimension are read as 0;
 * nothing outside them is read (a paged cache's page table is consulted only for rows < limit).
 * The reads are scalar (vectorised reads measured no faster on an H200, before the workgroup
 * memory's rows of 16; the git history of docs/BENCHMARKS.md).
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
 * Columns `d0 .. d0+kc` of a tile's R rows, stored into `region` transposed: element (row, kk)
 * goes to logical position `kk·R + pos` (slot kk), 4 positions per vec4. With `perm = 0`,
 * pos = row (invocation ty reads its rows ty·RM.. as vec4s); with `perm = c`,
 * pos = (row % 16)·c + row / 16, so that invocation tx reads rows tx + 16·m (m < c) as vec4s.
 */
export interface TransposedChunk {
  region: Region;
  rows: number;
  kc: number;
  d0: string;
  perm: number;
  /** The storage element type, kept in the registers until stored (default f32). */
  elem?: "f32" | "f16";
}

/** vec4 registers a chunk of `items` vec4s takes per invocation. */
export const unitsOf = (items: number): number => Math.ceil(items / 256);

/**
 * Reads a transposed chunk from storage into the vec4 registers `${reg}u` (u <
 * {@linkcode unitsOf} (rows / 4 · kc), declared by the caller), and writes nothing:
 * {@linkcode putTransposed} stores them, right after (a plain load) or after the product of the
 * chunk before (reading ahead).
 */
export function fetchTransposed(emit: Emit, s: Source, o: TransposedChunk, reg: string): void {
  const items = (o.rows / 4) * o.kc;
  for (const u of range(unitsOf(items))) {
    const guard = (u + 1) * 256 > items;
    emit(`      {
        let e = lid + ${u * 256}u;
        let kk = e % ${o.kc}u;
        let pos = (e / ${o.kc}u) * 4u;
        let r0 = ${s.first} + ${o.perm ? `pos / ${o.perm}u + 16u * (pos % ${o.perm}u)` : "pos"};
        let dcol = ${o.d0} + kk;
        var x = vec4<${o.elem ?? "f32"}>(0.0);
        if (${guard ? `e < ${items}u && ` : ""}dcol < ${s.headDim}) {`);
    for (const z of range(4)) {
      const row = `r0 + ${o.perm ? 16 * z : z}u`;
      emit(
        `          if (${row} < ${s.limit}) { x.${XYZW[z]} = ${s.src}[${s.base} + (${
          s.rowOf ? s.rowOf(row) : row
        }) * ${s.stride} + dcol]; }`,
      );
    }
    emit(`        }
        ${reg}${u} = x;
      }`);
  }
}

/** Stores the registers {@linkcode fetchTransposed} read into the chunk's region. */
export function putTransposed(emit: Emit, o: TransposedChunk, reg: string): void {
  const items = (o.rows / 4) * o.kc;
  for (const u of range(unitsOf(items))) {
    const guard = (u + 1) * 256 > items;
    emit(`      {
        let e = lid + ${u * 256}u;${guard ? `\n        if (e < ${items}u) {` : ""}
        ${o.region.flat(`(e % ${o.kc}u * ${o.rows}u + e / ${o.kc}u * 4u) / 4u`)} = ${
      asF32(`${reg}${u}`, o.elem)
    };${guard ? "\n        }" : ""}
      }`);
  }
}

/**
 * Declares the vec4 registers `${reg}u` of a chunk of `items` vec4s of element type `elem`
 * (storage's: converted to f32 when stored, so that no instruction right after a read-ahead
 * load waits for it).
 */
export function declareUnits(
  emit: Emit,
  reg: string,
  items: number,
  elem: "f32" | "f16" = "f32",
): void {
  for (const u of range(unitsOf(items))) emit(`  var ${reg}${u} = vec4<${elem}>(0.0);`);
}

/** A vec4 register of element type `elem` as vec4<f32>. */
const asF32 = (r: string, elem?: "f32" | "f16") => elem === "f16" ? `vec4<f32>(${r})` : r;

/**
 * `count` rows (all D padded columns), stored into `region` row-major: element (row, col) at
 * logical position `row·D + col` (slot row; owner tx holds columns tx·D/16 ..).
 */
export interface RowsChunk {
  region: Region;
  count: number;
  d: number;
  /** The storage element type, kept in the registers until stored (default f32). */
  elem?: "f32" | "f16";
}

/**
 * Reads `count` rows from `s.first` (all D padded columns) into the vec4 registers `${reg}u`
 * (u < {@linkcode unitsOf} (count · D / 4), declared by the caller); {@linkcode putRows} stores
 * them.
 */
export function fetchRows(emit: Emit, s: Source, o: RowsChunk, reg: string): void {
  const items = (o.count * o.d) / 4;
  for (const u of range(unitsOf(items))) {
    const guard = (u + 1) * 256 > items;
    emit(`    {
      let e = lid + ${u * 256}u;
      let row = ${s.first} + e / ${o.d / 4}u;
      let dc = (e % ${o.d / 4}u) * 4u;
      var x = vec4<${o.elem ?? "f32"}>(0.0);
      if (${guard ? `e < ${items}u && ` : ""}row < ${s.limit}) {
        let base = ${s.base} + ${s.rowOf ? s.rowOf("row") : "row"} * ${s.stride} + dc;`);
    for (const z of range(4)) {
      emit(
        `        if (dc + ${z}u < ${s.headDim}) { x.${XYZW[z]} = ${s.src}[base + ${z}u]; }`,
      );
    }
    emit(`      }
      ${reg}${u} = x;
    }`);
  }
}

/** Stores the registers {@linkcode fetchRows} read into the chunk's region. */
export function putRows(emit: Emit, o: RowsChunk, reg: string): void {
  const items = (o.count * o.d) / 4;
  for (const u of range(unitsOf(items))) {
    const e = `(lid + ${u * 256}u)`;
    const put = `${o.region.flat(e)} = ${asF32(`${reg}${u}`, o.elem)};`;
    emit(`    ${(u + 1) * 256 > items ? `if (${e} < ${items}u) { ${put} }` : put}`);
  }
}
