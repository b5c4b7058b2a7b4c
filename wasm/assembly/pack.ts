// The pack phase: host tensors in the user layout [B, N, H, d] copied into head-major packed rows
// [B, H, N, dp] (zero padded), or into the transposed K panels of the forward pass.

import { P_B, P_BC, P_D, P_DP, P_IN_F16, P_NPACK, P_PACK, P_PACK_T } from "./abi";
import { nextItem, pi, pu } from "./work";
import { h2f } from "./math";

/** Work item t·B·H + b·H + h (over the tensors of the descriptor table) packs one head. */
export function pack(p: usize, tid: i32, counter: usize, items: usize, nItems: i32): void {
  const B = pi(p, P_B), d = pi(p, P_D), dp = pi(p, P_DP), f16 = pi(p, P_IN_F16) != 0;
  const n = pi(p, P_NPACK);
  for (let it = nextItem(counter, items, nItems); it >= 0; it = nextItem(counter, items, nItems)) {
    let t = 0, rest = it;
    for (; t < n; t++) {
      const cnt = B * pi(p, P_PACK + 4 * t + 3);
      if (rest < cnt) break;
      rest -= cnt;
    }
    const src = pu(p, P_PACK + 4 * t), dst = pu(p, P_PACK + 4 * t + 1);
    const seq = pi(p, P_PACK + 4 * t + 2), heads = pi(p, P_PACK + 4 * t + 3);
    const b = rest / heads, h = rest % heads;
    const rowStride = <usize>heads * d;
    let s = <usize>(b * seq * heads + h) * d; // element index of (b, 0, h, 0)
    if (t == pi(p, P_PACK_T)) {
      // transposed panels [B, heads, colBlocks, dp, Bc]: panel c holds keys [c·Bc, c·Bc + Bc)
      const Bc = pi(p, P_BC), blocks = (seq + Bc - 1) / Bc, lp = <usize>Bc << 2;
      const panel = <usize>dp * lp;
      const o = dst + <usize>(b * heads + h) * blocks * panel;
      // zero what no key fills: rows d..dp of every panel, and the last panel (keys past seq)
      if (d < dp) {
        for (let c = 0; c < blocks; c++) memory.fill(o + <usize>c * panel + <usize>d * lp, 0, <usize>(dp - d) * lp);
      }
      if (seq % Bc) memory.fill(o + <usize>(blocks - 1) * panel, 0, panel);
      let j = 0;
      if (!f16 && d == dp) {
        // 4 keys × 4 dims at a time, transposed in registers (Bc is a multiple of 4)
        for (; j + 4 <= seq; j += 4) {
          const col = o + <usize>(j / Bc) * panel + (<usize>(j % Bc) << 2);
          const r0 = src + (s << 2), r1 = r0 + (rowStride << 2);
          const r2 = r1 + (rowStride << 2), r3 = r2 + (rowStride << 2);
          for (let x = 0; x < d; x += 4) {
            const xo = <usize>x << 2;
            const a = v128.load(r0 + xo), b = v128.load(r1 + xo);
            const c = v128.load(r2 + xo), e = v128.load(r3 + xo);
            const ab0 = i32x4.shuffle(a, b, 0, 4, 1, 5), ab1 = i32x4.shuffle(a, b, 2, 6, 3, 7);
            const ce0 = i32x4.shuffle(c, e, 0, 4, 1, 5), ce1 = i32x4.shuffle(c, e, 2, 6, 3, 7);
            const w = col + <usize>x * lp;
            v128.store(w, i64x2.shuffle(ab0, ce0, 0, 2));
            v128.store(w + lp, i64x2.shuffle(ab0, ce0, 1, 3));
            v128.store(w + 2 * lp, i64x2.shuffle(ab1, ce1, 0, 2));
            v128.store(w + 3 * lp, i64x2.shuffle(ab1, ce1, 1, 3));
          }
          s += rowStride << 2;
        }
      }
      for (; j < seq; j++) {
        const col = o + <usize>(j / Bc) * panel + (<usize>(j % Bc) << 2);
        for (let x = 0; x < d; x++) {
          const v = f16 ? h2f(load<u16>(src + ((s + x) << 1))) : load<f32>(src + ((s + x) << 2));
          store<f32>(col + <usize>x * lp, v);
        }
        s += rowStride;
      }
      continue;
    }
    let o = dst + (<usize>(b * heads + h) * seq * dp << 2);
    for (let r = 0; r < seq; r++) {
      if (f16) {
        for (let x = 0; x < d; x++) store<f32>(o + (<usize>x << 2), h2f(load<u16>(src + ((s + x) << 1))));
      } else {
        let x = 0;
        for (; x + 4 <= d; x += 4) v128.store(o + (<usize>x << 2), v128.load(src + ((s + x) << 2)));
        for (; x < d; x++) store<f32>(o + (<usize>x << 2), load<f32>(src + ((s + x) << 2)));
      }
      for (let x = d; x < dp; x++) store<f32>(o + (<usize>x << 2), 0);
      s += rowStride;
      o += <usize>dp << 2;
    }
  }
}
