/**
 * WGSL FlashAttention-2 forward kernel, generated from TypeScript.
 *
 * Computes, for one (query row block, head, batch) per workgroup, `out = softmax(q kᵀ·scale) v`
 * and `lse`, over the column blocks its schedule list names (skipped tiles are never loaded).
 * `ordered` (a mask whose lists differ in length): heads fastest, each workgroup's row block read
 * from the schedule's longest-first `rowOrder`, so the longest lists start first.
 * Shapes: q `[B, Nq, Hq, d]`, k/v `[B, Nk, Hk, d]` (element type f32 or f16), out like q,
 * lse `[B, Hq, Nq]` f32.
 *
 * Tiling: 256 invocations as a 16 × 16 grid (ty, tx). A tile is BR = 16·RM query rows by
 * BC = 16·CN keys; the head dimension is padded to D = 16·DN. Invocation (ty, tx) owns score
 * rows `ty·RM .. +RM` and keys `tx + 16·m` (m < CN), and output rows `ty·RM .. +RM`, columns
 * `tx·DN .. +DN`, all in fully unrolled named vec4 registers (naga clamps dynamically indexed
 * arrays and counts loop trips; unrolled code with constant indices avoids both).
 * S = Q Kᵀ accumulates over d in chunks of KC through workgroup memory (Q transposed), then each f32
 * score is multiplied by scale·log2(e), as FlashAttention-2 applies the scale (not to a rounded copy
 * of Q), so the softmax uses exp2; P = exp2(S − m) is written to
 * workgroup memory KV keys at a time and O += P V accumulates from there. Reading ahead
 * (`prefetch`, the default): every Q, K and V chunk is read into registers during the product
 * of the chunk before (V's first during the softmax, the next tile's first Q and K chunks during
 * the last P V product) and stored after the barrier that frees its region. Double buffers
 * (`double`): two Q/K chunk buffers and two P/V buffers laid over them, used in turn, so a chunk
 * is stored while the other buffer is still being read and each chunk needs one barrier, not two
 * (a barrier between the S and P V phases, and one at the tile's end, keep the overlay safe).
 *
 * Invariants: the online softmax keeps, per row, the running max m (log2 domain) and a
 * per-invocation partial row sum l; O is rescaled by exp2(m_old − m_new) when m grows and divided
 * by l once at the end. Full tiles do no mask work; partial tiles (and the ragged last column
 * block) test every element against its key's canonical bounds `[lts, lte) ∪ [uts, ute)` from the
 * shared schedule. A row that sees no key gets out 0 and lse −∞ (never NaN).
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
  XYZW,
  zeroTile,
} from "./_emit.ts";
import { declareUnits, fetchRows, fetchTransposed, putRows, putTransposed } from "./_loads.ts";
import {
  capAndMask,
  dropoutWgsl,
  headDimExpr,
  NEG_DECL,
  OPTION_PARAMS,
  PAGE_ROW_DECL,
  product,
  rowBlockPrologue,
  rowMajorMask,
  softcapWgsl,
  storeColumns,
  tileLoop,
} from "./_wgsl.ts";
import {
  ALIBI_BINDING,
  type KernelLayout,
  layoutWgsl,
  PAGES_BINDING,
  SINKS_BINDING,
  withBindings,
} from "./layout.ts";

/** Compile-time constants of one forward pipeline. */
export interface ForwardConfig {
  /** Storage type of q, k, v, out. */
  dtype: "f32" | "f16";
  /** Head dimension if it equals D = 16·DN (a constant), else 0: read from the uniforms. */
  headDim: number;
  /** Score/output rows per invocation (BR = 16·RM); a multiple of 4. */
  rm: number;
  /** Keys per invocation (BC = 16·CN); a multiple of 4. */
  cn: number;
  /** Output columns per invocation (D = 16·DN ≥ headDim); a multiple of 4. */
  dn: number;
  /** Head-dimension chunk of the S product. */
  kc: number;
  /** Key chunk of the P V product (a multiple of 16 dividing BC). */
  kv: number;
  /** Reduce rows with subgroup shuffles (subgroups of ≥ 16) instead of workgroup memory. */
  subgroups: boolean;
  /**
   * Read each chunk of Q, K and V from storage into registers while the previous one is
   * multiplied (software pipelining), and store it to workgroup memory after: global-memory
   * latency overlaps the products instead of stalling every invocation after each barrier.
   */
  prefetch?: boolean;
  /**
   * Two workgroup-memory buffers for the Q/K chunks and two for the P/V chunks (the P/V pair over
   * the Q/K pair), used in turn: one barrier a chunk instead of two.
   */
  double?: boolean;
  /**
   * Workgroups launch heads fastest and take their row block from the schedule's longest-first
   * `rowOrder` (for schedules whose lists differ in length: see `unevenLists`), rather than the
   * row block from the workgroup's index.
   */
  ordered?: boolean;
  /** Cap scores (value in the uniforms). */
  softcap: boolean;
  /** Drop probabilities (threshold and key in the uniforms). */
  dropout: boolean;
  /** Start each row's online softmax from its head's sink logit (the `sinks` binding). */
  sinks?: boolean;
  /** Add ALiBi's position bias to the scores (the `alibi` binding). */
  alibi?: boolean;
  /** Read k and v through a page table (the `pages` binding; k and v bound whole). */
  paged?: boolean;
}

