/**
 * The GEMM micro-kernels of the WASM backend, generated from one template: a register block of
 * `rows` elements of A by `vecs` f32x4 vectors of B accumulates `C += A·B` over K steps, every
 * step a broadcast of each A element times each B vector (`madd`: fused where relaxed SIMD is
 * built in). `deno task build:wasm` writes them to `wasm/assembly/microkernels.ts`, which the
 * drivers in `wasm/assembly/gemm.ts` call; `tests/tools/wasm_build_test.ts` checks that file is fresh.
 *
 * Every kernel has the signature `(a, la, b, lb, c, lc, K, acc, al, mx)`, and the drivers pass
 * constants for the flags, so the inlined copies keep only their own branches:
 * - `a`, `la`: A; NN: row r of A at `a + r·la`, step k at byte 4k; TN (A transposed, k-major): the
 *   `rows` elements of step k adjacent at `a + k·la`.
 * - `b`, `lb`: B, step k's vectors at `b + k·lb`; `c`, `lc`: C rows, `lc` bytes apart.
 * - `acc`: C is loaded (else it starts at zero); `al` not 0 (with `acc`): row r of C is first
 *   scaled by the f32 at `al + 4r` (the online softmax's rescale); without `acc`, the products are
 *   multiplied by the f32 at `al` before they are stored (the score GEMM's scale·log2 e, applied to
 *   the f32 scores as FlashAttention-2 applies it); `mx` not 0: the block's column
 *   maxima are merged into the `vecs` vectors at `mx` after the stores (the score GEMM's fused row
 *   maxima of Sᵀ).
 *
 * Per instance, two measured choices (V8 bounds-checks every load, so loads per multiply-add
 * decide): `unroll` 2 runs two k steps per loop trip (+10 % for the 6×2 blocks), and `bcast`
 * "shuffle" (TN only) loads a step's A elements as one 4-lane and one 2-lane vector and splats
 * them by shuffles, where "splat" loads each element.
 *
 * @module
 */

/** One instance of the template. */
export interface MicroKernel {
  /** Function name. */
  name: string;
  /** NN: A row-major; TN: A transposed (k-major). */
  form: "nn" | "tn";
  /** Elements of A per step (rows of C). */
  rows: 1 | 4 | 6;
  /** f32x4 vectors of B per step (C columns / 4). */
  vecs: 1 | 2;
  /** k steps per loop trip (default 1). */
  unroll?: 1 | 2;
  /** How TN broadcasts A's elements (NN always loads and splats each). */
  bcast?: "splat" | "shuffle";
}

