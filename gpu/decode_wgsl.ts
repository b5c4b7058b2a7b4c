/**
 * WGSL split-KV decoding (flash-decoding): attention of a few queries (Nq ≤ 16) against a long
 * key/value cache, memory-bound, so the keys are split across workgroups and every key and value
 * is read from memory once.
 *
 * - `decode`: one workgroup per (key split, key head · row chunk, batch). Its R rows are the
 *   (query head of the GQA group, query) pairs of one key head, so K and V are read once for the
 *   whole group. Keys come in tiles of 256: in phase 1 invocation t computes the R scores of key
 *   col0 + t against the queries (held in workgroup memory; each f32 score is then multiplied by
 *   scale·log2 e, the softmax working in log2 units), testing each against its key's canonical
 *   bounds (partial tiles only) and skipping the K row when every row masks it; the row max and
 *   sum of the tile are reduced by subgroup shuffles within aligned groups of `reduceWidth`
 *   invocations and then across a row's groups in workgroup memory (one barrier each; without
 *   subgroups a tree, a barrier a level); every invocation of a row keeps its running max, so
 *   that no barrier publishes it (four barriers a tile), and the online softmax rescales O; in
 *   phase 2 invocation (group g, column c) accumulates O[r][c] over the tile's keys g, g + G₂, …
 *   (V read once, coalesced). At the end the groups' O are summed and the split's normalised
 *   output and natural-log lse are written to a partials buffer. Both phases issue `loads` K or V
 *   loads before they use the first (more loads in flight read K and V faster:
 *   docs/BENCHMARKS.md).
 * - phase 1 cooperative (`coop`, the default where it measured faster: `gpu/decode.ts`): 8
 *   invocations a key, each over D/8 dims with its queries in registers, summed by subgroup
 *   shuffles; the 8 lanes' loads are interleaved, so that one load instruction reads whole rows.
 * - `combine` (`decode_combine_wgsl.ts`): one workgroup per (batch, query head, query), merges
 *   the splits: lse = log Σ exp(lseₛ), out = Σ exp(lseₛ − lse)·oₛ; rows no split sees get 0 and
 *   −∞. Its invocations read different splits, so that their loads are in flight together.
 *
 * Shapes: q `[B, Nq, Hq, d]`, k/v `[B, Nk, Hk, d]`, partials `[B, Hk, chunks, splits, R, D]` f32
 * and `[B, Hk, chunks, splits, R]` f32, out like q, lse `[B, Hq, Nq]`. D = 4·CW with CW a power of
 * two ≥ d/4 (the vec4 columns one group covers). With a shared mask slice for the whole group, the
 * split walks the schedule's tile list of the single row block (skipped tiles are never read).
 *
 * @module
 */

import type { Emit } from "./_emit.ts";
import {
  dropoutWgsl,
  headDimExpr,
  NEG_DECL,
  OPTION_PARAMS,
  PAGE_ROW_DECL,
  softcapWgsl,
} from "./_wgsl.ts";
import {
  ALIBI_BINDING,
  type KernelLayout,
  layoutWgsl,
  PAGES_BINDING,
  SINKS_BINDING,
  withBindings,
} from "./layout.ts";

/** Keys per tile (one per invocation in phase 1). */
export const DECODE_TILE = 256;
/** Query rows of the schedule's single row block (Nq ≤ this). */
export const DECODE_MAX_NQ = 16;

