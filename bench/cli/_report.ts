/**
 * The JSON report of a bench run (`--json FILE`): every figure, the machine, the versions and
 * the exact arguments, so that two runs can be compared (`--compare A.json B.json`).
 *
 * @module
 */

import type { BenchConfig } from "./_args.ts";
import type { BackendStatus, MachineInfo } from "./_device.ts";
import type { CheckResult, Result } from "./_run.ts";

/** Identifies the report format; bumped when a field changes meaning. */
export const REPORT_SCHEMA = "flashmask-bench/1";

/** A bench run, as written by `--json`. */
export interface Report {
  schema: typeof REPORT_SCHEMA;
  /** ISO 8601 time the run started. */
  date: string;
  /** The exact command-line arguments. */
  args: string[];
  /** The resolved configuration. */
  config: BenchConfig;
  machine: MachineInfo;
  /** Every backend looked at, available or not. */
  backends: BackendStatus[];
  /** What `--backend auto` resolved to, when it was used. */
  auto?: string;
  results: Result[];
  checks: CheckResult[];
  /** Wall time of the whole run, seconds. */
  elapsedSeconds: number;
}

/**
 * Writes a report to `file` as indented JSON: `fields`, the schema, and the seconds elapsed since
 * `started` (a `performance.now()` time).
 */
export async function writeReport(
  file: string,
  fields: Omit<Report, "schema" | "elapsedSeconds">,
  started: number,
): Promise<void> {
  const report: Report = {
    schema: REPORT_SCHEMA,
    ...fields,
    elapsedSeconds: (performance.now() - started) / 1e3,
  };
  await Deno.writeTextFile(file, JSON.stringify(report, null, 2) + "\n");
}

/**
 * Parses and validates a report; throws a RangeError naming the first bad field.
 *
 * @example
 * ```ts
 * import { parseReport } from "./_report.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseReport("{}", "x.json"), /schema/);
 * ```
 */
export function parseReport(text: string, what: string): Report {
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch (e) {
    throw new RangeError(`${what}: not JSON (${(e as Error).message})`);
  }
  const r = x as Report;
  const need = (ok: boolean, field: string) => {
    if (!ok) throw new RangeError(`${what}: missing or bad field ${field}`);
  };
  need(typeof r === "object" && r !== null, "(top level)");
  need(r.schema === REPORT_SCHEMA, `schema (expected ${JSON.stringify(REPORT_SCHEMA)})`);
  need(typeof r.date === "string", "date");
  need(Array.isArray(r.args), "args");
  need(typeof r.machine === "object" && r.machine !== null, "machine");
  need(Array.isArray(r.backends), "backends");
  need(Array.isArray(r.results), "results");
  need(Array.isArray(r.checks), "checks");
  r.results.forEach((res, i) => {
    const f = `results[${i}]`;
    need(typeof res.backend === "string", `${f}.backend`);
    need(res.pass === "fwd" || res.pass === "bwd", `${f}.pass`);
    need(typeof res.mask === "string", `${f}.mask`);
    need(typeof res.shape === "object" && res.shape !== null, `${f}.shape`);
    for (const k of ["batch", "seq", "heads", "kvHeads", "dim"] as const) {
      need(Number.isSafeInteger(res.shape[k]), `${f}.shape.${k}`);
    }
    need(typeof res.shape.dtype === "string", `${f}.shape.dtype`);
    for (const k of ["medianMs", "minMs", "maxMs", "flops", "flopsPerSecond"] as const) {
      need(typeof res[k] === "number" && res[k] >= 0, `${f}.${k}`);
    }
    need(Array.isArray(res.timesMs), `${f}.timesMs`);
  });
  return r;
}

/** One matched row of a comparison of two reports. */
export interface Ratio {
  /** What the row is: backend (when the reports have several), pass, shape and mask. */
  key: string;
  mask: string;
  aMs: number;
  bMs: number;
  aFlopsPerSecond: number;
  bFlopsPerSecond: number;
  /** aMs / bMs: above 1 means B is faster. */
  speedup: number;
}

/** The result of {@linkcode compareReports}. */
export interface Comparison {
  rows: Ratio[];
  /** Keys found in only one report. */
  onlyA: string[];
  onlyB: string[];
  /** Geometric mean of the speed-ups, NaN when no row matched. */
  geomean: number;
}

function shapeKey(r: Result): string {
  const s = r.shape;
  return `${r.pass} B=${s.batch} N=${s.seq} Hq=${s.heads} Hk=${s.kvHeads} d=${s.dim} ${s.dtype}`;
}

/**
 * Matches the results of two reports by pass, shape, dtype and mask (and by backend when
 * either report has more than one backend; otherwise two single-backend runs compare across
 * backends) and gives B's speed-up over A for each.
 */
export function compareReports(a: Report, b: Report): Comparison {
  const multi = new Set([...a.results, ...b.results].map((r) => r.backend)).size > 1 &&
    (new Set(a.results.map((r) => r.backend)).size > 1 ||
      new Set(b.results.map((r) => r.backend)).size > 1);
  const key = (r: Result) => `${multi ? r.backend + " " : ""}${shapeKey(r)} ${r.mask}`;
  const mapB = new Map(b.results.map((r) => [key(r), r]));
  const rows: Ratio[] = [];
  const onlyA: string[] = [];
  for (const ra of a.results) {
    const k = key(ra);
    const rb = mapB.get(k);
    if (!rb) {
      onlyA.push(k);
      continue;
    }
    mapB.delete(k);
    rows.push({
      key: k.slice(0, k.length - ra.mask.length - 1),
      mask: ra.mask,
      aMs: ra.medianMs,
      bMs: rb.medianMs,
      aFlopsPerSecond: ra.flopsPerSecond,
      bFlopsPerSecond: rb.flopsPerSecond,
      speedup: ra.medianMs / rb.medianMs,
    });
  }
  const geomean = rows.length === 0
    ? NaN
    : Math.exp(rows.reduce((s, r) => s + Math.log(r.speedup), 0) / rows.length);
  return { rows, onlyA, onlyB: [...mapB.keys()], geomean };
}
