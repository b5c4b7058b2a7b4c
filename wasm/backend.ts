/**
 * The WASM SIMD backend (`backend: "wasm"`): lays the call out in the shared wasm memory, runs the
 * AssemblyScript kernels of `wasm/assembly/kernels.ts` over the shared block schedule on one or
 * more threads, and copies the results out.
 *
 * Forward: pack (k → transposed panels, v → head-major rows) → forward (items: batch × head ×
 * row block; q read in place).
 * Decoding (forward with Nq ≤ 16, e.g. one new token against a KV cache): decodePrep (items: row
 * groups; their qᵀ·scale) → decode (items: batch entry × key split; k and v read in place for f32
 * with d % 4 = 0, else converted a column block at a time into panels) → decodeCombine (items:
 * row groups; merges the splits' partial results, lse-weighted, in split order).
 * Backward: pack (q, k, v, out, dOut) → bwdPrep (qᵀ, dOᵀ per row block, D, lse·log2 e) →
 * backward (items: batch × key head × chunk of column blocks; each owns its dK/dV rows and a dQ
 * partial buffer) → bwdReduce (dQ = scale · Σ partials in chunk order). The number of chunks
 * depends on the problem only, so results are bitwise the same for any thread count (the same
 * holds for the number of decode splits).
 *
 * Options: softcap and dropout are computed in the kernels; block masks run on
 * {@linkcode BLOCK_MASK_TILE} tiles, which divide every block, so the schedule applies them.
 *
 * Finiteness (`checkFinite`): the raw copies of the inputs are scanned with SIMD on the calling
 * thread before the first phase (4× faster than the API's scan in JavaScript, which this backend
 * therefore skips); a NaN or ±∞ is the same RangeError, and nothing has been computed. Kernels
 * told the inputs are finite (`P_IN_FINITE`) convert binary16 without the fix-up for ±∞ and NaN.
 *
 * Memory beyond inputs and outputs is O(N): packed copies, per-row-block transposes, O(Nq) row
 * statistics, a bounded number of dQ partials, and per-thread tile scratch. The memory is reused
 * by every call and only grows; a call that would need more than 4 GiB is a RangeError before
 * anything is computed.
 *
 * @module
 */

import type {
  AttentionResult,
  Backend,
  Computed,
  Gradients,
  Problem,
  SavedForBackward,
} from "../types.ts";
import type { Schedule } from "../masks/schedule.ts";
import { type Tensor, toFloat32 } from "../tensor.ts";
import { sinkGradient } from "../terms/sink.ts";
import { engine, HEAP_BASE, MAX_MEMORY_BYTES, type Phase } from "./_runtime.ts";
import { Layout, type PackSpec, put, take, takeFrame, writeFrame } from "./_frame.ts";
import { logicalCores } from "./_threads.ts";
import { P } from "./abi.ts";

/** Query rows per tile (a multiple of 8) without a block mask. */
export const BLOCK_ROWS = 48;
/** Key columns per tile without a block mask. */
export const BLOCK_COLS = 96;
/**
 * Tile with a block mask: its sides must divide the block sizes (multiples of 128), so that the
 * scheduler applies the block mask by skipping tiles.
 */
export const BLOCK_MASK_TILE = { rows: 64, cols: 64 } as const;
/** Decoding: key columns per tile (divides 128, so block masks work too). */
export const DECODE_COLS = 64;
/** Decoding: the schedule's rows per tile; every Nq up to this is one row block. */
export const DECODE_ROW_BLOCK = 16;
/** Decoding: most query rows (heads × Nq) computed together against one key head. */
export const DECODE_MAX_ROWS = 64;
/** Decoding: most key splits per row group. */
export const DECODE_MAX_SPLITS = 64;
/** Most dQ partial buffers of the backward pass (chunks of column blocks). */
export const MAX_CHUNKS = 8;
/**
 * Tuning knobs. `flopsPerThread`: below this many useful flops per thread, extra threads cost
 * more (~0.1 ms per phase to message a worker) than they save; tests set it to 0 to run even tiny
 * problems on workers. `decodeMaxNq`: forward calls with Nq up to this use the split-KV decode
 * kernels (at most {@linkcode DECODE_ROW_BLOCK}; 0 turns them off).
 */
export const tuning = { flopsPerThread: 2e7, decodeMaxNq: DECODE_ROW_BLOCK };