/** Compile-time constants of the decoding kernels. */
export interface DecodeConfig {
  dtype: "f32" | "f16";
  /** Head dimension if it fills D exactly (a constant), else 0 (read from the uniforms). */
  headDim: number;
  /** vec4 columns per group (a power of two); D = 4·cw. */
  cw: number;
  /** Rows per workgroup: 4, 8 or 16. */
  rows: number;
  /** All rows of a workgroup share one mask slice: walk the tile list, load bounds once. */
  shared: boolean;
  /**
   * Phase 1 cooperative (subgroups of at least 8, 4 rows, vec4 keys, D ≥ 32): 8 invocations a key,
   * each over D/8 dims with its queries' in registers, summed by subgroup shuffles; a key row is
   * read by 8 adjacent invocations, and no query is read from workgroup memory per key.
   */
  coop?: boolean;
  /** d % 4 == 0: K and V are read as vec4 (8 or 16 bytes per load). */
  vec: boolean;
  /**
   * K loads (phase 1) and V loads (phase 2) an invocation issues before it uses the first (each
   * phase's loop unrolled by this many, clamped to its trip count); 1: one load at a time.
   */
  loads: readonly [keys: number, values: number];
  softcap: boolean;
  dropout: boolean;
  /**
   * The tile's row max and sum: each aligned group of this many invocations (a power of two, at
   * most the smallest subgroup) reduces by subgroup shuffles, then one barrier and each row's
   * groups read from workgroup memory; 0: a tree through workgroup memory (a barrier a level).
   */
  reduceWidth?: number;
  /**
   * The groups' O are summed through the scores' workgroup memory instead of 4 KiB of their own
   * (devices with little workgroup memory; on an H200 0.4 % slower, docs/BENCHMARKS.md).
   */
  sumInScores?: boolean;
  /**
   * Lane groups ({@linkcode lanesWgsl}): each aligned group of this many invocations (a power of
   * two from 8 to 32, at most the smallest subgroup) runs its own online softmax over its keys of
   * every tile, with no workgroup barrier in the key loop; 0 or absent: the workgroup kernel.
   */
  lanes?: number;
  /** The combine adds each head's sink logit to its softmax (the `sinks` binding). */
  sinks?: boolean;
  /** The splits add ALiBi's position bias to the scores (the `alibi` binding). */
  alibi?: boolean;
  /** The splits read k and v through a page table (the `pages` binding; k and v bound whole). */
  paged?: boolean;
}

/** Uniform block of the decoding kernels, shared by both. */
const DECODE_PARAMS = [
  "nq",
  "nk",
  "heads",
  "kvHeads",
  "headDim",
  "rowsTotal",
  "chunks",
  "splits",
  "tilesPerSplit",
  "maskBatchStride",
  "maskHeadDiv",
  "rowBlocks",
  "ptrOff",
  "tilesOff",
  "boundsOff",
  "batchBase",
  "qOff",
  "kOff",
  "oOff",
  "lseOff",
  "partOff",
  "plseOff",
  "qkScale",
  "negInf",
  ...OPTION_PARAMS,
];

/** f16 keys with d % 8 == 0 are read 16 bytes (8 halves) at a time. */
export function wideKeys(c: DecodeConfig): boolean {
  return c.vec && c.dtype === "f16" && (c.headDim === 0 ? false : c.headDim % 8 === 0);
}

/**
 * Uniforms and bindings of the decoding kernel: k and v are read in vec4 units when the config
 * allows (offsets still count elements of the storage type).
 */
export function decodeLayout(c: DecodeConfig): KernelLayout {
  const wide = wideKeys(c);
  const vec = c.vec ? `vec4<${c.dtype}>` : undefined;
  const key = `${wide}:${vec}`;
  let layout = decodeLayouts.get(key);
  if (!layout) decodeLayouts.set(key, layout = makeDecodeLayout(wide, vec));
  return withBindings(layout, [c.alibi && ALIBI_BINDING, c.paged && PAGES_BINDING]);
}

/** One layout object per variant, so that what is cached by layout is found again. */
const decodeLayouts = new Map<string, KernelLayout>();

function makeDecodeLayout(wide: boolean, vec: string | undefined): KernelLayout {
  return {
    params: DECODE_PARAMS,
    bindings: [
      { name: "q", type: "T", offset: "qOff" },
      { name: "k", type: "T", view: wide ? "vec4<u32>" : vec, offset: "kOff" },
      { name: "v", type: "T", view: vec, offset: "kOff" },
      { name: "sched", type: "u32" },
      { name: "part", type: "vec4<f32>", offset: "partOff", write: true },
      { name: "plse", type: "f32", offset: "plseOff", write: true },
    ],
  };
}

/** Uniforms and bindings of the combining kernel. */
export const COMBINE_LAYOUT: KernelLayout = {
  params: DECODE_PARAMS,
  bindings: [
    { name: "part", type: "vec4<f32>", offset: "partOff" },
    { name: "plse", type: "f32", offset: "plseOff" },
    { name: "out", type: "T", offset: "oOff", write: true },
    { name: "lse", type: "f32", offset: "lseOff", write: true },
  ],
};

