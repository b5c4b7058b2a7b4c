/**
 * WGSL FlashAttention-2 backward kernels, generated from TypeScript. Deterministic: no float
 * atomics; every output element is written by exactly one workgroup.
 *
 * - `prep`: per query row, `stats = (lse·log2(e), D)` with `D = rowsum(dO ∘ O)`; a row whose
 *   lse is −∞ gets +1e30 so that P = exp2(s − lse₂) is 0 there.
 * - `dq`: one workgroup per (query row block, head, batch), over the row block's scheduled
 *   column blocks: S = Q Kᵀ and dP = dO Vᵀ (both over d in chunks of KC), P = exp2(S − lse₂),
 *   dS = P ∘ (dP − D), then dQ += dS K (keys KV at a time); dQ·scale is written once.
 *   Invocation (ty, tx) owns rows ty·RM.. and keys tx + 16·m as in the forward kernel.
 * - `dkv`: one workgroup per (key column block, key head, batch), over every query head of the
 *   GQA group and the column block's scheduled row blocks: Sᵀ = K Qᵀ and dPᵀ = V dOᵀ, then
 *   dV += Pᵀ dO and dK += dSᵀ Q (query rows KV at a time); invocation (ty, tx) owns keys ty·RN..
 *   and queries tx + 16·m. dK·scale and dV are written once.
 *
 * Shapes as in the forward kernel: q, dO, dq `[B, Nq, Hq, d]`; k, v, dk, dv `[B, Nk, Hk, d]`;
 * lse `[B, Hq, Nq]`. Workgroup memory of the two phases of a tile (the S/dP products and the
 * dQ or dK/dV products) is shared: barriers separate them. Full tiles do no mask work; partial
 * tiles and ragged edge tiles test each element against the key's canonical bounds. Reading
 * ahead (`prefetch`, the default), each chunk is read into registers during the product
 * before it (a tile's first S/dP chunk at the tile's start, the first K or dO/Q rows during dS);
 * with `nextTile` a tile's first S/dP chunk is read during the last gradient product of the tile
 * before it in the list (the list's first tile reads its own).
 *
 * @module
 */

import {
  declareTile,
  type Emit,
  range,
  reg,
  type Region,
  smDecl,
  smRegion,
  zeroTile,
} from "./_emit.ts";
import { declareUnits, fetchRows, putRows, type Source } from "./_loads.ts";
import {
  AT_MOST_0_DECL,
  capAndMask,
  declareScoreChunks,
  dropoutWgsl,
  fetchFirstScoreChunks,
  headDimExpr,
  NEG_DECL,
  OPTION_PARAMS,
  product,
  rowBlockPrologue,
  rowMajorMask,
  type ScoreProducts,
  scoresAndDp,
  side,
  softcapWgsl,
  storeColumns,
  tileLoop,
} from "./_wgsl.ts";
import { storeRow } from "./forward_wgsl.ts";
import { ALIBI_BINDING, type KernelLayout, layoutWgsl, withBindings } from "./layout.ts";

