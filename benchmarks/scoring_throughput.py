"""Scoring throughput: images/s and archs/s of per-arch evaluation on a trained-size supernet.

Protocol: NB201 C=16, N=5, CIFAR-size inputs, scoring batch 512, a fixed set of `--images`
random images (score_arch, the function `kshot-bench rank` uses: inference mode,
BN with batch statistics, the arch's code), the same seeded arch list for every variant, median
of 5 rounds (each round runs every variant once, in turn). Variants, each in a fresh process so the allocator setting applies per variant:
  supernet_k1 / supernet_k4   the K-shot supernet (only live ops computed), allocator tuned (as the CLI runs)
  supernet_k1_untuned         the same without kshot_bench.runtime.tune_allocator
  standalone_all_edges        a stand-alone NB201 network computing every non-none edge (batch-stat BN),
                              the plain way, allocator tuned: what pruning dead work buys
Target (issue 3): at least 2 x 307 images/s (a widely used NB201 reference implementation, batch 512,
on this machine's 2 cores). Also prints the time to rank all 15,625 and the 6,466 unique archs.

  python benchmarks/scoring_throughput.py [--quick]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
REFERENCE_IMAGES_PER_S = 307.0

CHILD = r"""
import sys, json, time, statistics
sys.path.insert(0, {root!r})
if {tuned}:
    from kshot_bench.runtime import tune_allocator; tune_allocator()
import numpy as np, torch
from kshot_bench.search_space import nb201
from kshot_bench.supernet.nb201 import KShotNB201, NB201Network
from kshot_bench.scoring import score_arch
torch.manual_seed(0)
archs = [nb201.sample(np.random.default_rng([0, i])) for i in range({n_archs})]
g = torch.Generator().manual_seed(1)
batches = [(torch.randn(min(512, {images} - i), 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
            torch.randint(0, 10, (min(512, {images} - i),), generator=g)) for i in range(0, {images}, 512)]
variant = {variant!r}
if variant.startswith("supernet"):
    k = {k}
    net = KShotNB201(k)
    code = torch.full((k,), 1.0 / k)
    run = lambda a: score_arch(net, a, code, batches)
else:
    nets = {{a: NB201Network(a, prune=False).train() for a in archs}}
    run = lambda a: score_arch(lambda x, arch, code: nets[arch](x), a, None, batches)
run(archs[0])
t0 = time.perf_counter()
for a in archs:
    run(a)
print(json.dumps({{"round_s": [time.perf_counter() - t0]}}))
"""


def run_round(variant, k, tuned, images, n_archs) -> float:
    """One round in a fresh process: seconds to score the arch list."""
    code = CHILD.format(root=str(ROOT), tuned=tuned, n_archs=n_archs, images=images, variant=variant, k=k)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])["round_s"][0]


def main():
    from kshot_bench.rundir import machine_info
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--images", type=int, default=1024, help="scoring images per arch (default 1024)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    n_archs, rounds = (6, 2) if args.quick else (12, 5)
    variants = [("supernet_k1", 1, True), ("supernet_k4", 4, True), ("supernet_k1_untuned", 1, False),
                ("standalone_all_edges", 1, True)]
    started = time.time()
    times = {name: [] for name, _, _ in variants}
    for r in range(rounds):  # rounds outermost: drift on the machine hits every variant alike
        for name, k, tuned in variants:
            times[name].append(run_round(name, k, tuned, args.images, n_archs))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {args.images * n_archs / t[-1]:.0f} img/s"
                                                     for n, t in times.items()), flush=True)
    results = {}
    for name, t in times.items():
        med = statistics.median(t)
        results[name] = {"round_s": t, "images_per_s": args.images * n_archs / med, "archs_per_s": n_archs / med}
        print(f"  {name:<22} {results[name]['images_per_s']:8.0f} images/s  {results[name]['archs_per_s']:.3f} archs/s")
    best = results["supernet_k4"]
    per_arch = {n: args.images / r["images_per_s"] for n, r in results.items()}
    estimate = {}
    for images in (500, 5000):
        s_per_arch = images / best["images_per_s"]
        estimate[f"{images}_images"] = {"all_15625_h": 15625 * s_per_arch / 3600, "unique_6466_h": 6466 * s_per_arch / 3600}
    result = {
        "benchmark": "scoring_throughput",
        "protocol": f"NB201 C=16 N=5, batch 512, {args.images} images per arch, {n_archs} seeded archs, "
                    f"median of {rounds} rounds, a fresh process per variant and round, rounds interleaved",
        "machine": machine_info(torch.device("cpu")),
        "variants": results,
        "seconds_per_arch": per_arch,
        "k1_vs_reference_307": results["supernet_k1"]["images_per_s"] / REFERENCE_IMAGES_PER_S,
        "k4_vs_reference_307": results["supernet_k4"]["images_per_s"] / REFERENCE_IMAGES_PER_S,
        "allocator_speedup": results["supernet_k1"]["images_per_s"] / results["supernet_k1_untuned"]["images_per_s"],
        "pruning_speedup": results["supernet_k1"]["images_per_s"] / results["standalone_all_edges"]["images_per_s"],
        "estimated_rank_time_k4": estimate,
        "wall_s": time.time() - started,
    }
    print(f"supernet K=1 {result['k1_vs_reference_307']:.2f}x, K=4 {result['k4_vs_reference_307']:.2f}x the reference "
          f"307 images/s (target >= 2); allocator tuning {result['allocator_speedup']:.2f}x; "
          f"live-ops-only vs all edges {result['pruning_speedup']:.2f}x")
    for images, e in estimate.items():
        print(f"ranking at {images.replace('_', ' ')} per arch (K=4): all 15,625 archs {e['all_15625_h']:.1f} h, "
              f"6,466 unique {e['unique_6466_h']:.1f} h")
    emit(result, "scoring_throughput", args.quick, "cpu", args.out)


if __name__ == "__main__":
    main()
