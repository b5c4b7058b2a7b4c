/**
 * Command-line parsing of the bench CLI: flags, defaults and validation, kept apart from the
 * running so that it can be tested. Every bad input is a {@linkcode UsageError} (the CLI prints
 * its one-line message and the usage, and exits with code 2).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type DType, MAX_HEAD_DIM } from "../../mod.ts";
import { MASK_NAMES, type MaskName } from "../../masks/mod.ts";

/**
 * Concrete backends, in the order the bench lists and times them. Which one `auto` stands for is
 * the library's choice, found by probing (see `chooseBackends` in `_device.ts`). Names are data:
 * a backend that lands later is picked up by the availability probe.
 */
export const BACKENDS = ["webgpu", "wasm", "js"] as const;

/** Values of `--backend`: a concrete backend, `auto` (the library's choice) or `all`. */
export const BACKEND_CHOICES = ["auto", ...BACKENDS, "all"] as const;

/** Which passes to time. */
export type PassChoice = "fwd" | "bwd" | "both";

/** A benchmark run, fully resolved from the command line. */
export interface BenchConfig {
  /** `auto`, `all` or a concrete backend name. */
  backend: string;
  /** Mask types to time, in the order given. */
  masks: MaskName[];
  /** Sequence lengths (Nq = Nk); one table each. */
  seqs: number[];
  batch: number;
  /** Query heads Hq. */
  heads: number;
  /** Key/value heads Hk (a divisor of Hq). */
  kvHeads: number;
  /** Head dimension d. */
  dim: number;
  dtype: DType;
  pass: PassChoice;
  /** Timed repetitions per measurement; 0 times nothing (pictures or --check only). */
  reps: number;
  /** Untimed calls before the timed ones. */
  warmup: number;
  /** Compare every backend with the float64 reference on a small shape first. */
  check: boolean;
  /** Write a JSON report here. */
  json?: string;
  /** Print block pictures of the masks. */
  picture: boolean;
  /** Write one SVG per mask into this directory. */
  svg?: string;
  /** Tile size for density and pictures; default: the backend's own when known. */
  tile?: [number, number];
  /** Worker threads for backends that take a `threads` option (WASM). */
  threads?: number;
  /** Seed of the random inputs and of the mask parameters. */
  seed: number;
}

/** What the command line asks for. */
export type Command =
  | { kind: "help" }
  | { kind: "run"; config: BenchConfig }
  | { kind: "compare"; a: string; b: string };

/** A bad command line: the CLI prints the message and the usage and exits with code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Default problem size: small enough that the `js` backend finishes in well under a minute. */
export const DEFAULTS = {
  seq: 512,
  batch: 1,
  heads: 4,
  dim: 64,
  reps: 5,
  warmup: 1,
  seed: 1,
} as const;

/** The usage text printed by `--help` and after a usage error. */
export const USAGE =
  `usage: deno task bench [options]     (or: deno run -A bench/cli/cli.ts [options])

Times exact attention on the twelve FlashMask mask types and prints one table per backend,
pass and sequence length: visible fraction, tile density, time (median, min-max), useful
FLOP/s (4·B·Hq·N²·d·visible forward, ×2.5 backward) and the speed-up over the full mask.

options:
  --backend NAME     auto | ${BACKENDS.join(" | ")} | all   (default auto: whichever backend
                     the library's own "auto" runs here, named in the header; all: every
                     available one, unavailable ones listed; a pass a backend lacks is skipped)
  --masks A,B,...    mask types (default: all twelve): ${MASK_NAMES.join(", ")}
  --seq N[,N...]     sequence lengths Nq = Nk (default ${DEFAULTS.seq})
  --batch B          batch size (default ${DEFAULTS.batch})
  --heads H          query heads (default ${DEFAULTS.heads})
  --kv-heads H       key/value heads, a divisor of --heads (default: --heads; fewer is GQA)
  --dim D            head dimension, at most ${MAX_HEAD_DIM} (default ${DEFAULTS.dim})
  --dtype T          f32 | f16 (default f32)
  --pass P           fwd | bwd | both (default fwd)
  --reps R           timed repetitions (default ${DEFAULTS.reps}; 0: time nothing)
  --warmup W         untimed calls first (default ${DEFAULTS.warmup})
  --threads T        threads for backends that take them (wasm)
  --tile R[xC]       tile size for density and pictures (default: the backend's own tile)
  --seed S           seed of inputs and mask parameters (default ${DEFAULTS.seed})
  --check            compare each backend with the float64 reference on a small shape first
  --picture          print each mask as a picture: elements, and tiles █ full ▓ partial ░ skipped
  --svg DIR          write one SVG per mask and length into DIR (elements, tiles, legend)
  --json FILE        write every figure, the machine, versions and arguments to FILE
  --compare A B      print the ratios of two --json reports (B relative to A) and exit
  --help             this text

examples:
  deno task bench
  deno task bench --masks causal,document --seq 1024 --pass both --check
  deno task bench --backend all --seq 256,512,1024 --masks full,causal --json run.json
  deno task bench --picture --svg pictures --reps 0
  deno task bench --compare before.json after.json
Progress goes to stderr; stdout gets only the tables. Exit codes: 0 ok, 1 a --check failed
or the requested backend is not available, 2 bad arguments.`;