/** Calls so far by kernel path (tests use it to see which path ran). */
export const stats = { forward: 0, decode: 0, backward: 0 };

/** The tile `[rows, cols]` of a forward or backward call. */
export function tileFor(p: Problem): [number, number] {
  return p.blockMask ? [BLOCK_MASK_TILE.rows, BLOCK_MASK_TILE.cols] : [BLOCK_ROWS, BLOCK_COLS];
}

/** Threads a call may use without `options.threads`: the machine's logical cores. */
export function defaultThreads(): number {
  return logicalCores();
}

/** The thread count for a problem: the option (default: all cores), fewer for small problems. */
export function threadsFor(p: Problem, flops: number, items: number): number {
  const want = p.threads ?? defaultThreads();
  // (flopsPerThread 0, as tests set it, with flops 0, a fully masked call, would be 0/0 = NaN)
  const byWork = tuning.flopsPerThread > 0 ? Math.floor(flops / tuning.flopsPerThread) : want;
  return Math.max(1, Math.min(want, items, byWork));
}

/** Number of dQ partials (column-block chunks) of the backward pass: a function of the problem. */
export function chunksFor(p: Problem, colBlocks: number): number {
  return Math.max(1, Math.min(MAX_CHUNKS, colBlocks, Math.ceil(32 / (p.batch * p.kvHeads))));
}

function tooBig(bytes: number, what: string): RangeError {
  return new RangeError(
    `${what} needs ${(bytes / 2 ** 30).toFixed(2)} GiB of WASM memory (inputs, outputs and ` +
      `workspace), more than the 4 GiB one WebAssembly.Memory can hold; split the batch or heads, ` +
      `or use another backend`,
  );
}

/** Bytes a forward call needs, without the schedule (checked before scheduling). */
export function forwardBytes(p: Problem): number {
  const { batch: B, nq, nk, heads: H, kvHeads: Hk, headDim: d } = p;
  const dp = Math.ceil(d / 4) * 4, eb = p.dtype === "f16" ? 2 : 4;
  const nQ = B * nq * H, nK = B * nk * Hk;
  // q raw, k and v raw and packed, out, lse, + the last K panel's padding
  return HEAP_BASE + nQ * d * eb + 2 * nK * (d * eb + dp * 4) + nQ * d * eb + B * H * nq * 4 +
    B * Hk * BLOCK_COLS * dp * 4;
}

/** Bytes a backward call needs, without the schedule (checked before scheduling). */
export function backwardBytes(p: Problem): number {
  const { batch: B, nq, nk, heads: H, kvHeads: Hk, headDim: d } = p;
  const dp = Math.ceil(d / 4) * 4, eb = p.dtype === "f16" ? 2 : 4;
  const nQ = B * nq * H, nK = B * nk * Hk;
  const [br, bc] = tileFor(p);
  const rb = Math.ceil(nq / br), nqPad = rb * br;
  const chunks = chunksFor(p, Math.ceil(nk / bc));
  const rowsPad = B * H * nqPad;
  return HEAP_BASE + (3 * nQ + 2 * nK) * (d * eb + dp * 4) + B * H * nq * 4 +
    rowsPad * dp * 4 * (2 + chunks) + rowsPad * 8 + (nQ + 2 * nK) * d * eb;
}

function checkSize(bytes: number, what: string): void {
  if (bytes > MAX_MEMORY_BYTES) throw tooBig(bytes, what);
}

/** Work item lists sorted by decreasing cost (largest first balances threads best). */
function byCost(costs: Int32Array | number[]): Int32Array {
  const idx = Array.from({ length: costs.length }, (_, i) => i);
  idx.sort((a, b) => costs[b] - costs[a] || a - b);
  return Int32Array.from(idx);
}

