/**
 * What the bench runs on: which backends work here (found by trying a tiny attention call, so a
 * backend that lands later is found without changing this file), the device behind each
 * (WebGPU adapter and features, WASM SIMD / relaxed SIMD and threads), and the machine.
 *
 * @module
 */

import { attention, type AttentionOptions, type BackendName } from "../attention.ts";
import { tensor } from "../tensor.ts";
import { BLOCK as JS_BLOCK } from "../tiled.ts";
import denoJson from "../deno.json" with { type: "json" };

/** Tile sizes of the backends whose tiles are known; others get 64×64 (`--tile` overrides). */
const BACKEND_TILES: Record<string, [number, number]> = { js: [JS_BLOCK, JS_BLOCK] };

/** The tile size a backend schedules with, when known; else 64×64. */
export function backendTile(name: string): [number, number] {
  return BACKEND_TILES[name] ?? [64, 64];
}

/** Whether a backend works here, and on what. */
export interface BackendStatus {
  /** Backend name, as passed to `attention`'s `backend` option. */
  name: string;
  /** The probe call succeeded. */
  available: boolean;
  /** Why not, when not available: the error of the probe call. */
  reason?: string;
  /** One line for people: adapter and features, or SIMD and threads. */
  device: string;
  /** The same as data, for the JSON report. */
  details: Record<string, unknown>;
}

/** The machine and software versions, for the JSON report. */
export interface MachineInfo {
  os: string;
  arch: string;
  osRelease: string;
  cpuModel: string | null;
  logicalCpus: number;
  memoryGiB: number | null;
  loadAverage: number[] | null;
  versions: { library: string; deno: string; v8: string; typescript: string };
}

/** Attention options with the extra `threads` option a backend may take (WASM). */
export type BenchOptions = AttentionOptions & { threads?: number };

/** Options to run `backend` with, adding `threads` when given. */
export function backendOptions(backend: string, threads?: number): BenchOptions {
  const o: BenchOptions = { backend: backend as BackendName };
  if (threads !== undefined) o.threads = threads;
  return o;
}

/**
 * Tries a tiny attention call on `name` and describes the device behind it. Never throws: a
 * backend that fails is reported as unavailable with the error message.
 */
export async function probeBackend(name: string, threads?: number): Promise<BackendStatus> {
  if (name === "webgpu") quietVulkanLoader();
  const details: Record<string, unknown> = {};
  let available = true, reason: string | undefined;
  try {
    const x = tensor(Float32Array.from({ length: 16 }, (_, i) => (i % 5) / 5 - 0.4), [1, 2, 1, 8]);
    const { out } = await attention(x, x, x, { ...backendOptions(name, threads), causal: true });
    if (!out.data.every((y) => Number.isFinite(y))) throw new Error("probe gave non-finite output");
  } catch (e) {
    available = false;
    reason = e instanceof Error ? e.message : String(e);
  }
  let device: string;
  if (name === "webgpu") {
    Object.assign(details, await webgpuInfo());
    device = describeWebgpu(details);
  } else if (name === "wasm") {
    Object.assign(details, wasmInfo(), threads === undefined ? {} : { threadsRequested: threads });
    device = describeWasm(details);
  } else if (name === "js") {
    details.arithmetic = "float64";
    details.threads = 1;
    device = "plain TypeScript (float64 arithmetic, one thread)";
  } else {
    device = "";
  }
  return { name, available, reason, device, details };
}

/**
 * On Linux the Vulkan driver prints "XDG_RUNTIME_DIR is invalid or not set" to stderr when that
 * variable is unset (containers, CI); point it at /tmp for this process, as `.ci/run` does.
 */
function quietVulkanLoader(): void {
  if (Deno.build.os !== "linux") return;
  try {
    if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  } catch { /* no --allow-env: the message stays */ }
}

