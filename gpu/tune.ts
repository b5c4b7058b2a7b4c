/**
 * Measured choices for the device in use: the forward and backward kernels' tiles, and the
 * split-KV decoding kernel's first phase and loads in flight. For each pass, storage type and head-dimension width
 * asked for, a few candidates (fitted to the device's limits) are compiled and timed on one
 * problem, and the fastest becomes the device's configuration for that pass, type and width until
 * the next tune. Opt-in: without it the defaults apply (`forward.ts`, `backward.ts`, `decode.ts`), chosen on an
 * H200; the same kernels do not rank alike on every GPU, nor on every H200 lent
 * (docs/BENCHMARKS.md), so a program that runs long can measure its own.
 *
 * @module
 */

import { checkKeys, describe } from "../_options.ts";
import { checkProblem } from "../_problem.ts";
import type { Problem } from "../types.ts";
import { MAX_HEAD_DIM } from "../types.ts";
import { storage, upload } from "./buffers.ts";
import { pipelineLayout } from "./binding.ts";
import {
  type BackwardBuffers,
  backwardConfig,
  backwardShapes,
  compileBackward,
  planBackward,
} from "./backward.ts";
import { backwardKey } from "./backward_wgsl.ts";
import {
  compileDecode,
  coopAllowed,
  decodeBuffers,
  decodeWidth,
  defaultPhases,
  forgetDecodeKernels,
  lanesAllowed,
  planDecode,
  sizeDecode,
} from "./decode.ts";
import { decodeKey } from "./decode_wgsl.ts";
import { type GpuContext, pipeline } from "./device.ts";
import { type KernelPlan, requireGpu } from "./dispatch.ts";
import {
  forgetForwardKernels,
  forwardConfig,
  forwardShapes,
  planForward,
  rescheduleForward,
} from "./forward.ts";
import { type ForwardConfig, forwardKey, forwardLayout, forwardWgsl } from "./forward_wgsl.ts";
import { sampleData, timeKernel } from "./timing.ts";
import {
  type BackwardTiles,
  chooseBackward,
  chooseDecode,
  chooseTiles,
  type DecodePhases,
  type ForwardTiles,
  headDimWidth,
} from "./tuning.ts";

/** The passes {@linkcode tuneGpu} can measure. */
export type GpuTunePass = "forward" | "backward" | "decode";

/** What {@linkcode tuneGpu} measures. */
export interface GpuTuneOptions {
  /** Passes to tune (default all): the forward tiles, the backward tiles, the decoding phases. */
  passes?: readonly GpuTunePass[];
  /** Storage types to tune (default: f32, and f16 where the device has shader-f16). */
  dtypes?: readonly ("f32" | "f16")[];
  /** Head dimensions to tune, one per width (default 64, 128). */
  headDims?: readonly number[];
  /**
   * Sequence length of the forward problem timed (default 2048; 128 on a software adapter); the
   * decoding problem has 16 times as many keys, so pass a sixteenth of the cache length decoded
   * against: the decoding candidates rank by it (H200: docs/BENCHMARKS.md).
   */
  seq?: number;
  /**
   * Heads of the problems timed (default 8): the forward's query and key heads, the decoding
   * problem's key heads, with four query heads each (grouped-query attention, one token).
   */
  heads?: number;
  /**
   * An earlier report (as `JSON.parse` gives it back): where it was made on an adapter of this
   * name, each pass, storage type and width it chose for, among those asked for, takes that choice
   * again without timing, if it is still one of the candidates (the entry comes back with
   * `reused: true` and the earlier times); the others are measured.
   */
  reuse?: GpuTuneReport;
}

/** One candidate timed and its median kernel time. */
export interface GpuTuneCandidate {
  /**
   * The candidate: `rm8 cn4 kc16 kv32 read ahead` (forward tiles, loads reading the next chunk
   * during the product), `rm4 cn4 rn8 cm4 kc16 kv16` (backward), `coop loads 2:8` (decoding).
   */
  choice: string;
  /** Median kernel time in ms. */
  ms: number;
}

