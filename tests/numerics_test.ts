/**
 * Numerics on every backend: large score magnitudes (|q·k| up to ~1e4 in f32) and f16 inputs
 * near the binary16 range (|x| up to 6e4, with products that stay finite in f32), checked
 * against the float64 reference; no output may be NaN or infinite. (Fully masked rows:
 * `checkMaskedRows`, which every backend's test file runs.)
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  type Tensor,
  tensor,
  toF16,
  toFloat32,
} from "../mod.ts";
import { exampleMask } from "../masks/mod.ts";
import { type Case, checkCase } from "./_cases.ts";
import { referenceForward, roundTo } from "../reference/attention.ts";
import { assertClose, backendTargets, randn, rng, values } from "./_util.ts";

const backends = await backendTargets();

/** f16 entries of magnitude in [lo, hi] with random signs. */
function wide(rand: () => number, shape: Tensor["shape"], lo: number, hi: number): Tensor {
  const n = shape[0] * shape[1] * shape[2] * shape[3];
  const x = Float32Array.from(
    { length: n },
    () => (rand() < 0.5 ? -1 : 1) * (lo + (hi - lo) * rand()),
  );
  return tensor(toF16(x), shape, "f16");
}

/** f16 normal entries with standard deviation `sigma`. */
function normal16(rand: () => number, shape: Tensor["shape"], sigma = 1): Tensor {
  return tensor(toF16(randn(rand, shape[0] * shape[1] * shape[2] * shape[3], sigma)), shape, "f16");
}

const one = { batch: 1, heads: 2, kvHeads: 1, dtype: "f32", uncapped: true } as const;
// q, k ~ N(0, 50²), d = 16: q·k has standard deviation 50²·4 = 1e4. At such scores a plain
// float32 computation of the gradients is itself off by up to 1e-2 (dS = P ∘ (dP − D) cancels),
// so these compare with 8× its error, without the 1e-5 cap (uncapped).
const cases: Case[] = [
  { ...one, name: "|q·k| ~ 1e4, causal", nq: 33, nk: 33, d: 16, sigma: 50, causal: true },
  {
    ...one,
    name: "|q·k| ~ 1e4 with scale 1 (scores ~ 1e4), GQA 4:2, document mask",
    heads: 4,
    kvHeads: 2,
    nq: 40,
    nk: 40,
    d: 16,
    sigma: 50,
    scale: 1,
    mask: exampleMask("document", 40).mask,
  },
  {
    ...one,
    name: "|q·k| ~ 2e3, Nq != Nk, sliding window (at 1e4 a plain f32 dq is off by 80 %)",
    nq: 29,
    nk: 50,
    d: 16,
    sigma: 20,
    windowSize: [6, 0],
    causal: true,
  },
  {
    ...one,
    uncapped: false,
    dtype: "f16",
    name: "f16: q of magnitude 3e4..6e4, small k",
    nq: 37,
    nk: 37,
    d: 16,
    mask: exampleMask("causalDocument", 37).mask,
    inputs: (rand) => [
      wide(rand, [1, 37, 2, 16], 3e4, 6e4),
      normal16(rand, [1, 37, 1, 16], 1e-3), // scores ~ 0.25 · 4.5e4 · 1e-3 · 4 ≈ 45
      normal16(rand, [1, 37, 1, 16]),
      // dP = dO·v ~ 0.4: dK = scale Σ dS q ~ 1e4 stays within f16, dQ ~ 1e-3 above its
      // subnormals
      normal16(rand, [1, 37, 2, 16], 0.1),
    ],
  },
  {
    ...one,
    uncapped: false,
    dtype: "f16",
    name: "f16: v of magnitude 3e4..6e4 (out near the f16 maximum)",
    nq: 29,
    nk: 41,
    d: 24,
    causal: true,
    inputs: (rand) => [
      normal16(rand, [1, 29, 2, 24]),
      normal16(rand, [1, 41, 1, 24]),
      wide(rand, [1, 41, 1, 24], 3e4, 6e4),
      normal16(rand, [1, 29, 2, 24], 1e-3), // dP = dO·v ~ 200: dQ, dK stay within f16
    ],
  },
];

for (const [name, options, ignore] of backends) {
  for (const c of cases) {
    Deno.test({ name: `${name}: ${c.name}`, ignore, fn: () => checkCase(c, options) });
  }
  Deno.test({
    name:
      `${name}: f16 q, k, v of magnitude 3e4..6e4 (scores ~ 1e10): exact forward, finite gradients`,
    ignore,
    fn: () => extremeF16(options),
  });
  Deno.test({
    name:
      `${name}: f32 q, k, v of magnitude 3e4..6e4 with dropout (the backward's option path): exact forward, finite gradients`,
    ignore,
    fn: () => extremeF16(options, { dropout: { p: 0.3, seed: 11 } }),
  });
}

/**
 * q, k, v near the f16 maximum: every product is finite in f32, scores are ~1e10 and the softmax
 * is exactly one-hot. The forward pass must match the reference (out is a row of v, lse the
 * largest score). The gradients must be finite; they cannot match the reference: recomputing
 * P = exp(s − lse) needs s − lse to within ~1, and a float32 lse of ~1e10 is only known to
 * within its ulp, 1024 (true of any FlashAttention backward that saves a float32 lse).
 */
async function extremeF16(options: AttentionOptions, extra: AttentionOptions = {}): Promise<void> {
  for (let seed = 1; seed <= 30; seed++) await extremeF16Once(options, seed, extra);
}

async function extremeF16Once(
  options: AttentionOptions,
  seed: number,
  extra: AttentionOptions,
): Promise<void> {
  const rand = rng(seed);
  const [nq, nk] = [23, 31];
  // With dropout the inputs are float32: out = v / (1 − p) rounded to f16 would make
  // D = dO·out differ from dP = dO·v by ~100, and dQ = scale·dS·k overflow f16 in any backend.
  const cast = (t: Tensor) => extra.dropout ? tensor(toFloat32(t), t.shape, "f32") : t;
  const q = cast(wide(rand, [1, nq, 2, 16], 3e4, 6e4));
  const k = cast(wide(rand, [1, nk, 1, 16], 3e4, 6e4));
  const v = cast(wide(rand, [1, nk, 1, 16], 3e4, 6e4));
  const dOut = cast(normal16(rand, [1, nq, 2, 16]));
  const dtype = q.dtype;
  const opt = { causal: true, ...extra };
  const { out, lse } = await attention(q, k, v, { ...opt, ...options });
  const ref = referenceForward(q, k, v, opt), f32 = referenceForward(q, k, v, opt, Math.fround);
  assertClose(`seed ${seed}: out`, out, ref.out, roundTo(f32.out, dtype), { dtype });
  assertClose(`seed ${seed}: lse`, lse, ref.lse, f32.lse, { dtype: "f32" });
  const g = await attentionBackward({ q, k, v, out, lse, dOut }, { ...opt, ...options });
  for (const [name, t] of [["dq", g.dq], ["dk", g.dk], ["dv", g.dv]] as const) {
    const x = values(t);
    for (let i = 0; i < x.length; i++) {
      assert.ok(Number.isFinite(x[i]), `seed ${seed}: ${name}[${i}] is ${x[i]}`);
    }
  }
}
