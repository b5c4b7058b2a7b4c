/**
 * The measurements of the bench CLI: timed forward / backward calls per mask type, the full
 * (dense) mask as the baseline, and the check against the float64 reference.
 *
 * Times are end to end, as a user calls the library: host arrays in, host arrays out (for a GPU
 * backend that includes upload and readback). Useful FLOPs count only visible elements:
 * `4·B·Hq·Nq·Nk·d·visibleFraction` forward and 2.5 times that backward.
 *
 * @module
 */

import { attention, attentionBackward, type DType, type Tensor, toFloat32 } from "../../mod.ts";
import {
  exampleMask,
  type FlashMask,
  type MaskName,
  type Schedule,
  schedule,
} from "../../masks/mod.ts";
import { referenceBackward, referenceForward } from "../../reference/attention.ts";
import { randomTensor, rng } from "../../reference/random.ts";
import { backendOptions } from "./_device.ts";

/** A problem shape (Nq = Nk = seq). */
export interface Shape {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  dim: number;
  dtype: DType;
}

/** One measured (backend, pass, shape, mask). */
export interface Result {
  backend: string;
  pass: "fwd" | "bwd";
  shape: Shape;
  mask: MaskName;
  /** Builder arguments of the mask (see `exampleMask`). */
  maskArgs: unknown;
  /** True for the full-mask run made only as the baseline (full was not asked for). */
  baselineOnly: boolean;
  visibleFraction: number;
  /** Fraction of tiles computed at `tile`. */
  density: number;
  tiles: { full: number; partial: number; skipped: number };
  tile: [number, number];
  /** Useful floating-point operations of one call. */
  flops: number;
  /** Every timed call, in milliseconds, in order. */
  timesMs: number[];
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** flops / median time. */
  flopsPerSecond: number;
  /** Median time of the full mask / median time of this mask (same backend, pass, shape). */
  speedupVsFull: number;
}

/** Errors of one backend on one mask against the float64 reference. */
export interface CheckResult {
  backend: string;
  pass: "fwd" | "bwd";
  mask: MaskName;
  shape: Shape;
  /** Largest |actual − reference| over the outputs (out, or dq, dk and dv). */
  maxAbsError: number;
  /** Largest ‖actual − reference‖ / ‖reference‖ over the outputs. */
  relError: number;
  /** The relative bound the library's tests use: 1e-5 for f32, 3e-3 for f16. */
  bound: number;
  ok: boolean;
  /** Set when the call threw or returned non-finite values where the reference is finite. */
  error?: string;
}

/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Useful FLOPs of one call: `4·B·Hq·N²·d·visible`, times 2.5 for the backward pass. */
export function usefulFlops(shape: Shape, visibleFraction: number, pass: "fwd" | "bwd"): number {
  const f = 4 * shape.batch * shape.heads * shape.seq * shape.seq * shape.dim * visibleFraction;
  return pass === "bwd" ? 2.5 * f : f;
}

/** Random inputs of a shape: q, k, v and dOut. */
export function makeInputs(shape: Shape, seed: number): {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  dOut: Tensor;
} {
  const r = rng(seed);
  const { batch, seq, heads, kvHeads, dim, dtype } = shape;
  return {
    q: randomTensor(r, [batch, seq, heads, dim], dtype),
    k: randomTensor(r, [batch, seq, kvHeads, dim], dtype),
    v: randomTensor(r, [batch, seq, kvHeads, dim], dtype),
    dOut: randomTensor(r, [batch, seq, heads, dim], dtype),
  };
}

/**
 * Forward (and, unless `passes` leaves it out, backward) calls before any bench, so that the
 * first measurement (the full-mask baseline) does not pay for JIT compilation that the later ones
 * get for free.
 */
export async function warmUp(
  backend: string,
  threads?: number,
  passes: readonly ("fwd" | "bwd")[] = ["fwd", "bwd"],
): Promise<void> {
  const shape: Shape = { batch: 1, seq: 128, heads: 2, kvHeads: 1, dim: 64, dtype: "f32" };
  const { q, k, v, dOut } = makeInputs(shape, 2);
  for (const m of ["full", "causal"] as const) {
    const options = { ...backendOptions(backend, threads), mask: exampleMask(m, shape.seq).mask };
    for (let i = 0; i < 3; i++) {
      const { out, lse } = await attention(q, k, v, options);
      if (passes.includes("bwd")) await attentionBackward({ q, k, v, out, lse, dOut }, options);
    }
  }
}

