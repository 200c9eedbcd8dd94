#!/usr/bin/env bash
# One device call for issue 27 (where the training step's time goes): OSTrack-256 CE training
# steps at keep 0.7, bfloat16 mixed precision, batch 128, timed by benchmarks/train_speed.py and
# then 3 more steps traced with jax.profiler (--profile), for today's path and the fast-path
# settings in VARIANTS below (each in its own process; 'fused_cudnn+pad64' / '+pad8' pad the
# fused attention's token count with masked keys, config.model.attention_pad_to); then
# benchmarks/profile_summary.py turns each trace into device time by kind. To $OUT: gpu.txt,
# train_speed.txt (the timing table), profile_summary.md (one table per setting),
# traces/<setting>.trace.json.gz (those under 20 MB) and timing.txt.
#   run: bash benchmarks/device/profile_run.sh   (carry: [".carry"], see README.md here;
#   timeout_s 480: no setting starts after START_BY=300 s, train_speed is killed at 420 s)
# TINY=1 runs a smoke version on the CPU (tiny model, batch 1, float32 and the fused XLA
# attention padded; about 1-2 minutes on 2 cores): TINY=1 PY=.venv/bin/python bash ...
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/profile_out}; mkdir -p "$OUT"
PY=${PY:-python3}
T0=$(date +%s)
since() { echo $(( $(date +%s) - T0 )); }
FILTER="Warning\|warn("
if [ -z "${TINY:-}" ]; then
  I="$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target"
  $I /tmp/site .carry/wheels/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
  nproc >> "$OUT/gpu.txt"
  SPEED="--preset ostrack_256_ce --batch 128 --dtypes bfloat16 --keeps 0.7 --repeats 10"
  VARIANTS=${VARIANTS:-plain bf16act bf16act+fused_cudnn+pad64 bf16act+fused_cudnn+pad8}
  START_BY=${START_BY:-300}; STOP_BY=${STOP_BY:-420}
else
  export PYTHONPATH=$PWD
  SPEED="--preset tiny_256_ce --batch 1 --dtypes float32 --keeps 0.7 --repeats 2"
  VARIANTS=${VARIANTS:-plain fused_xla+pad64}
  START_BY=${START_BY:-600}; STOP_BY=${STOP_BY:-900}
fi
echo "install: $(since) s" > "$OUT/timing.txt"

# 1. Timing, then 3 traced steps per setting (traces in /tmp: large; the summaries travel).
PROFILE=/tmp/profile_traces; rm -rf "$PROFILE"
BUDGET=$(( START_BY - $(since) )); LIMIT=$(( STOP_BY - $(since) ))
timeout $LIMIT $PY benchmarks/train_speed.py $SPEED --variants $VARIANTS --budget-s $BUDGET \
  --profile "$PROFILE" 2>&1 | grep --line-buffered -v "$FILTER" | tee "$OUT/train_speed.txt"
echo "train_speed: $(since) s" >> "$OUT/timing.txt"

# 2. Device time by kind, one table per setting.
mkdir -p "$OUT/traces"; : > "$OUT/profile_summary.md"
for dir in "$PROFILE"/*/; do
  name=$(basename "$dir")
  { echo "## $name"; echo
    timeout 120 $PY benchmarks/profile_summary.py "$dir" --top 20 2>&1
    echo; } | tee -a "$OUT/profile_summary.md"
  trace=$(find "$dir" -name '*.trace.json.gz' | head -n 1)
  if [ -n "$trace" ] && [ "$(stat -c %s "$trace")" -lt 20000000 ]; then
    cp "$trace" "$OUT/traces/$name.trace.json.gz"
  fi
done
echo "total: $(since) s" | tee -a "$OUT/timing.txt"
