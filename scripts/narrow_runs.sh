#!/usr/bin/env bash
# Long runs trained in parts and scored at every snapshot, one chain per run. Default: the issue-25 runs, NB201
# C=5 N=5 at the paper's 250 epochs on the CIFAR-10 images, `narrow` preset (ENN-balanced paths, snapshots after
# 50, 100, 150, 200, 250). Also the NAS-Bench-Macro runs (issue 27): SPACE=macro PRESET=cpu SNAPSHOTS="10 20"
# SAMPLING=uniform. One chain per run: train to the next snapshot, score every snapshot that exists (the
# preset's arch set; its `final_archs` at the last epoch), repeat. Every command resumes exactly where it stopped
# (a kill saves the checkpoint); run the script again after an interruption.
#   DATA=/path/to/cifar10-image-folder RUNS=/path/outside/the/repo K=4 SEED=0 SAMPLING=balanced scripts/narrow_runs.sh
# CODE: a frozen copy of the package to run (default: this checkout), so that later edits do not reach a running chain:
#   git archive HEAD | (mkdir -p /tmp/frozen && tar x -C /tmp/frozen); CODE=/tmp/frozen ... scripts/narrow_runs.sh
# The NB201 presets train with offpath_update=decay since issue 44 (runs (a)-(d) of issue 25 used `none`:
# EXTRA="offpath_update=none" repeats them); the rule is in every run's protocol.
# EXTRA: more training fields, space-separated, each passed as --set and added to the run's name, e.g.
#   EXTRA="grad_clip=5" ... scripts/narrow_runs.sh   ->   train-k1-balanced-s0-grad_clip5, curve-k1-balanced-s0-grad_clip5
# VARIANT: a named simplex-net training variant (simplex.SIMPLEX_VARIANTS, issue 45), passed as --variant and added
# to the run's name, e.g. SPACE=macro PRESET=cpu SNAPSHOTS="10 20" SAMPLING=uniform VARIANT=joint scripts/narrow_runs.sh
# RANK_ARGS: more arguments for the scoring, e.g. RANK_ARGS="--archs 1000" (the same 1,000 archs at every snapshot,
# for screens that need not score every network).
# One thread per chain (OMP_NUM_THREADS=1): two chains side by side fill two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:?set DATA to the CIFAR-10 image folder (train/<class>/*.jpg, test/<class>/*.jpg)}
RUNS=${RUNS:?set RUNS to a directory outside the repository}
SPACE=${SPACE:-nb201}
PRESET=${PRESET:-narrow}
SNAPSHOTS=${SNAPSHOTS:-50 100 150 200 250}
K=${K:-4}
SEED=${SEED:-0}
SAMPLING=${SAMPLING:-balanced}
CODE=${CODE:-$PWD}
PY=${PY:-$PWD/.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=$CODE
NAME="k$K-$SAMPLING-s$SEED"
[ "$SPACE" = nb201 ] || NAME="$SPACE-$NAME"
SETS=()
if [ -n "${VARIANT:-}" ]; then SETS+=(--variant "$VARIANT"); NAME="$NAME-$VARIANT"; fi
for KV in ${EXTRA:-}; do SETS+=(--set "$KV"); NAME="$NAME-${KV//=/}"; done
# -P: the current directory never shadows the frozen copy on sys.path
kb() { (cd "$RUNS" && "$PY" -P -m kshot_bench.cli "$@"); }
for E in $SNAPSHOTS; do
  kb train --space "$SPACE" --preset "$PRESET" --k "$K" --seed "$SEED" --set sampling="$SAMPLING" ${SETS[@]+"${SETS[@]}"} \
    --device cpu --data-root "$DATA" --out "$RUNS/train-$NAME" --resume --until-epoch "$E" --quiet
  kb rank --checkpoint "$RUNS/train-$NAME" --space "$SPACE" --preset "$PRESET" --device cpu --data-root "$DATA" \
    --out "$RUNS/curve-$NAME" --quiet ${RANK_ARGS:-}
done