const FLAGS = {
  backend: { type: "string" },
  masks: { type: "string" },
  seq: { type: "string" },
  batch: { type: "string" },
  heads: { type: "string" },
  "kv-heads": { type: "string" },
  dim: { type: "string" },
  dtype: { type: "string" },
  pass: { type: "string" },
  reps: { type: "string" },
  warmup: { type: "string" },
  threads: { type: "string" },
  tile: { type: "string" },
  seed: { type: "string" },
  check: { type: "boolean" },
  picture: { type: "boolean" },
  svg: { type: "string" },
  json: { type: "string" },
  compare: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * Parses the command-line arguments of the bench CLI.
 *
 * @throws {UsageError} on an unknown flag, a missing or bad value, or a stray argument.
 * @example
 * ```ts
 * import { parseCli } from "./_args.ts";
 * import assert from "node:assert/strict";
 *
 * const cmd = parseCli(["--masks", "causal", "--seq", "128,256"]);
 * assert.equal(cmd.kind, "run");
 * if (cmd.kind === "run") assert.deepEqual(cmd.config.seqs, [128, 256]);
 * ```
 */
export function parseCli(args: string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({ args, options: FLAGS, strict: true, allowPositionals: true });
  } catch (e) {
    // node:util messages are long and mention "strict: false"; keep the first sentence.
    throw new UsageError(String((e as Error).message).split(/\.\s|\n/)[0].replace(/\.$/, ""));
  }
  const v = parsed.values;
  const pos = parsed.positionals;
  if (v.help) return { kind: "help" };
  if (v.compare !== undefined) {
    if (pos.length !== 1) {
      throw new UsageError("--compare needs two report files: --compare A.json B.json");
    }
    const others = Object.keys(v).filter((k) => k !== "compare");
    if (others.length > 0) {
      throw new UsageError(`--compare takes no other flags (got --${others[0]})`);
    }
    return { kind: "compare", a: v.compare, b: pos[0] };
  }
  if (pos.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(pos[0])}`);

  const backend = v.backend ?? "auto";
  if (!(BACKEND_CHOICES as readonly string[]).includes(backend)) {
    throw new UsageError(
      `--backend must be one of ${BACKEND_CHOICES.join(", ")}; got ${JSON.stringify(backend)}`,
    );
  }
  const masks = list(v.masks, "masks").map((m) => {
    if (!(MASK_NAMES as readonly string[]).includes(m)) {
      throw new UsageError(`--masks: unknown mask ${JSON.stringify(m)} (known: ${MASK_NAMES})`);
    }
    return m as MaskName;
  });
  if (new Set(masks).size !== masks.length) throw new UsageError("--masks lists a mask twice");
  const seqs = v.seq === undefined
    ? [DEFAULTS.seq]
    : list(v.seq, "seq").map((s) => int(s, "seq", 1));
  const heads = v.heads === undefined ? DEFAULTS.heads : int(v.heads, "heads", 1);
  const kvHeads = v["kv-heads"] === undefined ? heads : int(v["kv-heads"], "kv-heads", 1);
  if (heads % kvHeads !== 0) {
    throw new UsageError(`--kv-heads ${kvHeads} must divide --heads ${heads}`);
  }
  const dim = v.dim === undefined ? DEFAULTS.dim : int(v.dim, "dim", 1);
  if (dim > MAX_HEAD_DIM) throw new UsageError(`--dim must be at most ${MAX_HEAD_DIM}, got ${dim}`);
  const dtype = oneOf(v.dtype ?? "f32", "dtype", ["f32", "f16"]) as DType;
  const pass = oneOf(v.pass ?? "fwd", "pass", ["fwd", "bwd", "both"]) as PassChoice;
  let tile: [number, number] | undefined;
  if (v.tile !== undefined) {
    const m = /^(\d+)(?:x(\d+))?$/.exec(v.tile);
    if (!m) throw new UsageError(`--tile must be R or RxC (e.g. 64 or 64x32), got ${v.tile}`);
    tile = [int(m[1], "tile", 1), int(m[2] ?? m[1], "tile", 1)];
  }
  if (v.svg === "") throw new UsageError("--svg needs a directory");
  if (v.json === "") throw new UsageError("--json needs a file name");
  return {
    kind: "run",
    config: {
      backend,
      masks: masks.length > 0 ? masks : [...MASK_NAMES],
      seqs,
      batch: v.batch === undefined ? DEFAULTS.batch : int(v.batch, "batch", 1),
      heads,
      kvHeads,
      dim,
      dtype,
      pass,
      reps: v.reps === undefined ? DEFAULTS.reps : int(v.reps, "reps", 0),
      warmup: v.warmup === undefined ? DEFAULTS.warmup : int(v.warmup, "warmup", 0),
      check: v.check ?? false,
      json: v.json,
      picture: v.picture ?? false,
      svg: v.svg,
      tile,
      threads: v.threads === undefined ? undefined : int(v.threads, "threads", 1),
      seed: v.seed === undefined ? DEFAULTS.seed : int(v.seed, "seed", 0),
    },
  };
}

function list(s: string | undefined, flag: string): string[] {
  if (s === undefined) return [];
  const items = s.split(",").map((x) => x.trim());
  if (items.some((x) => x === "")) {
    throw new UsageError(`--${flag}: empty item in ${JSON.stringify(s)}`);
  }
  return items;
}

function int(s: string, flag: string, min: number): number {
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new UsageError(
      `--${flag} must be ${min === 0 ? "a non-negative" : "a positive"} integer, got ${
        JSON.stringify(s)
      }`,
    );
  }
  return n;
}

function oneOf(s: string, flag: string, choices: string[]): string {
  if (!choices.includes(s)) {
    throw new UsageError(
      `--${flag} must be one of ${choices.join(", ")}; got ${JSON.stringify(s)}`,
    );
  }
  return s;
}
