import assert from "node:assert/strict";
import {
  causal,
  causalDocument,
  document,
  type FlashMask,
  flashMask,
  fromDense,
  globalSlidingWindow,
  maskPicture,
  prefixLmDocument,
  qkSparse,
  randomEviction,
  shareQuestion,
  slidingWindow,
  stack,
  toDense,
} from "../mod.ts";
import { exampleMask, kvCache, localWindow, MASK_NAMES, varlen } from "../masks/mod.ts";
import { evictionRows } from "../masks/builders.ts";
import { definition, denseOf } from "../reference/mask_predicates.ts";
import { referenceAllowed } from "../reference/attention.ts";
import { rng } from "./_util.ts";

const SIZES = [1, 2, 17, 64, 97];

/** The dense matrix of a raw mask read through the reference's layout table. */
function referenceDense(mask: FlashMask, nq: number, b = 0, h = 0, heads = 1): Uint8Array {
  const nk = mask.shape[2];
  return denseOf((i, j) => referenceAllowed({ mask }, b, h, heads, i, j, nq, nk), nq, nk);
}

Deno.test("every builder matches its definition (toDense and the reference layout table)", () => {
  for (const name of MASK_NAMES) {
    for (const n of SIZES) {
      for (const seed of [1, 2, 3]) {
        const { mask, args } = exampleMask(name, n, seed);
        const want = denseOf(definition(name, args), n, n);
        assert.deepEqual(toDense(mask), want, `${name} n=${n} seed=${seed} toDense`);
        assert.deepEqual(referenceDense(mask, n), want, `${name} n=${n} seed=${seed} raw layout`);
      }
    }
  }
});

Deno.test("builders choose the smallest column layout", () => {
  const expected: Record<string, [boolean, number]> = {
    full: [false, 2],
    causal: [true, 1],
    slidingWindow: [true, 1],
    causalDocument: [true, 1],
    document: [false, 2],
    shareQuestion: [true, 1],
    globalSlidingWindow: [false, 4],
    causalBlockwise: [true, 2],
    prefixLmCausal: [false, 2],
    prefixLmDocument: [false, 2],
    qkSparse: [true, 2],
    randomEviction: [true, 1],
  };
  for (const name of MASK_NAMES) {
    const { mask } = exampleMask(name, 64, 2);
    assert.deepEqual([mask.causal, mask.shape[3]], expected[name], name);
    // and no smaller layout fits its dense matrix (checked by brute force below)
    assert.equal(smallestLayout(toDense(mask), 64, 64).join(), expected[name].join(), name);
  }
  // globalSlidingWindow without global tokens needs only [LTS, UTE]
  assert.deepEqual(globalSlidingWindow(32, 0, 3, 2).shape, [1, 1, 32, 2]);
});

/** Masked runs of column j of a dense matrix. */
function runsOf(dense: Uint8Array, nq: number, nk: number, j: number): [number, number][] {
  const runs: [number, number][] = [];
  for (let i = 0; i < nq; i++) {
    if (dense[i * nk + j]) continue;
    if (runs.length && runs[runs.length - 1][1] === i) runs[runs.length - 1][1]++;
    else runs.push([i, i + 1]);
  }
  return runs;
}

/** Brute force: the first layout (causal 1, causal 2, non-causal 2, non-causal 4) that fits. */
function smallestLayout(dense: Uint8Array, nq: number, nk: number): [boolean, number] {
  const fits = (ok: (runs: [number, number][], ce: number) => boolean) => {
    for (let j = 0; j < nk; j++) {
      if (!ok(runsOf(dense, nq, nk, j), Math.min(nq, Math.max(0, j - (nk - nq))))) return false;
    }
    return true;
  };
  // A causal layout masks rows [0, ce) plus one run [s, e) (e = nq for one column). Try every s,e.
  const causalFits = (oneCol: boolean) =>
    fits((runs, ce) => {
      const masked = (i: number) => runs.some(([a, b]) => a <= i && i < b);
      for (let s = 0; s <= nq; s++) {
        for (let e = oneCol ? nq : s; e <= nq; e++) {
          let same = true;
          for (let i = 0; i < nq && same; i++) same = masked(i) === (i < ce || (s <= i && i < e));
          if (same) return true;
        }
      }
      return false;
    });
  if (causalFits(true)) return [true, 1];
  if (causalFits(false)) return [true, 2];
  const plain2 = fits((runs) =>
    runs.length === 0 ||
    (runs.length === 1 && (runs[0][0] === 0 || runs[0][1] === nq)) ||
    (runs.length === 2 && runs[0][0] === 0 && runs[1][1] === nq)
  );
  return plain2 ? [false, 2] : [false, 4];
}

