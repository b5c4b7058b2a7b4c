/**
 * The last step of `bench/gpu/gpu_compare.sh`: one table of useful TFLOP/s per (length, dtype,
 * mask) for this library (from bench CLI `--json` reports) and PyTorch (FlexAttention and SDPA
 * flash / efficient / math, from `bench/gpu/torch_compare.py --json`), with ratios.
 *
 * This library's f32 runs pair with PyTorch f32, its f16 runs with PyTorch bf16 (and f16 when
 * present). Only results of the same batch, heads and head dimension pair up.
 *
 * Run: `deno run -A bench/gpu/gpu_table.ts [--out FILE] REPORT.json... TORCH.json`; files that do
 * not exist are listed as missing and their columns stay empty.
 *
 * @module
 */

import { GPU_BENCH_SCHEMA, type GpuBenchReport } from "./gpu_bench.ts";
import { parseArgs } from "node:util";
import { MASK_NAMES } from "../../masks/mod.ts";
import { table } from "../cli/_format.ts";
import { parseReport, type Report } from "../cli/_report.ts";

/** One row of `torch_compare.py`'s JSON. */
export interface TorchRow {
  impl: string;
  mode: "device" | "end-to-end";
  mask: string;
  n: number;
  dtype: string;
  batch: number;
  heads: number;
  dim: number;
  visibleFraction: number;
  ms?: number;
  tflops?: number;
  error?: string;
}

/** `torch_compare.py`'s JSON. */
export interface TorchReport {
  schema: "flashmask-torch/1";
  torch: string;
  cuda: string | null;
  device: string;
  rows: TorchRow[];
  checks: { mask: string; n: number; dtype: string; vs: string; maxAbsDiff: number }[];
  skipped: string[];
}

const PAIRS: Record<string, string> = { f32: "f32", bf16: "f16", f16: "f16" };
const COLUMNS = [
  ["flex", "device"],
  ["flex", "end-to-end"],
  ["flash", "device"],
  ["efficient", "device"],
  ["math", "device"],
] as const;

function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "—";
  return x >= 100
    ? x.toFixed(0)
    : x >= 10
    ? x.toFixed(1)
    : x >= 0.01
    ? x.toFixed(2)
    : x.toPrecision(2);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || !(b > 0) ? "—" : `${(a / b).toFixed(2)}×`;
}

/**
 * The combined table. `ours` are bench CLI reports (any backend; the column is named after
 * it), `torch` the PyTorch results.
 */
