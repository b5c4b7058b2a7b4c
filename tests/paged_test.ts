/**
 * Paged KV caches (`blockTable`): results bitwise those of the same cache laid out contiguously,
 * with pages in shuffled order among unused ones, ragged `kvLength`, decode and prefill shapes,
 * GQA, f16, masks and windows over logical positions, sinks and ALiBi; and the validation.
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  type BlockTable,
  fromGpu,
  gpuDevice,
  type GpuTensor,
  readGpuArray,
  type Tensor,
  tensor,
  toGpu,
} from "../mod.ts";
import { exampleMask } from "../masks/mod.ts";
import { randomTensor, rng, testAdapter, withGpuTuning } from "./_util.ts";

interface PagedCase {
  name: string;
  batch: number;
  nq: number;
  heads: number;
  kvHeads: number;
  d: number;
  pageSize: number;
  perSequence: number;
  dtype: "f32" | "f16";
  options: AttentionOptions;
}

const cases: PagedCase[] = [
  {
    name: "decode, 1 query, ragged kvLength, GQA 4:2",
    batch: 3,
    nq: 1,
    heads: 4,
    kvHeads: 2,
    d: 16,
    pageSize: 16,
    perSequence: 5,
    dtype: "f32",
    options: { kvLength: [80, 17, 0], causal: true },
  },
  {
    name: "prefill against the cache, 5 queries, causal, d=59",
    batch: 2,
    nq: 5,
    heads: 2,
    kvHeads: 1,
    d: 59,
    pageSize: 8,
    perSequence: 7,
    dtype: "f32",
    options: { kvLength: [56, 23], causal: true },
  },
  {
    name: "a window over logical positions, f16",
    batch: 2,
    nq: 3,
    heads: 2,
    kvHeads: 2,
    d: 32,
    pageSize: 32,
    perSequence: 4,
    dtype: "f16",
    options: { kvLength: [128, 70], windowSize: [40, 0] },
  },
  {
    name: "a FlashMask over logical keys, sinks and ALiBi, no kvLength",
    batch: 1,
    nq: 48,
    heads: 3,
    kvHeads: 1,
    d: 16,
    pageSize: 8,
    perSequence: 6,
    dtype: "f32",
    options: {
      mask: exampleMask("slidingWindow", 48).mask,
      sinks: Float32Array.from([0.5, -1, 2]),
      alibiSlopes: Float32Array.from([0.25, 0.125, 0.0625]),
    },
  },
];

/** The cache cut into pages, shuffled among `spare` unused ones, and its page table. */
function paginate(
  t: Tensor,
  c: PagedCase,
  order: number[],
): { pages: Tensor; table: BlockTable } {
  const { batch, perSequence: per, pageSize, kvHeads, d } = c;
  const rowLen = pageSize * kvHeads * d, total = order.length;
  const src = t.data, dst = new (src.constructor as Float32ArrayConstructor)(total * rowLen);
  const table = new Int32Array(batch * per);
  for (let s = 0; s < batch * per; s++) {
    const page = order[s];
    table[s] = page;
    dst.set(src.subarray(s * rowLen, (s + 1) * rowLen), page * rowLen);
  }
  return {
    pages: { data: dst, shape: [total, pageSize, kvHeads, d], dtype: t.dtype } as Tensor,
    table: { data: table, shape: [batch, per] },
  };
}

