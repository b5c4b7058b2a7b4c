/**
 * A kernel's interface, declared once: its uniform block (field names in order) and its storage
 * bindings (name, element type, access, and the uniform that receives a batch chunk's offset).
 * The WGSL declarations are generated from it ({@linkcode layoutWgsl}), and the host binds
 * buffers by the same names in the same order (`gpu/dispatch.ts`), so the two sides cannot
 * disagree on a binding number.
 *
 * Binding 0 is always the uniform block `P`; storage bindings follow from 1 in declaration order.
 *
 * @module
 */

import { OPTION_FLOATS } from "./_wgsl.ts";

/** Element types of storage arrays; `T` is the storage type of q, k, v and out (f32 or f16). */
export type ElementType = "T" | "f32" | "u32" | "vec2<f32>" | "vec4<f32>";

/** One storage binding of a kernel. */
export interface StorageBinding {
  /** The WGSL variable; the host passes its buffer under this name. */
  readonly name: string;
  /** Element type: offsets and per-batch sizes count elements of this type. */
  readonly type: ElementType;
  /** WGSL array element when the kernel reads wider units than `type` (e.g. `vec4<f16>`). */
  readonly view?: string;
  /** Written by the kernel (`read_write`); otherwise `read`. */
  readonly write?: boolean;
  /**
   * Uniform that receives the element offset of a batch chunk's first entry in this buffer.
   * Without one the buffer is bound whole (the shared schedule).
   */
  readonly offset?: string;
}

/** A kernel's uniform block and storage bindings. */
export interface KernelLayout {
  /** Uniform fields in order, 32 bits each. */
  readonly params: readonly string[];
  /** Storage bindings 1, 2, … in order. */
  readonly bindings: readonly StorageBinding[];
}

/**
 * `base` with more storage bindings after its own (a term's data, e.g. the sink logits): one
 * layout object per combination, so that what is cached by layout is found again.
 */
export function withBindings(
  base: KernelLayout,
  extra: readonly (StorageBinding | false | undefined)[],
): KernelLayout {
  const more = extra.filter((b): b is StorageBinding => !!b);
  if (more.length === 0) return base;
  let byBase = extended.get(base);
  if (!byBase) extended.set(base, byBase = new Map());
  const key = more.map((b) => `${b.name}:${b.type}`).join(",");
  let layout = byBase.get(key);
  if (!layout) {
    byBase.set(key, layout = { params: base.params, bindings: [...base.bindings, ...more] });
  }
  return layout;
}

const extended = new WeakMap<KernelLayout, Map<string, KernelLayout>>();

/** Sink logits, one f32 per query head (`terms/sink.ts`). */
export const SINKS_BINDING: StorageBinding = { name: "sinks", type: "f32" };
/** ALiBi per (batch, query head): (slope · log2 e, the batch entry's diagonal offset). */
export const ALIBI_BINDING: StorageBinding = { name: "alibi", type: "vec2<f32>" };
/** A paged KV cache's page table, `[batch, perSequence]` page indices. */
export const PAGES_BINDING: StorageBinding = { name: "pages", type: "u32" };

/** Uniform fields of type f32 (the others are u32), for every kernel. */
export const FLOAT_PARAMS: ReadonlySet<string> = new Set([
  "qkScale",
  "negInf",
  "scale",
  ...OPTION_FLOATS,
]);

/** WGSL declarations of a uniform struct from field names (f32 for {@linkcode FLOAT_PARAMS}). */
export function paramsStruct(fields: readonly string[]): string {
  return `struct Params { ${
    fields.map((f) => `${f}: ${FLOAT_PARAMS.has(f) ? "f32" : "u32"}`).join(", ")
  } }`;
}

/** The uniform struct and every binding of `layout`, for storage type `T`. */
export function layoutWgsl(layout: KernelLayout, T: "f32" | "f16"): string {
  const lines = layout.bindings.map((b, i) =>
    `@group(0) @binding(${i + 1}) var<storage, ${b.write ? "read_write" : "read"}> ${b.name}: ` +
    `array<${b.view ?? (b.type === "T" ? T : b.type)}>;`
  );
  return `${paramsStruct(layout.params)}
@group(0) @binding(0) var<uniform> P: Params;
${lines.join("\n")}`;
}

/** Bytes of one element of a binding. */
export function elementBytes(type: ElementType, T: "f32" | "f16"): number {
  switch (type) {
    case "T":
      return T === "f16" ? 2 : 4;
    case "vec2<f32>":
      return 8;
    case "vec4<f32>":
      return 16;
    default:
      return 4;
  }
}
