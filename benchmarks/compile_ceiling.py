"""What `torch.compile` could give the C=5 NB201 supernet on one CPU thread, at best (issue 25's speed item).

The supernet runs a different path (a different graph) at every step and for every scored arch, so a compiled
supernet would recompile for each new arch. This benchmark measures the best case instead: one arch's path held
fixed and compiled once (inductor, the default backend, over the plain PyTorch ops of `ops.reference_ops()`),
then timed in steady state against the same path in eager mode, with the plain ops (`reference`) and with the
package's CPU paths for narrow networks (`fast`, what runs today). Also recorded: the one-off compile time of each
path, which the real supernet would pay per arch.

Protocol: the `narrow` preset's network (C=5, N=5), K in `--ks` with the uniform code, `--archs` ENN-balanced archs
(seed 0); per arch and round, every variant in turn (the order reverses every round): `--steps` training passes of
64 images (forward, cross-entropy, backward; no optimiser) and scoring of 1,000 images in batches of 500 under
inference mode. Reported per K: each variant's median images/s over archs and rounds, and the median of the paired
ratios against `reference` (same arch and round). Agreement: the compiled path's loss and scoring logits against
eager, to float rounding.

  OMP_NUM_THREADS=1 python benchmarks/compile_ceiling.py [--rounds 5] [--archs 3] [--quick]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.search_space import nb201  # noqa: E402
from kshot_bench.supernet import ops  # noqa: E402
from kshot_bench.supernet.nb201 import KShotNB201  # noqa: E402

VARIANTS = ("reference", "fast", "compiled")


def rate(fn, repeats: int, images: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats * images / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="training passes of 64 images per variant, arch and round")
    p.add_argument("--archs", type=int, default=3)
    p.add_argument("--ks", default="1,4")
    p.add_argument("--quick", action="store_true", help="2 rounds, 2 steps, 1 arch, K=1 (a smoke run)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.rounds, args.steps, args.archs, args.ks = 2, 2, 1, "1"
    rng = np.random.default_rng(0)
    archs = [tuple(nb201.sample(rng, sampling="balanced")) for _ in range(args.archs)]
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(500, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    xt = torch.randn(64, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    yt = torch.randint(0, 10, (64,), generator=g)
    ctx = {"reference": ops.reference_ops, "fast": contextlib.nullcontext, "compiled": ops.reference_ops}
    results = {}
    for k in [int(v) for v in args.ks.split(",")]:
        torch.manual_seed(0)
        model = KShotNB201(k, C=5, N=5)
        code = torch.full((k,), 1.0 / k)

        def train(f):
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(f(xt), yt)
            loss.backward()
            return loss.detach()

        def score(f):
            with torch.inference_mode():
                for _ in range(2):
                    f(xs)

        rates = {v: {"train": [], "score": []} for v in VARIANTS}
        compile_s, loss_diff, logit_diff = [], [], []
        for arch in archs:
            eager = lambda x, a=arch: model(x, a, code)  # noqa: E731
            with ops.reference_ops():
                torch._dynamo.reset()
                compiled = torch.compile(eager)
                t0 = time.perf_counter()
                loss_c = train(compiled)
                with torch.inference_mode():
                    logits_c = compiled(xs)
                compile_s.append(time.perf_counter() - t0)
                loss_diff.append(abs(float(loss_c - train(eager))))
                with torch.inference_mode():
                    logit_diff.append(float((logits_c - eager(xs)).abs().max()))
            fns = {"reference": eager, "fast": eager, "compiled": compiled}
            for r in range(args.rounds):
                for v in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
                    with ctx[v]():
                        rates[v]["train"].append(rate(lambda: train(fns[v]), args.steps, len(yt)))
                        rates[v]["score"].append(rate(lambda: score(fns[v]), 1, 2 * len(xs)))
        row = {"compile_s_per_path": compile_s, "max_abs_loss_diff": max(loss_diff),
               "max_abs_logit_diff": max(logit_diff)}
        for kind in ("train", "score"):
            ref = rates["reference"][kind]
            row[kind] = {f"{v}_images_per_s": statistics.median(rates[v][kind]) for v in VARIANTS}
            for v in ("fast", "compiled"):
                row[kind][f"{v}_paired_ratio_median"] = statistics.median(a / b for a, b in zip(rates[v][kind], ref))
            row[kind]["raw"] = {v: rates[v][kind] for v in VARIANTS}
        results[f"C5_K{k}"] = row
        print(f"K={k}: train x{row['train']['fast_paired_ratio_median']:.2f} fast, "
              f"x{row['train']['compiled_paired_ratio_median']:.2f} compiled; score "
              f"x{row['score']['fast_paired_ratio_median']:.2f} fast, x{row['score']['compiled_paired_ratio_median']:.2f} "
              f"compiled; compile {statistics.median(compile_s):.0f} s a path", flush=True)
    result = {"benchmark": "compile_ceiling", "machine": machine_info(torch.device("cpu")),
              "protocol": {"rounds": args.rounds, "steps": args.steps, "archs": [list(a) for a in archs],
                           "batch": 64, "score_images": 1000, "score_batch": 500, "code": "uniform",
                           "compiled": "torch.compile(default inductor) of one fixed path over the plain ops",
                           "archs_sampled": "balanced, seed 0"},
              "results": results, "date": time.strftime("%Y-%m-%d")}
    emit(result, f"compile_ceiling-t{torch.get_num_threads()}", args.quick, out=args.out)


if __name__ == "__main__":
    main()