/** Uniforms and bindings of the forward kernel. */
export const FORWARD_LAYOUT: KernelLayout = {
  params: [
    "nq",
    "nk",
    "heads",
    "kvHeads",
    "headDim",
    "rowBlocks",
    "ptrOff",
    "maskBatchStride",
    "maskHeadDiv",
    "tilesOff",
    "boundsOff",
    "orderOff",
    "batchBase",
    "qOff",
    "kOff",
    "oOff",
    "lseOff",
    "qkScale",
    "negInf",
    ...OPTION_PARAMS,
  ],
  bindings: [
    { name: "q", type: "T", offset: "qOff" },
    { name: "k", type: "T", offset: "kOff" },
    { name: "v", type: "T", offset: "kOff" },
    { name: "out", type: "T", offset: "oOff", write: true },
    { name: "lse", type: "f32", offset: "lseOff", write: true },
    { name: "sched", type: "u32" },
  ],
};

/** The layout of a forward configuration: the terms it uses add their bindings. */
export function forwardLayout(c: ForwardConfig): KernelLayout {
  return withBindings(FORWARD_LAYOUT, [
    c.sinks && SINKS_BINDING,
    c.alibi && ALIBI_BINDING,
    c.paged && PAGES_BINDING,
  ]);
}

/** Workgroup memory the kernel needs, in bytes. */
export function forwardSharedBytes(c: ForwardConfig): number {
  const br = 16 * c.rm, bc = 16 * c.cn, d = 16 * c.dn;
  const s = c.kc * (br + bc), pv = c.kv * (br + d);
  return 4 * (c.double ? 2 * Math.max(s, pv) : s + pv) + 16; // + wsU
}

/** A stable key of every compile-time constant. */
export function forwardKey(c: ForwardConfig): string {
  return `fwd:${c.dtype}:d${c.headDim}:rm${c.rm}:cn${c.cn}:dn${c.dn}:kc${c.kc}:kv${c.kv}:sg${
    c.subgroups ? 1 : 0
  }${c.prefetch ? ":pf" : ""}${c.double ? ":db" : ""}${c.ordered ? ":ord" : ""}${
    c.softcap ? ":cap" : ""
  }${c.dropout ? ":drop" : ""}${c.sinks ? ":sink" : ""}${c.alibi ? ":alibi" : ""}${
    c.paged ? ":paged" : ""
  }`;
}

