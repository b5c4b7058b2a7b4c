/**
 * The layout of one call in the WASM memory, shared by the forward, decode and backward calls:
 * the bump allocator, the frame every call lays out alike (parameter block, counters, schedule,
 * term tables, raw and packed inputs), and the copies of the inputs into the memory (with the
 * finiteness scan, and a paged cache's pages in logical order).
 *
 * @module
 */

import type { Problem } from "../types.ts";
import { checkFinite, notFinite } from "../_problem.ts";
import type { Schedule } from "../masks/schedule.ts";
import type { Tensor } from "../tensor.ts";
import { dropoutKey, dropoutThreshold } from "../masks/dropout.ts";
import { type Engine, HEAP_BASE } from "./_runtime.ts";
import { MAX_PACKED_TENSORS, P, PARAM_SLOTS } from "./abi.ts";
import { alibiTable } from "../terms/alibi.ts";

/** A bump allocator over the wasm memory; offsets are 64-byte aligned. */
export class Layout {
  end = HEAP_BASE;
  take(bytes: number): number {
    const at = this.end;
    this.end = at + Math.ceil(Math.max(bytes, 1) / 64) * 64;
    return at;
  }
}

function sliceTable(p: Problem): Int32Array {
  const t = new Int32Array(p.batch * p.heads);
  for (let b = 0; b < p.batch; b++) {
    for (let h = 0; h < p.heads; h++) t[b * p.heads + h] = p.slice(b, h);
  }
  return t;
}

/** Copies a tensor's raw data (f32 or binary16 bits) into the memory at `at`. */
export function put(
  buf: ArrayBufferLike,
  at: number,
  t: Tensor | Float32Array | Int32Array | Uint32Array,
) {
  const data = "dtype" in t ? t.data : t;
  const View = data.constructor as Float32ArrayConstructor;
  new View(buf, at, data.length).set(data as Float32Array);
}

/** Bytes of input {@linkcode putInputs} has copied into the wasm memory (tests read it). */
export const inputStats = { bytes: 0 };

/** Elements copied per step by {@linkcode putInputs} (scanned while they are in the cache). */
const COPY_CHUNK = 1 << 14;

/**
 * The key rows a forward or decoding pass reads, per batch entry: `[lo, hi)` at `2b`, `2b + 1`,
 * the column blocks from the first to the last that a tile list of the entry's slices holds
 * (lists ascend), whole; undefined where that is every row of every entry.
 */
function keyRowsRead(p: Problem, plan: Schedule): Int32Array | undefined {
  const rows = new Int32Array(2 * p.batch), bc = plan.blockCols;
  let all = true;
  for (let b = 0; b < p.batch; b++) {
    let lo = plan.colBlocks, hi = 0;
    const seen = new Set<number>();
    for (let h = 0; h < p.heads; h++) {
      const s = p.slice(b, h);
      if (seen.has(s)) continue;
      seen.add(s);
      for (let r = 0; r < plan.rowBlocks; r++) {
        const i = s * plan.rowBlocks + r, a = plan.rowPtr[i], e = plan.rowPtr[i + 1];
        if (a === e) continue;
        lo = Math.min(lo, plan.rowTiles[a] >> 1);
        hi = Math.max(hi, (plan.rowTiles[e - 1] >> 1) + 1);
      }
    }
    rows[2 * b] = Math.min(lo * bc, p.nk);
    rows[2 * b + 1] = Math.max(rows[2 * b], Math.min(hi * bc, p.nk));
    all &&= rows[2 * b] === 0 && rows[2 * b + 1] === p.nk;
  }
  return all ? undefined : rows;
}

/**
 * Copies the named input tensors' raw data (f32 or binary16 bits) into the memory at `at`, and
 * with `p.checkFinite` does the API's finiteness check on the copies (see
 * {@linkcode Backend.checksFinite}), chunk by chunk right after each is copied (from the cache:
 * 2–3× faster than a second pass): throws the RangeError of the first NaN or ±∞. Without the
 * check, `keyRows` ({@linkcode keyRowsRead}) limits k and v to the rows the kernels read (a
 * decoding step's valid keys, a window): the rest of the memory is left as it was, unread.
 */
