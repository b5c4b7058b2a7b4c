/**
 * Kernel generation without a GPU: pipelines are cached by key, so the key must name every
 * compile-time constant (two configurations with one key but different code would share a
 * pipeline and compute the wrong thing).
 */

import assert from "node:assert/strict";
import {
  type ForwardConfig,
  forwardKey,
  forwardSharedBytes,
  forwardWgsl,
} from "../gpu/forward_wgsl.ts";
import {
  type BackwardConfig,
  backwardKey,
  backwardSharedBytes,
  dkvWgsl,
  dqWgsl,
  prepWgsl,
} from "../gpu/backward_wgsl.ts";
import { backwardConfig } from "../gpu/backward.ts";
import { forwardConfig } from "../gpu/forward.ts";
import { combineWgsl } from "../gpu/decode_combine_wgsl.ts";
import {
  checkProblem,
  decodeConfig,
  decodeSource,
  decodeWorkgroupBytes,
  type GpuContext,
  launchGrid,
  setGpuTuning,
  unevenLists,
} from "../gpu/internal.ts";
import { causal, full, schedule, stack } from "../masks/mod.ts";

function* combos<T extends object>(
  choices: { [K in keyof T]: T[K][] },
): Generator<T> {
  const keys = Object.keys(choices) as (keyof T)[];
  const idx = keys.map(() => 0);
  for (;;) {
    yield Object.fromEntries(keys.map((k, i) => [k, choices[k][idx[i]]])) as T;
    let i = 0;
    while (i < keys.length && ++idx[i] === choices[keys[i]].length) idx[i++] = 0;
    if (i === keys.length) return;
  }
}

function checkKeys(entries: Iterable<[string, string]>) {
  const seen = new Map<string, string>();
  let n = 0;
  for (const [key, code] of entries) {
    n++;
    const old = seen.get(key);
    if (old !== undefined) assert.equal(code, old, `key ${key} names two different kernels`);
    seen.set(key, code);
  }
  assert.ok(n > 1);
}

Deno.test("forward kernel keys name every compile-time constant", () => {
  checkKeys(
    (function* () {
      for (
        const c of combos<ForwardConfig>({
          dtype: ["f32", "f16"],
          headDim: [0, 64],
          rm: [4, 8],
          cn: [4],
          dn: [4],
          kc: [8, 16],
          kv: [16, 32],
          subgroups: [false, true],
          softcap: [false, true],
          dropout: [false, true],
        })
      ) {
        let code: string;
        try {
          code = forwardWgsl(c);
        } catch (e) {
          if (e instanceof RangeError) continue; // a configuration the generator refuses
          throw e;
        }
        yield [forwardKey(c), code];
      }
    })(),
  );
});

Deno.test("backward kernel keys name every compile-time constant", () => {
  checkKeys(
    (function* () {
      for (
        const c of combos<BackwardConfig>({
          dtype: ["f32", "f16"],
          headDim: [0, 64],
          rm: [4],
          cn: [4, 8],
          rn: [4],
          cm: [4],
          dn: [4],
          kc: [8],
          kv: [16, 32],
          split: [false, true],
          softcap: [false, true],
          dropout: [false, true],
        })
      ) {
        yield [backwardKey("prep", c), prepWgsl(c)];
        yield [backwardKey("dq", c), dqWgsl(c)];
        yield [backwardKey("dkv", c), dkvWgsl(c)];
      }
    })(),
  );
});

/** Bytes of workgroup memory a kernel's WGSL declares: `sm` (rows of 16 vec4s) and `wsU`. */
function declaredBytes(code: string): number {
  const rows = code.match(/var<workgroup> sm: array<array<vec4<f32>, 16>, (\d+)>;/);
  assert.ok(rows && /var<workgroup> wsU: array<u32, 4>;/.test(code), "sm and wsU declared");
  return Number(rows[1]) * 256 + 16;
}

Deno.test("every head dimension fitted to 16, 32 or 48 KiB of workgroup memory gets kernels that declare what was counted, or a RangeError that says what to request", () => {
  let built = 0;
  const refused = new Map<number, number>();
  for (const software of [false, true]) {
    for (const subgroups of [false, true]) {
      for (const limit of [16384, 32768, 49152]) {
        const ctx = {
          software,
          subgroups,
          limits: { maxComputeWorkgroupStorageSize: limit },
        } as unknown as GpuContext;
        for (const d of [1, 17, 59, 64, 96, 128, 160, 256]) {
          for (const dtype of ["f32", "f16"] as const) {
            const what = `${software ? "software" : "hardware"} sg ${subgroups} ${limit} B d=${d}`;
            for (
              const kernels of [
                () => {
                  const c = forwardConfig(ctx, d, dtype);
                  return [[forwardWgsl(c), forwardSharedBytes(c)]] as const;
                },
                () => {
                  const c = backwardConfig(ctx, d, dtype), b = backwardSharedBytes(c);
                  return [[dqWgsl(c), b.dq], [dkvWgsl(c), b.dkv]] as const;
                },
              ]
            ) {
              let made;
              try {
                made = kernels();
              } catch (e) {
                assert.ok(e instanceof RangeError, `${what}: ${e}`);
                assert.match(
                  e.message,
                  new RegExp(
                    `needs \\d+ bytes of workgroup memory; the GPU device allows ${limit} .*requiredLimits`,
                  ),
                  what,
                );
                refused.set(limit, (refused.get(limit) ?? 0) + 1);
                continue;
              }
              for (const [code, counted] of made) {
                assert.equal(declaredBytes(code), counted, what);
                assert.ok(counted <= limit, what);
                built++;
              }
            }
          }
        }
      }
    }
  }
  // every head dimension fits 48 KiB (the hardware adapters the defaults were chosen on); the
  // default 16 KiB of a caller's device is too little above d = 64
  assert.equal(refused.get(49152), undefined);
  assert.ok((refused.get(16384) ?? 0) > 0 && built > 300, `${built} built`);
});

