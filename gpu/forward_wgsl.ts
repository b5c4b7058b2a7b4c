/**
 * WGSL FlashAttention-2 forward kernel, generated from TypeScript.
 *
 * Computes, for one (query row block, head, batch) per workgroup, `out = softmax(q kᵀ·scale) v`
 * and `lse`, over the column blocks its schedule list names (skipped tiles are never loaded).
 * Shapes: q `[B, Nq, Hq, d]`, k/v `[B, Nk, Hk, d]` (element type f32 or f16), out like q,
 * lse `[B, Hq, Nq]` f32.
 *
 * Tiling: 256 invocations as a 16 × 16 grid (ty, tx). A tile is BR = 16·RM query rows by
 * BC = 16·CN keys; the head dimension is padded to D = 16·DN. Invocation (ty, tx) owns score
 * rows `ty·RM .. +RM` and keys `tx + 16·m` (m < CN), and output rows `ty·RM .. +RM`, columns
 * `tx·DN .. +DN`, all in fully unrolled named vec4 registers (naga clamps dynamically indexed
 * arrays and counts loop trips; unrolled code with constant indices avoids both).
 * S = Q Kᵀ accumulates over d in chunks of KC through workgroup memory (Q transposed and
 * pre-multiplied by scale·log2(e), so the softmax uses exp2); P = exp2(S − m) is written to
 * workgroup memory KV keys at a time and O += P V accumulates from there.
 *
 * Invariants: the online softmax keeps, per row, the running max m (log2 domain) and a
 * per-invocation partial row sum l; O is rescaled by exp2(m_old − m_new) when m grows and divided
 * by l once at the end. Full tiles do no mask work; partial tiles (and the ragged last column
 * block) test every element against its key's canonical bounds `[lts, lte) ∪ [uts, ute)` from the
 * shared schedule. A row that sees no key gets out 0 and lse −∞ (never NaN).
 *
 * @module
 */

/** Compile-time constants of one forward pipeline. */
export interface ForwardConfig {
  /** Storage type of q, k, v, out. */
  dtype: "f32" | "f16";
  /** Actual head dimension (loads and stores are guarded beyond it). */
  headDim: number;
  /** Score/output rows per invocation (BR = 16·RM). */
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
}

/** Uniform block layout shared by the host code: field names in order (all 32-bit). */
export const FORWARD_PARAMS = [
  "nq",
  "nk",
  "heads",
  "kvHeads",
  "rowBlocks",
  "maskBatchStride",
  "maskHeadDiv",
  "tilesOff",
  "batchBase",
  "qOff",
  "kOff",
  "oOff",
  "lseOff",
  "qkScale",
  "negInf",
] as const;

/** Uniform fields of type f32 (the others are u32). */
export const FLOAT_PARAMS: ReadonlySet<string> = new Set(["qkScale", "negInf"]);

/** Workgroup memory the kernel needs, in bytes. */
export function forwardSharedBytes(c: ForwardConfig): number {
  const br = 16 * c.rm, bc = 16 * c.cn, d = 16 * c.dn;
  return 4 * (c.kc * (br + bc) + c.kv * (br + d)) + 16; // + wsU
}

