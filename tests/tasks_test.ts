/**
 * The default tasks stay lean: on a fresh Deno cache, `deno task bench --help` fetches a few
 * megabytes, not the development tools (AssemblyScript, esbuild, onnxruntime, puppeteer-core:
 * over 500 MB). `deno task` installs every npm package of an import map or lockfile up front, so
 * deno.json lists none and keeps no lockfile; the tools are imported with exact inline versions
 * where they are used.
 */

import assert from "node:assert/strict";

/** Bytes under `dir`. */
async function size(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) n += await size(path);
    else if (e.isFile) n += (await Deno.stat(path)).size;
  }
  return n;
}

Deno.test("a fresh cache: deno task bench --help fetches no development tool", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert.equal(config.imports, undefined, "no import map");
  assert.equal(config.lock, false, "no lockfile");
  const cache = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "bench", "--help"],
      cwd: new URL("..", import.meta.url),
      env: { DENO_DIR: cache },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(new TextDecoder().decode(out.stdout), /usage/i);
    const mb = (await size(cache)) / 2 ** 20;
    assert.ok(mb < 32, `a fresh cache holds ${mb.toFixed(1)} MiB after deno task bench --help`);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