/** The choice for one pass, storage type and head-dimension width. */
export interface GpuTuneEntry {
  /** The pass tuned. */
  pass: GpuTunePass;
  /** The storage type timed. */
  dtype: "f32" | "f16";
  /** The head dimension timed (the choice serves its whole width). */
  headDim: number;
  /**
   * The candidate chosen: the fastest if it beats the default (the first timed) by more than
   * 2 % (`TUNE_MARGIN`), else the default.
   */
  choice: string;
  /** Every candidate timed, in the order timed (reused: the earlier report's). */
  candidates: GpuTuneCandidate[];
  /** Taken from `options.reuse` without timing. */
  reused?: boolean;
}

/** What {@linkcode tuneGpu} measured and chose. */
export interface GpuTuneReport {
  /** The adapter's name. */
  adapter: string;
  /** How kernels were timed: timestamp queries, or wall time where the device has none. */
  timer: "timestamps" | "wall";
  /** One choice per pass, storage type and width, in the order measured. */
  entries: GpuTuneEntry[];
}

/**
 * The decoding phases tried for a storage type and width (`cw` = D / 4): the default first, then
 * both first phases with the loads the H200 sweeps found close, and lane groups (docs/BENCHMARKS.md).
 */
export function phaseCandidates(dtype: "f32" | "f16", cw: number): DecodePhases[] {
  const first = defaultPhases(dtype, cw);
  const rest: DecodePhases[] = [];
  for (const coop of [false, true]) {
    for (const loads of [[2, 4], [2, 8], [1, 4]] as const) rest.push({ coop, loads, lanes: false });
  }
  rest.push({ coop: false, loads: [2, 8], lanes: true });
  const same = (a: DecodePhases, b: DecodePhases) =>
    a.coop === b.coop && a.loads[0] === b.loads[0] && a.loads[1] === b.loads[1] &&
    !a.lanes === !b.lanes;
  return [first, ...rest.filter((r) => !same(r, first))];
}

/**
 * How much faster than the default (the first candidate) another must be to replace it: kernels
 * that run alike differ by timing noise, and the tune's problem is smaller than most callers'.
 */
export const TUNE_MARGIN = 0.02;

const ahead = (c: { prefetch?: boolean }) => c.prefetch ? " read ahead" : "";
const tilesName = (c: ForwardTiles) =>
  `rm${c.rm} cn${c.cn} kc${c.kc} kv${c.kv}${c.double ? " double" : ""}${ahead(c)}`;
const backwardName = (c: BackwardTiles & { split?: boolean }) =>
  `rm${c.rm} cn${c.cn} rn${c.rn} cm${c.cm} kc${c.kc} kv${c.kv}${c.split ? " split" : ""}${
    ahead(c)
  }${c.prefetch && c.nextTile ? " next tile" : ""}`;

/** The default (the first of `list`) with plain loads, not read ahead. */
const plainLoads = <T extends { prefetch?: boolean }>(list: T[]): T[] => [
  ...list,
  { ...list[0], prefetch: false },
];
const phasesName = (c: DecodePhases) =>
  `${c.lanes ? "lanes " : ""}${c.coop ? "coop " : ""}loads ${c.loads.join(":")}`;

/** The width of a head dimension for a pass: `dn` = D / 16 (forward), `cw` = D / 4 (decoding). */
function widthOf(pass: GpuTunePass, headDim: number): number {
  return pass === "decode" ? decodeWidth(headDim) : headDimWidth(headDim);
}