/** Compile-time constants of the backward pipelines. */
export interface BackwardConfig {
  /** Storage type of q, k, v, out, dOut and the gradients. */
  dtype: "f32" | "f16";
  /** Head dimension if it equals D = 16·DN (a constant), else 0: read from the uniforms. */
  headDim: number;
  /** dQ kernel: rows per invocation (BR = 16·RM). */
  rm: number;
  /** dQ kernel: keys per invocation (BC = 16·CN). */
  cn: number;
  /** dK/dV kernel: keys per invocation (BC = 16·RN). */
  rn: number;
  /** dK/dV kernel: query rows per invocation (BR = 16·CM). */
  cm: number;
  /** Output columns per invocation (D = 16·DN). */
  dn: number;
  /** Head-dimension chunk of the S and dP products. */
  kc: number;
  /** Key chunk of the dQ product, query chunk of the dK/dV products (a multiple of 16). */
  kv: number;
  /** Cap scores (value in the uniforms). */
  softcap: boolean;
  /** Drop probabilities (threshold and key in the uniforms). */
  dropout: boolean;
  /** Add ALiBi's position bias to the recomputed scores (the `alibi` binding). */
  alibi?: boolean;
  /**
   * dK/dV kernel: do dV += Pᵀ dO and dK += dSᵀ Q one after the other through the same
   * workgroup memory (for adapters with little of it), instead of together.
   */
  split: boolean;
  /**
   * Read each chunk of the inputs into registers while the one before is multiplied, and store
   * it to workgroup memory after (as the forward's `prefetch`).
   */
  prefetch?: boolean;
  /** Reading ahead, also read the next tile's first S/dP chunk during this tile's last product. */
  nextTile?: boolean;
  /**
   * Workgroups launch heads fastest and take their block from the schedule's longest-first order
   * (`rowOrder` for dQ, `colOrder` for dK/dV; for schedules whose lists differ in length: see
   * `unevenLists`), rather than the block from the workgroup's index; the entry is read once and
   * shared through `workgroupUniformLoad`, uniform to the compiler.
   */
  ordered?: boolean;
}

/** Uniform block of the backward kernels (32-bit each), shared by prep, dQ and dK/dV. */
const BACKWARD_PARAMS = [
  "nq",
  "nk",
  "heads",
  "kvHeads",
  "headDim",
  "rowBlocks",
  "colBlocks",
  "maskBatchStride",
  "maskHeadDiv",
  "ptrOff",
  "tilesOff",
  "boundsOff",
  "orderOff",
  "batchBase",
  "qOff",
  "kOff",
  "statsOff",
  "lseOff",
  "qkScale",
  "scale",
  ...OPTION_PARAMS,
];

const T_IN = (name: string, offset: string) => ({ name, type: "T", offset }) as const;

/** Uniforms and bindings of the prep kernel. */
export const PREP_LAYOUT: KernelLayout = {
  params: BACKWARD_PARAMS,
  bindings: [
    T_IN("o", "qOff"),
    T_IN("dout", "qOff"),
    { name: "lse", type: "f32", offset: "lseOff" },
    { name: "stats", type: "vec2<f32>", offset: "statsOff", write: true },
  ],
};

/** What the dQ and dK/dV kernels read: q, k, v, dO and the row stats of the prep kernel. */
const RECOMPUTE_INPUTS = [
  T_IN("q", "qOff"),
  T_IN("k", "kOff"),
  T_IN("v", "kOff"),
  T_IN("dout", "qOff"),
  { name: "stats", type: "vec2<f32>", offset: "statsOff" },
] as const;

/** The shared schedule, bound whole. */
const SCHED = { name: "sched", type: "u32" } as const;

/** Uniforms and bindings of the dQ kernel. */
export const DQ_LAYOUT: KernelLayout = {
  params: BACKWARD_PARAMS,
  bindings: [...RECOMPUTE_INPUTS, { name: "dq", type: "T", offset: "qOff", write: true }, SCHED],
};

/** Uniforms and bindings of the dK/dV kernel. */
export const DKV_LAYOUT: KernelLayout = {
  params: BACKWARD_PARAMS,
  bindings: [
    ...RECOMPUTE_INPUTS,
    { name: "dk", type: "T", offset: "kOff", write: true },
    { name: "dv", type: "T", offset: "kOff", write: true },
    SCHED,
  ],
};

/** The dQ kernel's layout for a configuration (ALiBi adds its binding). */
export function dqLayout(c: BackwardConfig): KernelLayout {
  return withBindings(DQ_LAYOUT, [c.alibi && ALIBI_BINDING]);
}

/** The dK/dV kernel's layout for a configuration. */
export function dkvLayout(c: BackwardConfig): KernelLayout {
  return withBindings(DKV_LAYOUT, [c.alibi && ALIBI_BINDING]);
}