/** Generates the WGSL of the forward kernel. */
export function forwardWgsl(c: ForwardConfig): string {
  const { rm, cn, dn, kc, kv } = c;
  const br = 16 * rm, bc = 16 * cn, d = 16 * dn, HD = headDimExpr(c.headDim);
  if (rm % 4 || cn % 4 || dn % 4 || kv % 16 || bc % kv || c.headDim > d) {
    throw new RangeError(`invalid forward config ${forwardKey(c)}`);
  }
  const T = c.dtype;
  const R4 = rm / 4, C4 = cn / 4, D4 = dn / 4;
  // workgroup memory, in rows of 16 vec4: Q and K chunks (transposed, kc slots), P and V (kv
  // slots, one a key)
  // (double: two Q/K buffers from row 0, two P/V buffers from row 0 over them, in turn)
  const sRows = kc * (R4 + C4), pvRows = kv * (R4 + D4);
  const db = c.double === true;
  const qRow = 0, kRow = qRow + kc * R4, pRow = db ? 0 : kRow + kc * C4, vRow = pRow + kv * R4;
  const smRows = db ? 2 * Math.max(sRows, pvRows) : vRow + kv * D4;
  const buf = (n: number) => ({
    qs: smRegion(qRow + n * sRows, R4),
    ks: smRegion(kRow + n * sRows, C4),
    ps: smRegion(pRow + n * pvRows, R4),
    vs: smRegion(vRow + n * pvRows, D4),
  });
  const { qs, ks, ps, vs } = buf(0);
  const L: string[] = [];
  const emit: Emit = (s) => L.push(s);

  if (T === "f16") emit("enable f16;");
  emit(`${layoutWgsl(forwardLayout(c), T)}
${smDecl(smRows)}
var<workgroup> wsU: array<u32, 4>;
${NEG_DECL}
${c.dropout ? dropoutWgsl() : ""}${c.softcap ? softcapWgsl() : ""}${
    c.paged ? `${PAGE_ROW_DECL}\n` : ""
  }
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${rowBlockPrologue(br, rm, HD, c.ordered)}
  let vBase = kBase;`);
  // a paged cache: keys are found through the page table, row by row (k and v bound whole)
  if (c.paged) emit(`  let pBase = P.kOff + kh * ${HD};`);
  // the online softmax starts empty, or from the sink's state (terms/sink.ts): m = σ_h (log2
  // units), l = 1, counted once among the 16 invocations that share a row
  if (c.sinks) emit(`  let sink2 = sinks[P.sinksOff + h] * 1.4426950408889634;`);
  for (const i of range(rm)) {
    emit(
      c.sinks
        ? `  var m${i}: f32 = sink2;\n  var l${i}: f32 = select(0.0, 1.0, tx == 0u);`
        : `  var m${i}: f32 = NEG;\n  var l${i}: f32 = 0.0;`,
    );
  }
  declareTile(emit, "o", rm, D4);
  declareTile(emit, "s", rm, C4);
  const src = (name: string, base: string, stride: string, first: string, limit: string) => ({
    src: name,
    base,
    stride,
    first,
    limit,
    headDim: HD,
  });
  // k or v rows from `first`: in place, or through the page table
  const kvSrc = (name: string, first: string) =>
    c.paged
      ? {
        ...src(name, "pBase", "kStride", first, "P.nk"),
        rowOf: (r: string) => `pageRow(b, ${r})`,
      }
      : src(name, name === "k" ? "kBase" : "vBase", "kStride", first, "P.nk");
  const qSrc = src("q", "qBase", "qStride", "row0", "P.nq");
  const qChunk = (d0: string) => ({ region: qs, rows: br, kc, d0, perm: 0, elem: T });
  const kChunk = (d0: string) => ({ region: ks, rows: bc, kc, d0, perm: cn, elem: T });
  const vChunk = { region: vs, count: kv, d, elem: T };
  const pf = c.prefetch === true;
  declareUnits(emit, "fq", (br / 4) * kc, T);
  declareUnits(emit, "fk", (bc / 4) * kc, T);
  declareUnits(emit, "fv", (kv * d) / 4, T);
  emit(tileLoop("P.ptrOff + slice * P.rowBlocks + rb", "col0", bc, "  "));
  zeroTile(emit, "s", rm, C4);
  if (pf) { // chunk 0 of the first tile (of the others: read during the tile before)
    emit(`    if (t == tStart) {`);
    fetchTransposed(emit, qSrc, qChunk("0u"), "fq");
    fetchTransposed(emit, kvSrc("k", "col0"), kChunk("0u"), "fk");
    emit(`    }`);
  }

  // ---- S = Q Kᵀ over d in chunks of KC (double: two a trip, one in each buffer)
  const sChunk = (n: number, d0: string, tag: string) => {
    const r = buf(n);
    if (!pf) {
      fetchTransposed(emit, qSrc, { ...qChunk(d0), region: r.qs }, "fq");
      fetchTransposed(emit, kvSrc("k", "col0"), { ...kChunk(d0), region: r.ks }, "fk");
    }
    putTransposed(emit, { ...qChunk(d0), region: r.qs }, "fq");
    putTransposed(emit, { ...kChunk(d0), region: r.ks }, "fk");
    emit(`      workgroupBarrier();`);
    if (pf) { // the next chunk, read while this one is multiplied
      emit(`      if (${d0} + ${kc}u < ${HD}) {`);
      fetchTransposed(emit, qSrc, qChunk(`${d0} + ${kc}u`), "fq");
      fetchTransposed(emit, kvSrc("k", "col0"), kChunk(`${d0} + ${kc}u`), "fk");
      emit(`      }`);
    }
    product(emit, {
      acc: "s",
      rows: rm,
      cols4: C4,
      steps: kc,
      tag,
      a: { region: r.qs, owner: "ty" },
      b: { region: r.ks, owner: "tx" },
    });
  };
  emit(`    for (var kc = 0u; kc < (${HD} + ${kc - 1}u) / ${kc}u; kc += ${db ? 2 : 1}u) {
      let d0 = kc * ${kc}u;`);
  sChunk(0, "d0", "s");
  if (db) {
    emit(`      if (d0 + ${kc}u < ${HD}) {
      let d1 = d0 + ${kc}u;`);
    sChunk(1, "d1", "t");
    emit(`      }
    }
    workgroupBarrier();`); // the P/V buffers lie over the Q/K ones
  } else {
    emit(`      workgroupBarrier();
    }`);
  }

  if (pf) fetchRows(emit, kvSrc("v", "col0"), vChunk, "fv"); // read during the softmax
  // ---- softcap; mask: partial tiles and the ragged last column block
  capAndMask(emit, {
    softcap: c.softcap,
    alibi: c.alibi,
    ragged: `col0 + ${bc}u > P.nk`,
    indent: "    ",
    mask: rowMajorMask(rm, cn),
  });

  // ---- online softmax
  for (const i of range(rm)) {
    const parts = range(C4).map((j) => `s${i}_${j}`);
    const mx = parts.slice(1).reduce((e, p) => `max(${e}, ${p})`, parts[0]);
    emit(
      `    let mx${i} = ${mx};\n    var rmax${i} = max(max(mx${i}.x, mx${i}.y), max(mx${i}.z, mx${i}.w));`,
    );
  }
  emitRowReduce(emit, c, "rmax", "max", ps);
  for (const i of range(rm)) {
    emit(`    {
      let mNew = max(m${i}, rmax${i});
      let mUse = select(mNew, 0.0, mNew == NEG);
      let alpha = exp2(m${i} - mUse);
      m${i} = mNew;
      l${i} = l${i} * alpha;`);
    for (const j of range(D4)) emit(`      o${i}_${j} = o${i}_${j} * alpha;`);
    for (const j of range(C4)) {
      emit(`      s${i}_${j} = exp2(s${i}_${j} - vec4<f32>(mUse));
      l${i} = l${i} + dot(s${i}_${j}, vec4<f32>(1.0));`);
    }
    if (c.dropout) { // after the row sum: the lse is that of the undropped scores
      for (const m of range(cn)) {
        emit(
          `      ${reg("s", i, m)} = ${
            reg("s", i, m)
          } * keep(b, h, row0 + ty * ${rm}u + ${i}u, col0 + tx + ${16 * m}u);`,
        );
      }
    }
    emit(`    }`);
  }

  // ---- O += P V, KV keys at a time
  for (const ch of range(bc / kv)) {
    const r = buf(db ? ch % 2 : 0);
    storeColumns(emit, {
      acc: "s",
      rows: rm,
      first: (ch * kv) / 16,
      count: kv / 16,
      region: r.ps,
      owner: "ty",
    });
    if (!pf) fetchRows(emit, kvSrc("v", `col0 + ${ch * kv}u`), { ...vChunk, region: r.vs }, "fv");
    putRows(emit, { ...vChunk, region: r.vs }, "fv");
    emit(`    workgroupBarrier();`);
    if (pf && ch + 1 < bc / kv) {
      fetchRows(emit, kvSrc("v", `col0 + ${(ch + 1) * kv}u`), vChunk, "fv");
    } else if (pf) { // the next tile's first Q and K chunks
      emit(`    if (t + 1u < tEnd) {
      let nextCol = (sched[P.tilesOff + t + 1u] >> 1u) * ${bc}u;`);
      fetchTransposed(emit, qSrc, qChunk("0u"), "fq");
      fetchTransposed(emit, kvSrc("k", "nextCol"), kChunk("0u"), "fk");
      emit(`    }`);
    }
    product(emit, {
      acc: "o",
      rows: rm,
      cols4: D4,
      steps: kv,
      tag: `p${ch}`,
      a: { region: r.ps, owner: "ty" },
      b: { region: r.vs, owner: "tx" },
    });
    // double: the next chunk goes to the other buffer, whose last readers passed this barrier
    if (!db || ch === bc / kv - 1) emit(`    workgroupBarrier();`);
  }
  emit(`  }`); // tile loop

  // ---- finish: l summed over the 16 invocations of a row, out = o / l, lse
  for (const i of range(rm)) emit(`  var lsum${i} = l${i};`);
  emitRowReduce(emit, c, "lsum", "+", ps);
  for (const i of range(rm)) {
    emit(`  {
    let row = row0 + ty * ${rm}u + ${i}u;
    if (row < P.nq) {
      let seen = !(lsum${i} == 0.0); // NaN where a score was NaN: out and lse NaN
      let inv = select(0.0, 1.0 / lsum${i}, seen);
      let ob = P.oOff + (bl * P.nq * P.heads + h) * ${HD} + row * qStride;`);
    storeRow(emit, { acc: "o", i, cols4: D4, dn, hd: HD, dst: "out", base: "ob", T, scale: "inv" });
    emit(`      if (tx == 0u) {
        lse[P.lseOff + (bl * P.heads + h) * P.nq + row] = select(P.negInf, (m${i} + log2(lsum${i})) * 0.69314718055994531, seen);
      }
    }
  }`);
  }
  emit(`}`);
  return L.join("\n");
}

