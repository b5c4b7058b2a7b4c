/**
 * The module as users of edge runtimes get it: imported by URL into a process that has no
 * file-system, network, environment or FFI permission (only the permission to import from the one
 * origin that serves it). The WASM backend must load its embedded kernels, start its worker
 * threads and match the float64 reference; `auto` must work too.
 */

import assert from "node:assert/strict";
import { causal, type Tensor, tensor } from "../mod.ts";
import { referenceForward } from "../reference/attention.ts";
import { assertClose } from "./_util.ts";

const ROOT = new URL("../", import.meta.url);

/** The probe's inputs: q, k, v `[1, 97, 2, 24]`, uniform in [−0.5, 0.5), from a fixed seed. */
const INPUTS = `
function inputs(tensor) {
  let s = 7;
  const rand = (n) =>
    Float32Array.from({ length: n }, () => (s = (s * 69069 + 1) >>> 0) / 2 ** 32 - 0.5);
  return [0, 1, 2].map(() => tensor(rand(97 * 2 * 24), [1, 97, 2, 24]));
}`;

/** The probe the child process runs, served next to the module; prints one JSON line. */
function probe(origin: string): string {
  return `
import { attention, causal, tensor } from "${origin}/mod.ts";
import { tuning } from "${origin}/wasm/backend.ts";
import { engine } from "${origin}/wasm/_runtime.ts";
tuning.flopsPerThread = 0; // even this small problem runs on worker threads
${INPUTS}
const [q, k, v] = inputs(tensor);
const mask = causal(97);
const out = {};
for (const options of [{ backend: "wasm", threads: 2 }, { backend: "wasm", threads: 1 }, {}]) {
  const r = await attention(q, k, v, { mask, ...options });
  out[JSON.stringify(options)] = Array.from(r.out.data);
}
console.log(JSON.stringify({ outs: out, workers: engine().workers }));
`;
}

Deno.test("imported by URL with no permissions: the WASM backend loads, runs on workers, and matches js", async () => {
  const ac = new AbortController();
  let origin = "";
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/_probe.ts") {
      return new Response(probe(origin), { headers: { "content-type": "application/typescript" } });
    }
    try {
      const body = await Deno.readFile(new URL("." + path, ROOT));
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  origin = `http://127.0.0.1:${server.addr.port}`;
  const denoDir = await Deno.makeTempDir();
  try {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--no-config",
        "--no-lock",
        `--allow-import=127.0.0.1:${server.addr.port}`,
        `${origin}/_probe.ts`,
      ],
      cwd: denoDir,
      env: { DENO_DIR: denoDir, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(stderr);
    assert.equal(code, 0, err);
    const { outs, workers } = JSON.parse(new TextDecoder().decode(stdout).trim()) as {
      outs: Record<string, number[]>;
      workers: number;
    };
    assert.deepEqual(Object.keys(outs), [
      '{"backend":"wasm","threads":2}',
      '{"backend":"wasm","threads":1}',
      "{}",
    ]);
    assert.equal(workers, 2, "two worker threads started from the embedded module");
    // the same inputs here: each output against the float64 reference
    const [q, k, v] = new Function(`${INPUTS}; return inputs;`)()(tensor) as Tensor[];
    const ref = referenceForward(q, k, v, { mask: causal(97) });
    const f32 = referenceForward(q, k, v, { mask: causal(97) }, Math.fround);
    for (const [options, out] of Object.entries(outs)) {
      assertClose(`imported by URL, ${options}`, out, ref.out, f32.out);
    }
  } finally {
    ac.abort();
    await server.finished;
    await Deno.remove(denoDir, { recursive: true });
  }
});
