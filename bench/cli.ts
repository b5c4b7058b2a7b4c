/**
 * The bench and demo CLI: times attention on the twelve FlashMask mask types and prints a
 * table (visible fraction, tile density, time, useful GFLOP/s, speed-up over the dense mask).
 *
 * Run: `deno task bench` or `deno run -A bench/cli.ts --help`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  attention,
  type BackendName,
  exampleMask,
  MASK_NAMES,
  type MaskName,
  schedule,
  tensor,
} from "../mod.ts";

const USAGE = `usage: deno run -A bench/cli.ts [options]
  --backend auto|webgpu|wasm|js   implementation (default auto)
  --masks a,b,...                 mask types (default: all twelve)
  --seq N --batch B --heads H --dim D   problem size (default 512, 1, 4, 64)
  --reps R                        timed repetitions (default 3)
  --help                          this text
example: deno run -A bench/cli.ts --masks causal,document --seq 1024`;

function fail(msg: string): never {
  console.error(`error: ${msg}\n${USAGE}`);
  Deno.exit(2);
}

function int(v: string | undefined, def: number, name: string): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) fail(`--${name} must be a positive integer, got ${v}`);
  return n;
}

if (import.meta.main) {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      options: {
        backend: { type: "string" },
        masks: { type: "string" },
        seq: { type: "string" },
        batch: { type: "string" },
        heads: { type: "string" },
        dim: { type: "string" },
        reps: { type: "string" },
        help: { type: "boolean" },
      },
      strict: true,
    });
  } catch (e) {
    fail((e as Error).message);
  }
  const a = parsed.values;
  if (a.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const backend = (a.backend ?? "auto") as BackendName;
  if (!["auto", "webgpu", "wasm", "js"].includes(backend)) fail(`unknown backend ${backend}`);
  const masks = (a.masks ?? MASK_NAMES.join(",")).split(",") as MaskName[];
  for (const m of masks) if (!MASK_NAMES.includes(m)) fail(`unknown mask ${m}`);
  const n = int(a.seq, 512, "seq"), batch = int(a.batch, 1, "batch");
  const heads = int(a.heads, 4, "heads"), d = int(a.dim, 64, "dim"), reps = int(a.reps, 3, "reps");
  await run({ backend, masks, n, batch, heads, d, reps });
}

async function run(o: {
  backend: BackendName;
  masks: MaskName[];
  n: number;
  batch: number;
  heads: number;
  d: number;
  reps: number;
}) {
  const size = o.batch * o.n * o.heads * o.d;
  const rand = () =>
    tensor(Float32Array.from({ length: size }, () => Math.random() - 0.5), [
      o.batch,
      o.n,
      o.heads,
      o.d,
    ]);
  const [q, k, v] = [rand(), rand(), rand()];
  console.log(
    `backend ${o.backend}; B=${o.batch} N=${o.n} H=${o.heads} d=${o.d}; median of ${o.reps}`,
  );
  console.log("mask                 visible  density   time ms   GFLOP/s  vs full");
  let fullMs = NaN;
  for (const name of ["full" as MaskName, ...o.masks.filter((m) => m !== "full")]) {
    const { mask } = exampleMask(name, o.n);
    const plan = schedule(mask, { nq: o.n, nk: o.n, blockRows: 32, blockCols: 32 });
    await attention(q, k, v, { mask, backend: o.backend }); // warm-up
    const times: number[] = [];
    for (let r = 0; r < o.reps; r++) {
      const t0 = performance.now();
      await attention(q, k, v, { mask, backend: o.backend });
      times.push(performance.now() - t0);
    }
    const ms = times.sort((x, y) => x - y)[Math.floor(times.length / 2)];
    if (name === "full") fullMs = ms;
    if (name === "full" && !o.masks.includes("full")) continue;
    const flops = 4 * o.batch * o.heads * o.n * o.n * o.d * plan.visibleFraction;
    console.log(
      `${name.padEnd(20)} ${plan.visibleFraction.toFixed(3).padStart(7)}  ${
        plan.density.toFixed(3).padStart(7)
      }  ${ms.toFixed(1).padStart(8)}  ${(flops / ms / 1e6).toFixed(2).padStart(8)}  ${
        (fullMs / ms).toFixed(2).padStart(6)
      }x`,
    );
  }
}
