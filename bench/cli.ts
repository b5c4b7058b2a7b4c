/**
 * The bench and demo CLI: times exact attention on the twelve FlashMask mask types with every
 * backend that works here, and prints a table per backend, pass and sequence length (visible
 * fraction, tile density, time, useful FLOP/s, speed-up over the full mask, error against the
 * float64 reference with `--check`). Also draws the masks (`--picture`, `--svg DIR`), writes a
 * JSON report (`--json FILE`) and compares two reports (`--compare A.json B.json`).
 *
 * Run: `deno task bench`, `deno run -A bench/cli.ts --help`, or by URL:
 * `deno run -A https://.../bench/cli.ts`.
 *
 * @module
 */

import { exampleMask } from "../masks/examples.ts";
import { BACKENDS, type BenchConfig, parseCli, USAGE, UsageError } from "./_args.ts";
import {
  type BackendStatus,
  backendTile,
  type MachineInfo,
  machineInfo,
  probeBackend,
  resolveAuto,
} from "./_device.ts";
import {
  checkTable,
  comparisonTable,
  PICTURE_LEGEND,
  picturePanel,
  Progress,
  resultTable,
} from "./_format.ts";
import { compareReports, parseReport, type Report, REPORT_SCHEMA } from "./_report.ts";
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

  // Which backends: probe the candidates (a tiny call each) and keep the available ones.
  const candidates = config.backend === "auto" || config.backend === "all"
    ? [...BACKENDS]
    : [config.backend];
  const statuses: BackendStatus[] = [];
  for (const name of candidates) {
    progress.show(`probing backend ${name}`);
    statuses.push(await probeBackend(name, config.threads));
  }
  progress.clear();
  let chosen: BackendStatus[];
  let auto: string | undefined;
  if (config.backend === "auto") {
    const s = resolveAuto(statuses);
    chosen = s ? [s] : [];
    auto = s?.name;
  } else if (config.backend === "all") {
    chosen = statuses.filter((s) => s.available);
  } else {
    chosen = statuses;
  }
  console.log(header(machine, config, statuses, auto));
  const missing = chosen.find((s) => !s.available);
  if (chosen.length === 0 || missing) {
    console.error(
      `error: ${
        missing ? `backend ${missing.name} is not available: ${missing.reason}` : "no backend works"
      }`,
    );
    return 1;
  }
  const names = chosen.map((s) => s.name);
  const tileOf = (b: string) => config.tile ?? backendTile(b);
  const passes = config.pass === "both" ? ["fwd", "bwd"] as const : [config.pass];

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
  const writeReport = async (last: boolean) => {
    if (config.json === undefined) return;
    const report: Report = {
      schema: REPORT_SCHEMA,
      date,
      args,
      config,
      machine,
      backends: statuses,
      auto,
      results,
      checks,
      elapsedSeconds: (performance.now() - started) / 1e3,
    };
    await Deno.writeTextFile(config.json, JSON.stringify(report, null, 2) + "\n");
    if (last) console.error(`wrote ${config.json}`);
  };
  if (config.check) {
    const shape = checkShape(shapeOf(config, config.seqs[0]));
    let i = 0;
    const total = names.length * passes.length * config.masks.length;
    for (const backend of names) {
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
    const total = names.length * config.seqs.length * passes.length;
    let t = 0;
    for (const backend of names) {
      progress.show(`warming up ${backend}`);
      await warmUp(backend, config.threads);
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
          await writeReport(false);
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

  await writeReport(true);
  return checks.every((c) => c.ok) ? 0 : 1;
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
  if (c.backend === "auto") {
    const s = statuses.find((s) => s.name === auto);
    lines.push(`backend: auto → ${s ? `${s.name}: ${s.device}` : "none available"}`);
  } else lines.push(`backend: ${c.backend}`);
  for (const s of statuses) {
    if (c.backend === "auto" && s.name === auto) continue;
    lines.push(
      `  ${s.name}: ${s.available ? "available" : `not available (${s.reason})`}` +
        (s.device ? `; ${s.device}` : ""),
    );
  }
  return lines.join("\n");
}

if (import.meta.main) Deno.exit(await main(Deno.args));
