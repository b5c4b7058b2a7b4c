/**
 * A measured choice of the forward kernel's tiles for the device in use: for each storage type
 * and head-dimension width asked for, a few tile shapes (each fitted to the device's workgroup
 * memory) are compiled and timed on one problem, and the fastest becomes the device's forward
 * configuration for that type and width until the next tune. Opt-in: without it the defaults of
 * `forward.ts` apply, chosen on an H200; the same kernels do not rank alike on every GPU, nor on
 * every H200 lent (docs/BENCHMARKS.md), so a program that runs long can measure its own.
 *
 * @module
 */

import { checkKeys, describe } from "../_options.ts";
import { checkProblem } from "../_problem.ts";
import { MAX_HEAD_DIM } from "../types.ts";
import { storage, upload } from "./buffers.ts";
import { pipelineLayout } from "./binding.ts";
import { type GpuContext, pipeline } from "./device.ts";
import { requireGpu } from "./dispatch.ts";
import { forgetForwardKernels, forwardConfig, planForward, rescheduleForward } from "./forward.ts";
import { type ForwardConfig, forwardKey, forwardLayout, forwardWgsl } from "./forward_wgsl.ts";
import { sampleData, timeKernel } from "./timing.ts";
import { chooseTiles, type ForwardTiles, headDimWidth } from "./tuning.ts";

/** What {@linkcode tuneGpu} measures. */
export interface GpuTuneOptions {
  /** Storage types to tune (default: f32, and f16 where the device has shader-f16). */
  dtypes?: readonly ("f32" | "f16")[];
  /** Head dimensions to tune, one per width: 1–64, 65–128, 129–192, 193–256 (default 64, 128). */
  headDims?: readonly number[];
  /** Sequence length of the problem timed (default 2048; 128 on a software adapter). */
  seq?: number;
  /** Heads of the problem timed (default 8). */
  heads?: number;
}

/** One tile shape timed: `rm cn kc kv` and its median kernel time. */
export interface GpuTuneCandidate {
  /** The tiles, as `rm8 cn4 kc32 kv16` (rows and keys per invocation, ×16 per tile). */
  tiles: string;
  /** Median kernel time in ms. */
  ms: number;
}

/** The choice for one storage type and head-dimension width. */
export interface GpuTuneEntry {
  /** The storage type timed. */
  dtype: "f32" | "f16";
  /** The head dimension timed (the choice serves its whole width). */
  headDim: number;
  /** The tiles chosen (the fastest candidate). */
  tiles: string;
  /** Every candidate timed, in the order timed. */
  candidates: GpuTuneCandidate[];
}

/** What {@linkcode tuneGpu} measured and chose. */
export interface GpuTuneReport {
  /** The adapter's name. */
  adapter: string;
  /** How kernels were timed: timestamp queries, or wall time where the device has none. */
  timer: "timestamps" | "wall";
  /** One choice per storage type and head-dimension width, in the order measured. */
  entries: GpuTuneEntry[];
}

/**
 * The tile shapes tried for a width (`dn` = D / 16), as [rm, cn, kc, kv]: the default first, then
 * the shapes the H200 sweeps found close to it (docs/BENCHMARKS.md); on a software adapter, small
 * shapes only (its compiler takes minutes on large ones).
 */
export function tileCandidates(software: boolean, dn: number): ForwardTiles[] {
  const list = software
    ? [[4, 4, 8, 16], [4, 4, 16, 16], [4, 4, 8, 32]]
    : dn <= 4
    ? [[8, 8, 16, 32], [8, 4, 16, 32], [8, 8, 32, 16], [8, 8, 16, 16]]
    : dn === 8
    ? [[8, 4, 32, 16], [8, 4, 16, 32], [8, 4, 16, 16]]
    : [[4, 8, 16, 32], [4, 4, 16, 32], [4, 8, 8, 32]];
  return list.map(([rm, cn, kc, kv]) => ({ rm, cn, kc, kv }));
}

const tilesName = (c: ForwardTiles) => `rm${c.rm} cn${c.cn} kc${c.kc} kv${c.kv}`;