function checkTuneOptions(o: GpuTuneOptions): void {
  if (typeof o !== "object" || o === null) {
    throw new TypeError(`tuneGpu options must be an object, got ${describe(o)}`);
  }
  checkKeys(o, ["passes", "dtypes", "headDims", "seq", "heads", "reuse"], "options");
  if (o.reuse !== undefined) checkReport(o.reuse);
  const list = (name: string, v: unknown, ok: (x: unknown) => boolean, what: string) => {
    if (v === undefined) return;
    if (!Array.isArray(v) || v.length === 0) {
      throw new TypeError(`options.${name} must be a non-empty array, got ${describe(v)}`);
    }
    v.forEach((x, i) => {
      if (!ok(x)) {
        throw new (typeof x === "number" ? RangeError : TypeError)(
          `options.${name}[${i}] must be ${what}, got ${describe(x)}`,
        );
      }
    });
  };
  list(
    "passes",
    o.passes,
    (x) => x === "forward" || x === "backward" || x === "decode",
    `"forward", "backward" or "decode"`,
  );
  list("dtypes", o.dtypes, (x) => x === "f32" || x === "f16", `"f32" or "f16"`);
  list(
    "headDims",
    o.headDims,
    (x) => Number.isInteger(x) && (x as number) >= 1 && (x as number) <= MAX_HEAD_DIM,
    `an integer from 1 to ${MAX_HEAD_DIM}`,
  );
  for (const [name, v, min] of [["seq", o.seq, 16], ["heads", o.heads, 1]] as const) {
    if (v !== undefined && !(Number.isInteger(v) && v >= min && v <= 65536)) {
      throw new (typeof v === "number" ? RangeError : TypeError)(
        `options.${name} must be an integer from ${min} to 65536, got ${describe(v)}`,
      );
    }
  }
}

/**
 * Measures the forward and backward kernels' tile shapes (and their default shape's loads read
 * ahead or not) and the decoding kernel's phases on the device in use and keeps the fastest for
 * each pass, storage type and head-dimension width asked for (the default unless another beats
 * it by more than 2 %): later calls of that pass, type and width compile and use it (not calls
 * prepared before). Each of 2–7 candidates a pass, type and width is compiled and timed on one
 * problem (B=1, no mask; on lavapipe, the CPU rasteriser, one type and width of the three passes
 * took 24 s on 2 vCPUs); errors and the device's lack of shader-f16 for `dtypes: ["f16"]` are
 * reported before anything runs.
 *
 * @example Tune the device once, early in a long-running program
 * ```ts
 * import { gpuInfo, tuneGpu } from "../mod.ts";
 *
 * if (await gpuInfo()) {
 *   const report = await tuneGpu({ dtypes: ["f32"], headDims: [64], seq: 128, heads: 4 });
 *   console.log(report.entries.map((e) => `${e.pass} ${e.dtype} d${e.headDim}: ${e.choice}`));
 * }
 * ```
 */
export async function tuneGpu(options: GpuTuneOptions = {}): Promise<GpuTuneReport> {
  checkTuneOptions(options);
  const ctx = await requireGpu();
  if (options.dtypes?.includes("f16") && !ctx.f16) {
    throw new TypeError(
      `options.dtypes: f16 needs the device feature shader-f16, which ${ctx.name} lacks`,
    );
  }
  const dtypes: ("f32" | "f16")[] = [
    ...new Set(options.dtypes ?? (ctx.f16 ? ["f32", "f16"] as const : ["f32"] as const)),
  ];
  const seq = options.seq ?? (ctx.software ? 128 : 2048), heads = options.heads ?? 8;
  const entries: GpuTuneEntry[] = [];
  try {
    for (const pass of [...new Set(options.passes ?? ["forward", "backward", "decode"] as const)]) {
      // one head dimension per width: the first given
      const dims = new Map<number, number>();
      for (const d of options.headDims ?? [64, 128]) {
        if (!dims.has(widthOf(pass, d))) dims.set(widthOf(pass, d), d);
      }
      for (const dtype of dtypes) {
        for (const [w, d] of dims) {
          entries.push(
            reused(ctx, options.reuse, pass, dtype, w) ??
              await tuneOne(ctx, pass, dtype, w, d, { seq, heads }),
          );
        }
      }
    }
  } finally {
    forgetForwardKernels(ctx);
    forgetDecodeKernels(ctx);
  }
  return { adapter: ctx.name, timer: ctx.timestamps ? "timestamps" : "wall", entries };
}