async function forward(
  p: Problem,
  q: Tensor,
  k: Tensor,
  v: Tensor,
): Promise<Computed<AttentionResult>> {
  if (p.nq <= Math.min(tuning.decodeMaxNq, DECODE_ROW_BLOCK)) return await decode(p, q, k, v);
  checkSize(forwardBytes(p), "this attention call");
  const [br, bc] = tileFor(p);
  const plan = p.schedule(br, bc);
  const eng = engine();
  return await eng.exclusive(async () => {
    stats.forward++;
    const { batch: B, nq, nk, heads: H, kvHeads: Hk, headDim: d } = p;
    const dp = Math.ceil(d / 4) * 4, f16 = p.dtype === "f16", eb = f16 ? 2 : 4;
    const nQ = B * nq * H * d;
    const flops = 4 * B * H * nq * nk * d * plan.density;
    const fwdItems = B * H * plan.rowBlocks;
    const threads = threadsFor(p, flops, fwdItems);
    const L = new Layout();
    // q read in place, K in transposed panels
    const packs: PackSpec = [[nq, H, "raw"], [nk, Hk, "panels"], [nk, Hk]];
    const f = takeFrame(L, p, plan, plan.rowPtr, plan.rowTiles, packs);
    const { params, counters } = f;
    const out = L.take(nQ * eb), lse = L.take(B * H * nq * 4);
    // Qᵀ, Sᵀ, O, then m, l, alpha, row indices, heads, tile maxima (one per row), 4 Philox words
    const scratchBytes = Math.ceil((((2 * dp + bc + 6) * br) * 4 + 64) / 64) * 64;
    const scratch = L.take(threads * scratchBytes);
    const packOrder = Int32Array.from({ length: B * 2 * Hk }, (_, i) => i);
    const packItems = L.take(packOrder.byteLength);
    const fwdOrder = byCost(rowCosts(p, plan));
    const items = L.take(fwdOrder.byteLength);
    checkSize(L.end, "this attention call");
    eng.ensure(L.end);

    const buf = eng.memory.buffer;
    const i32 = writeFrame(eng, f, p, plan, [["q", q], ["k", k], ["v", v]], true);
    [i32[P.Q], i32[P.K], i32[P.V]] = [f.raw[0], f.packed[1], f.packed[2]];
    i32[P.OUT] = out;
    i32[P.LSE] = lse;
    i32[P.SCRATCH] = scratch;
    i32[P.SCRATCH_BYTES] = scratchBytes;
    put(buf, packItems, packOrder);
    put(buf, items, fwdOrder);
    const phases: Phase[] = [
      { fn: "pack", params, counter: counters, items: packItems, nItems: packOrder.length },
      { fn: "forward", params, counter: counters + 4, items, nItems: fwdOrder.length },
    ];
    await eng.run(phases, threads);
    const mem = eng.memory.buffer;
    return {
      out: { data: take(mem, out, nQ, f16), shape: q.shape, dtype: q.dtype },
      lse: new Float32Array(mem, lse, B * H * nq).slice(),
    };
  });
}

/**
 * The row groups of a decode call: for each batch entry and key head, its query heads in runs
 * that share one mask slice, cut so that heads × Nq ≤ {@linkcode DECODE_MAX_ROWS}; 4 × i32 each
 * (batch, key head, first head, heads).
 */
export function decodeGroups(p: Problem): Int32Array {
  const { batch: B, heads: H, kvHeads: Hk, nq } = p;
  const group = H / Hk, most = Math.max(1, Math.floor(DECODE_MAX_ROWS / nq));
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let kh = 0; kh < Hk; kh++) {
      const end = (kh + 1) * group;
      for (let h = kh * group; h < end;) {
        const h0 = h, slice = p.slice(b, h);
        while (h < end && h - h0 < most && p.slice(b, h) === slice) h++;
        out.push(b, kh, h0, h - h0);
      }
    }
  }
  return Int32Array.from(out);
}

/**
 * Key splits per batch entry of a decode call: enough work items (about 32 in all) to keep every
 * thread busy, at least 4 column blocks a split, at most {@linkcode DECODE_MAX_SPLITS}. A function
 * of the problem only, so that results do not depend on the thread count.
 */
export function decodeSplits(batch: number, colBlocks: number): number {
  return Math.max(
    1,
    Math.min(DECODE_MAX_SPLITS, Math.ceil(32 / batch), Math.floor(colBlocks / 4)),
  );
}

/** Bytes a decode call needs, without the schedule (checked before scheduling). */
export function decodeBytes(p: Problem): number {
  const { batch: B, nq, nk, heads: H, kvHeads: Hk, headDim: d } = p;
  const eb = p.dtype === "f16" ? 2 : 4;
  return HEAP_BASE + (2 * B * nq * H + 2 * B * nk * Hk) * d * eb + B * H * nq * 4;
}

