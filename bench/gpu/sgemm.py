"""The SIMT ceiling the WebGPU kernels are measured against: cuBLAS SGEMM in IEEE fp32 (TF32 off),
n x n x n, median of timed repetitions after warm-up. Run on the accelerator machine:
`python3 bench/gpu/sgemm.py [n ...]` (default 8192 16384)."""

import sys

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

for n in [int(a) for a in sys.argv[1:]] or [8192, 16384]:
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    for _ in range(3):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.matmul(a, b)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    ms = sorted(times)[len(times) // 2]
    print(f"cuBLAS SGEMM fp32 (allow_tf32=False) n={n}: {ms:.2f} ms, {2 * n**3 / ms / 1e9:.1f} TFLOP/s")
