/**
 * The library in other runtimes, with the bits it gives in Deno: the single-file build
 * (`deno task build:bundle`, `tools/bundle.ts`), built fresh, imports nothing and gives the
 * source's bits on every CPU backend in Deno; it runs in Node without TypeScript support (Node 20
 * in CI: no `navigator`, threads from `node:os`), and the source and the bundle run in Bun (web
 * workers), in Cloudflare's workerd with the `kernels.wasm` written beside the bundle, and in
 * headless Chromium, cross-origin isolated (worker threads) or not (one thread). `.ci/run`
 * installs Bun, workerd and Chromium; a runtime missing here is reported as ignored.
 */

import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import * as source from "../../mod.ts";
import { bundle } from "../../tools/bundle.ts";
import { Engine, engine, replaceEngine } from "../../wasm/internal.ts";

const dir = await Deno.makeTempDir();
const file = `${dir}/flashmask.js`;
const bytes = await bundle(file);
const built: typeof source = await import(pathToFileURL(file).href);

const n = 97, h = 4, d = 40;
/** Inputs from an integer generator: the same floats in every engine (no Math.sin). */
const data = (seed: number) => {
  let x = seed >>> 0;
  return Float32Array.from({ length: n * h * d }, () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) / 16777216 - 0.5;
  });
};
const bits = (x: Float32Array | Uint16Array) =>
  Array.from(new Uint32Array(new Float32Array(x).buffer));

/** Forward and backward through one copy of the library; the bits of out, lse, dq, dk, dv. */
async function run(lib: typeof source, backend: "js" | "wasm") {
  const t = (seed: number) => lib.tensor(data(seed), [1, n, h, d]);
  const [q, k, v, dOut] = [1, 2, 3, 4].map(t);
  const mask = lib.causalDocument([40, 57]);
  const f = await lib.attention(q, k, v, { mask, backend, threads: 2 });
  const g = await lib.attentionBackward({ q, k, v, ...f, dOut }, { mask, backend, threads: 2 });
  return [f.out.data, f.lse, g.dq.data, g.dk.data, g.dv.data].map((x) => bits(x));
}

