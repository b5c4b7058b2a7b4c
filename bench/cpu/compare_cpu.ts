/**
 * Side by side on the CPU: this library and onnxruntime-web's WASM backend on the same inputs
 * and masks, ratios printed in one table per sequence length.
 *
 * onnxruntime-web runs a dense ONNX graph built in code (`bench/cpu/_onnx.ts`: Transpose → MatMul →
 * Mul(scale) → Add(mask) → Softmax → MatMul → Transpose, the mask an additive N×N input), so it
 * does the same work whatever the mask; this library skips masked tiles. Both take and return
 * `[B, N, H, d]` f32 arrays; both are timed end to end per call (session creation and
 * the dense mask are made once, untimed), alternately, rep by rep, so that the load of a shared
 * machine affects both alike.
 *
 * Run: `deno run -A bench/cpu/compare_cpu.ts [--seq 256,512] [--masks ...] [--threads T] [--json F]`
 * (the CLI's flags; forward, f32, Hk = Hq only). onnxruntime-web comes from npm on first run.
 *
 * @module
 */

import { attention } from "../../mod.ts";
import { exampleMask, type MaskName, schedule, toDense } from "../../masks/mod.ts";
import { type BenchConfig, parseCli, USAGE, UsageError } from "../cli/_args.ts";
import { backendOptions, backendTile, chooseBackends, machineInfo } from "../cli/_device.ts";
import { flopsUnit, ms, Progress, sig, table } from "../cli/_format.ts";
import { additiveMask, attentionModel } from "./_onnx.ts";
import { ortWebPeer, ortWebVersion } from "./_peers.ts";
import { writeReport } from "../cli/_report.ts";
import {
  errors,
  makeInputs,
  type Result,
  resultOf,
  type Shape,
  timeMs,
  warmUp,
} from "../cli/_run.ts";

/** One row of the side-by-side table. */
export interface SideBySide {
  mask: MaskName;
  visibleFraction: number;
  oursMs: number;
  ortMs: number;
  oursFlopsPerSecond: number;
  ortFlopsPerSecond: number;
  /** ortMs / oursMs: above 1 means this library is faster. */
  speedup: number;
  /** Largest |ours − onnxruntime| over the output. */
  maxAbsDiff: number;
}

/** The side-by-side table of one shape. */
export function sideBySideTable(
  title: string,
  rows: SideBySide[],
  backend: string,
): string {
  const unit = flopsUnit(
    Math.max(...rows.flatMap((r) => [r.oursFlopsPerSecond, r.ortFlopsPerSecond])),
  );
  return `${title}\n${
    table(
      [
        "mask",
        "visible",
        `${backend} ms`,
        "ort ms",
        `${backend} ${unit.name}`,
        `ort ${unit.name}`,
        `${backend} speed-up`,
        "max |diff|",
      ],
      rows.map((r) => [
        r.mask,
        r.visibleFraction.toFixed(3),
        ms(r.oursMs),
        ms(r.ortMs),
        sig(r.oursFlopsPerSecond / unit.scale),
        sig(r.ortFlopsPerSecond / unit.scale),
        `${r.speedup.toFixed(2)}×`,
        r.maxAbsDiff.toExponential(1),
      ]),
    )
  }`;
}

