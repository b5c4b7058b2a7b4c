/**
 * Side by side on the CPU: this library and onnxruntime-web's WASM backend on the same inputs
 * and masks, ratios printed in one table per sequence length.
 *
 * onnxruntime-web runs a dense ONNX graph built in code (`bench/_onnx.ts`: Transpose → MatMul →
 * Mul(scale) → Add(mask) → Softmax → MatMul → Transpose, the mask an additive N×N input), so it
 * does the same work whatever the mask; this library skips masked tiles. Both take and return
 * `[B, N, H, d]` f32 arrays; both are timed end to end per call (session creation and
 * the dense mask are made once, untimed).
 *
 * Run: `deno run -A bench/compare_cpu.ts [--seq 256,512] [--masks ...] [--threads T] [--json F]`
 * (the CLI's flags; forward, f32, Hk = Hq only). onnxruntime-web comes from npm on first run.
 *
 * @module
 */

import { attention } from "../attention.ts";
import { toDense } from "../masks/dense.ts";
import { exampleMask, type MaskName } from "../masks/examples.ts";
import { schedule } from "../masks/schedule.ts";
import { BACKENDS, type BenchConfig, parseCli, USAGE, UsageError } from "./_args.ts";
import {
  backendOptions,
  type BackendStatus,
  backendTile,
  machineInfo,
  probeBackend,
} from "./_device.ts";
import { flopsUnit, ms, Progress, sig, table } from "./_format.ts";
import { additiveMask, attentionModel } from "./_onnx.ts";
import { type Report, REPORT_SCHEMA } from "./_report.ts";
import {
  errors,
  makeInputs,
  measure,
  median,
  type Result,
  type Shape,
  usefulFlops,
  warmUp,
} from "./_run.ts";

/** The onnxruntime-web release compared against (pinned: results depend on it). */
export const ORT_SPECIFIER = "npm:onnxruntime-web@1.23.2";