function checkTuneOptions(o: GpuTuneOptions): void {
  if (typeof o !== "object" || o === null) {
    throw new TypeError(`tuneGpu options must be an object, got ${describe(o)}`);
  }
  checkKeys(o, ["dtypes", "headDims", "seq", "heads"], "options");
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
 * Measures the forward kernel's tile shapes on the device in use and keeps the fastest for each
 * storage type and head-dimension width asked for: later forward calls (not the backward, and not
 * calls prepared before) of that type and width compile and use it. Each of 3–4 candidates a type
 * and width is compiled and timed on one problem (B=1, no mask; on lavapipe, the CPU rasteriser,
 * one type and width takes about 8 s); errors and the device's lack of shader-f16 for
 * `dtypes: ["f16"]` are reported before anything runs.
 *
 * @example Tune the device once, early in a long-running program
 * ```ts
 * import { gpuInfo, tuneGpu } from "../mod.ts";
 *
 * if (await gpuInfo()) {
 *   const report = await tuneGpu({ dtypes: ["f32"], headDims: [64], seq: 128, heads: 2 });
 *   console.log(report.entries.map((e) => `${e.dtype} d${e.headDim}: ${e.tiles}`));
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
  const dtypes = options.dtypes ?? (ctx.f16 ? ["f32", "f16"] : ["f32"]);
  const seq = options.seq ?? (ctx.software ? 128 : 2048), heads = options.heads ?? 8;
  // one head dimension per width: the first given
  const dims = new Map<number, number>();
  for (const d of options.headDims ?? [64, 128]) {
    if (!dims.has(headDimWidth(d))) dims.set(headDimWidth(d), d);
  }
  const entries: GpuTuneEntry[] = [];
  for (const dtype of [...new Set(dtypes)]) {
    for (const [dn, d] of dims) entries.push(await tuneOne(ctx, dtype, dn, d, seq, heads));
  }
  forgetForwardKernels(ctx);
  return { adapter: ctx.name, timer: ctx.timestamps ? "timestamps" : "wall", entries };
}

/** Times the candidates of one storage type and width; records and returns the choice. */
async function tuneOne(
  ctx: GpuContext,
  dtype: "f32" | "f16",
  dn: number,
  headDim: number,
  seq: number,
  heads: number,
): Promise<GpuTuneEntry> {
  const n = seq * heads * headDim, bytes = dtype === "f16" ? 2 : 4;
  const buf = {
    q: upload(ctx, sampleData(n, dtype, 1), "tune q"),
    k: upload(ctx, sampleData(n, dtype, 2), "tune k"),
    v: upload(ctx, sampleData(n, dtype, 3), "tune v"),
    out: storage(ctx, n * bytes, "tune out"),
    lse: storage(ctx, heads * seq * 4, "tune lse"),
  };
  try {
    const shape = [1, seq, heads, headDim] as const;
    const p = checkProblem({
      q: { buffer: buf.q, shape, dtype },
      k: { buffer: buf.k, shape, dtype },
      v: { buffer: buf.v, shape, dtype },
    }, {});
    // each candidate fitted to the device; shapes that fit to the same configuration timed once
    const configs = new Map<string, { cfg: ForwardConfig; code: string }>();
    for (const [i, t] of tileCandidates(ctx.software, dn).entries()) {
      const cfg = forwardConfig(ctx, headDim, dtype, {}, t);
      if (configs.has(forwardKey(cfg))) continue;
      try {
        configs.set(forwardKey(cfg), { cfg, code: forwardWgsl(cfg) });
      } catch (e) {
        // a shape fitted past what the kernel allows is left out (the default must compile)
        if (!(e instanceof RangeError && i > 0)) throw e;
      }
    }
    const timed: { cfg: ForwardConfig; ms: number }[] = [];
    for (const [key, { cfg, code }] of configs) {
      const pipe = await pipeline(ctx, key, () => code, pipelineLayout(ctx, forwardLayout(cfg)));
      const plan = planForward(ctx, p, buf, rescheduleForward({ cfg, pipe, dtype }, p));
      const ms = await timeKernel(ctx, (pass) => plan.encode(pass), 1, {
        warmMs: 50,
        passMs: 20,
      });
      timed.push({ cfg, ms });
    }
    const best = timed.reduce((a, b) => (b.ms < a.ms ? b : a));
    chooseTiles(ctx, dtype, dn, best.cfg);
    return {
      dtype,
      headDim,
      tiles: tilesName(best.cfg),
      candidates: timed.map((t) => ({ tiles: tilesName(t.cfg), ms: t.ms })),
    };
  } finally {
    for (const b of Object.values(buf)) b.destroy();
  }
}
