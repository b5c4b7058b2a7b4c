/**
 * Tests of the bench CLI: argument parsing and its exit codes, the JSON report, `--compare`
 * ratios, tables, text pictures and SVG output. Small shapes only: the whole file runs in
 * seconds.
 *
 * @module
 */

import assert from "node:assert/strict";
import { causal } from "../masks/builders.ts";
import { BACKENDS, DEFAULTS, parseCli, UsageError } from "../bench/cli/_args.ts";
import { flopsUnit, picturePanel, resultTable, sig, table } from "../bench/cli/_format.ts";
import { compareReports, parseReport } from "../bench/cli/_report.ts";
import { errors, makeInputs, median, usefulFlops } from "../bench/cli/_run.ts";
import { maskSvg, SVG_COLORS } from "../bench/cli/_svg.ts";
import { fakeReport, fakeResult } from "./_bench_util.ts";
import { attention, type BackendName } from "../attention.ts";
import { exampleMask, MASK_NAMES } from "../masks/examples.ts";
import { backendTile, chooseBackends } from "../bench/cli/_device.ts";

const CLI = new URL("../bench/cli/cli.ts", import.meta.url).pathname;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code, stdout: dec.decode(stdout), stderr: dec.decode(stderr) };
}

Deno.test("parseCli: defaults", () => {
  const cmd = parseCli([]);
  assert.equal(cmd.kind, "run");
  if (cmd.kind !== "run") return;
  const c = cmd.config;
  assert.equal(c.backend, "auto");
  assert.deepEqual(c.masks, [...MASK_NAMES]);
  assert.deepEqual(c.seqs, [DEFAULTS.seq]);
  assert.equal(c.kvHeads, c.heads);
  assert.equal(c.dtype, "f32");
  assert.equal(c.pass, "fwd");
  assert.equal(c.reps, DEFAULTS.reps);
  assert.equal(c.check, false);
  assert.equal(c.tile, undefined);
});

Deno.test("parseCli: every flag", () => {
  const cmd = parseCli([
    "--backend=all",
    "--masks",
    "causal,document",
    "--seq",
    "64,128",
    "--batch",
    "2",
    "--heads",
    "8",
    "--kv-heads",
    "2",
    "--dim",
    "128",
    "--dtype",
    "f16",
    "--pass",
    "both",
    "--reps",
    "0",
    "--warmup",
    "2",
    "--threads",
    "4",
    "--tile",
    "64x32",
    "--seed",
    "7",
    "--check",
    "--picture",
    "--svg",
    "out",
    "--json",
    "r.json",
  ]);
  assert.deepEqual(cmd, {
    kind: "run",
    config: {
      backend: "all",
      masks: ["causal", "document"],
      seqs: [64, 128],
      batch: 2,
      heads: 8,
      kvHeads: 2,
      dim: 128,
      dtype: "f16",
      pass: "both",
      reps: 0,
      warmup: 2,
      check: true,
      json: "r.json",
      picture: true,
      svg: "out",
      tile: [64, 32],
      threads: 4,
      seed: 7,
    },
  });
  for (const b of BACKENDS) assert.equal(parseCli(["--backend", b]).kind, "run");
  assert.deepEqual(parseCli(["--compare", "a.json", "b.json"]), {
    kind: "compare",
    a: "a.json",
    b: "b.json",
  });
  assert.deepEqual(parseCli(["--help"]), { kind: "help" });
});