/** The parts of onnxruntime-web used here. */
interface Ort {
  env: {
    logLevel?: string;
    wasm: { numThreads?: number; simd?: boolean };
    versions: Record<string, string>;
  };
  Tensor: new (type: "float32", data: Float32Array, dims: number[]) => unknown;
  InferenceSession: {
    create(model: Uint8Array, options: { executionProviders: string[] }): Promise<OrtSession>;
  };
}
interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown }>>;
  release(): Promise<void>;
}

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
      console.log(`bench/compare_cpu.ts: this library vs onnxruntime-web (WASM), forward f32.
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
      throw new UsageError("--check, --picture and --svg belong to bench/cli.ts");
    }
    if (c.reps < 1) throw new UsageError("--reps must be at least 1 here");
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  const started = performance.now(), date = new Date().toISOString();
  const progress = new Progress();
  const candidates = config.backend === "auto" || config.backend === "all"
    ? [...BACKENDS]
    : [config.backend];
  const statuses: BackendStatus[] = [];
  for (const n of candidates) statuses.push(await probeBackend(n, config.threads));
  const chosen = config.backend === "all"
    ? statuses.filter((s) => s.available)
    : [statuses.find((s) => s.available)].filter((s): s is BackendStatus => s !== undefined);
  if (
    chosen.length === 0 || (config.backend !== "auto" && config.backend !== "all" &&
      !statuses[0].available)
  ) {
    console.error(`error: no backend available: ${statuses.map((s) => `${s.name}: ${s.reason}`)}`);
    return 1;
  }

  progress.show(`loading ${ORT_SPECIFIER}`);
  const ort = (await import(ORT_SPECIFIER)) as Ort;
  const ortThreads = config.threads ?? 1;
  ort.env.wasm.numThreads = ortThreads;
  ort.env.logLevel = "error";
  const machine = machineInfo();
  progress.clear();
  console.log(
    `this library ${machine.versions.library} vs onnxruntime-web ${ort.env.versions.web} ` +
      `(WASM, ${ortThreads} thread${ortThreads === 1 ? "" : "s"}) · Deno ${machine.versions.deno}` +
      ` · ${machine.cpuModel ?? machine.arch} (${machine.logicalCpus} logical CPUs)`,
  );
  for (const s of chosen) console.log(`backend ${s.name}: ${s.device}`);
  for (const s of chosen) await warmUp(s.name, config.threads);

  const results: Result[] = [];
  const ortName = `onnxruntime-web ${ort.env.versions.web} wasm ${ortThreads}t`;
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
    const session = await ort.InferenceSession.create(
      attentionModel({ batch: shape.batch, seq, heads: shape.heads, dim: shape.dim }),
      { executionProviders: ["wasm"] },
    );
    const sessionMs = performance.now() - t0;
    const feedsBase = {
      q: new ort.Tensor("float32", inputs.q.data as Float32Array, dims),
      k: new ort.Tensor("float32", inputs.k.data as Float32Array, dims),
      v: new ort.Tensor("float32", inputs.v.data as Float32Array, dims),
    };
    // onnxruntime-web: every mask, `warmup` untimed then `reps` timed runs.
    const ortRows = new Map<MaskName, { times: number[]; out: Float32Array }>();
    const masks: MaskName[] = ["full", ...config.masks.filter((m) => m !== "full")];
    for (const [i, name] of masks.entries()) {
      const { mask } = exampleMask(name, seq, config.seed);
      const feeds = {
        ...feedsBase,
        mask: new ort.Tensor("float32", additiveMask(toDense(mask)), [seq, seq]),
      };
      let out: Float32Array = new Float32Array(0);
      for (let w = 0; w < config.warmup; w++) await session.run(feeds);
      const times: number[] = [];
      for (let r = 0; r < config.reps; r++) {
        progress.show(
          `ort N=${seq} ${name} (${i + 1}/${masks.length}) rep ${r + 1}/${config.reps}`,
        );
        const t = performance.now();
        const res = await session.run(feeds);
        times.push(performance.now() - t);
        out = res.out.data as Float32Array;
      }
      ortRows.set(name, { times, out });
    }
    await session.release();
    for (const [name, { times }] of ortRows) {
      const plan = schedule(exampleMask(name, seq, config.seed).mask, {
        nq: seq,
        nk: seq,
        blockRows: 64,
        blockCols: 64,
      });
      const flops = usefulFlops(shape, plan.visibleFraction, "fwd");
      const med = median(times);
      results.push({
        backend: ortName,
        pass: "fwd",
        shape,
        mask: name,
        maskArgs: exampleMask(name, seq, config.seed).args,
        baselineOnly: name === "full" && !config.masks.includes("full"),
        visibleFraction: plan.visibleFraction,
        density: 1,
        tiles: { full: 0, partial: 0, skipped: 0 },
        tile: [seq, seq],
        flops,
        timesMs: times,
        medianMs: med,
        minMs: Math.min(...times),
        maxMs: Math.max(...times),
        flopsPerSecond: flops / (med / 1e3),
        speedupVsFull: median(ortRows.get("full")!.times) / med,
      });
    }
    // This library, on the same inputs.
    for (const s of chosen) {
      const ours = await measure({
        backend: s.name,
        pass: "fwd",
        shape,
        masks: config.masks,
        reps: config.reps,
        warmup: config.warmup,
        tile: config.tile ?? backendTile(s.name),
        threads: config.threads,
        seed: config.seed,
      }, (what) => progress.show(what));
      results.push(...ours);
      const rows: SideBySide[] = [];
      for (const r of ours) {
        if (r.baselineOnly) continue;
        const o = ortRows.get(r.mask)!;
        const { mask } = exampleMask(r.mask, seq, config.seed);
        const { out } = await attention(inputs.q, inputs.k, inputs.v, {
          ...backendOptions(s.name, config.threads),
          mask,
        });
        const ortMs = median(o.times);
        rows.push({
          mask: r.mask,
          visibleFraction: r.visibleFraction,
          oursMs: r.medianMs,
          ortMs,
          oursFlopsPerSecond: r.flopsPerSecond,
          ortFlopsPerSecond: r.flops / (ortMs / 1e3),
          speedup: ortMs / r.medianMs,
          maxAbsDiff: errors(out.data as Float32Array, o.out).maxAbs,
        });
      }
      progress.clear();
      console.log(
        `\n${
          sideBySideTable(
            `forward · B=${shape.batch} N=${seq} H=${shape.heads} d=${shape.dim} f32 · median of ` +
              `${config.reps} · useful FLOP/s (visible elements only) · ort session created in ` +
              `${ms(sessionMs)} ms (untimed)`,
            rows,
            s.name,
          )
        }`,
      );
    }
  }
  console.log(
    `\nspeed-up = onnxruntime-web median / ${chosen.map((s) => s.name).join(", ")} median ` +
      "(>1: this library faster); max |diff| = largest |ours − onnxruntime-web| over the output",
  );
  if (config.json !== undefined) {
    const report: Report = {
      schema: REPORT_SCHEMA,
      date,
      args,
      config,
      machine,
      backends: [...statuses, {
        name: ortName,
        available: true,
        device: `onnxruntime-web ${ort.env.versions.web} WASM backend, ${ortThreads} threads`,
        details: { versions: ort.env.versions, threads: ortThreads },
      }],
      results,
      checks: [],
      elapsedSeconds: (performance.now() - started) / 1e3,
    };
    await Deno.writeTextFile(config.json, JSON.stringify(report, null, 2) + "\n");
    console.error(`wrote ${config.json}`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
