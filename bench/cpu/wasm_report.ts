/**
 * The WASM backend's performance report against the targets: GEMM micro-kernel ceiling
 * (on one thread, and on two threads at once: the machine's own two-thread scaling), forward and
 * backward (B=1, H=8, N=2048, d=64, f32, no mask) on one and two threads,
 * onnxruntime-web's WASM backend on the same shape, the twelve mask types at N=4096 against
 * dense time × schedule density, and native onnxruntime-node with a dense additive mask.
 *
 * The machine this runs on may be shared, so every measurement is taken in interleaved rounds
 * (each round times every contender once, back to back) and the report gives medians of the
 * per-round values and of the per-round ratios. Useful flops: 4·B·H·Nq·Nk·d·visibleFraction
 * forward, ×2.5 backward.
 *
 * Decoding: one new token (Nq = 1) against a KV cache of Nk = 131072 keys, H = 32,
 * Hk = 8, d = 128, f16 and f32, one and two threads, as GB/s of K and V read: their bytes over the
 * kernel time (the engine's phases, K and V already in wasm memory) and over the whole call (which
 * also copies K and V into the wasm memory: the API takes host arrays).
 *
 * Run: `deno run -A bench/cpu/wasm_report.ts [--rounds 5] [--mask-rounds 7] [--decode-rounds 5]
 * [--skip-node] [--skip-masks] [--skip-decode] [--only-decode]`
 * (onnxruntime-node: install with ONNXRUNTIME_NODE_INSTALL=skip; needs --allow-ffi, given by -A).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { attention, attentionBackward, type FlashMask, tensor, toDense, toF16 } from "../../mod.ts";
import { exampleMask, MASK_NAMES, type MaskName, schedule } from "../../masks/mod.ts";
import { BLOCK_COLS, BLOCK_ROWS, checkFinite, engine } from "../../wasm/internal.ts";
import {
  GEMM_FLOPS_PER_REP,
  gemmBaseline,
  gemmBaselineThreads,
  ortNode,
  ortWeb,
  type Peer,
} from "./_peers.ts";
import { cpuMeter, makeInputs, median, timeMs as time } from "../cli/_run.ts";

const fmt = (x: number, digits = 1) => x.toFixed(digits);
const verdict = (ok: boolean) => ok ? "met" : "NOT met";

async function main() {
  const { values: a } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "5" },
      "mask-rounds": { type: "string", default: "7" },
      "mask-heads": { type: "string", default: "4" },
      "decode-rounds": { type: "string", default: "5" },
      "skip-node": { type: "boolean", default: false },
      "skip-masks": { type: "boolean", default: false },
      "skip-decode": { type: "boolean", default: false },
      "only-decode": { type: "boolean", default: false },
    },
  });
  const rounds = Number(a.rounds), maskRounds = Number(a["mask-rounds"]);
  const eng = engine();
  const cpu = (await Deno.readTextFile("/proc/cpuinfo").catch(() => "")).match(
    /model name\s*:\s*(.*)/,
  )?.[1] ?? "unknown CPU";
  const load = cpuMeter();
  console.log(`# WASM backend report`);
  console.log(
    `${cpu}, ${navigator.hardwareConcurrency} threads; Deno ${Deno.version.deno}, V8 ${Deno.version.v8}; ` +
      `kernels: ${eng.relaxed ? "relaxed SIMD" : "plain SIMD"}; tiles ${BLOCK_ROWS}x${BLOCK_COLS}`,
  );
  console.log(`load average at start: ${load()}\n`);
  if (a["only-decode"]) {
    await decodeReport(Number(a["decode-rounds"]), load);
    return;
  }

  // ---- dense shape -------------------------------------------------------------------------
  const [B, N, H, D] = [1, 2048, 8, 64];
  const { q, k, v, dOut } = makeInputs(
    { batch: B, seq: N, heads: H, kvHeads: H, dim: D, dtype: "f32" },
    1,
  );
  const F = 4 * B * H * N * N * D;
  const { out, lse } = await attention(q, k, v, { backend: "wasm", threads: 1 });
  await attention(q, k, v, { backend: "wasm", threads: 2 });
  const web1 = await ortWeb(q, k, v, 1);
  await web1.run();
  let node1: Peer | undefined, node2: Peer | undefined;
  if (!a["skip-node"]) {
    node1 = await ortNode(q, k, v, 1);
    node2 = await ortNode(q, k, v, 2);
    await node1.run();
    await node2.run();
  }
  const reps = Math.round(F / GEMM_FLOPS_PER_REP / 4);
  gemmBaseline(reps);
  await gemmBaselineThreads(reps);
  const rows: Record<string, number[]> = {};
  const add = (name: string, gflops: number) => (rows[name] ??= []).push(gflops);
  for (let r = 0; r < rounds; r++) {
    add("gemm", F / 4 / gemmBaseline(reps) / 1e6);
    add("gemm2", F / 2 / await gemmBaselineThreads(reps) / 1e6);
    add("fwd1", F / await time(() => attention(q, k, v, { backend: "wasm", threads: 1 })) / 1e6);
    add("fwd2", F / await time(() => attention(q, k, v, { backend: "wasm", threads: 2 })) / 1e6);
    const saved = { q, k, v, out, lse, dOut };
    add(
      "bwd1",
      2.5 * F / await time(() => attentionBackward(saved, { backend: "wasm", threads: 1 })) / 1e6,
    );
    add(
      "bwd2",
      2.5 * F / await time(() => attentionBackward(saved, { backend: "wasm", threads: 2 })) / 1e6,
    );
    add("web1", F / await time(() => web1.run()) / 1e6);
    if (node1 && node2) {
      add("node1", F / await time(() => node1.run()) / 1e6);
      add("node2", F / await time(() => node2.run()) / 1e6);
    }
    add("gemm", F / 4 / gemmBaseline(reps) / 1e6);
  }
  // per-round ratios (each round's gemm = mean of its two gemm runs)
  const gemmRound = (r: number) => (rows.gemm[2 * r] + rows.gemm[2 * r + 1]) / 2;
  const ratio = (x: string, y: string | ((r: number) => number)) =>
    median(
      rows[x].map((val, r) => val / (typeof y === "string" ? rows[y][r] : y(r))),
    );
  console.log(`## B=${B} H=${H} N=${N} d=${D}, f32, no mask: median of ${rounds} rounds (GFLOP/s)`);
  console.log("| contender | GFLOP/s | ratio | target |");
  console.log("| --- | ---: | ---: | --- |");
  const g = median(rows.gemm);
  console.log(`| GEMM micro-kernel (1 thread) | ${fmt(g)} | 1 | the ceiling |`);
  const rg2 = ratio("gemm2", gemmRound);
  console.log(
    `| GEMM micro-kernel, 2 threads at once | ${fmt(median(rows.gemm2))} | ${
      fmt(rg2, 2)
    }× 1 thread | this machine's two-thread ceiling |`,
  );
  const rf = ratio("fwd1", gemmRound), rb = ratio("bwd1", gemmRound);
  const r2 = ratio("fwd2", "fwd1"), rb2 = ratio("bwd2", "bwd1"), rw = ratio("fwd1", "web1");
  console.log(
    `| wasm forward, 1 thread | ${fmt(median(rows.fwd1))} | ${fmt(rf, 2)} of GEMM | ≥ 0.75: ${
      verdict(rf >= 0.75)
    } |`,
  );
  console.log(
    `| wasm backward, 1 thread | ${fmt(median(rows.bwd1))} | ${fmt(rb, 2)} of GEMM | ≥ 0.50: ${
      verdict(rb >= 0.5)
    } |`,
  );
  console.log(
    `| wasm forward, 2 threads | ${fmt(median(rows.fwd2))} | ${fmt(r2, 2)}× 1 thread | ≥ 1.8: ${
      verdict(r2 >= 1.8)
    } |`,
  );
  console.log(
    `| wasm backward, 2 threads | ${fmt(median(rows.bwd2))} | ${fmt(rb2, 2)}× 1 thread | — |`,
  );
  console.log(
    `| ${web1.name} | ${fmt(median(rows.web1))} | wasm 1 thread is ${fmt(rw, 2)}× | ≥ 1.5: ${
      verdict(rw >= 1.5)
    } |`,
  );
  if (node1 && node2) {
    console.log(`| ${node1.name} | ${fmt(median(rows.node1))} | — | reference |`);
    console.log(`| ${node2.name} | ${fmt(median(rows.node2))} | — | reference |`);
  }
  console.log(`\nload average now: ${load()}\n`);
  if (!a["skip-decode"]) await decodeReport(Number(a["decode-rounds"]), load);
  if (a["skip-masks"]) return;

  // ---- mask types at N = 4096 ----------------------------------------------------------------
  const [MN, MH] = [4096, Number(a["mask-heads"])];
  const { q: mq, k: mk, v: mv } = makeInputs(
    { batch: 1, seq: MN, heads: MH, kvHeads: MH, dim: D, dtype: "f32" },
    5,
  );
  const masks = MASK_NAMES.map((name) => exampleMask(name, MN).mask);
  const peers = new Map<MaskName, Peer>();
  if (!a["skip-node"]) {
    for (const name of ["causalDocument", "slidingWindow"] as MaskName[]) {
      const dense = toDense(masks[MASK_NAMES.indexOf(name)], { nq: MN });
      peers.set(name, await ortNode(mq, mk, mv, 2, dense));
    }
  }
  for (const mask of masks) await attention(mq, mk, mv, { backend: "wasm", mask });
  for (const p of peers.values()) await p.run();
  // Each mask is timed between two dense runs and its ratio taken against their mean, per round:
  // this machine's speed drifts by tens of percent within a round, which separate medians (or a
  // single neighbour) would mix in. Round: D M1 D M2 D … M11 D (the full mask is its own dense).
  const mt: number[][] = MASK_NAMES.map(() => []), dt: number[][] = MASK_NAMES.map(() => []);
  const pt = new Map<MaskName, number[]>();
  const run = (mask: FlashMask) => time(() => attention(mq, mk, mv, { backend: "wasm", mask }));
  for (let r = 0; r < maskRounds; r++) {
    let before = await run(masks[0]);
    mt[0].push(before);
    dt[0].push(before);
    for (let m = 1; m < masks.length; m++) {
      mt[m].push(await run(masks[m]));
      const after = await run(masks[0]);
      dt[m].push((before + after) / 2);
      before = after;
    }
    for (const [name, p] of peers) {
      const t = await time(() => p.run());
      pt.set(name, [...(pt.get(name) ?? []), t]);
    }
  }
  const threads = navigator.hardwareConcurrency;
  console.log(
    `## Mask types, B=1 H=${MH} N=${MN} d=${D}, f32, forward, ${threads} threads, ${maskRounds} ` +
      "rounds; each mask timed between two dense runs. Ratio: median over rounds of time / " +
      "(the mean of those two dense times × density), what the verdict uses; best of rounds: " +
      "the mask's fastest time / (the fastest of those dense means × density)",
  );
  console.log(
    "| mask | visible | density | time ms (median) | GFLOP/s | dense × density ms | ratio | best of rounds | ≤ 1.2 | onnxruntime-node dense mask ms |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
  for (let m = 0; m < masks.length; m++) {
    const name = MASK_NAMES[m];
    const plan = schedule(masks[m], {
      nq: MN,
      nk: MN,
      blockRows: BLOCK_ROWS,
      blockCols: BLOCK_COLS,
    });
    const t = median(mt[m]), predicted = median(dt[m]) * plan.density;
    const ratio = median(mt[m].map((x, r) => x / (dt[m][r] * plan.density)));
    const best = Math.min(...mt[m]) / (Math.min(...dt[m]) * plan.density);
    const flops = 4 * MH * MN * MN * D * plan.visibleFraction;
    const peer = pt.get(name);
    const peerText = peer
      ? `${fmt(median(peer))} (wasm ${fmt(median(peer) / t, 2)}× faster: ${
        verdict(t < median(peer))
      })`
      : "";
    console.log(
      `| ${name} | ${fmt(plan.visibleFraction, 3)} | ${fmt(plan.density, 3)} | ${fmt(t)} | ${
        fmt(flops / t / 1e6)
      } | ${fmt(predicted)} | ${fmt(ratio, 2)} | ${fmt(best, 2)} | ${
        verdict(ratio <= 1.2)
      } | ${peerText} |`,
    );
  }
  console.log(`\nload average at end: ${load()}`);
}

/** Fast deterministic inputs in [−1, 1) (random normals for 2^27 values take too long). */
function fill(n: number, seed: number, f16: boolean): Float32Array | Uint16Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = s / 2 ** 31 - 1;
  }
  return f16 ? toF16(x) : x;
}

