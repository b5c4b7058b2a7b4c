import assert from "node:assert/strict";
import { causal, type FlashMask, flashMask } from "../mod.ts";
import {
  exampleMask,
  MASK_NAMES,
  schedule,
  TILE_FULL,
  TILE_PARTIAL,
  TILE_SKIPPED,
  visibleFraction,
} from "../masks/mod.ts";
import { kvCache, toDense } from "../masks/mod.ts";
import { kvCacheWindows, scheduleWindows, windowedFlashMask } from "../masks/windowed.ts";
import { referenceAllowed } from "../reference/attention.ts";
import { rng } from "./_util.ts";

/** A random valid FlashMask of any layout, batch/heads slices, for (nq, nk). */
function randomMask(rand: () => number, nq: number, nk: number, slices: [number, number]) {
  const layouts: [boolean, 1 | 2 | 4][] = [[true, 1], [true, 2], [false, 2], [false, 4]];
  const [causalFlag, c] = layouts[Math.floor(rand() * 4)];
  const data = new Int32Array(slices[0] * slices[1] * nk * c);
  const pick = () => Math.floor(rand() * (nq + 1));
  // mostly structured columns (runs that move smoothly with j), sometimes noise
  const noisy = rand() < 0.3;
  const a = pick(), w = Math.floor(rand() * (nq + 1));
  for (let x = 0; x < data.length / c; x++) {
    const j = x % nk;
    const s0 = noisy ? pick() : Math.min(nq, a + Math.floor(j * rand() * 2));
    const s1 = noisy ? pick() : Math.min(nq, s0 + w);
    const [lo, hi] = s0 <= s1 ? [s0, s1] : [s1, s0];
    const u = noisy ? pick() : Math.min(nq, Math.floor(j / 2));
    if (c === 1) data[x] = lo;
    else if (c === 2) data.set(causalFlag ? [lo, hi] : [lo, u], x * c);
    else data.set([lo, hi, 0, u].map((v, k) => k === 2 ? Math.min(v, u) : v), x * c);
  }
  return flashMask(data, [slices[0], slices[1], nk, c], { causal: causalFlag, nq });
}

/** Checks every tile of a schedule against the dense mask read through the reference table. */
function checkSchedule(
  mask: FlashMask,
  nq: number,
  nk: number,
  br: number,
  bc: number,
  plan = schedule(mask, { nq, nk, blockRows: br, blockCols: bc }),
) {
  const [mb, mh] = mask.shape;
  let visible = 0, full = 0, partial = 0;
  for (let s = 0; s < mb * mh; s++) {
    const b = Math.floor(s / mh), h = s % mh;
    const seen = new Set<number>();
    for (let r = 0; r < plan.rowBlocks; r++) {
      const list = s * plan.rowBlocks + r;
      let last = -1;
      const classes = new Map<number, number>();
      for (let t = plan.rowPtr[list]; t < plan.rowPtr[list + 1]; t++) {
        const c = plan.rowTiles[t] >>> 1;
        assert.ok(c > last, "column blocks ascend");
        last = c;
        classes.set(c, plan.rowTiles[t] & 1 ? TILE_PARTIAL : TILE_FULL);
      }
      for (let c = 0; c < plan.colBlocks; c++) {
        let vis = 0, msk = 0;
        for (let i = r * br; i < Math.min(nq, (r + 1) * br); i++) {
          for (let j = c * bc; j < Math.min(nk, (c + 1) * bc); j++) {
            if (referenceAllowed({ mask }, b, h, mh, i, j, nq, nk)) vis++;
            else msk++;
          }
        }
        visible += vis;
        const k = classes.get(c) ?? TILE_SKIPPED;
        const where = `slice ${s} tile (${r}, ${c})`;
        if (k === TILE_SKIPPED) {
          assert.equal(vis, 0, `${where} is skipped but has visible elements`);
        }
        if (k === TILE_FULL) assert.equal(msk, 0, `${where} is full but has masked elements`);
        if (k === TILE_FULL) full++;
        if (k === TILE_PARTIAL) partial++;
        if (k !== TILE_SKIPPED) seen.add(r * plan.colBlocks + c);
      }
    }
    // the backward lists hold the same tiles, ascending in row block, same classes
    for (let c = 0; c < plan.colBlocks; c++) {
      const list = s * plan.colBlocks + c;
      let last = -1;
      for (let t = plan.colPtr[list]; t < plan.colPtr[list + 1]; t++) {
        const r = plan.colTiles[t] >>> 1;
        assert.ok(r > last, "row blocks ascend");
        last = r;
        assert.ok(seen.delete(r * plan.colBlocks + c), `tile (${r}, ${c}) only in backward list`);
      }
    }
    assert.equal(seen.size, 0, "every forward tile is in a backward list");
    // the launch orders: per slice a permutation of its blocks, longest list first, ties ascending
    for (
      const [order, ptr, n, what] of [
        [plan.rowOrder, plan.rowPtr, plan.rowBlocks, "rowOrder"],
        [plan.colOrder, plan.colPtr, plan.colBlocks, "colOrder"],
      ] as const
    ) {
      const blocks = Array.from({ length: n }, (_, i) => i);
      const len = (i: number) => ptr[s * n + i + 1] - ptr[s * n + i];
      blocks.sort((a, b) => len(b) - len(a) || a - b);
      assert.deepEqual([...order.subarray(s * n, (s + 1) * n)], blocks, `${what} of slice ${s}`);
    }
  }
  assert.deepEqual(plan.tiles, {
    full,
    partial,
    skipped: mb * mh * plan.rowBlocks * plan.colBlocks - full - partial,
  });
  assert.ok(Math.abs(plan.visibleFraction - visible / (mb * mh * nq * nk)) < 1e-12);
  return plan;
}