export function putInputs(
  eng: Engine,
  p: Problem,
  at: number[],
  tensors: [string, Tensor][],
  keyRows?: Int32Array,
): void {
  const f16 = p.dtype === "f16", eb = f16 ? 2 : 4;
  tensors.forEach(([name, t], i) => {
    const data = t.data, View = data.constructor as Float32ArrayConstructor;
    // [source offset, memory offset, length] runs: the tensor whole, or (k and v of a paged
    // cache) its pages in logical order, so that the kernels see the contiguous cache and give
    // its bits; the pages are copied once, as a contiguous cache would be
    const runs: [number, number, number][] = [];
    const pg = p.pages;
    let scan = p.checkFinite;
    if (pg && (name === "k" || name === "v")) {
      const n = pg.pageSize * p.kvHeads * p.headDim;
      pg.table.forEach((page, s) => runs.push([page * n, s * n, n]));
      // every page is an input, read or not: scanned whole, as the other backends do
      if (scan) checkFinite(t, name, "page");
      scan = false;
    } else if (keyRows && !scan && (name === "k" || name === "v")) {
      const row = p.kvHeads * p.headDim;
      for (let b = 0; b < p.batch; b++) {
        const from = (b * p.nk + keyRows[2 * b]) * row;
        runs.push([from, from, (keyRows[2 * b + 1] - keyRows[2 * b]) * row]);
      }
    } else runs.push([0, 0, data.length]);
    const size = runs.reduce((a, r) => Math.max(a, r[1] + r[2]), 0);
    const dst = new View(eng.memory.buffer, at[i], size);
    inputStats.bytes += runs.reduce((a, r) => a + r[2], 0) * eb;
    for (const [from, to, len] of runs) {
      for (let s = 0; s < len; s += COPY_CHUNK) {
        const e = Math.min(len, s + COPY_CHUNK);
        dst.set((data as Float32Array).subarray(from + s, from + e), to + s);
        if (!scan) continue;
        const bad = eng.exports.firstNonFinite(at[i] + (to + s) * eb, e - s, f16 ? 1 : 0);
        if (bad >= 0) throw notFinite(t, name, from + s + bad);
      }
    }
  });
}

export function take(
  buf: ArrayBufferLike,
  at: number,
  n: number,
  f16: boolean,
): Float32Array | Uint16Array {
  return f16 ? new Uint16Array(buf, at, n).slice() : new Float32Array(buf, at, n).slice();
}

/**
 * What every call (forward, decode, backward) lays out alike, at the start of the memory: the
 * parameter block, the phase counters, the schedule in the call's direction (forward and decode:
 * tiles by row block, backward: by column block), and each input tensor, raw as given and then,
 * unless it is read in place, packed (see {@linkcode PackSpec}).
 */
export interface Frame {
  params: number;
  counters: number;
  sliceOf: number;
  /** The sink logits · log2 e (0: none). */
  sinks: number;
  /** ALiBi per (b, h): slope · log2 e, offset (0: none). */
  alibi: number;
  bounds: number;
  tilePtr: number;
  tiles: number;
  /** Raw tensors (f32 or binary16), in the order of `packs`. */
  raw: number[];
  /** Their packed f32 copies, rows or panels padded to a multiple of 4 (−1: read in place). */
  packed: number[];
  /** What goes there: the tile pointers and tile list of the schedule, and the pack spec. */
  ptr: Uint32Array;
  list: Uint32Array;
  packs: PackSpec;
}

/**
 * `[sequence length, heads, layout]` of each tensor of a call, in order: copied raw into the
 * memory, then packed by the `pack` phase as head-major rows `[B, heads, N, dp]` ("rows",
 * the default), as transposed panels `[B, heads, ceil(N / Bc), dp, Bc]` ("panels", at most one
 * tensor), or not at all ("raw": the kernels read the raw copy).
 */
export type PackSpec = [number, number, ("rows" | "panels" | "raw")?][];

export function takeFrame(
  L: Layout,
  p: Problem,
  plan: Schedule,
  ptr: Uint32Array,
  list: Uint32Array,
  packs: PackSpec,
): Frame {
  const dp = Math.ceil(p.headDim / 4) * 4, eb = p.dtype === "f16" ? 2 : 4;
  const params = L.take(PARAM_SLOTS * 4), counters = L.take(64);
  const sliceOf = L.take(p.batch * p.heads * 4);
  const sinks = p.sinks ? L.take(p.heads * 4) : 0;
  const alibi = p.alibi ? L.take(p.batch * p.heads * 8) : 0;
  const bounds = L.take(plan.bounds.byteLength);
  const tilePtr = L.take(ptr.byteLength), tiles = L.take(list.byteLength);
  const raw = packs.map(([n, h]) => L.take(p.batch * n * h * p.headDim * eb));
  const packed = packs.map(([n, h, layout]) =>
    layout === "raw" ? -1 : L.take(
      p.batch * h * (layout === "panels" ? Math.ceil(n / plan.blockCols) * plan.blockCols : n) *
        dp * 4,
    )
  );
  return {
    params,
    counters,
    sliceOf,
    sinks,
    alibi,
    bounds,
    tilePtr,
    tiles,
    raw,
    packed,
    ptr,
    list,
    packs,
  };
}

