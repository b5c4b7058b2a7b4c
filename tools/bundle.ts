/**
 * Builds the library as one ES module file for bundler-less use (`deno task build:bundle`,
 * default `dist/flashmask.js`): `mod.ts` and everything it imports, TypeScript stripped, for any
 * runtime (esbuild's neutral platform: no `node:` import is resolved or added; the WASM kernels
 * are embedded, and `node:worker_threads` stays a lazy import of Deno and Node only). Beside it,
 * `kernels.wasm`: the plain-SIMD build of the kernels importing an unshared memory, for runtimes
 * that cannot compile code from bytes (`setWasmModule`; Cloudflare Workers import it as a module).
 *
 * Run: `deno run -A tools/bundle.ts [OUTFILE]`
 *
 * @module
 */

import * as esbuild from "npm:esbuild@0.25.12";
import { kernelBytes } from "../wasm/internal.ts";

/**
 * Writes the bundle to `outfile` and the precompilable kernels to `kernels.wasm` in the same
 * folder; returns the bundle's size in bytes.
 */
export async function bundle(outfile: string): Promise<number> {
  try {
    const result = await esbuild.build({
      entryPoints: [new URL("../mod.ts", import.meta.url).pathname],
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      outfile,
      metafile: true,
      logLevel: "error",
    });
    const out = Object.values(result.metafile!.outputs)[0];
    const external = out.imports.filter((i) => i.external).map((i) => i.path);
    if (external.length) throw new Error(`the bundle imports ${external.join(", ")}`);
    await Deno.writeFile(
      outfile.replace(/[^/]*$/, "kernels.wasm"),
      kernelBytes({ unshared: true }),
    );
    return out.bytes;
  } finally {
    await esbuild.stop();
  }
}

if (import.meta.main) {
  const outfile = Deno.args[0] ?? "dist/flashmask.js";
  const bytes = await bundle(outfile);
  console.log(`wrote ${outfile} (${(bytes / 1024).toFixed(0)} KiB) and kernels.wasm beside it`);
}
