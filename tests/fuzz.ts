/**
 * The seeded property test (`deno task fuzz`): random attention problems — shapes including 1
 * and odd sizes and tile boundaries, GQA ratios, f32 and f16, random valid FlashMasks of all
 * four column layouts (causal and not, per batch and per head), the builders' masks, windows,
 * packed sequences, ragged KV caches, block masks, softcap, dropout, sinks, ALiBi, paged caches,
 * scales, large scores —
 * each checked on every available backend against the float64 reference, forward and
 * backward, with the suite's tolerances (`checkPrepared`, thorough: a second summation order and
 * the outputs' rounding-error magnitudes, see `prepareCase`). The WASM backend is also checked for
 * bit-identical results on two thread counts (on worker threads: `tuning.flopsPerThread` is
 * 0). Every backend implements every option, so an option error is a failure; only webgpu on a
 * software adapter skips the configurations that take it minutes to compile (counted).
 *
 * Every case is a function of its seed alone: a failure prints its seed, and
 * `deno task fuzz --seed S` replays exactly that case.
 *
 * ```sh
 * deno task fuzz --minutes 10            # random seeds for ten minutes
 * deno task fuzz --cases 200 --start 1   # seeds 1..200
 * deno task fuzz --seed 123456 --verbose # replay one case, printing it
 * ```
 *
 * Flags: `--minutes N`, `--cases N`, `--start S` (first seed; default random with --minutes,
 * 1 with --cases), `--seed S`, `--backends js,wasm,webgpu` (default: all available),
 * `--gpu-full` (on a software adapter, also the configurations whose kernels take tens of
 * seconds to compile there: head dims ≥ 64, f16 with softcap or dropout, the decoding
 * kernels), `--verbose`. Exit code 1 when a case fails, 2 for bad arguments.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type AttentionOptions,
  blockMask,
  type DType,
  type FlashMask,
  flashMask,
  stack,
} from "../mod.ts";
import { exampleMask, MASK_NAMES } from "../masks/mod.ts";
import { tuning } from "../wasm/backend.ts";
import { type Case, checkPrepared, prepareCase } from "./_cases.ts";
import { rng, testAdapter } from "./_util.ts";

/** A backend the fuzzer checks. */
export interface Target {
  name: "js" | "wasm" | "webgpu";
  /** Why this backend skips case `c` up front (undefined: it runs it). */
  skip(c: Case): string | undefined;
}

/** What happened to one case. */
export interface CaseResult {
  seed: number;
  description: string;
  /** Backends that checked it. */
  ran: string[];
  /** Backends that skipped it, with the reason. */
  skipped: [string, string][];
  /** Backends that failed it, with the error. */
  failed: [string, Error][];
  /** Outputs too ill-conditioned to compare (float32 itself misses them), per backend. */
  unchecked: [string, string][];
}

// ---------------------------------------------------------------------------------------------
// drawing cases

const BOUNDARIES = [15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 95, 96, 97, 127, 128, 129];

function pick<T>(rand: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rand() * xs.length)];
}