/** Writes the scale, dtypes, softcap and dropout slots of the parameter block at `params`. */
function writeOptions(buf: ArrayBufferLike, params: number, p: Problem): void {
  const i32 = new Int32Array(buf, params, PARAM_SLOTS);
  const u32 = new Uint32Array(buf, params, PARAM_SLOTS);
  const f32 = new Float32Array(buf, params, PARAM_SLOTS);
  f32[P.SCALE] = p.scale;
  f32[P.SCALE2] = p.scale * Math.LOG2E;
  i32[P.F16] = i32[P.IN_F16] = p.dtype === "f16" ? 1 : 0;
  i32[P.IN_FINITE] = p.checkFinite ? 1 : 0;
  f32[P.SOFTCAP2] = p.softcap === undefined ? 0 : p.softcap * Math.LOG2E;
  if (p.dropout) {
    i32[P.DROP] = 1;
    u32[P.DROP_THR] = dropoutThreshold(p.dropout.p);
    f32[P.DROP_SCALE] = 1 / (1 - p.dropout.p);
    [u32[P.SEED_LO], u32[P.SEED_HI]] = dropoutKey(p.dropout.seed);
  }
}

/**
 * Writes the shared part of a call into the memory: the problem and frame slots of the parameter
 * block (the rest zeroed), the schedule, and the raw tensors. `listedKeys`: the kernels read only
 * the key tiles the schedule's forward lists hold (forward and decoding), so without the
 * finiteness check k and v are copied only where they do ({@linkcode keyRowsRead}). Returns the
 * parameter block as i32.
 */
export function writeFrame(
  eng: Engine,
  f: Frame,
  p: Problem,
  plan: Schedule,
  tensors: [string, Tensor][],
  listedKeys = false,
): Int32Array {
  const buf = eng.memory.buffer;
  const { batch: B, nq, nk, heads: H, kvHeads: Hk, headDim: d } = p;
  const i32 = new Int32Array(buf, f.params, PARAM_SLOTS);
  i32.fill(0);
  [i32[P.B], i32[P.NQ], i32[P.NK], i32[P.H], i32[P.HK], i32[P.D]] = [B, nq, nk, H, Hk, d];
  i32[P.DP] = Math.ceil(d / 4) * 4;
  [i32[P.BR], i32[P.BC]] = [plan.blockRows, plan.blockCols];
  [i32[P.ROW_BLOCKS], i32[P.COL_BLOCKS]] = [plan.rowBlocks, plan.colBlocks];
  writeOptions(buf, f.params, p);
  i32[P.BOUNDS] = f.bounds;
  i32[P.TILE_PTR] = f.tilePtr;
  i32[P.TILES] = f.tiles;
  i32[P.SLICE_OF] = f.sliceOf;
  const packed = f.packs.flatMap(([n, h, layout], t) =>
    layout === "raw" ? [] : [{ desc: [f.raw[t], f.packed[t], n, h], panels: layout === "panels" }]
  );
  if (packed.length > MAX_PACKED_TENSORS) throw new Error("internal: too many packed tensors");
  i32[P.NPACK] = packed.length;
  i32[P.PACK_T] = packed.findIndex((x) => x.panels);
  packed.forEach((x, t) => i32.set(x.desc, P.PACK + 4 * t));
  put(buf, f.sliceOf, sliceTable(p));
  if (p.sinks) {
    i32[P.SINKS] = f.sinks;
    put(buf, f.sinks, p.sinks.map((s) => s * Math.LOG2E));
  }
  if (p.alibi) {
    i32[P.ALIBI] = f.alibi;
    put(buf, f.alibi, alibiTable(p.alibi, p.heads));
  }
  put(buf, f.bounds, plan.bounds);
  put(buf, f.tilePtr, f.ptr);
  put(buf, f.tiles, f.list);
  const keyRows = listedKeys && !p.checkFinite ? keyRowsRead(p, plan) : undefined;
  putInputs(eng, p, f.raw, tensors, keyRows);
  return i32;
}
