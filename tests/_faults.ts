/**
 * Helpers of the fault and concurrency tests: timeouts that turn a hang into a failure, error
 * assertions, and a batch of small independent problems with their float64 references.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  type FlashMask,
  type Tensor,
} from "../mod.ts";
import { randomMask } from "./_cases.ts";
import { referenceBackward, referenceForward, roundTo } from "../reference/attention.ts";
import { assertClose, randomTensor, rng } from "./_util.ts";

/** How a promise settled, or "hung" if it did not within `ms`. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: Error };

/** Waits for `p` at most `ms` milliseconds; a longer wait fails the test as a hang. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<Settled<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} hung for ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([
      p.then(
        (value): Settled<T> => ({ ok: true, value }),
        (error): Settled<T> => ({ ok: false, error }),
      ),
      hang,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts that `p` rejects (without hanging) with exactly class `type` and a matching message. */
export async function rejectsWith(
  p: Promise<unknown>,
  type: ErrorConstructor,
  re: RegExp,
  ms = 60_000,
): Promise<Error> {
  const r = await within(p, ms, "the call");
  assert.ok(!r.ok, `expected a ${type.name} matching ${re}, but the call succeeded`);
  const e = r.error;
  assert.equal(
    e.constructor,
    type,
    `expected ${type.name}, got ${e.constructor.name}: ${e.message}`,
  );
  assert.match(e.message, re);
  return e;
}

/** One small problem of a batch: inputs, options and the float64 references. */
export interface SmallProblem {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  dOut: Tensor;
  mask: FlashMask;
}

/** `count` small independent problems (sizes, masks and data all differ), seeded. */
export function smallProblems(count: number, seed: number): SmallProblem[] {
  const rand = rng(seed);
  return Array.from({ length: count }, () => {
    const nq = 1 + Math.floor(rand() * 40), nk = 1 + Math.floor(rand() * 40);
    const [h, hk, d] = [2, 1, 16];
    return {
      q: randomTensor(rand, [1, nq, h, d]),
      k: randomTensor(rand, [1, nk, hk, d]),
      v: randomTensor(rand, [1, nk, hk, d]),
      dOut: randomTensor(rand, [1, nq, h, d]),
      mask: randomMask(rand, nq, nk, [1, 1 + Math.floor(rand() * 2)]),
    };
  });
}

/** Forward and backward of one problem; every result as raw bits. */
export async function runBits(s: SmallProblem, options: AttentionOptions): Promise<Uint32Array[]> {
  const o = { ...options, mask: s.mask };
  const { out, lse } = await attention(s.q, s.k, s.v, o);
  const g = await attentionBackward({ q: s.q, k: s.k, v: s.v, out, lse, dOut: s.dOut }, o);
  const bits = (x: Float32Array | Uint16Array) =>
    new Uint32Array(Float32Array.from(x as Float32Array).buffer);
  return [bits(out.data), bits(lse), bits(g.dq.data), bits(g.dk.data), bits(g.dv.data)];
}

/** Checks results given as bits against the float64 reference (the checkCase tolerances). */
export function checkBits(s: SmallProblem, got: Uint32Array[], what: string): void {
  const f = (b: Uint32Array) => new Float32Array(b.buffer);
  const opt = { mask: s.mask };
  const ref = referenceForward(s.q, s.k, s.v, opt);
  const f32 = referenceForward(s.q, s.k, s.v, opt, Math.fround);
  assertClose(`${what}: out`, f(got[0]), ref.out, roundTo(f32.out, "f32"));
  assertClose(`${what}: lse`, f(got[1]), ref.lse, f32.lse);
  const rg = referenceBackward(s.q, s.k, s.v, s.dOut, opt);
  const fg = referenceBackward(s.q, s.k, s.v, s.dOut, opt, Math.fround);
  assertClose(`${what}: dq`, f(got[2]), rg.dq, roundTo(fg.dq, "f32"));
  assertClose(`${what}: dk`, f(got[3]), rg.dk, roundTo(fg.dk, "f32"));
  assertClose(`${what}: dv`, f(got[4]), rg.dv, roundTo(fg.dv, "f32"));
}

/**
 * 100 calls (forward then backward each) in flight at once from independent async tasks: each
 * result must be bit-identical to the same call run alone, and close to the reference.
 */
export async function concurrentCalls(
  options: (i: number) => AttentionOptions,
  count = 100,
): Promise<void> {
  const problems = smallProblems(count, 77);
  const copies = problems.map((s) => [s.q, s.k, s.v, s.dOut].map((t) => t.data.slice()));
  const together = await within(
    Promise.all(problems.map((s, i) => runBits(s, options(i)))),
    120_000,
    `${count} concurrent calls`,
  );
  if (!together.ok) throw together.error;
  for (let i = 0; i < count; i++) {
    const s = problems[i];
    const alone = await runBits(s, options(i));
    ["out", "lse", "dq", "dk", "dv"].forEach((name, x) =>
      assert.deepEqual(
        together.value[i][x],
        alone[x],
        `task ${i}: ${name} differs from a lone call`,
      )
    );
    checkBits(s, together.value[i], `task ${i}`);
    [s.q, s.k, s.v, s.dOut].forEach((t, x) =>
      assert.deepEqual(t.data, copies[i][x], `task ${i}: inputs unchanged`)
    );
  }
}