/** A stable key of every compile-time constant, per kernel. */
export function backwardKey(kind: "prep" | "dq" | "dkv", c: BackwardConfig): string {
  const flags = `${c.split ? ":split" : ""}${c.prefetch ? ":pf" : ""}${c.nextTile ? ":nt" : ""}${
    c.ordered ? ":ord" : ""
  }${c.softcap ? ":cap" : ""}${c.dropout ? ":drop" : ""}${c.alibi ? ":alibi" : ""}`;
  return `bwd-${kind}:${c.dtype}:d${c.headDim}:rm${c.rm}:cn${c.cn}:rn${c.rn}:cm${c.cm}:dn${c.dn}:kc${c.kc}:kv${c.kv}${flags}`;
}

/** Workgroup memory of the dq and dkv kernels, in bytes. */
export function backwardSharedBytes(c: BackwardConfig): { dq: number; dkv: number } {
  const d = 16 * c.dn;
  const dqBr = 16 * c.rm, dqBc = 16 * c.cn, kvBc = 16 * c.rn, kvBr = 16 * c.cm;
  return {
    dq: 4 * Math.max(2 * c.kc * (dqBr + dqBc), c.kv * (dqBr + d)) + 16,
    dkv: 4 * Math.max(2 * c.kc * (kvBc + kvBr), c.kv * (c.split ? kvBc + d : 2 * (kvBc + d))) + 16,
  };
}

function header(c: BackwardConfig, layout: KernelLayout): string {
  return `${c.dtype === "f16" ? "enable f16;\n" : ""}${layoutWgsl(layout, c.dtype)}
${NEG_DECL}
${AT_MOST_0_DECL}
${c.dropout ? dropoutWgsl() : ""}${c.softcap ? softcapWgsl() : ""}`;
}

/** The prep kernel: stats[row] = (lse·log2 e, rowsum(dO ∘ O)), 256 rows per workgroup. */
export function prepWgsl(c: BackwardConfig): string {
  const HD = headDimExpr(c.headDim);
  return `${header(c, PREP_LAYOUT)}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  // one invocation per (b, h, i) row in lse order; x indexes rows of one batch entry
  let bh = gid.y;
  let i = gid.x;
  if (i >= P.nq) { return; }
  let bl = bh / P.heads;
  let h = bh % P.heads;
  let base = P.qOff + ((bl * P.nq + i) * P.heads + h) * ${HD};
  var acc = 0.0;
  for (var x = 0u; x < ${HD}; x++) {
    acc = fma(f32(dout[base + x]), f32(o[base + x]), acc);
  }
  let l = lse[P.lseOff + bh * P.nq + i];
  let l2 = select(l * 1.4426950408889634, 1e30, l < -3.0e38); // -inf: the row sees no key
  stats[P.statsOff + bh * P.nq + i] = vec2<f32>(l2, acc);
}`;
}

/**
 * Reading ahead: the next tile's first S/dP chunk (its B side from the next entry of the tile
 * list), read during the last product of this tile.
 */
function nextTile(emit: Emit, scores: ScoreProducts, size: number): void {
  emit(`    if (t + 1u < tEnd) {
      let nextFirst = (sched[P.tilesOff + t + 1u] >> 1u) * ${size}u;`);
  fetchFirstScoreChunks(emit, scores, "nextFirst");
  emit(`    }`);
}

const src = (
  name: string,
  base: string,
  stride: string,
  first: string,
  limit: string,
  headDim: string,
): Source => ({ src: name, base, stride, first, limit, headDim });