/** Milliseconds `fn` takes, awaited. */
export async function timeMs(fn: () => unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** What {@linkcode measure} reports while it runs. */
export type ProgressFn = (what: string) => void;

/** One measurement to make: a backend, pass, shape and mask types; full is always timed first. */
export interface MeasureSpec {
  backend: string;
  pass: "fwd" | "bwd";
  shape: Shape;
  masks: MaskName[];
  reps: number;
  warmup: number;
  tile: [number, number];
  threads?: number;
  seed: number;
}

/**
 * Times every mask of `spec` and the full mask (the baseline) on the same inputs: `warmup`
 * untimed calls each, then `reps` rounds of one timed call per mask.
 */
export async function measure(spec: MeasureSpec, progress: ProgressFn): Promise<Result[]> {
  const { shape, pass, backend, tile } = spec;
  const inputs = makeInputs(shape, spec.seed);
  const opts = backendOptions(backend, spec.threads);
  const order: MaskName[] = ["full", ...spec.masks.filter((m) => m !== "full")];
  const label = `${backend} ${pass} N=${shape.seq}`;
  const cases = [];
  for (const [idx, name] of order.entries()) {
    const ex = exampleMask(name, shape.seq, spec.seed);
    const plan = schedule(ex.mask, {
      nq: shape.seq,
      nk: shape.seq,
      blockRows: tile[0],
      blockCols: tile[1],
    });
    const options = { ...opts, mask: ex.mask };
    let call: () => Promise<unknown>;
    if (pass === "fwd") {
      call = () => attention(inputs.q, inputs.k, inputs.v, options);
    } else {
      const { out, lse } = await attention(inputs.q, inputs.k, inputs.v, options);
      const saved = { q: inputs.q, k: inputs.k, v: inputs.v, out, lse, dOut: inputs.dOut };
      call = () => attentionBackward(saved, options);
    }
    for (let w = 0; w < spec.warmup; w++) {
      progress(`${label} warm-up ${name} (${idx + 1}/${order.length})`);
      await call();
    }
    cases.push({ name, ex, plan, call, timesMs: [] as number[] });
  }
  // Rounds over all masks, so that a slow spell of a shared machine is spread over every mask
  // rather than landing on one (the full-mask baseline would skew every speed-up).
  for (let r = 0; r < spec.reps; r++) {
    for (const [idx, c] of cases.entries()) {
      progress(`${label} rep ${r + 1}/${spec.reps} ${c.name} (${idx + 1}/${cases.length})`);
      c.timesMs.push(await timeMs(c.call));
    }
  }
  const results: Result[] = [];
  let fullMs = NaN;
  for (const c of cases) {
    const r = resultOf({
      backend,
      pass,
      shape,
      mask: c.name,
      maskArgs: c.ex.args,
      baselineOnly: c.name === "full" && !spec.masks.includes("full"),
      plan: c.plan,
      tile,
      timesMs: c.timesMs,
      fullMs,
    });
    if (c.name === "full") {
      fullMs = r.medianMs;
      r.speedupVsFull = 1;
    }
    results.push(r);
  }
  return results;
}

/**
 * Builds a {@linkcode Result} from timed calls: `plan` is the mask's schedule at `tile`, `fullMs`
 * the full mask's median time (same backend, pass and shape).
 */
export function resultOf(
  o: Pick<Result, "backend" | "pass" | "shape" | "mask" | "maskArgs" | "baselineOnly" | "tile"> & {
    plan: Schedule;
    timesMs: number[];
    fullMs: number;
  },
): Result {
  const { plan, timesMs, fullMs, ...what } = o;
  const med = median(timesMs);
  const flops = usefulFlops(o.shape, plan.visibleFraction, o.pass);
  return {
    ...what,
    visibleFraction: plan.visibleFraction,
    density: plan.density,
    tiles: { ...plan.tiles },
    flops,
    timesMs,
    medianMs: med,
    minMs: Math.min(...timesMs),
    maxMs: Math.max(...timesMs),
    flopsPerSecond: flops / (med / 1e3),
    speedupVsFull: fullMs / med,
  };
}

/** The small shape `--check` uses: at most 100 tokens and 2 query heads, GQA kept. */
export function checkShape(shape: Shape): Shape {
  const heads = Math.min(shape.heads, 2);
  return {
    batch: 1,
    seq: Math.min(shape.seq, 100),
    heads,
    kvHeads: shape.kvHeads === shape.heads ? heads : 1,
    dim: shape.dim,
    dtype: shape.dtype,
  };
}

/**
 * Runs `backend` on the small check shape with mask `name` and compares the outputs (forward:
 * out; backward: dq, dk, dv) with the float64 reference.
 */
export async function checkMask(
  backend: string,
  pass: "fwd" | "bwd",
  name: MaskName,
  shape: Shape,
  seed: number,
  threads?: number,
): Promise<CheckResult> {
  const { q, k, v, dOut } = makeInputs(shape, seed + 1);
  const { mask } = exampleMask(name, shape.seq, seed);
  const bound = shape.dtype === "f16" ? 3e-3 : 1e-5;
  const base = { backend, pass, mask: name, shape, bound };
  try {
    const options = { ...backendOptions(backend, threads), mask };
    const fwd = await attention(q, k, v, options);
    let pairs: [Tensor, Float64Array][];
    if (pass === "fwd") {
      pairs = [[fwd.out, referenceForward(q, k, v, { mask }).out]];
    } else {
      const g = await attentionBackward({ q, k, v, out: fwd.out, lse: fwd.lse, dOut }, options);
      const ref = referenceBackward(q, k, v, dOut, { mask: mask as FlashMask });
      pairs = [[g.dq, ref.dq], [g.dk, ref.dk], [g.dv, ref.dv]];
    }
    let maxAbsError = 0, relError = 0;
    for (const [t, ref] of pairs) {
      const e = errors(toFloat32(t), ref);
      maxAbsError = Math.max(maxAbsError, e.maxAbs);
      relError = Math.max(relError, e.rel);
    }
    return { ...base, maxAbsError, relError, ok: relError <= bound };
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    return { ...base, maxAbsError: NaN, relError: NaN, ok: false, error };
  }
}

/** Max absolute and norm-wise relative error; non-finite values count as infinite error. */
export function errors(a: ArrayLike<number>, ref: ArrayLike<number>): {
  maxAbs: number;
  rel: number;
} {
  if (a.length !== ref.length) throw new RangeError(`length ${a.length} != ${ref.length}`);
  let maxAbs = 0, num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Object.is(a[i], ref[i]) ? 0 : Math.abs(a[i] - ref[i]);
    const e = Number.isNaN(d) ? Infinity : d;
    if (e > maxAbs) maxAbs = e;
    num += e * e;
    if (Number.isFinite(ref[i])) den += ref[i] * ref[i];
  }
  return { maxAbs, rel: den === 0 ? Math.sqrt(num) : Math.sqrt(num / den) };
}