Deno.test("schedule is sound on random masks of every layout, sizes and tile shapes", () => {
  const rand = rng(5);
  for (let t = 0; t < 150; t++) {
    const nq = 1 + Math.floor(rand() * 70), nk = 1 + Math.floor(rand() * 70);
    const br = [1, 3, 8, 16, 64][Math.floor(rand() * 5)];
    const bc = [1, 4, 8, 16, 64][Math.floor(rand() * 5)];
    const slices: [number, number] = [1 + Math.floor(rand() * 2), 1 + Math.floor(rand() * 3)];
    checkSchedule(randomMask(rand, nq, nk, slices), nq, nk, br, bc);
  }
});

Deno.test("schedule is sound on the twelve mask types", () => {
  for (const name of MASK_NAMES) {
    for (const [n, br, bc] of [[97, 16, 16], [130, 32, 8], [17, 4, 8]]) {
      checkSchedule(exampleMask(name, n, 3).mask, n, n, br, bc);
    }
  }
});

Deno.test("schedule skips every fully masked tile of block-aligned masks (tightness)", () => {
  const plan = schedule(causal(256), { nq: 256, nk: 256, blockRows: 64, blockCols: 64 });
  assert.deepEqual(plan.tiles, { full: 6, partial: 4, skipped: 6 });
  // a document mask with 64-aligned documents: only diagonal-block tiles are computed
  const doc = flashMask(
    Array.from({ length: 256 }, (_, j) => [j < 128 ? 128 : 256, j < 128 ? 0 : 128]).flat(),
    [1, 1, 256, 2],
    { causal: false },
  );
  const p = schedule(doc, { nq: 256, nk: 256, blockRows: 64, blockCols: 64 });
  assert.deepEqual(p.tiles, { full: 8, partial: 0, skipped: 8 });
  assert.equal(p.density, 0.5);
  assert.equal(p.visibleFraction, 0.5);
});

Deno.test("schedule is cached on the mask and rebuilt when the mask changes", () => {
  const m = causal(64);
  const opts = { nq: 64, nk: 64, blockRows: 16, blockCols: 16 };
  const a = schedule(m, opts);
  assert.equal(schedule(m, opts), a);
  assert.notEqual(schedule(m, { ...opts, blockCols: 32 }), a);
  m.startEndRowIndices[0] = 1; // key 0 now hidden from rows >= 1
  const b = schedule(m, opts);
  assert.notEqual(b, a);
  assert.ok(b.visibleFraction < a.visibleFraction);
  assert.throws(() => schedule(m, { ...opts, nq: 0 }), /nq must be a positive integer/);
  assert.throws(
    () => schedule(m, { ...opts, nk: 65 }),
    /shape\[2\] \(seqLenK\) is 64; expected 65/,
  );
});

