/**
 * ONNX models built in code for the peer benchmarks, so that no model file is needed: one small
 * protobuf encoder (the wire format and the ONNX messages it needs) and the three attention graphs
 * the benches run.
 *
 * - {@linkcode attentionModel}: dense masked attention on this library's layout `[B, N, H, d]`:
 *   Transpose → MatMul(q, kᵀ) → Mul(scale) → Add(mask) → Softmax → MatMul(·, v) → Transpose, the
 *   mask an additive `[N, N]` input. Run by onnxruntime-web in `bench/cpu/compare_cpu.ts`.
 * - {@linkcode matmulSoftmaxModel}: `softmax(q · kᵀ) · v` as MatMul → Softmax → MatMul on
 *   head-major inputs prepared outside the timing (q pre-scaled, k pre-transposed: the layout ONNX
 *   MatMul likes best). Run by onnxruntime-web in the WASM backend's report and `deno bench`.
 * - {@linkcode mhaModel}: the com.microsoft `MultiHeadAttention` contrib op (onnxruntime's fused
 *   CPU attention) on `[B, N, H·d]`, optionally with an additive `attention_bias` `[1, 1, N, N]`.
 *   Run by native onnxruntime-node in the WASM backend's report.
 *
 * Every graph materialises the N×N scores: that is the dense baseline. Field numbers are those of
 * onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto,
 * TypeProto, TensorShapeProto, OperatorSetIdProto).
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------
// Protobuf wire format: a field key is (number << 3) | wire type; 0 varint, 2 length-delimited,
// 5 fixed 32-bit. Negative int64 values are 10-byte two's-complement varints.

type Bytes = Uint8Array;

const utf8 = new TextEncoder();

function varint(n: number | bigint): number[] {
  if (typeof n === "number" && !Number.isSafeInteger(n)) {
    throw new RangeError(`varint: ${n} is not a safe integer`);
  }
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? b | 0x80 : b);
  } while (v > 0n);
  return out;
}

/** Concatenates encoded fields into one message body. */
function cat(parts: (Bytes | number[])[]): Bytes {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A varint field (int32, int64, enum). */
function int(field: number, n: number): Bytes {
  return cat([varint(field << 3), varint(n)]);
}

/** A length-delimited field: bytes, a string (UTF-8) or an embedded message. */
function bytes(field: number, body: Bytes | string): Bytes {
  const b = typeof body === "string" ? utf8.encode(body) : body;
  return cat([varint((field << 3) | 2), varint(b.length), b]);
}

/** A 32-bit float field. */
function float(field: number, x: number): Bytes {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return cat([varint((field << 3) | 5), b]);
}

// ---------------------------------------------------------------------------------------------
// ONNX messages

/** TensorProto.DataType FLOAT. */
const FLOAT = 1;

/** ValueInfoProto of a float tensor with fixed dimensions. */
function valueInfo(name: string, dims: number[]): Bytes {
  const shape = cat(dims.map((d) => bytes(1, int(1, d)))); // TensorShapeProto.dim.dim_value
  const tensorType = cat([int(1, FLOAT), bytes(2, shape)]); // TypeProto.Tensor
  return cat([bytes(1, name), bytes(2, bytes(1, tensorType))]);
}

/** NodeProto; `domain` for contrib ops. */
function node(op: string, inputs: string[], outputs: string[], attrs: Bytes[] = [], domain = "") {
  return cat([
    ...inputs.map((i) => bytes(1, i)),
    ...outputs.map((o) => bytes(2, o)),
    bytes(3, `${op}_${outputs[0]}`),
    bytes(4, op),
    ...attrs.map((a) => bytes(5, a)),
    ...(domain ? [bytes(7, domain)] : []),
  ]);
}

/** AttributeProto of type INT (2). */
function intAttr(name: string, value: number): Bytes {
  return cat([bytes(1, name), int(3, value), int(20, 2)]);
}

/** AttributeProto of type FLOAT (1). */
function floatAttr(name: string, value: number): Bytes {
  return cat([bytes(1, name), float(2, value), int(20, 1)]);
}

/** AttributeProto of type INTS (7). */
function intsAttr(name: string, values: number[]): Bytes {
  return cat([bytes(1, name), ...values.map((v) => int(8, v)), int(20, 7)]);
}

/** TensorProto of a float scalar (no dims), in raw_data. */
function floatScalar(name: string, x: number): Bytes {
  return cat([int(2, FLOAT), bytes(8, name), bytes(9, new Uint8Array(Float32Array.of(x).buffer))]);
}

/** The parts of a GraphProto. */
interface Graph {
  name: string;
  nodes: Bytes[];
  initializers?: Bytes[];
  inputs: [string, number[]][];
  output: [string, number[]];
}

/** A serialized ModelProto (IR version 8, opset 17, plus com.microsoft 1 when `contrib`). */
function model(g: Graph, contrib = false): Uint8Array {
  const graph = cat([
    ...g.nodes.map((x) => bytes(1, x)),
    bytes(2, g.name),
    ...(g.initializers ?? []).map((x) => bytes(5, x)),
    ...g.inputs.map(([name, dims]) => bytes(11, valueInfo(name, dims))),
    bytes(12, valueInfo(...g.output)),
  ]);
  const opsets = [bytes(8, cat([bytes(1, ""), int(2, 17)]))];
  if (contrib) opsets.push(bytes(8, cat([bytes(1, "com.microsoft"), int(2, 1)])));
  return cat([int(1, 8), bytes(2, "flashmask-attention bench"), bytes(7, graph), ...opsets]);
}

// ---------------------------------------------------------------------------------------------
// The graphs

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
 * Dense masked attention on this library's layout: inputs `q`, `k`, `v` (`[B, N, H, d]`, f32)
 * and `mask` (`[N, N]`, additive: see {@linkcode additiveMask}), output `out` (`[B, N, H, d]`).
 *
 * @example
 * ```ts
 * import { attentionModel } from "./_onnx.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = attentionModel({ batch: 1, seq: 4, heads: 1, dim: 8 });
 * assert.ok(bytes.length > 100);
 * ```
 */
export function attentionModel(o: AttentionModelOptions): Uint8Array {
  const { batch: b, seq: n, heads: h, dim: d } = o;
  const perm = (p: number[]) => [intsAttr("perm", p)];
  return model({
    name: "masked_attention",
    nodes: [
      node("Transpose", ["q"], ["qt"], perm([0, 2, 1, 3])), // [B, H, N, d]
      node("Transpose", ["k"], ["kt"], perm([0, 2, 3, 1])), // [B, H, d, N]
      node("Transpose", ["v"], ["vt"], perm([0, 2, 1, 3])), // [B, H, N, d]
      node("MatMul", ["qt", "kt"], ["s"]), // [B, H, N, N]
      node("Mul", ["s", "scale"], ["ss"]),
      node("Add", ["ss", "mask"], ["sm"]),
      node("Softmax", ["sm"], ["p"], [intAttr("axis", -1)]),
      node("MatMul", ["p", "vt"], ["ot"]), // [B, H, N, d]
      node("Transpose", ["ot"], ["out"], perm([0, 2, 1, 3])),
    ],
    initializers: [floatScalar("scale", o.scale ?? 1 / Math.sqrt(d))],
    inputs: [["q", [b, n, h, d]], ["k", [b, n, h, d]], ["v", [b, n, h, d]], ["mask", [n, n]]],
    output: ["out", [b, n, h, d]],
  });
}

/**
 * `out[h] = softmax(q[h] · kT[h]) · v[h]` on head-major inputs: q `[H, N, d]` (already scaled),
 * kT `[H, d, N]`, v `[H, N, d]`; output `out` `[H, N, d]`.
 *
 * @example
 * ```ts
 * import { matmulSoftmaxModel } from "./_onnx.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(matmulSoftmaxModel(2, 16, 8).length > 100);
 * ```
 */
export function matmulSoftmaxModel(h: number, n: number, d: number): Uint8Array {
  return model({
    name: "attention",
    nodes: [
      node("MatMul", ["q", "kT"], ["s"]),
      node("Softmax", ["s"], ["p"], [intAttr("axis", -1)]),
      node("MatMul", ["p", "v"], ["out"]),
    ],
    inputs: [["q", [h, n, d]], ["kT", [h, d, n]], ["v", [h, n, d]]],
    output: ["out", [h, n, d]],
  });
}

/**
 * com.microsoft `MultiHeadAttention` (scale `1/√d`) on q, k, v `[B, N, H·d]` (this library's
 * `[B, N, H, d]` layout as is), with an additive `bias` input `[1, 1, N, N]` (its
 * `attention_bias`) when `mask` is set; output `out` `[B, N, H·d]`.
 *
 * @example
 * ```ts
 * import { mhaModel } from "./_onnx.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(mhaModel(1, 16, 2, 8, true).length > 100);
 * ```
 */
export function mhaModel(b: number, n: number, h: number, d: number, mask = false): Uint8Array {
  // Inputs by position: query, key, value, bias, key_padding_mask, attention_bias ("" = absent).
  const inputs = mask ? ["q", "k", "v", "", "", "bias"] : ["q", "k", "v"];
  const attrs = [intAttr("num_heads", h), floatAttr("scale", 1 / Math.sqrt(d))];
  const shape = [b, n, h * d];
  const biasInput: [string, number[]][] = mask ? [["bias", [1, 1, n, n]]] : [];
  return model({
    name: "mha",
    nodes: [node("MultiHeadAttention", inputs, ["out"], attrs, "com.microsoft")],
    inputs: [["q", shape], ["k", shape], ["v", shape], ...biasInput],
    output: ["out", shape],
  }, true);
}

/**
 * The additive mask of a dense allowed matrix (`toDense` of a FlashMask): 0 where allowed,
 * -Infinity elsewhere.
 *
 * @example
 * ```ts
 * import { additiveMask } from "./_onnx.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(Array.from(additiveMask(new Uint8Array([1, 0]))), [0, -Infinity]);
 * ```
 */
export function additiveMask(allowed: Uint8Array): Float32Array {
  return Float32Array.from(allowed, (a) => (a ? 0 : -Infinity));
}
