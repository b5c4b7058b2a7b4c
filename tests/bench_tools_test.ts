/**
 * Tests of the comparison tools under bench/: the ONNX models (decoded back from their protobuf
 * bytes; `tests/tools/onnx_peers_test.ts` runs them in onnxruntime), the mask export read by
 * torch_compare.py, the GPU table, the kernel A/B table and the plot.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MASK_NAMES } from "../masks/examples.ts";
import { additiveMask, attentionModel, matmulSoftmaxModel, mhaModel } from "../bench/cpu/_onnx.ts";
import { gemmBaseline, gemmBaselineThreads, gemmResult } from "../bench/cpu/_peers.ts";
import { exportMasks } from "../bench/cli/export_masks.ts";
import { gpuTable, type TorchReport } from "../bench/gpu/gpu_table.ts";
import { GPU_BENCH_SCHEMA, type GpuBenchReport } from "../bench/gpu/gpu_bench.ts";
import { abTable } from "../bench/gpu/kernel_ab.ts";
import { niceCeil, plotSvg, seriesOf } from "../bench/cli/plot.ts";
import { cpuMeter, type Result } from "../bench/cli/_run.ts";
import { fakeReport, fakeResult } from "./_bench_util.ts";

type Field = { n: number; wire: number; value: number | Uint8Array };

/** Decodes one protobuf message into its fields (varint, length-delimited and 32-bit). */
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
    } else if (wire === 5) {
      out.push({ n, wire, value: buf.subarray(i, i + 4) });
      i += 4;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  assert.equal(i, buf.length, "message ends on a field boundary");
  return out;
}
const text = (v: number | Uint8Array) => new TextDecoder().decode(v as Uint8Array);
const get = (fs: Field[], n: number) => fs.filter((f) => f.n === n);
const sub = (f: Field) => decode(f.value as Uint8Array);

/** A decoded ModelProto: opsets, graph nodes (op, domain, inputs, outputs, attributes), io. */
function readModel(bytes: Uint8Array) {
  const model = decode(bytes);
  assert.equal(get(model, 1)[0].value, 8, "ir_version");
  const opsets = get(model, 8).map(sub).map((
    o,
  ) => [text(get(o, 1)[0]?.value ?? new Uint8Array()), get(o, 2)[0].value]);
  const graph = sub(get(model, 7)[0]);
  const nodes = get(graph, 1).map(sub).map((nd) => ({
    op: text(get(nd, 4)[0].value),
    domain: get(nd, 7).length ? text(get(nd, 7)[0].value) : "",
    inputs: get(nd, 1).map((f) => text(f.value)),
    outputs: get(nd, 2).map((f) => text(f.value)),
    attrs: new Map(get(nd, 5).map(sub).map((a) => [text(get(a, 1)[0].value), a])),
  }));
  const valueInfo = (f: Field): [string, number[]] => {
    const vi = sub(f);
    const tensor = sub(get(sub(get(vi, 2)[0]), 1)[0]);
    assert.equal(get(tensor, 1)[0].value, 1, "FLOAT");
    const dims = get(sub(get(tensor, 2)[0]), 1).map((d) => get(sub(d), 1)[0].value as number);
    return [text(get(vi, 1)[0].value), dims];
  };
  // Every node input is a graph input, an initializer, an earlier node's output, or absent ("").
  const known = new Set(["", ...get(graph, 11).map((f) => valueInfo(f)[0])]);
  for (const init of get(graph, 5)) known.add(text(get(sub(init), 8)[0].value));
  for (const nd of nodes) {
    for (const x of nd.inputs) assert.ok(known.has(x), `input ${x} of ${nd.op} is defined`);
    for (const o of nd.outputs) known.add(o);
  }
  return {
    opsets,
    graph,
    nodes,
    inputs: get(graph, 11).map(valueInfo),
    output: valueInfo(get(graph, 12)[0]),
  };
}

Deno.test("attentionModel: a valid ONNX ModelProto with the expected graph", () => {
  const m = readModel(attentionModel({ batch: 2, seq: 8, heads: 3, dim: 16 }));
  assert.deepEqual(m.opsets, [["", 17]]);
  assert.deepEqual(m.nodes.map((nd) => nd.op), [
    "Transpose",
    "Transpose",
    "Transpose",
    "MatMul",
    "Mul",
    "Add",
    "Softmax",
    "MatMul",
    "Transpose",
  ]);
  assert.deepEqual(m.inputs, [["q", [2, 8, 3, 16]], ["k", [2, 8, 3, 16]], ["v", [2, 8, 3, 16]], [
    "mask",
    [8, 8],
  ]]);
  assert.deepEqual(m.output, ["out", [2, 8, 3, 16]]);
  // Transpose perms (INTS attributes, type 7).
  const perm = (i: number) => get(m.nodes[i].attrs.get("perm")!, 8).map((f) => f.value);
  assert.deepEqual([perm(0), perm(1), perm(8)], [[0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]]);
  assert.equal(get(m.nodes[1].attrs.get("perm")!, 20)[0].value, 7);
  // The scale initializer: a float scalar 1/sqrt(16) in raw_data.
  const init = decode(get(m.graph, 5)[0].value as Uint8Array);
  assert.equal(text(get(init, 8)[0].value), "scale");
  const raw = get(init, 9)[0].value as Uint8Array;
  assert.equal(new Float32Array(raw.slice().buffer)[0], 0.25);
  // Softmax axis -1 is a 10-byte two's-complement varint.
  assert.equal(get(m.nodes[6].attrs.get("axis")!, 3)[0].value, 2 ** 64 - 1);
  assert.deepEqual(Array.from(additiveMask(new Uint8Array([1, 0]))), [0, -Infinity]);
});

