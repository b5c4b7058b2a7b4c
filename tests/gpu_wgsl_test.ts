/**
 * Kernel generation without a GPU: pipelines are cached by key, so the key must name every
 * compile-time constant (two configurations with one key but different code would share a
 * pipeline and compute the wrong thing).
 */

import assert from "node:assert/strict";
import { type ForwardConfig, forwardKey, forwardWgsl } from "../gpu/forward_wgsl.ts";
import {
  type BackwardConfig,
  backwardKey,
  dkvWgsl,
  dqWgsl,
  prepWgsl,
} from "../gpu/backward_wgsl.ts";

function* combos<T extends object>(
  choices: { [K in keyof T]: T[K][] },
): Generator<T> {
  const keys = Object.keys(choices) as (keyof T)[];
  const idx = keys.map(() => 0);
  for (;;) {
    yield Object.fromEntries(keys.map((k, i) => [k, choices[k][idx[i]]])) as T;
    let i = 0;
    while (i < keys.length && ++idx[i] === choices[keys[i]].length) idx[i++] = 0;
    if (i === keys.length) return;
  }
}

function checkKeys(entries: Iterable<[string, string]>) {
  const seen = new Map<string, string>();
  let n = 0;
  for (const [key, code] of entries) {
    n++;
    const old = seen.get(key);
    if (old !== undefined) assert.equal(code, old, `key ${key} names two different kernels`);
    seen.set(key, code);
  }
  assert.ok(n > 1);
}

Deno.test("forward kernel keys name every compile-time constant", () => {
  checkKeys(
    (function* () {
      for (
        const c of combos<ForwardConfig>({
          dtype: ["f32", "f16"],
          headDim: [0, 64],
          rm: [4, 8],
          cn: [4],
          dn: [4],
          kc: [8, 16],
          kv: [16, 32],
          subgroups: [false, true],
          softcap: [false, true],
          dropout: [false, true],
        })
      ) {
        let code: string;
        try {
          code = forwardWgsl(c);
        } catch (e) {
          if (e instanceof RangeError) continue; // a configuration the generator refuses
          throw e;
        }
        yield [forwardKey(c), code];
      }
    })(),
  );
});

Deno.test("backward kernel keys name every compile-time constant", () => {
  checkKeys(
    (function* () {
      for (
        const c of combos<BackwardConfig>({
          dtype: ["f32", "f16"],
          headDim: [0, 64],
          rm: [4],
          cn: [4, 8],
          rn: [4],
          cm: [4],
          dn: [4],
          kc: [8],
          kv: [16, 32],
          split: [false, true],
          softcap: [false, true],
          dropout: [false, true],
        })
      ) {
        yield [backwardKey("prep", c), prepWgsl(c)];
        yield [backwardKey("dq", c), dqWgsl(c)];
        yield [backwardKey("dkv", c), dkvWgsl(c)];
      }
    })(),
  );
});
