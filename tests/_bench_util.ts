/**
 * Fixtures of the bench tests: made-up results and reports in the bench CLI's JSON format.
 *
 * @module
 */

import type { MaskName } from "../masks/examples.ts";
import { parseReport, type Report } from "../bench/cli/_report.ts";
import type { Result, Shape } from "../bench/cli/_run.ts";

/**
 * A result of one timed call (`medianMs`, default 1) doing `flops` (default 1e9) useful flops,
 * at B=1 N=64 H=1 d=16 f32 unless `shape` says otherwise; other fields as given.
 */
export function fakeResult(
  o: Partial<Omit<Result, "shape" | "mask">> & {
    backend: string;
    mask: string;
    shape?: Partial<Shape>;
  },
): Result {
  const medianMs = o.medianMs ?? 1, flops = o.flops ?? 1e9;
  return {
    pass: "fwd",
    maskArgs: [],
    baselineOnly: false,
    visibleFraction: 1,
    density: 1,
    tiles: { full: 4, partial: 0, skipped: 0 },
    tile: [32, 32],
    timesMs: [medianMs],
    minMs: medianMs,
    maxMs: medianMs,
    flopsPerSecond: flops / (medianMs / 1e3),
    speedupVsFull: 1,
    ...o,
    shape: { batch: 1, seq: 64, heads: 1, kvHeads: 1, dim: 16, dtype: "f32", ...o.shape },
    mask: o.mask as MaskName,
    medianMs,
    flops,
  };
}

/** A report holding `results`, through `parseReport` (so it is also a valid one). */
export function fakeReport(results: Result[], config: Record<string, unknown> = {}): Report {
  return parseReport(
    JSON.stringify({
      schema: "flashmask-bench/1",
      date: "2026-11-22T00:00:00.000Z",
      args: [],
      config,
      machine: {},
      backends: [],
      results,
      checks: [],
      elapsedSeconds: 0,
    }),
    "fake",
  );
}
