/**
 * Kernel times of several trees of the library in one run, alternated: each round runs every
 * tree's `bench/gpu/gpu_bench.ts` with the same arguments, in order, each in its own process
 * (the way the A/B figures in docs/BENCHMARKS.md were measured), then prints one table: per
 * timed kernel, each tree's median over the rounds and its time over the first tree's. Rows
 * pair up by position (the same arguments give the same rows), so a tree may label its kernel
 * differently (a new flag in the configuration).
 *
 * A tree is a directory that holds `bench/gpu/gpu_bench.ts`: `.` for this one, or a copy of a
 * revision, patched as wanted, under the ignored `.ab/` (which travels to the accelerator
 * machine when carried):
 *
 *   mkdir -p .ab/old && git archive HEAD~1 | tar -x -C .ab/old
 *   deno run -A bench/gpu/kernel_ab.ts --trees .ab/old,. --rounds 2 -- --seq 16384 --heads 16 --dim 128 --masks full,causal --pass both
 *
 * @module
 */

import { parseArgs } from "node:util";
import { table } from "../cli/_format.ts";
import { GPU_BENCH_SCHEMA, type GpuBenchReport, type GpuBenchRow } from "./gpu_bench.ts";

/** One round's report of each tree, in the order of `trees`. */
export type Rounds = GpuBenchReport[][];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * The table of an A/B run: a row per timed kernel (pass, mask, N, the first tree's
 * configuration), per tree its median ms over the rounds (and GB/s for decoding), and each
 * later tree's median over the first's.
 */
export function abTable(trees: string[], rounds: Rounds): string {
  const first = rounds[0]?.[0]?.rows ?? [];
  for (const [i, round] of rounds.entries()) {
    for (const [t, r] of round.entries()) {
      if (r.rows.length !== first.length) {
        throw new RangeError(
          `round ${i + 1}, tree ${trees[t]}: ${r.rows.length} rows, expected ${first.length}`,
        );
      }
    }
  }
  const header = ["pass", "mask", "N", "config", ...trees.map((t) => `${t} ms`)];
  if (first.some((r) => r.gbps)) header.push(...trees.map((t) => `${t} GB/s`));
  header.push(...trees.slice(1).map((t) => `${t} / ${trees[0]}`));
  const rows = first.map((r0, i) => {
    const of = (t: number, f: (r: GpuBenchRow) => number) =>
      median(rounds.map((round) => f(round[t].rows[i])));
    const ms = trees.map((_, t) => of(t, (r) => r.ms));
    return [
      r0.pass,
      r0.mask,
      String(r0.seq),
      r0.config,
      ...ms.map((m) => m.toFixed(3)),
      ...(header.some((h) => h.endsWith("GB/s"))
        ? trees.map((_, t) => of(t, (r) => r.gbps ?? 0).toFixed(0))
        : []),
      ...ms.slice(1).map((m) => (m / ms[0]).toFixed(3)),
    ];
  });
  return table(header, rows);
}

/** Runs one tree's gpu_bench.ts with `args`; returns its report. */
async function runTree(tree: string, args: string[]): Promise<GpuBenchReport> {
  const json = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "bench/gpu/gpu_bench.ts", ...args, "--json", json],
      cwd: tree,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) throw new Error(`${tree}: gpu_bench.ts exited with ${code}`);
    const report = JSON.parse(await Deno.readTextFile(json)) as GpuBenchReport;
    if (report.schema !== GPU_BENCH_SCHEMA) throw new Error(`${tree}: schema ${report.schema}`);
    return report;
  } finally {
    await Deno.remove(json);
  }
}

if (import.meta.main) {
  const dash = Deno.args.indexOf("--");
  const { values: a } = parseArgs({
    args: dash < 0 ? Deno.args : Deno.args.slice(0, dash),
    options: {
      trees: { type: "string" },
      rounds: { type: "string", default: "2" },
      json: { type: "string" },
    },
  });
  const trees = a.trees?.split(",").filter((t) => t !== "") ?? [];
  const n = Number(a.rounds);
  if (trees.length < 2 || dash < 0 || !(Number.isInteger(n) && n >= 1)) {
    console.error(
      "usage: kernel_ab.ts --trees A,B[,…] [--rounds 2] [--json FILE] -- <gpu_bench.ts arguments>",
    );
    Deno.exit(2);
  }
  const rounds: Rounds = [];
  for (let i = 0; i < n; i++) {
    const round: GpuBenchReport[] = [];
    for (const t of trees) {
      console.error(`## round ${i + 1}: ${t} (${new Date().toISOString()})`);
      round.push(await runTree(t, Deno.args.slice(dash + 1)));
    }
    rounds.push(round);
  }
  if (a.json) await Deno.writeTextFile(a.json, JSON.stringify({ trees, rounds }, null, 2));
  console.log(abTable(trees, rounds));
}