/** Decode throughput: Nq = 1 against Nk = 131072, H = 32, Hk = 8, d = 128. */
async function decodeReport(rounds: number, load: () => string): Promise<void> {
  const [nk, H, Hk, d] = [131072, 32, 8, 128];
  const eng = engine();
  console.log(
    `## Decoding: Nq=1, Nk=${nk}, H=${H}, Hk=${Hk}, d=${d}, no mask: median of ${rounds} rounds`,
  );
  console.log(
    "GB/s = bytes of K and V / time; kernels: the decode phases alone (K and V already in wasm " +
      "memory); call: the whole attention() call, which also copies K and V into the wasm memory " +
      "(checkFinite: false); with checkFinite: the call as by default, which also scans the copies " +
      "for NaN and ±∞, and its kernels (f16 converts faster where the inputs are known finite); " +
      "half-full: the call (checkFinite: false) with kvLength Nk/2, a cache allocated for twice " +
      "the keys it holds (only the rows the tiles read are copied); " +
      "the last column: the scan the API would run in JavaScript instead " +
      "(`checkFinite` of _problem.ts on k and v).\n",
  );
  console.log(
    "| dtype | threads | K+V MB | kernels ms | kernels GB/s | call ms | call GB/s | with checkFinite ms | its kernels ms | half-full ms | JavaScript scan ms |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const dtype of ["f16", "f32"] as const) {
    const f16 = dtype === "f16";
    const q = tensor(fill(H * d, 1, f16), [1, 1, H, d], dtype);
    const k = tensor(fill(nk * Hk * d, 2, f16), [1, nk, Hk, d], dtype);
    const v = tensor(fill(nk * Hk * d, 3, f16), [1, nk, Hk, d], dtype);
    const bytes = 2 * nk * Hk * d * (f16 ? 2 : 4);
    const opt = (threads: number, checkFinite = false, kvLength?: number[]) => ({
      backend: "wasm" as const,
      threads,
      checkFinite,
      ...(kvLength ? { kvLength } : {}),
    });
    for (const threads of [1, 2]) await attention(q, k, v, opt(threads)); // warm up
    const kern: number[][] = [[], []], call: number[][] = [[], []], checked: number[][] = [[], []];
    const checkedKern: number[][] = [[], []], half: number[][] = [[], []];
    for (let r = 0; r < rounds; r++) {
      for (const threads of [1, 2]) {
        call[threads - 1].push(await time(() => attention(q, k, v, opt(threads))));
        kern[threads - 1].push(eng.lastRunMs);
        checked[threads - 1].push(await time(() => attention(q, k, v, opt(threads, true))));
        checkedKern[threads - 1].push(eng.lastRunMs);
        half[threads - 1].push(await time(() => attention(q, k, v, opt(threads, false, [nk / 2]))));
      }
    }
    const js: number[] = [];
    for (let r = 0; r < rounds; r++) {
      js.push(
        await time(() => {
          checkFinite(k, "k");
          checkFinite(v, "v");
        }),
      );
    }
    for (const threads of [1, 2]) {
      const km = median(kern[threads - 1]), cm = median(call[threads - 1]);
      console.log(
        `| ${dtype} | ${threads} | ${fmt(bytes / 1e6, 0)} | ${fmt(km)} | ${
          fmt(bytes / km / 1e6)
        } | ${fmt(cm)} | ${fmt(bytes / cm / 1e6)} | ${fmt(median(checked[threads - 1]))} | ${
          fmt(median(checkedKern[threads - 1]))
        } | ${fmt(median(half[threads - 1]))} | ${fmt(median(js))} |`,
      );
    }
  }
  console.log(`\nload average now: ${load()}\n`);
}

if (import.meta.main) await main();