/**
 * Forward for small Nq (decoding with a KV cache), flash-decoding style: the query rows of each
 * key head's group are computed together (K and V read once per group, in place: no packing), the
 * keys of each batch entry are split into `decodeSplits` ranges of column blocks computed in
 * parallel (each for every group of the entry, so K and V are streamed in memory order), and
 * `decodeCombine` merges each group's partial results in split order, inside the wasm memory.
 */
async function decode(
  p: Problem,
  q: Tensor,
  k: Tensor,
  v: Tensor,
): Promise<Computed<AttentionResult>> {
  checkSize(decodeBytes(p), "this attention call");
  const plan = p.schedule(DECODE_ROW_BLOCK, DECODE_COLS);
  const eng = engine();
  return await eng.exclusive(async () => {
    stats.decode++;
    const { batch: B, nq, nk, heads: H, headDim: d } = p;
    const dp = Math.ceil(d / 4) * 4, f16 = p.dtype === "f16", eb = f16 ? 2 : 4;
    const nQ = B * nq * H * d;
    const groups = decodeGroups(p);
    const nGroups = groups.length / 4;
    const groupPtr = new Int32Array(B + 1);
    let rowsMax = 4, most = 0;
    for (let g = 0; g < nGroups; g++) {
      groupPtr[groups[4 * g] + 1]++;
      rowsMax = Math.max(rowsMax, Math.ceil((groups[4 * g + 3] * nq) / 4) * 4);
    }
    for (let b = 0; b < B; b++) {
      most = Math.max(most, groupPtr[b + 1]);
      groupPtr[b + 1] += groupPtr[b];
    }
    const splits = decodeSplits(B, plan.colBlocks);
    const nItems = B * splits;
    const flops = 4 * B * H * nq * nk * d * plan.density;
    const threads = threadsFor(p, flops, nItems);
    const L = new Layout();
    // q, k and v are read in place (raw); the schedule by row block
    const packs: PackSpec = [[nq, H, "raw"], [nk, p.kvHeads, "raw"], [nk, p.kvHeads, "raw"]];
    const f = takeFrame(L, p, plan, plan.rowPtr, plan.rowTiles, packs);
    const { params, counters } = f;
    const out = L.take(nQ * eb), lse = L.take(B * H * nq * 4);
    const groupsAt = L.take(groups.byteLength), groupPtrAt = L.take(groupPtr.byteLength);
    const qt = L.take(nGroups * dp * rowsMax * 4), decRows = L.take(nGroups * rowsMax * 8);
    const part = L.take(nGroups * splits * rowsMax * (dp * 4 + 8));
    // Sᵀ, alpha, maxima, 4 Philox words, 2 cursors per group, K and V panels of a column block
    // (all key heads; only when they are converted); the combine: weights, a row
    const direct = !f16 && d % 4 === 0; // K and V rows used as they are
    const panels = direct ? 0 : 2 * DECODE_COLS * p.kvHeads * dp;
    const decodeScratch = (DECODE_COLS * rowsMax + 2 * rowsMax + panels) * 4 + 64 + most * 8;
    const scratchBytes = Math.ceil(Math.max(decodeScratch, (splits + dp + 2) * 4) / 64) * 64;
    const scratch = L.take(threads * scratchBytes);
    const order = Int32Array.from({ length: Math.max(nItems, nGroups) }, (_, i) => i);
    const items = L.take(order.byteLength);
    checkSize(L.end, "this attention call");
    eng.ensure(L.end);

    const buf = eng.memory.buffer;
    const i32 = writeFrame(eng, f, p, plan, [["q", q], ["k", k], ["v", v]], true);
    [i32[P.Q], i32[P.K], i32[P.V]] = f.raw;
    i32[P.OUT] = out;
    i32[P.LSE] = lse;
    i32[P.SCRATCH] = scratch;
    i32[P.SCRATCH_BYTES] = scratchBytes;
    i32[P.GROUPS] = groupsAt;
    i32[P.GROUP_PTR] = groupPtrAt;
    i32[P.QT] = qt;
    i32[P.DEC_ROWS] = decRows;
    i32[P.GROUPS_MAX] = most;
    i32[P.SPLITS] = splits;
    i32[P.ROWS_MAX] = rowsMax;
    i32[P.PART] = part;
    i32[P.KV_DIRECT] = direct ? 1 : 0;
    put(buf, groupsAt, groups);
    put(buf, groupPtrAt, groupPtr);
    put(buf, items, order);
    const phases: Phase[] = [
      { fn: "decodePrep", params, counter: counters, items, nItems: nGroups },
      { fn: "decode", params, counter: counters + 4, items, nItems },
      { fn: "decodeCombine", params, counter: counters + 8, items, nItems: nGroups },
    ];
    await eng.run(phases, threads);
    const mem = eng.memory.buffer;
    return {
      out: { data: take(mem, out, nQ, f16), shape: q.shape, dtype: q.dtype },
      lse: new Float32Array(mem, lse, B * H * nq).slice(),
    };
  });
}

