/**
 * GPU kernel benchmark: times the WebGPU kernels with timestamp queries over many dispatches
 * per submission (no upload or read-back in the timed region) and prints useful TFLOP/s:
 * 4·B·H·Nq·Nk·d·visibleFraction for the forward pass, ×2.5 for the backward pass.
 *
 * Example (the issue's headline shape):
 *   deno run -A bench/gpu/gpu_bench.ts --seq 16384 --heads 16 --dim 128 --dtype f32 --masks full
 *
 * `--sweep "rm,cn,dn,kc,kv;..."` times several forward configurations in one run.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { checkProblem } from "../../gpu/internal.ts";
import { exampleMask, MASK_NAMES, type MaskName } from "../../masks/mod.ts";
import { tuneGpu } from "../../mod.ts";
import {
  type BackwardBuffers,
  backwardKernels,
  decodeBuffers,
  decodeKernels,
  type ForwardBuffers,
  forwardKernel,
  gpuMemoryStats,
  planBackward,
  planDecode,
  planForward,
  requireGpu,
  sampleData,
  setGpuTuning,
  storage,
  timeKernel,
  upload,
} from "../../gpu/internal.ts";
import type { BackwardConfig, ForwardConfig, GpuContext } from "../../gpu/internal.ts";

const USAGE =
  `usage: deno run -A bench/gpu/gpu_bench.ts [--seq N] [--batch B] [--heads H] [--kv-heads HK]
  [--dim D] [--dtype f32|f16] [--masks a,b|all] [--reps R] [--pass fwd|bwd|both]
  [--sweep "fwd:rm,cn,dn,kc,kv,prefetch,double;bwd:rm,cn,rn,cm,kc,kv,split,prefetch,nextTile;..."] [--no-subgroups] [--json FILE]
  [--nq Q: decoding, Q queries against --seq keys] [--splits S,S...] [--decode-coop on|off] [--decode-loads K:V,K:V...] [--decode-lanes S,...|off] [--copy-bw]
  [--tune: first let tuneGpu choose the tiles of --pass (with --nq: the decoding phases) for --dtype
  and --dim]`;

/** Schema tag of the `--json` report. */
export const GPU_BENCH_SCHEMA = "flashmask-gpu-bench/1";

/** The `--json` report: kernel times (timestamp queries) per mask, length and pass. */
export interface GpuBenchReport {
  schema: typeof GPU_BENCH_SCHEMA;
  date: string;
  args: string[];
  device: string;
  shape: { batch: number; heads: number; kvHeads: number; dim: number; dtype: "f32" | "f16" };
  rows: GpuBenchRow[];
}

/** One timed kernel: median ms over the timed passes and useful TFLOP/s. */
export interface GpuBenchRow {
  /** Decoding only: bytes of K and V read once, over the time (GB/s). */
  gbps?: number;
  mask: string;
  config: string;
  pass: string;
  seq: number;
  ms: number;
  tflops: number;
  density: number;
  visible: number;
}

function report(r: GpuBenchRow): void {
  if (r.gbps) console.error(`  K and V read at ${r.gbps.toFixed(0)} GB/s`);
  console.error(
    `${r.pass} ${r.mask} N=${r.seq} ${r.config}: ${r.ms.toFixed(3)} ms ${
      r.tflops.toFixed(2)
    } TFLOP/s`,
  );
}

/**
 * Device-to-device copy bandwidth (bytes read + written per second, GB/s) of a vec4 copy
 * kernel over 1 GiB, timed with timestamp queries: the bound decoding is measured against.
 */
