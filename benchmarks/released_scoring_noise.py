"""How many test images and archs the released scoring protocol needs on a CPU (issue 44, item 2).

The released NB201 one-shot rankings scored every arch on all 10,000 CIFAR-10 test images, batches of 512, batch
statistics (`rank --score-protocol released`). That is about 10x our `valid` scoring per arch: some 35 hours of
one core for all 15,625 archs. This benchmark measures what fewer images and fewer archs cost in tau, on a trained
supernet:

1. Images: the first `--archs` archs of the run's own 3,000-arch set (`arch_set('3000', seed)`, so they lie in the
   set the rank job scores) are scored on every batch of 512 of the seeded order of the 10,000 test images, one
   accuracy per batch kept (BN uses each batch's statistics, so a batch's accuracy does not depend on the others).
   For n = 1, 2, 4, 6, 10 batches: tau against the truth of the first n batches, paired against all 10,000 images
   (difference and its interval over the archs), and the spread of tau over disjoint groups of n batches.
2. Archs: tau of all `--archs` archs against that of seeded subsets (100, 300, 1,000 ...), the subsets' spread.

  OMP_NUM_THREADS=1 python benchmarks/released_scoring_noise.py --checkpoint RUN/snapshots/epoch-0250.pt \
      --data-root ~/data/cifar10 [--archs 300] --out FILE
The last line printed is the results as one JSON object (also written to --out).
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
from kshot_bench import metrics as stats  # noqa: E402
from kshot_bench.data import load_for  # noqa: E402
from kshot_bench.datasets import DATASETS  # noqa: E402
from kshot_bench.ground_truth import space_truth  # noqa: E402
from kshot_bench.metrics import kendall_tau  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.scoring import load_supernet, score_arch, scoring_batches, with_test_images  # noqa: E402
from kshot_bench.search_space import SPACES  # noqa: E402

BATCH = 512  # the released protocol's


def image_noise(per_batch: np.ndarray, sizes: np.ndarray, truth: np.ndarray) -> dict:
    """Tau of the first n batches against the whole set's, and the spread over disjoint groups of n batches."""
    full = (per_batch * sizes).sum(1) / sizes.sum()
    out = {"all": {"images": int(sizes.sum()), "tau": kendall_tau(full, truth),
                   "ci95": list(stats.tau_bootstrap_ci(full, truth))}}
    n_full = int((sizes == BATCH).sum())
    for n in (1, 2, 4, 6, 10):
        if n >= n_full:
            continue
        first = per_batch[:, :n].mean(1)
        groups = [per_batch[:, g * n:(g + 1) * n].mean(1) for g in range(n_full // n)]
        taus = [kendall_tau(g, truth) for g in groups]
        out[str(n * BATCH)] = {"tau_first": kendall_tau(first, truth),
                               "minus_all": stats.paired_tau_diff(first, full, truth),
                               "tau_between_first_and_all": kendall_tau(first, full),
                               "groups": len(groups), "tau_group_mean": float(np.mean(taus)),
                               "tau_group_sd": float(np.std(taus, ddof=1)) if len(taus) > 1 else None}
    return out


def arch_noise(scores: np.ndarray, truth: np.ndarray, seed: int = 0) -> dict:
    """Tau over seeded subsets of the archs against tau over all of them."""
    rng = np.random.default_rng(seed)
    whole = kendall_tau(scores, truth)
    out = {"all": {"archs": len(scores), "tau": whole}}
    for n in (100, 300, 1000):
        if n >= len(scores):
            continue
        taus = [kendall_tau(scores[i], truth[i]) for i in (rng.permutation(len(scores))[:n] for _ in range(200))]
        out[str(n)] = {"tau_mean": float(np.mean(taus)), "tau_sd": float(np.std(taus, ddof=1)),
                       "mean_minus_all": float(np.mean(taus) - whole)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--archs", type=int, default=300)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    tune_allocator()
    device = torch.device("cpu")
    cfg, model, codes, _, state = load_supernet(args.checkpoint, device, {})
    splits, info = with_test_images(load_for(cfg, args.data_root, download=False), DATASETS.get(cfg.dataset),
                                    args.data_root)
    space = SPACES.get(cfg.space)
    keys, archs, _ = space.arch_set("3000", cfg.seed)
    keys, archs = keys[: args.archs], archs[: args.archs]
    truth = space_truth(space, space.TRUTH[cfg.dataset])[np.asarray(keys)]
    with torch.no_grad():
        lam = codes(archs)
    images = scoring_batches(splits, info, 0, BATCH, device)
    sizes = np.array([len(y) for _, y in images.batches], dtype=np.float64)
    per_batch = np.zeros((len(archs), len(images.batches)))
    t0 = time.perf_counter()
    for i, arch in enumerate(archs):
        for b, batch in enumerate(images.batches):
            per_batch[i, b] = score_arch(model, arch, lam[i], [batch])[0]
        if (i + 1) % 25 == 0:
            print(f"{i + 1}/{len(archs)} archs", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    full = (per_batch * sizes).sum(1) / sizes.sum()
    result = {"benchmark": "released_scoring_noise", "checkpoint": str(args.checkpoint),
              "config_hash": state["config_hash"], "k": cfg.k, "epochs": state.get("epochs", state.get("epoch")),
              "offpath_update": cfg.offpath_update, "sampling": cfg.sampling, "seed": cfg.seed,
              "archs": f"the first {len(archs)} of arch_set('3000', seed {cfg.seed})", "score_set": images.description,
              "truth": space.TRUTH[cfg.dataset], "s_per_arch_all_images": seconds / len(archs),
              "image_noise": image_noise(per_batch, sizes, truth), "arch_noise": arch_noise(full, truth),
              "machine": machine_info(device), "date": time.strftime("%Y-%m-%d")}
    emit(result, "released_scoring_noise", False, out=args.out)


if __name__ == "__main__":
    main()
