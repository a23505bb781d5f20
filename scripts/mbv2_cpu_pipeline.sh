#!/usr/bin/env bash
# The whole MobileNetV2 pipeline at `cpu` scale (issue 12): one-shot (K=1) and K=4 simplex supernets, same seed,
# trained on an ImageNet-layout folder of the CIFAR-10 images (train/ = the 50,000 training images, of which
# 5,000 are the local validation split; val/ = the 10,000 test images), NSGA-II under the same FLOPs limit on
# each, the winner of each retrained from scratch and evaluated on val/, and one report of all of it.
# Every step resumes where it stopped: run this script again after an interruption. Wall times of every
# invocation of every step are appended to $RUNS/times.csv.
#   DATA=/path/to/imagenet-layout-folder RUNS=/path/outside/the/repo OUT=reports/mbv2-cpu scripts/mbv2_cpu_pipeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:?set DATA to an ImageNet-layout folder (train/<class>/*.jpg, val/<class>/*.jpg)}
RUNS=${RUNS:?set RUNS to a directory outside the repository}
OUT=${OUT:-reports/mbv2-cpu}
KB=${KB:-.venv/bin/kshot-bench}
PY=${PY:-.venv/bin/python}
LIMIT=${LIMIT:-330}             # MFLOPs at 224x224, 1,000 classes (the paper's Table 2 budget)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RUNS"
[ -f "$RUNS/times.csv" ] || echo "step,started,seconds" > "$RUNS/times.csv"

timed() {  # timed STEP command...: run it, append its wall time
  local step=$1 start=$SECONDS started
  started=$(date -u +%FT%TZ)
  shift
  "$@"
  echo "$step,$started,$((SECONDS - start))" >> "$RUNS/times.csv"
}

for K in 1 4; do
  [ -f "$RUNS/rank-k$K/metrics.json" ] ||  # trains the supernet into rank-kK/train, then scores 100 archs
    timed "train+rank-k$K" "$KB" rank --space mbv2 --dataset imagenet --preset cpu --k "$K" --device cpu \
      --data-root "$DATA" --out "$RUNS/rank-k$K" --quiet
  [ -f "$RUNS/search-k$K/result.json" ] ||
    timed "search-k$K" "$KB" search --space mbv2 --dataset imagenet --checkpoint "$RUNS/rank-k$K/train/supernet.pt" \
      --data-root "$DATA" --flops-limit "$LIMIT" --population 20 --generations 10 --parents 10 --device cpu \
      --out "$RUNS/search-k$K" --quiet
done
for K in 1 4; do
  ARCH=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['arch_str'])" "$RUNS/search-k$K/result.json")
  if [ ! -f "$RUNS/retrain-k$K/retrained.pt" ]; then
    RESUME=(); [ -f "$RUNS/retrain-k$K/checkpoint.pt" ] && RESUME=(--resume)
    timed "retrain-k$K" "$KB" retrain --preset cpu --arch "$ARCH" --data-root "$DATA" --device cpu \
      --out "$RUNS/retrain-k$K" "${RESUME[@]}" --quiet
  fi
  [ -f "$RUNS/retrain-k$K/eval-ema.json" ] ||
    timed "evaluate-k$K" "$KB" evaluate --checkpoint "$RUNS/retrain-k$K/retrained.pt" --data-root "$DATA" \
      --device cpu --quiet
done
"$KB" report "$RUNS"/rank-k1 "$RUNS"/rank-k4 "$RUNS"/search-k1 "$RUNS"/search-k4 "$RUNS"/retrain-k1 \
  "$RUNS"/retrain-k4 --out "$OUT"
cp "$RUNS/times.csv" "$OUT/times.csv"