/** A compiled candidate: its name, its plan on the problem timed, and how to record the choice. */
interface Trial extends Choice {
  plan: KernelPlan;
}

/** Times the candidates of one pass, storage type and width; records and returns the choice. */
async function tuneOne(
  ctx: GpuContext,
  pass: GpuTunePass,
  dtype: "f32" | "f16",
  width: number,
  headDim: number,
  size: { seq: number; heads: number },
): Promise<GpuTuneEntry> {
  const decode = pass === "decode";
  const nq = decode ? 1 : size.seq, nk = decode ? 16 * size.seq : size.seq;
  const hk = size.heads, hq = decode ? 4 * hk : hk;
  const bytes = dtype === "f16" ? 2 : 4;
  const qn = nq * hq * headDim, kn = nk * hk * headDim;
  const buf = {
    q: upload(ctx, sampleData(qn, dtype, 1), "tune q"),
    k: upload(ctx, sampleData(kn, dtype, 2), "tune k"),
    v: upload(ctx, sampleData(kn, dtype, 3), "tune v"),
    out: storage(ctx, qn * bytes, "tune out"),
    lse: storage(ctx, hq * nq * 4, "tune lse"),
  };
  // the backward's gradients and scratch (its inputs out and lse as left by no forward: zeros)
  const grads = pass === "backward"
    ? {
      dOut: upload(ctx, sampleData(qn, dtype, 4), "tune dOut"),
      stats: storage(ctx, hq * nq * 8, "tune stats"),
      dq: storage(ctx, qn * bytes, "tune dq"),
      dk: storage(ctx, kn * bytes, "tune dk"),
      dv: storage(ctx, kn * bytes, "tune dv"),
    }
    : undefined;
  try {
    const p = checkProblem({
      q: { buffer: buf.q, shape: [1, nq, hq, headDim], dtype },
      k: { buffer: buf.k, shape: [1, nk, hk, headDim], dtype },
      v: { buffer: buf.v, shape: [1, nk, hk, headDim], dtype },
    }, {});
    const trials = decode
      ? await decodeTrials(ctx, p, dtype, width, buf)
      : grads
      ? await backwardTrials(ctx, p, dtype, width, headDim, { ...buf, ...grads })
      : await forwardTrials(ctx, p, dtype, width, headDim, buf);
    const timed: { trial: Trial; ms: number }[] = [];
    for (const trial of trials) {
      const ms = await timeKernel(ctx, (pass) => trial.plan.encode(pass), 1, {
        warmMs: 50,
        passMs: 20,
      });
      timed.push({ trial, ms });
    }
    const fastest = timed.reduce((a, b) => (b.ms < a.ms ? b : a));
    const best = fastest.ms < timed[0].ms * (1 - TUNE_MARGIN) ? fastest : timed[0];
    best.trial.keep();
    return {
      pass,
      dtype,
      headDim,
      choice: best.trial.choice,
      candidates: timed.map((t) => ({ choice: t.trial.choice, ms: t.ms })),
    };
  } finally {
    for (const b of [...Object.values(buf), ...Object.values(grads ?? {})]) b.destroy();
  }
}

type TuneBuffers = Record<"q" | "k" | "v" | "out" | "lse", GPUBuffer>;

