/**
 * Minimal ONNX model writer for the peer benchmarks: encodes a ModelProto (protobuf) for the
 * attention graphs that onnxruntime-web and onnxruntime-node run, so no model file is needed.
 *
 * - {@linkcode matmulSoftmaxGraph}: `softmax(Q · Kᵀ [+ mask]) · V` as MatMul → (Add) → Softmax →
 *   MatMul on head-major inputs (q pre-scaled, k pre-transposed: the layout ONNX MatMul likes).
 * - {@linkcode mhaGraph}: the com.microsoft MultiHeadAttention contrib op (onnxruntime's fused CPU
 *   attention) on `[B, N, H·d]` inputs, optionally with an additive `attention_bias` `[1, 1, N, N]`.
 *
 * @module
 */

type Field = Uint8Array;

function varint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

function cat(parts: (Field | number[])[]): Field {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Varint field. */
function vi(field: number, n: number | bigint): Field {
  return cat([varint(field << 3), varint(n)]);
}

/** Length-delimited field (bytes, string or message). */
function ld(field: number, body: Field | string): Field {
  const b = typeof body === "string" ? new TextEncoder().encode(body) : body;
  return cat([varint((field << 3) | 2), varint(b.length), b]);
}

/** 32-bit float field. */
function f32(field: number, x: number): Field {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return cat([varint((field << 3) | 5), b]);
}

const FLOAT = 1;

function valueInfo(name: string, dims: number[]): Field {
  const shape = cat(dims.map((d) => ld(1, vi(1, d))));
  const tensorType = cat([vi(1, FLOAT), ld(2, shape)]);
  return cat([ld(1, name), ld(2, ld(1, tensorType))]);
}

function node(
  op: string,
  inputs: string[],
  outputs: string[],
  attrs: Field[] = [],
  domain = "",
): Field {
  return cat([
    ...inputs.map((i) => ld(1, i)),
    ...outputs.map((o) => ld(2, o)),
    ld(3, `${op}_${outputs[0]}`),
    ld(4, op),
    ...attrs.map((a) => ld(5, a)),
    ...(domain ? [ld(7, domain)] : []),
  ]);
}

function intAttr(name: string, i: number): Field {
  return cat([ld(1, name), vi(3, i), vi(20, 2)]);
}

function floatAttr(name: string, x: number): Field {
  return cat([ld(1, name), f32(2, x), vi(20, 1)]);
}

function model(graph: Field, contrib: boolean): Uint8Array {
  const opsets = [ld(8, cat([ld(1, ""), vi(2, 17)]))];
  if (contrib) opsets.push(ld(8, cat([ld(1, "com.microsoft"), vi(2, 1)])));
  return cat([vi(1, 8), ld(2, "flashmask-bench"), ...opsets, ld(7, graph)]);
}

/**
 * `out[h] = softmax(q[h] · kT[h] (+ mask)) · v[h]` with inputs q `[H, N, d]` (already scaled),
 * kT `[H, d, N]`, v `[H, N, d]`, and with `mask` an additive `[N, N]` input.
 */
export function matmulSoftmaxGraph(h: number, n: number, d: number, mask = false): Uint8Array {
  const nodes = [node("MatMul", ["q", "kT"], ["s"])];
  if (mask) nodes.push(node("Add", ["s", "mask"], ["sm"]));
  nodes.push(node("Softmax", [mask ? "sm" : "s"], ["p"], [intAttr("axis", -1)]));
  nodes.push(node("MatMul", ["p", "v"], ["out"]));
  const inputs = [
    valueInfo("q", [h, n, d]),
    valueInfo("kT", [h, d, n]),
    valueInfo("v", [h, n, d]),
  ];
  if (mask) inputs.push(valueInfo("mask", [n, n]));
  const graph = cat([
    ...nodes.map((x) => ld(1, x)),
    ld(2, "attention"),
    ...inputs.map((x) => ld(11, x)),
    ld(12, valueInfo("out", [h, n, d])),
  ]);
  return model(graph, false);
}

/**
 * com.microsoft MultiHeadAttention on q, k, v `[B, N, H·d]` (the `[B, N, H, d]` layout as is),
 * with an additive `attention_bias` `[1, 1, N, N]` input when `mask` is set.
 */
export function mhaGraph(b: number, n: number, h: number, d: number, mask = false): Uint8Array {
  const inputs = ["q", "k", "v", "", "", mask ? "bias" : ""];
  while (inputs[inputs.length - 1] === "") inputs.pop();
  const mha = node(
    "MultiHeadAttention",
    inputs,
    ["out"],
    [intAttr("num_heads", h), floatAttr("scale", 1 / Math.sqrt(d))],
    "com.microsoft",
  );
  const io = [
    valueInfo("q", [b, n, h * d]),
    valueInfo("k", [b, n, h * d]),
    valueInfo("v", [
      b,
      n,
      h * d,
    ]),
  ];
  if (mask) io.push(valueInfo("bias", [1, 1, n, n]));
  const graph = cat([
    ld(1, mha),
    ld(2, "mha"),
    ...io.map((x) => ld(11, x)),
    ld(12, valueInfo("out", [b, n, h * d])),
  ]);
  return model(graph, true);
}
