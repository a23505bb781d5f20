"""Why the off-path rule matters: weight norms and effective steps of the edge convs against the trunk's, per rule
(issue 44, item 3).

The edge convs of an NB201 cell feed BN without affine, so their scale is free: SGD's step on such a weight moves
its direction by about lr * |g| / |W|, and |g| scales as 1 / |W|, so the effective step grows as the weight
shrinks. Weight decay sets the shrinking; under `offpath_update=none` an edge conv only decays on the 18-30% of
steps it is on the path, under `decay` on every step after its first use (as the stem, the reductions and every
weight of the released trainers).

This trains the `narrow` one-shot supernet (K=1, C=5, N=5, balanced paths) on its own cosine schedule of
`--epochs` for each rule, same seed and data, and records per epoch and per group of weights (edge 1x1 convs,
edge 3x3 convs, the reductions' convs, the stem):
  rms           the RMS of the group's weights at the epoch's end (mean over the group's tensors);
  step_on_path  the mean over on-path uses of ||W_after - W_before|| / ||W_before||: the effective step per use;
  uses          how often a tensor of the group was on the path (share of steps);
  step_off_path the same relative change on steps a used tensor was off the path (decay and momentum alone).

  OMP_NUM_THREADS=1 python benchmarks/offpath_mechanism.py --data-root ~/data/cifar10 [--epochs 30] --out FILE
The last line printed is the results as one JSON object (also written to --out).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.data import load_for  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.train import Trainer  # noqa: E402

GROUPS = ("edge_1x1", "edge_3x3", "reduction", "stem")


def group_of(name: str):
    if name.startswith("cells."):
        return "edge_1x1" if name.endswith("_1x1") else "edge_3x3"
    if name.startswith("reductions.") and not name.endswith("down"):
        return "reduction"
    return "stem" if name == "stem" else None


class Recorder:
    """Wraps a trainer's gradient all-reduce (called right after the backward, before any off-path fill) to learn
    which weights the step's path used, and its supernet step to measure each weight's relative change."""

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.names = [n for n, _ in trainer.model.named_parameters()]
        self.groups = [group_of(n) for n in self.names]
        self.on_path = None
        self.reset()
        average = trainer.dist.average_grads

        def spy(params):
            self.on_path = [p.grad is not None for p in trainer.params]
            return average(params)

        trainer.dist.average_grads = spy
        step = trainer.supernet_step

        def measured(x, y, s):
            before = [p.detach().clone() for p in trainer.params]
            step(x, y, s)
            for i, (p, b) in enumerate(zip(trainer.params, before)):
                g = self.groups[i]
                if g is None:
                    continue
                rel = float((p.detach() - b).norm() / b.norm().clamp_min(1e-12))
                if self.on_path[i]:
                    self.acc[g]["on"].append(rel)
                elif self.seen[i]:
                    self.acc[g]["off"].append(rel)
                self.seen[i] = self.seen[i] or self.on_path[i]
            self.steps += 1

        trainer.supernet_step = measured
        self.seen = [False] * len(self.names)

    def reset(self):
        self.acc = {g: {"on": [], "off": []} for g in GROUPS}
        self.steps = 0

    def epoch_row(self) -> dict:
        row = {}
        for g in GROUPS:
            tensors = [p for p, gg in zip(self.t.params, self.groups) if gg == g]
            rms = float(np.mean([float(p.detach().pow(2).mean().sqrt()) for p in tensors]))
            on, off = self.acc[g]["on"], self.acc[g]["off"]
            row[g] = {"rms": rms, "step_on_path": float(np.mean(on)) if on else None,
                      "uses": len(on) / max(1, self.steps * len(tensors)),
                      "step_off_path": float(np.mean(off)) if off else None}
        self.reset()
        return row


def run_rule(rule: str, epochs: int, splits, seed: int, preset: str = "narrow") -> list:
    cfg = from_preset(preset, k=1, seed=seed, epochs=epochs, warmup_epochs=0, snapshot_epochs="",
                      offpath_update=rule)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), splits, torch.device("cpu"), progress=False)
        rec = Recorder(trainer)
        rows = []
        for e in range(1, epochs + 1):
            t0 = time.perf_counter()
            trainer.fit(until_epoch=e)
            rows.append({"epoch": e, "lr_end": trainer.lr_at(e * trainer.steps_per_epoch - 1),
                         "train_loss": float(trainer.read_log()[-1]["train_loss"]), **rec.epoch_row(),
                         "time_s": time.perf_counter() - t0})
            print(f"{rule} epoch {e}: " + ", ".join(f"{g} rms {rows[-1][g]['rms']:.3f} step {rows[-1][g]['step_on_path'] or 0:.4f}"
                                                     for g in GROUPS), file=sys.stderr, flush=True)
    return rows


def movement_per_use(row: dict) -> Optional[float]:
    """A group's relative movement from one use to the next: its on-path step plus the off-path steps until the next
    use ((1 - uses) / uses of them on average). Under `decay` momentum keeps moving a weight after its use, so the
    on-path step alone understates how far a use moves it; the sum is an upper bound (triangle inequality) on the
    displacement per use, near it while momentum points one way."""
    on, off, uses = row["step_on_path"], row["step_off_path"] or 0.0, row["uses"]
    if not on or not uses:
        return None
    return on + off * (1 - uses) / uses


def summary(rows_by_rule: dict) -> dict:
    """Per rule and group: the last epoch's RMS (and over the reductions'), the last epoch's step per use, and over
    all epochs the mean on-path step and the mean movement per use (`movement_per_use`); then decay over none."""
    out = {}
    for rule, rows in rows_by_rule.items():
        last = rows[-1]
        out[rule] = {}
        for g in GROUPS:
            steps = [r[g]["step_on_path"] for r in rows if r[g]["step_on_path"]]
            moves = [m for m in (movement_per_use(r[g]) for r in rows) if m]
            out[rule][g] = {"rms": last[g]["rms"], "step_on_path": last[g]["step_on_path"],
                            "rms_over_reduction": last[g]["rms"] / last["reduction"]["rms"],
                            "step_over_reduction": (last[g]["step_on_path"] / last["reduction"]["step_on_path"]
                                                    if last[g]["step_on_path"] and last["reduction"]["step_on_path"]
                                                    else None),
                            "mean_step_on_path": float(np.mean(steps)) if steps else None,
                            "mean_movement_per_use": float(np.mean(moves)) if moves else None}
    if {"none", "decay"} <= set(out):
        def ratio(g, key):
            a, b = out["decay"][g][key], out["none"][g][key]
            return a / b if a and b else None

        out["decay_over_none"] = {g: {key: ratio(g, key) for key in
                                      ("rms", "step_on_path", "mean_step_on_path", "mean_movement_per_use")}
                                  for g in GROUPS}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rules", default="none,decay")
    p.add_argument("--preset", default="narrow", help="an NB201 preset (tests: smoke)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--resummarize", type=Path, default=None,
                   help="recompute the summary of a results file from its per-epoch rows (nothing trained) into --out")
    args = p.parse_args()
    if args.resummarize:
        import json

        result = json.loads(args.resummarize.read_text())
        result["summary"] = summary(result["per_epoch"])
        emit(result, "offpath_mechanism", False, out=args.out or args.resummarize)
        return
    tune_allocator()
    cfg = from_preset(args.preset, k=1)
    splits = load_for(cfg, args.data_root, download=False)
    rows = {rule: run_rule(rule, args.epochs, splits, args.seed, args.preset) for rule in args.rules.split(",")}
    result = {"benchmark": "offpath_mechanism", "preset": args.preset, "k": 1, "epochs": args.epochs, "seed": args.seed,
              "schedule": f"cosine over {args.epochs} epochs (its own), no warm-up", "data": splits.source,
              "summary": summary(rows), "per_epoch": rows, "machine": machine_info(torch.device("cpu")),
              "command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d")}
    emit(result, "offpath_mechanism", False, out=args.out)


if __name__ == "__main__":
    main()
