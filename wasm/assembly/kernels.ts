// FlashAttention-2 forward and backward kernels, and split-KV decoding, for the WASM backend
// (AssemblyScript, v128 f32x4).
//
// What it computes: exactly what tiled.ts specifies. Forward: out = softmax(q kᵀ·scale + mask) v
// and lse (natural log) per (batch, query head, row). Backward: D = rowsum(dO∘O), P recomputed
// from lse, dS = P∘(dP − D), dQ = dS·K·scale, dK = dSᵀ·Q·scale, dV = Pᵀ·dO. Options: softcap
// (score ← c·tanh(score / c) before the softmax; dS multiplied by 1 − tanh²) and dropout (P∘Z in
// O and dV, Z = 1/(1 − p) or 0 from Philox4x32-10 at (b, h, i, j) as masks/dropout.ts; l and lse
// are those of the undropped P; dS = P∘(dP∘Z − D)). Block masks need no kernel work: the host
// picks tiles that divide the blocks and the schedule skips the zero blocks' tiles.
//
// Shapes: host tensors are [B, N, H, d] row-major ("user layout"); the pack kernel copies them into
// head-major "packed" rows [B, H, N, dp] (dp = d rounded up to a multiple of 4, zero padded) so a
// tile's rows are contiguous; the forward pass packs K as transposed panels [B, Hk, N/Bc, dp, Bc]
// instead, so that its score GEMM is TN like the P·V one (one base pointer, the 6 broadcasts of
// a step adjacent). lse is [B, Hq, Nq]. Outputs are written in the user layout, f32 or binary16
// bits. The forward reads q in place; decoding reads q, and k and v (f32 with d % 4 = 0) in place
// in the user layout (no pack phase).
//
// Tiling: Br query rows × Bc key columns per tile (Br a multiple of 8, Bc of 4; both in the
// parameter block), driven by the shared block schedule: the forward item (b, h, row block) walks
// rowTiles of its mask slice, the backward item (b, key head, chunk) walks, for each column block
// c ≡ chunk (mod nChunks), the colTiles of every query head of the group. Scores are kept
// transposed, Sᵀ[j][r] (Bc × Br): lanes hold four query rows, so row max/sum of the online
// softmax are plain vector ops, and one Philox call (4 words for 4 aligned keys of one row, over
// 4 lanes = rows) covers a 4 × 4 block. GEMMs use 6×2 register blocking (6 elements of A, 2
// vectors of B: 12 f32x4 accumulators), 4-row blocks for the remainder of M; in the TN kernels the
// 6 adjacent A elements of a step come from one 4-lane and one 2-lane load, splat by shuffles
// (4 loads a step instead of 8: loads are what the bounds checks make expensive, see below). The
// forward score GEMM of a full tile also folds the row maxima, so the softmax makes one pass over
// the tile. Decode item (batch entry, range of column blocks): for each column block, every row
// group of the entry (the rows (h, i) of the query heads of one key head that share a mask
// slice), so K and V stream in memory order; the score GEMM there is a dot-product form along d
// (few rows); `decodeCombine` merges the ranges.
//
// Code generation notes (V8 in Deno, x64; see docs/BENCHMARKS.md): every wasm load and store is
// bounds-checked explicitly (no guard-page trap handler), so micro-kernels are judged by loads per
// multiply-add; f32x4.max/min lower to 8 instructions, pmax/pmin to 1 (inputs are finite or −∞
// here, where they agree); v128 constants used in loops are read from a static table (as
// literals Binaryen folds them back into the loop and V8 re-materialises each use).
//
// Invariants: skipped tiles are never touched (they are not in the lists); full tiles do no mask
// work; partial tiles test each element against its column's canonical bounds
// [lts, lte) ∪ [uts, ute) and nothing else (no mask semantics are derived here). Scores are in
// log2 units (the score GEMMs multiply by scale·log2 e before they store) so exp is exp2. A row that sees nothing keeps
// m = −∞, l = 0 and gets out 0, lse −∞; in the backward pass its lse2 is +∞, so P = 0 exactly.
// Every output element is produced by exactly one work item, in a fixed order, so results do not
// depend on the thread count: dQ is accumulated per chunk into its own partial buffer (the chunk
// count depends on the problem only) and the partials are summed in chunk order by `bwdReduce`;
// decode splits (their number depends on the problem only) are merged in split order.
// Nothing is allocated here: every buffer is laid out by wasm/backend.ts in the shared memory,
// addressed through the parameter block `p`, whose slots wasm/abi.ts declares (./abi is generated
// from it).
//
// Modules: work (parameter reads, work queue), math, gemm (micro-kernels), tile (score tile ops),
// pack, forward, backward, decode, bench. This entry module re-exports what the host calls.


export { firstNonFinite, philoxAt, tanhAt } from "./math";
export { pack } from "./pack";
export { forward } from "./forward";
export { backward, bwdPrep, bwdReduce } from "./backward";
export { decode, decodeCombine, decodePrep, halvesAt } from "./decode";
export { gemmBench, gemmBenchNN } from "./bench";