/** A random dense mask whose columns have at most two masked runs. */
function randomDense(rand: () => number, nq: number, nk: number): Uint8Array {
  const dense = new Uint8Array(nq * nk).fill(1);
  for (let j = 0; j < nk; j++) {
    for (let r = 0; r < 2; r++) {
      if (rand() < 0.3) continue;
      const a = Math.floor(rand() * (nq + 1)), b = a + Math.floor(rand() * (nq + 1 - a));
      for (let i = a; i < b; i++) dense[i * nk + j] = 0;
    }
  }
  // runs may have merged or split into at most two; keep columns with at most two runs
  for (let j = 0; j < nk; j++) {
    if (runsOf(dense, nq, nk, j).length > 2) { for (let i = 0; i < nq; i++) dense[i * nk + j] = 1; }
  }
  return dense;
}

Deno.test("fromDense round-trips random masks in their smallest layout", () => {
  const rand = rng(11);
  for (let t = 0; t < 300; t++) {
    const nq = 1 + Math.floor(rand() * 9), nk = 1 + Math.floor(rand() * 9);
    const dense = randomDense(rand, nq, nk);
    const m = fromDense(dense, nq, nk);
    assert.deepEqual(toDense(m, { nq }), dense, `case ${t}`);
    assert.deepEqual(referenceDense(m, nq), dense, `case ${t} (reference table)`);
    assert.deepEqual([m.causal, m.shape[3]], smallestLayout(dense, nq, nk), `case ${t} layout`);
    const nc = fromDense(dense, nq, nk, { causal: false });
    assert.equal(nc.causal, false);
    assert.deepEqual(toDense(nc, { nq }), dense);
  }
});

Deno.test("fromDense rejects a column with three masked runs, and causal masks above the diagonal", () => {
  const nq = 6, nk = 3;
  const dense = new Uint8Array(nq * nk).fill(1);
  for (const i of [0, 2, 4]) dense[i * nk + 1] = 0;
  assert.throws(() => fromDense(dense, nq, nk), (e: Error) => {
    assert.ok(e instanceof RangeError);
    assert.match(e.message, /key column 1 has 3 masked runs/);
    return true;
  });
  assert.throws(() => fromDense(new Uint8Array(4).fill(1), 2, 2, { causal: true }), RangeError);
  assert.throws(() => fromDense(new Uint8Array(3), 2, 2), /nq \* nk = 4/);
});

Deno.test("fromDense uses bottom-right causal alignment when Nq != Nk", () => {
  for (const [nq, nk] of [[3, 7], [7, 3]]) {
    const dense = denseOf((i, j) => j <= i + (nk - nq), nq, nk);
    const m = fromDense(dense, nq, nk);
    assert.equal(m.causal, true);
    assert.deepEqual(toDense(m, { nq }), dense);
    assert.deepEqual(referenceDense(m, nq), dense);
  }
});

Deno.test("stack builds per-batch and per-head masks, mixing layouts", () => {
  const a = causal(16), b = document([5, 11]), c = slidingWindow(16, 3);
  const m = stack([[a, b], [c, a]]);
  assert.deepEqual(m.shape.slice(0, 3), [2, 2, 16]);
  assert.equal(m.causal, false); // document is not causal: the stack needs a non-causal layout
  for (const [bi, hi, src] of [[0, 0, a], [0, 1, b], [1, 0, c], [1, 1, a]] as const) {
    assert.deepEqual(toDense(m, { batch: bi, head: hi }), toDense(src), `slice ${bi},${hi}`);
    assert.deepEqual(referenceDense(m, 16, bi, hi, 2), toDense(src));
  }
  assert.deepEqual(stack([[a], [c]]).shape, [2, 1, 16, 1]);
  assert.throws(() => stack([[a], [causal(8)]]), /shape\[2\] is 8, expected 16/);
  assert.throws(() => stack([[a, b], [c]]), /masks\[1\] must hold 2 masks/);
});

Deno.test("flashMask validation names the field, the position and the bound", () => {
  assert.throws(
    () => flashMask(new Int32Array([1, 5, 2, 2]), [1, 1, 2, 2], { causal: true, nq: 4 }),
    (e: Error) =>
      e instanceof RangeError && /startEndRowIndices\[1\].*key 0, LTE\) = 5 is outside \[0, 4\]/
        .test(e.message),
  );
  assert.throws(
    () => flashMask(new Int32Array([3, 1]), [1, 1, 1, 2], { causal: true, nq: 4 }),
    /key 0, LTS\) = 3 is greater than LTE = 1/,
  );
  assert.throws(
    () => flashMask(new Int32Array([4, 4, 3, 2]), [1, 1, 1, 4], { causal: false, nq: 4 }),
    /UTS\) = 3 is greater than UTE = 2/,
  );
  assert.throws(
    () => flashMask(new Int32Array([-1, 0]), [1, 1, 1, 2], { causal: false, nq: 4 }),
    /= -1 is outside/,
  );
  assert.throws(() => flashMask(new Int32Array(4), [1, 1, 1, 4], { causal: true }), /shape\[3\]/);
  assert.throws(() => flashMask(new Int32Array(1), [1, 1, 1, 1], { causal: false }), /shape\[3\]/);
  assert.throws(() => flashMask(new Int32Array(3), [1, 1, 2, 2], { causal: false }), /length is 3/);
  assert.throws(() => flashMask(new Int32Array(3), [1, 0, 3, 1], { causal: true }), /shape\[1\]/);
  assert.throws(() => toDense({ shape: [1, 1, 1, 1], causal: true } as never), TypeError);
  assert.throws(() => toDense(stack([[causal(4), causal(4)]]), { head: 2 }), /head 2 is outside/);
});

