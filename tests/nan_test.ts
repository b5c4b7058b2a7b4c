/**
 * NaN semantics with `checkFinite: false`, the same on every backend: a NaN is never turned into
 * a number. Every output that depends on a NaN input holds a NaN (a row of `out`, its `lse`, the
 * gradients it reaches); outputs of other heads are bitwise those of the NaN-free call; the lse
 * does not depend on v. (Outputs that do not depend on the NaN but share a tile with it may be
 * NaN too; that part is backend-specific and not asserted.)
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  mergeAttention,
  type Tensor,
  tensor,
  toFloat32,
} from "../mod.ts";
import { requireGpu } from "../gpu/internal.ts";
import { backendTargets, randn, rng, withGpuTuning } from "./_util.ts";

const backends = await backendTargets();

type Site = "q" | "k" | "v" | "dOut";
interface Shape {
  nq: number;
  nk: number;
  d: number;
  dtype: "f32" | "f16";
}
const shapes: Shape[] = [
  { nq: 37, nk: 37, d: 16, dtype: "f32" }, // prefill, causal diagonal inside a tile
  { nq: 17, nk: 97, d: 59, dtype: "f16" },
  { nq: 1, nk: 300, d: 16, dtype: "f32" }, // decode (WASM split-KV; WebGPU by the test below)
  { nq: 3, nk: 300, d: 16, dtype: "f16" },
];
const H = 2; // the NaN goes into head 0; head 1 must be untouched

/** Row (b = 0, i, h) of a [1, n, H, d] tensor holds a NaN. */
function rowNaN(t: Tensor, i: number, h: number): boolean {
  const d = t.shape[3], data = toFloat32(t), at = (i * H + h) * d;
  for (let x = 0; x < d; x++) if (Number.isNaN(data[at + x])) return true;
  return false;
}

/** The values of head `h` of a [1, n, H, d] tensor, as f32 bits. */
function headBits(t: Tensor, h: number): number[] {
  const d = t.shape[3], n = t.shape[1], data = toFloat32(t), bits: number[] = [];
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) {
    for (let x = 0; x < d; x++) {
      f[0] = data[(i * H + h) * d + x];
      bits.push(u[0]);
    }
  }
  return bits;
}

function make(s: Shape, n: number, seed: number): Tensor {
  const x = randn(rng(seed), n * H * s.d);
  return s.dtype === "f16"
    ? tensor(Float16Array.from(x), [1, n, H, s.d])
    : tensor(x, [1, n, H, s.d]);
}

/** A copy of `t` with a NaN in row (0, row, head 0). */
function poisoned(t: Tensor, row: number): Tensor {
  const data = toFloat32(t).slice();
  data[(row * H + 0) * t.shape[3] + 3] = NaN;
  return tensor(t.dtype === "f16" ? Float16Array.from(data) : data, t.shape);
}

