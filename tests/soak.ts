/**
 * The soak run (`deno task soak --minutes N`): forward and backward, over and over, on every
 * available backend (js, wasm, webgpu when an adapter exists), with a new random FlashMask (all
 * four layouts, per batch and head) and random sizes each call, GPU-resident calls among them;
 * every 25th call is checked against the float64 reference. It reports memory after a warm-up
 * and at the end — `Deno.memoryUsage()`, the WASM memory and its threads, the library's live GPU
 * buffers — and fails (exit code 1) when they grew or a call failed.
 *
 * ```sh
 * deno task soak --minutes 30
 * deno task soak --seconds 20 --backends wasm,webgpu
 * ```
 *
 * Flags: `--minutes N` / `--seconds N` (default 1 minute), `--backends js,wasm,webgpu`,
 * `--seed S`. The task runs with `--v8-flags=--expose-gc` so that memory is measured after a
 * full collection.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  fromGpu,
  gpuInfo,
  toGpu,
} from "../mod.ts";
import { gpuStats } from "../gpu/internal.ts";
import { engine } from "../wasm/_runtime.ts";
import { type Case, checkPrepared, prepareCase, randomMask } from "./_cases.ts";
import { randomTensor, rng } from "./_util.ts";

/** Memory at one moment. */
export interface MemorySample {
  /** Seconds since the start. */
  t: number;
  calls: number;
  rss: number;
  heapUsed: number;
  external: number;
  wasmBytes: number;
  wasmThreads: number;
  /** Live library GPU buffers, cached ones excluded (they are bounded). */
  gpuBuffers: number;
  gpuBytes: number;
  gpuCachedSchedules: number;
}

/** What a soak run found. */
export interface SoakReport {
  backends: string[];
  calls: Record<string, number>;
  checked: number;
  errors: string[];
  /** After the warm-up. */
  start: MemorySample;
  end: MemorySample;
  /** Largest of each figure over the run (after the warm-up). */
  peak: MemorySample;
  /** Why memory is not flat (empty: flat). */
  growth: string[];
}

const MiB = 2 ** 20;

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
}

function sample(t0: number, calls: number): MemorySample {
  collect();
  const m = Deno.memoryUsage();
  const g = gpuStats();
  const e = engine();
  return {
    t: (performance.now() - t0) / 1000,
    calls,
    rss: m.rss,
    heapUsed: m.heapUsed,
    external: m.external,
    wasmBytes: e.bytes,
    wasmThreads: e.workers,
    gpuBuffers: g.liveBuffers - g.cachedBuffers,
    gpuBytes: g.liveBytes,
    gpuCachedSchedules: g.cachedSchedules,
  };
}

/** Sizes the soak draws from: the largest first, so the warm-up reaches the high-water mark. */
const SHAPES: [batch: number, nq: number, nk: number, heads: number, kvHeads: number, d: number][] =
  [
    [2, 200, 200, 4, 2, 32],
    [1, 1, 150, 2, 1, 16],
    [1, 97, 61, 3, 1, 24],
    [2, 64, 64, 2, 2, 8],
    [1, 17, 33, 4, 4, 40],
  ];

