"""What a K-shot epoch costs against a one-shot epoch, per simplex-net training variant (issue 45, item 4).

For each space and preset (NB201 `narrow`, NAS-Bench-Macro `cpu`), trainers are built past their warm-up (the
phase that decides an epoch's cost) on the real training images: one-shot (K=1), K=4 with a fixed code (the
floor: the K copies' merge, no simplex-net), one-shot under `offpath_update=decay` (what zero-filled gradients
cost: SGD then updates every used weight each step), and K=4 under each simplex-net variant (simplex.SIMPLEX_VARIANTS
whose cost differs: the warm-up code and the output layer's scale do not change a step after warm-up). Each round
times `--steps` consecutive iterations (a multiple of every simplex_interval) of each trainer, in a fresh order per
round, on the same batches; the ratio of each to the one-shot time of the same round is the paired cost ratio.
The median over rounds is reported. Run on one torch thread, nothing else on the core.

  OMP_NUM_THREADS=1 python benchmarks/kshot_cost.py --data-root ~/data/cifar10 [--rounds 5] [--steps 24] \
      [--variants joint,joint-shared] --out FILE
The last line printed is the results as one JSON object (also written to --out).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.data import load_for  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.simplex import SIMPLEX_VARIANTS  # noqa: E402
from kshot_bench.train import Trainer  # noqa: E402

SPACES = {"nb201": "narrow", "macro": "cpu"}
TIMED_VARIANTS = ("paper", "cpu", "paths4", "joint", "joint-shared")  # the others cost what one of these costs after warm-up


def configs(space: str, preset: str, variants=TIMED_VARIANTS) -> dict:
    base = dict(space=space, warmup_epochs=0, snapshot_epochs="")
    out = {"one-shot": from_preset(preset, k=1, **base),
           "one-shot, off-path decay": from_preset(preset, k=1, offpath_update="decay", **base),
           "K=4 fixed code": from_preset(preset, k=4, code="uniform", **base)}
    for name in variants:
        out[f"K=4 {name}"] = from_preset(preset, k=4, **base).replace(**SIMPLEX_VARIANTS.get(name))
    return out


def time_steps(trainer: Trainer, batches, start: int) -> float:
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        trainer.iteration(x, y, start + i)
    return time.perf_counter() - t0


def measure(space: str, preset: str, data_root: Path, rounds: int, steps: int, seed: int = 0,
            variants=TIMED_VARIANTS) -> dict:
    cfgs = configs(space, preset, variants)
    splits = load_for(cfgs["one-shot"], data_root, download=False)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: Trainer(cfg, Path(tmp) / str(i), splits, torch.device("cpu"), progress=False)
                    for i, (name, cfg) in enumerate(cfgs.items())}
        loader = trainers["one-shot"].loader
        batches = []
        for epoch in range(1 + (rounds + 1) * steps // len(loader)):
            batches += list(loader.epoch(epoch))
        for name, t in trainers.items():  # one untimed pass: allocator, thread pools, lazy plans
            time_steps(t, batches[:steps], 0)
        rng = np.random.default_rng(seed)
        times = {name: [] for name in trainers}
        for r in range(rounds):
            chunk = batches[(r + 1) * steps:(r + 2) * steps]
            for name in rng.permutation(list(trainers)):
                times[name].append(time_steps(trainers[name], chunk, (r + 1) * steps))
            print(f"{space} round {r + 1}: " + ", ".join(f"{n} {times[n][-1] / times['one-shot'][-1]:.2f}"
                                                        for n in trainers), file=sys.stderr, flush=True)
    base = times["one-shot"]
    return {"preset": preset, "batch_size": cfgs["one-shot"].batch_size, "steps_per_round": steps, "rounds": rounds,
            "configs": {name: {"fields": {f: getattr(cfg, f) for f in ("k", "code", "simplex_step", "simplex_interval",
                                                                        "simplex_paths", "offpath_update",
                                                                        "kshot_copies")},
                               "ms_per_step_median": 1e3 * statistics.median(times[name]) / steps,
                               "ratio_to_one_shot_median": statistics.median(a / b for a, b in zip(times[name], base)),
                               "ratios": [a / b for a, b in zip(times[name], base)]}
                        for name, cfg in cfgs.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--spaces", default="nb201,macro")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=24, help="iterations per round (a multiple of every interval)")
    p.add_argument("--variants", default=",".join(TIMED_VARIANTS),
                   help="simplex-net variants to time beside the three fixed configs, comma-separated")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    variants = tuple(v for v in args.variants.split(",") if v)
    for v in variants:
        SIMPLEX_VARIANTS.get(v)  # an unknown name fails here, naming the known ones
    tune_allocator()
    results = {space: measure(space, SPACES[space], args.data_root, args.rounds, args.steps, variants=variants)
               for space in args.spaces.split(",")}
    emit({"benchmark": "kshot_cost", "target": "the default variant's K=4 epoch at most x1.15 a one-shot epoch",
          "results": results, "threads": torch.get_num_threads(), "machine": machine_info(torch.device("cpu")),
          "command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d")}, "kshot_cost", False, out=args.out)


if __name__ == "__main__":
    main()