/** Writes register row i (columns tx·DN ..) scaled by `scale` to `dst[base + column]`. */
export function storeRow(
  emit: Emit,
  o: {
    acc: string;
    i: number;
    cols4: number;
    dn: number;
    hd: string;
    dst: string;
    base: string;
    T: string;
    scale: string;
  },
): void {
  for (const j of range(o.cols4)) {
    emit(`      {
        let val = ${o.acc}${o.i}_${j} * ${o.scale};
        let dc = tx * ${o.dn}u + ${4 * j}u;`);
    for (const z of range(4)) {
      emit(
        `        if (dc + ${z}u < ${o.hd}) { ${o.dst}[${o.base} + dc + ${z}u] = ${o.T}(val.${
          XYZW[z]
        }); }`,
      );
    }
    emit(`      }`);
  }
}

/**
 * Reduces per-invocation row values `${name}i` (i < RM) over the 16 invocations that share
 * the rows (same ty), with subgroup shuffles or through workgroup memory: `region`'s slots
 * 0..15 (owner ty, RM/4 vec4s), free when this starts and again when it returns (it ends
 * with a barrier).
 */
function emitRowReduce(
  emit: Emit,
  c: ForwardConfig,
  name: string,
  op: "max" | "+",
  region: Region,
): void {
  const rm = c.rm;
  const f = (a: string, b: string) => op === "max" ? `max(${a}, ${b})` : `(${a} + ${b})`;
  if (c.subgroups) {
    for (const i of range(rm)) {
      for (const x of [8, 4, 2, 1]) {
        emit(`    ${name}${i} = ${f(`${name}${i}`, `subgroupShuffleXor(${name}${i}, ${x}u)`)};`);
      }
    }
    return;
  }
  // red[tx][ty][i4]: invocation tx's values of rows ty·RM + 4·i4 ..
  for (const i4 of range(rm / 4)) {
    const comp = range(4).map((z) => `${name}${4 * i4 + z}`).join(", ");
    emit(`    ${region.at("tx", "ty", i4)} = vec4<f32>(${comp});`);
  }
  emit(`    workgroupBarrier();`);
  for (const i4 of range(rm / 4)) {
    emit(`    {
      var acc = ${region.at(0, "ty", i4)};
      for (var t2 = 1u; t2 < 16u; t2++) {
        let x = ${region.at("t2", "ty", i4)};
        acc = ${op === "max" ? "max(acc, x)" : "acc + x"};
      }`);
    for (const z of range(4)) emit(`      ${name}${4 * i4 + z} = acc.${XYZW[z]};`);
    emit(`    }`);
  }
  emit(`    workgroupBarrier();`);
}
