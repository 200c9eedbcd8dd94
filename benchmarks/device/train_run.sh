#!/usr/bin/env bash
# One device call for issue 14 (training at the GPU's speed): the original PyTorch OSTrack's
# training step (float32, batch 32), our training-step matrix (benchmarks/device/train_matrix.py:
# each fast-path switch alone at batch 128, the winners combined, batches 32/64/128, forward
# MFU, remat memory, loss after 100 steps), then the data pipeline with 16 workers from JPEG
# folders and packs. Tables go to $OUT: train_matrix.md (everything together), train_matrix.jsonl,
# original_train.txt, data_speed.txt, gpu.txt, timing.txt.
#   run: bash benchmarks/device/train_run.sh   (carry: [".carry"], see README.md here; timeout_s
#   520: about 7 minutes, at most ~8.5: the matrix starts no item after 300 s from the start)
# TINY=1 runs a smoke version on the CPU (tiny model, batches 1-4; the original at batch 1 on the
# CPU when ORIG_SITE names a folder with timm 0.5.4 + easydict, see below): 4-7 minutes on
# 2 cores.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/train_out}; mkdir -p "$OUT"
PY=${PY:-python3}
T0=$(date +%s)
since() { echo $(( $(date +%s) - T0 )); }
FILTER="Warning\|warn("
if [ -z "${TINY:-}" ]; then
  I="$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target"
  $I /tmp/site .carry/wheels/*.whl && $I /tmp/orig_site .carry/orig_wheels/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
  ORIG_SITE=/tmp/orig_site
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
  nproc >> "$OUT/gpu.txt"
  SEQS=".carry/soapbox examples/data/soccerball"
  ORIG="--device cuda train-step --preset ostrack_256_ce --batch 32 --repeats 10 --warmup 3"
  MATRIX=""; START_BY=${START_BY:-300}; STOP_BY=${STOP_BY:-350}
  DATA="--workers 16 --batches 60 --repeats 2 --batch_size 16"
else
  # ORIG_SITE: e.g. `pip install --no-deps --target /tmp/orig_site .carry/orig_wheels/*.whl`.
  ORIG_SITE=${ORIG_SITE:-}
  SEQS="examples/data/soccerball"
  ORIG="train-step --preset ostrack_256_ce --batch 1 --repeats 2 --warmup 1"
  MATRIX="--tiny --loss-steps 5"; START_BY=${START_BY:-600}; STOP_BY=${STOP_BY:-900}
  DATA="--workers 2 --batches 4 --repeats 1 --batch_size 4"
fi
echo "install: $(since) s" > "$OUT/timing.txt"

# 1. The original (botaoye/OSTrack 33b5e12 in .carry/OSTrack, float32, its defaults).
ORIG_ARG=""
if [ -n "$ORIG_SITE" ]; then
  ( export PYTHONPATH=$ORIG_SITE
    timeout 75 $PY benchmarks/torch_original.py --ostrack-repo .carry/OSTrack $ORIG
  ) 2>&1 | grep --line-buffered -v "$FILTER" | tee "$OUT/original_train.txt"
  ORIG_ARG="--original $OUT/original_train.txt"
fi
echo "original: $(since) s" >> "$OUT/timing.txt"

# 2. Ours: no item starts after START_BY seconds from the start; killed at STOP_BY.
BUDGET=$(( START_BY - $(since) )); LIMIT=$(( STOP_BY - $(since) ))
timeout $LIMIT $PY benchmarks/device/train_matrix.py --out "$OUT" $MATRIX --budget-s $BUDGET \
  $ORIG_ARG 2>&1 | grep --line-buffered -v "$FILTER" | tee "$OUT/train_matrix.log"
echo "matrix: $(since) s" >> "$OUT/timing.txt"

# 3. The data pipeline (OSTrack-256 processing) from JPEG folders and from a pack.
mkdir -p /tmp/train_seqs
for s in $SEQS; do ln -sfn "$(cd "$s" && pwd)" "/tmp/train_seqs/$(basename "$s")"; done
timeout 100 $PY benchmarks/data_speed.py --sequences /tmp/train_seqs $DATA 2>&1 \
  | grep --line-buffered -v "$FILTER" | tee "$OUT/data_speed.txt"
echo "data: $(since) s" >> "$OUT/timing.txt"

# 4. All tables together (from the files above).
timeout 60 $PY benchmarks/device/train_matrix.py --out "$OUT" --render-only $MATRIX $ORIG_ARG \
  --data-speed "$OUT/data_speed.txt" > /dev/null 2>&1
cat "$OUT/train_matrix.md"
echo "total: $(since) s" | tee -a "$OUT/timing.txt"
