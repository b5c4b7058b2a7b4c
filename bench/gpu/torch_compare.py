#!/usr/bin/env python3
"""PyTorch side of bench/gpu/gpu_compare.sh: the twelve FlashMask example masks through
FlexAttention and scaled_dot_product_attention (flash / efficient / math) on a CUDA GPU.

The masks are not defined here: bench/cli/export_masks.ts writes, per length N and mask, the
canonical per-column bounds [lts, lte, uts, ute] of this library (key column j hides query rows
lts <= i < lte and uts <= i < ute). One predicate over those bounds is every mask, for
FlexAttention's mask_mod and for SDPA's dense boolean mask alike. Before timing, the predicate
is checked against dense matrices that export_masks.ts derives from the mask definitions.

Throughput is useful TFLOP/s: 4*B*H*N*N*d*visible_fraction / time, as in the Deno CLI.
'device' times are CUDA-event times of the call on GPU-resident tensors; 'end-to-end' times
(FlexAttention only) also copy q, k, v from host memory and the output back, as the Deno CLI
does for the WebGPU backend.

Standalone:
    deno run -A bench/cli/export_masks.ts --seq 1024,4096 --out masks.json
    python3 bench/gpu/torch_compare.py --masks masks.json --json torch.json
    python3 bench/gpu/torch_compare.py --masks masks.json --selftest-only   # no torch needed
"""

import argparse
import json
import statistics
import sys
import time


def bounds_allowed(m, i, j):
    """Whether query i sees key j under exported mask m (plain Python, for the self-test)."""
    return not ((m["lts"][j] <= i < m["lte"][j]) or (m["uts"][j] <= i < m["ute"][j]))