Deno.test("bundle: one file that imports nothing, with the source's bits in Deno", async () => {
  assert.ok(bytes > 100_000 && bytes < 1_000_000, `${bytes} bytes`);
  assert.doesNotMatch(await Deno.readTextFile(file), /^import .* from "node:/m);
  for (const backend of ["js", "wasm"] as const) {
    assert.deepEqual(await run(built, backend), await run(source, backend), backend);
  }
});

/**
 * Whether `cmd --version` runs here (a missing program makes `output()` throw before it returns a
 * promise, so both ways of failing are caught).
 */
async function have(cmd: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd[0], {
      args: [...cmd.slice(1), "--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** The wasm bits of the source in Deno with the build (plain or relaxed SIMD) another used. */
async function wasmBits(relaxed: boolean) {
  if (relaxed === engine().relaxed) return await run(source, "wasm");
  const previous = engine(), other = new Engine({ forceSimd: !relaxed });
  replaceEngine(other);
  try {
    return await run(source, "wasm");
  } finally {
    await other.terminate();
    replaceEngine(previous);
  }
}

/**
 * Runs forward and backward in another runtime (`cmd` runs a module file given as its last
 * argument) on the library at `lib` (a file URL), and checks its bits: js equal to the source's
 * in Deno (within `jsUlps`), wasm equal to the same build's in Deno (results do not depend on the
 * thread count; relaxed SIMD only in the same engine), and the shipped plain-SIMD `.wasm` given
 * to `setWasmModule` equal to the plain build in Deno.
 */
async function sameBitsIn(
  cmd: string[],
  lib: string,
  { jsUlps = 0, sameEngine = true } = {},
): Promise<void> {
  const script = `
    const lib = await import(${JSON.stringify(lib)});
    const n = ${n}, h = ${h}, d = ${d};
    const data = ${data.toString()};
    const bits = ${bits.toString()};
    const run = ${run.toString()};
    const js = await run(lib, "js"), wasm = await run(lib, "wasm");
    const info = await lib.backendInfo({ backend: "wasm" });
    // the precompiled plain-SIMD build, as a runtime that cannot compile bytes would load it
    const fs = await import("node:fs/promises");
    const plainFile = new URL(${JSON.stringify(pathToFileURL(`${dir}/kernels.wasm`).href)});
    lib.setWasmModule(await WebAssembly.compile(await fs.readFile(plainFile)));
    const plain = await run(lib, "wasm");
    console.log(JSON.stringify({ js, wasm, plain, info }));
  `;
  const path = `${dir}/smoke-${cmd[0].replace(/\W/g, "")}-${
    Math.random().toString(36).slice(2)
  }.mjs`;
  await Deno.writeTextFile(path, script);
  const out = await new Deno.Command(cmd[0], {
    args: [...cmd.slice(1), path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  await checkBits(JSON.parse(new TextDecoder().decode(out.stdout)), { jsUlps, sameEngine });
}

/** What another runtime computed: bits of each output, and `backendInfo` of the wasm backend. */
interface Computed {
  js: number[][];
  wasm: number[][];
  /** With the shipped plain-SIMD `.wasm` given to `setWasmModule`. */
  plain: number[][];
  info: { device: string; simd: string };
}

/** The checks of {@linkcode sameBitsIn}; `device` is what `backendInfo` must say. */
async function checkBits(
  r: Computed,
  { jsUlps = 0, sameEngine = true, device = /^WASM (relaxed )?SIMD, \d+ threads?$/ } = {},
): Promise<void> {
  // the js backend's Math.exp differs between JavaScript engines in a float64's last bit, which
  // can move a float32 result by one unit; V8 (Node) gives the same bits
  assertUlps(r.js, await run(source, "js"), jsUlps, "js");
  // a failed thread start would say "(no worker threads: …)"
  assert.match(r.info.device, device, "the threads expected ran");
  // plain SIMD is deterministic everywhere: the same bits as in Deno
  assertUlps(r.plain, await wasmBits(false), 0, "wasm, kernels.wasm");
  if (r.info.simd === "plain" || sameEngine) {
    assertUlps(r.wasm, await wasmBits(r.info.simd === "relaxed"), 0, "wasm");
  } else {
    // relaxed SIMD's fused or separate multiply-add is the engine's choice: within float32
    // rounding of the plain build (the cap the accuracy tests use for f32)
    r.wasm.forEach((w: number[], i: number) => {
      const a = f32(w), b = f32(r.plain[i]);
      const scale = b.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      const err = a.reduce((m, x, j) => Math.max(m, Math.abs(x - b[j])), 0);
      assert.ok(err <= 1e-5 * scale, `relaxed wasm output ${i}: ${err} (scale ${scale})`);
    });
  }
}

const f32 = (b: number[]) => new Float32Array(new Uint32Array(b).buffer);

/**
 * Asserts that float32 outputs (as bit patterns) differ by at most `ulps` units in the last place,
 * naming the first that differs more (a plain deepEqual of such arrays prints an enormous diff).
 */
function assertUlps(got: number[][], want: number[][], ulps: number, what: string): void {
  assert.equal(got.length, want.length);
  const key = (u: number) => (u & 0x80000000 ? 0x80000000 - (u >>> 0) : u >>> 0); // ordered
  got.forEach((g, i) => {
    assert.equal(g.length, want[i].length, `${what} output ${i}: length`);
    for (let j = 0; j < g.length; j++) {
      const diff = Math.abs(key(g[j]) - key(want[i][j]));
      if (diff > ulps) {
        assert.fail(
          `${what} output ${i}[${j}]: ${diff} units apart (at most ${ulps}): ` +
            `${new Float32Array(new Uint32Array([g[j]]).buffer)[0]} vs ` +
            `${new Float32Array(new Uint32Array([want[i][j]]).buffer)[0]}`,
        );
      }
    }
  });
}

const NODE = ["node"], BUN = ["bun", "run"];

Deno.test({
  name: "runtimes: the bundle in Node as is (no TypeScript), with the source's bits",
  ignore: !await have(NODE),
  fn: () => sameBitsIn(NODE, pathToFileURL(file).href),
});

Deno.test({
  name: "runtimes: the source and the bundle in Bun, with the source's bits",
  ignore: !await have(["bun"]),
  async fn() {
    // JavaScriptCore: its own Math.exp and relaxed SIMD
    const jsc = { jsUlps: 1, sameEngine: false };
    await sameBitsIn(BUN, new URL("../../mod.ts", import.meta.url).href, jsc);
    await sameBitsIn(BUN, pathToFileURL(file).href, jsc);
  },
});

/** What the worker answers. */
interface WorkerdResult {
  js: number[][];
  wasm: number[][];
  info: { device: string };
  /** The error of a wasm call before a module was given. */
  compiled: string;
  error?: string;
}

/**
 * Runs forward and backward in Cloudflare's workerd on the bundle, with the `kernels.wasm` written
 * beside it given to `setWasmModule` (workerd does not compile code from bytes, and has no
 * workers): the results of one request.
 */
async function inWorkerd(): Promise<WorkerdResult> {
  const work = await Deno.makeTempDir({ dir });
  const port = 20000 + Math.floor(Math.random() * 20000);
  await Deno.copyFile(file, `${work}/flashmask.js`);
  await Deno.copyFile(`${dir}/kernels.wasm`, `${work}/kernels.wasm`);
  await Deno.writeTextFile(
    `${work}/worker.js`,
    `import * as lib from "./flashmask.js";
    import kernels from "./kernels.wasm";
    const n = ${n}, h = ${h}, d = ${d};
    const data = ${data.toString()};
    const bits = ${bits.toString()};
    const run = ${run.toString()};
    export default {
      async fetch() {
        try {
          const js = await run(lib, "js");
          const compiled = await lib.attention(...[1, 2, 3].map((s) => lib.tensor(data(s), [1, n, h, d])), { backend: "wasm" })
            .then(() => "compiled from bytes", (e) => e.message);
          lib.setWasmModule(kernels);
          const wasm = await run(lib, "wasm");
          const info = await lib.backendInfo({ backend: "wasm" });
          return Response.json({ js, wasm, info, compiled });
        } catch (e) {
          return Response.json({ error: String(e && e.stack || e) });
        }
      },
    };`,
  );
  await Deno.writeTextFile(
    `${work}/config.capnp`,
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = .w)],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
const w :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "flashmask.js", esModule = embed "flashmask.js"),
    (name = "kernels.wasm", wasm = embed "kernels.wasm"),
  ],
  compatibilityDate = "2026-01-01",
);`,
  );
  const server = new Deno.Command("workerd", {
    args: ["serve", `${work}/config.capnp`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    for (let tries = 0;; tries++) {
      try {
        return await (await fetch(`http://127.0.0.1:${port}/`)).json();
      } catch (e) {
        if (tries > 100) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    server.kill();
    await server.status;
    await server.stderr.cancel();
  }
}

Deno.test({
  name: "runtimes: the bundle in Cloudflare workerd with the kernels.wasm beside it, Deno's bits",
  ignore: !await have(["workerd"]),
  async fn() {
    const plain = await wasmBits(false), js = await run(source, "js");
    const r = await inWorkerd();
    assert.equal(r.error, undefined, r.error ?? "");
    assert.match(
      r.compiled,
      /^backend "wasm": the kernels could not be loaded \(.*disallowed.*\); .*setWasmModule/,
      "without a module: a clear error",
    );
    assertUlps(r.js, js, 0, "workerd js");
    assertUlps(r.wasm, plain, 0, "workerd wasm");
    assert.match(r.info.device, /^WASM SIMD, 1 thread/);
  },
});

/**
 * Runs forward and backward in headless Chromium on the bundle (a page of the bundle served by
 * this test, cross-origin isolated by COOP/COEP headers or not), with the shipped plain-SIMD
 * `kernels.wasm` beside it fetched for `setWasmModule` as a page would.
 */
async function inChromium(isolated: boolean): Promise<Computed> {
  const { default: puppeteer } = await import("npm:puppeteer-core@24.31.0");
  const headers: Record<string, string> = isolated
    ? {
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
    }
    : {};
  const files: Record<string, [string | Uint8Array, string]> = {
    "/flashmask.js": [await Deno.readTextFile(file), "text/javascript"],
    "/kernels.wasm": [
      await Deno.readFile(`${dir}/kernels.wasm`),
      "application/wasm",
    ],
    "/": [
      `<!doctype html><script type="module">
        import * as lib from "./flashmask.js";
        const n = ${n}, h = ${h}, d = ${d};
        const data = ${data.toString()};
        const bits = ${bits.toString()};
        const run = ${run.toString()};
        try {
          const js = await run(lib, "js"), wasm = await run(lib, "wasm");
          const info = await lib.backendInfo({ backend: "wasm" });
          lib.setWasmModule(await WebAssembly.compileStreaming(fetch("./kernels.wasm")));
          const plain = await run(lib, "wasm");
          window.computed = { js, wasm, plain, info };
        } catch (e) {
          window.computed = { error: String(e && e.stack || e) };
        }
      </script>`,
      "text/html",
    ],
  };
  const ac = new AbortController();
  const server = Deno.serve({ port: 0, signal: ac.signal, onListen() {} }, (req) => {
    const f = files[new URL(req.url).pathname];
    if (!f) return new Response("not found", { status: 404 });
    return new Response(f[0] as BodyInit, { headers: { ...headers, "content-type": f[1] } });
  });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--headless=new"],
  });
  try {
    const tab = await browser.newPage();
    await tab.goto(`http://127.0.0.1:${server.addr.port}/`);
    const handle = await tab.waitForFunction(
      () => (globalThis as { computed?: unknown }).computed,
      { timeout: 60_000 },
    );
    const r = await handle.jsonValue() as Computed & { error?: string };
    assert.equal(r.error, undefined, r.error ?? "");
    return r;
  } finally {
    await browser.close();
    ac.abort();
    await server.finished;
  }
}

const CHROMIUM = "/usr/bin/chromium";

Deno.test({
  name: "runtimes: the bundle in Chromium, isolated (threads) or not (one thread), Deno's bits",
  ignore: !await have([CHROMIUM]),
  async fn() {
    await checkBits(await inChromium(true), { device: /^WASM (relaxed )?SIMD, \d+ threads?$/ });
    await checkBits(await inChromium(false), {
      device:
        /^WASM (relaxed )?SIMD, 1 thread \(no worker threads: SharedArrayBuffer is not available\)$/,
    });
  },
});
