/**
 * Strict option objects: an unknown key is a TypeError that names it, suggests the option it
 * probably meant (FlashAttention and PyTorch spellings included: `is_causal` → `causal`,
 * `softmax_scale` → `scale`), and lists the valid ones. A misspelled option is never ignored.
 *
 * @module
 */

import type { AttentionOptions } from "./types.ts";

/** Every option of `attention` and `attentionBackward`. */
export const ATTENTION_OPTIONS = [
  "mask",
  "causal",
  "scale",
  "backend",
  "checkFinite",
  "windowSize",
  "cuSeqlens",
  "kvLength",
  "softcap",
  "dropout",
  "sinks",
  "alibiSlopes",
  "blockTable",
  "blockMask",
  "outputs",
  "encoder",
  "threads",
] as const satisfies readonly (keyof AttentionOptions)[];

// every key of AttentionOptions is listed (a compile-time check)
const _all: Exclude<keyof AttentionOptions, typeof ATTENTION_OPTIONS[number]> extends never ? true
  : never = true;

/** Names from other libraries, and what they are called here. */
const ALIASES: Record<string, string> = {
  is_causal: "causal",
  iscausal: "causal",
  softmax_scale: "scale",
  sm_scale: "scale",
  window_size: "windowSize",
  cu_seqlens: "cuSeqlens",
  cu_seqlens_q: "cuSeqlens",
  cu_seqlens_k: "cuSeqlens",
  cache_seqlens: "kvLength",
  seqlens_k: "kvLength",
  softcapping: "softcap",
  logit_softcapping: "softcap",
  dropout_p: "dropout",
  attn_mask: "mask",
  block_mask: "blockMask",
  check_finite: "checkFinite",
  head_sink: "sinks",
  alibi_slopes: "alibiSlopes",
  block_table: "blockTable",
  page_table: "blockTable",
  alibi: "alibiSlopes",
  s_aux: "sinks",
  attention_sinks: "sinks",
  learnable_sink: "sinks",
  num_threads: "threads",
};

/** Edit distance between two short strings. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(
        Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)),
      );
    }
    prev = row;
  }
  return prev[b.length];
}

/** The valid key `key` most probably means, if any is close. */
export function nearest(key: string, valid: readonly string[]): string | undefined {
  const alias = ALIASES[key.toLowerCase()];
  if (alias && valid.includes(alias)) return alias;
  const norm = (s: string) => s.toLowerCase().replace(/[_-]/g, "");
  let best: string | undefined, bestD = Infinity;
  for (const v of valid) {
    const d = distance(norm(key), norm(v));
    if (d < bestD) [best, bestD] = [v, d];
  }
  return bestD <= Math.max(1, Math.floor(norm(key).length / 3)) ? best : undefined;
}

/**
 * Throws a TypeError for the first key of `options` not in `valid`, with the nearest valid key
 * and the list; `where` names the object (`options`).
 */
export function checkKeys(options: object, valid: readonly string[], where: string): void {
  for (const key of Object.keys(options)) {
    if (valid.includes(key)) continue;
    const near = nearest(key, valid);
    throw new TypeError(
      `${where}.${key} is not an option${near ? `; did you mean ${near}?` : ""} ` +
        `(valid: ${valid.join(", ")})`,
    );
  }
}

/** A value's type for error messages: `a string ("x")`, `a number (3)`, `an object`. */
export function describe(x: unknown): string {
  if (x === null) return "null";
  if (typeof x === "object") return `a ${(x as object).constructor?.name ?? "object"}`;
  return `${typeof x} (${JSON.stringify(x) ?? String(x)})`;
}
