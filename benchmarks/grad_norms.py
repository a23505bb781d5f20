"""The gradient norm that `grad_clip` would see at each supernet step: how often a clip at 5 (as several public
NB201 supernet trainers do after backward) would act on the `narrow` preset's training.

Two sources, one supernet step per batch, the training run's own paths, codes and batches:
- `--from-scratch N`: the first N steps of a fresh run of the preset (`--k`, `--sampling`), trained as `train`
  trains it; the norm of every step's gradient is read just before its update (an optimizer pre-hook).
- `--snapshot PATH` (repeatable): the weights of a run's snapshot, `--steps` steps of the epoch after it with the
  run's own config; the gradients are computed and not applied (learning rate 0: the weights stay as they are).
The norm is the one `torch.nn.utils.clip_grad_norm_` computes: the 2-norm over every supernet parameter's gradient
(weight decay is added later, inside the optimizer step, so it is not part of it), before any clip: a run trained
with `grad_clip` is measured with the clip off (from scratch: as `--preset` has it, `narrow` does not clip).

  OMP_NUM_THREADS=1 python benchmarks/grad_norms.py --data-root DATA --from-scratch 300 [--k 1] [--sampling balanced]
  OMP_NUM_THREADS=1 python benchmarks/grad_norms.py --data-root DATA --snapshot RUN/snapshots/epoch-0150.pt --steps 100
The last line printed is the results as one JSON object (also written to benchmarks/results/, named by --name).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench.config import from_dict, from_preset, override  # noqa: E402
from kshot_bench.data import load_for  # noqa: E402
from kshot_bench.rundir import load_checkpoint, machine_info  # noqa: E402
from kshot_bench.runtime import device_layout, tune_allocator  # noqa: E402
from kshot_bench.train import Trainer  # noqa: E402

THRESHOLDS = (1.0, 2.0, 5.0, 10.0)


def total_norm(params) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.detach())
                                                       for p in params if p.grad is not None])))


def summary(norms) -> dict:
    a = np.asarray(norms)
    return {"steps": len(a), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()),
            "share_above": {str(t): float((a > t).mean()) for t in THRESHOLDS}}


def from_scratch(cfg, splits, steps: int) -> list:
    """The first `steps` steps of a fresh run, trained; the norm read before each update."""
    trainer = Trainer(cfg, Path(tempfile.mkdtemp()), splits, torch.device("cpu"), progress=False)
    norms = []
    trainer.opt.register_step_pre_hook(lambda opt, args, kwargs: norms.append(total_norm(trainer.params)))
    trainer.model.train()
    for step, (x, y) in enumerate(trainer.loader.epoch(0)):
        if step == steps:
            break
        trainer.iteration(x, y, step)
    return norms


def at_snapshot(path: Path, data_root: Path, steps: int) -> tuple:
    """`steps` supernet steps of the epoch after the snapshot, gradients computed, weights unchanged: the
    trainer holding them, the snapshot's epoch and the norms."""
    state = load_checkpoint(path, torch.device("cpu"))
    cfg = from_dict(state["config"]).replace(grad_clip=0.0)  # the norm before any clip of the run's own
    trainer = Trainer(cfg, Path(tempfile.mkdtemp()), load_for(cfg, data_root, download=False), torch.device("cpu"),
                      progress=False)
    trainer.model.load_state_dict(state["model"])
    trainer.codes.load_state_dict(state["codes"])
    for group in trainer.opt.param_groups:
        group["lr"] = 0.0  # SGD moves a weight by lr x its step: nothing moves
    norms = []
    trainer.opt.register_step_pre_hook(lambda opt, args, kwargs: norms.append(total_norm(trainer.params)))
    trainer.model.train()
    epoch = int(state["epochs"])
    for i, (x, y) in enumerate(trainer.loader.epoch(epoch)):
        if i == steps:
            break
        trainer.supernet_step(device_layout(x, trainer.device), y, epoch * trainer.steps_per_epoch + i)
    return trainer, epoch, norms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, required=True, help="CIFAR-10 (python batches or image folder)")
    p.add_argument("--from-scratch", type=int, default=0, metavar="N", help="the first N steps of a fresh run")
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--sampling", default="balanced")
    p.add_argument("--preset", default="narrow")
    p.add_argument("--snapshot", type=Path, action="append", default=[], help="a run's snapshot (repeatable)")
    p.add_argument("--steps", type=int, default=100, help="steps per snapshot")
    p.add_argument("--name", default="grad_norms", help="result file name (before -cpu.json)")
    args = p.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    rows = []
    if args.from_scratch:
        cfg = override(from_preset(args.preset, space="nb201", dataset="cifar10", k=args.k, seed=0),
                       {"sampling": args.sampling})
        t0 = time.perf_counter()
        norms = from_scratch(cfg, load_for(cfg, args.data_root, download=False), args.from_scratch)
        rows.append({"source": f"fresh run, preset {args.preset}, K={args.k}, {args.sampling}, seed 0: steps 0.."
                               f"{len(norms) - 1} (epoch 1, warm-up)", "grad_clip": cfg.grad_clip,
                     **summary(norms), "seconds": time.perf_counter() - t0})
    for path in args.snapshot:
        t0 = time.perf_counter()
        trainer, epoch, norms = at_snapshot(path, args.data_root, args.steps)
        cfg = trainer.cfg
        trained_clip = float(load_checkpoint(path, torch.device("cpu"))["config"].get("grad_clip", 0.0))
        rows.append({"source": f"{path} (K={cfg.k}, {cfg.sampling}, trained with grad_clip {trained_clip}): {len(norms)} "
                               f"steps of epoch {epoch + 1}, not applied, unclipped", "grad_clip": trained_clip,
                     **summary(norms), "seconds": time.perf_counter() - t0})
    if not rows:
        p.error("nothing to measure: pass --from-scratch N and/or --snapshot PATH")
    for row in rows:
        print(f"{row['source']}: median {row['median']:.2f}, p90 {row['p90']:.2f}, max {row['max']:.2f}, "
              f"share above 5 {row['share_above']['5.0']:.3f}", flush=True)
    emit({"benchmark": "grad_norms", "machine": machine_info(torch.device("cpu")), "threads": torch.get_num_threads(),
          "results": rows, "date": time.strftime("%Y-%m-%d")}, args.name, False)


if __name__ == "__main__":
    main()