/** Tiles per forward item (b, h, row block). */
function rowCosts(p: Problem, plan: Schedule): Int32Array {
  const c = new Int32Array(p.batch * p.heads * plan.rowBlocks);
  for (let b = 0; b < p.batch; b++) {
    for (let h = 0; h < p.heads; h++) {
      const s = p.slice(b, h) * plan.rowBlocks;
      for (let r = 0; r < plan.rowBlocks; r++) {
        c[(b * p.heads + h) * plan.rowBlocks + r] = plan.rowPtr[s + r + 1] - plan.rowPtr[s + r] + 1;
      }
    }
  }
  return c;
}

async function backward(p: Problem, saved: SavedForBackward): Promise<Computed<Gradients>> {
  checkSize(backwardBytes(p), "this attentionBackward call");
  const [br, bc] = tileFor(p);
  const plan = p.schedule(br, bc);
  const eng = engine();
  return await eng.exclusive(async () => {
    stats.backward++;
    const { batch: B, nq, nk, heads: H, kvHeads: Hk, headDim: d } = p;
    const dp = Math.ceil(d / 4) * 4, f16 = p.dtype === "f16", eb = f16 ? 2 : 4;
    const nQ = B * nq * H * d, nK = B * nk * Hk * d;
    const rb = plan.rowBlocks, nqPad = rb * br;
    const chunks = chunksFor(p, plan.colBlocks);
    const group = H / Hk;
    // backward items (b, kh, chunk), cost = tiles over the group's heads and the chunk's blocks
    const costs = new Int32Array(B * Hk * chunks);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const s = p.slice(b, h) * plan.colBlocks;
        for (let c = 0; c < plan.colBlocks; c++) {
          const item = (b * Hk + Math.floor(h / group)) * chunks + (c % chunks);
          costs[item] += plan.colPtr[s + c + 1] - plan.colPtr[s + c] + 1;
        }
      }
    }
    const bwdOrder = byCost(costs);
    const flops = 10 * B * H * nq * nk * d * plan.density;
    const threads = threadsFor(p, flops, bwdOrder.length);
    const packs: PackSpec = [[nq, H], [nk, Hk], [nk, Hk], [nq, H], [nq, H]]; // q, k, v, out, dOut
    const L = new Layout();
    const f = takeFrame(L, p, plan, plan.colPtr, plan.colTiles, packs);
    const { params, counters } = f;
    const lse = L.take(B * H * nq * 4);
    const qt = L.take(B * H * rb * dp * br * 4);
    const dot = L.take(B * H * rb * dp * br * 4);
    const dd = L.take(B * H * nqPad * 4), lse2 = L.take(B * H * nqPad * 4);
    const dqPart = L.take(chunks * B * H * nqPad * dp * 4);
    const dk = L.take(nK * eb), dv = L.take(nK * eb), dq = L.take(nQ * eb);
    // Sᵀ, dPᵀ, dK, dV, then 4 Philox words
    const scratchBytes = Math.ceil(((2 * bc * br + 2 * bc * dp) * 4 + 64) / 64) * 64;
    const scratch = L.take(threads * scratchBytes);
    const packOrder = Int32Array.from({ length: B * (3 * H + 2 * Hk) }, (_, i) => i);
    const packItems = L.take(packOrder.byteLength);
    const rowOrder = Int32Array.from({ length: B * H * rb }, (_, i) => i);
    const rowItems = L.take(rowOrder.byteLength);
    const bwdItems = L.take(bwdOrder.byteLength);
    checkSize(L.end, "this attentionBackward call");
    eng.ensure(L.end);

    const buf = eng.memory.buffer;
    const { q, k, v, out, dOut } = saved;
    const i32 = writeFrame(eng, f, p, plan, [
      ["q", q],
      ["k", k],
      ["v", v],
      ["out", out],
      ["dOut", dOut],
    ]);
    [i32[P.Q], i32[P.K], i32[P.V], i32[P.OUT], i32[P.DO]] = f.packed;
    i32[P.LSE] = lse;
    i32[P.SCRATCH] = scratch;
    i32[P.SCRATCH_BYTES] = scratchBytes;
    i32[P.QT] = qt;
    i32[P.DOT] = dot;
    i32[P.DD] = dd;
    i32[P.LSE2] = lse2;
    i32[P.DQ_PART] = dqPart;
    i32[P.CHUNKS] = chunks;
    i32[P.DK] = dk;
    i32[P.DV] = dv;
    i32[P.DQ] = dq;
    put(buf, lse, saved.lse);
    put(buf, packItems, packOrder);
    put(buf, rowItems, rowOrder);
    put(buf, bwdItems, bwdOrder);
    const phases: Phase[] = [
      { fn: "pack", params, counter: counters, items: packItems, nItems: packOrder.length },
      { fn: "bwdPrep", params, counter: counters + 4, items: rowItems, nItems: rowOrder.length },
      { fn: "backward", params, counter: counters + 8, items: bwdItems, nItems: bwdOrder.length },
      { fn: "bwdReduce", params, counter: counters + 12, items: rowItems, nItems: rowOrder.length },
    ];
    await eng.run(phases, threads);
    const mem = eng.memory.buffer;
    return {
      dq: { data: take(mem, dq, nQ, f16), shape: q.shape, dtype: q.dtype },
      dk: { data: take(mem, dk, nK, f16), shape: k.shape, dtype: k.dtype },
      dv: { data: take(mem, dv, nK, f16), shape: v.shape, dtype: v.dtype },
      // the sinks' gradient, on the host: O(B·Hq·Nq·d) (terms/sink.ts)
      ...(p.sinks
        ? {
          dsinks: sinkGradient(
            p.sinks,
            toFloat32(saved.out),
            toFloat32(saved.dOut),
            saved.lse,
            p,
          ),
        }
        : {}),
    };
  });
}

