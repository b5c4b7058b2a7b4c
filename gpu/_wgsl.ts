/**
 * Emitters of the unrolled WGSL pieces that the forward and backward kernels share.
 *
 * Every kernel runs 256 invocations as a 16 × 16 grid and keeps its tiles in one
 * `var<workgroup> sm: array<array<vec4<f32>, 16>, R>` (regions of it: `Region` in `_emit.ts`)
 * and in named register tiles; tiles come in through `_loads.ts`. The products read `sm` at a
 * constant row and the invocation's own column (its ty or tx).
 *
 * @module
 */

import { dropoutKey, dropoutThreshold } from "../masks/dropout.ts";
import { type Emit, range, reg, type Region, XYZW } from "./_emit.ts";
import { declareUnits, fetchTransposed, putTransposed } from "./_loads.ts";

/**
 * The storage row of logical key j of batch entry b in a paged KV cache (the `pages` binding,
 * `[batch, perSequence]` page indices; uniforms `pageSize`, `perSequence`). Callers pass j < Nk.
 */
export const PAGE_ROW_DECL = `fn pageRow(b: u32, j: u32) -> u32 {
  let blk = j / P.pageSize;
  return pages[P.pagesOff + b * P.perSequence + blk] * P.pageSize + (j - blk * P.pageSize);
}`;

/**
 * acc(i, ·) += A[kk][row i] · B[kk][cols] for kk < steps, fully unrolled: A's vec4 over rows
 * i..i+3 is vec4 i/4 of owner `a.owner` in slot kk of region `a.region`, B's columns 4j..4j+3
 * vec4 j of `b.owner`.
 */
export function product(
  emit: Emit,
  o: {
    acc: string;
    rows: number;
    cols4: number;
    steps: number;
    tag: string;
    a: { region: Region; owner: string };
    b: { region: Region; owner: string };
  },
): void {
  for (const kk of range(o.steps)) {
    const A = `${o.tag}a${kk}_`, B = `${o.tag}b${kk}_`;
    for (const i4 of range(o.rows / 4)) {
      emit(`      let ${A}${i4} = ${o.a.region.at(kk, o.a.owner, i4)};`);
    }
    for (const j of range(o.cols4)) {
      emit(`      let ${B}${j} = ${o.b.region.at(kk, o.b.owner, j)};`);
    }
    for (const i of range(o.rows)) {
      for (const j of range(o.cols4)) {
        emit(
          `      ${o.acc}${i}_${j} = fma(vec4<f32>(${A}${i >> 2}.${
            XYZW[i & 3]
          }), ${B}${j}, ${o.acc}${i}_${j});`,
        );
      }
    }
  }
}

/**
 * Stores register columns m = first .. first+count of tile `acc` transposed into `region`:
 * column m of the owner's rows goes to slot `tx + 16·(m − first)`, vec4 i/4 of `owner` (a vec4
 * over 4 rows).
 */
export function storeColumns(
  emit: Emit,
  o: {
    acc: string;
    rows: number;
    first: number;
    count: number;
    region: Region;
    owner: string;
  },
): void {
  for (const mm of range(o.count)) {
    const m = o.first + mm;
    for (const i4 of range(o.rows / 4)) {
      const v = range(4).map((z) => reg(o.acc, 4 * i4 + z, m)).join(", ");
      emit(`    ${o.region.at(`tx + ${16 * mm}u`, o.owner, i4)} = vec4<f32>(${v});`);
    }
  }
}

/**
 * ALiBi on a register tile (log2 units): element (i, m) −= slope·|query + offset − key|, with
 * (slope·log2 e, offset) of batch entry `b` and head `h` from the `alibi` binding. Keys past the
 * sequence use the clamped key of the mask descriptor; the mask overwrites them after.
 */
