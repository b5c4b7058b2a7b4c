/**
 * Plots useful FLOP/s against sequence length, one line per (backend, mask), from bench CLI
 * and `compare_cpu.ts` JSON reports, as an SVG (log₂ N on x, linear FLOP/s on y).
 *
 * Run: `deno run -A bench/cli/plot.ts --out docs/throughput.svg [--masks full,causal]
 * [--pass fwd] [--title T] REPORT.json...`
 *
 * @module
 */

import { GPU_BENCH_SCHEMA, type GpuBenchReport } from "../gpu/gpu_bench.ts";
import { parseArgs } from "node:util";
import { flopsUnit } from "./_format.ts";
import { parseReport, type Report } from "./_report.ts";
import { xmlEscape } from "./_svg.ts";

/** One plotted line. */
export interface Series {
  label: string;
  backend: string;
  mask: string;
  points: { n: number; flopsPerSecond: number }[];
}

/**
 * The series of the reports: for each (backend and dtype, mask) among `masks` and pass `pass`,
 * the throughput at each length (the best of the reports when a length appears twice).
 */
export function seriesOf(
  reports: (Report | GpuBenchReport)[],
  masks: string[],
  pass: "fwd" | "bwd",
): Series[] {
  const map = new Map<string, Series>();
  const add = (backend: string, mask: string, n: number, flopsPerSecond: number) => {
    const key = `${backend}\u0000${mask}`;
    let s = map.get(key);
    if (!s) {
      s = { label: `${backend} · ${mask}`, backend, mask, points: [] };
      map.set(key, s);
    }
    const p = s.points.find((p) => p.n === n);
    if (p) p.flopsPerSecond = Math.max(p.flopsPerSecond, flopsPerSecond);
    else s.points.push({ n, flopsPerSecond });
  };
  for (const rep of reports) {
    if ("rows" in rep) { // kernel times from bench/gpu/gpu_bench.ts
      for (const r of rep.rows) {
        if (r.pass !== pass || !masks.includes(r.mask)) continue;
        add(`webgpu kernel ${rep.shape.dtype}`, r.mask, r.seq, r.tflops * 1e12);
      }
      continue;
    }
    for (const r of rep.results) {
      if (r.pass !== pass || !masks.includes(r.mask)) continue;
      add(`${r.backend} ${r.shape.dtype}`, r.mask, r.shape.seq, r.flopsPerSecond);
    }
  }
  for (const s of map.values()) s.points.sort((a, b) => a.n - b.n);
  return [...map.values()];
}

const PALETTE = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#744210"];
const DASHES = ["", "6 4", "2 3", "10 3 2 3"];

/**
 * An SVG line chart of the series. Colours follow the backend, dash patterns the mask.
 *
 * @example
 * ```ts
 * import { plotSvg } from "./plot.ts";
 * import assert from "node:assert/strict";
 *
 * const svg = plotSvg([{ label: "js · full", backend: "js", mask: "full",
 *   points: [{ n: 128, flopsPerSecond: 4e8 }, { n: 256, flopsPerSecond: 5e8 }] }], "t");
 * assert.ok(svg.includes("<polyline"));
 * ```
 */
