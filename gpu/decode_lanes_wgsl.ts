/**
 * WGSL split-KV decoding by lane groups: the `decode` kernel of `decode_wgsl.ts` (same bindings,
 * partials and combine) with no workgroup barrier in its key loop, so that one group's scoring of
 * its keys overlaps another's reading of values.
 *
 * - The workgroup (256 invocations) splits into aligned groups of S lanes (S a power of two from 8
 *   to 32, at most the smallest subgroup). Group gi owns keys gi·S … (gi + 1)·S − 1 of every
 *   tile: lane l scores key l against the R rows (queries in workgroup memory, as in the workgroup
 *   kernel), the group's row max comes from xor shuffles, each lane keeps its own running sum (the
 *   group's max is the same in all its lanes, so the lanes' sums stay comparable), and the group
 *   accumulates P·V: lane (h, c) over vec4 columns c + CS·i and keys h, h + KG, … (CS = min(S,
 *   CW) columns a pass, KG = S / CS key subsets), each key's probabilities taken from the lane
 *   that scored it by a shuffle.
 * - After the last tile, each group's sums and (if KG > 1) its key subsets' O are summed by
 *   shuffles, and the groups are merged a row at a time through workgroup memory, each rescaled
 *   from its own max to the workgroup's: out = Σ_g e^(m_g − M)·O_g / Σ_g e^(m_g − M)·l_g.
 *
 * Invariants: every subgroup operation is in uniform control flow (loop bounds are constants or
 * the workgroup's tile range; loads past the keys' end are clamped and selected away). Workgroup
 * memory: the queries, the groups' O for one row and CS columns (NG·CS ≤ 256 vec4) and their max
 * and sum ({@linkcode lanesSharedBytes}).
 *
 * @module
 */

import {
  DECODE_TILE,
  type DecodeConfig,
  decodeOpening,
  decodePreamble,
  keyDot,
  scoreExpr,
  tileEntry,
} from "./decode_wgsl.ts";

/** The lane-group kernel's sizes for a configuration. */
function sizes(c: DecodeConfig) {
  const S = c.lanes ?? 0, CW = c.cw, WG = DECODE_TILE;
  if (!(S >= 8 && S <= 32 && (S & (S - 1)) === 0)) {
    throw new RangeError(`invalid lane groups of ${S} lanes`);
  }
  return {
    S,
    WG,
    NG: WG / S,
    CS: Math.min(S, CW),
    NC: Math.max(1, CW / S),
    KG: Math.max(1, S / CW),
  };
}

/** Bytes of workgroup memory the lane-group kernel declares. */
export function lanesSharedBytes(c: DecodeConfig): number {
  const { NG, CS } = sizes(c);
  return 16 * c.rows * c.cw + 16 + 16 * NG * CS + 2 * 4 * NG * c.rows;
}

