/**
 * The host's cost of a GPU-resident decode call, two trees of the library side by side in one
 * process (so that a shared machine's drift falls on both alike): blocks of calls recorded into
 * command encoders that are finished and never submitted, so no kernel runs and what is timed is
 * the library's JavaScript and the WebGPU encoding; the trees alternate block by block.
 *
 * - `repeat`: one layer's call (Nq=1, Nk=4096, Hq=32, Hk=8, d=128, kvLength growing every 32
 *   calls), 32 calls an encoder;
 * - `loop`: 32 layers with their own caches, one encoder a step, `kvLength` growing each step.
 *
 * Run: `deno run -A bench/gpu/host_ab.ts --trees OLD,NEW [--pattern repeat|loop] [--rounds 30]`,
 * where OLD and NEW are directories holding a `mod.ts` (e.g. `git worktree add /tmp/old HEAD~1`).
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    trees: { type: "string" },
    pattern: { type: "string", default: "repeat" },
    rounds: { type: "string", default: "30" },
  },
});
if (!a.trees || !["repeat", "loop"].includes(a.pattern!)) {
  console.error("usage: host_ab.ts --trees OLD,NEW [--pattern repeat|loop] [--rounds 30]");
  Deno.exit(2);
}
const trees = a.trees.split(",").map((t) =>
  new URL(`${t.replace(/\/$/, "")}/mod.ts`, `file://${Deno.cwd()}/`).href
);
const layers = a.pattern === "loop" ? 32 : 1;
const shape = { nq: 1, nk: 4096, hq: 32, hk: 8, d: 128 };

/** One block of calls of a tree: returns µs a call. */
type Block = () => Promise<number>;

async function setup(url: string): Promise<Block> {
  // deno-lint-ignore no-explicit-any
  const m: any = await import(url);
  const device: GPUDevice = await m.gpuDevice();
  const random = (s: number[]) =>
    m.toGpu(m.tensor(Float32Array.from({ length: s.reduce((x, y) => x * y) }, Math.random), s));
  const q = await random([1, shape.nq, shape.hq, shape.d]);
  const kv = [1, shape.nk, shape.hk, shape.d];
  const ls: { k: unknown; v: unknown; outputs: unknown }[] = [];
  for (let l = 0; l < layers; l++) {
    const out = await random([1, shape.nq, shape.hq, shape.d]);
    const lse = { buffer: (await random([1, shape.hq, shape.nq, 1])).buffer, length: shape.hq };
    ls.push({ k: await random(kv), v: await random(kv), outputs: { out, lse } });
  }
  let call = 0;
  const block = async () => {
    const t0 = performance.now();
    for (let e = 0; e < (layers === 1 ? 1 : 4); e++) {
      const encoder = device.createCommandEncoder();
      for (let c = 0; c < 32; c++) {
        const x = ls[c % layers];
        const kvLength = [2000 + (Math.floor(call++ / 32) % 2000)];
        await m.attention(q, x.k, x.v, { outputs: x.outputs, encoder, kvLength });
      }
      encoder.finish();
    }
    return ((performance.now() - t0) / (layers === 1 ? 32 : 128)) * 1000;
  };
  for (let w = 0; w < 10; w++) await block(); // warm-up: V8 compiles the call path
  return block;
}

const blocks = [];
for (const t of trees) blocks.push(await setup(t));
const times: number[][] = trees.map(() => []);
for (let r = 0; r < Number(a.rounds); r++) {
  for (let i = 0; i < trees.length; i++) times[i].push(await blocks[i]());
}
const median = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1];
console.log(`pattern ${a.pattern}, ${a.rounds} alternating blocks; µs a call`);
trees.forEach((_, i) =>
  console.log(
    `${a.trees!.split(",")[i]}: median ${median(times[i]).toFixed(1)}, min ${
      Math.min(...times[i]).toFixed(1)
    }`,
  )
);
