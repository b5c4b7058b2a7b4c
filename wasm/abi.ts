/**
 * The interface between the WASM backend's host code (`wasm/backend.ts`) and its kernels
 * (`wasm/assembly/`), declared once: the slots of the parameter block every kernel reads. The
 * AssemblyScript constants `P_*` are generated from this table when the kernels are built
 * ({@linkcode assemblyAbi}, written by `deno task build:wasm`), so the two sides cannot disagree;
 * `tests/tools/wasm_build_test.ts` checks that the committed kernels are a fresh build of it.
 *
 * The parameter block is {@linkcode PARAM_SLOTS} 32-bit slots; a slot holds an i32 unless its
 * description says f32 or u32. Addresses are byte offsets into the shared wasm memory, laid out
 * by the host.
 *
 * @module
 */

/** [name, slot, what it holds]. */
const SLOTS = [
  ["B", 0, "batch"],
  ["NQ", 1, "query rows Nq"],
  ["NK", 2, "keys Nk"],
  ["H", 3, "query heads Hq"],
  ["HK", 4, "key heads Hk"],
  ["D", 5, "head dimension d"],
  ["DP", 6, "d rounded up to a multiple of 4"],
  ["BR", 7, "query rows per tile"],
  ["BC", 8, "keys per tile"],
  ["ROW_BLOCKS", 9, "row blocks of the schedule"],
  ["COL_BLOCKS", 10, "column blocks of the schedule"],
  ["SCALE", 11, "f32"],
  ["SCALE2", 12, "f32, scale · log2(e)"],
  ["F16", 13, "outputs are binary16"],
  ["BOUNDS", 14, "canonical mask bounds of the schedule"],
  ["TILE_PTR", 15, "schedule: list start per row (column) block"],
  ["TILES", 16, "schedule: tile list"],
  ["SLICE_OF", 17, "i32 per (b, h): mask slice"],
  ["Q", 18, "packed rows (backward) or raw, user layout (forward, decode)"],
  ["K", 19, "panels (forward), packed rows (backward), raw (decode)"],
  ["V", 20, "like K"],
  ["OUT", 21, "forward: out (user layout); backward: packed O"],
  ["LSE", 22, "[B, H, Nq] f32"],
  ["SCRATCH", 23, "per-thread scratch"],
  ["SCRATCH_BYTES", 24, "bytes of scratch per thread"],
  ["DO", 25, "packed dO"],
  ["QT", 26, "backward: per (b, h, row block) qᵀ, dp × Br"],
  ["DOT", 27, "backward: per (b, h, row block) dOᵀ, dp × Br"],
  ["DD", 28, "backward: D, [B, H, nqPad]"],
  ["LSE2", 29, "backward: lse · log2 e (+∞ for rows that see nothing), [B, H, nqPad]"],
  ["DQ_PART", 30, "backward: [nChunks, B, H, nqPad, dp]"],
  ["CHUNKS", 31, "backward: dQ partials (column-block chunks)"],
  ["DK", 32, "user layout outputs"],
  ["DV", 33, "user layout output"],
  ["DQ", 34, "user layout output"],
  ["NPACK", 35, "pack: number of tensors"],
  ["PACK", 36, "pack: 4 slots per tensor: src, dst, seq, heads"],
  ["IN_F16", 56, "inputs are binary16"],
  ["SOFTCAP2", 57, "f32: softcap · log2 e (0: no softcap)"],
  ["DROP", 58, "dropout on"],
  ["DROP_THR", 59, "u32: a Philox word below this drops its element"],
  ["DROP_SCALE", 60, "f32: 1 / (1 − p)"],
  ["SEED_LO", 61, "u32: Philox key word 0"],
  ["SEED_HI", 62, "u32: Philox key word 1"],
  [
    "GROUPS",
    63,
    "decode: row groups, 4 × i32 each: b, key head, first head, heads (decode also uses P_QT: per row group, Q, ROWS_MAX × dp)",
  ],
  ["SPLITS", 64, "decode: key splits per batch entry"],
  ["ROWS_MAX", 65, "decode: most rows of a group, rounded up to 4"],
  ["PART", 66, "decode: per (row group, split), O (ROWS_MAX × dp), then m and l (ROWS_MAX each)"],
  ["KV_DIRECT", 67, "decode: K and V are read in place (f32 and d % 4 == 0)"],
  ["PACK_T", 68, "pack: this tensor goes into transposed panels (−1: none)"],
  ["GROUP_PTR", 69, "decode: row groups of batch b are [ptr[b], ptr[b + 1])"],
  ["DEC_ROWS", 70, "decode: per row group, query row then head of each row (i32)"],
  ["GROUPS_MAX", 71, "decode: most row groups of one batch entry"],
  ["SINKS", 72, "H f32 sink logits · log2 e (0: no sinks; terms/sink.ts)"],
  ["ALIBI", 73, "ALiBi per (b, h): f32 slope · log2 e, f32 diagonal offset (0: no ALiBi)"],
  ["IN_FINITE", 74, "inputs were scanned and are finite (checkFinite)"],
] as const;

/** A parameter slot's name. */
export type ParamName = typeof SLOTS[number][0];

/** Slot index of each parameter. */
export const P: { readonly [K in ParamName]: number } = Object.fromEntries(
  SLOTS.map(([name, slot]) => [name, slot]),
) as { [K in ParamName]: number };

/** Slots in the parameter block. */
export const PARAM_SLOTS = 96;

/** Most tensors one pack phase copies; their descriptors (4 slots each) follow slot `PACK`. */
export const MAX_PACKED_TENSORS = 5;

/** The AssemblyScript module of the `P_*` slot constants the kernels import (`./abi`). */
export function assemblyAbi(): string {
  const lines = SLOTS.map(([name, slot, doc]) =>
    `export const P_${name}: i32 = ${slot}; // ${doc}`
  );
  return `// Generated from wasm/abi.ts by wasm/build.ts: the parameter block slots (i32 index).\n${
    lines.join("\n")
  }\n`;
}