/** The forward candidates, each fitted to the device; shapes that fit alike compiled once. */
async function forwardTrials(
  ctx: GpuContext,
  p: Problem,
  dtype: "f32" | "f16",
  dn: number,
  headDim: number,
  buf: TuneBuffers,
): Promise<Trial[]> {
  const configs = new Map<string, { choice: ForwardChoice; code: string }>();
  for (const [i, choice] of forwardChoices(ctx, dtype, dn, headDim).entries()) {
    const key = forwardKey(choice.cfg);
    if (configs.has(key)) continue;
    try {
      configs.set(key, { choice, code: forwardWgsl(choice.cfg) });
    } catch (e) {
      // a shape fitted past what the kernel allows is left out (the default must compile)
      if (!(e instanceof RangeError && i > 0)) throw e;
    }
  }
  const trials: Trial[] = [];
  for (const [key, { choice, code }] of configs) {
    const cfg = choice.cfg;
    const pipe = await pipeline(ctx, key, () => code, pipelineLayout(ctx, forwardLayout(cfg)));
    trials.push({
      ...choice,
      plan: planForward(ctx, p, buf, rescheduleForward({ cfg, pipe, dtype }, p)),
    });
  }
  return trials;
}

/** The backward candidates, each fitted to the device; configurations alike compiled once. */
async function backwardTrials(
  ctx: GpuContext,
  p: Problem,
  dtype: "f32" | "f16",
  dn: number,
  headDim: number,
  buf: BackwardBuffers,
): Promise<Trial[]> {
  return await distinctTrials(backwardChoices(ctx, dtype, dn, headDim), (c) => ({
    key: backwardKey("dq", c.cfg),
    trial: async () => ({
      ...c,
      plan: planBackward(ctx, p, buf, await compileBackward(ctx, p, c.cfg)),
    }),
  }));
}

/** A candidate named as a tune names it, and how to record it as the choice (nothing compiled). */
interface Choice {
  choice: string;
  keep(): void;
}

/** A forward candidate: its configuration as fitted to the device, named and recordable. */
type ForwardChoice = Choice & { cfg: ForwardConfig };

/** The forward candidates of a width, each fitted to the device. */
function forwardChoices(
  ctx: GpuContext,
  dtype: "f32" | "f16",
  dn: number,
  headDim: number,
): ForwardChoice[] {
  return plainLoads(forwardShapes(ctx.software, dn)).map((t) => {
    const cfg = forwardConfig(ctx, headDim, dtype, {}, t);
    return { cfg, choice: tilesName(cfg), keep: () => chooseTiles(ctx, dtype, dn, cfg) };
  });
}

/** The backward candidates of a width, each fitted to the device. */
function backwardChoices(ctx: GpuContext, dtype: "f32" | "f16", dn: number, headDim: number) {
  return plainLoads(backwardShapes(ctx.software, dn, dtype)).map((t) => {
    const cfg = backwardConfig(ctx, headDim, dtype, {}, t);
    return { cfg, choice: backwardName(cfg), keep: () => chooseBackward(ctx, dtype, dn, cfg) };
  });
}

/**
 * The decoding candidates of a width as the device takes them on the tune's problem (four query
 * rows: one token, four query heads a key head).
 */
function decodeChoices(ctx: GpuContext, dtype: "f32" | "f16", cw: number, headDim: number) {
  return phaseCandidates(dtype, cw).map((ph) => {
    const phases = {
      coop: ph.coop && coopAllowed(ctx, 4, headDim),
      loads: ph.loads,
      lanes: ph.lanes === true && lanesAllowed(ctx),
    };
    return { phases, choice: phasesName(phases), keep: () => chooseDecode(ctx, dtype, cw, phases) };
  });
}

/**
 * The entry of `report` for a pass, storage type and width, taken again (recorded as the choice)
 * if it was made on this adapter and its choice is still a candidate at the head dimension it
 * was timed at; else undefined.
 */
function reused(
  ctx: GpuContext,
  report: GpuTuneReport | undefined,
  pass: GpuTunePass,
  dtype: "f32" | "f16",
  width: number,
): GpuTuneEntry | undefined {
  if (report?.adapter !== ctx.name) return undefined;
  const e = report.entries.find((e) =>
    e.pass === pass && e.dtype === dtype && widthOf(pass, e.headDim) === width
  );
  if (!e) return undefined;
  const headDim = e.headDim;
  const choices: Choice[] = pass === "forward"
    ? forwardChoices(ctx, dtype, width, headDim)
    : pass === "backward"
    ? backwardChoices(ctx, dtype, width, headDim)
    : decodeChoices(ctx, dtype, width, headDim);
  const c = choices.find((c) => c.choice === e.choice);
  if (!c) return undefined;
  c.keep();
  const candidates = e.candidates.map(({ choice, ms }) => ({ choice, ms }));
  return { pass, dtype, headDim, choice: e.choice, candidates, reused: true };
}