export function gpuTable(
  ours: Report[],
  torch: TorchReport | null,
  kernels: GpuBenchReport[] = [],
): string {
  const lines: string[] = [];
  const backends = [...new Set(ours.flatMap((r) => r.results.map((x) => x.backend)))];
  const oursName = backends.join("+") || "ours";
  const keys = new Map<string, { n: number; tdtype: string; odtype: string }>();
  for (const r of torch?.rows ?? []) {
    const odtype = PAIRS[r.dtype];
    if (odtype) keys.set(`${r.n} ${r.dtype}`, { n: r.n, tdtype: r.dtype, odtype });
  }
  for (const rep of ours) {
    for (const x of rep.results) {
      if (x.pass !== "fwd") continue;
      const tdtype = x.shape.dtype === "f32" ? "f32" : "bf16";
      if (![...keys.values()].some((k) => k.n === x.shape.seq && k.odtype === x.shape.dtype)) {
        keys.set(`${x.shape.seq} ${tdtype}`, { n: x.shape.seq, tdtype, odtype: x.shape.dtype });
      }
    }
  }
  const order = ["f32", "bf16", "f16"];
  const sorted = [...keys.values()].sort((a, b) =>
    a.n - b.n || order.indexOf(a.tdtype) - order.indexOf(b.tdtype)
  );
  for (const { n, tdtype, odtype } of sorted) {
    const tRows = (torch?.rows ?? []).filter((r) => r.n === n && r.dtype === tdtype);
    const shape = tRows[0];
    const oRows = ours.flatMap((rep) => rep.results).filter((x) =>
      x.pass === "fwd" && x.shape.seq === n && x.shape.dtype === odtype &&
      (!shape || (x.shape.batch === shape.batch && x.shape.heads === shape.heads &&
        x.shape.dim === shape.dim))
    );
    const s = shape ?? oRows[0]?.shape;
    const desc = shape
      ? `B=${shape.batch} H=${shape.heads} d=${shape.dim}`
      : `B=${oRows[0]?.shape.batch} H=${oRows[0]?.shape.heads} d=${oRows[0]?.shape.dim}`;
    if (!s) continue;
    lines.push(
      `N=${n} · ${oursName} ${odtype} vs torch ${tdtype} · ${desc} · useful TFLOP/s ` +
        `(4·B·H·N²·d·visible / median time)`,
    );
    const rows: string[][] = [];
    for (const mask of MASK_NAMES) {
      const o = oRows.find((x) => x.mask === mask);
      const t = (impl: string, mode: string) =>
        tRows.find((r) => r.mask === mask && r.impl === impl && r.mode === mode && !r.error)
          ?.tflops;
      if (!o && !tRows.some((r) => r.mask === mask)) continue;
      const ot = o ? o.flopsPerSecond / 1e12 : undefined;
      const kt = kernels.filter((rep) =>
        rep.shape.dtype === odtype && rep.shape.batch === s.batch && rep.shape.heads === s.heads &&
        rep.shape.dim === s.dim
      ).flatMap((rep) => rep.rows).find((r) => r.mask === mask && r.seq === n && r.pass === "fwd")
        ?.tflops;
      const sdpa = ["flash", "efficient", "math"].map((i) => t(i, "device")).filter((
        x,
      ): x is number => x !== undefined);
      rows.push([
        mask,
        fmt(kt),
        fmt(ot),
        ...COLUMNS.map(([i, m]) => fmt(t(i, m))),
        ratio(ot, t("flex", "end-to-end")),
        ratio(kt, t("flex", "device")),
        ratio(kt, sdpa.length ? Math.max(...sdpa) : undefined),
      ]);
    }
    lines.push(
      table(
        [
          "mask",
          `${oursName} (kernel)`,
          `${oursName} (e2e)`,
          "flex",
          "flex e2e",
          "sdpa flash",
          "sdpa eff",
          "sdpa math",
          "÷ flex e2e",
          "÷ flex",
          "÷ best sdpa",
        ],
        rows,
      ),
      "",
    );
  }
  if (lines.length === 0) lines.push("no results to show");
  lines.push(
    `${oursName} (kernel): bench/gpu/gpu_bench.ts, timestamp queries around back-to-back dispatches ` +
      `on GPU-resident tensors; ${oursName} (e2e): bench CLI, host arrays in and out, wall time ` +
      "per call. flex / sdpa: CUDA-event time on GPU-resident tensors; flex e2e adds host→device " +
      "copies and readback. ÷ columns: ours / theirs (>1: ours faster): e2e against flex e2e, " +
      "kernel against flex and the best SDPA. sdpa flash takes no mask: full and causal only.",
  );
  if (torch) {
    lines.push(`torch ${torch.torch}, CUDA ${torch.cuda}, ${torch.device}`);
    const bad = torch.checks.filter((c) => c.maxAbsDiff > (c.dtype === "f32" ? 1e-3 : 1e-2));
    lines.push(
      `torch self-check: ${torch.checks.length} flex-vs-sdpa comparisons, ${bad.length} above ` +
        "tolerance" + (bad.length ? `: ${bad.map((c) => `${c.mask} ${c.dtype}`).join(", ")}` : ""),
    );
    if (torch.skipped.length) lines.push(`torch skipped ${torch.skipped.length}: see torch.json`);
    const errs = torch.rows.filter((r) => r.error && !(r.impl === "flash" && r.dtype === "f32"));
    for (const e of errs.slice(0, 5)) {
      lines.push(`torch error N=${e.n} ${e.dtype} ${e.mask} ${e.impl}: ${e.error?.slice(0, 120)}`);
    }
  }
  for (const rep of ours) {
    const bad = rep.checks.filter((c) => !c.ok);
    if (rep.checks.length) {
      lines.push(
        `${rep.config.dtype} check vs float64 reference: ${rep.checks.length - bad.length}/` +
          `${rep.checks.length} ok`,
      );
    }
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { out: { type: "string" } },
    allowPositionals: true,
  });
  const ours: Report[] = [];
  const kernels: GpuBenchReport[] = [];
  let torch: TorchReport | null = null;
  const missing: string[] = [];
  for (const file of positionals) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      missing.push(file);
      continue;
    }
    const json = JSON.parse(text);
    if (json.schema === "flashmask-torch/1") torch = json as TorchReport;
    else if (json.schema === GPU_BENCH_SCHEMA) kernels.push(json as GpuBenchReport);
    else ours.push(parseReport(text, file));
  }
  const out = gpuTable(ours, torch, kernels) +
    (missing.length ? `\nmissing (that step failed; see its log): ${missing.join(", ")}` : "");
  if (values.out) await Deno.writeTextFile(values.out, out + "\n");
  console.log(out);
}