/** Runs the soak for `seconds`; never throws for a failed call (it is in `errors`). */
export async function soak(
  options: { seconds: number; backends?: string[]; seed?: number; log?: (s: string) => void },
): Promise<SoakReport> {
  const log = options.log ?? (() => {});
  const want = options.backends ?? ["js", "wasm", "webgpu"];
  const info = want.includes("webgpu") ? await gpuInfo() : undefined;
  const backends = want.filter((b) => b !== "webgpu" || info);
  const rand = rng(options.seed ?? 1);
  const calls: Record<string, number> = Object.fromEntries(backends.map((b) => [b, 0]));
  const errors: string[] = [];
  let checked = 0, total = 0;
  const t0 = performance.now();

  const one = async (
    backend: string,
    shape: (typeof SHAPES)[number],
    check: boolean,
    dtype: "f32" | "f16",
    resident: boolean,
  ) => {
    const [batch, nq, nk, heads, kvHeads, d] = shape;
    const mask = randomMask(rand, nq, nk, [
      rand() < 0.5 ? 1 : batch,
      [1, kvHeads, heads][Math.floor(rand() * 3)],
    ]);
    const c: Case = {
      name: `soak ${backend} call ${calls[backend]}`,
      batch,
      nq,
      nk,
      heads,
      kvHeads,
      d,
      dtype,
      mask,
    };
    const extra: AttentionOptions = backend === "wasm"
      ? { backend: "wasm", threads: 1 + Math.floor(rand() * 2) }
      : { backend: backend as "js" | "webgpu" };
    if (check) {
      await checkPrepared(c, prepareCase(c, Math.floor(rand() * 2 ** 31)), extra);
      checked++;
      return;
    }
    const q = randomTensor(rand, [batch, nq, heads, d], c.dtype);
    const k = randomTensor(rand, [batch, nk, kvHeads, d], c.dtype);
    const v = randomTensor(rand, [batch, nk, kvHeads, d], c.dtype);
    const dOut = randomTensor(rand, [batch, nq, heads, d], c.dtype);
    const opt = { ...extra, mask };
    if (backend === "webgpu" && resident && (c.dtype === "f32" || info?.f16)) {
      // GPU-resident: inputs uploaded, outputs left on the GPU, read back, then destroyed
      const [gq, gk, gv, gdo] = await Promise.all([q, k, v, dOut].map(toGpu));
      const f = await attention(gq, gk, gv, { mask });
      const g = await attentionBackward({ q: gq, k: gk, v: gv, ...f, dOut: gdo }, { mask });
      await fromGpu(g.dq);
      for (const t of [gq, gk, gv, gdo, f.out, g.dq, g.dk, g.dv]) t.buffer.destroy();
      f.lse.buffer.destroy();
      return;
    }
    const { out, lse } = await attention(q, k, v, opt);
    await attentionBackward({ q, k, v, out, lse, dOut }, opt);
  };

  // warm-up: every shape, dtype and path on every backend (memory high-water marks, pipelines,
  // threads), then a quarter of the time (allocators settle)
  const variants = SHAPES.length * 4;
  const step = async (i: number) => {
    const backend = backends[i % backends.length];
    const round = Math.floor(i / backends.length);
    const warming = round < variants;
    const shape = warming
      ? SHAPES[round % SHAPES.length]
      : SHAPES[Math.floor(rand() * SHAPES.length)];
    const dtype = (warming ? round % 2 === 1 : rand() < 0.3) ? "f16" : "f32";
    const resident = warming ? Math.floor(round / 2) % 2 === 1 : rand() < 0.3;
    try {
      await one(backend, shape, i % 25 === 24, dtype, resident);
    } catch (e) {
      errors.push(`${backend}, call ${calls[backend]}: ${(e as Error).message.split("\n")[0]}`);
    }
    calls[backend]++;
    total++;
  };

  const warm = variants * backends.length;
  let i = 0;
  for (; i < warm; i++) await step(i);
  const warmUntil = performance.now() + options.seconds * 250;
  while (performance.now() < warmUntil) await step(i++);
  const start = sample(t0, total);
  log(`after the warm-up: ${format(start)}`);
  const peak = { ...start };
  const end = t0 + options.seconds * 1000;
  let next = performance.now() + Math.max(1000, options.seconds * 100);
  while (performance.now() < end) {
    await step(i++);
    if (performance.now() >= next) {
      const s = sample(t0, total);
      for (const key of Object.keys(peak) as (keyof MemorySample)[]) {
        peak[key] = Math.max(peak[key], s[key]);
      }
      log(format(s));
      next = performance.now() + Math.max(1000, options.seconds * 100);
    }
  }
  const last = sample(t0, total);
  for (const key of Object.keys(peak) as (keyof MemorySample)[]) {
    peak[key] = Math.max(peak[key], last[key]);
  }
  return {
    backends,
    calls,
    checked,
    errors,
    start,
    end: last,
    peak,
    growth: growth(start, last),
  };
}