Deno.test("visibleFraction is exact", () => {
  assert.equal(visibleFraction(causal(4), 4), 10 / 16);
  // causal with Nq < Nk (bottom-right): query i sees keys [0, i + Nk - Nq]
  const m = flashMask(new Int32Array(6).fill(2), [1, 1, 6, 1], { causal: true });
  assert.equal(visibleFraction(m, 2), (5 + 6) / 12);
});

Deno.test("a ragged KV cache's windows of one template: the kvCache mask, a sound and as tight schedule", () => {
  const rand = rng(11);
  for (let t = 0; t < 120; t++) {
    const nq = 1 + Math.floor(rand() * (t % 3 ? 5 : 40)), nk = 1 + Math.floor(rand() * 90);
    const batch = 1 + Math.floor(rand() * 3);
    const kvLength = Array.from(
      { length: batch },
      () => rand() < 0.15 ? (rand() < 0.5 ? 0 : nk) : Math.floor(rand() * (nk + 1)),
    );
    const causalFlag = rand() < 0.6;
    const pickSide = () => rand() < 0.3 ? -1 : Math.floor(rand() * 12);
    const windowSize = rand() < 0.4 ? [pickSide(), pickSide()] as [number, number] : undefined;
    const [br, bc] = [[1, 16], [16, 16], [8, 32], [4, 7]][t % 4];
    const mask = kvCache(kvLength, nq, nk, { causal: causalFlag, windowSize });
    const w = kvCacheWindows(kvLength, nq, nk, causalFlag, windowSize);
    const what =
      `kvLength [${kvLength}] nq ${nq} nk ${nk} causal ${causalFlag} window ${windowSize}`;
    for (let b = 0; b < batch; b++) {
      assert.deepEqual(
        toDense(windowedFlashMask(w), { batch: b, nq }),
        toDense(mask, { batch: b, nq }),
        what,
      );
    }
    const plan = checkSchedule(mask, nq, nk, br, bc, scheduleWindows(w, br, bc));
    // kernels read the template through the slices' columns: the same bounds
    for (let s = 0; s < batch; s++) {
      const at = plan.sliceColumn[s] * 4;
      assert.deepEqual(
        plan.columnBounds.subarray(at, at + nk * 4),
        plan.bounds.subarray(s * nk * 4, (s + 1) * nk * 4),
      );
    }
    const materialised = schedule(mask, { nq, nk, blockRows: br, blockCols: bc });
    assert.ok(
      plan.tiles.full + plan.tiles.partial <=
          materialised.tiles.full + materialised.tiles.partial &&
        plan.tiles.partial <= materialised.tiles.partial,
      `${what}: ${JSON.stringify(plan.tiles)} against ${JSON.stringify(materialised.tiles)}`,
    );
  }
});

Deno.test("a decoding step's new kvLength reuses the template: O(batch + tiles) new data", () => {
  const nk = 1 << 16;
  const a = kvCacheWindows([40000, 7], 1, nk, true, undefined);
  const b = kvCacheWindows([40001, 8], 1, nk, true, undefined);
  assert.equal(a.template, b.template);
  // causal at Nq = 1 changes nothing: the keys before the length, and those past it
  assert.equal(a.template.runs.length, 2 + 1);
  assert.equal(kvCacheWindows([9], 4, 16, true, undefined).template.runs.length, 4 + 1 + 1);
  const pa = scheduleWindows(a, 1, 64), pb = scheduleWindows(b, 1, 64);
  assert.notEqual(pa, pb);
  assert.equal(pb.columnBounds, pa.columnBounds);
  assert.equal(scheduleWindows(kvCacheWindows([40001, 8], 1, nk, true, undefined), 1, 64), pb);
  assert.equal(pb.tiles.full + pb.tiles.partial, Math.ceil(40001 / 64) + 1);
});