Deno.test("builders reject bad arguments with a RangeError naming them", () => {
  assert.throws(() => causal(0), /causal: n must be a positive integer/);
  assert.throws(() => causalDocument([3, 0]), /docLens\[1\] must be a positive integer/);
  assert.throws(() => document([]), /non-empty/);
  assert.throws(() => slidingWindow(4, -1), /window/);
  assert.throws(() => qkSparse(8, 5, 3), /start <= end/);
  assert.throws(() => prefixLmDocument([{ length: 2, prefix: 3 }]), /prefix 3 exceeds/);
  assert.throws(() => shareQuestion([{ question: 1, answers: [2, 0] }]), /answers\[1\]/);
  assert.throws(() => randomEviction(8, { startRow: 0 }), /startRow/);
  assert.throws(() => globalSlidingWindow(8, 1.5, 1, 1), /globalTokens/);
});

Deno.test("randomEviction: every row from startRow evicts one earlier live key; same seed, same mask", () => {
  for (const [n, startRow, seed] of [[40, 10, 3], [17, 1, 9], [5, 5, 0]]) {
    const evict = evictionRows(n, startRow, seed);
    for (let r = startRow; r < n; r++) {
      const evicted = [...evict].map((e, k) => [e, k]).filter(([e]) => e === r);
      assert.equal(evicted.length, 1, `row ${r} evicts exactly one key`);
      assert.ok(evicted[0][1] < r, `row ${r} evicts an earlier key`);
    }
    assert.equal([...evict].filter((e) => e === n).length, startRow, "startRow keys survive");
    const d = toDense(randomEviction(n, { startRow, seed }));
    // each row r sees exactly min(r + 1, startRow) keys
    for (let r = 0; r < n; r++) {
      const seen = d.subarray(r * n, (r + 1) * n).reduce((a, x) => a + x, 0);
      assert.equal(seen, Math.min(r + 1, startRow), `row ${r}`);
    }
  }
  assert.notDeepEqual(
    toDense(randomEviction(64, { startRow: 8, seed: 1 })),
    toDense(randomEviction(64, { startRow: 8, seed: 2 })),
  );
});

Deno.test("maskPicture draws elements, downsampled cells and tile classes", () => {
  assert.equal(maskPicture(causal(3)), "█░░\n██░\n███");
  const big = maskPicture(causal(1000), { maxSize: 10 });
  const lines = big.split("\n");
  assert.equal(lines.length, 10);
  assert.equal(lines[0], "▒░░░░░░░░░");
  assert.equal(lines[9], "█████████▒");
  const blocks = maskPicture(causalDocument([64, 64]), {
    blocks: { blockRows: 32, blockCols: 32 },
  });
  assert.equal(blocks, "▓░░░\n█▓░░\n░░▓░\n░░█▓");
});

Deno.test("localWindow, varlen and kvCache match FlashAttention's definitions", () => {
  for (const [nq, nk] of [[9, 9], [4, 11], [11, 4]]) {
    for (const w of [[2, 1], [0, 0], [3, -1], [-1, 2], [-1, -1]] as [number, number][]) {
      for (const c of [false, true]) {
        const off = nk - nq;
        const want = denseOf(
          (i, j) =>
            (w[0] < 0 || j >= i + off - w[0]) &&
            (c ? j <= i + off : w[1] < 0 || j <= i + off + w[1]),
          nq,
          nk,
        );
        const m = localWindow(nq, nk, w, { causal: c });
        assert.deepEqual(toDense(m, { nq }), want, `${nq}x${nk} window ${w} causal ${c}`);
      }
    }
  }
  const cu = [0, 3, 4, 9];
  const seq = (x: number) => cu.findIndex((e, s) => s > 0 && x < e) - 1;
  assert.deepEqual(
    toDense(varlen(cu, { causal: true, windowSize: [1, -1] })),
    denseOf((i, j) => seq(i) === seq(j) && j <= i && j >= i - 1, 9, 9),
  );
  const lens = [6, 2, 0];
  const m = kvCache(lens, 3, 6, { causal: true });
  lens.forEach((len, b) =>
    assert.deepEqual(
      toDense(m, { batch: b, nq: 3 }),
      denseOf((i, j) => j < len && j <= i + len - 3, 3, 6),
      `kv entry ${b}`,
    )
  );
  assert.throws(() => localWindow(4, 4, [-2, 0]), /left must be an integer >= -1/);
  assert.throws(() => varlen([0, 3, 3]), /cuSeqlens\[2\] = 3 must be an integer greater than/);
  assert.throws(() => kvCache([7], 1, 6), /kvLength\[0\] = 7 must be an integer in \[0, 6\]/);
});
