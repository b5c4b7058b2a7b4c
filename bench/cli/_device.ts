/**
 * What the bench runs on: which backends work here (found by trying a tiny attention call, so a
 * backend that lands later is found without changing this file), the device behind each
 * (WebGPU adapter and features, WASM SIMD / relaxed SIMD and threads), and the machine.
 *
 * @module
 */

import {
  attention,
  attentionBackward,
  type AttentionOptions,
  backendInfo,
  type BackendName,
  tensor,
} from "../../mod.ts";
import denoJson from "../../deno.json" with { type: "json" };
import { BACKENDS } from "./_args.ts";

/**
 * The tile (query rows × key columns) `backend` schedules its forward pass with at head dimension
 * `headDim`, as the library reports it ({@linkcode backendInfo}); 64 × 64 for a backend the
 * library does not know or that cannot run here. Used for the tile density column, the pictures
 * and the SVGs (`--tile` overrides it).
 *
 * @example
 * ```ts
 * import { backendTile } from "./_device.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(await backendTile("wasm", 64), [48, 96]);
 * assert.deepEqual(await backendTile("later", 64), [64, 64]);
 * ```
 */
export async function backendTile(backend: string, headDim: number): Promise<[number, number]> {
  try {
    return (await backendInfo({ backend: backend as BackendName, headDim })).forwardTile;
  } catch {
    return [64, 64];
  }
}

/** Whether a backend works here, and on what. */
export interface BackendStatus {
  /** Backend name, as passed to `attention`'s `backend` option. */
  name: string;
  /** The forward probe call succeeded. */
  available: boolean;
  /** Why not, when not available: the error of the forward probe call. */
  reason?: string;
  /** The backward probe call succeeded too. */
  backward: boolean;
  /** Why not, when the forward pass works but the backward pass does not. */
  backwardReason?: string;
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

/** The probe problem: B=1, N=24, H=2, d=16, fixed pseudo-random f32 values. */
function probeInput(seed: number) {
  let x = seed;
  const data = Float32Array.from({ length: 24 * 2 * 16 }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32 - 0.5;
  });
  return tensor(data, [1, 24, 2, 16]);
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Runs a small causal forward call and its backward call on `name` (a backend, or `auto`) and
 * describes the device behind it. Never throws: a backend whose forward call fails is reported
 * as unavailable, one whose backward call fails as forward-only, with the error messages.
 */
export async function probeBackend(name: string, threads?: number): Promise<BackendStatus> {
  if (name === "webgpu" || name === "auto") quietVulkanLoader();
  const status: BackendStatus = {
    name,
    available: false,
    backward: false,
    device: "",
    details: {},
  };
  const [q, k, v, dOut] = [1, 2, 3, 4].map(probeInput);
  const options = { ...backendOptions(name, threads), causal: true };
  try {
    const { out, lse } = await attention(q, k, v, options);
    if (!out.data.every((y) => Number.isFinite(y))) throw new Error("probe gave non-finite output");
    status.available = true;
    try {
      await attentionBackward({ q, k, v, out, lse, dOut }, options);
      status.backward = true;
    } catch (e) {
      status.backwardReason = message(e);
    }
  } catch (e) {
    status.reason = message(e);
  }
  const details = status.details;
  if (name === "webgpu") {
    Object.assign(details, await webgpuInfo());
    status.device = describeWebgpu(details);
  } else if (name === "wasm") {
    Object.assign(details, wasmInfo(), threads === undefined ? {} : { threadsRequested: threads });
    status.device = describeWasm(details);
  } else if (name === "js") {
    details.arithmetic = "float64";
    details.threads = 1;
    status.device = "plain TypeScript (float64 arithmetic, one thread)";
  }
  return status;
}

/** Whether `status`'s backend can run `pass`. */
export function supports(status: BackendStatus, pass: "fwd" | "bwd"): boolean {
  return pass === "fwd" ? status.available : status.backward;
}

/** The backends a run is made with, and what was found on the way. */
export interface BackendChoice {
  /** Every concrete backend probed, available or not. */
  statuses: BackendStatus[];
  /** The backends to time (available ones only). */
  chosen: BackendStatus[];
  /** With `auto`: the backend the library's `auto` ran, when recognised. */
  auto?: string;
  /** Why nothing can be timed, when `chosen` is empty. */
  error?: string;
}

/**
 * Probes the backends `choice` names (`auto`, `all` or one backend; `names` are the concrete
 * backends to look at, default {@linkcode BACKENDS}) and picks the ones to time, showing what it
 * probes on `progress` and clearing it at the end. For `auto` the library says which backend it
 * picks ({@linkcode backendInfo}), so the bench reports (and times) exactly what `auto` runs on
 * this machine, without restating the library's rule.
 */
export async function chooseBackends(
  choice: string,
  options: {
    names?: readonly string[];
    threads?: number;
    progress?: { show(what: string): void; clear(): void };
  } = {},
): Promise<BackendChoice> {
  const { names = BACKENDS, threads, progress } = options;
  const probe = (n: string) => {
    progress?.show(`probing backend ${n}`);
    return probeBackend(n, threads);
  };
  try {
    return await choose(choice, names, probe);
  } finally {
    progress?.clear();
  }
}

async function choose(
  choice: string,
  names: readonly string[],
  probe: (name: string) => Promise<BackendStatus>,
): Promise<BackendChoice> {
  const statuses: BackendStatus[] = [];
  for (const n of choice === "auto" || choice === "all" ? names : [choice]) {
    statuses.push(await probe(n));
  }
  if (choice === "all") {
    const chosen = statuses.filter((s) => s.available);
    return { statuses, chosen, error: chosen.length ? undefined : "no backend works here" };
  }
  if (choice !== "auto") {
    const s = statuses[0];
    return s.available
      ? { statuses, chosen: [s] }
      : { statuses, chosen: [], error: `backend ${s.name} is not available: ${s.reason}` };
  }
  let picked: string;
  try {
    picked = (await backendInfo()).name;
  } catch (e) {
    return { statuses, chosen: [], error: `backend auto is not available: ${message(e)}` };
  }
  const s = statuses.find((s) => s.available && s.name === picked);
  if (!s) {
    return {
      statuses,
      chosen: [],
      error: `backend auto picks ${picked}, whose probe failed or is not among ${names.join(", ")}`,
    };
  }
  return { statuses, chosen: [s], auto: s.name };
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

/**
 * A module with one function `() -> v128` whose body is `body` (without the final `end`): it
 * validates only where the runtime knows every instruction in `body`.
 */
function v128Module(body: number[]): Uint8Array<ArrayBuffer> {
  const code = [0, ...body, 0x0b]; // no locals, body, end
  return Uint8Array.of(
    ...[0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0], // "\0asm", version 1
    ...[1, 5, 1, 0x60, 0, 1, 0x7b], // type section: one type, () -> v128
    ...[3, 2, 1, 0], // function section: one function of type 0
    ...[10, code.length + 2, 1, code.length, ...code], // code section: one body
  );
}
const V128_CONST_0 = [0xfd, 12, ...new Array(16).fill(0)]; // v128.const i32x4 0 0 0 0
const SIMD_MODULE = v128Module(V128_CONST_0);
// i32x4.relaxed_trunc_f32x4_s (v128.const 0)
const RELAXED_SIMD_MODULE = v128Module([...V128_CONST_0, 0xfd, 0x81, 0x02]);

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