Deno.test("matmulSoftmaxModel and mhaModel: the expected graphs", () => {
  const a = readModel(matmulSoftmaxModel(2, 8, 4));
  assert.deepEqual(a.nodes.map((nd) => nd.op), ["MatMul", "Softmax", "MatMul"]);
  assert.deepEqual(a.inputs, [["q", [2, 8, 4]], ["kT", [2, 4, 8]], ["v", [2, 8, 4]]]);
  assert.deepEqual(a.output, ["out", [2, 8, 4]]);
  for (const mask of [false, true]) {
    const m = readModel(mhaModel(1, 8, 2, 16, mask));
    assert.deepEqual(m.opsets, [["", 17], ["com.microsoft", 1]]);
    assert.equal(m.nodes.length, 1);
    const mha = m.nodes[0];
    assert.deepEqual([mha.op, mha.domain], ["MultiHeadAttention", "com.microsoft"]);
    // attention_bias is the 6th input; the 4th and 5th (bias, key_padding_mask) are absent.
    assert.deepEqual(mha.inputs, mask ? ["q", "k", "v", "", "", "bias"] : ["q", "k", "v"]);
    assert.equal(get(mha.attrs.get("num_heads")!, 3)[0].value, 2);
    const scale = get(mha.attrs.get("scale")!, 2)[0].value as Uint8Array;
    assert.equal(new DataView(scale.slice().buffer).getFloat32(0, true), 0.25);
    assert.deepEqual(m.inputs.map(([n]) => n), mask ? ["q", "k", "v", "bias"] : ["q", "k", "v"]);
    if (mask) assert.deepEqual(m.inputs[3][1], [1, 1, 8, 8]);
    assert.deepEqual(m.output, ["out", [1, 8, 32]]);
  }
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

const result = (backend: string, mask: string, seq: number, dtype: "f32" | "f16", tf: number) =>
  fakeResult({
    backend,
    mask,
    shape: { seq, heads: 16, kvHeads: 16, dim: 64, dtype },
    visibleFraction: 0.5,
    density: 0.6,
    tile: [64, 64],
    flops: tf * 1e9, // in the 1 ms median time: tf TFLOP/s
  });
const report = (results: Result[]) => fakeReport(results, { dtype: results[0].shape.dtype });

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
  const kernel = (dtype: "f32" | "f16", tflops: number): GpuBenchReport => ({
    schema: GPU_BENCH_SCHEMA,
    date: "2026-11-22T00:00:00Z",
    args: [],
    device: "H100",
    shape: { batch: 1, heads: 16, kvHeads: 16, dim: 64, dtype },
    rows: [{
      mask: "causal",
      config: "",
      pass: "fwd",
      seq: 1024,
      ms: 1,
      tflops,
      density: 0.5,
      visible: 0.5,
    }],
  });
  const t = gpuTable(
    [
      report([result("webgpu", "causal", 1024, "f32", 8)]),
      report([
        result("webgpu", "causal", 1024, "f16", 50),
      ]),
    ],
    torch,
    [kernel("f32", 16), kernel("f16", 60)],
  );
  const lines = t.split("\n");
  const f32 = lines.findIndex((l) => l.startsWith("N=1024 · webgpu f32 vs torch f32"));
  const bf16 = lines.findIndex((l) => l.startsWith("N=1024 · webgpu f16 vs torch bf16"));
  assert.ok(f32 >= 0 && bf16 > f32, t);
  const row = lines.slice(f32).find((l) => l.startsWith("causal"))!.split(/\s+/);
  // mask, ours kernel, ours e2e, flex, flex e2e, flash, eff, math, ÷flex e2e (e2e), ÷flex and
  // ÷best sdpa (kernel)
  assert.deepEqual(row, [
    "causal",
    "16.0",
    "8.00",
    "20.0",
    "4.00",
    "—",
    "10.0",
    "—",
    "2.00×",
    "0.80×",
    "1.60×",
  ]);
  const rowBf16 = lines.slice(bf16).find((l) => l.startsWith("causal"))!.split(/\s+/);
  assert.equal(rowBf16[1], "60.0");
  assert.equal(rowBf16[2], "50.0");
  assert.equal(rowBf16[9], "0.60×");
  assert.match(t, /1 flex-vs-sdpa comparisons, 0 above tolerance/);
  assert.ok(!t.includes("No available kernel"), "flash f32 errors are expected, not listed");
});