/**
 * `[total, busy, steal]` jiffies of all CPUs from /proc/stat (zeros where it cannot be read):
 * busy is user + nice + system + irq + softirq.
 */
function cpuTimes(): number[] {
  try {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    const [user, nice, system, , , irq, softirq, steal] = f;
    return [f.slice(0, 8).reduce((a, b) => a + b, 0), user + nice + system + irq + softirq, steal];
  } catch {
    return [0, 0, 0];
  }
}

/**
 * A meter for benchmark logs: each call returns the load average and how the CPU time since the
 * previous call was spent (busy, and steal: time the hypervisor gave our vCPUs to other guests,
 * 0–50 % on the shared build machine), where /proc/stat can be read.
 *
 * @example
 * ```ts
 * import { cpuMeter } from "./_run.ts";
 * const load = cpuMeter();
 * console.log(`load average now: ${load()}`);
 * ```
 */
export function cpuMeter(): () => string {
  let since = cpuTimes();
  return () => {
    const now = cpuTimes(), d = now.map((x, i) => x - since[i]), total = d[0] || 1;
    since = now;
    const pct = (x: number) => `${Math.round((100 * x) / total)} %`;
    return `${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}` +
      (d[0] > 0 ? `; CPU time since the last line: busy ${pct(d[1])}, steal ${pct(d[2])}` : "");
  };
}