/**
 * What grew between two samples beyond noise: the WASM memory or its threads at all, live GPU
 * buffers at all (cached ones excluded: bounded), the JS heap by more than 16 MiB, resident
 * memory by more than 64 MiB.
 */
export function growth(a: MemorySample, b: MemorySample): string[] {
  const out: string[] = [];
  if (b.wasmBytes > a.wasmBytes) out.push(`WASM memory grew ${a.wasmBytes} → ${b.wasmBytes} bytes`);
  if (b.wasmThreads > a.wasmThreads) {
    out.push(`WASM threads grew ${a.wasmThreads} → ${b.wasmThreads}`);
  }
  if (b.gpuBuffers > a.gpuBuffers) {
    out.push(`live GPU buffers grew ${a.gpuBuffers} → ${b.gpuBuffers}`);
  }
  if (b.heapUsed - a.heapUsed > 16 * MiB) {
    out.push(`JS heap grew ${mib(a.heapUsed)} → ${mib(b.heapUsed)}`);
  }
  if (b.rss - a.rss > 64 * MiB) out.push(`resident memory grew ${mib(a.rss)} → ${mib(b.rss)}`);
  return out;
}

function mib(x: number): string {
  return `${(x / MiB).toFixed(1)} MiB`;
}

/** One line of a sample. */
export function format(s: MemorySample): string {
  return `${s.t.toFixed(0)} s, ${s.calls} calls: rss ${mib(s.rss)}, heap ${mib(s.heapUsed)}, ` +
    `external ${mib(s.external)}, wasm ${mib(s.wasmBytes)} / ${s.wasmThreads} threads, ` +
    `GPU ${s.gpuBuffers} buffers + ${s.gpuCachedSchedules} cached schedules (${mib(s.gpuBytes)})`;
}

async function main(args: string[]): Promise<number> {
  const usage = "deno task soak [--minutes N | --seconds N] [--backends js,wasm,webgpu] [--seed S]";
  let a;
  try {
    a = parseArgs({
      args,
      strict: true,
      options: {
        minutes: { type: "string" },
        seconds: { type: "string" },
        backends: { type: "string" },
        seed: { type: "string" },
        help: { type: "boolean" },
      },
    }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n${usage}`);
    return 2;
  }
  if (a.help) {
    console.log(usage);
    return 0;
  }
  const seconds = a.seconds !== undefined ? Number(a.seconds) : 60 * Number(a.minutes ?? 1);
  if (!(seconds > 0)) {
    console.error(`the duration must be a positive number\n${usage}`);
    return 2;
  }
  if (!(globalThis as { gc?: unknown }).gc) {
    console.error(
      "note: run with --v8-flags=--expose-gc (as deno task soak does) for exact heap figures",
    );
  }
  const r = await soak({
    seconds,
    backends: a.backends?.split(","),
    seed: a.seed !== undefined ? Number(a.seed) : 1,
    log: (s) => console.error(s),
  });
  console.log(`backends: ${r.backends.join(", ")}`);
  console.log(
    `calls: ${Object.entries(r.calls).map(([b, n]) => `${b} ${n}`).join(", ")}; ` +
      `${r.checked} checked against the reference`,
  );
  console.log(`start: ${format(r.start)}`);
  console.log(`end:   ${format(r.end)}`);
  console.log(`peak:  ${format(r.peak)}`);
  for (const e of r.errors) console.log(`ERROR ${e}`);
  console.log(r.growth.length ? `NOT FLAT: ${r.growth.join("; ")}` : "memory flat");
  return r.errors.length || r.growth.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
