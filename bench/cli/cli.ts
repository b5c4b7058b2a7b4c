/**
 * The bench and demo CLI: times exact attention on the twelve FlashMask mask types with every
 * backend that works here, and prints a table per backend, pass and sequence length (visible
 * fraction, tile density, time, useful FLOP/s, speed-up over the full mask, error against the
 * float64 reference with `--check`). Also draws the masks (`--picture`, `--svg DIR`), writes a
 * JSON report (`--json FILE`) and compares two reports (`--compare A.json B.json`).
 *
 * Run: `deno task bench`, `deno run -A bench/cli/cli.ts --help`, or by URL:
 * `deno run -A https://.../bench/cli/cli.ts`.
 *
 * @module
 */

import { exampleMask } from "../../masks/mod.ts";
import { type BenchConfig, parseCli, USAGE, UsageError } from "./_args.ts";
import {
  type BackendStatus,
  backendTile,
  chooseBackends,
  type MachineInfo,
  machineInfo,
  supports,
} from "./_device.ts";
import {
  checkTable,
  comparisonTable,
  PICTURE_LEGEND,
  picturePanel,
  Progress,
  resultTable,
} from "./_format.ts";
import { compareReports, parseReport, type Report, writeReport } from "./_report.ts";
import {
  checkMask,
  type CheckResult,
  checkShape,
  measure,
  type Result,
  type Shape,
  warmUp,
} from "./_run.ts";
import { maskSvg } from "./_svg.ts";

/**
 * Runs the CLI with `args` and returns the exit code: 0 ok, 1 a check failed or the requested
 * backend is not available, 2 bad arguments. Tables go to stdout, progress and notes to stderr.
 */
