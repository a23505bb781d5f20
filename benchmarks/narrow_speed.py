"""Training and scoring images/s of the NB201 supernet with the CPU paths for narrow networks
(kshot_bench/supernet/ops.py: NCHW layout, the small-channel ops and cells run by source node) against the code
before them (`ops.reference_ops()`: the plain PyTorch ops on the loaders' channels_last batches, cells run edge by
edge), paired in one run; and, as a third variant, the CPU paths with cells run edge by edge (`ops.cells_by_edge()`),
which isolates the cells by source node (`supernet.nb201.run_cell_by_source`, 2026-12-04); and a fourth, the full CPU
paths with the simplex-net step path by path (`sequential_step`), which isolates the batched step, automatic on one
thread at C <= 8 since 2026-12-04 (the same as `fast` where the automatic step is not batched).

Protocol (issue 25): the `narrow` preset's network and steps (C=5, N=5, batch 64, a simplex-net step every 4
supernet steps, ENN-balanced paths; warm-up skipped so the K-shot iteration is timed), on random images
through the Trainer's own loader. Per K and channel width, one Trainer per variant, all with the same seed
(at one thread the reference runs the simplex-net step on one worker thread, the automatic choice before
train.resolve_simplex_step, which now runs it as one batched pass at C <= 8 and path by path on the main thread
otherwise; the other variants take the automatic choice);
each round runs every variant in turn (the order reverses every round) for `--steps` iterations
(`Trainer.iteration`: supernet step + its simplex-net steps) and scores `--archs` archs on 1,000 images in
batches of 500 (`rank.score_arch`, each arch with its own code). Reported: each variant's median images/s
and the median over rounds of the paired ratios of fast over each other variant (same round, same steps and
archs).
Also checks, per K, that both variants' first scores agree (the same function to float rounding).

  OMP_NUM_THREADS=1 python benchmarks/narrow_speed.py [--rounds 5] [--channels 5,16] [--quick]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit, paired_rates  # noqa: E402
from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.data import Splits  # noqa: E402
from kshot_bench.scoring import score_arch  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.search_space import nb201  # noqa: E402
from kshot_bench.supernet import ops  # noqa: E402
from kshot_bench.train import Trainer  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402

VARIANTS = {"reference": ops.reference_ops, "by_edge": ops.cells_by_edge, "sequential_step": contextlib.nullcontext,
            "fast": contextlib.nullcontext}


def make_trainer(run_dir: Path, k: int, channels: int) -> Trainer:
    cfg = from_preset("narrow", k=k, channels=channels, warmup_epochs=0, epochs=1, snapshot_epochs="")
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (640, 3, 32, 32), dtype=np.uint8))
    y = torch.as_tensor(rng.integers(0, 10, 640))
    return Trainer(cfg, run_dir, Splits(x, y, x, y, "random images"), torch.device("cpu"), progress=False)


def variant_trainer(name: str, run_dir: Path, k: int, channels: int) -> Trainer:
    """The Trainer a variant runs: the reference computes the simplex-net step as the code before the changes did
    (at one thread on one worker thread: the same bits as path by path), `sequential_step` path by path on the
    main thread (the automatic one-thread step before the batched pass became automatic at C <= 8), the others
    take the automatic choice."""
    torch.manual_seed(0)
    t = make_trainer(run_dir, k, channels)
    if name == "reference" and torch.get_num_threads() == 1:
        t.simplex_strategy, t.simplex_threads = "threaded", 1
    elif name == "sequential_step" and t.simplex_strategy == "batched":
        t.simplex_strategy = "sequential"
    return t


def score_batches(n: int = 1000, batch: int = 500):
    """Random images in the layout rank's scoring batches have (channels_last, as the loaders give them)."""
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (batch,), generator=g)) for _ in range(n // batch)]


def train_rate(t: Trainer, batches, first_step: int) -> float:
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        t.iteration(x, y, first_step + i)
    return sum(len(y) for _, y in batches) / (time.perf_counter() - t0)


def score_rate(t: Trainer, archs, batches) -> float:
    with torch.no_grad():
        codes = t.codes(archs)
    t0 = time.perf_counter()
    for arch, code in zip(archs, codes):
        score_arch(t.model, arch, code, batches)
    return len(archs) * sum(len(y) for _, y in batches) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=24, help="training iterations per variant and round")
    p.add_argument("--archs", type=int, default=6, help="archs scored per variant and round")
    p.add_argument("--channels", default="5", help="comma-separated C values (5: the narrow preset; 16: NB201's)")
    p.add_argument("--ks", default="1,4")
    p.add_argument("--quick", action="store_true", help="2 rounds, 4 steps, 2 archs (a smoke run)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.rounds, args.steps, args.archs = 2, 4, 2
    tune_allocator()  # as the CLI runs
    rng = np.random.default_rng(0)
    archs = [nb201.sample(rng, sampling="balanced") for _ in range(args.archs)]
    sbatches = score_batches()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in [int(v) for v in args.channels.split(",")]:
            for k in [int(v) for v in args.ks.split(",")]:
                trainers = {name: variant_trainer(name, Path(tmp) / f"{name}-c{c}-k{k}", k, c) for name in VARIANTS}
                batches = [b for _, b in zip(range(args.steps), trainers["fast"].loader.epoch(0))]
                with torch.no_grad():  # the same function: first scores of the fresh supernets agree
                    code = trainers["fast"].codes([archs[0]])[0]
                    with ops.reference_ops():
                        ref = score_arch(trainers["reference"].model, archs[0], code, sbatches[:1])
                    fast = score_arch(trainers["fast"].model, archs[0], code, sbatches[:1])
                rates = {name: {"train": [], "score": []} for name in VARIANTS}
                for r in range(args.rounds):
                    order = list(VARIANTS) if r % 2 == 0 else list(VARIANTS)[::-1]
                    for name in order:
                        with VARIANTS[name]():
                            rates[name]["train"].append(train_rate(trainers[name], batches, r * args.steps))
                            rates[name]["score"].append(score_rate(trainers[name], archs, sbatches))
                row = {"first_scores": {"reference": ref, "fast": fast},
                       **paired_rates(rates, "reference", "fast", f"C={c} K={k}"),
                       "by_source": paired_rates(rates, "by_edge", "fast", f"C={c} K={k}, cells by source / by edge"),
                       "batched_step": paired_rates(rates, "sequential_step", "fast",
                                                    f"C={c} K={k}, simplex-net step batched / path by path")}
                results[f"C{c}_K{k}"] = row
    result = {"benchmark": "narrow_speed", "machine": machine_info(torch.device("cpu")),
              "protocol": {"rounds": args.rounds, "steps": args.steps, "archs": args.archs, "batch": 64,
                           "simplex_interval": 4, "score_images": 1000, "score_batch": 500,
                           "archs_sampled": "balanced, seed 0", "ops_thresholds": {
                               "matmul_1x1_channels": ops.MATMUL_1X1_CHANNELS,
                               "small_3x3_channels": ops.SMALL_3X3_CHANNELS}},
              "results": results, "date": time.strftime("%Y-%m-%d")}
    threads = torch.get_num_threads()
    emit(result, f"narrow_speed-t{threads}", args.quick, out=args.out)


if __name__ == "__main__":
    main()