/** The combining kernel's layout for a configuration (sinks add their binding). */
export function combineLayout(c: DecodeConfig): KernelLayout {
  return withBindings(COMBINE_LAYOUT, [c.sinks && SINKS_BINDING]);
}

/** Pipeline keys (the splits never see the sink: only the combine's key names it). */
export function decodeKey(kind: "decode" | "combine", c: DecodeConfig): string {
  return `${kind}:${c.dtype}:d${c.headDim}:cw${c.cw}:r${c.rows}${c.shared ? ":shared" : ""}${
    kind === "decode" && c.coop ? ":coop" : ""
  }${kind === "decode" && c.lanes ? `:lanes${c.lanes}` : ""}${
    kind === "decode" && c.reduceWidth ? `:rw${c.reduceWidth}` : ""
  }${kind === "decode" && c.sumInScores ? ":osc" : ""}${c.vec ? ":vec" : ""}:l${c.loads[0]}.${
    c.loads[1]
  }${c.softcap ? ":cap" : ""}${c.dropout ? ":drop" : ""}${
    kind === "combine" && c.sinks ? ":sink" : ""
  }${kind === "decode" && c.alibi ? ":alibi" : ""}${kind === "decode" && c.paged ? ":paged" : ""}`;
}

/** The decoding kernels' header: f16 where stored so, the layout's declarations, NEG. */
export function decodeHeader(c: DecodeConfig, layout: KernelLayout): string {
  return `${c.dtype === "f16" ? "enable f16;\n" : ""}${layoutWgsl(layout, c.dtype)}
${NEG_DECL}
`;
}

/**
 * What the decoding kernels declare before their own workgroup memory: the header, the terms'
 * functions, `load_v` (V's vec4 of dims x..x+3 of a row, zero past d), `masked` (whether query i
 * is masked by the key bounds at bo), and the queries' and tile range's workgroup memory.
 */
export function decodePreamble(c: DecodeConfig): string {
  const HD = headDimExpr(c.headDim);
  const loadV = c.vec
    ? `select(vec4<f32>(0.0), vec4<f32>(v[(base + x) / 4u]), x < ${HD})`
    : `vec4<f32>(${
      [0, 1, 2, 3].map((z) => `select(0.0, f32(v[base + x + ${z}u]), x + ${z}u < ${HD})`).join(", ")
    })`;
  return `${decodeHeader(c, decodeLayout(c))}${c.dropout ? dropoutWgsl() : ""}${
    c.softcap ? softcapWgsl() : ""
  }${c.paged ? PAGE_ROW_DECL : ""}
fn load_v(base: u32, x: u32) -> vec4<f32> { return ${loadV}; }

fn masked(bo: u32, i: u32) -> bool {
  let x = i32(i);
  let lo = x >= bitcast<i32>(sched[bo]) && x < bitcast<i32>(sched[bo + 1u]);
  let up = x >= bitcast<i32>(sched[bo + 2u]) && x < bitcast<i32>(sched[bo + 3u]);
  return lo || up;
}

var<workgroup> qs: array<vec4<f32>, ${c.rows * c.cw}>;
var<workgroup> wsU: array<u32, 4>;
`;
}

/**
 * The decoding kernel's `main` up to its key loop, for workgroups of `wg` invocations: the
 * workgroup's rows (`ok{r}`, `hq{r}`, `qi{r}`, their bounds `bo{r}`, ALiBi's `ab{r}`), the queries
 * in `qs` (f32, unscaled), K's base `kBase` and row stride `kStride`, and the split's range
 * `[tFirst, tLast)` of the tile list (shared mask slice) or of all tiles.
 */