export async function main(args: string[]): Promise<number> {
  let cmd;
  try {
    cmd = parseCli(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  if (cmd.kind === "help") {
    console.log(USAGE);
    return 0;
  }
  if (cmd.kind === "compare") {
    let a: Report, b: Report;
    try {
      a = parseReport(await Deno.readTextFile(cmd.a), cmd.a);
      b = parseReport(await Deno.readTextFile(cmd.b), cmd.b);
    } catch (e) {
      console.error(`error: ${(e as Error).message}\n\n${USAGE}`);
      return 2;
    }
    console.log(describeRun("A", cmd.a, a));
    console.log(describeRun("B", cmd.b, b));
    console.log();
    console.log(comparisonTable(compareReports(a, b), cmd.a, cmd.b));
    return 0;
  }
  return await run(cmd.config, args);
}

function describeRun(label: string, file: string, r: Report): string {
  const m = r.machine;
  return `${label} = ${file}: ${r.date}, ${m.cpuModel ?? m.arch} (${m.logicalCpus} CPUs), ` +
    `Deno ${m.versions.deno}, library ${m.versions.library}, backends ${
      [...new Set(r.results.map((x) => x.backend))].join(", ") || "none"
    }; args: ${r.args.join(" ") || "(none)"}`;
}

async function run(config: BenchConfig, args: string[]): Promise<number> {
  const started = performance.now(), date = new Date().toISOString();
  const progress = new Progress();
  const machine = machineInfo();

  // Which backends: probe the candidates (a tiny call each); `auto` is what the library picks.
  const { statuses, chosen, auto, error } = await chooseBackends(config.backend, {
    threads: config.threads,
    progress,
  });
  console.log(header(machine, config, statuses, auto));
  if (error !== undefined) {
    console.error(`error: ${error}`);
    return 1;
  }
  const names = chosen.map((s) => s.name);
  const tiles = new Map<string, [number, number]>();
  for (const b of names) tiles.set(b, config.tile ?? await backendTile(b, config.dim));
  const tileOf = (b: string) => tiles.get(b) ?? config.tile ?? [64, 64];
  const passes = config.pass === "both" ? ["fwd", "bwd"] as const : [config.pass];
  // (backend, pass) pairs the backend cannot run are left out and said so; that fails the run
  // unless --backend all asked for whatever works.
  let skipped = 0;
  const passesOf = (s: BackendStatus) =>
    passes.filter((pass) => {
      if (supports(s, pass)) return true;
      console.error(`backend ${s.name} cannot run the ${pass} pass (${s.backwardReason}): skipped`);
      skipped++;
      return false;
    });
  const runs = chosen.map((s) => ({ backend: s.name, passes: passesOf(s) }));

  if (config.picture) {
    console.log(`\n${PICTURE_LEGEND}`);
    for (const seq of config.seqs) {
      for (const m of config.masks) {
        console.log(`\n${picturePanel(m, { seq, tile: tileOf(names[0]), seed: config.seed })}`);
      }
    }
  }
  if (config.svg !== undefined) {
    await Deno.mkdir(config.svg, { recursive: true });
    let n = 0;
    for (const seq of config.seqs) {
      for (const m of config.masks) {
        const { mask } = exampleMask(m, seq, config.seed);
        const svg = maskSvg(mask, { title: `${m} (N=${seq})`, tile: tileOf(names[0]) });
        await Deno.writeTextFile(`${config.svg}/${m}-${seq}.svg`, svg);
        n++;
      }
    }
    console.error(`wrote ${n} SVG file${n === 1 ? "" : "s"} to ${config.svg}/`);
  }

  const checks: CheckResult[] = [];
  const results: Result[] = [];
  // The report is rewritten after every table, so an interrupted run keeps what it measured.
  const report = async (last: boolean) => {
    if (config.json === undefined) return;
    await writeReport(config.json, {
      date,
      args,
      config,
      machine,
      backends: statuses,
      auto,
      results,
      checks,
    }, started);
    if (last) console.error(`wrote ${config.json}`);
  };
  if (config.check) {
    const shape = checkShape(shapeOf(config, config.seqs[0]));
    let i = 0;
    const total = runs.reduce((n, r) => n + r.passes.length, 0) * config.masks.length;
    for (const { backend, passes } of runs) {
      for (const pass of passes) {
        for (const m of config.masks) {
          progress.show(`[check ${++i}/${total}] ${backend} ${pass} ${m} N=${shape.seq}`);
          checks.push(await checkMask(backend, pass, m, shape, config.seed, config.threads));
        }
      }
    }
    progress.clear();
  }

  if (config.reps > 0) {
    const total = runs.reduce((n, r) => n + r.passes.length, 0) * config.seqs.length;
    let t = 0;
    for (const { backend, passes } of runs) {
      progress.show(`warming up ${backend}`);
      await warmUp(backend, config.threads, passes);
      for (const seq of config.seqs) {
        for (const pass of passes) {
          t++;
          const rs = await measure({
            backend,
            pass,
            shape: shapeOf(config, seq),
            masks: config.masks,
            reps: config.reps,
            warmup: config.warmup,
            tile: tileOf(backend),
            threads: config.threads,
            seed: config.seed,
          }, (what) => progress.show(`[table ${t}/${total}] ${what}`));
          progress.clear();
          results.push(...rs);
          const cs = checks.filter((c) => c.backend === backend && c.pass === pass);
          console.log(`\n${resultTable(rs, cs)}`);
          await report(false);
        }
      }
    }
  } else if (checks.length > 0) {
    console.log(`\n${checkTable(checks)}`);
  }
  if (checks.length > 0) {
    const s = checks[0].shape, bad = checks.filter((c) => !c.ok);
    console.log(
      `\nmax err: largest |output − float64 reference| at B=${s.batch} N=${s.seq} Hq=${s.heads} ` +
        `Hk=${s.kvHeads} d=${s.dim} ${s.dtype}; check ok when the relative error is ≤ ` +
        `${checks[0].bound}` + (bad.length ? ` · ${bad.length} FAILED` : " · all ok"),
    );
    for (const c of bad.filter((c) => c.error)) {
      console.error(`check ${c.backend} ${c.pass} ${c.mask}: ${c.error}`);
    }
  }

  await report(true);
  return checks.every((c) => c.ok) && (skipped === 0 || config.backend === "all") ? 0 : 1;
}

function shapeOf(c: BenchConfig, seq: number): Shape {
  return {
    batch: c.batch,
    seq,
    heads: c.heads,
    kvHeads: c.kvHeads,
    dim: c.dim,
    dtype: c.dtype,
  };
}

function header(
  m: MachineInfo,
  c: BenchConfig,
  statuses: BackendStatus[],
  auto: string | undefined,
): string {
  const lines = [
    `flashmask-attention ${m.versions.library} bench · Deno ${m.versions.deno} · ${m.os} ` +
    `${m.arch} · ${m.cpuModel ?? "CPU model unknown"} (${m.logicalCpus} logical CPUs)`,
  ];
  const state = (s: BackendStatus) =>
    !s.available
      ? `not available (${s.reason})`
      : s.backward
      ? "available"
      : `available, forward only (${s.backwardReason})`;
  if (c.backend === "auto") {
    const s = statuses.find((s) => s.name === auto);
    lines.push(
      `backend: auto → ${s ? `${s.name} (the library's choice): ${s.device}` : "not recognised"}`,
    );
  } else lines.push(`backend: ${c.backend}`);
  for (const s of statuses) {
    if (c.backend === "auto" && s.name === auto) continue;
    lines.push(`  ${s.name}: ${state(s)}${s.device ? `; ${s.device}` : ""}`);
  }
  return lines.join("\n");
}

if (import.meta.main) Deno.exit(await main(Deno.args));