def selftest(export):
    """Checks the bounds predicate against the dense matrices of the verify section."""
    verify = export["verify"]
    n = verify["n"]
    for entry in verify["masks"]:
        m = entry["exported"]
        for i, row in enumerate(entry["rows"]):
            for j in range(n):
                want = row[j] == "1"
                if bounds_allowed(m, i, j) != want:
                    raise SystemExit(
                        f"self-test failed: mask {entry['name']} at (query {i}, key {j}): "
                        f"bounds say {not want}, definition says {want}"
                    )
        visible = sum(row.count("1") for row in entry["rows"]) / (n * n)
        if abs(visible - m["visibleFraction"]) > 1e-12:
            raise SystemExit(f"self-test failed: visible fraction of {entry['name']}")
    return len(verify["masks"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--masks", required=True, help="JSON written by bench/cli/export_masks.ts")
    ap.add_argument("--dtypes", default="f32,bf16", help="comma list of f32, bf16, f16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--impls", default="flex,flash,efficient,math")
    ap.add_argument("--math-max-n", type=int, default=4096, help="skip SDPA math above this N")
    ap.add_argument("--budget-s", type=float, default=360.0, help="stop starting new work after")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--selftest-only", action="store_true")
    args = ap.parse_args()

    with open(args.masks) as f:
        export = json.load(f)
    if export.get("schema") != "flashmask-masks/1":
        raise SystemExit(f"{args.masks}: not a flashmask-masks/1 export")
    print(f"self-test: {selftest(export)} masks match their definitions", file=sys.stderr)
    if args.selftest_only:
        return

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if not torch.cuda.is_available():
        raise SystemExit("CUDA is not available")
    dev = torch.device("cuda")
    dtypes = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
    impls = args.impls.split(",")
    # One compile per (length, dtype); raise the recompile limit (renamed across versions).
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
    flex = torch.compile(flex_attention, dynamic=False)
    started = time.monotonic()
    rows, checks, skipped = [], [], []

    def over_budget(what):
        if time.monotonic() - started > args.budget_s:
            skipped.append(what)
            return True
        return False

    def timed(fn, one_ms):
        """`args.warmup` untimed calls of fn, then `args.reps` times in ms, each from one_ms(fn)."""
        for _ in range(args.warmup):
            fn()
        torch.cuda.synchronize()
        return [one_ms(fn) for _ in range(args.reps)]

    def cuda_event_ms(fn):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        return s.elapsed_time(e)

    def wall_ms(fn):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t) * 1e3

    def time_cuda(fn):
        return timed(fn, cuda_event_ms)

    def time_wall(fn):
        return timed(fn, wall_ms)

    def write_json():
        """Writes what is measured so far (after every length, so a killed run keeps it)."""
        info = {
            "schema": "flashmask-torch/1",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "argv": sys.argv[1:],
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0),
            "allowTf32Matmul": torch.backends.cuda.matmul.allow_tf32,
            "rows": rows,
            "checks": checks,
            "skipped": skipped,
            "elapsedSeconds": time.monotonic() - started,
        }
        if args.json:
            with open(args.json, "w") as f:
                json.dump(info, f, indent=1)
        return info

    B, H, D = args.batch, args.heads, args.dim
    lengths = sorted(int(n) for n in export["lengths"])
    for n in lengths:
        masks = export["lengths"][str(n)]
        # One bounds tensor per length, overwritten per mask: mask_mod and the compiled
        # kernels see the same tensor object, so changing masks does not recompile.
        bounds = torch.zeros((4, n), dtype=torch.int32, device=dev)

        def mask_mod(b, h, q_idx, kv_idx):
            lo = (bounds[0][kv_idx] <= q_idx) & (q_idx < bounds[1][kv_idx])
            up = (bounds[2][kv_idx] <= q_idx) & (q_idx < bounds[3][kv_idx])
            return ~(lo | up)

        qi = torch.arange(n, device=dev).unsqueeze(1)
        for dname in args.dtypes.split(","):
            dt = dtypes[dname]
            gen = torch.Generator(device="cpu").manual_seed(1)
            host = [torch.randn((B, H, n, D), generator=gen, dtype=torch.float32).to(dt)
                    for _ in range(3)]
            q, k, v = (x.to(dev) for x in host)
            pinned = [x.pin_memory() for x in host]
            for m in masks:
                what = f"N={n} {dname} {m['name']}"
                if over_budget(what):
                    continue
                bounds.copy_(torch.tensor([m["lts"], m["lte"], m["uts"], m["ute"]],
                                          dtype=torch.int32))
                flops = 4 * B * H * n * n * D * m["visibleFraction"]
                dense = ~(((bounds[0] <= qi) & (qi < bounds[1])) |
                          ((bounds[2] <= qi) & (qi < bounds[3])))  # [N, N], True = visible
                is_full = m["name"] == "full"
                is_causal = m["name"] == "causal"

                def record(impl, mode, times=None, error=None):
                    row = {"impl": impl, "mode": mode, "mask": m["name"], "n": n,
                           "dtype": dname, "batch": B, "heads": H, "dim": D,
                           "visibleFraction": m["visibleFraction"]}
                    if error is not None:
                        row["error"] = error
                    else:
                        med = statistics.median(times)
                        row.update(ms=med, minMs=min(times), maxMs=max(times), timesMs=times,
                                   tflops=flops / (med * 1e-3) / 1e12)
                    rows.append(row)
                    label = row.get("error") or f"{row['ms']:.3f} ms {row['tflops']:.2f} TFLOP/s"
                    print(f"{what:40} {impl:10} {mode:10} {label}", file=sys.stderr, flush=True)

                out_flex = None
                if "flex" in impls:
                    try:
                        # Eager creation (untimed): evaluates mask_mod per block, O(N^2) once.
                        bm = create_block_mask(mask_mod, B=None, H=None, Q_LEN=n, KV_LEN=n,
                                               device="cuda")
                        record("flex", "device", time_cuda(lambda: flex(q, k, v, block_mask=bm)))

                        def e2e():
                            a, b_, c = (x.to(dev, non_blocking=True) for x in pinned)
                            return flex(a, b_, c, block_mask=bm).cpu()

                        record("flex", "end-to-end", time_wall(e2e))
                        out_flex = flex(q, k, v, block_mask=bm)
                    except Exception as e:  # noqa: BLE001 - report and go on
                        record("flex", "device", error=f"{type(e).__name__}: {e}"[:300])
                for impl, backend in (("flash", SDPBackend.FLASH_ATTENTION),
                                      ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                                      ("math", SDPBackend.MATH)):
                    if impl not in impls:
                        continue
                    if impl == "math" and n > args.math_max_n:
                        skipped.append(f"{what} math (N > --math-max-n)")
                        continue
                    if impl == "flash" and not (is_full or is_causal):
                        continue  # flash takes no mask: only full and causal are comparable
                    kw = {}
                    if is_causal:
                        kw["is_causal"] = True
                    elif not is_full:
                        kw["attn_mask"] = dense
                    try:
                        with sdpa_kernel(backend):
                            fn = lambda: torch.nn.functional.scaled_dot_product_attention(  # noqa: E731
                                q, k, v, **kw)
                            record(impl, "device", time_cuda(fn))
                            if out_flex is not None and n == lengths[0] and impl != "flash":
                                ref = fn().float()
                                checks.append({"mask": m["name"], "n": n, "dtype": dname,
                                               "vs": impl, "maxAbsDiff": float(
                                                   (out_flex.float() - ref).abs().max())})
                    except Exception as e:  # noqa: BLE001
                        record(impl, "device", error=f"{type(e).__name__}: {e}"[:300])
            q = k = v = None  # free GPU memory before the next dtype or length
            pinned = []
            torch.cuda.empty_cache()
        write_json()

    info = write_json()
    print(f"\n{info['device']} · torch {info['torch']} · CUDA {info['cuda']} · B={B} H={H} d={D}")
    print(f"{'N':>6} {'dtype':5} {'mask':20} {'impl':10} {'mode':10} {'ms':>9} {'TFLOP/s':>8}")
    for r in rows:
        val = (f"{r['ms']:9.3f} {r['tflops']:8.2f}" if "error" not in r
               else f"error: {r['error'][:60]}")
        print(f"{r['n']:6} {r['dtype']:5} {r['mask']:20} {r['impl']:10} {r['mode']:10} {val}")
    for c in checks:
        flag = "" if c["maxAbsDiff"] < (1e-2 if c["dtype"] != "f32" else 1e-3) else "  <-- LARGE"
        print(f"check N={c['n']} {c['dtype']} {c['mask']}: max |flex - {c['vs']}| = "
              f"{c['maxAbsDiff']:.2e}{flag}")
    if skipped:
        print(f"skipped ({len(skipped)}): " + "; ".join(skipped[:20]) +
              (" ..." if len(skipped) > 20 else ""))


if __name__ == "__main__":
    main()
