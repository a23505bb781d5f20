"""Scoring each group of archs that compute the same function once (scoring.computation_groups: on NB201 the
same live edges and the same code) against scoring every arch on its own, paired in one run, on a one-shot
NB201 supernet of the `narrow` preset (C=5, N=5; fresh seeded weights: the time of a forward pass does not
depend on the values).

Protocol: the first `--archs` archs of the preset's seeded arch set (a uniform sample of the 15,625), `--images`
random images in batches of `--batch`. Measured: the time of scoring each of them on its own (`score_arch`, each
arch timed), and of `score_each` on the same archs (each group once), with the same numbers checked.
Projected from the per-arch times: the share of the one-by-one time that scoring the 1,000-arch and 3,000-arch
sets of the `narrow` preset and all 15,625 archs needs when grouped. For a uniform sample of a set, that share
is mean(t / g) / mean(t), t an arch's time and g the size of its group in that set (a group of g archs is
computed once, so each member costs t / g); an unbiased ratio estimate, not a timing of those sets.

  OMP_NUM_THREADS=1 python benchmarks/score_groups.py [--archs 200] [--images 500] [--quick]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.models import build_supernet  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.scoring import computation_groups, score_arch, score_each  # noqa: E402
from kshot_bench.search_space import SPACES  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, default=200)
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="20 archs, 64 images (a smoke run)")
    args = p.parse_args()
    if args.quick:
        args.archs, args.images, args.batch = 20, 64, 64
    tune_allocator()  # as the CLI runs
    cfg = from_preset("narrow", k=1)
    space = SPACES.get("nb201")
    torch.manual_seed(0)
    net = build_supernet(cfg).eval()
    one = torch.ones(1)
    sets = {name: space.arch_set(spec, cfg.seed)[1] for name, spec in
            (("1000", cfg.archs), ("3000", cfg.final_archs or cfg.archs), ("all", "all"))}
    archs = sets["1000"][:args.archs]
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(args.batch, 3, 32, 32, generator=g), torch.randint(0, 10, (args.batch,), generator=g))
               for _ in range(max(1, args.images // args.batch))]
    n_images = sum(len(y) for _, y in batches)
    codes = one.expand(len(archs), 1)

    score_arch(net, archs[0], one, batches)  # warm-up, untimed
    times, alone = [], []
    t0 = time.perf_counter()
    for a in archs:
        t = time.perf_counter()
        alone.append(score_arch(net, a, one, batches))
        times.append(time.perf_counter() - t)
    alone_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    grouped = score_each(net, archs, codes, batches)
    grouped_s = time.perf_counter() - t0
    n_groups = len(computation_groups(net, archs, codes))

    projected = {}
    for name, members in sets.items():
        size = collections.Counter(net.computation_key(a) for a in members)
        cost = [t / size[net.computation_key(a)] for a, t in zip(archs, times)]
        projected[name] = {"archs": len(members), "computations": len(size),
                           "grouped_time_share": sum(cost) / sum(times)}
    print(f"{len(archs)} archs ({n_groups} computations) x {n_images} images: one by one {alone_s:.1f} s, grouped "
          f"{grouped_s:.1f} s (x{alone_s / grouped_s:.2f}); same numbers: {grouped == alone}", flush=True)
    for name, row in projected.items():
        print(f"  projected for {row['archs']:,} archs ({row['computations']:,} computations): grouped takes "
              f"{row['grouped_time_share']:.2f} of the one-by-one time (x{1 / row['grouped_time_share']:.2f})")
    result = {"benchmark": "score_groups", "machine": machine_info(torch.device("cpu")),
              "protocol": {"supernet": "NB201 K=1, preset narrow (C=5, N=5), fresh seeded weights",
                           "archs": f"the first {len(archs)} of the preset's seeded 1,000-arch set",
                           "images": n_images, "batch": args.batch},
              "results": {"archs": len(archs), "computations": n_groups, "one_by_one_s": alone_s,
                          "grouped_s": grouped_s, "ratio": alone_s / grouped_s, "same_numbers": grouped == alone,
                          "projected": projected},
              "date": time.strftime("%Y-%m-%d")}
    emit(result, f"score_groups-t{torch.get_num_threads()}", args.quick)


if __name__ == "__main__":
    main()
