/**
 * What a call binds, made once and reused, so that a call repeated with the same buffers (a
 * layer of a model, a step of a decode loop) creates no GPU object and writes at most its
 * uniforms:
 *
 * - each kernel layout's bind group layout, explicit, with the uniform block at binding 0 read at
 *   a dynamic offset ({@linkcode pipelineLayout});
 * - uniform blocks in an arena of slots keyed by their contents: a slot is written once and never
 *   rewritten, so work already submitted, or recorded into a caller's encoder and submitted
 *   later, always reads what it was bound with; a full arena is replaced by a new one, and
 *   destroyed when the next call starts ({@linkcode uniformSlot});
 * - the small tables of score terms and caches (sink logits; ALiBi's, whose diagonal offsets
 *   follow `kvLength`; a paged cache's page table, which a decoding step may grow) the same way,
 *   in a storage arena bound whole, their offsets in uniforms ({@linkcode sinksSlot},
 *   {@linkcode alibiSlot}, {@linkcode pagesSlot});
 * - bind groups keyed by the bind group layout, the arena and every buffer they bind, held
 *   through weak maps, so that a cached bind group lives only while the program still holds all
 *   of its buffers ({@linkcode bindGroup}).
 *
 * Measured on the H200 (`bench/gpu/host_costs.ts`, docs/bench/h200/host_costs.txt and earlier runs
 * of the same session): a bind group of four buffers took 18–26 µs to create and a 64-byte
 * uniform buffer 16–23 µs to create, write and destroy.
 *
 * A call that WebGPU rejects drops what this module made during it ({@linkcode bindingFailed}),
 * so that no later call reuses an invalid object.
 *
 * @module
 */

import {
  COPY_DST,
  createBuffer,
  markCached,
  retire,
  retireLater,
  STORAGE,
  UNIFORM,
  wholeBindingLimit,
} from "./buffers.ts";
import type { GpuContext } from "./device.ts";
import type { Problem } from "../types.ts";
import { alibiTable } from "../terms/alibi.ts";
import { FLOAT_PARAMS, type KernelLayout } from "./layout.ts";

/** Bytes of an arena: 256 uniform slots at the usual 256-byte offset alignment. */
const ARENA_BYTES = 65536;
/** Most bind groups kept for one combination of buffers (different offsets or sizes). */
const MAX_PER_BUFFERS = 64;

interface Arena {
  buffer: GPUBuffer;
  used: number;
  slots: Map<string, number>;
  /** Made since the last call that WebGPU accepted: dropped if the current call fails. */
  fresh: boolean;
}

interface Node {
  next: WeakMap<object, Node>;
  leaf?: Map<string, GPUBindGroup>;
}

interface Binding {
  /** The write-once arenas: uniform blocks, and the tables of terms (sinks, ALiBi, pages). */
  arenas: { uniforms?: Arena; terms?: Arena };
  layouts: Map<string, [GPUBindGroupLayout, GPUPipelineLayout]>;
  groups: WeakMap<object, Node>;
  /** Bumped when a call fails: bind groups made before are not trusted any more. */
  generation: number;
}

const state = new WeakMap<GpuContext, Binding>();

function stateOf(ctx: GpuContext): Binding {
  let s = state.get(ctx);
  if (!s) {
    state.set(ctx, s = { arenas: {}, layouts: new Map(), groups: new WeakMap(), generation: 0 });
  }
  return s;
}

/** Bytes of a layout's uniform block (16-byte rows). */
export function uniformBytes(layout: KernelLayout): number {
  return Math.ceil(layout.params.length / 4) * 16;
}

/** The access pattern of a layout's bindings, which decides its bind group layout. */
function accessKey(layout: KernelLayout): string {
  let key = accessKeys.get(layout);
  if (key === undefined) {
    key = layout.bindings.map((b) => (b.write ? "w" : "r")).join("") + uniformBytes(layout);
    accessKeys.set(layout, key);
  }
  return key;
}

const accessKeys = new WeakMap<KernelLayout, string>();

function layoutsOf(ctx: GpuContext, layout: KernelLayout): [GPUBindGroupLayout, GPUPipelineLayout] {
  const s = stateOf(ctx), key = accessKey(layout);
  let hit = s.layouts.get(key);
  if (!hit) {
    const bgl = ctx.device.createBindGroupLayout({
      label: `bindings ${key}`,
      entries: [
        {
          binding: 0,
          visibility: 4, // GPUShaderStage.COMPUTE
          buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: uniformBytes(layout) },
        },
        ...layout.bindings.map((b, i) => ({
          binding: i + 1,
          visibility: 4,
          buffer: { type: b.write ? "storage" as const : "read-only-storage" as const },
        })),
      ],
    });
    hit = [bgl, ctx.device.createPipelineLayout({ bindGroupLayouts: [bgl] })];
    s.layouts.set(key, hit);
  }
  return hit;
}