async function checkPaged(c: PagedCase, backend: AttentionOptions["backend"]): Promise<void> {
  const r = rng(c.batch * 131 + c.nq);
  const nk = c.perSequence * c.pageSize;
  const q = randomTensor(r, [c.batch, c.nq, c.heads, c.d], c.dtype);
  const k = randomTensor(r, [c.batch, nk, c.kvHeads, c.d], c.dtype);
  const v = randomTensor(r, [c.batch, nk, c.kvHeads, c.d], c.dtype);
  // pages in shuffled order, with 3 unused pages (filled with other values) among them
  const total = c.batch * c.perSequence + 3;
  const order = Array.from({ length: total }, (_, i) => i);
  for (let i = total - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const kp = paginate(k, c, order), vp = paginate(v, c, order);
  const filler = randomTensor(r, [total, c.pageSize, c.kvHeads, c.d], c.dtype).data;
  for (const x of [kp, vp]) {
    for (const page of order.slice(c.batch * c.perSequence)) {
      const n = c.pageSize * c.kvHeads * c.d;
      x.pages.data.set(filler.subarray(page * n, (page + 1) * n), page * n);
    }
  }
  const opt = { ...c.options, backend };
  const want = await attention(q, k, v, opt);
  const got = await attention(q, kp.pages, vp.pages, { ...opt, blockTable: kp.table });
  assert.deepEqual(got.out.data, want.out.data, `${c.name}: out`);
  assert.deepEqual(got.lse, want.lse, `${c.name}: lse`);
  assert.equal(got.backend, want.backend);
  if (backend === "webgpu" && (c.dtype === "f32" || gpu?.f16)) {
    // GPU-resident pages (the caller's cache buffers), the same bits
    const r2 = await attention(await toGpu(q), await toGpu(kp.pages), await toGpu(vp.pages), {
      ...c.options,
      blockTable: kp.table,
    });
    assert.deepEqual((await fromGpu(r2.out)).data, want.out.data, `${c.name}: GPU-resident out`);
    assert.deepEqual(await readGpuArray(r2.lse), want.lse, `${c.name}: GPU-resident lse`);
    // the pages at a byte offset into a larger buffer (a cache inside a bigger allocation)
    const device = (await gpuDevice())!;
    const at = (t: Tensor, offset: number): GpuTensor => {
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      const buffer = device.createBuffer({
        size: Math.ceil((offset + bytes.length) / 4) * 4,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      });
      device.queue.writeBuffer(buffer, offset, bytes);
      return { buffer, shape: t.shape, dtype: t.dtype, offset };
    };
    const r3 = await attention(
      await toGpu(q),
      at(kp.pages, 256),
      at(vp.pages, 512),
      { ...c.options, blockTable: kp.table },
    );
    assert.deepEqual((await fromGpu(r3.out)).data, want.out.data, `${c.name}: pages at an offset`);
  }
}

const gpu = await testAdapter();
for (const c of cases) {
  for (const backend of ["js", "wasm"] as const) {
    Deno.test(`paged KV cache, ${backend}: ${c.name}: bitwise the contiguous cache's`, () =>
      checkPaged(c, backend));
  }
  Deno.test({
    name: `paged KV cache, webgpu: ${c.name}: bitwise the contiguous cache's`,
    ignore: gpu === undefined,
    fn: () => checkPaged(c, "webgpu"),
  });
  Deno.test({
    name: `paged KV cache, webgpu: ${c.name} (split-KV decoding, 3 splits)`,
    ignore: gpu === undefined || c.nq > 16,
    async fn() {
      await withGpuTuning({ decode: true, splits: 3 }, async () => {
        await checkPaged(c, "webgpu");
      });
    },
  });
}

Deno.test("paged KV cache: the page table is validated; the backward refuses it", async () => {
  const r = rng(1);
  const q = randomTensor(r, [2, 1, 2, 8], "f32");
  const pages = randomTensor(r, [5, 4, 1, 8], "f32");
  const table = (data: number[], shape: [number, number] = [2, 2]) => ({
    blockTable: { data: Int32Array.from(data), shape },
    backend: "js" as const,
  });
  await assert.rejects(
    attention(q, pages, pages, table([0, 1, 2, 5])),
    /RangeError: options\.blockTable\.data\[3\] \(batch 1, block 1\) = 5 is not a page of k: expected 0 to 4 \(k\.shape\[0\]\)/,
  );
  await assert.rejects(
    attention(q, pages, pages, table([0, 1, 2], [2, 2])),
    /options\.blockTable\.data\.length is 3; shape \[2,2\] needs 4/,
  );
  await assert.rejects(
    attention(q, pages, pages, table([0, 1, 2, 3], [1, 4])),
    /options\.blockTable\.shape must be \[2 \(batch\), blocksPerSequence ≥ 1\], got \[1,4\]/,
  );
  await assert.rejects(
    attention(q, pages, pages, {
      blockTable: { data: [0, 1, 2, 3], shape: [2, 2] },
    } as unknown as AttentionOptions),
    /TypeError: options\.blockTable must be \{ data: Int32Array, shape: \[batch, blocksPerSequence\] \}/,
  );
  // Nk is blocksPerSequence · pageSize: kvLength is checked against it
  await assert.rejects(
    attention(q, pages, pages, { ...table([0, 1, 2, 3]), kvLength: [8, 9] }),
    /kvLength\[1\] = 9 must be an integer in \[0, 8\]/,
  );
  // every page is an input: a NaN in one the table does not list is still found, on every backend
  const bad = { ...pages, data: pages.data.slice() } as Tensor;
  (bad.data as Float32Array)[1 * 32 + 5] = NaN; // page 1
  for (const backend of ["js", "wasm"] as const) {
    await assert.rejects(
      attention(q, bad, pages, { ...table([4, 0, 2, 3]), backend }),
      /RangeError: k\.data\[37\] \(page 1, row 0, head 0, dim 5\) is not finite/,
      backend,
    );
  }
  const ok = await attention(q, pages, pages, table([4, 0, 2, 3]));
  assert.deepEqual(ok.out.shape, q.shape);
  const d = tensor(new Float32Array(32), [2, 1, 2, 8]);
  await assert.rejects(
    attentionBackward(
      { q, k: pages, v: pages, out: ok.out, lse: ok.lse, dOut: d },
      table([4, 0, 2, 3]),
    ),
    /TypeError: options\.blockTable: attention over a paged KV cache is forward only/,
  );
});