export async function copyBandwidth(ctx: GpuContext): Promise<number> {
  const n4 = 2 ** 26; // vec4<u32> elements: 1 GiB
  const src = storage(ctx, n4 * 16, "copy src"), dst = storage(ctx, n4 * 16, "copy dst");
  const module = ctx.device.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> b: array<vec4<u32>>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x + g.y * 65535u * 256u;
  if (i < arrayLength(&a)) { b[i] = a[i]; }
}`,
  });
  const pipe = ctx.device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const bind = ctx.device.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }],
  });
  const groups = n4 / 256;
  const ms = await timeKernel(ctx, (pass) => {
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(65535, Math.ceil(groups / 65535));
  }, 5);
  src.destroy();
  dst.destroy();
  return (2 * n4 * 16) / ms / 1e6;
}

/** Times the split-KV decoding kernels: nq queries against nk keys, no mask and causal. */
async function benchDecode(
  ctx: GpuContext,
  o: {
    batch: number;
    nq: number;
    nk: number;
    heads: number;
    kvHeads: number;
    d: number;
    dtype: "f32" | "f16";
    reps: number;
    splits?: number;
    noSubgroups?: boolean;
    coop?: boolean;
    loads?: readonly [number, number];
    lanes?: number | false;
  },
): Promise<GpuBenchRow[]> {
  const { batch, nq, nk, heads, kvHeads, d, dtype } = o;
  const bytes = dtype === "f16" ? 2 : 4;
  const qn = batch * nq * heads * d, kn = batch * nk * kvHeads * d;
  const buf = {
    q: upload(ctx, sampleData(qn, dtype, 1), "q"),
    k: upload(ctx, sampleData(kn, dtype, 2), "k"),
    v: upload(ctx, sampleData(kn, dtype, 3), "v"),
    out: storage(ctx, qn * bytes, "out"),
    lse: storage(ctx, batch * heads * nq * 4, "lse"),
  };
  const rows: GpuBenchRow[] = [];
  for (const causal of [false, true]) {
    const p = checkProblem({
      q: { buffer: buf.q, shape: [batch, nq, heads, d], dtype },
      k: { buffer: buf.k, shape: [batch, nk, kvHeads, d], dtype },
      v: { buffer: buf.v, shape: [batch, nk, kvHeads, d], dtype },
    }, { causal });
    setGpuTuning({
      decode: true,
      splits: o.splits,
      noSubgroups: o.noSubgroups,
      decodeCoop: o.coop,
      decodeLoads: o.loads,
      decodeLanes: o.lanes,
    });
    const kern = await decodeKernels(ctx, p, dtype);
    const plan = planDecode(ctx, p, { ...buf, ...decodeBuffers(ctx, p, kern) }, kern);
    const ms = await timeKernel(ctx, (pass) => plan.encode(pass), o.reps);
    const useful = 4 * batch * heads * nq * nk * d * kern.schedule.visibleFraction;
    const kvBytes = 2 * kn * bytes;
    rows.push({
      mask: causal ? "causal" : "full",
      config: `decode r${kern.cfg.rows} cw${kern.cfg.cw}${kern.cfg.coop ? " coop" : ""}${
        kern.cfg.lanes ? ` lanes ${kern.cfg.lanes}` : ""
      } loads ${kern.cfg.loads.join(":")} splits ${kern.splits} nq ${nq}`,
      pass: "fwd",
      seq: nk,
      ms,
      tflops: useful / ms / 1e9,
      density: kern.schedule.density,
      visible: kern.schedule.visibleFraction,
      gbps: kvBytes / ms / 1e6,
    });
    report(rows[rows.length - 1]);
  }
  setGpuTuning({});
  for (const x of Object.values(buf)) x.destroy();
  return rows;
}

if (import.meta.main) {
  const { values: a } = parseArgs({
    args: Deno.args,
    options: {
      seq: { type: "string", default: "4096" },
      batch: { type: "string", default: "1" },
      heads: { type: "string", default: "16" },
      "kv-heads": { type: "string" },
      dim: { type: "string", default: "128" },
      dtype: { type: "string", default: "f32" },
      masks: { type: "string", default: "full" },
      reps: { type: "string", default: "10" },
      pass: { type: "string", default: "fwd" },
      sweep: { type: "string" },
      nq: { type: "string" },
      splits: { type: "string" },
      "copy-bw": { type: "boolean" },
      tune: { type: "boolean" },
      "no-subgroups": { type: "boolean" },
      "decode-coop": { type: "string" },
      "decode-loads": { type: "string" },
      "decode-lanes": { type: "string" },
      json: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (a.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const coop = a["decode-coop"];
  if (coop !== undefined && coop !== "on" && coop !== "off") {
    throw new RangeError(`--decode-coop must be on or off, got "${coop}"`);
  }
  const ctx = await requireGpu();
  const seqs = a.seq!.split(",").map(Number);
  const batch = Number(a.batch), heads = Number(a.heads);
  const kvHeads = Number(a["kv-heads"] ?? heads), d = Number(a.dim);
  const dtype = a.dtype as "f32" | "f16";
  const masks = (a.masks === "all" ? MASK_NAMES.join(",") : a.masks!).split(",") as MaskName[];
  const reps = Number(a.reps);
  // --sweep "fwd:rm,cn,dn,kc,kv,prefetch,double;bwd:rm,cn,rn,cm,kc,kv,split,prefetch,nextTile;..."
  // (each entry one configuration; a field left empty keeps the default; the flags 1 or 0)
  const sweep: ({ fwd?: Partial<ForwardConfig>; bwd?: Partial<BackwardConfig> } | undefined)[] =
    a.sweep
      ? a.sweep.split(";").map((s) => {
        const [kind, list] = s.includes(":") ? s.split(":") : ["fwd", s];
        const parts = list.split(",");
        const names = kind === "bwd"
          ? ["rm", "cn", "rn", "cm", "kc", "kv", "split", "prefetch", "nextTile"]
          : ["rm", "cn", "dn", "kc", "kv", "prefetch", "double"];
        const cfg: Record<string, number | boolean> = {};
        parts.forEach((x, i) => {
          if (/^(split|prefetch|double|nextTile)$/.test(names[i]) && /^[01]$/.test(x)) {
            cfg[names[i]] = x === "1";
          } else if (/^\d+$/.test(x) && i < names.length) cfg[names[i]] = Number(x);
          else if (x !== "") throw new RangeError(`--sweep: cannot read "${x}" in "${s}"`);
        });
        return kind === "bwd" ? { bwd: cfg } : { fwd: cfg };
      })
      : [undefined];
  console.error(
    `device: ${ctx.name}; f16 ${ctx.f16}; subgroups ${ctx.subgroups}; timestamps ${ctx.timestamps}`,
  );
  const rows: GpuBenchRow[] = [];
  const passes = a.pass === "both" ? ["fwd", "bwd"] : [a.pass!];
  if (a.tune) {
    const passes = a.nq ? ["decode" as const] : [
      ...(a.pass === "bwd" ? [] : ["forward" as const]),
      ...(a.pass === "fwd" ? [] : ["backward" as const]),
    ];
    for (const e of (await tuneGpu({ passes, dtypes: [dtype], headDims: [d] })).entries) {
      const all = e.candidates.map((c) => `${c.choice} ${c.ms.toFixed(3)} ms`).join(", ");
      console.log(`tuneGpu ${e.pass} ${e.dtype} d=${e.headDim}: ${e.choice} (timed: ${all})`);
    }
  }
  if (a["copy-bw"]) {
    console.log(
      `device-to-device copy: ${(await copyBandwidth(ctx)).toFixed(0)} GB/s (read + write)`,
    );
  }
  if (a.nq) {
    for (const n of seqs) {
      for (const sp of (a.splits ?? "0").split(",").map(Number)) {
        for (
          const [kv, ln] of (a["decode-loads"] ?? "").split(",").flatMap((kv) =>
            (a["decode-lanes"] ?? "").split(",").map((ln) => [kv, ln])
          )
        ) {
          const loads = kv ? kv.split(":").map(Number) as [number, number] : undefined;
          const lanes = ln === "off" ? false : ln ? Number(ln) : undefined;
          const o = { batch, nq: Number(a.nq), nk: n, heads, kvHeads, d, dtype, reps };
          rows.push(
            ...await benchDecode(ctx, {
              ...o,
              splits: sp || undefined,
              noSubgroups: a["no-subgroups"],
              coop: coop === undefined ? undefined : coop === "on",
              loads,
              lanes,
            }),
          );
        }
      }
    }
  }
  for (const n of a.nq ? [] : seqs) {
    const qn = batch * n * heads * d, kn = batch * n * kvHeads * d;
    const bytes = dtype === "f16" ? 2 : 4;
    const buf: ForwardBuffers = {
      q: upload(ctx, sampleData(qn, dtype, 1), "q"),
      k: upload(ctx, sampleData(kn, dtype, 2), "k"),
      v: upload(ctx, sampleData(kn, dtype, 3), "v"),
      out: storage(ctx, qn * bytes, "out"),
      lse: storage(ctx, batch * heads * n * 4, "lse"),
    };
    const bwd: BackwardBuffers | undefined = passes.includes("bwd")
      ? {
        ...buf,
        dOut: upload(ctx, sampleData(qn, dtype, 4), "dOut"),
        stats: storage(ctx, batch * heads * n * 8, "stats"),
        dq: storage(ctx, qn * bytes, "dq"),
        dk: storage(ctx, kn * bytes, "dk"),
        dv: storage(ctx, kn * bytes, "dv"),
      }
      : undefined;
    const shape = (h: number) => [batch, n, h, d] as const;
    for (const name of masks) {
      const mask = exampleMask(name, n).mask;
      const p = checkProblem({
        q: { buffer: buf.q, shape: shape(heads), dtype },
        k: { buffer: buf.k, shape: shape(kvHeads), dtype },
        v: { buffer: buf.v, shape: shape(kvHeads), dtype },
      }, { mask });
      for (const cfg of sweep) {
        setGpuTuning({ noSubgroups: a["no-subgroups"], forward: cfg?.fwd, backward: cfg?.bwd });
        try {
          const fk = await forwardKernel(ctx, p, dtype);
          const fplan = planForward(ctx, p, buf, fk);
          const useful = 4 * batch * heads * n * n * d * fk.schedule.visibleFraction;
          const c = fk.cfg;
          const fms = await timeKernel(ctx, (pass) => fplan.encode(pass), reps);
          if (passes.includes("fwd")) {
            rows.push({
              mask: name,
              config: `rm${c.rm} cn${c.cn} dn${c.dn} kc${c.kc} kv${c.kv}${
                c.subgroups ? " sg" : ""
              }${c.prefetch ? " prefetch" : ""}${c.double ? " double" : ""}${
                c.ordered ? " ordered" : ""
              }`,
              pass: "fwd",
              seq: n,
              ms: fms,
              tflops: useful / fms / 1e9,
              density: fk.schedule.density,
              visible: fk.schedule.visibleFraction,
            });
            report(rows[rows.length - 1]);
          }
          if (bwd) {
            const bk = await backwardKernels(ctx, p, dtype);
            const bplan = planBackward(ctx, p, bwd, bk);
            const ms = await timeKernel(ctx, (pass) => bplan.encode(pass), reps);
            const b = bk.cfg;
            rows.push({
              mask: name,
              config: `rm${b.rm} cn${b.cn} rn${b.rn} cm${b.cm} kc${b.kc} kv${b.kv}${
                b.split ? " split" : ""
              }${b.prefetch ? " prefetch" : ""}${b.nextTile ? " next" : ""}${
                b.ordered ? " ordered" : ""
              }`,
              pass: "bwd",
              seq: n,
              ms,
              tflops: 2.5 * useful / ms / 1e9,
              density: bk.dkvSchedule.density,
              visible: fk.schedule.visibleFraction,
            });
            report(rows[rows.length - 1]);
          }
        } catch (e) {
          console.error(`config ${JSON.stringify(cfg)}: ${(e as Error).message.split("\n")[0]}`);
        }
      }
    }
    for (const x of new Set<GPUBuffer>(Object.values(bwd ?? buf))) x.destroy();
  }
  if (a.json) {
    const report: GpuBenchReport = {
      schema: GPU_BENCH_SCHEMA,
      date: new Date().toISOString(),
      args: Deno.args,
      device: ctx.name,
      shape: { batch, heads, kvHeads, dim: d, dtype },
      rows,
    };
    await Deno.writeTextFile(a.json, JSON.stringify(report, null, 2));
  }
  console.log(`device ${ctx.name}, B=${batch} H=${heads} Hk=${kvHeads} d=${d} ${dtype}`);
  console.log(
    `largest GPU buffer: ${gpuMemoryStats.largestLabel}, ${
      (gpuMemoryStats.largestBytes / 2 ** 20).toFixed(1)
    } MiB`,
  );
  console.log(
    "pass  mask                 N       config                       ms     TFLOP/s  density",
  );
  for (const r of rows) {
    console.log(
      `${r.pass.padEnd(5)} ${r.mask.padEnd(20)} ${String(r.seq).padEnd(7)} ${r.config.padEnd(26)} ${
        r.ms.toFixed(3).padStart(9)
      } ${r.tflops.toFixed(2).padStart(8)}  ${r.density.toFixed(3)}${
        r.gbps ? `  K+V ${r.gbps.toFixed(0)} GB/s` : ""
      }`,
    );
  }
}