/** The dQ kernel. */
export function dqWgsl(c: BackwardConfig): string {
  const { rm, cn, dn, kc, kv } = c;
  const br = 16 * rm, bc = 16 * cn, d = 16 * dn, HD = headDimExpr(c.headDim);
  if (rm % 4 || cn % 4 || dn % 4 || kv % 16 || bc % kv || c.headDim > d) {
    throw new RangeError(`invalid dq config ${backwardKey("dq", c)}`);
  }
  const R4 = rm / 4, C4 = cn / 4, D4 = dn / 4;
  // phase 1: Qs, dOs (kc × br), Ks, Vs (kc × bc); phase 2: dSs (kv × br), Krows (kv × d)
  // (in rows of 16 vec4)
  const qReg = 0, oReg = qReg + kc * R4, kReg = oReg + kc * R4, vReg = kReg + kc * C4;
  const sReg = 0, krReg = kv * R4;
  const smRows = Math.max(vReg + kc * C4, krReg + kv * D4);
  const dS = smRegion(sReg, R4), kRows = smRegion(krReg, D4);
  const L: string[] = [];
  const emit: Emit = (s) => L.push(s);
  emit(header(c, dqLayout(c)));
  emit(`${smDecl(smRows)}
var<workgroup> wsU: array<u32, 4>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${rowBlockPrologue(br, rm, HD, c.ordered && "uniform")}`);
  for (const i of range(rm)) {
    emit(
      `  let st${i} = stats[P.statsOff + (bl * P.heads + h) * P.nq + min(row0 + ty * ${rm}u + ${i}u, P.nq - 1u)];`,
    );
  }
  declareTile(emit, "g", rm, D4);
  declareTile(emit, "s", rm, C4);
  declareTile(emit, "dp", rm, C4);
  const scores: ScoreProducts = {
    a: side("queries", {
      rows: br,
      perm: 0,
      regions: [smRegion(qReg, R4), smRegion(oReg, R4)],
      owned: rm,
      owner: "ty",
    }),
    b: side("keys", {
      rows: bc,
      perm: cn,
      regions: [smRegion(kReg, C4), smRegion(vReg, C4)],
      owned: cn,
      owner: "tx",
    }),
    kc,
    headDim: HD,
    indent: "    ",
    prefetch: c.prefetch,
    nextTile: c.nextTile,
    elem: c.dtype,
  };
  declareScoreChunks(emit, scores);
  emit(tileLoop("P.ptrOff + slice * P.rowBlocks + rb", "col0", bc, "  "));
  zeroTile(emit, "s", rm, C4);
  zeroTile(emit, "dp", rm, C4);
  scoresAndDp(emit, scores);
  const kSrc = (ch: number) => src("k", "kBase", "kStride", `col0 + ${ch * kv}u`, "P.nk", HD);
  const kChunk = { region: kRows, count: kv, d, elem: c.dtype };
  declareUnits(emit, "fr", (kv * d) / 4, c.dtype);
  if (c.prefetch) fetchRows(emit, kSrc(0), kChunk, "fr"); // read during dS
  capAndMask(emit, {
    softcap: c.softcap,
    alibi: c.alibi,
    ragged: `col0 + ${bc}u > P.nk`,
    indent: "    ",
    mask: rowMajorMask(rm, cn),
    slopes: "capd",
  });
  // dS = exp2(S − lse₂) ∘ (dP·Z − D) (· softcap slope), kept in s; Z is the dropout factor.
  // S − lse₂ is clamped at 0 (P ≤ 1): at huge scores (~1e10) the float32 lse is off by hundreds
  // and exp2 would overflow to Infinity, and Infinity · 0 to NaN.
  if (c.dropout) {
    for (const i of range(rm)) {
      for (const m of range(cn)) {
        emit(
          `    ${reg("dp", i, m)} = ${
            reg("dp", i, m)
          } * keep(b, h, row0 + ty * ${rm}u + ${i}u, col0 + tx + ${16 * m}u);`,
        );
      }
    }
  }
  for (const i of range(rm)) {
    for (const j of range(C4)) {
      const slope = c.softcap ? ` * capd${i}_${j}` : "";
      emit(
        `    s${i}_${j} = exp2(atMost0(s${i}_${j} - vec4<f32>(st${i}.x))) * (dp${i}_${j} - vec4<f32>(st${i}.y))${slope};`,
      );
    }
  }
  for (const ch of range(bc / kv)) {
    storeColumns(emit, {
      acc: "s",
      rows: rm,
      first: (ch * kv) / 16,
      count: kv / 16,
      region: dS,
      owner: "ty",
    });
    if (!c.prefetch) fetchRows(emit, kSrc(ch), kChunk, "fr");
    putRows(emit, kChunk, "fr");
    emit(`    workgroupBarrier();`);
    if (c.prefetch && ch + 1 < bc / kv) fetchRows(emit, kSrc(ch + 1), kChunk, "fr");
    else if (c.prefetch && c.nextTile) nextTile(emit, scores, bc);
    product(emit, {
      acc: "g",
      rows: rm,
      cols4: D4,
      steps: kv,
      tag: `g${ch}`,
      a: { region: dS, owner: "ty" },
      b: { region: kRows, owner: "tx" },
    });
    emit(`    workgroupBarrier();`);
  }
  emit(`  }`);
  for (const i of range(rm)) {
    emit(`  {
    let row = row0 + ty * ${rm}u + ${i}u;
    if (row < P.nq) {
      let ob = qBase + row * qStride;`);
    storeRow(emit, {
      acc: "g",
      i,
      cols4: D4,
      dn,
      hd: HD,
      dst: "dq",
      base: "ob",
      T: c.dtype,
      scale: "P.scale",
    });
    emit(`    }
  }`);
  }
  emit(`}`);
  return L.join("\n");
}

