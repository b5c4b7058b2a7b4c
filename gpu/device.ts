/**
 * WebGPU device acquisition: one device per process with the adapter's largest limits and the
 * features the kernels can use (shader-f16, timestamp-query, subgroups), and a pipeline cache
 * keyed by every compile-time constant of a kernel.
 *
 * Deno 2.9 accepts "subgroups" in requestDevice although adapter.features does not list it,
 * so it is probed by asking for it; the kernels use subgroup shuffles only when the adapter's
 * subgroups are at least 16 wide, and work without them.
 *
 * @module
 */

/** The process-wide GPU context. */
export interface GpuContext {
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  /** Adapter description, e.g. "NVIDIA H100 80GB HBM3". */
  readonly name: string;
  /** Storage and arithmetic in binary16 are available. */
  readonly f16: boolean;
  /** Timestamp queries are available. */
  readonly timestamps: boolean;
  /** Subgroup operations are available with subgroups of at least 16 invocations. */
  readonly subgroups: boolean;
  /** A software rasteriser (llvmpipe, lavapipe, SwiftShader): slower than the WASM backend. */
  readonly software: boolean;
  readonly limits: GPUSupportedLimits;
  /** Set once the device is lost; the next call acquires a new device. */
  lost: string | undefined;
  /** Compiled pipelines by key. */
  readonly pipelines: Map<string, GPUComputePipeline>;
}

let current: Promise<GpuContext | undefined> | undefined;

/** Whether WebGPU exists in this runtime at all. */
export function hasWebGpu(): boolean {
  return typeof navigator !== "undefined" && "gpu" in navigator && !!navigator.gpu;
}

/**
 * The GPU context, created on first use; undefined when there is no adapter. A lost device is
 * replaced by a new one on the next call.
 */
export function gpuContext(): Promise<GpuContext | undefined> {
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
  if (!hasWebGpu()) return undefined;
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
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
  let subgroups = false;
  const minSize = (adapter.info as unknown as { subgroupMinSize?: number }).subgroupMinSize ?? 0;
  if (minSize >= 16) {
    try {
      device = await adapter.requestDevice({
        requiredFeatures: [...features, "subgroups" as GPUFeatureName],
        requiredLimits,
      });
      subgroups = true;
    } catch {
      device = undefined;
    }
  }
  device ??= await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  const name = adapter.info.description || adapter.info.device || adapter.info.vendor || "unknown";
  const ctx: GpuContext = {
    adapter,
    device,
    name,
    software:
      (adapter.info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
      /llvmpipe|lavapipe|swiftshader|software/i.test(name),
    f16: device.features.has("shader-f16"),
    timestamps: device.features.has("timestamp-query"),
    subgroups,
    limits: device.limits,
    lost: undefined,
    pipelines: new Map(),
  };
  device.lost.then((info) => {
    ctx.lost = info.message || info.reason || "device lost";
  });
  return ctx;
}

/** A compute pipeline for WGSL `code`, compiled once per context and `key`. */
export async function pipeline(
  ctx: GpuContext,
  key: string,
  code: () => string,
): Promise<GPUComputePipeline> {
  const hit = ctx.pipelines.get(key);
  if (hit) return hit;
  const { device } = ctx;
  // scope only the synchronous module creation, popped before any await, so that concurrent
  // calls cannot pop each other's scopes; pipeline errors reject the async creation instead
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: code(), label: key });
  const created = device.createComputePipelineAsync({
    layout: "auto",
    compute: { module, entryPoint: "main" },
    label: key,
  }).catch((e) => e as Error);
  const scope = device.popErrorScope();
  const [p, err] = await Promise.all([created, scope]);
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
