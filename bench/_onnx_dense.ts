/**
 * A dense attention graph in ONNX, written as protobuf bytes by hand (no dependency), for the
 * side-by-side run with onnxruntime-web (`bench/compare_cpu.ts`).
 *
 * The graph takes the library's layout: q `[B, N, H, d]`, k and v `[B, N, H, d]`, and an
 * additive mask `[N, N]` (0 where visible, -Infinity where masked), and computes
 * `Transpose → MatMul(q, kᵀ) → Mul(scale) → Add(mask) → Softmax → MatMul(·, v) → Transpose`,
 * so its output has q's layout. It materialises the N×N scores: that is the baseline.
 *
 * Protobuf field numbers are those of onnx.proto (ModelProto, GraphProto, NodeProto,
 * AttributeProto, ValueInfoProto, TypeProto, TensorShapeProto, TensorProto).
 *
 * @module
 */

/** ONNX tensor element type FLOAT. */
const FLOAT = 1;

// Protobuf wire format: a field key is (number << 3) | wire type; 0 varint, 2 length-delimited.
function varint(n: number): number[] {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`varint: bad value ${n}`);
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

function int64Varint(n: number): number[] {
  // Negative int64 values are 10-byte two's complement varints.
  if (n >= 0) return varint(n);
  const out: number[] = [];
  let v = BigInt.asUintN(64, BigInt(n));
  for (let i = 0; i < 10; i++) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v === 0n ? b : b | 0x80);
    if (v === 0n) break;
  }
  return out;
}

const enc = new TextEncoder();

/** A length-delimited field. */
function bytes(field: number, data: ArrayLike<number>): number[] {
  return [...varint((field << 3) | 2), ...varint(data.length), ...Array.from(data)];
}
function str(field: number, s: string): number[] {
  return bytes(field, enc.encode(s));
}
function int(field: number, n: number): number[] {
  return [...varint(field << 3), ...int64Varint(n)];
}

/** ValueInfoProto of a float tensor; a string dimension is symbolic. */
function valueInfo(name: string, dims: (number | string)[]): number[] {
  const shape = dims.flatMap((d) => bytes(1, typeof d === "number" ? int(1, d) : str(2, d)) // TensorShapeProto.dim
  );
  const tensorType = [...int(1, FLOAT), ...bytes(2, shape)]; // TypeProto.Tensor
  return [...str(1, name), ...bytes(2, bytes(1, tensorType))];
}

function node(
  op: string,
  inputs: string[],
  outputs: string[],
  attrs: number[][] = [],
): number[] {
  return [
    ...inputs.flatMap((i) => str(1, i)),
    ...outputs.flatMap((o) => str(2, o)),
    ...str(3, `${op}_${outputs[0]}`),
    ...str(4, op),
    ...attrs.flatMap((a) => bytes(5, a)),
  ];
}

/** AttributeProto INTS (type 7). */
function intsAttr(name: string, values: number[]): number[] {
  return [...str(1, name), ...int(20, 7), ...values.flatMap((v) => int(8, v))];
}
/** AttributeProto INT (type 2). */
function intAttr(name: string, value: number): number[] {
  return [...str(1, name), ...int(3, value), ...int(20, 2)];
}

/** Options of {@linkcode attentionModel}. */
export interface AttentionModelOptions {
  batch: number;
  seq: number;
  heads: number;
  dim: number;
  /** Score scale (default `1 / sqrt(dim)`). */
  scale?: number;
}

/**
 * The serialized ONNX model (opset 17) of dense masked attention for one shape; inputs `q`,
 * `k`, `v` (`[B, N, H, d]`, f32) and `mask` (`[N, N]`, additive), output `out` (`[B, N, H, d]`).
 *
 * @example
 * ```ts
 * import { attentionModel } from "./_onnx_dense.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = attentionModel({ batch: 1, seq: 4, heads: 1, dim: 8 });
 * assert.ok(bytes.length > 100);
 * ```
 */
export function attentionModel(o: AttentionModelOptions): Uint8Array {
  const { batch: b, seq: n, heads: h, dim: d } = o;
  const scale = o.scale ?? 1 / Math.sqrt(d);
  const scaleTensor = [
    ...str(8, "scale"), // TensorProto.name
    ...int(2, FLOAT), // data_type, no dims: a scalar
    ...bytes(9, new Uint8Array(new Float32Array([scale]).buffer)), // raw_data
  ];
  const nodes = [
    node("Transpose", ["q"], ["qt"], [intsAttr("perm", [0, 2, 1, 3])]), // [B, H, N, d]
    node("Transpose", ["k"], ["kt"], [intsAttr("perm", [0, 2, 3, 1])]), // [B, H, d, N]
    node("Transpose", ["v"], ["vt"], [intsAttr("perm", [0, 2, 1, 3])]), // [B, H, N, d]
    node("MatMul", ["qt", "kt"], ["s"]), // [B, H, N, N]
    node("Mul", ["s", "scale"], ["ss"]),
    node("Add", ["ss", "mask"], ["sm"]),
    node("Softmax", ["sm"], ["p"], [intAttr("axis", -1)]),
    node("MatMul", ["p", "vt"], ["ot"]), // [B, H, N, d]
    node("Transpose", ["ot"], ["out"], [intsAttr("perm", [0, 2, 1, 3])]),
  ];
  const graph = [
    ...nodes.flatMap((nd) => bytes(1, nd)),
    ...str(2, "masked_attention"),
    ...bytes(5, scaleTensor),
    ...bytes(11, valueInfo("q", [b, n, h, d])),
    ...bytes(11, valueInfo("k", [b, n, h, d])),
    ...bytes(11, valueInfo("v", [b, n, h, d])),
    ...bytes(11, valueInfo("mask", [n, n])),
    ...bytes(12, valueInfo("out", [b, n, h, d])),
  ];
  const model = [
    ...int(1, 8), // ir_version
    ...str(2, "flashmask-attention bench"), // producer_name
    ...bytes(7, graph),
    ...bytes(8, [...str(1, ""), ...int(2, 17)]), // opset_import: default domain, opset 17
  ];
  return new Uint8Array(model);
}

/** The additive mask of a dense allowed matrix: 0 where allowed, -Infinity elsewhere. */
export function additiveMask(allowed: Uint8Array): Float32Array {
  return Float32Array.from(allowed, (a) => (a ? 0 : -Infinity));
}
