"""Where the time of a C=5 training iteration and of scoring goes, and what that allows (issue 25, item 3).

The same setting as benchmarks/narrow_speed.py (the `narrow` preset's network and steps on random images,
K=1 and K=4, the plain ops, the CPU paths with cells run edge by edge and the full CPU paths in turn: its
VARIANTS), under torch.profiler: the self CPU
time of every ATen op, grouped into

  arithmetic   the convolutions and matrix products (forward and backward): the work itself;
  other        everything else: BN, ReLU, pooling, sums of edges, layout copies, the optimiser, the autograd
               and Python dispatch between ops.

From it, the ceiling of any speed-up that leaves the arithmetic kernels as they are (fusing or removing every
other op, exact or not): the reference's time over the fast path's arithmetic time, `ceiling_over_reference`.
Every timing of a variant does the same work (the same steps, so the same paths; the same archs); unprofiled
times are the median of 3 runs. The profiler's cost per op call lands mostly in `other` and in the unprofiled
time not at all, so the ceiling is not understated by it. Reported per K, for training and scoring.

  OMP_NUM_THREADS=1 python benchmarks/narrow_profile.py [--steps 24] [--archs 6] [--quick]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from benchmarks.narrow_speed import VARIANTS, score_batches, score_rate, train_rate, variant_trainer  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.search_space import nb201  # noqa: E402

ARITHMETIC = {"aten::mkldnn_convolution", "aten::convolution_backward", "aten::thnn_conv2d",
              "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward", "aten::bmm", "aten::mm", "aten::addmm",
              "aten::baddbmm"}


def self_times(prof) -> dict:
    """Self CPU seconds per op name (ATen ops and the autograd/Function frames around them)."""
    out = collections.Counter()
    for e in prof.key_averages():
        out[e.key] += e.self_cpu_time_total / 1e6
    return out


def profiled(fn, repeats: int = 3) -> tuple:
    """(seconds unprofiled, seconds profiled, self times): `fn` run plain (the median of `repeats` runs), then
    once under the profiler; every run does the same work (the same steps or archs)."""
    plain = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        plain.append(time.perf_counter() - t0)
    plain = statistics.median(plain)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        fn()
        traced = time.perf_counter() - t0
    return plain, traced, self_times(prof)


def breakdown(plain: float, traced: float, times: dict, images: int) -> dict:
    total = sum(times.values())
    arith = sum(v for k, v in times.items() if k in ARITHMETIC)
    top = sorted(times.items(), key=lambda kv: -kv[1])[:12]
    return {"images_per_s": images / plain, "images_per_s_profiled": images / traced, "seconds": plain,
            "self_s": total, "arithmetic_s": arith, "arithmetic_share": arith / total,
            "top_ops_s": {k: round(v, 4) for k, v in top}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=24, help="training iterations per variant")
    p.add_argument("--archs", type=int, default=6, help="archs scored per variant")
    p.add_argument("--ks", default="1,4")
    p.add_argument("--quick", action="store_true", help="4 steps, 2 archs (a smoke run)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.steps, args.archs = 4, 2
    tune_allocator()
    rng = np.random.default_rng(0)
    archs = [nb201.sample(rng, sampling="balanced") for _ in range(args.archs)]
    sbatches = score_batches()
    n_score = args.archs * sum(len(y) for _, y in sbatches)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in [int(v) for v in args.ks.split(",")]:
            row = {}
            for name, context in VARIANTS.items():
                t = variant_trainer(name, Path(tmp) / f"{name}-k{k}", k, 5)
                batches = [b for _, b in zip(range(args.steps), t.loader.epoch(0))]
                with context():
                    train_rate(t, batches[:4], 0)  # warm-up: first calls, caches, the simplex-net step's threads
                    tr = profiled(lambda: train_rate(t, batches, 4))  # the same steps (paths) every time
                    sc = profiled(lambda: score_rate(t, archs, sbatches))
                row[name] = {"train": breakdown(*tr, images=args.steps * 64), "score": breakdown(*sc, images=n_score)}
            for kind in ("train", "score"):
                ref, fast = row["reference"][kind], row["fast"][kind]
                # the reference's seconds over the seconds of the fast path's arithmetic kernels (same work)
                row[f"{kind}_ceiling_over_reference"] = ref["seconds"] / fast["arithmetic_s"]
                row[f"{kind}_ratio"] = ref["seconds"] / fast["seconds"]
                print(f"K={k} {kind}: reference {ref['images_per_s']:.0f} images/s, fast {fast['images_per_s']:.0f} "
                      f"(x{row[f'{kind}_ratio']:.2f}); "
                      f"arithmetic {100 * fast['arithmetic_share']:.0f}% of the fast path "
                      f"({100 * ref['arithmetic_share']:.0f}% of the reference); ceiling with the arithmetic as it is: "
                      f"x{row[f'{kind}_ceiling_over_reference']:.2f} over the reference", flush=True)
            results[f"C5_K{k}"] = row
    result = {"benchmark": "narrow_profile", "machine": machine_info(torch.device("cpu")),
              "protocol": {"steps": args.steps, "archs": args.archs, "batch": 64, "simplex_interval": 4,
                           "score_images": 1000, "score_batch": 500, "archs_sampled": "balanced, seed 0",
                           "arithmetic_ops": sorted(ARITHMETIC)},
              "results": results, "date": time.strftime("%Y-%m-%d")}
    emit(result, f"narrow_profile-t{torch.get_num_threads()}", args.quick, out=args.out)


if __name__ == "__main__":
    main()
