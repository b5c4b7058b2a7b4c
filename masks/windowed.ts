/**
 * A ragged KV cache's mask as windows of one template, so that a decoding step whose `kvLength`
 * grows costs O(batch + tiles) instead of O(batch × Nk).
 *
 * Query i sees key j of batch entry b iff `j < kvLength[b]` and the causal or window constraint
 * aligned bottom-right against `kvLength[b]` holds (see {@linkcode kvCache}). Both depend on
 * `t = j − kvLength[b]` alone, so the canonical bounds of every column of every entry are columns
 * of one template over `t ∈ [−Nk, Nk)`: key j of entry b is template column
 * `Nk − kvLength[b] + j`. The template depends only on (Nq, Nk, causal, window) and is made once;
 * a step gives new per-entry offsets. Kernels read the template through
 * {@linkcode Schedule.sliceColumn}; the GPU keeps it uploaded.
 *
 * The tile classification reads per-block min/max bounds; the template is stored with its runs
 * of identical columns (Nq + 1 of them for a causal cache without a window), so a
 * column block's min/max costs the runs it covers, not its columns.
 *
 * @module
 */

import { kvCacheColumn, type WindowSize } from "./builders.ts";
import { BOUNDS_PER_COLUMN, type FlashMask } from "./flashmask.ts";
import { type Schedule, tileSchedule } from "./schedule.ts";

/** The template of a ragged KV cache's columns. */
interface Template {
  /** (Nq, Nk, causal, window) it was made for. */
  readonly key: string;
  /** Canonical bounds of the 2·Nk template columns, 4 each. */
  readonly columns: Int32Array;
  /** First column of each run of identical columns, ascending from 0, then 2·Nk. */
  readonly runs: Int32Array;
}

/** A ragged KV cache's mask: batch entry b's key 0 is template column `offsets[b]`. */
export interface WindowedMask {
  readonly nq: number;
  readonly nk: number;
  readonly template: Template;
  readonly offsets: Int32Array;
}

const templates = new Map<string, Template>();
const templateColumns = new WeakSet<Int32Array>();

/**
 * Whether `columnBounds` of a schedule is a template that other schedules share (so worth keeping
 * on the GPU by itself), rather than one mask's own bounds.
 */
export function isTemplate(columnBounds: Int32Array): boolean {
  return templateColumns.has(columnBounds);
}

const schedules = new Map<string, Schedule>();
/** Templates and schedules kept (least recently used dropped): a few models' shapes. */
const KEPT = 8;

function remember<T>(map: Map<string, T>, key: string, make: () => T): T {
  let v = map.get(key);
  if (v === undefined) v = make();
  else map.delete(key);
  map.set(key, v);
  for (const old of map.keys()) {
    if (map.size <= KEPT) break;
    map.delete(old);
  }
  return v;
}

/**
 * The mask of `kvCache(kvLength, nq, nk, options)` as windows of its template. `kvLength` must
 * already be valid (integers in [0, Nk]); the window too.
 */
export function kvCacheWindows(
  kvLength: ArrayLike<number>,
  nq: number,
  nk: number,
  causal: boolean,
  windowSize: WindowSize | undefined,
): WindowedMask {
  const [left, right] = windowSize ?? [-1, -1];
  // a decoding step's layers ask for the same windows one after another: found without a key
  const l = lastWindows;
  if (
    l !== undefined && l.nq === nq && l.nk === nk && l.causal === causal && l.left === left &&
    l.right === right && l.windows.offsets.length === kvLength.length
  ) {
    let same = true;
    for (let b = 0; b < kvLength.length && same; b++) {
      same = l.windows.offsets[b] === nk - kvLength[b];
    }
    if (same) return l.windows;
  }
  const key = `${nq}:${nk}:${causal}:${left}:${right}`;
  // a decoding step's layers ask for the same template one after another
  const template = lastTemplate?.key === key
    ? lastTemplate
    : lastTemplate = remember(templates, key, () => {
      const width = 2 * nk, columns = new Int32Array(width * BOUNDS_PER_COLUMN);
      const starts = [0];
      for (let u = 0; u < width; u++) {
        const o = u * BOUNDS_PER_COLUMN;
        columns.set(kvCacheColumn(u - nk, nq, left, right, causal), o);
        if (
          u > 0 && (columns[o] !== columns[o - 4] || columns[o + 1] !== columns[o - 3] ||
            columns[o + 2] !== columns[o - 2] || columns[o + 3] !== columns[o - 1])
        ) starts.push(u);
      }
      starts.push(width);
      templateColumns.add(columns);
      return { key, columns, runs: Int32Array.from(starts) };
    });
  const offsets = new Int32Array(kvLength.length);
  for (let b = 0; b < offsets.length; b++) offsets[b] = nk - kvLength[b];
  const windows = { nq, nk, template, offsets };
  lastWindows = { nq, nk, causal, left, right, windows };
  return windows;
}

