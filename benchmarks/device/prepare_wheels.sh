#!/usr/bin/env bash
# Prepares, here (with network), what a borrowed GPU machine without network needs for the
# benchmarks: wheels for the packages its image lacks, and a plain-file copy of the original
# PyTorch OSTrack. See benchmarks/device/README.md for how the device run uses them.
#
# Usage (from anywhere inside the repository):
#   benchmarks/device/prepare_wheels.sh [OSTRACK_SOURCE]
#
# OSTRACK_SOURCE: where to take botaoye/OSTrack from: a git directory (bare or a clone's .git),
# a clone or plain checkout (a folder with lib/models/ostrack/ostrack.py), or nothing to clone it
# from GitHub. Commit 33b5e12 is exported when the git history has it (else HEAD, with a warning).
#
# Writes (git-ignored folder, replaced on each run):
#   .carry/wheels/       ostrack_jax's packages the device image lacks (cp312, manylinux x86-64)
#   .carry/orig_wheels/  timm==0.5.4 + easydict, for the original only (kept apart: timm 0.5.4
#                        must not shadow the image's timm for anything else)
#   .carry/OSTrack/      the original's files (no .git, no assets/), importable with --ostrack-repo
#
# Environment: PYTHON (a Python with pip; default .venv/bin/python, else python3),
#              CARRY_DIR (default <repo>/.carry).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEST=${CARRY_DIR:-$ROOT/.carry}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
ORIG_COMMIT=33b5e12586216b7fd0e95d255bd01ba44cbec759
ORIG_URL=https://github.com/botaoye/OSTrack.git

# Packages of ostrack_jax (pyproject.toml) that the device image ('cuda': Python 3.12, jax,
# flax, optax, orbax-checkpoint, chex, opencv, torch 2.11 + torchvision, absl-py, etils, fsspec,
# zipp, typing-extensions, cloudpickle, protobuf, psutil, pyyaml, packaging, numpy, tqdm,
# matplotlib, imageio, flatbuffers, a recent timm: the image's package list) does not hold.
# Their requirements are all in the image, so --no-deps: grain (absl-py, array-record,
# cloudpickle, etils[epath,epy], numpy, portpicker, protobuf>=5.28.3), array_record (absl-py,
# etils[epath]), ml_collections (absl-py, PyYAML), portpicker (psutil), tensorboardX (numpy,
# packaging, protobuf). The versions are those the project's tests pass with here.
# tensorflow and torch are left out (not dependencies of ostrack_jax; torch is in the image).
OURS=(grain==0.2.18 array_record==0.8.6 ml_collections==1.1.0 portpicker==1.6.0
      tensorboardX==2.6.5)
# The original's own needs beyond the image: timm 0.5.4 (the image has a recent timm, whose module
# layout the original cannot import) and easydict. Both are pure Python.
ORIG=(timm==0.5.4 easydict==1.14)

PIP_DOWNLOAD=("$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12
              --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
              --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
              --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --quiet)

echo "== wheels into $DEST (pip: $PYTHON)"
rm -rf "$DEST/wheels" "$DEST/orig_wheels"   # one version of each: two stop the install there
mkdir -p "$DEST/wheels" "$DEST/orig_wheels"
"${PIP_DOWNLOAD[@]}" -d "$DEST/wheels" "${OURS[@]}"
"${PIP_DOWNLOAD[@]}" -d "$DEST/orig_wheels" "${ORIG[@]}"
for w in "$DEST"/wheels/*.whl "$DEST"/orig_wheels/*.whl; do
  "$PYTHON" -m zipfile -t "$w" >/dev/null || { echo "broken wheel: $w" >&2; exit 1; }
done

echo "== the original OSTrack into $DEST/OSTrack"
rm -rf "$DEST/OSTrack"
mkdir -p "$DEST/OSTrack"
export_git() {  # $1: a git directory
  local commit=$ORIG_COMMIT
  if ! git --git-dir="$1" cat-file -e "$commit^{commit}" 2>/dev/null; then
    commit=$(git --git-dir="$1" rev-parse HEAD)
    echo "warning: $ORIG_COMMIT not in $1; exporting HEAD $commit" >&2
  fi
  git --git-dir="$1" archive "$commit" | tar -x -C "$DEST/OSTrack"
  echo "$commit" > "$DEST/OSTrack/COMMIT"
}
SRC=${1:-}
if [[ -z "$SRC" ]]; then
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  git clone --quiet --bare "$ORIG_URL" "$TMP/OSTrack.git"
  export_git "$TMP/OSTrack.git"
elif [[ -f "$SRC/lib/models/ostrack/ostrack.py" ]]; then
  tar -C "$SRC" --exclude=.git -cf - . | tar -x -C "$DEST/OSTrack"
  if git -C "$SRC" rev-parse HEAD >/dev/null 2>&1; then
    git -C "$SRC" rev-parse HEAD > "$DEST/OSTrack/COMMIT"
  fi
elif git --git-dir="$SRC" rev-parse --git-dir >/dev/null 2>&1; then
  export_git "$SRC"
else
  echo "OSTRACK_SOURCE $SRC: neither a git directory nor a checkout of botaoye/OSTrack" >&2
  exit 1
fi
rm -rf "$DEST/OSTrack/assets"   # README images, not needed to import or run it
test -f "$DEST/OSTrack/lib/models/ostrack/ostrack.py"

echo "== sizes"
du -sh "$DEST/wheels" "$DEST/orig_wheels" "$DEST/OSTrack"; du -sh "$DEST"
ls -1 "$DEST/wheels" "$DEST/orig_wheels"
# What a device call sends: tracked + untracked-not-ignored files, plus the carried folder.
tree_bytes=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
carry_bytes=$(du -sb "$DEST" | cut -f1)
awk -v t="$tree_bytes" -v c="$carry_bytes" 'BEGIN {
  printf "working tree %.1f MiB + carried %.1f MiB = %.1f MiB (device limit 64 MiB)\n",
         t / 2^20, c / 2^20, (t + c) / 2^20 }'
if ! (cd "$ROOT" && git check-ignore -q "$DEST/"); then
  echo "warning: $DEST is not git-ignored; it would travel (and could be committed)" >&2
fi
