#!/usr/bin/env bash
# One command on a GPU machine: TensorRT INT8 + FP16 engines from the shipped ONNX, parity
# against ONNX Runtime on real tiles, tiles/s at batch 1/8/32/64, panoramas/s with CPU and
# nvJPEG decode, GPU utilisation; everything as JSON in OUTDIR (docs/tensorrt.md).
#
#   scripts/gpu_check.sh OUTDIR [extra scripts/gpu_check.py options]
#
# Needs the [tensorrt] extra (tensorrt>=10, cuda-python); torch + torchvision for the nvJPEG
# step (skipped without them). Stops starting new steps after GPU_CHECK_BUDGET_S (default 420)
# and is killed at GPU_CHECK_TIMEOUT_S (default 470): it fits in 8 minutes. Every finished step
# is already in OUTDIR/gpu_check.json. Exit 0 = no step failed.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 OUTDIR [gpu_check.py options]" >&2
  exit 2
fi
OUT=$1
shift
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
mkdir -p "$OUT"
{
  echo "started $(date -u +%FT%TZ) on $(hostname)"
  command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi not found"
} > "$OUT/nvidia-smi.txt" 2>&1
set +e
timeout --signal=TERM --kill-after=10 "${GPU_CHECK_TIMEOUT_S:-470}" \
  "$PY" "$HERE/gpu_check.py" --out "$OUT" --budget-s "${GPU_CHECK_BUDGET_S:-420}" "$@" \
  2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 124 ] && echo "gpu_check: timed out; finished steps are in $OUT/gpu_check.json" >&2
exit "$rc"