/** WebGPU adapter details, or `{ adapter: null, why }` when there is none. */
export async function webgpuInfo(): Promise<Record<string, unknown>> {
  quietVulkanLoader();
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) return { adapter: null, why: "navigator.gpu is not defined" };
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { adapter: null, why: `requestAdapter failed: ${(e as Error).message}` };
  }
  if (!adapter) return { adapter: null, why: "requestAdapter() returned null" };
  const info = adapter.info as GPUAdapterInfo & {
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
    isFallbackAdapter?: boolean;
  };
  const features = [...adapter.features].sort();
  return {
    adapter: info.description || `${info.vendor} ${info.architecture} ${info.device}`.trim(),
    vendor: info.vendor,
    architecture: info.architecture,
    fallback: info.isFallbackAdapter ?? null,
    shaderF16: features.includes("shader-f16"),
    subgroups: features.includes("subgroups"),
    subgroupSizes: info.subgroupMinSize === undefined
      ? null
      : [info.subgroupMinSize, info.subgroupMaxSize],
    timestampQuery: features.includes("timestamp-query"),
    features,
    limits: {
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    },
  };
}

function describeWebgpu(d: Record<string, unknown>): string {
  if (d.adapter === null) return `no adapter (${d.why})`;
  const yes = (b: unknown) => (b ? "yes" : "no");
  const sizes = d.subgroupSizes as number[] | null;
  return `${d.adapter}${d.fallback ? " [fallback/CPU adapter]" : ""}, shader-f16 ${
    yes(d.shaderF16)
  }, subgroups ${yes(d.subgroups)}${sizes ? ` (sizes ${sizes[0]}-${sizes[1]})` : ""}, ` +
    `timestamp-query ${yes(d.timestampQuery)}`;
}

// (func (result v128) v128.const i32x4 0 0 0 0)
const SIMD_MODULE = new Uint8Array([
  0,
  97,
  115,
  109,
  1,
  0,
  0,
  0,
  1,
  5,
  1,
  96,
  0,
  1,
  123,
  3,
  2,
  1,
  0,
  10,
  22,
  1,
  20,
  0,
  253,
  12,
  ...new Array(16).fill(0),
  11,
]);
// (func (result v128) (i32x4.relaxed_trunc_f32x4_s (v128.const i32x4 0 0 0 0)))
const RELAXED_SIMD_MODULE = new Uint8Array([
  0,
  97,
  115,
  109,
  1,
  0,
  0,
  0,
  1,
  5,
  1,
  96,
  0,
  1,
  123,
  3,
  2,
  1,
  0,
  10,
  25,
  1,
  23,
  0,
  253,
  12,
  ...new Array(16).fill(0),
  253,
  129,
  2,
  11,
]);

/** WASM features the runtime validates, and the threads it could use. */
export function wasmInfo(): Record<string, unknown> {
  return {
    simd: WebAssembly.validate(SIMD_MODULE),
    relaxedSimd: WebAssembly.validate(RELAXED_SIMD_MODULE),
    sharedMemory: typeof SharedArrayBuffer === "function",
    hardwareConcurrency: navigator.hardwareConcurrency,
  };
}

function describeWasm(d: Record<string, unknown>): string {
  const yes = (b: unknown) => (b ? "yes" : "no");
  const threads = d.threadsRequested ?? d.hardwareConcurrency;
  return `WASM SIMD ${yes(d.simd)}, relaxed-SIMD ${yes(d.relaxedSimd)}, threads ${threads}` +
    `${d.threadsRequested === undefined ? " (hardware concurrency)" : ""}`;
}

/** The machine, the OS and the versions of Deno, V8, TypeScript and this library. */
export function machineInfo(): MachineInfo {
  let cpuModel: string | null = null, loadAverage: number[] | null = null;
  let memoryGiB: number | null = null;
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"));
    cpuModel = m ? m[1].trim() : null;
  } catch { /* not Linux, or no read permission */ }
  try {
    loadAverage = Deno.loadavg();
  } catch { /* no --allow-sys */ }
  try {
    memoryGiB = Math.round(Deno.systemMemoryInfo().total / 2 ** 30 * 10) / 10;
  } catch { /* no --allow-sys */ }
  let osRelease = "";
  try {
    osRelease = Deno.osRelease();
  } catch { /* no --allow-sys */ }
  return {
    os: Deno.build.os,
    arch: Deno.build.arch,
    osRelease,
    cpuModel,
    logicalCpus: navigator.hardwareConcurrency,
    memoryGiB,
    loadAverage,
    versions: {
      library: denoJson.version,
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
    },
  };
}

/** The backend `auto` stands for: the first available one in `order`, or undefined. */
export function resolveAuto(statuses: BackendStatus[]): BackendStatus | undefined {
  return statuses.find((s) => s.available);
}