export function alibiTile(emit: Emit, o: Parameters<typeof maskTile>[1]): void {
  emit(`      {
        let ab = alibi[P.alibiOff + b * P.heads + h];`);
  for (const i of range(o.rows)) {
    for (const m of range(o.cols)) {
      const key = o.keyOfColumn ? o.key(m) : o.key(i), r = reg(o.acc, i, m);
      emit(`        ${r} = ${r} - ab.x * abs(f32(${o.query(i, m)}) + ab.y - f32(${key}));`);
    }
  }
  emit(`      }`);
}

/**
 * Masks a register tile: element (i, m) is set to NEG when its query is masked for its key by
 * the key's canonical bounds `[lts, lte) ∪ [uts, ute)` (read from the schedule buffer at
 * `boundsBase + key·4`), or when `oob(i, m)` holds. `keyOfColumn` says whether the key varies
 * with the column m (forward, dQ) or with the row i (dK/dV).
 */
export function maskTile(
  emit: Emit,
  o: {
    acc: string;
    rows: number;
    cols: number;
    keyOfColumn: boolean;
    key: (idx: number) => string;
    query: (i: number, m: number) => string;
    oob: (i: number, m: number) => string;
    boundsBase: string;
  },
): void {
  const outer = o.keyOfColumn ? o.cols : o.rows, inner = o.keyOfColumn ? o.rows : o.cols;
  for (const a of range(outer)) {
    emit(`      {
        let key = ${o.key(a)};
        let bo = ${o.boundsBase} + key * 4u;
        let bd = vec4<i32>(bitcast<i32>(sched[bo]), bitcast<i32>(sched[bo + 1u]), bitcast<i32>(sched[bo + 2u]), bitcast<i32>(sched[bo + 3u]));`);
    for (const b of range(inner)) {
      const [i, m] = o.keyOfColumn ? [b, a] : [a, b];
      const q = o.query(i, m);
      emit(
        `        if (${
          o.oob(i, m)
        } || (${q} >= bd.x && ${q} < bd.y) || (${q} >= bd.z && ${q} < bd.w)) { ${
          reg(o.acc, i, m)
        } = NEG; }`,
      );
    }
    emit(`      }`);
  }
}

/**
 * The score tile's treatment between the product and the softmax, the score pipeline's order:
 * scale·log2 e (the softmax works in log2 units), softcap (when on), ALiBi's position bias (when on), then, in partial tiles and where `ragged`
 * (a WGSL condition: the block runs past the sequence) holds, the mask of {@linkcode maskTile}.
 */
export function capAndMask(
  emit: Emit,
  o: {
    softcap: boolean;
    alibi?: boolean;
    ragged: string;
    indent: string;
    mask: Parameters<typeof maskTile>[1];
    /** Keep the softcap's slopes in `let` registers of this name (see {@linkcode capTile}). */
    slopes?: string;
  },
): void {
  // the scale on the f32 scores, as FlashAttention-2 applies it (not on a rounded copy of q)
  for (const i of range(o.mask.rows)) {
    for (const j of range(o.mask.cols / 4)) {
      emit(`${o.indent}${o.mask.acc}${i}_${j} = ${o.mask.acc}${i}_${j} * P.qkScale;`);
    }
  }
  if (o.softcap) capTile(emit, o.mask.acc, o.mask.rows, o.mask.cols / 4, o.slopes);
  if (o.alibi) alibiTile(emit, o.mask);
  emit(`${o.indent}if ((tile & 1u) != 0u || ${o.ragged}) {`);
  maskTile(emit, o.mask);
  emit(`${o.indent}}`);
}

/**
 * The mask of a row-major score tile (forward, dQ): invocation (ty, tx) holds rows myRow + i and
 * keys col0 + tx + 16·m.
 */
export function rowMajorMask(rows: number, cols: number): Parameters<typeof maskTile>[1] {
  return {
    acc: "s",
    rows,
    cols,
    keyOfColumn: true,
    key: (m) => `min(col0 + tx + ${16 * m}u, P.nk - 1u)`,
    query: (i) => `(myRow + ${i})`,
    oob: (_, m) => `col0 + tx + ${16 * m}u >= P.nk`,
    boundsBase: "boundsBase",
  };
}

