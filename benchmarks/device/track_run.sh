#!/usr/bin/env bash
# One device call for the tracking issue: GPU exactness checks, ostrack_jax tracker speed and
# the original PyTorch OSTrack beside it, all in the same run. Tables go to $OUT.
#   run: bash benchmarks/device/track_run.sh   (carry: [".carry"], see README.md here)
# TINY=1 runs a seconds-long smoke version (CPU).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/track_out}; mkdir -p "$OUT"
PY=${PY:-python3}
if [ -z "${TINY:-}" ]; then
  I="$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target"
  $I /tmp/site .carry/wheels/*.whl && $I /tmp/orig_site .carry/orig_wheels/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
  nproc >> "$OUT/gpu.txt"
  SEQ=.carry/soapbox; PRESET="--presets ostrack_256_ce --dtype bfloat16"
  SPEED="--batches 1 8 32 128 --frames 300 --steps 15 --decode-threads 16 --no-dispatch"
else
  SEQ=${SEQ:-../shared/sequences/soapbox}; PRESET="--presets tiny_256_ce"
  SPEED="--batches 1 4 --frames 10 --steps 3 --decode-threads 2 --no-dispatch --no-host-path"
fi
timeout 120 $PY benchmarks/device/gpu_checks.py 2>&1 | grep -v Warning | tee "$OUT/gpu_checks.txt"
timeout 360 $PY benchmarks/track_speed.py --sequence $SEQ $PRESET $SPEED 2>&1 \
  | grep -v "Warning\|warn(" | tee "$OUT/track_speed.txt"
if [ -z "${TINY:-}" ]; then
  O="$PY benchmarks/torch_original.py --ostrack-repo .carry/OSTrack --device cuda"
  ( export PYTHONPATH=/tmp/orig_site
    timeout 45 $O forward --preset ostrack_256_ce --batch 1 --repeats 50 --warmup 10
    timeout 55 $O track --preset ostrack_256_ce --frames-dir $SEQ --num-frames 60
  ) 2>&1 | grep -v "Warning\|warn(" | tee "$OUT/original.txt"
fi
