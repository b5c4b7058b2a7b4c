#!/usr/bin/env bash
# Side by side on a CUDA machine, in one command: this library's WebGPU backend (bench CLI,
# f32 and f16) and PyTorch (FlexAttention and SDPA flash / efficient / math, f32 and bf16) on
# the same twelve masks, exported from masks/ (bench/cli/export_masks.ts) so both run the same
# definitions. Prints one table of useful TFLOP/s with ratios last.
#
#   bash bench/gpu/gpu_compare.sh
#
# Environment (all optional): DENO (deno binary), PYTHON (python3 with torch + CUDA), OUT (log
# folder; default bench/out/gpu-<time>), SEQS (default 1024,2048,4096,8192), HEADS (16),
# DIM (64), BATCH (1), REPS (10), BACKEND (this library's backend; default webgpu). Each step
# has a time limit (60 s twice, 50 s twice, 240 s), so the whole run stays under 8 minutes; a step
# that fails or times out is reported, and the table shows what exists.
# Full logs: $OUT/env.txt, deno_f32.{txt,log,json}, deno_f16.*, torch.{txt,log,json}, table.txt.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

DENO="${DENO:-deno}"
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-bench/out/gpu-$(date -u +%Y%m%dT%H%M%SZ)}"
SEQS="${SEQS:-1024,2048,4096,8192}"
HEADS="${HEADS:-16}"
DIM="${DIM:-64}"
BATCH="${BATCH:-1}"
REPS="${REPS:-10}"
BACKEND="${BACKEND:-webgpu}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
mkdir -p "$OUT"
log() { echo "[gpu_compare $(date -u +%H:%M:%S)] $*" >&2; }

{
  date -u
  nvidia-smi 2>&1 || true
  "$DENO" --version
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")'
} >"$OUT/env.txt" 2>&1
log "environment in $OUT/env.txt"

log "exporting masks for N=$SEQS"
if ! "$DENO" run -A bench/cli/export_masks.ts --seq "$SEQS" --out "$OUT/masks.json"; then
  log "mask export failed"; exit 1
fi

for dt in f32 f16; do
  log "this library, $BACKEND, $dt (limit 60 s; progress in $OUT/deno_$dt.log)"
  timeout 60 "$DENO" run -A bench/cli/cli.ts --backend "$BACKEND" --seq "$SEQS" --batch "$BATCH" \
    --heads "$HEADS" --dim "$DIM" --dtype "$dt" --reps "$REPS" --check \
    --json "$OUT/deno_$dt.json" >"$OUT/deno_$dt.txt" 2>"$OUT/deno_$dt.log"
  rc=$?
  case $rc in
    0) ;;
    124) log "deno $dt hit its time limit; the tables finished before are kept in deno_$dt.json" ;;
    *) log "deno $dt exited with $rc; see $OUT/deno_$dt.{txt,log}" ;;
  esac
done

for dt in f32 f16; do
  log "this library's kernels, $dt, timestamp queries (limit 50 s; $OUT/kernels_$dt.log)"
  timeout 50 "$DENO" run -A bench/gpu/gpu_bench.ts --seq "$SEQS" --batch "$BATCH" --heads "$HEADS" \
    --dim "$DIM" --dtype "$dt" --masks all --reps 5 --json "$OUT/kernels_$dt.json" \
    >"$OUT/kernels_$dt.txt" 2>"$OUT/kernels_$dt.log" || log "gpu_bench $dt failed; see $OUT/kernels_$dt.log"
done

log "PyTorch (limit 240 s; progress in $OUT/torch.log)"
timeout 240 "$PYTHON" bench/gpu/torch_compare.py --masks "$OUT/masks.json" --dtypes f32,bf16 \
  --batch "$BATCH" --heads "$HEADS" --dim "$DIM" --reps "$REPS" --budget-s 200 \
  --json "$OUT/torch.json" >"$OUT/torch.txt" 2>"$OUT/torch.log"
rc=$?
[ $rc -eq 0 ] || log "torch_compare.py exited with $rc; see $OUT/torch.{txt,log}"

echo
head -4 "$OUT/deno_f32.txt" 2>/dev/null
echo
"$DENO" run -A bench/gpu/gpu_table.ts --out "$OUT/table.txt" \
  "$OUT/deno_f32.json" "$OUT/deno_f16.json" "$OUT/kernels_f32.json" "$OUT/kernels_f16.json" \
  "$OUT/torch.json"