Deno.test("parseCli: bad input is a UsageError naming the flag", () => {
  const bad: [string[], RegExp][] = [
    [["--bogus"], /bogus/],
    [["--seq"], /seq/],
    [["--seq", "0"], /--seq must be a positive integer/],
    [["--seq", "12a"], /--seq/],
    [["--seq", "64,,128"], /empty item/],
    [["--reps", "-1"], /reps/],
    [["--backend", "cuda"], /--backend must be one of/],
    [["--masks", "causal,nope"], /unknown mask "nope"/],
    [["--masks", "causal,causal"], /twice/],
    [["--heads", "6", "--kv-heads", "4"], /must divide/],
    [["--dim", "512"], /at most 256/],
    [["--dtype", "bf16"], /--dtype must be one of f32, f16/],
    [["--pass", "fwdbwd"], /--pass/],
    [["--tile", "64y32"], /--tile/],
    [["--compare", "a.json"], /two report files/],
    [["--compare", "a.json", "b.json", "--seq", "64"], /no other flags/],
    [["stray"], /unexpected argument "stray"/],
  ];
  for (const [args, re] of bad) {
    assert.throws(() => parseCli(args), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${args.join(" ")}: ${e}`);
      assert.match(e.message, re, args.join(" "));
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
  }
});

Deno.test("cli: bad arguments exit with code 2, a one-line error and the usage", async () => {
  for (const args of [["--bogus"], ["--seq", "0"], ["--masks", "nope"]]) {
    const r = await cli(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.stdout, "");
    const lines = r.stderr.split("\n");
    assert.match(lines[0], /^error: /);
    assert.equal(lines[1], "");
    assert.match(lines[2], /^usage: /);
  }
  const help = await cli(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: /);
  assert.match(help.stdout, /examples:/);
});

Deno.test("cli: a small run prints tables, writes a valid report, compares two", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const json = `${dir}/a.json`;
    const args = [
      "--backend=js",
      "--masks=causal,document",
      "--seq=64",
      "--heads=2",
      "--kv-heads=1",
      "--dim=16",
      "--reps=2",
      "--pass=both",
      "--check",
      `--json=${json}`,
      `--svg=${dir}/svg`,
    ];
    const r = await cli(args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^flashmask-attention .* bench/);
    assert.match(r.stdout, /backend: js/);
    assert.match(r.stdout, /js · forward · B=1 N=64 Hq=2 Hk=1 d=16 f32 · tiles 32×32/);
    assert.match(r.stdout, /js · backward/);
    assert.match(r.stdout, /\nfull \(baseline\) /);
    assert.match(r.stdout, /\ncausal .* ok\n/);
    assert.match(r.stdout, /all ok/);
    assert.ok(!r.stdout.includes("\x1b"), "no escape codes on stdout");

    const report = parseReport(await Deno.readTextFile(json), json);
    assert.deepEqual(report.args, args);
    assert.equal(report.config.backend, "js");
    assert.equal(report.machine.logicalCpus, navigator.hardwareConcurrency);
    assert.equal(report.machine.versions.deno, Deno.version.deno);
    assert.deepEqual(report.backends.map((b) => [b.name, b.available]), [["js", true]]);
    assert.equal(report.results.length, 6); // 2 passes × (full baseline + 2 masks)
    assert.equal(report.checks.length, 4);
    assert.ok(report.checks.every((c) => c.ok && c.relError <= 1e-5));
    for (const res of report.results) {
      assert.equal(res.timesMs.length, 2);
      assert.ok(res.minMs <= res.medianMs && res.medianMs <= res.maxMs);
      assert.equal(res.medianMs, median(res.timesMs));
      const f = 4 * 1 * 2 * 64 * 64 * 16 * res.visibleFraction * (res.pass === "bwd" ? 2.5 : 1);
      assert.ok(Math.abs(res.flops - f) <= 1e-9 * f);
      assert.ok(Math.abs(res.flopsPerSecond - res.flops / (res.medianMs / 1e3)) < 1e-6 * f);
      assert.equal(res.baselineOnly, res.mask === "full");
    }
    const full = report.results.find((x) => x.mask === "full" && x.pass === "fwd")!;
    assert.equal(full.speedupVsFull, 1);
    assert.equal(full.visibleFraction, 1);
    const svgs = [...Deno.readDirSync(`${dir}/svg`)].map((e) => e.name).sort();
    assert.deepEqual(svgs, ["causal-64.svg", "document-64.svg"]);
    assertWellFormed(await Deno.readTextFile(`${dir}/svg/causal-64.svg`));

    // B: the same report with every time halved → speed-up 2 everywhere.
    const b = structuredClone(report);
    for (const res of b.results) {
      res.medianMs /= 2;
      res.flopsPerSecond *= 2;
    }
    await Deno.writeTextFile(`${dir}/b.json`, JSON.stringify(b));
    const c = await cli(["--compare", json, `${dir}/b.json`]);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(c.stdout.match(/ {2}2\.00×$/gm)?.length, 6);
    assert.match(c.stdout, /geometric mean speed-up over 6 rows: 2\.00×/);
    const bad = await cli(["--compare", json, `${dir}/missing.json`]);
    assert.equal(bad.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: --reps 0 --picture draws without timing; an unavailable backend exits 1", async () => {
  const r = await cli(["--backend=js", "--masks=causal", "--seq=64", "--reps=0", "--picture"]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.includes("causal (N=64): visible 0.508, tiles 32×32: 1 full, 2 partial"));
  assert.ok(r.stdout.includes("▓░"), "tile picture");
  assert.ok(!r.stdout.includes("median"), "nothing timed");
  // WebGPU: not available, forward only (its backward pass skipped: exit 1), or complete.
  const probe = await cli([
    "--backend=webgpu",
    "--masks=causal",
    "--seq=32",
    "--reps=1",
    "--pass=both",
  ]);
  if (/webgpu: not available/.test(probe.stdout)) {
    assert.equal(probe.code, 1);
    assert.match(probe.stderr, /backend webgpu is not available: /);
  } else if (/webgpu: available, forward only/.test(probe.stdout)) {
    assert.equal(probe.code, 1);
    const [rows, cols] = await backendTile("webgpu", 64);
    assert.match(probe.stdout, new RegExp(`webgpu · forward · .* tiles ${rows}×${cols}`));
    assert.ok(!probe.stdout.includes("webgpu · backward"));
    assert.match(probe.stderr, /backend webgpu cannot run the bwd pass \(.+\): skipped/);
  } else {
    assert.equal(probe.code, 0, probe.stderr);
    assert.match(probe.stdout, /webgpu · backward/);
  }
});

Deno.test("cli: the default backend is the library's auto, with that backend's tile", async () => {
  const { auto } = await chooseBackends("auto");
  assert.ok(auto !== undefined);
  const r = await cli(["--masks=causal", "--seq=64", "--heads=1", "--dim=16", "--reps=1"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`\nbackend: auto → ${auto} \\(the library's choice\\): `));
  const [rows, cols] = await backendTile(auto, 16);
  assert.match(r.stdout, new RegExp(`\n${auto} · forward · B=1 N=64 .* tiles ${rows}×${cols} `));
});

Deno.test("chooseBackends: auto is the backend the library names, and computes its bits", async () => {
  const c = await chooseBackends("auto");
  assert.equal(c.error, undefined);
  assert.deepEqual(c.chosen.map((s) => s.name), [c.auto]);
  const available = c.statuses.filter((s) => s.available);
  assert.ok(available.some((s) => s.name === "js"), "js always works");
  // auto computes the very bits of the backend the library says it picks
  const shape = { batch: 1, seq: 50, heads: 2, kvHeads: 1, dim: 24, dtype: "f32" } as const;
  const { q, k, v } = makeInputs(shape, 9);
  const mask = exampleMask("slidingWindow", 50).mask;
  const bits = async (backend: BackendName) =>
    new Uint32Array((await attention(q, k, v, { backend, mask })).out.data.buffer);
  assert.deepEqual(await bits("auto"), await bits(c.auto as BackendName));
  // A backend named directly is taken as is; an unknown one is an error, not a crash.
  assert.deepEqual((await chooseBackends("js")).chosen.map((s) => s.name), ["js"]);
  const bad = await chooseBackends("nope");
  assert.deepEqual(bad.chosen, []);
  assert.match(bad.error ?? "", /backend nope is not available/);
});

Deno.test("backendTile: the tile each backend schedules with, from the library", async () => {
  assert.deepEqual(await backendTile("js", 64), [32, 32]);
  assert.deepEqual(await backendTile("wasm", 64), [48, 96]);
  assert.deepEqual(await backendTile("wasm", 256), [48, 96]);
  assert.deepEqual(await backendTile("later", 64), [64, 64]);
});

const fake = (backend: string, mask: string, medianMs: number, seq = 64) =>
  fakeResult({ backend, mask, medianMs, shape: { seq } });

Deno.test("compareReports: matches by pass, shape and mask; backend only when several", () => {
  const a = fakeReport([fake("js", "full", 10), fake("js", "causal", 6)]);
  const b = fakeReport([fake("wasm", "full", 2), fake("wasm", "causal", 4)]);
  const c = compareReports(a, b);
  assert.deepEqual(c.rows.map((r) => [r.mask, r.speedup]), [["full", 5], ["causal", 1.5]]);
  assert.ok(Math.abs(c.geomean - Math.sqrt(7.5)) < 1e-12);
  // Several backends in one report: rows must also agree on the backend.
  const multi = fakeReport([fake("js", "full", 10), fake("wasm", "full", 1)]);
  const m = compareReports(multi, b);
  assert.deepEqual(m.rows.map((r) => [r.key.split(" ")[0], r.speedup]), [["wasm", 0.5]]);
  assert.equal(m.onlyA.length, 1);
  assert.equal(m.onlyB.length, 1);
  // Different shapes never match.
  const n = compareReports(a, fakeReport([fake("js", "full", 1, 128)]));
  assert.equal(n.rows.length, 0);
  assert.ok(Number.isNaN(n.geomean));
});

Deno.test("parseReport: rejects what is not a report", () => {
  assert.throws(() => parseReport("not json", "x"), /x: not JSON/);
  assert.throws(() => parseReport('{"schema":"other"}', "x"), /schema/);
  const r = JSON.parse(JSON.stringify(fakeReport([fake("js", "full", 1)])));
  r.results[0].medianMs = "fast";
  assert.throws(() => parseReport(JSON.stringify(r), "x"), /results\[0\]\.medianMs/);
});

Deno.test("formatting: units, significant digits, tables", () => {
  assert.deepEqual(flopsUnit(2e12), { name: "TFLOP/s", scale: 1e12 });
  assert.deepEqual(flopsUnit(5e9), { name: "GFLOP/s", scale: 1e9 });
  assert.deepEqual(flopsUnit(5e8), { name: "MFLOP/s", scale: 1e6 });
  assert.equal(sig(0.012345), "0.0123");
  assert.equal(sig(123.45), "123");
  assert.equal(sig(1.5), "1.50");
  assert.equal(table(["a", "bb"], [["xyz", "1"]]), "a    bb\n---  --\nxyz   1");
  const t = resultTable([fake("js", "full", 2), fake("js", "causal", 1)]);
  assert.match(t, /^js · forward · B=1 N=64 Hq=1 Hk=1 d=16 f32 · tiles 32×32 · median of 1/);
  assert.match(t, /TFLOP\/s/);
  assert.match(t, /\ncausal .* 1\.00 {4}1\.00×$/);
});

Deno.test("measures: useful FLOPs, median, errors", () => {
  const shape = { batch: 2, seq: 10, heads: 3, kvHeads: 1, dim: 4, dtype: "f32" as const };
  assert.equal(usefulFlops(shape, 0.5, "fwd"), 4 * 2 * 3 * 100 * 4 * 0.5);
  assert.equal(usefulFlops(shape, 0.5, "bwd"), 2.5 * 4 * 2 * 3 * 100 * 4 * 0.5);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.deepEqual(errors([1, 2], [1, 2]), { maxAbs: 0, rel: 0 });
  assert.equal(errors([1, NaN], [1, 2]).maxAbs, Infinity);
  assert.equal(errors([3, 4], [0, 0]).rel, 5);
  assert.ok(Math.abs(errors([1.5, 0], [1, 0]).rel - 0.5) < 1e-15);
});

Deno.test("picturePanel: elements and tile classes side by side", () => {
  const p = picturePanel("causal", { seq: 64, tile: [16, 16], seed: 1, size: 8 }).split("\n");
  assert.equal(p[0], "causal (N=64): visible 0.508, tiles 16×16: 6 full, 4 partial, 6 skipped");
  const tiles = p.slice(2).map((l) => l.split(/\s+/)[1]);
  assert.deepEqual(tiles, [
    "▓░░░",
    "█▓░░",
    "██▓░",
    "███▓",
    undefined,
    undefined,
    undefined,
    undefined,
  ]);
  assert.equal(p.slice(2)[0].split(/\s+/)[0], "▒░░░░░░░");
});

/** A minimal XML well-formedness check: balanced tags, quoted attributes, known entities. */
function assertWellFormed(xml: string) {
  const stack: string[] = [];
  const re =
    /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<|&(?!#\d+;|amp;|lt;|gt;|quot;|apos;)/g;
  let m, last = 0;
  while ((m = re.exec(xml)) !== null) {
    assert.ok(
      m[2] !== undefined,
      `malformed markup at ${m.index}: ${xml.slice(m.index, m.index + 40)}`,
    );
    const text = xml.slice(last, m.index);
    assert.ok(!text.includes(">"), `stray > before ${m.index}`);
    last = re.lastIndex;
    if (m[1]) assert.equal(stack.pop(), m[2], `closing </${m[2]}> at ${m.index}`);
    else if (!m[4]) stack.push(m[2]);
  }
  assert.deepEqual(stack, [], "unclosed elements");
  assert.match(xml, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
}

Deno.test("maskSvg: well-formed, tile rectangles match the schedule, legend present", () => {
  const svg = maskSvg(causal(64), { title: 'causal <&> "x"', tile: [16, 16] });
  assertWellFormed(svg);
  assert.match(svg, /6 full, 4 partial, 6 skipped/);
  assert.ok(svg.includes("causal &#60;&#38;&#62; &#34;x&#34;"), "title escaped");
  // The diagonal tiles are partial: one rectangle of one tile each (plus the legend swatch).
  const partial = svg.match(new RegExp(`fill="${SVG_COLORS.partial}"`, "g"))?.length;
  assert.equal(partial, 4 + 1);
  // Full tiles: rows 2..4 of the tile grid start with a run of 1, 2, 3 full tiles.
  assert.equal(svg.match(new RegExp(`fill="${SVG_COLORS.full}"`, "g"))?.length, 3 + 1);
  for (const label of ["visible", "masked", "full tile", "partial tile", "skipped tile"]) {
    assert.ok(svg.includes(`>${label}</text>`), label);
  }
  assert.throws(() => assertWellFormed("<svg><g></svg>"));
});
