/**
 * The import structure, checked from `deno info --json` of every entry point: imports run one
 * way (no cycle among library files; each layer imports only layers below it), and nothing
 * outside `tests/` imports from `tests/`.
 *
 * Layers, bottom to top:
 * 1. `tensor.ts`, `masks/`: data types, the FlashMask contract and the schedule;
 * 2. `types.ts`: options, results and the backend contract (types only);
 * 3. `_problem.ts`, `merge.ts`, `reference/`: validation, merging, the float64 reference;
 * 4. backends: `tiled.ts`, `wasm/`, `gpu/`;
 * 5. `attention.ts`, then the entry points `mod.ts` and the subpath modules.
 */

import assert from "node:assert/strict";
import { relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";

const root = fromFileUrl(new URL("../", import.meta.url));
const entries = ["mod.ts", "masks/mod.ts", "gpu/mod.ts"];

interface Graph {
  [file: string]: string[];
}

/** Local module graph reachable from `entry`: repository-relative paths. */
async function graph(entry: string, into: Graph): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout));
  const local = (s: string | undefined) =>
    s?.startsWith("file://") ? relative(root, fromFileUrl(s)) : undefined;
  for (const m of info.modules) {
    const from = local(m.specifier);
    if (!from) continue;
    const deps = new Set<string>();
    for (const d of m.dependencies ?? []) {
      for (const s of [d.code?.specifier, d.type?.specifier]) {
        if (s && !s.startsWith("file://")) outside.add(`${from} imports ${s}`);
        const to = local(s);
        if (to && to !== from && !to.endsWith(".json")) deps.add(to);
      }
    }
    into[from] = [...deps];
  }
}

/** Static imports of modules outside the repository (`node:`, `npm:`, URLs), by importer. */
const outside = new Set<string>();
const libraryGraph: Graph = {};
for (const e of entries) await graph(e, libraryGraph);

/** A layer number per library file (see the module doc). */
function layer(file: string): number {
  if (file === "tensor.ts" || file.startsWith("masks/") || file.startsWith("terms/")) return 1;
  if (file === "types.ts") return 2;
  if (
    ["_problem.ts", "_mask_terms.ts", "_options.ts", "merge.ts"].includes(file) ||
    file.startsWith("reference/")
  ) {
    return 3;
  }
  if (file === "tiled.ts" || file.startsWith("wasm/") || file.startsWith("gpu/")) return 4;
  if (["attention.ts", "backends.ts", "prepared.ts"].includes(file)) return 5;
  if (entries.includes(file)) return 6;
  throw new Error(`${file} has no layer: add it to tests/architecture_test.ts`);
}

Deno.test("library imports form no cycle", () => {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (f: string) => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "open") {
      const cycle = [...stack.slice(stack.indexOf(f)), f];
      throw new assert.AssertionError({ message: `import cycle: ${cycle.join(" → ")}` });
    }
    state.set(f, "open");
    stack.push(f);
    for (const d of libraryGraph[f] ?? []) visit(d);
    stack.pop();
    state.set(f, "done");
  };
  for (const f of Object.keys(libraryGraph)) visit(f);
  assert.ok(Object.keys(libraryGraph).length > 20);
});

Deno.test("library code imports nothing statically from node:, npm: or the network", () => {
  // it loads in browsers and edge runtimes as is; node:worker_threads is imported on first use
  assert.deepEqual([...outside], []);
});

Deno.test("library imports run down the layers", () => {
  // a file imports lower layers, or its own layer within its own folder; entry points may
  // re-export each other
  const dir = (f: string) => f.includes("/") ? f.split("/")[0] : ".";
  const wrong: string[] = [];
  for (const [from, deps] of Object.entries(libraryGraph)) {
    for (const to of deps) {
      const [lf, lt] = [layer(from), layer(to)];
      if (lt < lf || (lt === lf && (dir(to) === dir(from) || lf === 6))) continue;
      wrong.push(`${from} (layer ${lf}) imports ${to} (layer ${lt})`);
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("nothing outside tests/ imports from tests/", async () => {
  const offenders: string[] = [];
  for (const path of await trackedFiles()) {
    if (path.startsWith("tests/") || !/\.(ts|js|mjs)$/.test(path)) continue;
    const text = await Deno.readTextFile(`${root}${path}`);
    for (const m of text.matchAll(/(?:from|import\()\s*["']([^"']+)["']/g)) {
      if (/(^|\/)tests\//.test(m[1])) offenders.push(`${path}: ${m[1]}`);
    }
  }
  assert.deepEqual(offenders, []);
});

Deno.test("benchmarks use public or documented internal entry points only", async () => {
  const allowed =
    /^(mod\.ts|masks\/mod\.ts|gpu\/internal\.ts|wasm\/internal\.ts|reference\/.*|docs\/examples\/.*|deno\.json)$/;
  const wrong: string[] = [];
  for (const path of await trackedFiles()) {
    if (!path.startsWith("bench/") || !path.endsWith(".ts")) continue;
    const text = await Deno.readTextFile(`${root}${path}`);
    for (const m of text.matchAll(/(?:from|import\()\s*["'](\.[^"']+)["']/g)) {
      const target = relative(root, fromFileUrl(new URL(m[1], `file://${root}${path}`)));
      if (!target.startsWith("bench/") && !allowed.test(target)) {
        wrong.push(`${path} imports ${target}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

/** The repository's files (tracked, or new and not ignored), repository-relative. */
async function trackedFiles(): Promise<string[]> {
  const out = await new Deno.Command("git", {
    args: ["ls-files", "--cached", "--others", "--exclude-standard"],
    cwd: root,
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean);
}

const GENERATED = /^wasm\/(_generated\/|assembly\/(abi|microkernels)\.ts$)/;

Deno.test("no hand-written library file is over 700 lines", async () => {
  const big: string[] = [];
  for (const f of await trackedFiles()) {
    if (!f.endsWith(".ts") || /^(tests|bench|docs|reference)\//.test(f) || GENERATED.test(f)) {
      continue;
    }
    const lines = (await Deno.readTextFile(`${root}${f}`)).split("\n").length;
    if (lines > 700) big.push(`${f}: ${lines} lines`);
  }
  assert.deepEqual(big, []);
});

Deno.test("code and docs name features, not issue numbers", async () => {
  const found: string[] = [];
  for (const f of await trackedFiles()) {
    if (!/\.(ts|md|json|sh|py)$/.test(f)) continue;
    const text = await Deno.readTextFile(`${root}${f}`);
    for (const m of text.matchAll(/\b[Ii]ssue[- ]?#?\d+/g)) found.push(`${f}: ${m[0]}`);
  }
  assert.deepEqual(found, []);
});
