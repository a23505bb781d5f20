"""Does bf16 supernet *training* change a ranking? Three trainings of the same supernet on the same data:
fp32 (seed 0), bf16 autocast (seed 0) and fp32 again with another seed (seed 1, the yardstick: how much a
ranking moves when only the training noise changes). Each is scored on the same archs and images in fp32.
Printed: Kendall's tau between the score lists (fp32 vs bf16, fp32 vs fp32 seed 1), each one's tau against
the NB201 ground truth, the paired difference bf16 - fp32 with its bootstrap interval, and time per epoch.

This is the check behind `train_precision=auto` (bf16 autocast on CUDA): bf16 rounds the same way on every
device, so the agreement measured here on a CPU speaks for a GPU too; the timing does not (a CPU without
bf16 units emulates it; a GPU runs it at twice its fp32 rate or more). At a small budget the supernet ranks
near chance and two trainings agree little whatever their precision: read the bf16 row against the seed row.

  python benchmarks/bf16_training.py                                   # the demo preset on the embedded sample
  python benchmarks/bf16_training.py --preset cpu --data-root CIFAR10_FOLDER
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402

from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.data import load_for  # noqa: E402
from kshot_bench.datasets import DATASETS  # noqa: E402
from kshot_bench.ground_truth import space_truth  # noqa: E402
from kshot_bench.metrics import kendall_tau  # noqa: E402
from kshot_bench.scoring import score_arch, scoring_batches  # noqa: E402
from kshot_bench.search_space import SPACES  # noqa: E402
from kshot_bench.metrics import paired_tau_diff  # noqa: E402
from kshot_bench.train import Trainer  # noqa: E402
from kshot_bench.models import uses_widths  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import pick_device  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--archs", type=int, default=200, help="archs scored (a seeded sample)")
    parser.add_argument("--data-root", default=None, help="default: the embedded CIFAR-10 sample")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    runs = {"fp32": dict(seed=0, train_precision="fp32"), "bf16": dict(seed=0, train_precision="bf16"),
            "fp32_seed1": dict(seed=1, train_precision="fp32")}
    base = from_preset(args.preset, k=args.k, seed=0, archs=str(args.archs))
    splits = load_for(base, args.data_root, download=False)
    info = DATASETS.get(base.dataset)
    score_set = scoring_batches(splits, info, base.score_images, base.score_batch, device)
    keys, archs, desc = SPACES.get(base.space).arch_set(base.archs, base.seed, widths=uses_widths(base))  # seed 0's archs and images for all three
    truth = space_truth(SPACES.get(base.space), SPACES.get(base.space).TRUTH[base.dataset])[np.asarray(keys)]
    scores, epoch_s = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, changes in runs.items():
            cfg = base.replace(**changes)
            trainer = Trainer(cfg, Path(tmp) / name, load_for(cfg, args.data_root, download=False), device, progress=False)
            trainer.fit()
            epoch_s[name] = float(np.mean([float(r["time_s"]) for r in trainer.read_log()]))
            trainer.model.eval()
            with torch.no_grad():
                lam = trainer.codes(list(archs))
            scores[name] = np.array([score_arch(trainer.model, a, lam[i], score_set.batches)[0]
                                     for i, a in enumerate(archs)])
    diff = paired_tau_diff(scores["fp32"], scores["bf16"], truth)  # fp32 - bf16
    result = {
        "benchmark": "bf16_training",
        "protocol": f"preset {args.preset}, K={args.k}, code simplex, {base.epochs} epochs, trained three times (fp32 "
                    f"seed 0, bf16 autocast seed 0, fp32 seed 1) on {splits.source}; each scored in fp32 (top-1) on "
                    f"{desc}, {score_set.description}",
        "machine": machine_info(device),
        "n_archs": int(len(truth)),
        "tau_between": {"fp32_vs_bf16": kendall_tau(scores["fp32"], scores["bf16"]),
                        "fp32_vs_fp32_seed1": kendall_tau(scores["fp32"], scores["fp32_seed1"])},
        "tau_vs_truth": {n: kendall_tau(s, truth) for n, s in scores.items()},
        "paired_bf16_minus_fp32": {"diff": -diff["diff"], "ci_lo": -diff["ci_hi"], "ci_hi": -diff["ci_lo"]},
        "mean_epoch_s": epoch_s,
        "time_bf16_vs_fp32": epoch_s["bf16"] / epoch_s["fp32"],
    }
    emit(result, f"bf16_training-{args.preset}", False, device.type, args.out)


if __name__ == "__main__":
    main()