/**
 * The head dimension as WGSL: a constant when it fills the padded width D = 16·dn (then every
 * guard folds away), otherwise the uniform `P.headDim` (so one pipeline serves every smaller d).
 */
export function headDimExpr(headDim: number): string {
  return headDim > 0 ? `${headDim}u` : "P.headDim";
}

/** The pipeline's compile-time head dimension: d when d = 16·dn, else 0 (read at run time). */
export function fixedHeadDim(headDim: number, dn: number): number {
  return headDim === 16 * dn ? headDim : 0;
}

/** Masked scores: finite, so that exp2(NEG − m) is 0 without inf − inf. */
export const NEG_DECL = "const NEG: f32 = -1e30;";

/**
 * min(x, 0) that keeps NaN (WGSL's min() may return either operand when one is NaN): the
 * backward's clamp of S − lse₂, so that a NaN input stays NaN in the gradients it reaches.
 */
export const AT_MOST_0_DECL =
  "fn atMost0(x: vec4<f32>) -> vec4<f32> { return select(x, vec4<f32>(0.0), x > vec4<f32>(0.0)); }";

/** Uniform fields of the score options (softcap, dropout), shared by every kernel. */
export const OPTION_PARAMS = [
  "softcap2",
  "dropThreshold",
  "dropScale",
  "seedLo",
  "seedHi",
  "pageSize",
  "perSequence",
  "alibiOff",
  "pagesOff",
  "sinksOff",
] as const;

/** Uniform fields of type f32 among {@linkcode OPTION_PARAMS}. */
export const OPTION_FLOATS = ["softcap2", "dropScale"] as const;

/**
 * Uniform values of the score options: softcap in log2 units, and dropout's threshold, scale and
 * Philox key as masks/dropout.ts defines them (a paged cache's sizes and the offsets of the tables in
 * the term arena: 0 here, set by the plan).
 */
export function optionValues(
  softcap: number | undefined,
  dropout: { p: number; seed: number } | undefined,
): Record<(typeof OPTION_PARAMS)[number], number> {
  const [seedLo, seedHi] = dropout ? dropoutKey(dropout.seed) : [0, 0];
  return {
    softcap2: (softcap ?? 0) * Math.LOG2E,
    dropThreshold: dropout ? dropoutThreshold(dropout.p) : 0,
    dropScale: dropout ? 1 / (1 - dropout.p) : 1,
    seedLo,
    seedHi,
    pageSize: 0,
    perSequence: 0,
    alibiOff: 0,
    pagesOff: 0,
    sinksOff: 0,
  };
}

/**
 * WGSL of dropout's generator, the same function as masks/dropout.ts: Philox4x32-10 with
 * counter (j >> 2, i, h, b) and key (seedLo, seedHi); `keep(b, h, i, j)` is 0 when word j & 3 is
 * below the threshold, else 1 / (1 − p).
 */
export function dropoutWgsl(): string {
  const rounds = range(10).map((r) =>
    `${r > 0 ? "  k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);\n" : ""}` +
    `  p0 = mulhilo(0xD2511F53u, x.x);\n  p1 = mulhilo(0xCD9E8D57u, x.z);\n` +
    `  x = vec4<u32>(p1.x ^ x.y ^ k.x, p1.y, p0.x ^ x.w ^ k.y, p0.y);`
  ).join("\n");
  return `
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
  let a0 = a & 0xffffu; let a1 = a >> 16u; let b0 = b & 0xffffu; let b1 = b >> 16u;
  let m1 = a1 * b0; let m2 = a0 * b1;
  let mid = ((a0 * b0) >> 16u) + (m1 & 0xffffu) + (m2 & 0xffffu);
  return vec2<u32>(a1 * b1 + (m1 >> 16u) + (m2 >> 16u) + (mid >> 16u), a * b);
}
fn keep(b: u32, h: u32, i: u32, j: u32) -> f32 {
  var x = vec4<u32>(j >> 2u, i, h, b);
  var k = vec2<u32>(P.seedLo, P.seedHi);
  var p0: vec2<u32>;
  var p1: vec2<u32>;
${rounds}
  let w = j & 3u;
  let word = select(select(x.w, x.z, w == 2u), select(x.y, x.x, w == 0u), w < 2u);
  return select(P.dropScale, 0.0, word < P.dropThreshold);
}
`;
}

