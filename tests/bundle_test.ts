/**
 * The single-file build (`deno task build:bundle`, `tools/bundle.ts`): built fresh, it imports
 * nothing, gives the source's bits on every CPU backend in Deno, and runs in Node without
 * TypeScript support (Node 20 here: no `navigator`, threads from `node:os`), with the bits of
 * the source's `js` backend and of the same WASM build (plain or relaxed SIMD) in Deno.
 */

import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import * as source from "../mod.ts";
import { bundle } from "../tools/bundle.ts";
import { Engine, engine, replaceEngine } from "../wasm/internal.ts";

const dir = await Deno.makeTempDir();
const file = `${dir}/flashmask.js`;
const bytes = await bundle(file);
const built: typeof source = await import(pathToFileURL(file).href);

const n = 97, h = 4, d = 40;
const data = (seed: number) =>
  Float32Array.from({ length: n * h * d }, (_, i) => Math.sin(i * 0.37 + seed) * 0.8);
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

const node = await new Deno.Command("node", { args: ["--version"], stdout: "piped" }).output()
  .catch(() => undefined);

Deno.test({
  name: "bundle: runs in Node as is, with the bits of the source in Deno",
  ignore: !node?.success,
  async fn() {
    const script = `
      const lib = await import(${JSON.stringify(pathToFileURL(file).href)});
      const n = ${n}, h = ${h}, d = ${d};
      const data = ${data.toString()};
      const bits = ${bits.toString()};
      const run = ${run.toString()};
      const info = await lib.backendInfo({ backend: "wasm" });
      console.log(JSON.stringify({ js: await run(lib, "js"), wasm: await run(lib, "wasm"), info }));
    `;
    const out = await new Deno.Command("node", {
      args: ["--input-type=module", "-e", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(r.js, await run(source, "js"), "js: the same bits");
    assert.match(r.info.device, /^WASM (relaxed )?SIMD, \d+ threads?$/);
    // the same build gives the same bits whatever the runtime and the thread count
    const relaxed = r.info.simd === "relaxed";
    let want = await run(source, "wasm");
    if (relaxed !== engine().relaxed) {
      const previous = engine(), plain = new Engine({ forceSimd: !relaxed });
      replaceEngine(plain);
      try {
        want = await run(source, "wasm");
      } finally {
        await plain.terminate();
        replaceEngine(previous);
      }
    }
    assert.deepEqual(r.wasm, want, `wasm (${r.info.simd} SIMD build): the same bits`);
  },
});