/** A stable key of every compile-time constant. */
export function forwardKey(c: ForwardConfig): string {
  return `fwd:${c.dtype}:d${c.headDim}:rm${c.rm}:cn${c.cn}:dn${c.dn}:kc${c.kc}:kv${c.kv}:sg${
    c.subgroups ? 1 : 0
  }`;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const XYZW = ["x", "y", "z", "w"];

/** Generates the WGSL of the forward kernel. */
export function forwardWgsl(c: ForwardConfig): string {
  const { rm, cn, dn, kc, kv } = c;
  const br = 16 * rm, bc = 16 * cn, d = 16 * dn, hd = c.headDim;
  if (
    rm % 4 || cn % 4 || dn % 4 || kv % 16 || bc % kv || (!c.subgroups && kc * (br + bc) < 16 * br)
  ) {
    throw new RangeError(`invalid forward config ${forwardKey(c)}`);
  }
  const T = c.dtype;
  const nkc = Math.ceil(hd / kc); // d-chunks actually containing data
  const R4 = rm / 4, C4 = cn / 4, D4 = dn / 4;
  // workgroup memory regions, in vec4 units
  const qReg = 0, kReg = qReg + (kc * br) / 4, pReg = kReg + (kc * bc) / 4;
  const vReg = pReg + (kv * br) / 4, total4 = vReg + (kv * d) / 4;
  const L: string[] = [];
  const emit = (s: string) => L.push(s);

  if (T === "f16") emit("enable f16;");
  emit(
    `struct Params { ${
      FORWARD_PARAMS.map((f) => `${f}: ${FLOAT_PARAMS.has(f) ? "f32" : "u32"}`).join(", ")
    } }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<${T}>;
@group(0) @binding(2) var<storage, read> k: array<${T}>;
@group(0) @binding(3) var<storage, read> v: array<${T}>;
@group(0) @binding(4) var<storage, read_write> out: array<${T}>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read> sched: array<u32>;
@group(0) @binding(7) var<storage, read> bounds: array<vec4<i32>>;
var<workgroup> sm: array<vec4<f32>, ${total4}>;
var<workgroup> wsU: array<u32, 4>;
// masked scores; finite so that exp2(NEG - m) is 0 without inf - inf (lse gets P.negInf)
const NEG: f32 = -1e30;
`,
  );
  emit(`@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % 16u;
  let ty = lid / 16u;
  let rb = wid.x;
  let h = wid.y;
  let bl = wid.z;
  let b = P.batchBase + bl;
  let kh = h / (P.heads / P.kvHeads);
  let slice = b * P.maskBatchStride + h / P.maskHeadDiv;
  let row0 = rb * ${br}u;
  let qStride = P.heads * ${hd}u;
  let kStride = P.kvHeads * ${hd}u;
  let qBase = P.qOff + (bl * P.nq * P.heads + h) * ${hd}u;
  let kBase = P.kOff + (bl * P.nk * P.kvHeads + kh) * ${hd}u;
  let myRow = i32(row0 + ty * ${rm}u);`);
  for (const i of range(rm)) emit(`  var m${i}: f32 = NEG;\n  var l${i}: f32 = 0.0;`);
  for (const i of range(rm)) for (const j of range(D4)) emit(`  var o${i}_${j} = vec4<f32>(0.0);`);
  for (const i of range(rm)) for (const j of range(C4)) emit(`  var s${i}_${j}: vec4<f32>;`);
  emit(`  if (lid == 0u) {
    let list = slice * P.rowBlocks + rb;
    wsU[0] = sched[list];
    wsU[1] = sched[list + 1u];
  }
  let tStart = workgroupUniformLoad(&wsU[0]);
  let tEnd = workgroupUniformLoad(&wsU[1]);
  for (var t = tStart; t < tEnd; t++) {
    if (lid == 0u) { wsU[2] = sched[P.tilesOff + t]; }
    let tile = workgroupUniformLoad(&wsU[2]);
    let col0 = (tile >> 1u) * ${bc}u;`);
  for (const i of range(rm)) for (const j of range(C4)) emit(`    s${i}_${j} = vec4<f32>(0.0);`);

  // ---- S = Q Kᵀ over d in chunks of KC
  emit(`    for (var kc = 0u; kc < ${nkc}u; kc++) {
      let d0 = kc * ${kc}u;`);
  // Q chunk: (br/4 row groups) x kc, one vec4 (4 rows, same column) per item
  const qItems = (br / 4) * kc;
  for (const u of range(Math.ceil(qItems / 256))) {
    const guard = (u + 1) * 256 > qItems;
    emit(`      {
        let e = lid + ${u * 256}u;${guard ? `\n        if (e < ${qItems}u) {` : ""}
        let kk = e % ${kc}u;
        let r = (e / ${kc}u) * 4u;
        let dcol = d0 + kk;
        var x = vec4<f32>(0.0);
        if (dcol < ${hd}u) {`);
    for (const z of range(4)) {
      emit(
        `          if (row0 + r + ${z}u < P.nq) { x.${
          XYZW[z]
        } = f32(q[qBase + (row0 + r + ${z}u) * qStride + dcol]); }`,
      );
    }
    emit(`        }
        sm[${qReg}u + (kk * ${br}u + r) / 4u] = x * P.qkScale;${guard ? "\n        }" : ""}
      }`);
  }
  // K chunk: keys (16 x cn), stored at position (key % 16)·cn + key / 16; a vec4 holds keys
  // key0 + 16·{0,1,2,3} for the same column
  const kItems = (bc / 4) * kc;
  for (const u of range(Math.ceil(kItems / 256))) {
    const guard = (u + 1) * 256 > kItems;
    emit(`      {
        let e = lid + ${u * 256}u;${guard ? `\n        if (e < ${kItems}u) {` : ""}
        let kk = e % ${kc}u;
        let g = e / ${kc}u;
        let pos = g * 4u;
        let key0 = col0 + (pos / ${cn}u) + 16u * (pos % ${cn}u);
        let dcol = d0 + kk;
        var x = vec4<f32>(0.0);
        if (dcol < ${hd}u) {`);
    for (const z of range(4)) {
      emit(
        `          if (key0 + ${16 * z}u < P.nk) { x.${XYZW[z]} = f32(k[kBase + (key0 + ${
          16 * z
        }u) * kStride + dcol]); }`,
      );
    }
    emit(`        }
        sm[${kReg}u + (kk * ${bc}u + pos) / 4u] = x;${guard ? "\n        }" : ""}
      }`);
  }
  emit(`      workgroupBarrier();`);
  for (const kk of range(kc)) {
    for (const i of range(R4)) {
      emit(`      let a${kk}_${i} = sm[${qReg}u + ${(kk * br) / 4 + i}u + ty * ${R4}u];`);
    }
    for (const j of range(C4)) {
      emit(`      let b${kk}_${j} = sm[${kReg}u + ${(kk * bc) / 4 + j}u + tx * ${C4}u];`);
    }
    for (const i of range(rm)) {
      for (const j of range(C4)) {
        emit(
          `      s${i}_${j} = fma(vec4<f32>(a${kk}_${i >> 2}.${
            XYZW[i & 3]
          }), b${kk}_${j}, s${i}_${j});`,
        );
      }
    }
  }
  emit(`      workgroupBarrier();
    }`);

  // ---- mask: partial tiles and the ragged last column block
  emit(`    if ((tile & 1u) != 0u || col0 + ${bc}u > P.nk) {`);
  for (const m of range(cn)) {
    emit(`      {
        let key = col0 + tx + ${16 * m}u;
        let bd = bounds[slice * P.nk + min(key, P.nk - 1u)];
        let oob = key >= P.nk;`);
    for (const i of range(rm)) {
      emit(
        `        if (oob || (myRow + ${i} >= bd.x && myRow + ${i} < bd.y) || (myRow + ${i} >= bd.z && myRow + ${i} < bd.w)) { s${i}_${
          m >> 2
        }.${XYZW[m & 3]} = NEG; }`,
      );
    }
    emit(`      }`);
  }
  emit(`    }`);

  // ---- online softmax
  for (const i of range(rm)) {
    const parts = range(C4).map((j) => `s${i}_${j}`);
    let e = parts[0];
    for (const p of parts.slice(1)) e = `max(${e}, ${p})`;
    emit(
      `    var mx${i} = ${e};\n    var rmax${i} = max(max(mx${i}.x, mx${i}.y), max(mx${i}.z, mx${i}.w));`,
    );
  }
  emitRowReduce(emit, c, "rmax", "max", qReg);
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
    emit(`    }`);
  }

  // ---- O += P V, KV keys at a time
  for (const ch of range(bc / kv)) {
    const m0 = (ch * kv) / 16, mcount = kv / 16;
    // write P for keys tx + 16·m, m in [m0, m0 + mcount): Ps[(tx + 16·(m − m0))·br + row]
    for (const mm of range(mcount)) {
      const m = m0 + mm;
      for (const i4 of range(R4)) {
        const comp = range(4).map((z) => `s${4 * i4 + z}_${m >> 2}.${XYZW[m & 3]}`).join(", ");
        emit(
          `    sm[${pReg}u + (tx + ${16 * mm}u) * ${
            br / 4
          }u + ty * ${R4}u + ${i4}u] = vec4<f32>(${comp});`,
        );
      }
    }
    // V chunk: kv keys x d, vec4 over 4 consecutive columns
    const vItems = (kv * d) / 4;
    for (const u of range(Math.ceil(vItems / 256))) {
      const guard = (u + 1) * 256 > vItems;
      emit(`    {
      let e = lid + ${u * 256}u;${guard ? `\n      if (e < ${vItems}u) {` : ""}
      let kl = e / ${d / 4}u;
      let dc = (e % ${d / 4}u) * 4u;
      let key = col0 + ${ch * kv}u + kl;
      var x = vec4<f32>(0.0);
      if (key < P.nk) {
        let base = kBase + key * kStride + dc;`);
      for (const z of range(4)) {
        emit(`        if (dc + ${z}u < ${hd}u) { x.${XYZW[z]} = f32(v[base + ${z}u]); }`);
      }
      emit(`      }
      sm[${vReg}u + e] = x;${guard ? "\n      }" : ""}
    }`);
    }
    emit(`    workgroupBarrier();`);
    for (const kk of range(kv)) {
      for (const i4 of range(R4)) {
        emit(`    let p${ch}_${kk}_${i4} = sm[${pReg}u + ${(kk * br) / 4 + i4}u + ty * ${R4}u];`);
      }
      for (const j of range(D4)) {
        emit(`    let w${ch}_${kk}_${j} = sm[${vReg}u + ${(kk * d) / 4 + j}u + tx * ${D4}u];`);
      }
      for (const i of range(rm)) {
        for (const j of range(D4)) {
          emit(
            `    o${i}_${j} = fma(vec4<f32>(p${ch}_${kk}_${i >> 2}.${
              XYZW[i & 3]
            }), w${ch}_${kk}_${j}, o${i}_${j});`,
          );
        }
      }
    }
    emit(`    workgroupBarrier();`);
  }
  emit(`  }`); // tile loop

  // ---- finish: l summed over the 16 invocations of a row, out = o / l, lse
  for (const i of range(rm)) emit(`  var lsum${i} = l${i};`);
  emitRowReduce(emit, c, "lsum", "+", qReg);
  for (const i of range(rm)) {
    emit(`  {
    let row = row0 + ty * ${rm}u + ${i}u;
    if (row < P.nq) {
      let seen = lsum${i} > 0.0;
      let inv = select(0.0, 1.0 / lsum${i}, seen);
      let ob = P.oOff + (bl * P.nq * P.heads + h) * ${hd}u + row * qStride;`);
    for (const j of range(D4)) {
      emit(`      {
        let val = o${i}_${j} * inv;
        let dc = tx * ${dn}u + ${4 * j}u;`);
      for (const z of range(4)) {
        emit(`        if (dc + ${z}u < ${hd}u) { out[ob + dc + ${z}u] = ${T}(val.${XYZW[z]}); }`);
      }
      emit(`      }`);
    }
    emit(`      if (tx == 0u) {
        lse[P.lseOff + (bl * P.heads + h) * P.nq + row] = select(P.negInf, (m${i} + log2(lsum${i})) * 0.69314718055994531, seen);
      }
    }
  }`);
  }
  emit(`}`);
  return L.join("\n");
}

/**
 * Reduces per-invocation row values `${name}i` (i < RM) over the 16 invocations that share
 * the rows (same ty), with subgroup shuffles or through workgroup memory at `region`.
 */
function emitRowReduce(
  emit: (s: string) => void,
  c: ForwardConfig,
  name: string,
  op: "max" | "+",
  region: number,
): void {
  const rm = c.rm, br = 16 * rm;
  const f = (a: string, b: string) => op === "max" ? `max(${a}, ${b})` : `(${a} + ${b})`;
  if (c.subgroups) {
    for (const i of range(rm)) {
      for (const x of [8, 4, 2, 1]) {
        emit(`    ${name}${i} = ${f(`${name}${i}`, `subgroupShuffleXor(${name}${i}, ${x}u)`)};`);
      }
    }
    return;
  }
  // red[tx][row] as vec4 over 4 rows; the region is free at this point (S phase is over)
  for (const i4 of range(rm / 4)) {
    const comp = range(4).map((z) => `${name}${4 * i4 + z}`).join(", ");
    emit(`    sm[${region}u + tx * ${br / 4}u + ty * ${rm / 4}u + ${i4}u] = vec4<f32>(${comp});`);
  }
  emit(`    workgroupBarrier();`);
  for (const i4 of range(rm / 4)) {
    emit(`    {
      var acc = sm[${region}u + ty * ${rm / 4}u + ${i4}u];
      for (var t2 = 1u; t2 < 16u; t2++) {
        let x = sm[${region}u + t2 * ${br / 4}u + ty * ${rm / 4}u + ${i4}u];
        acc = ${op === "max" ? "max(acc, x)" : "acc + x"};
      }`);
    for (const z of range(4)) emit(`      ${name}${4 * i4 + z} = acc.${XYZW[z]};`);
    emit(`    }`);
  }
  emit(`    workgroupBarrier();`);
}