/** The kernels the drivers use. */
export const MICRO_KERNELS: readonly MicroKernel[] = [
  { name: "nn6x2", form: "nn", rows: 6, vecs: 2, unroll: 2 },
  { name: "nn6x1", form: "nn", rows: 6, vecs: 1 },
  { name: "nn4x2", form: "nn", rows: 4, vecs: 2 },
  { name: "nn4x1", form: "nn", rows: 4, vecs: 1 },
  { name: "nn1x1", form: "nn", rows: 1, vecs: 1 },
  { name: "tn6x2", form: "tn", rows: 6, vecs: 2, unroll: 2, bcast: "shuffle" },
  { name: "tn6x1", form: "tn", rows: 6, vecs: 1, bcast: "splat" },
  { name: "tn4x2", form: "tn", rows: 4, vecs: 2, bcast: "shuffle" },
  { name: "tn4x1", form: "tn", rows: 4, vecs: 1, bcast: "shuffle" },
  { name: "tn1x1", form: "tn", rows: 1, vecs: 1, bcast: "splat" },
  // the score GEMM's 4-row blocks (C from zero, with maxima)
  { name: "st4x2", form: "tn", rows: 4, vecs: 2, bcast: "splat" },
];

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** AssemblyScript of one micro-kernel. */
export function microKernel(k: MicroKernel): string {
  const R = range(k.rows), V = range(k.vecs);
  const acc = (r: number, v: number) => `c${r}${v}`;
  const row = (r: number) => (r === 0 ? "c" : r === 1 ? "c + lc" : `c + ${r} * lc`);
  const at = (v: number) => (v === 0 ? "" : `, ${16 * v}`);
  const all = R.flatMap((r) => V.map((v) => acc(r, v)));
  const L: string[] = [];
  L.push(
    `@inline export function ${k.name}(a: usize, la: usize, b: usize, lb: usize, c: usize, ` +
      `lc: usize, K: i32, acc: bool, al: usize, mx: usize): void {`,
  );
  L.push(
    `  let ${all[0]} = f32x4.splat(0)${all.slice(1).map((x) => `, ${x} = ${all[0]}`).join("")};`,
  );
  L.push(`  if (acc) {`);
  for (const r of R) {
    L.push(`    ${V.map((v) => `${acc(r, v)} = v128.load(${row(r)}${at(v)});`).join(" ")}`);
  }
  L.push(`  }`);
  L.push(`  if (acc && al) {`);
  for (const r of R) {
    L.push(
      `    ${r === 0 ? "let " : ""}s = v128.load32_splat(al${r ? `, ${4 * r}` : ""}); ` +
        V.map((v) => `${acc(r, v)} = f32x4.mul(${acc(r, v)}, s);`).join(" "),
    );
  }
  L.push(`  }`);
  L.push(`  let ${V.map((v) => `b${v}: v128`).join(", ")}, x: v128, av: v128;`);
  const step: string[] = [];
  step.push(V.map((v) => `b${v} = v128.load(b${at(v)});`).join(" "));
  for (const r of R) {
    let splat: string;
    if (k.form === "nn") splat = `v128.load32_splat(a${r ? r : ""} + off)`;
    else if (k.bcast === "shuffle") {
      if (r === 0) step.push("av = v128.load(a);");
      if (r === 4) step.push("av = v128.load64_splat(a, 16);");
      const l = r % 4;
      splat = `i32x4.shuffle(av, av, ${l}, ${l}, ${l}, ${l})`;
    } else splat = `v128.load32_splat(a${r ? `, ${4 * r}` : ""})`;
    step.push(`x = ${splat};`);
    step.push(V.map((v) => `${acc(r, v)} = madd(x, b${v}, ${acc(r, v)});`).join(" "));
  }
  step.push(k.form === "nn" ? "off += 4;" : "a += la;");
  step.push("b += lb;");
  const body = (indent: string) => step.map((s) => indent + s);
  if (k.form === "nn") {
    if (k.rows > 1) {
      L.push(`  const ${R.slice(1).map((r) => `a${r} = a${r > 1 ? r - 1 : ""} + la`).join(", ")};`);
    }
    L.push(`  let off: usize = 0;`);
    L.push(`  const end = <usize>K << 2;`);
    if (k.unroll === 2) {
      L.push(`  while (off + 8 <= end) {`, ...body("    "), ...body("    "), `  }`);
      L.push(`  if (off < end) {`, ...body("    "), `  }`);
    } else L.push(`  while (off < end) {`, ...body("    "), `  }`);
  } else {
    L.push(`  let k = 0;`);
    if (k.unroll === 2) {
      L.push(`  for (; k + 2 <= K; k += 2) {`, ...body("    "), ...body("    "), `  }`);
      L.push(`  if (k < K) {`, ...body("    "), `  }`);
    } else L.push(`  for (; k < K; k++) {`, ...body("    "), `  }`);
  }
  L.push(`  if (!acc && al) {`, `    const s = v128.load32_splat(al);`);
  for (const r of R) {
    L.push(`    ${V.map((v) => `${acc(r, v)} = f32x4.mul(${acc(r, v)}, s);`).join(" ")}`);
  }
  L.push(`  }`);
  for (const r of R) {
    L.push(`  ${V.map((v) => `v128.store(${row(r)}, ${acc(r, v)}${at(v)});`).join(" ")}`);
  }
  if (k.rows > 1) {
    // column maxima: a balanced tree of pmax over the rows (pmax: one instruction; inputs are
    // finite or −∞ here, where it agrees with max)
    const tree = (xs: string[]): string => {
      if (xs.length === 1) return xs[0];
      const pairs: string[] = [];
      for (let i = 0; i < xs.length; i += 2) {
        pairs.push(i + 1 < xs.length ? `f32x4.pmax(${xs[i]}, ${xs[i + 1]})` : xs[i]);
      }
      return tree(pairs);
    };
    L.push(`  if (mx) {`);
    for (const v of V) L.push(`    const m${v} = ${tree(R.map((r) => acc(r, v)))};`);
    for (const v of V) {
      L.push(`    v128.store(mx, f32x4.pmax(v128.load(mx${at(v)}), m${v})${at(v)});`);
    }
    L.push(`  }`);
  }
  L.push(`}`);
  return L.join("\n");
}

/** The AssemblyScript module of every micro-kernel (`wasm/assembly/microkernels.ts`). */
export function microKernelsSource(): string {
  return `// Generated from wasm/microkernels.ts by wasm/build.ts: the GEMM micro-kernels (see there).

import { madd } from "./math";

${MICRO_KERNELS.map(microKernel).join("\n\n")}
`;
}