export function decodeOpening(c: DecodeConfig, wg: number): string {
  const R = c.rows, CW = c.cw, HD = headDimExpr(c.headDim), TK = DECODE_TILE;
  const each = (f: (r: number) => string) => Array.from({ length: R }, (_, r) => f(r)).join("\n");
  const search = c.shared
    ? `    let list = P.ptrOff + (b * P.maskBatchStride + hq0 / P.maskHeadDiv) * P.rowBlocks;
    // binary search: first entry with column block >= tileLo, then >= tileHi
    var a = sched[list];
    let hi = sched[list + 1u];
    var z = hi;
    while (a < z) { let mid = (a + z) / 2u; if ((sched[P.tilesOff + mid] >> 1u) < tileLo) { a = mid + 1u; } else { z = mid; } }
    let first = a;
    z = hi;
    while (a < z) { let mid = (a + z) / 2u; if ((sched[P.tilesOff + mid] >> 1u) < tileHi) { a = mid + 1u; } else { z = mid; } }
    wsU[0] = first;
    wsU[1] = a;`
    : `    wsU[0] = tileLo;
    wsU[1] = max(tileLo, tileHi);`;
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32${
    c.lanes ? ", @builtin(subgroup_invocation_id) sid: u32" : ""
  }) {
  let split = wid.x;
  let kh = wid.y / P.chunks;
  let chunk = wid.y % P.chunks;
  let bl = wid.z;
  let b = P.batchBase + bl;
  let group = P.heads / P.kvHeads;
  let kStride = P.kvHeads * ${HD};
  let kBase = ${c.paged ? `P.kOff + kh * ${HD}` : `P.kOff + (bl * P.nk * P.kvHeads + kh) * ${HD}`};
  // rows of this workgroup: (query head, query) pairs of key head kh
${
    each((r) =>
      `  let ok${r} = chunk * ${R}u + ${r}u < P.rowsTotal;
  let rc${r} = min(chunk * ${R}u + ${r}u, P.rowsTotal - 1u);
  let hq${r} = kh * group + rc${r} / P.nq;
  let qi${r} = rc${r} % P.nq;
  let bo${r} = sched[P.boundsOff + b * P.maskBatchStride + hq${r} / P.maskHeadDiv];${
        c.alibi ? `\n  let ab${r} = alibi[P.alibiOff + b * P.heads + hq${r}];` : ""
      }`
    )
  }
  // queries into workgroup memory (the scale goes on each f32 score)
  for (var e = t; e < ${R * CW}u; e += ${wg}u) {
    let r = e / ${CW}u;
    let x = (e % ${CW}u) * 4u;
    let rr = chunk * ${R}u + r;
    var val = vec4<f32>(0.0);
    if (rr < P.rowsTotal) {
      let base = P.qOff + ((bl * P.nq + rr % P.nq) * P.heads + kh * group + rr / P.nq) * ${HD};
      for (var z = 0u; z < 4u; z++) {
        if (x + z < ${HD}) { val[z] = f32(q[base + x + z]); }
      }
    }
    qs[e] = val;
  }
  // the tiles of this split: [first, last) of the tile list (shared slice) or of all tiles
  let tileLo = split * P.tilesPerSplit;
  let tileHi = min(tileLo + P.tilesPerSplit, (P.nk + ${TK - 1}u) / ${TK}u);
  if (t == 0u) {
${search}
  }
  let tFirst = workgroupUniformLoad(&wsU[0]);
  let tLast = workgroupUniformLoad(&wsU[1]);`;
}

/** Tile `it`'s first key `col0` and whether the mask cuts it (`partial`). */
export function tileEntry(c: DecodeConfig): string {
  return c.shared
    ? `    let entry = sched[P.tilesOff + it];
    let col0 = (entry >> 1u) * ${DECODE_TILE}u;
    let partial = (entry & 1u) != 0u;`
    : `    let col0 = it * ${DECODE_TILE}u;
    let partial = true;`;
}

/**
 * Bytes of workgroup memory the decoding kernel declares: the queries, the tile's scores (and
 * dropout factors), the reductions' partials, the rows' running state and `wsU`.
 */
export function decodeSharedBytes(c: DecodeConfig): number {
  const R = c.rows, W = c.reduceWidth ?? 0, TK = DECODE_TILE;
  return 16 * R * c.cw + 4 * R * TK * (c.dropout ? 2 : 1) + 2 * 4 * (W ? 256 / W : 256) +
    (c.sumInScores ? 0 : 16 * 256) + 3 * 4 * R + 16;
}

/** The decoding kernel. */
export function decodeWgsl(c: DecodeConfig): string {
  const R = c.rows, CW = c.cw, G2 = 256 / CW, HD = headDimExpr(c.headDim), TK = DECODE_TILE;
  const TP = 256 / R; // invocations per row in the tile reductions
  // the reductions: shuffles within aligned groups of W (then Q = TP / W partials a row), or a tree
  const W = c.reduceWidth ?? 0, Q = W ? TP / W : 0;
  if (W && (W & (W - 1) || W > TP)) throw new RangeError(`invalid reduceWidth ${W}`);
  const op = (a: string, b: string, o: "max" | "+") =>
    o === "max" ? `max(${a}, ${b})` : `${a} + ${b}`;
  // max partials in `red`, sums in `redS` (published while the max may still be read)
  const arr = (o: "max" | "+") => (o === "max" ? "red" : "redS");
  const publish = (x: string, o: "max" | "+") => {
    if (!W) return `      ${arr(o)}[t] = ${x};`;
    const lv: string[] = [];
    for (let m = W / 2; m >= 1; m /= 2) {
      lv.push(`      ${x} = ${op(x, `subgroupShuffleXor(${x}, ${m}u)`, o)};`);
    }
    return `${lv.join("\n")}\n      if (t % ${W}u == 0u) { ${arr(o)}[t / ${W}u] = ${x}; }`;
  };
  const gather = (name: string, o: "max" | "+") => {
    if (!W) { // a tree within each row's TP invocations, into its first
      const a = arr(o);
      return `    for (var stride = ${TP / 2}u; stride > 0u; stride = stride / 2u) {
      workgroupBarrier();
      if (tp < stride) { ${a}[t] = ${op(`${a}[t]`, `${a}[t + stride]`, o)}; }
    }
    workgroupBarrier();
    let ${name} = ${a}[tr * ${TP}u];`;
    }
    const parts = Array.from({ length: Q }, (_, i) => `${arr(o)}[tr * ${Q}u + ${i}u]`);
    return `    workgroupBarrier();\n    let ${name} = ${
      parts.slice(1).reduce((e, x) => `(${op(e, x, o)})`, parts[0])
    };`;
  };
  const rows = Array.from({ length: R }, (_, r) => r);
  const each = (f: (r: number) => string, sep = "\n") => rows.map(f).join(sep);
  const wide = wideKeys(c);
  const L: string[] = [];
  const emit: Emit = (s) => L.push(s);
  emit(decodePreamble(c));
  // the storage row of key j: itself, or its page's row (a paged cache)
  const keyRow = (j: string) => (c.paged ? `pageRow(b, ${j})` : j);
  emit(`var<workgroup> sc: array<f32, ${R * TK}>;
${c.dropout ? `var<workgroup> zs: array<f32, ${R * TK}>;` : ""}
var<workgroup> red: array<f32, ${W ? 256 / W : 256}>;
var<workgroup> redS: array<f32, ${W ? 256 / W : 256}>;
${c.sumInScores ? "" : "var<workgroup> red4: array<vec4<f32>, 256>;"}
var<workgroup> rowM: array<f32, ${R}>;
var<workgroup> rowA: array<f32, ${R}>;
var<workgroup> rowL: array<f32, ${R}>;
${decodeOpening(c, 256)}
  if (t < ${R}u) { rowM[t] = NEG; rowL[t] = 0.0; }
  var mRow = NEG; // the running max of row t / ${TP} (the tile reductions' row)
${each((r) => `  var o${r} = vec4<f32>(0.0);`)}
  let cw = t % ${CW}u;   // phase 2: vec4 column
  let g = t / ${CW}u;    // phase 2: key group
`);
  const VB = Math.min(c.loads[1], TK / G2);
  if (!(VB > 0 && (VB & (VB - 1)) === 0)) throw new RangeError(batchError(c));
  // phase 2: the group's keys g + G₂·u in batches of loads; keys past the end read as 0 (their
  // row clamped, so that every load in a batch is unconditional)
  const vs = Array.from({ length: VB }, (_, i) => i);
  emit(`${
    c.coop
      ? `
  // phase 1's queries in registers: the lane's vec4s of each row (coopVec4)
  let lane = t % 8u;
${
        each((r) =>
          Array.from(
            { length: CW / 8 },
            (_, i) => `  let qr${r}_${i} = qs[${r * CW}u + ${coopVec4(i, wide)}];`,
          ).join("\n")
        )
      }`
      : ""
  }
  for (var it = tFirst; it < tLast; it++) {`);
  emit(tileEntry(c));
  if (c.coop) {
    coopScores(emit, c, { TK, HD, wide, keyRow });
  } else {
    emit(`    // ---- phase 1: scores of key col0 + t for every row
    {
      let j = col0 + t;
      let jc = min(j, P.nk - 1u) * 4u;
${
      each((r) =>
        `      var m${r} = !ok${r} || j >= P.nk;
      if (partial && !m${r}) { m${r} = masked(bo${r} + jc, qi${r}); }
      var acc${r} = 0.0;`
      )
    }
      if (${each((r) => `!m${r}`, " || ")}) {
        let base = kBase + ${keyRow("j")} * kStride;
        ${keyDot(c)}
      }
${each((r) => storeScore(c, r, `${r * TK}u + t`, "      "))}
    }`);
  }
  emit(`    workgroupBarrier();
    // ---- row max and sum of the tile: ${TP} invocations per row, ${R} keys each, then ${
    W ? `shuffles in groups of ${W} and the ${Q} groups of a row` : "a tree"
  }
    let tr = t / ${TP}u;
    let tp = t % ${TP}u;
    {
      var mx = NEG;
      for (var u = 0u; u < ${R}u; u++) { mx = max(mx, sc[tr * ${TK}u + tp + u * ${TP}u]); }
${publish("mx", "max")}
    }
${gather("rmax", "max")}
    {
      // every invocation of row tr keeps the row's max: no barrier publishes it
      let mNew = max(mRow, rmax);
      let mUse = select(mNew, 0.0, mNew == NEG);
      if (tp == 0u) {
        rowA[tr] = exp2(mRow - mUse);
        rowM[tr] = mNew;
      }
      mRow = mNew;
      var sum = 0.0;
      for (var u = 0u; u < ${R}u; u++) {
        let idx = tr * ${TK}u + tp + u * ${TP}u;
        let p = exp2(sc[idx] - mUse);
        sum = sum + p;
        sc[idx] = p${c.dropout ? " * zs[idx]" : ""};
      }
${publish("sum", "+")}
    }
${gather("rsum", "+")}
    if (tp == 0u) { rowL[tr] = rowL[tr] * rowA[tr] + rsum; }
    // ---- phase 2: O[r][cw] += P[r][j] · V[j][cw] over keys g, g + ${G2}, … of the tile
${each((r) => `    o${r} = o${r} * rowA[${r}u];`)}
    for (var u0 = 0u; u0 < ${TK / G2}u; u0 += ${VB}u) {
${
    vs.map((i) =>
      `      let j${i} = col0 + g + (u0 + ${i}u) * ${G2}u;
      let v${i} = select(vec4<f32>(0.0), load_v(kBase + ${
        keyRow(`min(j${i}, P.nk - 1u)`)
      } * kStride, cw * 4u), j${i} < P.nk);`
    ).join("\n")
  }
${
    vs.map((i) =>
      each((r) =>
        `      o${r} = fma(vec4<f32>(sc[${r * TK}u + g + (u0 + ${i}u) * ${G2}u]), v${i}, o${r});`
      )
    ).join("\n")
  }
    }
    workgroupBarrier();
  }
  // ---- the groups' O summed a row at a time, in red4 or in sc (free after the last tile; R ≥ 4,
  // so it holds a vec4 an invocation); normalised partial output and lse of this split
  let slot = ((bl * P.kvHeads + kh) * P.chunks + chunk) * P.splits + split;
