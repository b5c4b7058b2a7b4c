import assert from "node:assert/strict";
import { generatedSource } from "../wasm/build.ts";

Deno.test("wasm: the committed kernel bytes equal a fresh build (deno task build:wasm)", async () => {
  const committed = await Deno.readTextFile(
    new URL("../wasm/_generated/kernels.ts", import.meta.url),
  );
  assert.ok(
    committed === await generatedSource(),
    "wasm/_generated/kernels.ts differs from a fresh build of wasm/assembly/kernels.ts; " +
      "run deno task build:wasm",
  );
});
