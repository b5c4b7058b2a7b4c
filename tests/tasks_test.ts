/**
 * The default tasks stay lean: on a fresh Deno cache, `deno task bench --help` and the module
 * graphs of `deno task test` and `deno task check` fetch a few megabytes, not the development
 * tools (AssemblyScript, esbuild, onnxruntime, puppeteer-core: over 500 MB), whose tests run
 * under `deno task test:tools`. `deno task` installs every npm package of an import map or lockfile up front, so
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

Deno.test("a fresh cache: the default tests and checks load no development tool", async () => {
  // what `deno task test` and `deno task check` load: the tests outside tests/tools (with their
  // doc tests and the README's), and bench/ with the tests' helpers; the development tools come
  // with tests/tools (`deno task test:tools`) or are imported by a specifier the graph cannot
  // see (bench/cpu/_peers.ts)
  const root = new URL("..", import.meta.url);
  const helpers = [...Deno.readDirSync(new URL("tests", root))]
    .filter((e) => e.isFile && e.name.endsWith(".ts")).map((e) => `tests/${e.name}`);
  const cache = await Deno.makeTempDir();
  try {
    for (
      const args of [
        ["test", "-A", "--doc", "--no-run", "--ignore=tests/tools", "."],
        ["test", "-A", "--doc", "--no-run", "README.md"],
        ["check", "bench/", ...helpers],
      ]
    ) {
      const out = await new Deno.Command(Deno.execPath(), {
        args,
        cwd: root,
        env: { DENO_DIR: cache },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, `deno ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
    }
    const mb = (await size(cache)) / 2 ** 20;
    assert.ok(mb < 32, `a fresh cache holds ${mb.toFixed(1)} MiB after the default tests' checks`);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("deno publish --dry-run: the library files only, with LICENSE and CHANGELOG", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  const root = new URL("..", import.meta.url).href;
  const files = [...text.matchAll(/(file:\/\/\S+) \(([\d.]+)(B|KB|MB)\)/g)].map((
    [, url, n, unit],
  ) => ({
    path: url.slice(root.length),
    bytes: Number(n) * (unit === "MB" ? 2 ** 20 : unit === "KB" ? 1024 : 1),
  }));
  const paths = files.map((f) => f.path);
  for (const need of ["mod.ts", "LICENSE", "CHANGELOG.md", "README.md"]) {
    assert.ok(paths.includes(need), `${need} is published`);
  }
  const stray = paths.filter((p) =>
    /^(tests|bench|docs|tools|reference|\.ci)\/|internal\.ts$/.test(p)
  );
  assert.deepEqual(stray, [], "no tests, benchmarks, docs or internal entry points");
  const kib = files.reduce((a, f) => a + f.bytes, 0) / 1024;
  console.log(`published: ${files.length} files, ${kib.toFixed(0)} KiB`);
  // a guard against growth, not a target: 524 KiB with sinks, ALiBi, paged caches, ragged caches'
  // mask templates, prepared calls, the measured choices (forward, backward and decoding, with
  // their margin; loads read ahead or not; an earlier report taken again), the kernels'
  // workgroup-memory regions, their read-ahead loads (the backward's across tiles), the forward's
  // double buffers, the longest-first launch order, the decoding kernel's shuffled row reductions
  // and both WASM builds in one compressed stream (the sources are 35 % doc comments; the mask
  // pictures live in docs/MASKS.md, not in the published README); 538 KiB with the decoding
  // kernel's lane groups (f16 caches: 0.64 → 0.70 of the H200's copy bandwidth); 542 KiB with the
  // WASM decoding's finite f16 conversion and its copies of only the key rows the tiles read
  assert.ok(kib < 543, `the package grew to ${kib.toFixed(0)} KiB`);
});

const npm = await new Deno.Command("npm", { args: ["--version"], stdout: "null", stderr: "null" })
  .output().then((o) => o.success, () => false);

Deno.test({
  name: "the library type-checks under plain TypeScript with @webgpu/types (Node, Bun, bundlers)",
  ignore: !npm,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const install = await new Deno.Command("npm", {
        args: ["install", "--silent", "--prefix", dir, "typescript@5.9.3", "@webgpu/types@0.1.66"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(install.code, 0, new TextDecoder().decode(install.stderr));
      const tsc = (types: string[]) =>
        new Deno.Command(`${dir}/node_modules/.bin/tsc`, {
          args: [
            ...["--noEmit", "--strict", "--allowImportingTsExtensions", "--skipLibCheck"],
            ...["--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler"],
            ...["--lib", "es2024,esnext.float16,dom", ...types, "mod.ts", "masks/mod.ts"],
          ],
          cwd: new URL("..", import.meta.url),
          stdout: "piped",
          stderr: "piped",
        }).output();
      const ok = await tsc(["--typeRoots", `${dir}/node_modules/@webgpu`, "--types", "types"]);
      assert.equal(ok.code, 0, new TextDecoder().decode(ok.stdout));
      // without the WebGPU types it fails: the check is real
      const bare = await tsc([]);
      assert.match(new TextDecoder().decode(bare.stdout), /Cannot find name 'GPUBuffer'/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
