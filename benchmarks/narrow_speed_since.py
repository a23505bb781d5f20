"""C=5 NB201 training and scoring images/s of this code against the code of an earlier commit, paired in one run.

Issue 25 set its speed target against the code of the day it was filed (2026-12-02, commit b86ab3c, the
default `--baseline`): 2x that code's images/s for C=5 training and scoring on one thread. `narrow_speed.py`
times the CPU paths for narrow networks against the plain ops inside today's code (`ops.reference_ops()`),
which isolates that one change; this benchmark times the whole code of each commit as a user ran it, every
change between them included (for example the simplex-net step on the main thread at one thread).

How: the baseline commit is unpacked with `git archive` (or given as `--baseline-tree DIR`). Each round starts
one fresh worker process per variant (the order reverses every round); a worker puts its tree first on
`sys.path`, builds the `long` preset's Trainer at C=5 N=5 (batch 64, a simplex-net step every 4 supernet steps,
uniform paths: the only sampling the baseline has; warm-up skipped so the K-shot iteration is timed; the
automatic simplex-net step of its code) on random uint8 images, runs 4 untimed iterations, then times
`--steps` iterations with its loader's batches (augmentation included) and scores `--archs` uniform archs on
1,000 random images in batches of 500 with its own `score_arch`, each arch with its code. Reported per K: each
variant's median images/s and the median over rounds of the paired ratio current / baseline.

  OMP_NUM_THREADS=1 python benchmarks/narrow_speed_since.py [--baseline b86ab3c] [--rounds 5] [--quick]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(tree: str, k: int, steps: int, archs: int) -> None:
    """Runs inside a fresh process with `tree` first on sys.path; prints one JSON line."""
    sys.path.insert(0, tree)
    import numpy as np
    import torch

    import kshot_bench
    from kshot_bench.config import from_preset
    from kshot_bench.data import Splits
    from kshot_bench.runtime import tune_allocator
    from kshot_bench.search_space import nb201
    from kshot_bench.train import Trainer
    if (Path(tree) / "kshot_bench" / "scoring.py").exists():
        from kshot_bench.scoring import score_arch
    else:  # before the scoring module was split off rank
        from kshot_bench.rank import score_arch

    tune_allocator()
    torch.manual_seed(0)
    cfg = from_preset("long", k=k, channels=5, cells=5, warmup_epochs=0, epochs=1, snapshot_epochs="")
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (64 * (steps + 4), 3, 32, 32), dtype=np.uint8))
    y = torch.as_tensor(rng.integers(0, 10, len(x)))
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, Path(tmp) / "run", Splits(x, y, x, y, "random images"), torch.device("cpu"), progress=False)
        batches = t.loader.epoch(0)
        for step in range(4):
            t.iteration(*next(batches), step)
        t0 = time.perf_counter()
        n = 0
        for step in range(4, 4 + steps):
            xb, yb = next(batches)
            t.iteration(xb, yb, step)
            n += len(yb)
        train = n / (time.perf_counter() - t0)
        g = torch.Generator().manual_seed(1)
        sbatches = [(torch.randn(500, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
                     torch.randint(0, 10, (500,), generator=g)) for _ in range(2)]
        arch_rng = np.random.default_rng(1)
        arch_list = [tuple(nb201.sample(arch_rng)) for _ in range(archs)]
        with torch.no_grad():
            codes = t.codes(arch_list)
        t0 = time.perf_counter()
        for arch, code in zip(arch_list, codes):
            score_arch(t.model, arch, code, sbatches)
        score = archs * 1000 / (time.perf_counter() - t0)
    stray = [m.__file__ for name, m in sys.modules.items()
             if name.startswith("kshot_bench") and getattr(m, "__file__", None)
             and not Path(m.__file__).resolve().is_relative_to(Path(tree).resolve())]
    if stray:  # an installed copy of the package must not mix into the tree being timed
        raise SystemExit(f"modules from outside {tree}: {stray}")
    print(json.dumps({"train_images_per_s": train, "score_images_per_s": score, "package": kshot_bench.__file__,
                      "simplex_step": getattr(t, "simplex_strategy", None) or t.simplex_mode}))


def run_worker(tree: Path, k: int, steps: int, archs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", str(tree), "--ks", str(k), "--steps", str(steps),
                          "--archs", str(archs)], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                         env=dict(os.environ, PYTHONPATH=""))
    if out.returncode:
        raise SystemExit(f"worker on {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", default="b86ab3c", help="the commit to compare with (issue 25 was filed on it)")
    p.add_argument("--baseline-tree", type=Path, default=None, help="an unpacked tree of --baseline (else git archive)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=24, help="timed training iterations per worker")
    p.add_argument("--archs", type=int, default=6, help="archs scored per worker")
    p.add_argument("--ks", default="1,4")
    p.add_argument("--quick", action="store_true", help="2 rounds, 4 steps, 2 archs (a smoke run)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, int(args.ks), args.steps, args.archs)
    if args.quick:
        args.rounds, args.steps, args.archs = 2, 4, 2
    sys.path.insert(0, str(ROOT))
    import torch

    from benchmarks._common import emit, paired_rates
    from kshot_bench.rundir import machine_info

    with tempfile.TemporaryDirectory() as tmp:
        base = args.baseline_tree
        if base is None:
            base = Path(tmp) / args.baseline
            base.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], capture_output=True, check=True)
            subprocess.run(["tar", "x", "-C", str(base)], input=archive.stdout, check=True)
        trees = {"baseline": base, "current": ROOT}
        current = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip() or "working tree"
        results = {}
        for k in [int(v) for v in args.ks.split(",")]:
            runs = {name: [] for name in trees}
            for r in range(args.rounds):
                for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                    runs[name].append(run_worker(trees[name], k, args.steps, args.archs))
            rates = {name: {kind: [w[f"{kind}_images_per_s"] for w in runs[name]] for kind in ("train", "score")}
                     for name in trees}
            results[f"C5_K{k}"] = {"simplex_step": {name: runs[name][0]["simplex_step"] for name in trees},
                                   **paired_rates(rates, "baseline", "current", f"K={k}")}
    result = {"benchmark": "narrow_speed_since", "machine": machine_info(torch.device("cpu")),
              "protocol": {"baseline": args.baseline, "current": current, "rounds": args.rounds, "steps": args.steps,
                           "archs": args.archs, "batch": 64, "simplex_interval": 4, "score_images": 1000,
                           "score_batch": 500, "preset": "long at C=5 N=5, uniform paths, warm-up skipped",
                           "images": "random uint8 (training, through each code's loader) and random floats (scoring)"},
              "results": results, "date": time.strftime("%Y-%m-%d")}
    emit(result, f"narrow_speed_since-{args.baseline}-t{torch.get_num_threads()}", args.quick, out=args.out)


if __name__ == "__main__":
    main()
