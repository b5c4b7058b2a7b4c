/**
 * WebGPU device acquisition: one device per process with the adapter's largest limits and the
 * features the kernels can use (shader-f16, timestamp-query, subgroups), and a pipeline cache
 * keyed by every compile-time constant of a kernel.
 *
 * Deno 2.9 accepts "subgroups" in requestDevice although adapter.features does not list it,
 * so it is probed by asking for it (where subgroups are at least 8 wide); the tile kernels use
 * subgroup shuffles only when they are at least 16 wide, the decoding kernel at 8, and every
 * kernel works without them.
 *
 * Device loss: the context records a lost device (`lost`) and wakes every pending wait of a call
 * ({@linkcode unlessLost}), so that no call waits forever on a dead device; the next call
 * acquires a new device. Deno reports `device.lost` only some time after `device.destroy()`, so
 * the library's device has its `destroy` wrapped to record the loss at once.
 *
 * @module
 */

import type { GpuInfo } from "../types.ts";

/** The process-wide GPU context. */
export interface GpuContext {
  /** The adapter, when the library requested the device itself. */
  readonly adapter?: GPUAdapter;
  readonly device: GPUDevice;
  /** The device is the caller's ({@linkcode useGpuDevice}): never replaced behind its back. */
  readonly external: boolean;
  /** Adapter description, e.g. "NVIDIA H100 80GB HBM3". */
  readonly name: string;
  /** Storage and arithmetic in binary16 are available. */
  readonly f16: boolean;
  /** Timestamp queries are available. */
  readonly timestamps: boolean;
  /** Subgroup operations are available with subgroups of at least 16 invocations. */
  readonly subgroups: boolean;
  /** The smallest subgroup size when subgroup operations are enabled at all (0: not enabled). */
  readonly subgroupLanes: number;
  /** A software rasteriser (llvmpipe, lavapipe, SwiftShader): slower than the WASM backend. */
  readonly software: boolean;
  readonly limits: GPUSupportedLimits;
  /** Set once the device is lost; the next call acquires a new device. */
  lost: string | undefined;
  /** Called once when the device is lost (see {@linkcode unlessLost}). */
  readonly lostWaiters: Set<() => void>;
  /** Compiled pipelines by key. */
  readonly pipelines: Map<string, GPUComputePipeline>;
  /** Pipelines being compiled, by key (concurrent calls share one compilation). */
  readonly compiling: Map<string, Promise<GPUComputePipeline>>;
  /**
   * Work has been recorded into a caller's encoder on this device: buffers the library drops
   * from its caches may still be referenced by a command buffer the caller has not submitted,
   * so they go to the garbage collector instead of being destroyed.
   */
  recorded: boolean;
}

/** What a context offers, as the public API reports it. */
export function adapterInfo(ctx: GpuContext): GpuInfo {
  const { name, f16, subgroups, timestamps, software } = ctx;
  return { name, f16, subgroups, timestamps, software };
}

/** The library's own context (acquired on first use). */
let current: Promise<GpuContext | undefined> | undefined;
/** The caller's device, when {@linkcode useGpuDevice} gave one: used instead of the own one. */
let chosen: GpuContext | undefined;

/** Where adapters come from: `navigator.gpu.requestAdapter` unless a test replaces it. */
export type AdapterSource = (options: GPURequestAdapterOptions) => Promise<GPUAdapter | null>;

const defaultSource: AdapterSource = (options) =>
  hasWebGpu() ? navigator.gpu.requestAdapter(options) : Promise.resolve(null);
let adapterSource: AdapterSource = defaultSource;

/**
 * Replaces how the adapter is found (undefined: the default), for tests of the no-adapter and
 * failed-initialisation paths; drops the current context so that the next call uses the new
 * source. Returns the previous source. Internal: not exported from `mod.ts`.
 */
export function setAdapterSource(source: AdapterSource | undefined): AdapterSource {
  const old = adapterSource;
  adapterSource = source ?? defaultSource;
  current = undefined;
  return old;
}

/** The Error of a call that was pending when the device was lost. */
export function deviceLostError(ctx: GpuContext, during: string): Error {
  return new Error(
    `WebGPU device lost during ${during} (${ctx.lost ?? "device lost"}); nothing was returned, ` +
      (ctx.external
        ? "and the device given to useGpuDevice is gone: give a new one (or undefined for the " +
          "library's own)"
        : "and the next call creates a new device (GPU tensors of the lost device must be " +
          "uploaded again)"),
  );
}

const external = new WeakMap<GPUDevice, GpuContext>();

