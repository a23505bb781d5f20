"""The epoch loop that supernet training (`train.Trainer`) and retraining (`retrain.Retrainer`) share.

A job object brings its state and its step; the loop brings what every long job here needs: the
progress bar, a checkpoint every `checkpoint_every` steps and at each epoch end, the wall time per epoch,
a last checkpoint on Ctrl-C (one process; under torchrun the periodic one stands, another process may be
gone already), and `KSHOT_TEST_STOP_AT_STEP` for the resume tests.
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional


def append_log_row(path: Path, row: Dict, fields: List[str]) -> None:
    """One epoch's row of log.csv (a new file at epoch 1: a restarted run rewrites it); floats to 6 digits."""
    new = not path.exists() or row["epoch"] == 1
    with open(path, "w" if new else "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def rewrite_log(path: Path, rows: List[Dict[str, str]], fields: List[str]) -> None:
    """Replace log.csv by `rows` (a resume drops rows written after its checkpoint). Written beside it and
    moved over it, so a failure part-way leaves the old log whole; columns this version does not know
    (a log written by a newer kshot_bench) are kept after ours rather than refused."""
    extra = [k for row in rows for k in row if k not in fields]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields + list(dict.fromkeys(extra)))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def run_epochs(job, last: int, iteration: Callable, stop_at_step: Optional[int] = None, desc: str = "epoch") -> None:
    """Run `iteration(x, y, global_step)` over job.loader from (job.epoch, job.step_in_epoch) to the end of
    epoch `last`. The job has: cfg.epochs, cfg.checkpoint_every, loader, dist, progress, steps_per_epoch,
    epoch, step_in_epoch, meters (loss, images, time), save_checkpoint() and _end_epoch() (which logs,
    advances the epoch and saves)."""
    from tqdm import tqdm

    if stop_at_step is None and os.environ.get("KSHOT_TEST_STOP_AT_STEP"):  # tests: interrupt at this step
        stop_at_step = int(os.environ["KSHOT_TEST_STOP_AT_STEP"])
    shard = (job.dist.rank, job.dist.world_size)
    t0 = time.perf_counter()
    try:
        while job.epoch < last:
            bar = tqdm(total=job.steps_per_epoch, initial=job.step_in_epoch, disable=not job.progress,
                       desc=f"{desc} {job.epoch + 1}/{job.cfg.epochs}", unit="step", leave=False)
            t0 = time.perf_counter()
            for x, y in job.loader.epoch(job.epoch, job.step_in_epoch, shard):
                step = job.epoch * job.steps_per_epoch + job.step_in_epoch
                if stop_at_step is not None and step == stop_at_step:
                    raise KeyboardInterrupt
                iteration(x, y, step)
                job.step_in_epoch += 1
                bar.update(1)
                if job.progress and job.step_in_epoch % 10 == 0:
                    bar.set_postfix(loss=f"{job.meters['loss'] / max(1, job.meters['images']):.3f}")
                if job.step_in_epoch % job.cfg.checkpoint_every == 0 and job.step_in_epoch < job.steps_per_epoch:
                    job.meters["time"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    job.save_checkpoint()
            bar.close()
            job.meters["time"] += time.perf_counter() - t0
            job._end_epoch()
    except KeyboardInterrupt:
        job.meters["time"] += time.perf_counter() - t0
        if not job.dist.active:
            job.save_checkpoint()
        raise
