import assert from "node:assert/strict";
import { f16Bits, f16Value } from "../tensor.ts";
import { fromF16, tensor, toF16, toFloat32 } from "../mod.ts";
import { rng } from "./_util.ts";

Deno.test("binary16 decoding matches the platform's Float16Array for all 65536 patterns", () => {
  const bits = new Uint16Array(65536).map((_, i) => i);
  const mine = fromF16(bits);
  const native = new Float16Array(bits.buffer);
  for (let i = 0; i < 65536; i++) {
    if (Number.isNaN(native[i])) assert.ok(Number.isNaN(mine[i]), `bits ${i}`);
    else assert.equal(mine[i], native[i], `bits ${i}`);
  }
});

Deno.test("binary16 encoding rounds to nearest even like Float16Array", () => {
  const rand = rng(7);
  const samples: number[] = [
    0,
    -0,
    1,
    65504,
    65519.99,
    65520,
    1e9,
    -1e9,
    2 ** -24,
    2 ** -25,
    2 ** -25 * 1.0001,
    2 ** -26,
    6.1e-5,
    Infinity,
    -Infinity,
  ];
  for (let i = 0; i < 20000; i++) {
    const e = Math.floor(rand() * 40) - 28;
    samples.push((rand() - 0.5) * 2 ** e);
  }
  // exact ties between neighbouring binary16 values
  for (let h = 0; h < 0x7bff; h += 97) samples.push((f16Value(h) + f16Value(h + 1)) / 2);
  const native = new Float16Array(samples.map((x) => Math.fround(x)));
  const want = new Uint16Array(native.buffer);
  const got = toF16(samples);
  for (let i = 0; i < samples.length; i++) {
    assert.equal(got[i], want[i], `value ${samples[i]}`);
  }
  assert.equal(f16Bits(NaN) & 0x7c00, 0x7c00);
  assert.notEqual(f16Bits(NaN) & 0x3ff, 0);
});

Deno.test("toFloat32 returns f32 data itself and converts f16", () => {
  const f = new Float32Array([1, 2]);
  assert.equal(toFloat32(tensor(f, [1, 1, 1, 2])).buffer, f.buffer);
  assert.deepEqual(Array.from(toFloat32(tensor(toF16([0.5, -3]), [1, 1, 1, 2], "f16"))), [0.5, -3]);
});

Deno.test("toF16 of a Float32Array (the runtime's Float16Array) has the bits of the hand-written rounding", () => {
  const n = 1 << 20;
  const f = new Float32Array(n), u = new Uint32Array(f.buffer);
  let s = 12345;
  for (let i = 0; i < n; i++) u[i] = s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  // every binary16 exponent and mantissa, exactly halfway and just below halfway to the next
  for (let i = 0; i < 65536; i++) u[i] = (i << 13) | 0x1000, u[65536 + i] = (i << 13) | 0xfff;
  const native = toF16(f);
  for (let i = 0; i < n; i++) {
    if (native[i] !== f16Bits(f[i])) assert.fail(`${f[i]}: ${native[i]} vs ${f16Bits(f[i])}`);
  }
});