/**
 * Makes the library compute on `device`, a GPUDevice the program already has (its own, or the
 * device of another WebGPU library, such as onnxruntime-web's `await ort.env.webgpu.device`), so
 * that GPU tensors can be shared with it; `undefined` goes back to the library's own device. The
 * kernels use what that device was created with: `shader-f16` for f16 tensors, `subgroups` for
 * subgroup reductions, its limits for tile sizes; a call that needs more says what to request.
 * With WebGPU's default 16 KiB of workgroup memory, head dimensions up to 128 run (on smaller
 * tiles than the adapter's own limit allows: request `maxComputeWorkgroupStorageSize` for speed).
 * A lost device is not replaced: calls fail until another is given.
 *
 * @example
 * ```ts
 * import { gpuInfo, useGpuDevice } from "../mod.ts";
 *
 * const adapter = await navigator.gpu?.requestAdapter();
 * if (adapter) {
 *   const device = await adapter.requestDevice({
 *     requiredFeatures: adapter.features.has("shader-f16") ? ["shader-f16"] : [],
 *   });
 *   useGpuDevice(device);
 *   console.log((await gpuInfo())?.name);
 *   useGpuDevice(undefined);
 * }
 * ```
 */
export function useGpuDevice(device: GPUDevice | undefined): GpuInfo | undefined {
  if (device === undefined) {
    chosen = undefined;
    return undefined;
  }
  if (typeof GPUDevice === "undefined" || !(device instanceof GPUDevice)) {
    throw new TypeError("useGpuDevice: device must be a GPUDevice (or undefined)");
  }
  let ctx = external.get(device);
  if (!ctx) {
    const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo as
      | (GPUAdapterInfo & { isFallbackAdapter?: boolean; subgroupMinSize?: number })
      | undefined;
    const name = info?.description || info?.device || info?.vendor || "the caller's GPUDevice";
    ctx = newContext(device, {
      name,
      fallback: info?.isFallbackAdapter === true,
      subgroupLanes: device.features.has("subgroups") ? info?.subgroupMinSize ?? 0 : 0,
    });
    external.set(device, ctx);
  }
  chosen = ctx;
  return adapterInfo(ctx);
}

/**
 * A context for `device` (the library's own when `adapter` is given, else the caller's): what
 * the device offers, read from it, and empty caches; a loss of the device is recorded.
 */
function newContext(
  device: GPUDevice,
  o: { adapter?: GPUAdapter; name: string; fallback: boolean; subgroupLanes: number },
): GpuContext {
  const ctx: GpuContext = {
    adapter: o.adapter,
    device,
    external: o.adapter === undefined,
    name: o.name,
    software: o.fallback || SOFTWARE.test(o.name),
    f16: device.features.has("shader-f16"),
    timestamps: device.features.has("timestamp-query"),
    subgroups: o.subgroupLanes >= 16,
    subgroupLanes: o.subgroupLanes,
    limits: device.limits,
    lost: undefined,
    lostWaiters: new Set(),
    recorded: false,
    pipelines: new Map(),
    compiling: new Map(),
  };
  device.lost.then((i) => loseContext(ctx, i.message || i.reason || "device lost"));
  return ctx;
}

/** Marks a context lost and wakes every call waiting on it. */
function loseContext(ctx: GpuContext, reason: string): void {
  if (ctx.lost !== undefined) return;
  ctx.lost = reason;
  for (const f of [...ctx.lostWaiters]) f();
  ctx.lostWaiters.clear();
}

/** Adapter names of software rasterisers (slower than the WASM backend). */
const SOFTWARE = /llvmpipe|lavapipe|swiftshader|software/i;

/**
 * Waits for `p`, or rejects with {@linkcode deviceLostError} as soon as the device is lost, so
 * that a dead device never leaves a call waiting.
 */
export function unlessLost<T>(ctx: GpuContext, p: Promise<T>, during: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const lost = () => {
      p.catch(() => {}); // it settles later on the dead device, or never; nobody waits for it
      reject(deviceLostError(ctx, during));
    };
    if (ctx.lost !== undefined) return lost();
    ctx.lostWaiters.add(lost);
    p.then(
      (x) => (ctx.lostWaiters.delete(lost), resolve(x)),
      (e) => (ctx.lostWaiters.delete(lost), reject(e)),
    );
  });
}

/** Resolves after `ms` milliseconds or as soon as the device is lost, whichever is first. */
export function lostWithin(ctx: GpuContext, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (ctx.lost !== undefined) return resolve();
    const done = () => {
      clearTimeout(timer);
      ctx.lostWaiters.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    ctx.lostWaiters.add(done);
  });
}