/** The pipeline layout of kernels declared by `layout` (explicit: shared by their bind groups). */
export function pipelineLayout(ctx: GpuContext, layout: KernelLayout): GPUPipelineLayout {
  return layoutsOf(ctx, layout)[1];
}

const bitsF32 = new Float32Array(1), bitsU32 = new Uint32Array(bitsF32.buffer);
const floatFieldsOf = new WeakMap<KernelLayout, boolean[]>();

/** Which of a layout's uniform fields are f32 (FLOAT_PARAMS); the others are u32. */
function floatFields(layout: KernelLayout): boolean[] {
  let f = floatFieldsOf.get(layout);
  if (!f) floatFieldsOf.set(layout, f = layout.params.map((n) => FLOAT_PARAMS.has(n)));
  return f;
}

/**
 * The uniform block of `layout` holding `values` (u32 fields, f32 for FLOAT_PARAMS): its arena
 * and byte offset. Equal contents share a slot; a new content takes the next slot and is
 * written once (`queue.writeBuffer`, ordered before any later submission).
 */
export function uniformSlot(
  ctx: GpuContext,
  layout: KernelLayout,
  values: Record<string, number>,
): { buffer: GPUBuffer; offset: number } {
  const fields = layout.params;
  const bytes = uniformBytes(layout);
  const floats = floatFields(layout);
  // the key is the block's 32-bit words (f32 fields by their bits), built without allocating
  let key = "";
  for (let i = 0; i < fields.length; i++) {
    const x = values[fields[i]];
    if (x === undefined) throw new Error(`internal: uniform ${fields[i]} not set`);
    if (floats[i]) {
      bitsF32[0] = x;
      key += bitsU32[0] + ",";
    } else key += (x >>> 0) + ",";
  }
  const align = ctx.limits.minUniformBufferOffsetAlignment;
  const stride = Math.ceil(bytes / align) * align;
  const slot = arenaSlot(ctx, "uniforms", key, stride, UNIFORM | COPY_DST, Infinity);
  if (slot.empty) {
    const block = new ArrayBuffer(bytes);
    const u = new Uint32Array(block), f = new Float32Array(block);
    fields.forEach((name, i) => floats[i] ? (f[i] = values[name]) : (u[i] = values[name]));
    ctx.device.queue.writeBuffer(slot.buffer, slot.offset, block);
  }
  return slot;
}

/**
 * A small table (sink logits; ALiBi's slopes and diagonal offsets, which change with `kvLength`;
 * a page table) in a write-once arena of storage slots keyed by content: its byte offset goes to a
 * uniform, and the arena is bound whole, so that a new table makes no buffer and no bind group.
 * The arena fits `limit`, the largest storage binding.
 */
function termSlot(
  ctx: GpuContext,
  data: Float32Array,
  limit: number,
): { buffer: GPUBuffer; offset: number } {
  const key = new Uint32Array(data.buffer, data.byteOffset, data.length).join(",");
  const bytes = Math.ceil(data.byteLength / 16) * 16;
  if (bytes > limit) {
    throw new RangeError(
      `a term table of ${bytes} bytes needs one binding; this device binds at most ${limit}`,
    );
  }
  const slot = arenaSlot(ctx, "terms", key, bytes, STORAGE | COPY_DST, limit);
  if (slot.empty) {
    ctx.device.queue.writeBuffer(slot.buffer, slot.offset, data as Float32Array<ArrayBuffer>);
  }
  return slot;
}

/**
 * The slot of `key` in arena `kind`: found, or the next `stride` bytes (`empty`: the caller
 * writes it, once). A full arena, or one larger than `limit`, is replaced, and retired when the
 * next call starts.
 */
function arenaSlot(
  ctx: GpuContext,
  kind: keyof Binding["arenas"],
  key: string,
  stride: number,
  usage: number,
  limit: number,
): { buffer: GPUBuffer; offset: number; empty: boolean } {
  const arenas = stateOf(ctx).arenas;
  let a = arenas[kind];
  if (a && a.buffer.size > limit) {
    retireLater(ctx, a.buffer); // the limit shrank (tests tune it)
    a = arenas[kind] = undefined;
  }
  const hit = a?.slots.get(key);
  if (a && hit !== undefined) return { buffer: a.buffer, offset: hit, empty: false };
  if (!a || a.used + stride > a.buffer.size) {
    if (a) retireLater(ctx, a.buffer); // the call being bound may already use it
    const size = Math.min(limit, Math.max(ARENA_BYTES, stride));
    const label = kind === "terms" ? "term tables" : "uniform blocks";
    a = arenas[kind] = {
      buffer: markCached(createBuffer(ctx, size, usage, label)),
      used: 0,
      slots: new Map(),
      fresh: true,
    };
  }
  const offset = a.used;
  a.used += stride;
  a.slots.set(key, offset);
  return { buffer: a.buffer, offset, empty: true };
}