/** Checks `options.reuse` is a report: names the first field that is not. */
function checkReport(r: unknown): void {
  const at = "options.reuse";
  const fail = (where: string, what: string, v: unknown) => {
    throw new TypeError(`${at}${where} must be ${what}, got ${describe(v)}`);
  };
  if (typeof r !== "object" || r === null) fail("", "a tuneGpu report", r);
  const o = r as Record<string, unknown>;
  if (typeof o.adapter !== "string") fail(".adapter", "a string", o.adapter);
  if (!Array.isArray(o.entries)) fail(".entries", "an array", o.entries);
  (o.entries as unknown[]).forEach((e, i) => {
    const w = `.entries[${i}]`;
    if (typeof e !== "object" || e === null) fail(w, "an object", e);
    const x = e as Record<string, unknown>;
    if (!["forward", "backward", "decode"].includes(x.pass as string)) {
      fail(`${w}.pass`, `"forward", "backward" or "decode"`, x.pass);
    }
    if (x.dtype !== "f32" && x.dtype !== "f16") fail(`${w}.dtype`, `"f32" or "f16"`, x.dtype);
    const d = x.headDim;
    if (!(Number.isInteger(d) && (d as number) >= 1 && (d as number) <= MAX_HEAD_DIM)) {
      fail(`${w}.headDim`, `an integer from 1 to ${MAX_HEAD_DIM}`, d);
    }
    if (typeof x.choice !== "string") fail(`${w}.choice`, "a string", x.choice);
    if (!Array.isArray(x.candidates)) fail(`${w}.candidates`, "an array", x.candidates);
    (x.candidates as unknown[]).forEach((c, j) => {
      const y = c as Record<string, unknown> | null;
      if (typeof y?.choice !== "string" || typeof y.ms !== "number") {
        fail(`${w}.candidates[${j}]`, "{ choice: string, ms: number }", c);
      }
    });
  });
}

/** A candidate's configuration key, and how to make its trial (only if the key is new). */
type Distinct = { key: string; trial: () => Promise<Trial> };

/**
 * One trial per distinct configuration of `candidates`: those fitted alike to the device (or
 * refused a part by it) are timed once, as the first.
 */
async function distinctTrials<C>(
  candidates: C[],
  make: (c: C) => Distinct | Promise<Distinct>,
): Promise<Trial[]> {
  const trials: Trial[] = [];
  const seen = new Set<string>();
  for (const c of candidates) {
    const { key, trial } = await make(c);
    if (seen.has(key)) continue;
    seen.add(key);
    trials.push(await trial());
  }
  return trials;
}

/** The decoding candidates, as the device allows them; configurations alike compiled once. */
async function decodeTrials(
  ctx: GpuContext,
  p: Problem,
  dtype: "f32" | "f16",
  cw: number,
  buf: TuneBuffers,
): Promise<Trial[]> {
  return await distinctTrials(decodeChoices(ctx, dtype, cw, p.headDim), async (choice) => {
    // (where the device refuses the cooperative first phase, its candidates compile alike)
    const c = await compileDecode(ctx, p, dtype, choice.phases);
    return {
      key: decodeKey("decode", c.cfg),
      trial: () => {
        const kern = sizeDecode(c, p, dtype);
        return Promise.resolve({
          ...choice,
          plan: planDecode(ctx, p, { ...buf, ...decodeBuffers(ctx, p, kern) }, kern),
        });
      },
    };
  });
}