/** Whether WebGPU exists in this runtime at all. */
export function hasWebGpu(): boolean {
  return typeof navigator !== "undefined" && "gpu" in navigator && !!navigator.gpu;
}

/**
 * The GPU context: the caller's device given to {@linkcode useGpuDevice}, else the library's
 * own, created on first use (undefined when there is no adapter). A lost own device is replaced
 * by a new one on the next call; a lost caller's device is not.
 */
export function gpuContext(): Promise<GpuContext | undefined> {
  if (chosen) return Promise.resolve(chosen);
  if (current) {
    return current.then((ctx) => {
      if (ctx && ctx.lost !== undefined) {
        current = undefined;
        return gpuContext();
      }
      return ctx;
    });
  }
  current = acquire().catch((e) => {
    current = undefined;
    throw e;
  });
  return current;
}

async function acquire(): Promise<GpuContext | undefined> {
  const adapter = await adapterSource({ powerPreference: "high-performance" });
  if (!adapter) return undefined;
  const requiredLimits: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, number>;
  for (
    const k of [
      "maxStorageBufferBindingSize",
      "maxBufferSize",
      "maxComputeWorkgroupStorageSize",
      "maxComputeInvocationsPerWorkgroup",
      "maxComputeWorkgroupSizeX",
      "maxStorageBuffersPerShaderStage",
      "maxComputeWorkgroupsPerDimension",
    ]
  ) if (typeof lim[k] === "number") requiredLimits[k] = lim[k];
  const features: GPUFeatureName[] = [];
  for (const f of ["shader-f16", "timestamp-query"] as GPUFeatureName[]) {
    if (adapter.features.has(f)) features.push(f);
  }
  // "subgroups" is not always listed by the adapter; probe it.
  let device: GPUDevice | undefined;
  let subgroupLanes = 0;
  const minSize = (adapter.info as unknown as { subgroupMinSize?: number }).subgroupMinSize ?? 0;
  if (minSize >= 8) {
    try {
      device = await adapter.requestDevice({
        requiredFeatures: [...features, "subgroups" as GPUFeatureName],
        requiredLimits,
      });
      subgroupLanes = minSize;
    } catch {
      device = undefined;
    }
  }
  device ??= await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  const name = adapter.info.description || adapter.info.device || adapter.info.vendor || "unknown";
  const ctx = newContext(device, {
    adapter,
    name,
    fallback: (adapter.info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ===
      true,
    subgroupLanes,
  });
  const lose = (reason: string) => loseContext(ctx, reason);
  // Deno resolves device.lost only a while after destroy(): record the loss at once.
  const destroy = device.destroy.bind(device);
  Object.defineProperty(device, "destroy", {
    configurable: true,
    writable: true,
    value: () => {
      lose("the device was destroyed (GPUDevice.destroy())");
      destroy();
    },
  });
  return ctx;
}

/** A compute pipeline for WGSL `code` with the explicit `layout` of its bindings (`binding.ts`), compiled once per context and `key`. */
export async function pipeline(
  ctx: GpuContext,
  key: string,
  code: () => string,
  layout: GPUPipelineLayout,
): Promise<GPUComputePipeline> {
  const hit = ctx.pipelines.get(key);
  if (hit) return hit;
  let pending = ctx.compiling.get(key);
  if (!pending) {
    pending = compile(ctx, key, code, layout).finally(() => ctx.compiling.delete(key));
    ctx.compiling.set(key, pending);
  }
  return await unlessLost(ctx, pending, `the compilation of ${key}`);
}

async function compile(
  ctx: GpuContext,
  key: string,
  code: () => string,
  layout: GPUPipelineLayout,
): Promise<GPUComputePipeline> {
  const { device } = ctx;
  // scope only the synchronous module creation, popped before any await, so that concurrent
  // calls cannot pop each other's scopes; pipeline errors reject the async creation instead
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: code(), label: key });
  const created = device.createComputePipelineAsync({
    layout,
    compute: { module, entryPoint: "main" },
    label: key,
  }).catch((e) => e as Error);
  const scope = device.popErrorScope();
  const [p, err] = await Promise.all([created, scope]);
  if (ctx.lost !== undefined) throw deviceLostError(ctx, `the compilation of ${key}`);
  if (p instanceof Error || err) {
    const info = await module.getCompilationInfo();
    const msgs = info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("\n");
    throw new Error(
      `WebGPU pipeline ${key} failed to compile: ${(p as Error).message ?? err?.message}\n${msgs}`,
    );
  }
  ctx.pipelines.set(key, p);
  return p;
}
