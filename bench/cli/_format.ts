/**
 * Text output of the bench CLI: result tables, the comparison of two reports, mask pictures
 * and the progress line.
 *
 * @module
 */

import { exampleMask, type MaskName, maskPicture, schedule } from "../../masks/mod.ts";
import type { Comparison } from "./_report.ts";
import type { CheckResult, Result } from "./_run.ts";

/** A FLOP rate with a unit fit for the largest value of a table: TFLOP/s, GFLOP/s or MFLOP/s. */
export function flopsUnit(maxFlopsPerSecond: number): { name: string; scale: number } {
  if (maxFlopsPerSecond >= 1e12) return { name: "TFLOP/s", scale: 1e12 };
  if (maxFlopsPerSecond >= 1e9) return { name: "GFLOP/s", scale: 1e9 };
  return { name: "MFLOP/s", scale: 1e6 };
}

/** A duration in milliseconds with 3–4 significant digits. */
export function ms(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x >= 1000) return x.toFixed(0);
  if (x >= 100) return x.toFixed(1);
  if (x >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

/** A number with `digits` significant digits, without exponent for usual magnitudes. */
export function sig(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  const e = Math.floor(Math.log10(Math.abs(x)));
  if (e < -3 || e >= 7) return x.toExponential(digits - 1);
  return x.toFixed(Math.max(0, digits - 1 - e));
}

/** Lays out rows as a table: first column left-aligned, the others right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ").trimEnd();
  return [line(header), line(w.map((n) => "-".repeat(n))), ...rows.map(line)].join("\n");
}

/**
 * The table of one (backend, pass, shape): a row per mask, with the max error against the
 * reference when checks are given.
 */
export function resultTable(results: Result[], checks: CheckResult[] = []): string {
  if (results.length === 0) return "";
  const r0 = results[0], s = r0.shape;
  const unit = flopsUnit(Math.max(...results.map((r) => r.flopsPerSecond)));
  const reps = r0.timesMs.length;
  const title = `${r0.backend} · ${r0.pass === "fwd" ? "forward" : "backward"} · B=${s.batch} ` +
    `N=${s.seq} Hq=${s.heads} Hk=${s.kvHeads} d=${s.dim} ${s.dtype} · tiles ` +
    `${r0.tile[0]}×${r0.tile[1]} · median of ${reps} (min–max), end to end`;
  const withCheck = checks.length > 0;
  const header = ["mask", "visible", "density", "median ms", "min–max ms", unit.name, "vs full"];
  if (withCheck) header.push("max err", "check");
  const rows = results.map((r) => {
    const row = [
      r.baselineOnly ? `${r.mask} (baseline)` : r.mask,
      r.visibleFraction.toFixed(3),
      r.density.toFixed(3),
      ms(r.medianMs),
      `${ms(r.minMs)}–${ms(r.maxMs)}`,
      sig(r.flopsPerSecond / unit.scale),
      `${r.speedupVsFull.toFixed(2)}×`,
    ];
    if (withCheck) {
      const c = checks.find((c) => c.mask === r.mask);
      row.push(...checkCells(c));
    }
    return row;
  });
  return `${title}\n${table(header, rows)}`;
}

function checkCells(c: CheckResult | undefined): string[] {
  if (!c) return ["", ""];
  if (c.error) return ["error", "FAIL"];
  return [c.maxAbsError.toExponential(1), c.ok ? "ok" : "FAIL"];
}

/** The table of `--check` results alone (used when nothing is timed). */
export function checkTable(checks: CheckResult[]): string {
  if (checks.length === 0) return "";
  const s = checks[0].shape;
  const title = `check against the float64 reference · B=${s.batch} N=${s.seq} Hq=${s.heads} ` +
    `Hk=${s.kvHeads} d=${s.dim} ${s.dtype} · bound: relative error ≤ ${checks[0].bound}`;
  const rows = checks.map((c) => [
    c.mask,
    c.backend,
    c.pass,
    c.error ? "error" : c.maxAbsError.toExponential(1),
    c.error ? "" : c.relError.toExponential(1),
    c.ok ? "ok" : `FAIL${c.error ? ": " + c.error : ""}`,
  ]);
  return `${title}\n${table(["mask", "backend", "pass", "max abs err", "rel err", "check"], rows)}`;
}

/** The ratios of two reports as a table, with the geometric mean. */
export function comparisonTable(c: Comparison, aName: string, bName: string): string {
  const out: string[] = [];
  const groups = new Map<string, typeof c.rows>();
  for (const r of c.rows) groups.set(r.key, [...(groups.get(r.key) ?? []), r]);
  for (const [key, rows] of groups) {
    const unit = flopsUnit(
      Math.max(...rows.flatMap((r) => [r.aFlopsPerSecond, r.bFlopsPerSecond])),
    );
    out.push(
      `${key} · A = ${aName}, B = ${bName} · speed-up = A median / B median (>1: B faster)`,
      table(
        ["mask", "A ms", "B ms", `A ${unit.name}`, `B ${unit.name}`, "speed-up"],
        rows.map((r) => [
          r.mask,
          ms(r.aMs),
          ms(r.bMs),
          sig(r.aFlopsPerSecond / unit.scale),
          sig(r.bFlopsPerSecond / unit.scale),
          `${r.speedup.toFixed(2)}×`,
        ]),
      ),
      "",
    );
  }
  if (c.rows.length === 0) out.push("no result of A matches one of B (same pass, shape and mask)");
  else out.push(`geometric mean speed-up over ${c.rows.length} rows: ${c.geomean.toFixed(2)}×`);
  if (c.onlyA.length) out.push(`only in A: ${c.onlyA.join("; ")}`);
  if (c.onlyB.length) out.push(`only in B: ${c.onlyB.join("; ")}`);
  return out.join("\n");
}

/** Options of {@linkcode picturePanel}. */
export interface PanelOptions {
  /** Sequence length. */
  seq: number;
  /** Tile size. */
  tile: [number, number];
  /** Seed of the mask parameters. */
  seed: number;
  /** Characters per side (default 32). */
  size?: number;
}

/**
 * A mask drawn twice side by side: its elements (█ visible, ░ masked, ▒ both in a
 * downsampled cell) and its tiles (█ full, ▓ partial, ░ skipped), under a title line.
 */
export function picturePanel(name: MaskName, o: PanelOptions): string {
  const size = o.size ?? 32;
  const { mask } = exampleMask(name, o.seq, o.seed);
  const plan = schedule(mask, { nq: o.seq, nk: o.seq, blockRows: o.tile[0], blockCols: o.tile[1] });
  const elems = maskPicture(mask, { maxSize: size }).split("\n");
  const tiles = maskPicture(mask, {
    maxSize: size,
    blocks: { blockRows: o.tile[0], blockCols: o.tile[1] },
  }).split("\n");
  const w = Math.max(...elems.map((l) => l.length), 24);
  const lines = [
    `${name} (N=${o.seq}): visible ${plan.visibleFraction.toFixed(3)}, tiles ${o.tile[0]}×${
      o.tile[1]
    }: ${plan.tiles.full} full, ${plan.tiles.partial} partial, ${plan.tiles.skipped} skipped`,
    `${"elements".padEnd(w)}   tiles`,
  ];
  for (let i = 0; i < Math.max(elems.length, tiles.length); i++) {
    lines.push(`${(elems[i] ?? "").padEnd(w)}   ${tiles[i] ?? ""}`.trimEnd());
  }
  return lines.join("\n");
}

/** The legend printed above the pictures. */
export const PICTURE_LEGEND =
  "elements: █ visible ░ masked ▒ both (downsampled cell) · tiles: █ full (no mask work) " +
  "▓ partial (masked element by element) ░ skipped (never read)";

/**
 * A progress line on stderr (what is running, n of m), rewritten in place while a terminal
 * shows it and cleared at the end; silent when stderr is not a terminal, so that logs and
 * pipes stay clean.
 */
export class Progress {
  #on: boolean;
  #shown = false;
  #enc = new TextEncoder();
  /** `on`: whether to draw (default: stderr is a terminal). */
  constructor(on: boolean = Deno.stderr.isTerminal()) {
    this.#on = on;
  }
  /** Replaces the line with `what` (cut to 120 characters). */
  show(what: string): void {
    if (!this.#on) return;
    this.#shown = true;
    this.#write(`\r\x1b[K${what.slice(0, 120)}`);
  }
  /** Clears the line, if anything is shown. */
  clear(): void {
    if (this.#on && this.#shown) this.#write("\r\x1b[K");
    this.#shown = false;
  }
  #write(s: string) {
    Deno.stderr.writeSync(this.#enc.encode(s));
  }
}