/**
 * WGSL of `tanhAcc` (vec4) and `tanhAcc1` (f32), the tanh of the softcap. The builtin may be
 * computed from exponentials with cancellation near 0 (llvmpipe's has a relative error of 1.5e-5
 * at x ≈ 0.002, where a large softcap puts most scores); these use a Taylor polynomial below 0.3
 * (truncation < 6e-8) and (1 − e^−2|x|) / (1 + e^−2|x|) above: about 3e-7 everywhere.
 */
export function softcapWgsl(): string {
  const body = (zero: string) => `
  let a = abs(v);
  let z = v * v;
  let poly = v * (1.0 + z * (-1.0 / 3.0 + z * (2.0 / 15.0 + z * (-17.0 / 315.0 + z * (62.0 / 2835.0)))));
  let e = exp(-2.0 * a);
  return select(sign(v) * (1.0 - e) / (1.0 + e), poly, a < ${zero});`;
  return `
fn tanhAcc(v: vec4<f32>) -> vec4<f32> {${body("vec4<f32>(0.3)")}
}
fn tanhAcc1(v: f32) -> f32 {${body("0.3")}
}
fn capSlope(s: vec4<f32>) -> vec4<f32> {
  // d tanh(u) / du = 1 − tanh²(u) = 4e / (1 + e)² with e = exp(−2|u|), u = s / C: no cancellation
  // where tanh saturates (1 − t² from a rounded t loses every digit there); masked scores give 0
  let e = exp(-2.0 * abs(s / P.softcap2));
  let d = 1.0 + e;
  return 4.0 * e / (d * d);
}
`;
}

/**
 * Caps a register tile of log2-domain scores: s ← C·tanh(s / C) with C = softcap·log2 e (the
 * kernel includes {@linkcode softcapWgsl}). With `slopes`, first keeps the softcap's slope of
 * each element in `let` registers of that name (the backward kernels' dS needs it), from the
 * score before the cap ({@linkcode capSlope}).
 */
export function capTile(
  emit: Emit,
  acc: string,
  rows: number,
  cols4: number,
  slopes?: string,
): void {
  for (const i of range(rows)) {
    for (const j of range(cols4)) {
      if (slopes) emit(`    let ${slopes}${i}_${j} = capSlope(${acc}${i}_${j});`);
      emit(`    ${acc}${i}_${j} = P.softcap2 * tanhAcc(${acc}${i}_${j} / P.softcap2);`);
    }
  }
}

/** One side of the two products of a backward tile: two tensors loaded alike. */
export interface ProductSide {
  /** The tensors (storage array names): `[0]` for the scores, `[1]` for dP. */
  names: [string, string];
  /** Element offset and row stride of their rows (WGSL). */
  base: string;
  stride: string;
  /** First row of the tile and the row limit (WGSL). */
  first: string;
  limit: string;
  /** Rows in the tile, and the `perm` layout of a transposed chunk (0: rows; `TransposedChunk`). */
  rows: number;
  perm: number;
  /** Workgroup-memory regions of the two tensors. */
  regions: [Region, Region];
  /** Register rows (for the A side) or columns/4 (for the B side) an invocation owns. */
  owned: number;
  /** The owner index (`ty` or `tx`). */
  owner: string;
}

