/**
 * Exports the twelve example masks as JSON for `bench/gpu/torch_compare.py`, so that PyTorch runs
 * exactly the masks this library runs without a second copy of their definitions: per length
 * N and mask, the builder arguments, the visible fraction, and the canonical per-column bounds
 * `[lts, lte, uts, ute]` (key column j hides query rows `lts <= i < lte` and `uts <= i < ute`;
 * the causal part is folded in). One generic predicate over the bounds is then every mask.
 *
 * A `verify` section holds, at a small length, each mask's dense allowed matrix computed from
 * the mask definitions in `reference/mask_predicates.ts` (written from the README table,
 * independently of the builders): the Python side checks its reading of the bounds against it
 * before timing anything.
 *
 * Run: `deno run -A bench/cli/export_masks.ts --seq 1024,4096 [--seed 1] [--out masks.json]`
 * (stdout when no --out).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  exampleMask,
  MASK_NAMES,
  maskBounds,
  type MaskName,
  visibleFraction,
} from "../../masks/mod.ts";
import { definition } from "../../reference/mask_predicates.ts";

/** Identifies the export format. */
export const MASKS_SCHEMA = "flashmask-masks/1";

/** One mask at one length. */
export interface ExportedMask {
  name: MaskName;
  /** Arguments of the builder of that name (see `exampleMask`). */
  args: unknown;
  /** Whether the FlashMask is stored in a causal layout. */
  causal: boolean;
  visibleFraction: number;
  /** Per key column: masked query rows are [lts, lte) ∪ [uts, ute). */
  lts: number[];
  lte: number[];
  uts: number[];
  ute: number[];
}

/** The whole export. */
export interface MaskExport {
  schema: typeof MASKS_SCHEMA;
  seed: number;
  /** Masks per sequence length (Nq = Nk), keyed by the length as a string. */
  lengths: Record<string, ExportedMask[]>;
  /** Dense allowed matrices at a small length: rows of "0"/"1" per query (1 = visible). */
  verify: { n: number; masks: { name: MaskName; exported: ExportedMask; rows: string[] }[] };
}

/** One mask of the export at length n. */
export function exportMask(name: MaskName, n: number, seed: number): ExportedMask {
  const { mask, args } = exampleMask(name, n, seed);
  const b = maskBounds(mask, n);
  const col = (k: number) => Array.from({ length: n }, (_, j) => b[j * 4 + k]);
  return {
    name,
    args,
    causal: mask.causal,
    visibleFraction: visibleFraction(mask, n),
    lts: col(0),
    lte: col(1),
    uts: col(2),
    ute: col(3),
  };
}

/**
 * The export for the given lengths, with the verification matrices at `verifyN`.
 *
 * @example
 * ```ts
 * import { exportMasks } from "./export_masks.ts";
 * import assert from "node:assert/strict";
 *
 * const e = exportMasks([16], 1, 8);
 * assert.equal(e.lengths["16"].length, 12);
 * assert.equal(e.verify.masks[1].rows[0], "10000000"); // causal: query 0 sees key 0
 * ```
 */
export function exportMasks(seqs: number[], seed: number, verifyN = 64): MaskExport {
  const lengths: Record<string, ExportedMask[]> = {};
  for (const n of seqs) lengths[String(n)] = MASK_NAMES.map((m) => exportMask(m, n, seed));
  const masks = MASK_NAMES.map((name) => {
    const exported = exportMask(name, verifyN, seed);
    const allowed = definition(name, exported.args as unknown[]);
    const rows = Array.from(
      { length: verifyN },
      (_, i) => Array.from({ length: verifyN }, (_, j) => (allowed(i, j) ? "1" : "0")).join(""),
    );
    return { name, exported, rows };
  });
  return { schema: MASKS_SCHEMA, seed, lengths, verify: { n: verifyN, masks } };
}

if (import.meta.main) {
  let v;
  try {
    v = parseArgs({
      args: Deno.args,
      options: { seq: { type: "string" }, seed: { type: "string" }, out: { type: "string" } },
      strict: true,
    }).values;
  } catch (e) {
    console.error(`error: ${(e as Error).message.split("\n")[0]}`);
    Deno.exit(2);
  }
  const seqs = (v.seq ?? "1024").split(",").map(Number);
  const seed = Number(v.seed ?? 1);
  if (!seqs.every((n) => Number.isSafeInteger(n) && n > 0) || !Number.isSafeInteger(seed)) {
    console.error("error: --seq must be positive integers (comma list), --seed an integer");
    Deno.exit(2);
  }
  const text = JSON.stringify(exportMasks(seqs, seed)) + "\n";
  if (v.out) await Deno.writeTextFile(v.out, text);
  else await Deno.stdout.write(new TextEncoder().encode(text));
}
