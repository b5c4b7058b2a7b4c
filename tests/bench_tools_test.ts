/**
 * Tests of the comparison tools under bench/: the hand-written ONNX graph (decoded back from
 * its protobuf bytes), the mask export read by torch_compare.py, the GPU table and the plot.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MASK_NAMES } from "../masks/examples.ts";
import { additiveMask, attentionModel } from "../bench/_onnx_dense.ts";
import { exportMasks } from "../bench/export_masks.ts";
import { gpuTable, type TorchReport } from "../bench/gpu_table.ts";
import { niceCeil, plotSvg, seriesOf } from "../bench/plot.ts";
import { parseReport, type Report } from "../bench/_report.ts";
import type { Result } from "../bench/_run.ts";

type Field = { n: number; wire: number; value: number | Uint8Array };

/** Decodes one protobuf message into its fields (varint and length-delimited only). */
function decode(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = () => {
    let x = 0, mul = 1, b;
    do {
      b = buf[i++];
      x += (b & 0x7f) * mul;
      mul *= 128;
    } while (b & 0x80);
    return x;
  };
  while (i < buf.length) {
    const key = varint(), n = Math.floor(key / 8), wire = key % 8;
    if (wire === 0) out.push({ n, wire, value: varint() });
    else if (wire === 2) {
      const len = varint();
      out.push({ n, wire, value: buf.subarray(i, i + len) });
      i += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  assert.equal(i, buf.length, "message ends on a field boundary");
  return out;
}
const text = (v: number | Uint8Array) => new TextDecoder().decode(v as Uint8Array);
const get = (fs: Field[], n: number) => fs.filter((f) => f.n === n);

Deno.test("attentionModel: a valid ONNX ModelProto with the expected graph", () => {
  const model = decode(attentionModel({ batch: 2, seq: 8, heads: 3, dim: 16 }));
  assert.equal(get(model, 1)[0].value, 8, "ir_version");
  const opset = decode(get(model, 8)[0].value as Uint8Array);
  assert.equal(get(opset, 2)[0].value, 17, "opset version");
  const graph = decode(get(model, 7)[0].value as Uint8Array);
  const nodes = get(graph, 1).map((f) => decode(f.value as Uint8Array));
  assert.deepEqual(
    nodes.map((nd) => text(get(nd, 4)[0].value)),
    [
      "Transpose",
      "Transpose",
      "Transpose",
      "MatMul",
      "Mul",
      "Add",
      "Softmax",
      "MatMul",
      "Transpose",
    ],
  );
  // Every node input is a graph input, the initializer, or an earlier node's output.
  const known = new Set(["q", "k", "v", "mask", "scale"]);
  for (const nd of nodes) {
    for (const inp of get(nd, 1)) assert.ok(known.has(text(inp.value)), text(inp.value));
    for (const o of get(nd, 2)) known.add(text(o.value));
  }
  assert.ok(known.has("out"));
  // The scale initializer: a float scalar 1/sqrt(16) in raw_data.
  const init = decode(get(graph, 5)[0].value as Uint8Array);
  assert.equal(text(get(init, 8)[0].value), "scale");
  const raw = get(init, 9)[0].value as Uint8Array;
  assert.equal(new Float32Array(raw.slice().buffer)[0], 0.25);
  // Input shapes: q is [2, 8, 3, 16], mask [8, 8].
  const dims = (vi: Field) => {
    const type = decode(get(decode(vi.value as Uint8Array), 2)[0].value as Uint8Array);
    const tensor = decode(get(type, 1)[0].value as Uint8Array);
    assert.equal(get(tensor, 1)[0].value, 1, "FLOAT");
    const shape = decode(get(tensor, 2)[0].value as Uint8Array);
    return get(shape, 1).map((d) => get(decode(d.value as Uint8Array), 1)[0].value);
  };
  const inputs = get(graph, 11);
  assert.deepEqual(dims(inputs[0]), [2, 8, 3, 16]);
  assert.deepEqual(dims(inputs[3]), [8, 8]);
  assert.deepEqual(dims(get(graph, 12)[0]), [2, 8, 3, 16]);
  // Softmax axis -1 is a 10-byte two's-complement varint.
  const softmax = nodes[6], attr = decode(get(softmax, 5)[0].value as Uint8Array);
  assert.equal(get(attr, 3)[0].value, 2 ** 64 - 1);
  assert.deepEqual(Array.from(additiveMask(new Uint8Array([1, 0]))), [0, -Infinity]);
});

Deno.test("exportMasks: bounds reproduce the independent mask definitions", () => {
  const e = exportMasks([32], 1, 40);
  assert.equal(e.schema, "flashmask-masks/1");
  assert.deepEqual(e.lengths["32"].map((m) => m.name), [...MASK_NAMES]);
  for (const { name, exported: m, rows } of e.verify.masks) {
    let visible = 0;
    for (let i = 0; i < 40; i++) {
      for (let j = 0; j < 40; j++) {
        const byBounds = !((m.lts[j] <= i && i < m.lte[j]) || (m.uts[j] <= i && i < m.ute[j]));
        assert.equal(byBounds, rows[i][j] === "1", `${name} (${i}, ${j})`);
        visible += byBounds ? 1 : 0;
      }
    }
    assert.ok(Math.abs(visible / 1600 - m.visibleFraction) < 1e-12, name);
  }
  // A JSON round trip keeps everything (what Python reads).
  assert.deepEqual(JSON.parse(JSON.stringify(e)), e);
});

function result(
  backend: string,
  mask: string,
  seq: number,
  dtype: "f32" | "f16",
  tf: number,
): Result {
  return {
    backend,
    pass: "fwd",
    shape: { batch: 1, seq, heads: 16, kvHeads: 16, dim: 64, dtype },
    mask: mask as Result["mask"],
    maskArgs: [],
    baselineOnly: false,
    visibleFraction: 0.5,
    density: 0.6,
    tiles: { full: 1, partial: 1, skipped: 1 },
    tile: [64, 64],
    flops: tf * 1e12 * 1e-3,
    timesMs: [1],
    medianMs: 1,
    minMs: 1,
    maxMs: 1,
    flopsPerSecond: tf * 1e12,
    speedupVsFull: 1,
  };
}

function report(results: Result[]): Report {
  return parseReport(
    JSON.stringify({
      schema: "flashmask-bench/1",
      date: "2026-11-22T00:00:00Z",
      args: [],
      config: { dtype: results[0].shape.dtype },
      machine: {},
      backends: [],
      results,
      checks: [],
      elapsedSeconds: 1,
    }),
    "r",
  );
}

Deno.test("gpuTable: pairs f32 with f32 and f16 with bf16, ratios ours / theirs", () => {
  const torchRow = (impl: string, mode: string, mask: string, dtype: string, tflops: number) => ({
    impl,
    mode,
    mask,
    n: 1024,
    dtype,
    batch: 1,
    heads: 16,
    dim: 64,
    visibleFraction: 0.5,
    ms: 1,
    tflops,
  });
  const torch = {
    schema: "flashmask-torch/1",
    torch: "2.11.0",
    cuda: "13.0",
    device: "H100",
    rows: [
      torchRow("flex", "device", "causal", "f32", 20),
      torchRow("flex", "end-to-end", "causal", "f32", 4),
      torchRow("efficient", "device", "causal", "f32", 10),
      torchRow("flex", "device", "causal", "bf16", 100),
      { ...torchRow("flash", "device", "causal", "f32", 0), error: "No available kernel" },
    ],
    checks: [{ mask: "causal", n: 1024, dtype: "f32", vs: "efficient", maxAbsDiff: 1e-6 }],
    skipped: [],
  } as TorchReport;
  const t = gpuTable(
    [
      report([result("webgpu", "causal", 1024, "f32", 8)]),
      report([
        result("webgpu", "causal", 1024, "f16", 50),
      ]),
    ],
    torch,
  );
  const lines = t.split("\n");
  const f32 = lines.findIndex((l) => l.startsWith("N=1024 · webgpu f32 vs torch f32"));
  const bf16 = lines.findIndex((l) => l.startsWith("N=1024 · webgpu f16 vs torch bf16"));
  assert.ok(f32 >= 0 && bf16 > f32, t);
  const row = lines.slice(f32).find((l) => l.startsWith("causal"))!.split(/\s+/);
  // mask, ours, flex, flex e2e, flash, eff, math, ÷flex e2e, ÷flex, ÷best sdpa
  assert.deepEqual(row, [
    "causal",
    "8.00",
    "20.0",
    "4.00",
    "—",
    "10.0",
    "—",
    "2.00×",
    "0.40×",
    "0.80×",
  ]);
  const rowBf16 = lines.slice(bf16).find((l) => l.startsWith("causal"))!.split(/\s+/);
  assert.equal(rowBf16[1], "50.0");
  assert.equal(rowBf16[8], "0.50×");
  assert.match(t, /1 flex-vs-sdpa comparisons, 0 above tolerance/);
  assert.ok(!t.includes("No available kernel"), "flash f32 errors are expected, not listed");
});

Deno.test("plot: series per backend, dtype and mask; well-formed SVG", () => {
  const reports = [
    report([result("js", "full", 128, "f32", 1e-3), result("js", "causal", 128, "f32", 2e-3)]),
    report([result("js", "full", 256, "f32", 3e-3), result("js", "full", 128, "f32", 5e-3)]),
  ];
  const s = seriesOf(reports, ["full"], "fwd");
  assert.equal(s.length, 1);
  assert.equal(s[0].label, "js f32 · full");
  assert.deepEqual(s[0].points.map((p) => [p.n, p.flopsPerSecond]), [[128, 5e9], [256, 3e9]]);
  const svg = plotSvg(s, "t <1>");
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(svg.includes("t &#60;1&#62;"));
  assert.ok(svg.includes("useful GFLOP/s"));
  assert.equal(svg.match(/<polyline /g)?.length, 1);
  assert.equal(svg.match(/<circle /g)?.length, 2);
  assert.equal(niceCeil(5.1), 10);
  assert.equal(niceCeil(0.23), 0.25);
  assert.throws(() => plotSvg([], "x"), RangeError);
});
