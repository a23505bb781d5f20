"""Does bf16 scoring change a ranking? fp32 against bfloat16-autocast scores of the same archs, same images,
same trained supernet: Kendall's tau between the two score lists, each one's tau against the NB201 ground
truth, their paired difference with its bootstrap interval, and the time of each.

This is the check behind `score_precision=auto` (bf16 on CUDA): the rounding of bf16 is the same on every
device, so the agreement measured here on a CPU speaks for a GPU too; the timing does not (a CPU without
bf16 units emulates it, a GPU runs it at twice its fp32 rate or more).

  python benchmarks/bf16_scoring.py --checkpoint RUN/snapshots/epoch-0025.pt --data-root CIFAR10_FOLDER \
      --archs 100 --images 1000
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402

from kshot_bench.data import load_for  # noqa: E402
from kshot_bench.datasets import DATASETS  # noqa: E402
from kshot_bench.ground_truth import space_truth  # noqa: E402
from kshot_bench.metrics import kendall_tau  # noqa: E402
from kshot_bench.scoring import load_supernet, score_arch, scoring_batches  # noqa: E402
from kshot_bench.search_space import SPACES  # noqa: E402
from kshot_bench.models import uses_widths  # noqa: E402
from kshot_bench.metrics import paired_tau_diff  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import pick_device  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--archs", type=int, default=100)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    cfg, model, codes, _, state = load_supernet(args.checkpoint, device, {})
    cfg = cfg.replace(archs=str(args.archs), score_images=args.images)
    splits = load_for(cfg, args.data_root, download=False)
    score_set = scoring_batches(splits, DATASETS.get(cfg.dataset), cfg.score_images, cfg.score_batch, device)
    keys, archs, desc = SPACES.get(cfg.space).arch_set(cfg.archs, cfg.seed, widths=uses_widths(cfg))
    model.eval()
    with torch.no_grad():
        lam = codes(list(archs))
    scores, seconds = {}, {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        t0 = time.perf_counter()
        scores[name] = [score_arch(model, a, lam[i], score_set.batches, bf16) for i, a in enumerate(archs)]
        seconds[name] = time.perf_counter() - t0
    space = SPACES.get(cfg.space)
    truth = space_truth(space, space.TRUTH[cfg.dataset])[np.asarray(keys)]
    acc = {n: [s[0] for s in v] for n, v in scores.items()}
    loss = {n: [-s[1] for s in v] for n, v in scores.items()}
    result = {
        "benchmark": "bf16_scoring",
        "protocol": f"checkpoint {args.checkpoint} ({cfg.space}, K={cfg.k}, epoch {state.get('epochs')}), {desc}, "
                    f"{score_set.description}; the same archs, codes and images in fp32 and under bf16 autocast",
        "machine": machine_info(device),
        "tau_fp32_vs_bf16": {"acc": kendall_tau(acc["fp32"], acc["bf16"]), "loss": kendall_tau(loss["fp32"], loss["bf16"])},
        "tau_vs_truth": {n: {"acc": kendall_tau(acc[n], truth), "loss": kendall_tau(loss[n], truth)} for n in acc},
        "paired_bf16_minus_fp32": {"acc": paired_tau_diff(acc["fp32"], acc["bf16"], truth),
                                   "loss": paired_tau_diff(loss["fp32"], loss["bf16"], truth)},
        "max_abs_acc_diff_pct": float(np.max(np.abs(np.subtract(acc["fp32"], acc["bf16"])))),
        "archs_with_other_acc": int(np.sum(np.subtract(acc["fp32"], acc["bf16"]) != 0)),
        "seconds": seconds,
        "time_bf16_vs_fp32": seconds["bf16"] / seconds["fp32"],
    }
    for kind in ("acc", "loss"):  # paired_tau_diff gives A - B: turn it into bf16 - fp32
        d = result["paired_bf16_minus_fp32"][kind]
        d["diff"], d["ci_lo"], d["ci_hi"] = -d["diff"], -d["ci_hi"], -d["ci_lo"]
        d.pop("share_of_resamples_above_0", None)
    emit(result, "bf16_scoring", False, device.type, args.out)


if __name__ == "__main__":
    main()
