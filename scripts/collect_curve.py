"""Copy the small result files of a curve (`rank --checkpoint RUN_DIR`, one epoch-EEEE/ folder per snapshot) into the
repository, so that each snapshot's scored results are committed as soon as they exist (run directories live
outside the repository and have been lost with their machines): per snapshot config.json, metrics.json,
baselines.json, predictions.csv, summary.md, scatter.png, and train/log.csv holding the training log's rows up to
that epoch (what `kshot-bench report` reads for Table 1). Checkpoints and snapshots are never copied.

  python scripts/collect_curve.py /work/runs/narrow/curve-k1-balanced-s0-offpath_updatedecay \
      /work/runs/narrow/train-k1-balanced-s0-offpath_updatedecay reports/narrow-cifar10/runs/curve-k1-balanced-s0-decay
"""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

FILES = ("config.json", "metrics.json", "baselines.json", "predictions.csv", "summary.md", "scatter.png", "job.json")


def collect(curve: Path, train: Path, dest: Path) -> list:
    done = []
    log = []
    if (train / "log.csv").is_file():
        with open(train / "log.csv", newline="") as fh:
            log = list(csv.DictReader(fh))
    for epoch_dir in sorted(curve.glob("epoch-*")):
        if not (epoch_dir / "metrics.json").is_file():
            continue  # still being scored
        out = dest / epoch_dir.name
        (out / "train").mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (epoch_dir / name).is_file():
                shutil.copy2(epoch_dir / name, out / name)
        epoch = int(epoch_dir.name.split("-")[1])
        rows = [r for r in log if int(r["epoch"]) <= epoch]
        if rows:
            with open(out / "train" / "log.csv", "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        done.append(epoch_dir.name)
    return done


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    print(collect(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