/** The lane-group decoding kernel. */
export function lanesWgsl(c: DecodeConfig): string {
  const { S, WG, NG, CS, NC, KG } = sizes(c);
  const R = c.rows, CW = c.cw;
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const rows = range(R), cols = range(NC);
  const each = <T>(xs: T[], f: (x: T) => string, sep = "\n") => xs.map(f).join(sep);
  const keyRow = (j: string) => (c.paged ? `pageRow(b, ${j})` : j);
  const butterfly = (x: string, o: "max" | "+") =>
    range(Math.log2(S)).map((i) => {
      const y = `subgroupShuffleXor(${x}, ${S >> (i + 1)}u)`;
      return `  ${x} = ${o === "max" ? `max(${x}, ${y})` : `${x} + ${y}`};`;
    }).join("\n");
  // phase 2: VB keys at once (phase 1's batches: keyDot)
  const VB = Math.min(c.loads[1], S / KG);
  if (!(VB > 0 && (VB & (VB - 1)) === 0)) {
    throw new RangeError("invalid decoding config: loads must be powers of two");
  }
  const vs = range(VB);
  return `${decodePreamble(c)}
var<workgroup> red4: array<vec4<f32>, ${NG * CS}>;
var<workgroup> wm: array<f32, ${NG * R}>;
var<workgroup> wl: array<f32, ${NG * R}>;

${decodeOpening(c, WG)}
  let gi = t / ${S}u;           // this lane group
  let lane = t % ${S}u;
  let sb = (sid / ${S}u) * ${S}u; // the group's first lane in its subgroup
  let h = lane / ${CS}u;         // phase 2: key subset
  let cl = lane % ${CS}u;        // phase 2: first vec4 column
${each(rows, (r) => `  var m${r} = NEG;\n  var l${r} = 0.0;`)}
${each(rows, (r) => each(cols, (ci) => `  var o${r}_${ci} = vec4<f32>(0.0);`))}
  for (var it = tFirst; it < tLast; it++) {
${tileEntry(c)}
    let g0 = col0 + gi * ${S}u; // the group's first key
    // ---- phase 1: the lane's key j, every row
    let j = g0 + lane;
    let jc = min(j, P.nk - 1u);
${
    each(rows, (r) =>
      `    var m${r}_ = !ok${r} || j >= P.nk;
    if (partial && !m${r}_) { m${r}_ = masked(bo${r} + jc * 4u, qi${r}); }
    var acc${r} = 0.0;`)
  }
    if (${each(rows, (r) => `!m${r}_`, " || ")}) {
      let base = kBase + ${keyRow("jc")} * kStride;
      ${keyDot(c)}
    }
    // ---- the group's row max, the rescaling, the probabilities
${
    each(rows, (r) =>
      `    var mx${r} = ${scoreExpr(c, r, `acc${r}`, `m${r}_`)};
    let s${r} = mx${r};
  ${butterfly(`mx${r}`, "max").replaceAll("\n", "\n  ")}
    let mNew${r} = max(m${r}, mx${r});
    let mUse${r} = select(mNew${r}, 0.0, mNew${r} == NEG);
    let a${r} = exp2(m${r} - mUse${r});
    m${r} = mNew${r};
    let e${r} = exp2(s${r} - mUse${r});
    l${r} = l${r} * a${r} + e${r};
    let p${r} = e${r}${c.dropout ? ` * keep(b, hq${r}, qi${r}, j)` : ""};
${each(cols, (ci) => `    o${r}_${ci} = o${r}_${ci} * a${r};`)}`)
  }
    // ---- phase 2: O += P · V over the group's keys, lane (h, cl): keys h, h + ${KG}, …
    for (var u0 = 0u; u0 < ${S / KG}u; u0 += ${VB}u) {
${
    each(vs, (i) =>
      `      let e${i} = h + (u0 + ${i}u) * ${KG}u;
      let jv${i} = g0 + e${i};
      let vb${i} = kBase + ${keyRow(`min(jv${i}, P.nk - 1u)`)} * kStride;
${
        each(cols, (ci) =>
          `      let v${i}_${ci} = select(vec4<f32>(0.0), load_v(vb${i}, (cl + ${
            CS * ci
          }u) * 4u), jv${i} < P.nk);`)
      }`)
  }
${
    each(vs, (i) =>
      each(rows, (r) =>
        `      {
        let pp = vec4<f32>(subgroupShuffle(p${r}, sb + e${i}));
${each(cols, (ci) => `        o${r}_${ci} = fma(pp, v${i}_${ci}, o${r}_${ci});`)}
      }`))
  }
    }
  }
  // ---- each group's sums (and its key subsets' O), then the groups merged a row at a time
${each(rows, (r) => butterfly(`l${r}`, "+"))}
${
    each(rows, (r) =>
      range(Math.log2(KG)).map((i) =>
        `  o${r}_0 = o${r}_0 + subgroupShuffleXor(o${r}_0, ${CS << i}u);`
      ).join("\n"))
  }
  if (lane == 0u) {
${each(rows, (r) => `    wm[gi * ${R}u + ${r}u] = m${r};\n    wl[gi * ${R}u + ${r}u] = l${r};`)}
  }
  workgroupBarrier();
  let slot = ((bl * P.kvHeads + kh) * P.chunks + chunk) * P.splits + split;
${
    each(rows, (r) =>
      `  {
    var mx = NEG;
    for (var q = 0u; q < ${NG}u; q++) { mx = max(mx, wm[q * ${R}u + ${r}u]); }
    let mU = select(mx, 0.0, mx == NEG);
    let f = exp2(m${r} - mU);
    var l = 0.0;
    for (var q = 0u; q < ${NG}u; q++) { l = l + wl[q * ${R}u + ${r}u] * exp2(wm[q * ${R}u + ${r}u] - mU); }
    if (t == 0u) {
      plse[P.plseOff + slot * ${R}u + ${r}u] = select(P.negInf, (mx + log2(l)) * 0.69314718055994531, !(l == 0.0));
    }
${
        each(cols, (ci) =>
          `    if (h == 0u) { red4[gi * ${CS}u + cl] = o${r}_${ci} * f; }
    workgroupBarrier();
    if (t < ${CS}u) {
      var sum = vec4<f32>(0.0);
      for (var q = 0u; q < ${NG}u; q++) { sum = sum + red4[q * ${CS}u + t]; }
      part[P.partOff + (slot * ${R}u + ${r}u) * ${CW}u + t + ${
            CS * ci
          }u] = select(vec4<f32>(0.0), sum / l, !(l == 0.0));
    }
    workgroupBarrier();`)
      }
  }`)
  }
}`;
}