let lastTemplate: Template | undefined;
/** The windows made last, with what they were made of (the same object is returned again). */
let lastWindows:
  | {
    nq: number;
    nk: number;
    causal: boolean;
    left: number;
    right: number;
    windows: WindowedMask;
  }
  | undefined;

/** The schedule of a windowed mask for tiles of `br × bc`, cached by offsets and tile size. */
export function scheduleWindows(w: WindowedMask, br: number, bc: number): Schedule {
  const o = w.offsets, l = lastSchedule;
  // the layers of a decoding step: the schedule just made, found without a key
  if (
    l?.template === w.template && l.br === br && l.bc === bc && l.offsets.length === o.length &&
    l.offsets.every((x, i) => x === o[i])
  ) return l.schedule;
  const schedule = remember(
    schedules,
    `${w.template.key}:${br}:${bc}:${o}`,
    () => build(w, br, bc),
  );
  lastSchedule = { template: w.template, br, bc, offsets: o, schedule };
  return schedule;
}

let lastSchedule:
  | { template: Template; br: number; bc: number; offsets: Int32Array; schedule: Schedule }
  | undefined;

function build(w: WindowedMask, br: number, bc: number): Schedule {
  const { nq, nk, offsets } = w, { columns, runs } = w.template;
  const slices = offsets.length, tc = Math.ceil(nk / bc);
  const blockBounds = new Int32Array(slices * tc * 8);
  for (let s = 0; s < slices; s++) {
    // the run holding the slice's key 0, then runs forward as the blocks do
    let lo = 0, hi = runs.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (runs[mid] <= offsets[s]) lo = mid;
      else hi = mid;
    }
    let r = lo;
    for (let c = 0; c < tc; c++) {
      const a = offsets[s] + c * bc, e = offsets[s] + Math.min(nk, (c + 1) * bc);
      const o = (s * tc + c) * 8;
      for (let k = 0; k < 4; k++) {
        blockBounds[o + 2 * k] = 0x7fffffff;
        blockBounds[o + 2 * k + 1] = -1;
      }
      while (runs[r + 1] <= a) r++;
      for (let x = r; runs[x] < e; x++) {
        const b = runs[x] * BOUNDS_PER_COLUMN;
        for (let k = 0; k < 4; k++) {
          const v = columns[b + k];
          if (v < blockBounds[o + 2 * k]) blockBounds[o + 2 * k] = v;
          if (v > blockBounds[o + 2 * k + 1]) blockBounds[o + 2 * k + 1] = v;
        }
      }
    }
  }
  return tileSchedule({ nq, nk, br, bc, slices }, blockBounds, {
    bounds: () => allBounds(w),
    columnBounds: columns,
    sliceColumn: offsets,
  });
}

/** The canonical bounds of every (entry, key column): O(batch × Nk), made only when read. */
function allBounds(w: WindowedMask): Int32Array {
  const { nk, offsets } = w, columns = w.template.columns;
  const out = new Int32Array(offsets.length * nk * BOUNDS_PER_COLUMN);
  for (let s = 0; s < offsets.length; s++) {
    const from = offsets[s] * BOUNDS_PER_COLUMN;
    out.set(columns.subarray(from, from + nk * BOUNDS_PER_COLUMN), s * nk * BOUNDS_PER_COLUMN);
  }
  return out;
}

/**
 * The windows as a FlashMask of shape `[batch, 1, Nk, 4]`: non-causal, its four stored columns
 * the canonical bounds, made when first read (kernels read the schedule, not this).
 */
export function windowedFlashMask(w: WindowedMask): FlashMask {
  let data: Int32Array | undefined;
  return {
    shape: [w.offsets.length, 1, w.nk, 4],
    causal: false,
    get startEndRowIndices() {
      return data ??= allBounds(w);
    },
  };
}
