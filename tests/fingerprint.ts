/**
 * Bit fingerprints of the backends: SHA-256 of every output of a fixed set of seeded calls
 * (forward, backward, decode; f32 and f16; masks, window, ragged KV, softcap, dropout, block
 * mask, GQA), one line per backend and case. A change that should not alter results (a move, a
 * refactor) must print the same lines before and after:
 *
 * ```sh
 * deno run -A tests/fingerprint.ts > before.txt   # on the old commit
 * deno run -A tests/fingerprint.ts > after.txt    # on the new one
 * diff before.txt after.txt
 * ```
 *
 * Options: `--backends js,wasm,webgpu` (default: all three; webgpu is left out when there is no
 * adapter), `--threads N` for wasm (default 2: the worker path).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { attention, attentionBackward, type AttentionOptions } from "../mod.ts";
import { blockMask, causalDocument, exampleMask, type MaskName } from "../masks/mod.ts";
import { randomTensor, rng } from "./_util.ts";
import { gpuInfo } from "../gpu/mod.ts";

interface Case {
  name: string;
  shape: { b: number; nq: number; nk: number; hq: number; hk: number; d: number };
  dtype: "f32" | "f16";
  options: AttentionOptions;
  backward: boolean;
}

function cases(): Case[] {
  const list: Case[] = [];
  const sq = (n: number, h = 2, d = 59) => ({ b: 2, nq: n, nk: n, hq: h, hk: h, d });
  const masks: MaskName[] = [
    "full",
    "causal",
    "slidingWindow",
    "causalDocument",
    "shareQuestion",
    "globalSlidingWindow",
    "randomEviction",
  ];
  for (const m of masks) {
    list.push({
      name: `mask ${m}`,
      shape: { ...sq(97), b: 1 },
      dtype: "f32",
      options: { mask: exampleMask(m, 97, 3).mask },
      backward: true,
    });
  }
  list.push({
    name: "causal f16 d96",
    shape: sq(130, 2, 96),
    dtype: "f16",
    options: { causal: true },
    backward: true,
  });
  list.push({
    name: "gqa nq!=nk window",
    shape: { b: 1, nq: 70, nk: 145, hq: 4, hk: 2, d: 64 },
    dtype: "f32",
    options: { windowSize: [40, 3], causal: true },
    backward: true,
  });
  list.push({
    name: "softcap dropout",
    shape: sq(77, 2, 32),
    dtype: "f32",
    options: { causal: true, softcap: 2.5, dropout: { p: 0.3, seed: 11 } },
    backward: true,
  });
  list.push({
    name: "softcap dropout f16",
    shape: sq(77, 2, 32),
    dtype: "f16",
    options: { softcap: 1.5, dropout: { p: 0.2, seed: 5 } },
    backward: true,
  });
  list.push({
    name: "block mask",
    shape: { b: 1, nq: 300, nk: 300, hq: 1, hk: 1, d: 48 },
    dtype: "f32",
    options: {
      mask: causalDocument([120, 180]),
      blockMask: blockMask([1, 0, 0, 1, 1, 0, 0, 1, 1], [1, 1, 3, 3], {
        blockRows: 128,
        blockCols: 128,
      }),
    },
    backward: true,
  });
  list.push({
    name: "ragged kv decode",
    shape: { b: 2, nq: 1, nk: 700, hq: 8, hk: 2, d: 128 },
    dtype: "f32",
    options: { kvLength: [700, 333] },
    backward: false,
  });
  list.push({
    name: "decode f16 nq3 causal",
    shape: { b: 1, nq: 3, nk: 513, hq: 4, hk: 4, d: 64 },
    dtype: "f16",
    options: { causal: true },
    backward: false,
  });
  list.push({
    name: "scale odd d17",
    shape: { b: 1, nq: 17, nk: 33, hq: 3, hk: 1, d: 17 },
    dtype: "f32",
    options: { scale: 0.37, causal: true },
    backward: true,
  });
  return list;
}

async function sha(...parts: (Float32Array | Uint16Array)[]): Promise<string> {
  const bytes = parts.reduce((n, p) => n + p.byteLength, 0);
  const all = new Uint8Array(bytes);
  let o = 0;
  for (const p of parts) {
    all.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), o);
    o += p.byteLength;
  }
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(h.slice(0, 12), (x) => x.toString(16).padStart(2, "0")).join("");
}

const args = parseArgs({
  options: { backends: { type: "string" }, threads: { type: "string", default: "2" } },
});
const wanted = (args.values.backends ?? "js,wasm,webgpu").split(",");
if (wanted.includes("webgpu") && !(await gpuInfo())) wanted.splice(wanted.indexOf("webgpu"), 1);
const threads = Number(args.values.threads);

for (const c of cases()) {
  const rand = rng(1234 + c.name.length * 7919);
  const { b, nq, nk, hq, hk, d } = c.shape;
  const q = randomTensor(rand, [b, nq, hq, d], c.dtype);
  const k = randomTensor(rand, [b, nk, hk, d], c.dtype);
  const v = randomTensor(rand, [b, nk, hk, d], c.dtype);
  const dOut = randomTensor(rand, [b, nq, hq, d], c.dtype);
  for (const backend of wanted) {
    const options = {
      ...c.options,
      backend: backend as AttentionOptions["backend"],
      ...(backend === "wasm" ? { threads } : {}),
    };
    const { out, lse } = await attention(q, k, v, options);
    let line = `${backend.padEnd(6)} ${c.name.padEnd(24)} fwd ${await sha(out.data, lse)}`;
    if (c.backward) {
      const g = await attentionBackward({ q, k, v, out, lse, dOut }, options);
      line += ` bwd ${await sha(g.dq.data, g.dk.data, g.dv.data)}`;
    }
    console.log(line);
  }
}
