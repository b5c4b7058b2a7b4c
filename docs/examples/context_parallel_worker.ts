/**
 * One rank of docs/examples/context_parallel.ts: holds a shard of the keys and values and
 * computes attention of all queries against it (forward), or the gradients of its shard from
 * the merged output and lse (backward).
 *
 * @module
 */

import {
  attention,
  attentionBackward,
  type BackendName,
  type FlashMask,
  type Tensor,
} from "../../mod.ts";

interface Job {
  pass: "fwd" | "bwd";
  q: Tensor;
  k: Tensor;
  v: Tensor;
  mask: FlashMask;
  backend: BackendName;
  out?: Tensor;
  lse?: Float32Array;
  dOut?: Tensor;
}

self.onmessage = async (e: MessageEvent<Job>) => {
  const { pass, q, k, v, mask, backend } = e.data;
  const options = { mask, backend, threads: 1 };
  try {
    if (pass === "fwd") {
      self.postMessage(await attention(q, k, v, options));
    } else {
      const saved = { q, k, v, out: e.data.out!, lse: e.data.lse!, dOut: e.data.dOut! };
      self.postMessage(await attentionBackward(saved, options));
    }
  } catch (err) {
    self.postMessage({ error: String(err) });
  }
};