/** Bytes of every `var<workgroup>` array a kernel declares (each must be one this reads). */
function workgroupBytes(code: string): number {
  const size: Record<string, number> = { f32: 4, u32: 4, "atomic<u32>": 4, "vec4<f32>": 16 };
  const all = [...code.matchAll(/var<workgroup> (\w+): ([^;]+);/g)];
  let bytes = 0;
  for (const [, name, type] of all) {
    const m = type.match(/^array<(f32|u32|atomic<u32>|vec4<f32>), (\d+)>$/);
    assert.ok(m, `${name}: ${type}`);
    bytes += size[m[1]] * Number(m[2]);
  }
  return bytes;
}

Deno.test("the decoding kernels fit 16, 32 or 48 KiB of workgroup memory with fewer rows a workgroup where needed, declaring what was counted", () => {
  const t = (n: number, h: number, d: number) => ({
    data: new Float32Array(n * h * d),
    shape: [1, n, h, d] as [number, number, number, number],
    dtype: "f32" as const,
  });
  const rowsAt = new Map<string, number>(), inScores = new Set<string>();
  for (const lanes of [0, 8, 32]) {
    // the workgroup kernel, and lane groups of 8 and 32 where the subgroups allow them
    for (const [limit, groups] of [16384, 32768, 49152].flatMap((l) => [[l, 0], [l, 8], [l, 32]])) {
      const ctx = {
        software: false,
        subgroups: lanes >= 16,
        subgroupLanes: lanes,
        limits: { maxComputeWorkgroupStorageSize: limit },
      } as unknown as GpuContext;
      for (const d of [1, 17, 59, 64, 96, 128, 160, 256]) {
        for (const [heads, nq] of [[1, 1], [4, 1], [8, 1], [8, 2], [16, 1], [4, 16]]) {
          for (const dropout of [undefined, { p: 0.1, seed: 1 }]) {
            for (const dtype of ["f32", "f16"] as const) {
              const p = checkProblem({ q: t(nq, heads, d), k: t(1, 1, d), v: t(1, 1, d) }, {
                dropout,
              });
              const old = setGpuTuning({ decodeLanes: groups || false });
              const { cfg, chunks, rowsTotal } = decodeConfig(ctx, p, dtype);
              setGpuTuning(old);
              const what = `${lanes} lanes ${limit} B d=${d} ${heads}×${nq} ${dtype} ${!!dropout}${
                cfg.lanes ? ` groups of ${cfg.lanes}` : ""
              }`;
              assert.equal(cfg.lanes, groups && groups <= lanes ? groups : undefined, what);
              const bytes = workgroupBytes(decodeSource(cfg));
              assert.equal(bytes, decodeWorkgroupBytes(cfg), what);
              assert.ok(bytes <= limit, `${what}: ${bytes}`);
              assert.ok(workgroupBytes(combineWgsl(cfg)) <= limit, what);
              assert.equal(chunks, Math.ceil(rowsTotal / cfg.rows), what);
              if (!dropout && dtype === "f32" && lanes === 32 && !groups) {
                rowsAt.set(`${limit}:${d}:${heads * nq}`, cfg.rows);
                if (cfg.sumInScores) inScores.add(`${limit}:${d}:${heads * nq}`);
              }
            }
          }
        }
      }
    }
  }
  // what the tiles' memory buys: the widest rows where they fit, fewer only on small devices; the
  // groups' O summed in their own memory where it fits (an H200's decoding shape), else in sc's
  assert.equal(rowsAt.get("49152:256:16"), 16);
  assert.ok(!inScores.has("49152:128:4") && !inScores.has("16384:128:4"));
  assert.ok(inScores.has("16384:128:8") && !inScores.has("32768:256:16"));
  assert.equal(rowsAt.get("16384:128:8"), 8);
  assert.equal(rowsAt.get("16384:128:16"), 8);
  assert.equal(rowsAt.get("16384:256:8"), 4);
});

