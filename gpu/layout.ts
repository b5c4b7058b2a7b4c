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
