/**
 * The backends and the rule that picks one: `auto` is WebGPU on a hardware adapter, else WASM
 * (a software rasteriser such as lavapipe is slower than WASM), else (no WebAssembly here, or no
 * way to compile it) the plain TypeScript backend. {@linkcode backendInfo} reports
 * the same choice that a call makes.
 *
 * @module
 */

import { missingFeature } from "./_problem.ts";
import { checkKeys } from "./_options.ts";
import type {
  AttentionOptions,
  Backend,
  BackendInfo,
  BackendName,
  ComputedBy,
  Problem,
} from "./types.ts";
import * as tiled from "./tiled.ts";
import { gpuBackend } from "./gpu/backend.ts";
import { gpuContext } from "./gpu/device.ts";
import { wasmBackend, wasmUnusable } from "./wasm/backend.ts";

/** The plain TypeScript backend: `tiled.ts`, the readable specification. */
export const jsBackend: Backend = {
  name: "js",
  features: new Set(["softcap", "dropout", "blockMask", "sinks", "alibiSlopes", "blockTable"]),
  forward: (p, q, k, v) => Promise.resolve(tiled.forward(p, q, k, v)),
  backward: (p, s) => Promise.resolve(tiled.backward(p, s)),
  info: () =>
    Promise.resolve({
      name: "js",
      device: "plain TypeScript (float64 arithmetic, one thread)",
      threads: 1,
      forwardTile: [tiled.BLOCK, tiled.BLOCK],
    }),
};

/** Every backend by name. */
export const BACKENDS: Readonly<Record<Exclude<BackendName, "auto">, Backend>> = {
  js: jsBackend,
  wasm: wasmBackend,
  webgpu: gpuBackend,
};

/**
 * The backend `name` means for problem `p` (for `auto`, also the CPU backend to fall back to if
 * the GPU fails during the call). Without a problem, the choice for a call that uses no option a
 * backend may lack.
 */
export async function pickBackend(
  name: BackendName,
  p?: Problem,
): Promise<{ backend: Backend; fallback?: Backend }> {
  if (name !== "auto") return { backend: BACKENDS[name] };
  // auto: the fastest backend that implements every option used
  const cpu = (p && missingFeature(wasmBackend, p)) || wasmUnusable() ? jsBackend : wasmBackend;
  const ctx = await gpuContext().catch(() => undefined);
  if (!ctx || ctx.software || (p && missingFeature(gpuBackend, p))) return { backend: cpu };
  return { backend: gpuBackend, fallback: cpu };
}

/** Options of {@linkcode backendInfo}. */
export interface BackendInfoOptions {
  /** The backend to describe (default `auto`: the one calls with `backend: "auto"` use). */
  backend?: BackendName;
  /** Head dimension whose forward tile to report (default 64). */
  headDim?: number;
}

/**
 * Which backend computes a call, and on what: for `auto`, the backend it picks on this machine.
 *
 * @throws {Error} when the backend asked for cannot run here (e.g. `webgpu` without an adapter).
 * @example
 * ```ts
 * import { backendInfo } from "./mod.ts";
 *
 * const info = await backendInfo();
 * console.log(`${info.name} on ${info.device}; forward tile ${info.forwardTile.join(" × ")}`);
 * ```
 */
export async function backendInfo(options: BackendInfoOptions = {}): Promise<BackendInfo> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("backendInfo: options must be an object");
  }
  checkKeys(options, ["backend", "headDim"], "options");
  const { backend = "auto", headDim = 64 } = options;
  if (!Object.hasOwn(BACKENDS, backend) && backend !== "auto") {
    throw new TypeError(
      `options.backend must be "auto", "webgpu", "wasm" or "js", got ${JSON.stringify(backend)}`,
    );
  }
  if (!Number.isSafeInteger(headDim) || headDim < 1) {
    throw new RangeError(`options.headDim must be a positive integer, got ${headDim}`);
  }
  return await (await pickBackend(backend)).backend.info(headDim);
}

/** Throws if backend `b` lacks an option the problem uses. */
export function checkFeatures(b: Backend, p: Problem): void {
  const f = missingFeature(b, p);
  if (f) {
    throw new TypeError(
      `backend "${b.name}" does not implement options.${f} yet; use backend "js" (or "auto")`,
    );
  }
}

/** Throws unless `options.backend` lets GPU-resident tensors be used (webgpu, auto). */
export function requireWebGpu(options: AttentionOptions): void {
  const name = options.backend ?? "auto";
  if (name !== "auto" && name !== "webgpu") {
    throw new TypeError(`GPU-resident tensors need backend "webgpu" (or "auto"), not "${name}"`);
  }
}

/** Which backend computed a result: its name, and for webgpu the adapter's. */
export async function computedBy(backend: ComputedBy["backend"]): Promise<ComputedBy> {
  if (backend !== "webgpu") return { backend };
  return { backend, adapter: (await gpuContext())?.name };
}