/**
 * The WASM SIMD backend: FlashAttention-2 forward and backward in AssemblyScript over the shared
 * block schedule, on `options.threads` worker threads sharing one wasm memory.
 *
 * @example Through the public API
 * ```ts
 * import { attention, tensor } from "../mod.ts";
 * import assert from "node:assert/strict";
 *
 * const x = () => tensor(Float32Array.from({ length: 64 }, () => Math.random() - 0.5), [1, 8, 1, 8]);
 * const { out } = await attention(x(), x(), x(), { backend: "wasm", causal: true });
 * assert.deepEqual(out.shape, [1, 8, 1, 8]);
 * ```
 */
let warned = false;

/**
 * Why the WASM backend cannot run here (no WebAssembly, or code cannot be compiled from bytes
 * and no precompiled module was given), or undefined. `auto` then computes with `js`, and says
 * so once on the console.
 */
export function wasmUnusable(): string | undefined {
  try {
    engine();
    return undefined;
  } catch (e) {
    const why = (e as Error).message;
    if (!warned) {
      warned = true;
      console.warn(`${why}\nbackend "auto" computes on the CPU with "js" instead.`);
    }
    return why;
  }
}

export const wasmBackend: Backend = {
  name: "wasm",
  features: new Set(["softcap", "dropout", "blockMask", "sinks", "alibiSlopes", "blockTable"]),
  checksFinite: true,
  forward,
  backward,
  info: () => {
    const eng = engine(), relaxed = eng.relaxed;
    const threads = eng.threadsMissing === undefined ? defaultThreads() : 1;
    return Promise.resolve({
      name: "wasm",
      device: `WASM ${relaxed ? "relaxed " : ""}SIMD, ${threads} thread${threads > 1 ? "s" : ""}` +
        (eng.threadsMissing === undefined ? "" : ` (no worker threads: ${eng.threadsMissing})`),
      simd: relaxed ? "relaxed" : "plain",
      threads,
      forwardTile: [BLOCK_ROWS, BLOCK_COLS],
    });
  },
};
