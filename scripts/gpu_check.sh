#!/usr/bin/env bash
# The GPU check (issue 28), one command on a machine with a GPU: no install and no download (the package runs
# from this checkout; synthetic data). Under 8 minutes on one GPU; writes benchmarks/results/gpu_check-<device>.json.
#   scripts/gpu_check.sh                # the check
#   scripts/gpu_check.sh --dry-run      # tiny sizes, any device (the test suite runs this on the CPU)
# PY: the Python that has torch (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec timeout "${LIMIT:-470}" "$PY" benchmarks/gpu_check.py "$@"