async function main(args: string[]): Promise<number> {
  let config: BenchConfig;
  try {
    const cmd = parseCli(args);
    if (cmd.kind === "help") {
      console.log(`bench/cpu/compare_cpu.ts: this library vs onnxruntime-web (WASM), forward f32.
Takes the bench CLI's flags except --pass, --dtype f16, --kv-heads, --check, --picture, --svg
and --compare; --threads sets onnxruntime-web's threads (default 1) and is passed to backends
that take threads.\n\n${USAGE}`);
      return 0;
    }
    if (cmd.kind !== "run") throw new UsageError("--compare is not supported here");
    config = cmd.config;
    const c = config;
    if (c.pass !== "fwd") throw new UsageError("only --pass fwd is compared");
    if (c.dtype !== "f32") throw new UsageError("only --dtype f32 is compared");
    if (c.kvHeads !== c.heads) throw new UsageError("--kv-heads is not supported here");
    if (c.check || c.picture || c.svg !== undefined) {
      throw new UsageError("--check, --picture and --svg belong to bench/cli/cli.ts");
    }
    if (c.reps < 1) throw new UsageError("--reps must be at least 1 here");
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  const started = performance.now(), date = new Date().toISOString();
  const progress = new Progress();
  const { statuses, chosen, auto, error } = await chooseBackends(config.backend, {
    threads: config.threads,
    progress,
  });
  if (error !== undefined) {
    console.error(`error: ${error}`);
    return 1;
  }

  progress.show("loading onnxruntime-web");
  const ortVersion = await ortWebVersion();
  const ortThreads = config.threads ?? 1;
  const machine = machineInfo();
  progress.clear();
  console.log(
    `this library ${machine.versions.library} vs onnxruntime-web ${ortVersion} ` +
      `(WASM, ${ortThreads} thread${ortThreads === 1 ? "" : "s"}) · Deno ${machine.versions.deno}` +
      ` · ${machine.cpuModel ?? machine.arch} (${machine.logicalCpus} logical CPUs)`,
  );
  for (const s of chosen) {
    console.log(`backend ${s.name}${s.name === auto ? " (auto)" : ""}: ${s.device}`);
  }
  for (const s of chosen) await warmUp(s.name, config.threads, ["fwd"]);

  const results: Result[] = [];
  const ortName = `onnxruntime-web ${ortVersion} wasm ${ortThreads}t`;
  for (const seq of config.seqs) {
    const shape: Shape = {
      batch: config.batch,
      seq,
      heads: config.heads,
      kvHeads: config.heads,
      dim: config.dim,
      dtype: "f32",
    };
    const dims = [shape.batch, seq, shape.heads, shape.dim];
    const inputs = makeInputs(shape, config.seed);
    const t0 = performance.now();
    const ort = await ortWebPeer(
      attentionModel({ batch: shape.batch, seq, heads: shape.heads, dim: shape.dim }),
      ortThreads,
      "dense attention",
    );
    const sessionMs = performance.now() - t0;
    for (const x of ["q", "k", "v"] as const) ort.setInput(x, inputs[x].data as Float32Array, dims);
    const masks: MaskName[] = ["full", ...config.masks.filter((m) => m !== "full")];
    for (const s of chosen) {
      const tile = config.tile ?? await backendTile(s.name, shape.dim);
      const rows: SideBySide[] = [];
      let oursFull = NaN, ortFull = NaN;
      for (const [i, name] of masks.entries()) {
        const ex = exampleMask(name, seq, config.seed);
        const plan = schedule(ex.mask, {
          nq: seq,
          nk: seq,
          blockRows: tile[0],
          blockCols: tile[1],
        });
        ort.setInput("mask", additiveMask(toDense(ex.mask)), [seq, seq]);
        const options = { ...backendOptions(s.name, config.threads), mask: ex.mask };
        const runOurs = async () =>
          (await attention(inputs.q, inputs.k, inputs.v, options)).out.data as Float32Array;
        for (let w = 0; w < config.warmup; w++) {
          await ort.run();
          await runOurs();
        }
        // Alternate the two, swapping which goes first each rep, so that a slow spell of this
        // shared machine hits both alike.
        const ortTimes: number[] = [], oursTimes: number[] = [];
        let ortOut: Float32Array = new Float32Array(0), oursOut: Float32Array = new Float32Array(0);
        for (let r = 0; r < config.reps; r++) {
          progress.show(`N=${seq} ${name} (${i + 1}/${masks.length}) rep ${r + 1}/${config.reps}`);
          for (const which of r % 2 === 0 ? ["ort", "ours"] : ["ours", "ort"]) {
            if (which === "ort") ortTimes[r] = await timeMs(async () => ortOut = await ort.run());
            else oursTimes[r] = await timeMs(async () => oursOut = await runOurs());
          }
        }
        const common = {
          pass: "fwd" as const,
          shape,
          mask: name,
          maskArgs: ex.args,
          baselineOnly: name === "full" && !config.masks.includes("full"),
          plan,
        };
        const o = resultOf({
          ...common,
          backend: ortName,
          tile: [seq, seq],
          timesMs: ortTimes,
          fullMs: ortFull,
        });
        const u = resultOf({
          ...common,
          backend: s.name,
          tile,
          timesMs: oursTimes,
          fullMs: oursFull,
        });
        if (name === "full") {
          [ortFull, oursFull] = [o.medianMs, u.medianMs];
          o.speedupVsFull = u.speedupVsFull = 1;
        }
        o.density = 1; // dense: every tile computed
        results.push(o, u);
        if (common.baselineOnly) continue;
        rows.push({
          mask: name,
          visibleFraction: u.visibleFraction,
          oursMs: u.medianMs,
          ortMs: o.medianMs,
          oursFlopsPerSecond: u.flopsPerSecond,
          ortFlopsPerSecond: o.flopsPerSecond,
          speedup: o.medianMs / u.medianMs,
          maxAbsDiff: errors(oursOut, ortOut).maxAbs,
        });
      }
      progress.clear();
      console.log(
        `\n${
          sideBySideTable(
            `forward · B=${shape.batch} N=${seq} H=${shape.heads} d=${shape.dim} f32 · median of ` +
              `${config.reps}, runs alternated · useful FLOP/s (visible elements only) · ort ` +
              `session created in ${ms(sessionMs)} ms (untimed)`,
            rows,
            s.name,
          )
        }`,
      );
    }
    await ort.release();
  }
  console.log(
    `\nspeed-up = onnxruntime-web median / ${chosen.map((s) => s.name).join(", ")} median ` +
      "(>1: this library faster); max |diff| = largest |ours − onnxruntime-web| over the output",
  );
  if (config.json !== undefined) {
    await writeReport(config.json, {
      date,
      args,
      config,
      machine,
      backends: [...statuses, {
        name: ortName,
        available: true,
        backward: false,
        device: `onnxruntime-web ${ortVersion} WASM backend, ${ortThreads} threads`,
        details: { version: ortVersion, threads: ortThreads },
      }],
      auto,
      results,
      checks: [],
    }, started);
    console.error(`wrote ${config.json}`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