/** The dK/dV kernel. */
export function dkvWgsl(c: BackwardConfig): string {
  const { rn, cm, dn, kc, kv } = c;
  const bc = 16 * rn, br = 16 * cm, d = 16 * dn, HD = headDimExpr(c.headDim);
  if (rn % 4 || cm % 4 || dn % 4 || kv % 16 || br % kv || c.headDim > d) {
    throw new RangeError(`invalid dkv config ${backwardKey("dkv", c)}`);
  }
  const N4 = rn / 4, M4 = cm / 4, D4 = dn / 4;
  // phase 1: Ks, Vs (kc × bc), Qs, dOs (kc × br, permuted); phase 2: Ps, dSs (kv × bc),
  // dO rows, Q rows (kv × d); split: Ps with dO rows, then dSs with Q rows, in the same place
  // (in rows of 16 vec4)
  const kReg = 0, vReg = kc * N4, qReg = vReg + kc * N4, oReg = qReg + kc * M4;
  const pReg = 0, sReg = c.split ? pReg : kv * N4, orReg = sReg + kv * N4;
  const qrReg = c.split ? orReg : orReg + kv * D4;
  const smRows = Math.max(oReg + kc * M4, qrReg + kv * D4);
  const L: string[] = [];
  const emit: Emit = (s) => L.push(s);
  emit(header(c, dkvLayout(c)));
  emit(`${smDecl(smRows)}
var<workgroup> wsU: array<u32, 4>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % 16u;
  let ty = lid / 16u;
  let kh = ${c.ordered ? "wid.x" : "wid.y"};
  let bl = wid.z;
  let b = P.batchBase + bl;
  let group = P.heads / P.kvHeads;${
    c.ordered
      ? `
  // the place's entry in the colOrder of the group's first head's mask slice (unevenLists)
  let firstSlice = b * P.maskBatchStride + kh * group / P.maskHeadDiv;
  if (lid == 0u) { wsU[3] = sched[P.orderOff + firstSlice * P.colBlocks + wid.y]; }
  let cb = workgroupUniformLoad(&wsU[3]);`
      : `
  let cb = wid.x;`
  }
  let col0 = cb * ${bc}u;
  let qStride = P.heads * ${HD};
  let kStride = P.kvHeads * ${HD};
  let kBase = P.kOff + (bl * P.nk * P.kvHeads + kh) * ${HD};
  let myKey = col0 + ty * ${rn}u;`);
  declareTile(emit, "gk", rn, D4);
  declareTile(emit, "gv", rn, D4);
  declareTile(emit, "s", rn, M4);
  declareTile(emit, "dp", rn, M4);
  const scores: ScoreProducts = {
    a: side("keys", {
      rows: bc,
      perm: 0,
      regions: [smRegion(kReg, N4), smRegion(vReg, N4)],
      owned: rn,
      owner: "ty",
    }),
    b: side("queries", {
      rows: br,
      perm: cm,
      regions: [smRegion(qReg, M4), smRegion(oReg, M4)],
      owned: cm,
      owner: "tx",
    }),
    kc,
    headDim: HD,
    indent: "      ",
    prefetch: c.prefetch,
    nextTile: c.nextTile,
    elem: c.dtype,
  };
  declareScoreChunks(emit, scores);
  emit(`  for (var h = kh * group; h < (kh + 1u) * group; h++) {
    let slice = b * P.maskBatchStride + h / P.maskHeadDiv;
    let qBase = P.qOff + (bl * P.nq * P.heads + h) * ${HD};
    let statsBase = P.statsOff + (bl * P.heads + h) * P.nq;
    let boundsBase = sched[P.boundsOff + slice];
${tileLoop("P.ptrOff + slice * P.colBlocks + cb", "row0", br, "    ")}`);
  zeroTile(emit, "s", rn, M4);
  zeroTile(emit, "dp", rn, M4);
  scoresAndDp(emit, scores);
  const qSrc = (name: string, ch: number) =>
    src(name, "qBase", "qStride", `row0 + ${ch * kv}u`, "P.nq", HD);
  declareUnits(emit, "fo", (kv * d) / 4, c.dtype);
  declareUnits(emit, "fq", (kv * d) / 4, c.dtype);
  if (c.prefetch) { // the first dO and Q chunks of the gradients, read during Pᵀ and dSᵀ
    fetchRows(
      emit,
      qSrc("dout", 0),
      { region: smRegion(orReg, D4), count: kv, d, elem: c.dtype },
      "fo",
    );
    fetchRows(
      emit,
      qSrc("q", 0),
      { region: smRegion(qrReg, D4), count: kv, d, elem: c.dtype },
      "fq",
    );
  }
  // per owned query row tx + 16·m: its stats
  for (const m of range(cm)) {
    emit(`      let st${m} = stats[statsBase + min(row0 + tx + ${16 * m}u, P.nq - 1u)];`);
  }
  capAndMask(emit, {
    softcap: c.softcap,
    alibi: c.alibi,
    slopes: "capd",
    ragged: `row0 + ${br}u > P.nq`,
    indent: "      ",
    mask: {
      acc: "s",
      rows: rn,
      cols: cm,
      keyOfColumn: false,
      key: (i) => `min(myKey + ${i}u, P.nk - 1u)`,
      query: (_, m) => `i32(row0 + tx + ${16 * m}u)`,
      oob: (_, m) => `row0 + tx + ${16 * m}u >= P.nq`,
      boundsBase: "boundsBase",
    },
  });
  // Pᵀ = exp2(Sᵀ − lse₂); dSᵀ = Pᵀ ∘ (dPᵀ·Z − D) (· softcap slope), kept in dp; Pᵀ·Z kept in s
  for (const j of range(M4)) {
    const l2 = `vec4<f32>(${range(4).map((z) => `st${4 * j + z}.x`).join(", ")})`;
    const dd = `vec4<f32>(${range(4).map((z) => `st${4 * j + z}.y`).join(", ")})`;
    emit(`      let l2_${j} = ${l2};\n      let dd_${j} = ${dd};`);
    for (const i of range(rn)) {
      const slope = c.softcap ? ` * capd${i}_${j}` : "";
      if (c.dropout) {
        const z = range(4).map((w) => `keep(b, h, row0 + tx + ${16 * (4 * j + w)}u, myKey + ${i}u)`)
          .join(", ");
        emit(`      let z${i}_${j} = vec4<f32>(${z});`);
      }
      const zz = c.dropout ? ` * z${i}_${j}` : "";
      emit(`      let e${i}_${j} = exp2(atMost0(s${i}_${j} - l2_${j}));
      dp${i}_${j} = e${i}_${j} * (dp${i}_${j}${zz} - dd_${j})${slope};
      s${i}_${j} = e${i}_${j}${zz};`);
    }
  }
  for (const ch of range(br / kv)) {
    const part = { rows: rn, first: (ch * kv) / 16, count: kv / 16, owner: "ty" };
    const [pS, dS] = [smRegion(pReg, N4), smRegion(sReg, N4)];
    const [oRows, qRows] = [smRegion(orReg, D4), smRegion(qrReg, D4)];
    storeColumns(emit, { acc: "s", region: pS, ...part });
    if (!c.split) storeColumns(emit, { acc: "dp", region: dS, ...part });
    // the chunk's dO or Q rows into workgroup memory: loaded, or stored from the registers read
    // during the product before (and the next chunk's read)
    const rows = (name: string, region: Region) => {
      const chunk = { region, count: kv, d, elem: c.dtype }, reg = name === "q" ? "fq" : "fo";
      if (!c.prefetch) fetchRows(emit, qSrc(name, ch), chunk, reg);
      putRows(emit, chunk, reg);
    };
    const next = (name: string, region: Region) => {
      if (c.prefetch && c.nextTile && ch + 1 === br / kv && name === "q") {
        nextTile(emit, scores, br);
      }
      if (c.prefetch && ch + 1 < br / kv) {
        fetchRows(
          emit,
          qSrc(name, ch + 1),
          { region, count: kv, d, elem: c.dtype },
          name === "q" ? "fq" : "fo",
        );
      }
    };
    const grad = (acc: string, tag: string, a: Region, b: Region) =>
      product(emit, {
        acc,
        rows: rn,
        cols4: D4,
        steps: kv,
        tag,
        a: { region: a, owner: "ty" },
        b: { region: b, owner: "tx" },
      });
    rows("dout", oRows);
    if (c.split) { // dV, then dK through the same regions
      emit(`      workgroupBarrier();`);
      next("dout", oRows);
      grad("gv", `v${ch}`, pS, oRows);
      emit(`      workgroupBarrier();`);
      storeColumns(emit, { acc: "dp", region: dS, ...part });
      rows("q", qRows);
      emit(`      workgroupBarrier();`);
      next("q", qRows);
      grad("gk", `k${ch}`, dS, qRows);
    } else {
      rows("q", qRows);
      emit(`      workgroupBarrier();`);
      next("dout", oRows);
      next("q", qRows);
      grad("gv", `v${ch}`, pS, oRows);
      grad("gk", `k${ch}`, dS, qRows);
    }
    emit(`      workgroupBarrier();`);
  }
  emit(`    }
  }`);
  for (const i of range(rn)) {
    emit(`  {
    let key = myKey + ${i}u;
    if (key < P.nk) {
      let ob = kBase + key * kStride;`);
    storeRow(emit, {
      acc: "gk",
      i,
      cols4: D4,
      dn,
      hd: HD,
      dst: "dk",
      base: "ob",
      T: c.dtype,
      scale: "P.scale",
    });
    storeRow(emit, {
      acc: "gv",
      i,
      cols4: D4,
      dn,
      hd: HD,
      dst: "dv",
      base: "ob",
      T: c.dtype,
      scale: "1.0",
    });
    emit(`    }
  }`);
  }
  emit(`}`);
  return L.join("\n");
}