/** One storage binding of a bind group: a buffer range. */
export interface BufferRange {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

/**
 * The bind group of `layout` over the uniform arena `uniforms` and the storage `ranges` (bindings
 * 1, 2, … in order), made once per combination and reused while the program holds every buffer.
 */
export function bindGroup(
  ctx: GpuContext,
  layout: KernelLayout,
  uniforms: GPUBuffer,
  ranges: readonly BufferRange[],
): GPUBindGroup {
  const s = stateOf(ctx);
  const [bgl] = layoutsOf(ctx, layout);
  let map = s.groups, node: Node | undefined;
  for (const k of [bgl, uniforms, ...ranges.map((r) => r.buffer)]) {
    node = map.get(k);
    if (!node) map.set(k, node = { next: new WeakMap() });
    map = node.next;
  }
  const leaf = node!.leaf ??= new Map();
  const key = `${s.generation}|${ranges.map((r) => `${r.offset}+${r.size}`).join(",")}`;
  let group = leaf.get(key);
  if (!group) {
    if (leaf.size >= MAX_PER_BUFFERS) leaf.clear();
    group = ctx.device.createBindGroup({
      layout: bgl,
      entries: [
        { binding: 0, resource: { buffer: uniforms, offset: 0, size: uniformBytes(layout) } },
        ...ranges.map((r, i) => ({ binding: i + 1, resource: r })),
      ],
    });
    leaf.set(key, group);
  }
  return group;
}

/**
 * Bumped when a call fails: a bind group made before (by {@linkcode bindGroup} or kept by a
 * caller of it) is not reused once this has changed.
 */
export function bindingGeneration(ctx: GpuContext): number {
  return stateOf(ctx).generation;
}

/** WebGPU accepted a call: what it made may be reused. */
export function bindingAccepted(ctx: GpuContext): void {
  const arenas = state.get(ctx)?.arenas;
  if (arenas?.uniforms) arenas.uniforms.fresh = false;
  if (arenas?.terms) arenas.terms.fresh = false;
}

/**
 * WebGPU rejected a call (validation or out of memory): bind groups made so far are not reused,
 * and an arena made during the call is dropped (its creation may be what failed).
 */
export function bindingFailed(ctx: GpuContext): void {
  const s = state.get(ctx);
  if (!s) return;
  s.generation++;
  for (const kind of ["uniforms", "terms"] as const) {
    const a = s.arenas[kind];
    if (a?.fresh) {
      retire(ctx, a.buffer);
      s.arenas[kind] = undefined;
    }
  }
}

/**
 * ALiBi of `p` for its kernels: (slope · log2 e, diagonal offset) per (batch, query head), in
 * the term arena (`buffer`, bound whole) from vec2 element `at` (the `alibiOff` uniform).
 */
export function alibiSlot(ctx: GpuContext, p: Problem): { buffer: GPUBuffer; at: number } {
  const slot = termSlot(ctx, alibiTable(p.alibi!, p.heads), wholeBindingLimit(ctx));
  return { buffer: slot.buffer, at: slot.offset / 8 };
}

/**
 * The page table of `p`'s paged KV cache (u32 page indices, `[batch, perSequence]`), which a
 * decoding step may grow, in the term arena from u32 element `at` (the `pagesOff` uniform).
 */
export function pagesSlot(ctx: GpuContext, p: Problem): { buffer: GPUBuffer; at: number } {
  const t = p.pages!.table;
  const slot = termSlot(
    ctx,
    new Float32Array(t.buffer, t.byteOffset, t.length),
    wholeBindingLimit(ctx),
  );
  return { buffer: slot.buffer, at: slot.offset / 4 };
}

/** The sink logits of `p` (one f32 per query head) in the term arena from f32 element `at`. */
export function sinksSlot(ctx: GpuContext, p: Problem): { buffer: GPUBuffer; at: number } {
  const slot = termSlot(ctx, p.sinks!, wholeBindingLimit(ctx));
  return { buffer: slot.buffer, at: slot.offset / 4 };
}