${
    each((r) =>
      `  ${
        c.sumInScores
          ? `sc[4u * t] = o${r}.x;
  sc[4u * t + 1u] = o${r}.y;
  sc[4u * t + 2u] = o${r}.z;
  sc[4u * t + 3u] = o${r}.w;`
          : `red4[t] = o${r};`
      }
  workgroupBarrier();
  if (g == 0u) {
    var sum = vec4<f32>(0.0);
    for (var gg = 0u; gg < ${G2}u; gg++) {
      let e = gg * ${CW}u + cw;
      sum = sum + ${
        c.sumInScores
          ? "vec4<f32>(sc[4u * e], sc[4u * e + 1u], sc[4u * e + 2u], sc[4u * e + 3u])"
          : "red4[e]"
      };
    }
    let l = rowL[${r}u];
    part[P.partOff + (slot * ${R}u + ${r}u) * ${CW}u + cw] = select(vec4<f32>(0.0), sum / l, !(l == 0.0));
  }
  workgroupBarrier();`
    )
  }
  if (t < ${R}u) {
    let l = rowL[t];
    plse[P.plseOff + slot * ${R}u + t] = select(P.negInf, (rowM[t] + log2(l)) * 0.69314718055994531, !(l == 0.0));
  }
}`);
  return L.join("\n");
}

/** The error of a configuration whose loads in flight are no power of two (as trip counts are). */
function batchError(c: DecodeConfig): string {
  return `invalid decoding config ${decodeKey("decode", c)}: loads must be powers of two`;
}

/**
 * Phase 1's dot products of one key row (from element `base`) with every row's query in `qs`,
 * into `acc{r}`: the row in batches of `loads[0]` loads (all issued, then used), dims ascending.
 */
export function keyDot(c: DecodeConfig): string {
  const R = c.rows, CW = c.cw, HD = headDimExpr(c.headDim), wide = wideKeys(c);
  const each = (f: (r: number) => string) => Array.from({ length: R }, (_, r) => f(r)).join("\n");
  const KB = Math.min(c.loads[0], wide ? CW / 2 : CW);
  if (!(KB > 0 && (KB & (KB - 1)) === 0)) throw new RangeError(batchError(c));
  const ks = Array.from({ length: KB }, (_, i) => i);
  return wide
    ? `for (var x0 = 0u; x0 < ${CW / 2}u; x0 += ${KB}u) {
${ks.map((i) => `          let w${i} = k[(base + (x0 + ${i}u) * 8u) / 8u];`).join("\n")}
${
      ks.map((i) =>
        `          {
            let lo = vec4<f32>(unpack2x16float(w${i}.x), unpack2x16float(w${i}.y));
            let hi = vec4<f32>(unpack2x16float(w${i}.z), unpack2x16float(w${i}.w));
${
          each((r) =>
            `            acc${r} = acc${r} + dot(qs[${r * CW}u + 2u * (x0 + ${i}u)], lo) + dot(qs[${
              r * CW
            }u + 2u * (x0 + ${i}u) + 1u], hi);`
          )
        }
          }`
      ).join("\n")
    }
        }`
    : `for (var x0 = 0u; x0 < ${CW}u; x0 += ${KB}u) {
${
      ks.map((i) =>
        `          let k${i} = ${
          c.vec
            ? `select(vec4<f32>(0.0), vec4<f32>(k[(base + (x0 + ${i}u) * 4u) / 4u]), (x0 + ${i}u) * 4u < ${HD})`
            : `vec4<f32>(${
              [0, 1, 2, 3].map((z) =>
                `select(0.0, f32(k[base + (x0 + ${i}u) * 4u + ${z}u]), (x0 + ${i}u) * 4u + ${z}u < ${HD})`
              ).join(", ")
            })`
        };`
      ).join("\n")
    }
${
      ks.map((i) =>
        each((r) => `          acc${r} = acc${r} + dot(qs[${r * CW}u + x0 + ${i}u], k${i});`)
      )
        .join("\n")
    }
        }`;
}

/**
 * Row r's score of key `j` from the dot product `acc`: times scale·log2 e, the softcap, ALiBi's
 * bias, NEG where `m` masks it. The one place the decoding kernels turn a dot product into a score.
 */
export function scoreExpr(c: DecodeConfig, r: number, acc: string, m: string, j = "j"): string {
  const s = c.softcap
    ? `P.softcap2 * tanhAcc1(${acc} * P.qkScale / P.softcap2)`
    : `${acc} * P.qkScale`;
  const bias = c.alibi ? ` - ab${r}.x * abs(f32(qi${r}) + ab${r}.y - f32(${j}))` : "";
  return `select(${s}${bias}, NEG, ${m})`;
}

/** Row r's score of key j into `sc[at]` (and its dropout factor into `zs[at]`). */
function storeScore(c: DecodeConfig, r: number, at: string, indent: string): string {
  return `${indent}sc[${at}] = ${scoreExpr(c, r, `acc${r}`, `m${r}`)};` +
    (c.dropout ? `\n${indent}zs[${at}] = select(keep(b, hq${r}, qi${r}, j), 0.0, m${r});` : "");
}

/**
 * The vec4 of dims that is a cooperating lane's i-th (i < D/32): the 8 lanes of a key read
 * adjacent 16-byte pieces of its row at each load, so that one load instruction of a subgroup
 * reads whole rows (wide f16 loads take two adjacent vec4s).
 */
function coopVec4(i: number, wide: boolean): string {
  return wide ? `${16 * (i >> 1) + (i & 1)}u + 2u * lane` : `${8 * i}u + lane`;
}

/**
 * Phase 1 cooperatively ({@linkcode DecodeConfig.coop}): 32 keys a pass, 8 invocations a key,
 * lane l over its D/8 dims ({@linkcode coopVec4}) with its queries in registers `qr{r}_{i}`, every
 * load issued before the first is used; the lanes' partial dot products are summed by three
 * shuffles (aligned groups of 8 in subgroups of ≥ 8), and lane 0 masks and stores the score. Loads
 * are unconditional (the key index clamped), so that the shuffles stay in uniform control flow.
 */
function coopScores(
  emit: Emit,
  c: DecodeConfig,
  o: { TK: number; HD: string; wide: boolean; keyRow: (j: string) => string },
): void {
  const R = c.rows, V = c.cw / 8; // vec4 of dims per lane
  const rows = Array.from({ length: R }, (_, r) => r), vs = Array.from({ length: V }, (_, i) => i);
  const each = (f: (r: number) => string, sep = "\n") => rows.map(f).join(sep);
  const loads = o.wide
    ? Array.from(
      { length: V / 2 },
      (_, i) => `        let w${i} = k[(base + (${coopVec4(2 * i, true)}) * 4u) / 8u];`,
    ).join("\n") + "\n" +
      Array.from({ length: V / 2 }, (_, i) =>
        `        {
          let lo = vec4<f32>(unpack2x16float(w${i}.x), unpack2x16float(w${i}.y));
          let hi = vec4<f32>(unpack2x16float(w${i}.z), unpack2x16float(w${i}.w));
${
          each((r) =>
            `          acc${r} = acc${r} + dot(qr${r}_${2 * i}, lo) + dot(qr${r}_${2 * i + 1}, hi);`
          )
        }
        }`).join("\n")
    : vs.map((i) =>
      `        let x${i} = (${coopVec4(i, false)}) * 4u;
        let kv${i} = select(vec4<f32>(0.0), vec4<f32>(k[(base + x${i}) / 4u]), x${i} < ${o.HD});`
    ).join("\n") + "\n" +
      vs.map((i) => each((r) => `        acc${r} = acc${r} + dot(qr${r}_${i}, kv${i});`)).join(
        "\n",
      );
  emit(`    // ---- phase 1, cooperative: 8 invocations a key, 32 keys a pass
    for (var ps = 0u; ps < ${o.TK / 32}u; ps++) {
      let kt = ps * 32u + t / 8u;
      let j = col0 + kt;
      let jk = min(j, P.nk - 1u);
      let base = kBase + ${o.keyRow("jk")} * kStride;
${each((r) => `      var acc${r} = 0.0;`)}
${loads}
${
    each((r) =>
      [4, 2, 1].map((m) => `      acc${r} = acc${r} + subgroupShuffleXor(acc${r}, ${m}u);`).join(
        "\n",
      )
    )
  }
      if (lane == 0u) {
${
    each((r) =>
      `        var m${r} = !ok${r} || j >= P.nk;
        if (partial && !m${r}) { m${r} = masked(bo${r} + jk * 4u, qi${r}); }
${storeScore(c, r, `${r * o.TK}u + kt`, "        ")}`
    )
  }
      }
    }`);
}
