#!/usr/bin/env bash
# The issue-25 runs: NB201 C=5 N=5 at the paper's 250 epochs on the CIFAR-10 images, `narrow` preset (ENN-balanced
# paths, snapshots after 50, 100, 150, 200, 250). One chain per run: train to the next snapshot, score every snapshot
# that exists (1,000 archs; all archs at epoch 250, `final_archs`), repeat. Every command resumes exactly where it
# stopped (a kill saves the checkpoint); run the script again after an interruption.
#   DATA=/path/to/cifar10-image-folder RUNS=/path/outside/the/repo K=4 SEED=0 SAMPLING=balanced scripts/narrow_runs.sh
# CODE: a frozen copy of the package to run (default: this checkout), so that later edits do not reach a running chain:
#   git archive HEAD | (mkdir -p /tmp/frozen && tar x -C /tmp/frozen); CODE=/tmp/frozen ... scripts/narrow_runs.sh
# One thread per chain (OMP_NUM_THREADS=1): two chains side by side fill two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:?set DATA to the CIFAR-10 image folder (train/<class>/*.jpg, test/<class>/*.jpg)}
RUNS=${RUNS:?set RUNS to a directory outside the repository}
K=${K:-4}
SEED=${SEED:-0}
SAMPLING=${SAMPLING:-balanced}
CODE=${CODE:-$PWD}
PY=${PY:-$PWD/.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=$CODE
NAME="k$K-$SAMPLING-s$SEED"
# -P: the current directory never shadows the frozen copy on sys.path
kb() { (cd "$RUNS" && "$PY" -P -m kshot_bench.cli "$@"); }
for E in 50 100 150 200 250; do
  kb train --preset narrow --k "$K" --seed "$SEED" --set sampling="$SAMPLING" --device cpu --data-root "$DATA" \
    --out "$RUNS/train-$NAME" --resume --until-epoch "$E" --quiet
  kb rank --checkpoint "$RUNS/train-$NAME" --preset narrow --device cpu --data-root "$DATA" \
    --out "$RUNS/curve-$NAME" --quiet
done
