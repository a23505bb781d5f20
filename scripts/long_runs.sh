#!/usr/bin/env bash
# The ranking-evidence runs (issue 13): NB201 C=16 N=5 on the CIFAR-10 image folder, one-shot (K=1) and
# K=4 with the simplex-net, same seed, `long` preset (100 epochs, snapshots after 10, 25, 50, 75, 100).
# Both runs advance in lock-step (`--until-epoch`), so at every point both have reached the same snapshot,
# and each snapshot is scored (500 archs x 2,000 images) as soon as it exists. Every command resumes
# exactly where it stopped; run this script again after an interruption.
#   DATA=/path/to/cifar10-image-folder RUNS=/path/outside/the/repo scripts/long_runs.sh
# KS picks the runs (default "1 4"). With two free cores, run one chain per run side by side, one thread each:
#   KS=1 ... scripts/long_runs.sh &   KS=4 ... scripts/long_runs.sh &
# Each run's snapshots are then scored as soon as that run reaches them; the runs no longer wait for each other.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:?set DATA to the CIFAR-10 image folder (train/<class>/*.jpg, test/<class>/*.jpg)}
RUNS=${RUNS:?set RUNS to a directory outside the repository}
KB=${KB:-.venv/bin/kshot-bench}
KS=${KS:-1 4}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one core per chain
for E in 10 25 50 75 100; do
  for K in $KS; do
    "$KB" train --preset long --k "$K" --device cpu --data-root "$DATA" --out "$RUNS/train-k$K" --resume \
      --until-epoch "$E" --quiet
  done
  for K in $KS; do
    "$KB" rank --checkpoint "$RUNS/train-k$K" --preset long --device cpu --data-root "$DATA" \
      --out "$RUNS/curve-k$K" --quiet
  done
done