/** The two products of a backward tile's first phase, as {@linkcode scoresAndDp} reads them. */
export interface ScoreProducts {
  a: ProductSide;
  b: ProductSide;
  kc: number;
  headDim: string;
  indent: string;
  /** Read each chunk into registers while the one before is multiplied (`fetchTransposed`). */
  prefetch?: boolean;
  /** The storage element type (default f32). */
  elem?: "f32" | "f16";
  /**
   * Reading ahead, a tile's first chunk was read during the tile before
   * ({@linkcode fetchFirstScoreChunks}), except on a list's first tile.
   */
  nextTile?: boolean;
}

/** The four chunks of {@linkcode ScoreProducts}: source (B side from `bFirst`), shape, registers. */
function scoreChunks(o: ScoreProducts, bFirst?: string) {
  return [o.a, o.b].flatMap((side, si) =>
    side.names.map((name, i) => ({
      src: {
        src: name,
        base: side.base,
        stride: side.stride,
        first: si === 1 && bFirst ? bFirst : side.first,
        limit: side.limit,
        headDim: o.headDim,
      },
      at: (d0: string) => ({
        region: side.regions[i],
        rows: side.rows,
        kc: o.kc,
        d0,
        perm: side.perm,
        elem: o.elem,
      }),
      reg: `f${si}${i}_`,
    }))
  );
}

/**
 * Declares the registers of the four chunks: before the loop over tiles, since reading ahead a
 * tile's first chunk is read during the tile before ({@linkcode fetchFirstScoreChunks}).
 */
export function declareScoreChunks(emit: Emit, o: ScoreProducts): void {
  for (const c of scoreChunks(o)) declareUnits(emit, c.reg, (c.at("").rows / 4) * o.kc, o.elem);
}

/** Reads the first chunk of the four, the B side's tile starting at `bFirst` (the next tile's). */
export function fetchFirstScoreChunks(emit: Emit, o: ScoreProducts, bFirst: string): void {
  for (const c of scoreChunks(o, bFirst)) fetchTransposed(emit, c.src, c.at("0u"), c.reg);
}

/**
 * The first phase of a backward tile: over the head dimension in chunks of `kc`, loads
 * `a.names[i]` and `b.names[i]` chunks and accumulates `s += A₀ ⊗ B₀` (scores, unscaled) and
 * `dp += A₁ ⊗ B₁` (dP). The dQ kernel puts queries on the A side, the dK/dV kernel keys. The
 * registers are declared by {@linkcode declareScoreChunks}; reading ahead, the first chunk is read
 * here, or with `nextTile` here on a list's first tile (`t == tStart`) only and by
 * {@linkcode fetchFirstScoreChunks} during the tile before on the others.
 */
export function scoresAndDp(emit: Emit, o: ScoreProducts): void {
  const { a, b, kc } = o;
  const chunks = scoreChunks(o);
  if (o.prefetch && o.nextTile) emit(`${o.indent}if (t == tStart) {`);
  if (o.prefetch) { for (const c of chunks) fetchTransposed(emit, c.src, c.at("0u"), c.reg); }
  if (o.prefetch && o.nextTile) emit(`${o.indent}}`);
  emit(`${o.indent}for (var kc = 0u; kc < (${o.headDim} + ${kc - 1}u) / ${kc}u; kc++) {
${o.indent}  let d0 = kc * ${kc}u;`);
  for (const c of chunks) {
    if (!o.prefetch) fetchTransposed(emit, c.src, c.at("d0"), c.reg);
    putTransposed(emit, c.at("d0"), c.reg);
  }
  emit(`${o.indent}  workgroupBarrier();`);
  if (o.prefetch) { // the next chunk, read while this one is multiplied
    emit(`${o.indent}  if (d0 + ${kc}u < ${o.headDim}) {`);
    for (const c of chunks) fetchTransposed(emit, c.src, c.at(`d0 + ${kc}u`), c.reg);
    emit(`${o.indent}  }`);
  }
  ["s", "dp"].forEach((acc, i) =>
    product(emit, {
      acc,
      rows: a.owned,
      cols4: b.owned / 4,
      steps: kc,
      tag: acc === "s" ? "s" : "d",
      a: { region: a.regions[i], owner: a.owner },
      b: { region: b.regions[i], owner: b.owner },
    })
  );
  emit(`${o.indent}  workgroupBarrier();
${o.indent}}`);
}