async function checkSite(options: AttentionOptions, s: Shape, site: Site): Promise<void> {
  const opts: AttentionOptions = { ...options, causal: true, checkFinite: false };
  const clean = { q: make(s, s.nq, 1), k: make(s, s.nk, 2), v: make(s, s.nk, 3) };
  const dOut = make(s, s.nq, 4);
  // a query row in the middle; a key in the middle of the visible range (causal, bottom-right)
  const row = site === "q" || site === "dOut"
    ? s.nq >> 1
    : Math.min(s.nk - s.nq + (s.nq >> 1), s.nk - 1);
  const shift = s.nk - s.nq;
  const sees = (i: number, j: number) => j <= i + shift;
  const inputs = { ...clean };
  if (site !== "dOut") inputs[site] = poisoned(clean[site], row);
  const what = `${s.nq}×${s.nk} d=${s.d} ${s.dtype}, NaN in ${site}[${row}]`;

  const ref = await attention(clean.q, clean.k, clean.v, opts);
  const got = await attention(inputs.q, inputs.k, inputs.v, opts);
  assert.deepEqual(headBits(got.out, 1), headBits(ref.out, 1), `${what}: out of head 1`);
  for (let i = 0; i < s.nq; i++) {
    const lse = got.lse[i], reached = site === "q" ? i === row : site !== "dOut" && sees(i, row);
    if (reached) assert.ok(rowNaN(got.out, i, 0), `${what}: out row ${i} holds no NaN`);
    if (reached && site !== "v") assert.ok(Number.isNaN(lse), `${what}: lse[${i}] is ${lse}`);
    if (site === "v" || site === "dOut") {
      assert.ok(Object.is(lse, ref.lse[i]), `${what}: lse[${i}] ${lse} != ${ref.lse[i]}`);
    }
    assert.ok(
      Object.is(got.lse[H * s.nq - 1 - i], ref.lse[H * s.nq - 1 - i]),
      `${what}: lse of head 1`,
    );
  }

  const dO = site === "dOut" ? poisoned(dOut, row) : dOut;
  const g0 = await attentionBackward({ ...clean, out: ref.out, lse: ref.lse, dOut }, opts);
  const g = await attentionBackward({ ...inputs, out: got.out, lse: got.lse, dOut: dO }, opts);
  for (const name of ["dq", "dk", "dv"] as const) {
    assert.deepEqual(headBits(g[name], 1), headBits(g0[name], 1), `${what}: ${name} of head 1`);
  }
  // the gradients the NaN reaches: through P (q, k, dOut via D) and through dP (v, dOut)
  const queries = site === "q" || site === "dOut"
    ? [row]
    : Array.from({ length: s.nq }, (_, i) => i).filter((i) => sees(i, row));
  for (const i of queries) assert.ok(rowNaN(g.dq, i, 0), `${what}: dq row ${i} holds no NaN`);
  const keys = site === "k" || site === "v"
    ? [row]
    : Array.from({ length: s.nk }, (_, j) => j).filter((j) => sees(row, j));
  for (const j of keys) {
    assert.ok(rowNaN(g.dk, j, 0), `${what}: dk row ${j} holds no NaN`);
    // dv = Pᵀ dO does not read v
    if (site !== "v") assert.ok(rowNaN(g.dv, j, 0), `${what}: dv row ${j} holds no NaN`);
  }
}

for (const [name, options, ignore] of backends) {
  Deno.test({
    name:
      `${name}: checkFinite: false: a NaN in q, k, v or dOut reaches every output that depends on it, as NaN; other heads are untouched`,
    ignore,
    fn: async () => {
      for (const s of shapes) {
        for (const site of ["q", "k", "v", "dOut"] as const) await checkSite(options, s, site);
      }
    },
  });
}

Deno.test("mergeAttention: a part whose row is NaN (lse and out) makes the merged row NaN", async () => {
  const s: Shape = { nq: 5, nk: 8, d: 16, dtype: "f32" };
  const q = make(s, s.nq, 1), k = make(s, s.nk, 2), v = make(s, s.nk, 3);
  const opts: AttentionOptions = { backend: "js", checkFinite: false };
  const a = await attention(poisoned(q, 2), k, v, opts); // row 2 of head 0: NaN in both parts
  const b = await attention(q, k, poisoned(v, 4), opts); // out NaN in every row of head 0
  for (const parts of [[a, a], [a, b], [b, a]]) {
    const m = mergeAttention(parts);
    assert.ok(Number.isNaN(m.lse[2]) === (parts[0] === a || parts[1] === a), "lse[2]");
    for (let i = 0; i < s.nq; i++) {
      assert.ok(rowNaN(m.out, i, 0) === (i === 2 || parts.includes(b)));
    }
    assert.deepEqual(headBits(m.out, 1), headBits(mergeAttention([b, b]).out, 1));
  }
});

Deno.test({
  name:
    "webgpu: checkFinite: false: the split-KV decoding kernels, by workgroup and by lane groups, carry a NaN the same way",
  ignore: backends[2][2],
  async fn() {
    // the shapes are shorter than where split-KV decoding is the default: forced here. The lane
    // groups' row max is a butterfly of max(), which may drop a NaN in some of its lanes
    const lanes = Math.min(32, (await requireGpu()).subgroupLanes);
    for (const decodeLanes of lanes >= 8 ? [false as const, lanes] : [false as const]) {
      await withGpuTuning({ decode: true, splits: 2, decodeLanes }, async () => {
        for (const s of shapes.filter((s) => s.nq <= 16)) {
          for (const site of ["q", "k", "v", "dOut"] as const) {
            await checkSite(backends[2][1], s, site);
          }
        }
      });
    }
  },
});