Deno.test("decoding takes lane groups for f16 where a split walks two key tiles or more and subgroups have 32 lanes", () => {
  const taken = (o: { lanes: number; nk: number; dtype: "f32" | "f16"; kvHeads?: number }) => {
    const ctx = {
      software: false,
      subgroups: o.lanes >= 16,
      subgroupLanes: o.lanes,
      limits: { maxComputeWorkgroupStorageSize: 49152 },
    } as unknown as GpuContext;
    const t = (n: number, h: number) => ({
      data: new Float32Array(n * h * 128),
      shape: [1, n, h, 128] as [number, number, number, number],
      dtype: "f32" as const,
    });
    const hk = o.kvHeads ?? 8;
    const p = checkProblem({ q: t(1, 32), k: t(o.nk, hk), v: t(o.nk, hk) }, {});
    return decodeConfig(ctx, p, o.dtype).cfg.lanes ?? 0;
  };
  // one token, 32 query heads, 8 key heads: 64 splits, so two tiles a split from 32513 keys
  assert.equal(taken({ lanes: 32, nk: 131072, dtype: "f16" }), 32);
  assert.equal(taken({ lanes: 32, nk: 32768, dtype: "f16" }), 32);
  assert.equal(taken({ lanes: 32, nk: 32512, dtype: "f16" }), 0);
  assert.equal(taken({ lanes: 64, nk: 131072, dtype: "f16" }), 32);
  // fewer key heads, more splits: 4 key heads take 128, so 32768 keys are one tile a split
  assert.equal(taken({ lanes: 32, nk: 32768, dtype: "f16", kvHeads: 4 }), 0);
  // f32 keeps the workgroup kernel; narrower subgroups too
  assert.equal(taken({ lanes: 32, nk: 131072, dtype: "f32" }), 0);
  assert.equal(taken({ lanes: 16, nk: 131072, dtype: "f16" }), 0);
  const old = setGpuTuning({ noSubgroups: true });
  try {
    assert.equal(taken({ lanes: 32, nk: 131072, dtype: "f16" }), 0);
  } finally {
    setGpuTuning(old);
  }
});

Deno.test("fitting to a device's workgroup memory gives up the d=128 forward's double buffers before its chunks or tile rows", () => {
  const at = (limit: number) =>
    forwardConfig(
      {
        software: false,
        subgroups: true,
        limits: { maxComputeWorkgroupStorageSize: limit },
      } as unknown as GpuContext,
      128,
      "f32",
    );
  // 48 KiB: the H200's default as measured; 32 KiB (consumer GPUs): the same 128-row tile and
  // 16-wide chunks with single buffers (28 KiB), not 64-row tiles double-buffered
  const big = at(49152), mid = at(32768);
  assert.deepEqual([big.rm, big.cn, big.kc, big.kv, big.double], [8, 4, 16, 16, true]);
  assert.deepEqual([mid.rm, mid.cn, mid.kc, mid.kv, mid.double], [8, 4, 16, 16, false]);
});

Deno.test("the longest-first launch order is taken where a schedule's lists differ in length, heads fastest", () => {
  const sizes = { nq: 100, nk: 100, blockRows: 16, blockCols: 16 };
  const uneven = (mask: Parameters<typeof schedule>[0]) => {
    const s = schedule(mask, sizes);
    return [
      unevenLists(s.rowPtr, s.rowOrder, s.rowBlocks),
      unevenLists(s.colPtr, s.colOrder, s.colBlocks),
    ];
  };
  assert.deepEqual(uneven(full(100)), [false, false]);
  assert.deepEqual(uneven(causal(100)), [true, true]);
  // one uneven slice among even ones decides
  assert.deepEqual(uneven(stack([[full(100), causal(100)]])), [true, true]);
  assert.deepEqual(launchGrid(true, 7, 3)(2), [3, 7, 2]);
  assert.deepEqual(launchGrid(false, 7, 3)(2), [7, 3, 2]);
  // the ordered kernels read their block from the order; the others from the workgroup index
  const hardware = () =>
    ({
      software: false,
      subgroups: true,
      limits: { maxComputeWorkgroupStorageSize: 49152 },
    }) as unknown as GpuContext;
  const fwd = forwardConfig(hardware(), 128, "f32");
  assert.ok(forwardWgsl({ ...fwd, ordered: true }).includes("sched[P.orderOff"));
  assert.ok(!forwardWgsl(fwd).includes("P.orderOff"));
  const bwd = backwardConfig(hardware(), 128, "f32");
  for (const wgsl of [dqWgsl, dkvWgsl]) {
    // the backward's: read once, shared through workgroupUniformLoad (uniform to the compiler)
    const ordered = wgsl({ ...bwd, ordered: true });
    assert.match(
      ordered,
      /wsU\[3\] = sched\[P\.orderOff[^\n]*\n\s*let [rc]b = workgroupUniformLoad\(&wsU\[3\]\)/,
    );
    assert.ok(!wgsl(bwd).includes("P.orderOff"));
  }
});