/**
 * The opening of a kernel with one workgroup per (query row block, head, batch): its indices,
 * the row and key strides, the element offsets of its q rows and k rows, and its mask slice.
 * `ordered`: the grid is (heads, places, batch) and the row block the place's entry of the
 * slice's `rowOrder`; else (row blocks, heads, batch) (see `unevenLists` and `launchGrid` in dispatch.ts).
 * `"uniform"`: that entry is read once and shared through `wsU[3]` by `workgroupUniformLoad`, so
 * that the compiler knows every invocation has the same block (the backward kernels: 2.6 % faster
 * on four masks at N=16384 d=128 on an H200; the forward read it directly 0.2 % faster on average,
 * docs/BENCHMARKS.md).
 */
export function rowBlockPrologue(
  br: number,
  rm: number,
  headDim: string,
  ordered?: boolean | "uniform",
): string {
  const entry = "sched[P.orderOff + slice * P.rowBlocks + wid.y]";
  return `  let tx = lid % 16u;
  let ty = lid / 16u;
  let h = ${ordered ? "wid.x" : "wid.y"};
  let bl = wid.z;
  let b = P.batchBase + bl;
  let kh = h / (P.heads / P.kvHeads);
  let slice = b * P.maskBatchStride + h / P.maskHeadDiv;
  ${
    ordered === "uniform"
      ? `if (lid == 0u) { wsU[3] = ${entry}; }\n  let rb = workgroupUniformLoad(&wsU[3]);`
      : `let rb = ${ordered ? entry : "wid.x"};`
  }
  let row0 = rb * ${br}u;
  let qStride = P.heads * ${headDim};
  let kStride = P.kvHeads * ${headDim};
  let qBase = P.qOff + (bl * P.nq * P.heads + h) * ${headDim};
  let kBase = P.kOff + (bl * P.nk * P.kvHeads + kh) * ${headDim};
  let boundsBase = sched[P.boundsOff + slice];
  let myRow = i32(row0 + ty * ${rm}u);`;
}

/** The query side (q and dO rows) or key side (k and v rows) of {@linkcode scoresAndDp}. */
export function side(
  which: "queries" | "keys",
  o: { rows: number; perm: number; regions: [Region, Region]; owned: number; owner: string },
): ProductSide {
  return which === "queries"
    ? { names: ["q", "dout"], base: "qBase", stride: "qStride", first: "row0", limit: "P.nq", ...o }
    : { names: ["k", "v"], base: "kBase", stride: "kStride", first: "col0", limit: "P.nk", ...o };
}

/**
 * Opens the loop over a schedule list: entries `[sched[list], sched[list + 1])` of the tiles at
 * `tilesOff`, read through workgroup memory so that every invocation agrees (barriers inside
 * the loop need uniform control flow); `${block} = (entry >> 1)·size` is the tile's first row
 * or key and `tile` the entry (bit 0: partial).
 */
export function tileLoop(list: string, block: string, size: number, indent: string): string {
  const i = indent;
  return `${i}if (lid == 0u) {
${i}  let list = ${list};
${i}  wsU[0] = sched[list];
${i}  wsU[1] = sched[list + 1u];
${i}}
${i}let tStart = workgroupUniformLoad(&wsU[0]);
${i}let tEnd = workgroupUniformLoad(&wsU[1]);
${i}for (var t = tStart; t < tEnd; t++) {
${i}  if (lid == 0u) { wsU[2] = sched[P.tilesOff + t]; }
${i}  let tile = workgroupUniformLoad(&wsU[2]);
${i}  let ${block} = (tile >> 1u) * ${size}u;`;
}
