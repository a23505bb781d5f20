"""Two choices of the scoring protocol, measured on a trained supernet (issue 25, items 2 and 4):

1. How many scoring images: each arch is scored with batch statistics on `--images` images of the NB201
   `valid` half (the rank job's seeded subset, batches of 500), one accuracy per batch kept. Disjoint groups
   of batches give independent scorings at 500, 1,000, ... images: for each size, Kendall's tau of every
   group against the ground truth (mean and spread over the groups: the image noise of tau), the tau between
   two groups (how far two image sets agree on the order), and the time an arch costs.
2. BN at scoring: on the same archs and the first 1,000 of those images, each batch's own statistics (today's
   default) against statistics re-estimated per arch over `--calibration` training images, then eval mode
   (`bn_calibration`); paired differences of tau with bootstrap intervals over the archs.
3. Which images (`--test-images N`, CIFAR-10 only): the same archs scored with batch statistics on N seeded
   images of the CIFAR-10 test set, the images the ground truth is measured on (the released SPOS rankings
   scored there), paired against the first N of the `valid` images.

  OMP_NUM_THREADS=1 python benchmarks/scoring_protocol.py --checkpoint RUN/snapshots/epoch-0050.pt \
      --data-root ~/data/cifar10 [--archs 300] [--images 3000] [--calibration 500,2000] [--test-images 2000] \
      --out FILE
Archs: the first `--archs` of the run's own seeded sample (the space's arch_set, so they are the first of the narrow
preset's 1,000). The last line printed is the results as one JSON object (also written to --out).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench import metrics as stats  # noqa: E402
from kshot_bench.data import Splits, cifar10_test_set, load_for  # noqa: E402
from kshot_bench.datasets import DATASETS  # noqa: E402
from kshot_bench.ground_truth import space_truth  # noqa: E402
from kshot_bench.search_space import SPACES  # noqa: E402
from kshot_bench.metrics import kendall_tau  # noqa: E402
from kshot_bench.scoring import load_supernet, score_arch, scoring_batches  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402

BATCH = 500


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--archs", type=int, default=300)
    p.add_argument("--images", type=int, default=3000, help="a multiple of 500")
    p.add_argument("--calibration", default="500,2000", help="training images that re-estimate BN (comma-separated)")
    p.add_argument("--test-images", type=int, default=0,
                   help="also score on this many CIFAR-10 test images (a multiple of 500, at most --images)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.test_images % BATCH or args.test_images > args.images:
        p.error(f"--test-images must be a multiple of {BATCH} and at most --images ({args.images})")
    tune_allocator()
    device = torch.device("cpu")
    cfg, model, codes, _, state = load_supernet(args.checkpoint, device, {})
    splits = load_for(cfg, args.data_root, download=False)
    info = DATASETS.get(cfg.dataset)
    space = SPACES.get(cfg.space)
    keys, archs, _ = space.arch_set("1000", cfg.seed)
    keys, archs = keys[: args.archs], archs[: args.archs]
    truth = space_truth(space, space.TRUTH[cfg.dataset])[np.asarray(keys)]
    with torch.no_grad():
        lam = codes(archs)
    images = scoring_batches(splits, info, args.images, BATCH, device)
    n_batches = len(images.batches)
    cal_sizes = [int(v) for v in args.calibration.split(",") if v]
    cal_sets = {n: scoring_batches(splits, info, 0, BATCH, device, calibration=n).calibration for n in cal_sizes}
    test_set = None
    if args.test_images:
        if cfg.dataset != "cifar10":
            p.error(f"--test-images is for CIFAR-10 runs; this checkpoint trained on {cfg.dataset}")
        tx, ty = cifar10_test_set(args.data_root)
        test_splits = Splits(splits.train_x, splits.train_y, tx, ty, "the CIFAR-10 test set")
        test_set = scoring_batches(test_splits, dataclasses.replace(info, score_part="the CIFAR-10 test set"),
                                   args.test_images, BATCH, device)
    per_test, t_test = np.zeros(len(archs)), 0.0
    per_batch = np.zeros((len(archs), n_batches))
    calibrated = {n: np.zeros(len(archs)) for n in cal_sizes}
    t_batch, t_cal = 0.0, {n: 0.0 for n in cal_sizes}
    first = images.batches[:1000 // BATCH]
    for i, arch in enumerate(archs):
        t0 = time.perf_counter()
        for b, batch in enumerate(images.batches):
            per_batch[i, b] = score_arch(model, arch, lam[i], [batch])[0]
        t_batch += time.perf_counter() - t0
        for n in cal_sizes:
            t0 = time.perf_counter()
            calibrated[n][i] = score_arch(model, arch, lam[i], first, calibration=cal_sets[n])[0]
            t_cal[n] += time.perf_counter() - t0
        if test_set is not None:
            t0 = time.perf_counter()
            per_test[i] = score_arch(model, arch, lam[i], test_set.batches)[0]
            t_test += time.perf_counter() - t0
        if (i + 1) % 25 == 0:
            print(f"{i + 1}/{len(archs)} archs", file=sys.stderr, flush=True)
    ms_per_image = 1e3 * t_batch / (len(archs) * n_batches * BATCH)
    noise = {}
    for size in [s for s in (1, 2, 3, 4, 6, 8, 12) if s <= n_batches]:
        groups = [list(range(g * size, (g + 1) * size)) for g in range(n_batches // size)]
        scores = [per_batch[:, g].mean(1) for g in groups]
        taus = [kendall_tau(s, truth) for s in scores]
        agree = [kendall_tau(a, b) for a, b in itertools.combinations(scores, 2)]
        noise[str(size * BATCH)] = {"groups": len(groups), "tau_each": taus, "tau_mean": float(np.mean(taus)),
                                    "tau_spread": float(np.std(taus, ddof=1)) if len(taus) > 1 else None,
                                    "tau_between_groups": float(np.mean(agree)) if agree else None,
                                    "ms_per_arch": ms_per_image * size * BATCH}
    batch_stat = per_batch[:, : len(first)].mean(1)
    bn = {"batch_statistics": {"tau": kendall_tau(batch_stat, truth),
                               "ci95": list(stats.tau_bootstrap_ci(batch_stat, truth)),
                               "ms_per_arch": ms_per_image * len(first) * BATCH}}
    for n in cal_sizes:
        bn[f"calibrated_{n}"] = {"tau": kendall_tau(calibrated[n], truth),
                                 "ci95": list(stats.tau_bootstrap_ci(calibrated[n], truth)),
                                 "minus_batch_statistics": stats.paired_tau_diff(calibrated[n], batch_stat, truth),
                                 "ms_per_arch": 1e3 * t_cal[n] / len(archs)}
    test = None
    if test_set is not None:
        same_valid = per_batch[:, : len(test_set.batches)].mean(1)
        test = {"score_set": test_set.description,
                "valid": {"images": args.test_images, "tau": kendall_tau(same_valid, truth),
                          "ci95": list(stats.tau_bootstrap_ci(same_valid, truth))},
                "test": {"images": args.test_images, "tau": kendall_tau(per_test, truth),
                         "ci95": list(stats.tau_bootstrap_ci(per_test, truth)),
                         "minus_valid": stats.paired_tau_diff(per_test, same_valid, truth),
                         "ms_per_arch": 1e3 * t_test / len(archs)},
                "tau_test_vs_valid_scores": kendall_tau(per_test, same_valid)}
    result = {"benchmark": "scoring_protocol", "checkpoint": str(args.checkpoint), "config_hash": state["config_hash"],
              "k": cfg.k, "channels": cfg.channels, "epochs": state.get("epochs", state.get("epoch")),
              "sampling": cfg.sampling, "archs": f"the first {len(archs)} of arch_set('1000', seed {cfg.seed})",
              "score_set": images.description, "truth": space.TRUTH[cfg.dataset], "machine": machine_info(device),
              "image_noise": noise, "bn_at_scoring": bn, "test_images": test,
              "date": time.strftime("%Y-%m-%d")}
    print(json.dumps({"image_noise": {k: (v["tau_mean"], v["tau_spread"]) for k, v in noise.items()},
                      "bn": {k: v["tau"] for k, v in bn.items()},
                      "test_images": test and {k: test[k]["tau"] for k in ("valid", "test")}}, indent=1), file=sys.stderr)
    emit(result, "scoring_protocol", False, out=args.out)


if __name__ == "__main__":
    main()
