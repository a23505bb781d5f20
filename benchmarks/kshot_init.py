"""Effect of the K-copy init (`kshot_init`: independent vs identical) on training and ranking.

Two rank runs that differ only in `kshot_init` (same preset, K, code mode, seed, arch sample and
scoring images): per-epoch training loss and accuracy from their logs, Kendall's tau and split tau
from their metrics. `--reuse-independent DIR` takes an existing rank run (e.g. an ablation cell
with the default init) instead of training it again; the script checks its config matches.

  python benchmarks/kshot_init.py --data-root DIR [--preset cpu] [--k 4] [--seed 0] [--reuse-independent DIR]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.rank import rank_job  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import pick_device  # noqa: E402


def summarise(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "train" / "log.csv", newline="") as fh:
        log = list(csv.DictReader(fh))
    return {"run": str(run_dir), "config_hash": metrics["protocol"]["config_hash"],
            "kendall_tau": metrics["kendall_tau"], "spearman": metrics["spearman"],
            "split_tau": metrics["split_tau"], "train_loss": [float(r["train_loss"]) for r in log],
            "train_acc": [float(r["train_acc"]) for r in log], "code_max": [float(r["code_max"]) for r in log]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--code", default="simplex")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "kshot-init")
    parser.add_argument("--reuse-independent", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tune_allocator()
    device = pick_device("auto")
    started = time.time()
    results = {}
    for init in ("independent", "identical"):
        cfg = from_preset(args.preset, k=args.k, code=args.code, seed=args.seed, kshot_init=init)
        run_dir = args.runs / init
        if init == "independent" and args.reuse_independent is not None:
            saved = json.loads((args.reuse_independent / "config.json").read_text())["config"]
            if saved != cfg.to_dict():
                diff = {k: (saved.get(k), v) for k, v in cfg.to_dict().items() if saved.get(k) != v}
                raise SystemExit(f"{args.reuse_independent} was run with another config: {diff}")
            run_dir = args.reuse_independent
        elif not (run_dir / "metrics.json").exists():
            rank_job(cfg, run_dir, args.data_root, device, progress=False, preset=args.preset,
                     command=f"benchmarks/kshot_init.py (init={init})")
        results[init] = summarise(run_dir)
        print(f"{init:<12} tau {results[init]['kendall_tau']:.3f}  final train loss {results[init]['train_loss'][-1]:.3f}  "
              f"train acc {results[init]['train_acc'][-1]:.1f}%", flush=True)
    result = {
        "benchmark": "kshot_init",
        "protocol": f"rank runs, preset {args.preset}, K={args.k}, code {args.code}, seed {args.seed}; "
                    "identical except kshot_init",
        "machine": machine_info(device),
        "runs": results,
        "tau_identical_minus_independent": results["identical"]["kendall_tau"] - results["independent"]["kendall_tau"],
        "wall_s": time.time() - started,
    }
    emit(result, "kshot_init", False, device.type, args.out)


if __name__ == "__main__":
    main()
