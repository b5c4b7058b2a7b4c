/**
 * Kernel choices that depend on the adapter, and the overrides tests and benchmarks use to pin a
 * variant ({@linkcode setGpuTuning}): the tile width for a head dimension and the shrinking of a
 * configuration until its workgroup memory fits the adapter. Each pass's own configuration lives
 * with it (`gpu/forward.ts`, `gpu/backward.ts`, `gpu/decode.ts`).
 *
 * @module
 */

import type { BackwardConfig } from "./backward_wgsl.ts";
import type { GpuContext } from "./device.ts";
import type { ForwardConfig } from "./forward_wgsl.ts";

/** Options that tests and benchmarks use to pin a kernel variant. */
export interface GpuTuning {
  /** Force the workgroup-memory row reduction even when subgroups exist. */
  noSubgroups?: boolean;
  /** Override parts of the forward configuration. */
  forward?: Partial<ForwardConfig>;
  /** Override parts of the backward configuration. */
  backward?: Partial<BackwardConfig>;
  /** Pretend the adapter's largest storage binding is this many bytes (tests of splitting). */
  maxBindingBytes?: number;
  /** Force (true) or forbid (false) the split-KV decoding kernels; default: Nq ≤ 16, Nk ≥ 512. */
  decode?: boolean;
  /** Key splits of the decoding kernel (default: about 256 workgroups). */
  splits?: number;
  /**
   * Force (true) or forbid (false) the decoding kernel's cooperative first phase (8 invocations a
   * key, subgroup sums; only where the device has subgroups of 8 or more); default per storage
   * type in `gpu/decode.ts`.
   */
  decodeCoop?: boolean;
  /**
   * The decoding kernel's lane groups of this many invocations (where the device's subgroups are
   * as wide) or none (false); default in `gpu/decode.ts`.
   */
  decodeLanes?: number | false;
  /** K and V loads a decoding invocation has in flight (default in `gpu/decode.ts`). */
  decodeLoads?: readonly [keys: number, values: number];
  /** Called right after a call's work is submitted (fault-injection tests: lose the device). */
  afterSubmit?: (device: GPUDevice) => void;
}

let tuning: GpuTuning = {};

/** Pins kernel variants (for tests and benchmarks); returns the previous setting. */
export function setGpuTuning(t: GpuTuning): GpuTuning {
  const old = tuning;
  tuning = t;
  return old;
}

/** The overrides in force (empty unless a test or benchmark set some). */
export function gpuTuning(): Readonly<GpuTuning> {
  return tuning;
}

/**
 * The part of a forward configuration a measured tune chooses: its tiles, whether its loads read
 * ahead and whether its workgroup memory is double-buffered (when not given: the defaults,
 * `gpu/forward.ts`).
 */
export type ForwardTiles = Pick<ForwardConfig, "rm" | "cn" | "kc" | "kv" | "prefetch" | "double">;

/**
 * The part of a backward configuration a measured tune chooses: tiles, chunks, read-ahead (within
 * a tile, and of the next tile's first chunk).
 */
export type BackwardTiles = Pick<
  BackwardConfig,
  "rm" | "cn" | "rn" | "cm" | "kc" | "kv" | "prefetch" | "nextTile"
>;

/** The flags of `o` that are given (so that a spread keeps the defaults of the others). */
const given = (o: Record<string, boolean | undefined>) =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

/** The part of a decoding configuration a measured tune chooses: its first phase and loads. */
export interface DecodePhases {
  /** Phase 1 cooperative (where the device and shape allow). */
  coop: boolean;
  /** K and V loads in flight. */
  loads: readonly [keys: number, values: number];
  /** Lane groups for splits of two tiles or more (where the device has subgroups of 32). */
  lanes?: boolean;
}

/** Choices made by measurement, per context, by pass, storage type and width. */
const chosen = new WeakMap<GpuContext, Map<string, ForwardTiles | BackwardTiles | DecodePhases>>();

function choose(
  ctx: GpuContext,
  key: string,
  value: ForwardTiles | BackwardTiles | DecodePhases,
): void {
  let m = chosen.get(ctx);
  if (!m) chosen.set(ctx, m = new Map());
  m.set(key, value);
}

/** The forward tiles measured best for a storage type and width on this context, if any. */
export function chosenTiles(
  ctx: GpuContext,
  dtype: "f32" | "f16",
  dn: number,
): ForwardTiles | undefined {
  return chosen.get(ctx)?.get(`fwd:${dtype}:${dn}`) as ForwardTiles | undefined;
}

/** Records the forward tiles measured best for a storage type and width on this context. */
export function chooseTiles(
  ctx: GpuContext,
  dtype: "f32" | "f16",
  dn: number,
  tiles: ForwardTiles,
): void {
  const { rm, cn, kc, kv, prefetch, double } = tiles;
  choose(ctx, `fwd:${dtype}:${dn}`, { rm, cn, kc, kv, ...given({ prefetch, double }) });
}

/** The backward tiles measured best for a storage type and width on this context, if any. */
export function chosenBackward(
  ctx: GpuContext,
  dtype: "f32" | "f16",
  dn: number,
): BackwardTiles | undefined {
  return chosen.get(ctx)?.get(`bwd:${dtype}:${dn}`) as BackwardTiles | undefined;
}

/** Records the backward tiles measured best for a storage type and width on this context. */
export function chooseBackward(
  ctx: GpuContext,
  dtype: "f32" | "f16",
  dn: number,
  t: BackwardTiles,
): void {
  const { rm, cn, rn, cm, kc, kv, prefetch, nextTile } = t;
  choose(ctx, `bwd:${dtype}:${dn}`, { rm, cn, rn, cm, kc, kv, ...given({ prefetch, nextTile }) });
}

/** The decoding phases measured best for a storage type and width (`cw`), if any. */
export function chosenDecode(
  ctx: GpuContext,
  dtype: "f32" | "f16",
  cw: number,
): DecodePhases | undefined {
  return chosen.get(ctx)?.get(`decode:${dtype}:${cw}`) as DecodePhases | undefined;
}

/** Records the decoding phases measured best for a storage type and width (`cw`). */
export function chooseDecode(
  ctx: GpuContext,
  dtype: "f32" | "f16",
  cw: number,
  phases: DecodePhases,
): void {
  choose(ctx, `decode:${dtype}:${cw}`, {
    coop: phases.coop,
    loads: phases.loads,
    lanes: phases.lanes === true,
  });
}

/** Output columns per invocation for a head dimension (D = 16·dn ≥ headDim). */
export function headDimWidth(headDim: number): number {
  return headDim <= 64 ? 4 : headDim <= 128 ? 8 : headDim <= 192 ? 12 : 16;
}

/**
 * Shrinks a configuration until its workgroup memory (`need()`) fits the adapter: each step
 * makes one change and says whether it could; the first that can is taken, then `need` again.
 */
export function fitShared<T>(
  ctx: GpuContext,
  cfg: T,
  need: () => number,
  headDim: number,
  steps: (() => boolean)[],
): T {
  const limit = ctx.limits.maxComputeWorkgroupStorageSize;
  while (need() > limit) {
    if (!steps.some((step) => step())) {
      throw new RangeError(
        `head dimension ${headDim} needs ${need()} bytes of workgroup memory; the GPU device ` +
          `allows ${limit} (maxComputeWorkgroupStorageSize): create it with requestDevice({ ` +
          `requiredLimits: { maxComputeWorkgroupStorageSize: ${need()} } }) where the adapter allows`,
      );
    }
  }
  return cfg;
}