function int(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

function length(rand: () => number): number {
  const r = rand();
  if (r < 0.1) return 1;
  if (r < 0.45) return int(rand, 2, 24);
  if (r < 0.7) return pick(rand, BOUNDARIES);
  return int(rand, 25, 160);
}

function headDim(rand: () => number): number {
  const r = rand();
  if (r < 0.1) return 1;
  if (r < 0.25) return pick(rand, [8, 16, 32, 64]);
  if (r < 0.9) return int(rand, 2, 63);
  return pick(rand, [65, 96, 127, 128, 200, 256]);
}

/** A random valid FlashMask: random runs of the given layout, or some columns empty or full. */
function randomFlashMask(
  rand: () => number,
  nq: number,
  nk: number,
  slices: [number, number],
  layout: [causal: boolean, columns: 1 | 2 | 4],
): FlashMask {
  const [causal, c] = layout;
  const data = new Int32Array(slices[0] * slices[1] * nk * c);
  const row = () => int(rand, 0, nq);
  const run = (): [number, number] => {
    const r = rand();
    if (r < 0.1) return [0, nq]; // the whole column
    if (r < 0.2) return [nq, nq]; // nothing
    const [a, b] = [row(), row()];
    return a <= b ? [a, b] : [b, a];
  };
  for (let x = 0; x < data.length / c; x++) {
    const [a, b] = run(), [u, w] = run();
    if (c === 1) data[x] = a;
    else if (c === 2) data.set(causal ? [a, b] : [a, w], x * c);
    else data.set([a, b, u, w], x * c);
  }
  return flashMask(data, [slices[0], slices[1], nk, c], { causal, nq });
}

const LAYOUTS: [boolean, 1 | 2 | 4][] = [[true, 1], [true, 2], [false, 2], [false, 4]];

/** The case of a seed: every choice is drawn from the seed alone. */
export function drawCase(seed: number): Case {
  const rand = rng(seed);
  const dtype: DType = rand() < 0.3 ? "f16" : "f32";
  const batch = rand() < 0.6 ? 1 : int(rand, 2, 3);
  const kvHeads = int(rand, 1, 3), group = pick(rand, [1, 1, 2, 3, 4]);
  const heads = kvHeads * group;
  let nq = length(rand), nk = rand() < 0.4 ? nq : length(rand);
  let d = headDim(rand);
  // keep the float64 reference (O(B·Hq·Nq·Nk·d), ~10 passes) to a fraction of a second
  while (batch * heads * nq * nk * d > 3e5) {
    if (d > 8 && rand() < 0.3) d = Math.ceil(d / 2);
    else if (nq >= nk) nq = Math.ceil(nq / 2);
    else nk = Math.ceil(nk / 2);
  }
  const c: Case = { name: "", batch, nq, nk, heads, kvHeads, d, dtype, drawn: true };
  const parts = [`B${batch} Nq${nq} Nk${nk} H${heads}:${kvHeads} d${d} ${dtype}`];
  const r = rand();
  if (r < 0.15) {
    c.causal = rand() < 0.5;
    parts.push(c.causal ? "causal" : "no mask");
  } else if (r < 0.55) {
    const layout = LAYOUTS[Math.floor(rand() * 4)];
    const mb = rand() < 0.5 ? 1 : batch, mh = pick(rand, [1, kvHeads, heads]);
    c.mask = randomFlashMask(rand, nq, nk, [mb, mh], layout);
    parts.push(
      `random FlashMask ${layout[0] ? "causal" : "non-causal"} C${layout[1]} [${mb}, ${mh}]`,
    );
  } else if (r < 0.65 && nq === nk && nq >= 2) {
    const names = [pick(rand, MASK_NAMES), pick(rand, MASK_NAMES)];
    const per = rand() < 0.5 && batch === 2;
    const m = (i: number) => exampleMask(names[i], nq, int(rand, 1, 99)).mask;
    c.mask = per ? stack([[m(0)], [m(1)]]) : m(0);
    parts.push(per ? `${names[0]} / ${names[1]} per batch` : names[0]);
  } else if (r < 0.75) {
    c.windowSize = [rand() < 0.2 ? -1 : int(rand, 0, nk), rand() < 0.3 ? -1 : int(rand, 0, nk)];
    c.causal = rand() < 0.5;
    parts.push(`window [${c.windowSize}]${c.causal ? " causal" : ""}`);
  } else if (r < 0.85 && batch === 1 && nq === nk) {
    const cu = [0];
    while (cu[cu.length - 1] < nq) cu.push(Math.min(nq, cu[cu.length - 1] + int(rand, 1, 40)));
    c.cuSeqlens = cu;
    c.causal = rand() < 0.5;
    if (rand() < 0.3) c.windowSize = [int(rand, 0, 20), int(rand, 0, 20)];
    parts.push(`cuSeqlens [${cu}]${c.causal ? " causal" : ""}`);
  } else {
    c.kvLength = Array.from({ length: batch }, () => int(rand, 0, nk));
    c.causal = rand() < 0.5;
    if (rand() < 0.3) c.windowSize = [int(rand, 0, 30), -1];
    parts.push(`kvLength [${c.kvLength}]${c.causal ? " causal" : ""}`);
  }
  if (rand() < 0.12) {
    const [br, bc] = [pick(rand, [128, 256]), pick(rand, [128, 256])];
    const shape = [
      rand() < 0.5 ? 1 : batch,
      pick(rand, [1, kvHeads, heads]),
      Math.ceil(nq / br),
      Math.ceil(nk / bc),
    ];
    const n = shape[0] * shape[1] * shape[2] * shape[3];
    const data = Uint8Array.from({ length: n }, () => (rand() < 0.7 ? 1 : 0));
    c.blockMask = blockMask(data, shape, { blockRows: br, blockCols: bc });
    parts.push(`blockMask ${br}x${bc} [${shape}]`);
  }
  if (rand() < 0.2) {
    c.softcap = pick(rand, [0.5, 2, 10, 50]);
    parts.push(`softcap ${c.softcap}`);
  }
  if (rand() < 0.15) {
    c.dropout = { p: Math.floor(rand() * 90) / 100, seed: int(rand, 0, 2 ** 31) * 2 ** 20 };
    parts.push(`dropout ${c.dropout.p} seed ${c.dropout.seed}`);
  }
  if (rand() < 0.2) {
    c.scale = 0.05 + 2 * rand();
    parts.push(`scale ${c.scale.toFixed(3)}`);
  }
  const s = rand();
  if (s < 0.2) {
    // Large scores: the gradients get ill-conditioned (a plain float32 computation misses the
    // 1e-5 cap from σ ≈ 3 on), so these compare with float32's own error bound (uncapped).
    c.sigma = s < 0.15 ? 1.5 + 2.5 * rand() : 5 + 25 * rand();
    c.uncapped = true;
    parts.push(`sigma ${c.sigma.toFixed(2)} (uncapped)`);
  }
  // terms added later draw from their own generator, so that every earlier seed keeps its case
  const terms = rng(seed * 7919 + 17);
  if (terms() < 0.25) {
    c.sinks = Float32Array.from({ length: heads }, () => -3 + 7 * terms());
    parts.push(`sinks [${Array.from(c.sinks, (x) => x.toFixed(2))}]`);
  }
  if (terms() < 0.25) {
    const n = terms() < 0.5 ? heads : batch * heads;
    c.alibiSlopes = Float32Array.from({ length: n }, () => 2 ** (-8 * terms()));
    parts.push(`alibi [${Array.from(c.alibiSlopes, (x) => x.toFixed(3))}]`);
  }
  if (terms() < 0.25) {
    // a paged copy of the cache: pages of a divisor of Nk (1 included: a page per key)
    const divisors = Array.from({ length: nk }, (_, i) => i + 1).filter((x) => nk % x === 0);
    c.pageSize = divisors[Math.floor(terms() * divisors.length)];
    parts.push(`paged ${c.pageSize}`);
  }
  c.name = `fuzz seed ${seed}: ${parts.join(", ")}`;
  return c;
}

// ---------------------------------------------------------------------------------------------
// running cases

/**
 * Why a case is left out of a quick run on a software adapter, or undefined: each new kernel
 * configuration compiles for seconds to tens of seconds on a CPU rasteriser, so quick runs stay
 * with the head dims < 64 (one dynamic-head-dim pipeline set per dtype and option).
 */
export function softwareAdapterSkip(c: Case): string | undefined {
  return c.d >= 64
    ? "head dim >= 64 on a software adapter"
    : c.nq <= 16 && c.nk >= 512
    ? "decoding kernels on a software adapter"
    : c.dtype === "f16" && (c.softcap !== undefined || c.dropout !== undefined)
    ? "f16 with softcap or dropout on a software adapter"
    : undefined;
}

/** The backends to check: js and wasm always, webgpu when an adapter exists. */
export async function targets(
  options: { backends?: string[]; gpuFull?: boolean } = {},
): Promise<Target[]> {
  const want = options.backends ?? ["js", "wasm", "webgpu"];
  const out: Target[] = [];
  if (want.includes("js")) out.push({ name: "js", skip: () => undefined });
  if (want.includes("wasm")) out.push({ name: "wasm", skip: () => undefined });
  const info = want.includes("webgpu") ? await testAdapter() : undefined;
  if (info) {
    const slow = info.software && !options.gpuFull;
    out.push({
      name: "webgpu",
      skip: (c) => (slow ? softwareAdapterSkip(c) : undefined),
    });
  }
  return out;
}

/** Bits of a result, for the thread-count comparison. */
function bitsOf(r: Awaited<ReturnType<typeof checkPrepared>>): Uint32Array[] {
  const f = (x: Float32Array | Uint16Array) => new Uint32Array(Float32Array.from(x).buffer);
  return [r.out.data, r.lse, r.dq!.data, r.dk!.data, r.dv!.data].map(f);
}

/** Checks the case of `seed` on every target; never throws (failures are in the result). */
export async function runCase(seed: number, ts: Target[]): Promise<CaseResult> {
  const c = drawCase(seed);
  const res: CaseResult = {
    seed,
    description: c.name,
    ran: [],
    skipped: [],
    failed: [],
    unchecked: [],
  };
  let prepared;
  try {
    prepared = prepareCase(c, seed, { thorough: true });
  } catch (e) {
    res.failed.push(["reference", e as Error]);
    return res;
  }
  const rand = rng(seed ^ 0x5bd1e995);
  for (const t of ts) {
    const why = t.skip(c);
    if (why) {
      res.skipped.push([t.name, why]);
      continue;
    }
    const threads = int(rand, 1, 3);
    // the cases are small: without this the backend would run all of them on one thread, and
    // the thread-count comparison below would compare one thread with one thread
    tuning.flopsPerThread = 0;
    const options: AttentionOptions = t.name === "wasm"
      ? { backend: "wasm", threads }
      : { backend: t.name };
    const label = t.name === "wasm" ? `wasm (${threads} threads)` : t.name;
    try {
      const got = await checkPrepared(c, prepared, options);
      if (got.unchecked.length) res.unchecked.push([label, got.unchecked.join(", ")]);
      if (t.name === "wasm") {
        // the backend promises the same bits for any thread count
        const other = 1 + (threads % 3);
        const again = await checkPrepared(c, prepared, { backend: "wasm", threads: other });
        const [a, b] = [bitsOf(got), bitsOf(again)];
        ["out", "lse", "dq", "dk", "dv"].forEach((name, i) => {
          if (a[i].length !== b[i].length || a[i].some((x, j) => x !== b[i][j])) {
            throw new Error(`${name} differs between ${threads} and ${other} threads`);
          }
        });
      }
      res.ran.push(label);
    } catch (e) {
      res.failed.push([label, e as Error]);
    }
  }
  return res;
}

/** The report line of a failed case: its seed, what it is, the errors, how to replay it. */
export function failureReport(r: CaseResult): string {
  return [
    `FAIL seed ${r.seed}: ${r.description}`,
    ...r.failed.map(([b, e]) => `  ${b}: ${(e.message ?? String(e)).split("\n")[0]}`),
    `  replay: deno task fuzz --seed ${r.seed}`,
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// the CLI

const USAGE = `deno task fuzz [--minutes N | --cases N] [--start S] [--seed S]
                [--backends js,wasm,webgpu] [--gpu-full] [--verbose]`;

async function main(args: string[]): Promise<number> {
  let a;
  try {
    a = parseArgs({
      args,
      strict: true,
      options: {
        minutes: { type: "string" },
        cases: { type: "string" },
        start: { type: "string" },
        seed: { type: "string" },
        backends: { type: "string" },
        "gpu-full": { type: "boolean" },
        verbose: { type: "boolean" },
        help: { type: "boolean" },
      },
    }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (a.help) {
    console.log(USAGE);
    return 0;
  }
  const num = (s: string | undefined, name: string) => {
    const x = Number(s);
    if (s === undefined) return undefined;
    if (!Number.isFinite(x) || x < 0) throw new RangeError(`--${name} must be a number >= 0`);
    return x;
  };
  let minutes, cases, start, seed;
  try {
    [minutes, cases, start, seed] = [
      num(a.minutes, "minutes"),
      num(a.cases, "cases"),
      num(a.start, "start"),
      num(a.seed, "seed"),
    ];
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const ts = await targets({ backends: a.backends?.split(","), gpuFull: a["gpu-full"] });
  console.error(`backends: ${ts.map((t) => t.name).join(", ")}`);
  if (seed !== undefined) {
    const r = await runCase(seed >>> 0, ts);
    console.log(r.description);
    console.log(`ran: ${r.ran.join(", ") || "none"}`);
    for (const [b, why] of r.skipped) console.log(`skipped ${b}: ${why}`);
    for (const [b, o] of r.unchecked) console.log(`${b}: too ill-conditioned to compare: ${o}`);
    for (const [b, e] of r.failed) console.log(`FAILED ${b}:\n${a.verbose ? e.stack : e.message}`);
    return r.failed.length ? 1 : 0;
  }
  const deadline = minutes !== undefined ? Date.now() + minutes * 60_000 : Infinity;
  const count = cases ?? (minutes !== undefined ? Infinity : 100);
  const first =
    (start ?? (minutes !== undefined ? crypto.getRandomValues(new Uint32Array(1))[0] : 1)) >>> 0;
  console.error(
    `first seed ${first}; ${minutes !== undefined ? `${minutes} minutes` : `${count} cases`}`,
  );
  let n = 0, failed = 0, illPosed = 0;
  const skips = new Map<string, number>();
  const t0 = Date.now();
  for (let i = 0; i < count && Date.now() < deadline; i++) {
    const r = await runCase((first + i) >>> 0, ts);
    n++;
    for (const [b, why] of r.skipped) {
      skips.set(`${b}: ${why}`, (skips.get(`${b}: ${why}`) ?? 0) + 1);
    }
    if (r.unchecked.length) illPosed++;
    if (r.failed.length) {
      failed++;
      console.log(failureReport(r));
    } else if (a.verbose) console.log(`ok ${r.description} [${r.ran.join(", ")}]`);
    if (n % 50 === 0) {
      console.error(`${n} cases, ${failed} failed, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  }
  console.log(
    `${n} cases (seeds ${first}..${(first + n - 1) >>> 0}), ${failed} failed, ${
      ((Date.now() - t0) / 1000).toFixed(1)
    } s`,
  );
  for (const [why, k] of skips) console.log(`  skipped ${k}×: ${why}`);
  if (illPosed) {
    console.log(
      `  ${illPosed} cases had outputs too ill-conditioned to compare (not counted as checked)`,
    );
  }
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