Deno.test("plot: kernel reports of bench/gpu/gpu_bench.ts become their own series", () => {
  const rep: GpuBenchReport = {
    schema: GPU_BENCH_SCHEMA,
    date: "",
    args: [],
    device: "H100",
    shape: { batch: 1, heads: 16, kvHeads: 16, dim: 64, dtype: "f16" },
    rows: [1024, 2048].map((seq, i) => ({
      mask: "full",
      config: "",
      pass: "fwd",
      seq,
      ms: 1,
      tflops: 10 + i,
      density: 1,
      visible: 1,
    })),
  };
  const s = seriesOf([rep], ["full"], "fwd");
  assert.deepEqual(s.map((x) => x.label), ["webgpu kernel f16 · full"]);
  assert.deepEqual(s[0].points, [{ n: 1024, flopsPerSecond: 10e12 }, {
    n: 2048,
    flopsPerSecond: 11e12,
  }]);
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

Deno.test("gemmBaselineThreads: every worker thread runs the baseline micro-kernel, same bits", async () => {
  gemmBaseline(3);
  const one = gemmResult(-1);
  assert.ok(one.some((x) => x !== 0) && one.every(Number.isFinite), "the baseline computed C");
  const ms = await gemmBaselineThreads(3, 2);
  assert.ok(ms > 0 && Number.isFinite(ms));
  for (const t of [0, 1]) assert.deepEqual(gemmResult(t), one, `worker ${t}`);
  // more threads than before: the pool grows (it does not silently run the two it has)
  await gemmBaselineThreads(3, 3);
  for (const t of [0, 1, 2]) assert.deepEqual(gemmResult(t), one, `worker ${t} of 3`);
  await assert.rejects(() => gemmBaselineThreads(3, 8), RangeError);
});

Deno.test("cpuMeter: the load average, then how the CPU time since the last call was spent", () => {
  const load = cpuMeter();
  const t0 = performance.now();
  while (performance.now() - t0 < 60) { /* busy */ }
  const line = load();
  assert.match(line, /^\d+\.\d\d \d+\.\d\d \d+\.\d\d/);
  if (Deno.build.os === "linux") {
    const m = line.match(/; CPU time since the last line: busy (\d+) %, steal (\d+) %$/);
    assert.ok(m, line);
    assert.ok(Number(m[1]) > 0 && Number(m[1]) + Number(m[2]) <= 100, line);
  }
});

Deno.test("kernel A/B: each tree's median over the rounds, and its time over the first tree's", () => {
  const rep = (ms: number[], config = "rm8", gbps?: number): GpuBenchReport => ({
    schema: GPU_BENCH_SCHEMA,
    date: "",
    args: [],
    device: "H200",
    shape: { batch: 1, heads: 32, kvHeads: 8, dim: 128, dtype: "f32" },
    rows: ms.map((m, i) => ({
      mask: i ? "causal" : "full",
      config,
      pass: "fwd",
      seq: 4096,
      ms: m,
      tflops: 1,
      density: 1,
      visible: 1,
      ...(gbps ? { gbps: gbps / m } : {}),
    })),
  });
  // three rounds of two trees; the second labels its kernels differently
  const rounds = [[rep([2, 1]), rep([1, 1], "rm8 new")], [rep([4, 1]), rep([3, 2], "rm8 new")], [
    rep([3, 1]),
    rep([2, 0.5], "rm8 new"),
  ]];
  const lines = abTable(["old", "new"], rounds).split("\n");
  assert.deepEqual(lines[0].trim().split(/\s{2,}/), [
    "pass",
    "mask",
    "N",
    "config",
    "old ms",
    "new ms",
    "new / old",
  ]);
  assert.deepEqual(lines[2].trim().split(/\s+/), [
    "fwd",
    "full",
    "4096",
    "rm8",
    "3.000",
    "2.000",
    "0.667",
  ]);
  assert.deepEqual(lines[3].trim().split(/\s+/), [
    "fwd",
    "causal",
    "4096",
    "rm8",
    "1.000",
    "1.000",
    "1.000",
  ]);
  // decoding rows add each tree's bandwidth
  const dec = abTable(["a", "b"], [[rep([2], "d", 6000), rep([1], "d", 6000)]]).split("\n");
  assert.ok(dec[0].includes("a GB/s") && dec[0].includes("b GB/s"), dec[0]);
  assert.deepEqual(dec[2].trim().split(/\s+/).slice(-3), ["3000", "6000", "0.500"]);
  // reports that do not pair up are an error, not a table
  assert.throws(() => abTable(["a", "b"], [[rep([1, 1]), rep([1])]]), /tree b: 1 rows, expected 2/);
});