export function plotSvg(series: Series[], title: string): string {
  // The legend on the right is as wide as the longest label (about 7 px per character).
  const R = 70 + 7 * Math.max(...series.map((s) => s.label.length), 10);
  const W = 530 + R, H = 440, L = 70, T = 40, B = 50;
  const pw = W - L - R, ph = H - T - B;
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) throw new RangeError("nothing to plot");
  const unit = flopsUnit(Math.max(...all.map((p) => p.flopsPerSecond)));
  const nMin = Math.min(...all.map((p) => p.n)), nMax = Math.max(...all.map((p) => p.n));
  const lx0 = Math.log2(nMin), lx1 = Math.max(Math.log2(nMax), lx0 + 1);
  const yMax = niceCeil(Math.max(...all.map((p) => p.flopsPerSecond)) / unit.scale);
  const x = (n: number) => L + ((Math.log2(n) - lx0) / (lx1 - lx0)) * pw;
  const y = (f: number) => T + ph - (f / unit.scale / yMax) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${L}" y="22" font-size="15" font-weight="bold">${xmlEscape(title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5, yy = y(v * unit.scale);
    out.push(
      `<line x1="${L}" y1="${r(yy)}" x2="${L + pw}" y2="${r(yy)}" stroke="#e2e8f0"/>`,
      `<text x="${L - 6}" y="${r(yy + 4)}" text-anchor="end">${trim(v)}</text>`,
    );
  }
  for (let e = Math.ceil(lx0); e <= Math.floor(lx1); e++) {
    const xx = x(2 ** e);
    out.push(
      `<line x1="${r(xx)}" y1="${T}" x2="${r(xx)}" y2="${T + ph}" stroke="#e2e8f0"/>`,
      `<text x="${r(xx)}" y="${T + ph + 16}" text-anchor="middle">${2 ** e}</text>`,
    );
  }
  out.push(
    `<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#4a5568"/>`,
    `<text x="${L + pw / 2}" y="${
      H - 12
    }" text-anchor="middle">sequence length N (log scale)</text>`,
    `<text x="16" y="${T + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${
      T + ph / 2
    })">useful ${unit.name}</text>`,
  );
  const backends = [...new Set(series.map((s) => s.backend))];
  const masks = [...new Set(series.map((s) => s.mask))];
  series.forEach((s, i) => {
    const color = PALETTE[backends.indexOf(s.backend) % PALETTE.length];
    const dash = DASHES[masks.indexOf(s.mask) % DASHES.length];
    const pts = s.points.map((p) => `${r(x(p.n))},${r(y(p.flopsPerSecond))}`).join(" ");
    out.push(
      `<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"` +
        `${dash ? ` stroke-dasharray="${dash}"` : ""}/>`,
      ...s.points.map((p) =>
        `<circle cx="${r(x(p.n))}" cy="${r(y(p.flopsPerSecond))}" r="3" fill="${color}"/>`
      ),
    );
    const ly = T + 10 + i * 20;
    out.push(
      `<line x1="${L + pw + 14}" y1="${ly}" x2="${L + pw + 44}" y2="${ly}" stroke="${color}" ` +
        `stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`,
      `<text x="${L + pw + 50}" y="${ly + 4}">${xmlEscape(s.label)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

function r(v: number): string {
  return String(Math.round(v * 10) / 10);
}

function trim(v: number): string {
  return String(Number(v.toPrecision(3)));
}

/** The smallest of 1, 2, 2.5, 5 × 10^k not below v. */
export function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const e = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

if (import.meta.main) {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      options: {
        out: { type: "string" },
        masks: { type: "string" },
        pass: { type: "string" },
        title: { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    console.error(`error: ${(e as Error).message.split("\n")[0]}`);
    Deno.exit(2);
  }
  const v = parsed.values;
  if (!v.out || parsed.positionals.length === 0 || (v.pass && !["fwd", "bwd"].includes(v.pass))) {
    console.error(
      "usage: deno run -A bench/cli/plot.ts --out FILE.svg [--masks full,causal] [--pass fwd|bwd] " +
        "[--title T] REPORT.json... (bench CLI --json or bench/gpu/gpu_bench.ts --json reports)",
    );
    Deno.exit(2);
  }
  const reports = await Promise.all(
    parsed.positionals.map(async (f) => {
      const text = await Deno.readTextFile(f);
      const json = JSON.parse(text);
      return json.schema === GPU_BENCH_SCHEMA ? json as GpuBenchReport : parseReport(text, f);
    }),
  );
  const pass = (v.pass ?? "fwd") as "fwd" | "bwd";
  const series = seriesOf(reports, (v.masks ?? "full,causal").split(","), pass);
  const title = v.title ?? `${pass === "fwd" ? "Forward" : "Backward"} throughput vs N`;
  await Deno.writeTextFile(v.out, plotSvg(series, title));
  console.error(`wrote ${v.out} (${series.length} lines)`);
}
