"""A results folder belongs to the job that wrote it (issue 46): `--out D` of a different job never replaces it.

Each rank job records what it is in `D/job.json`: for a supernet's ranking, the resolved config that decides its
numbers (training and scoring fields; not the bookkeeping fields) and the checkpoint it scores (path, size and
modification time of a file; the path of a train run directory, whose snapshots are added as it trains); for a
score file, its sha256 and how it is read (space, dataset, truth, column, direction). Running the same job again
continues it (an interrupted scoring resumes from its journal); another job into a non-empty folder stops with an
error and a fix: another `--out`, or `--overwrite` to replace the folder's contents knowingly.

Folders written before jobs were recorded (no job.json) are taken as the same job when what they record
(config.json or metrics.json) agrees on the fields that decide the numbers; a non-empty folder that holds no
kshot-bench results is never emptied, not even with `--overwrite`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional

from kshot_bench.errors import UserError

JOB = "job.json"
BOOKKEEPING = ("checkpoint_every", "loader_workers")  # fields that do not change a job's numbers
RESULT_FILES = ("metrics.json", "config.json", "predictions.csv", "curve.csv", JOB)
# what a legacy folder's config must agree on to be taken as this job's (a --checkpoint job's other fields come
# from the checkpoint, which such folders did not record)
LEGACY_FIELDS = ("space", "dataset", "k", "code", "archs", "final_archs", "score_images", "score_batch", "score_by",
                 "bn_calibration", "score_part", "score_code")


def supernet_job(cfg, checkpoint: Optional[Path]) -> Dict:
    """The identity of a supernet rank job: its config (without bookkeeping) and what it scores."""
    config = {k: v for k, v in cfg.to_dict().items() if k not in BOOKKEEPING}
    source = None
    if checkpoint is not None:
        path = Path(checkpoint).resolve()
        source = {"path": str(path)}
        if path.is_file():
            st = path.stat()
            source.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    return {"kind": "rank", "config": json.loads(json.dumps(config)), "checkpoint": source}


def scores_job(sha256: str, space: str, dataset: str, truth: Optional[str], column: str, lower_is_better: bool) -> Dict:
    return {"kind": "scores", "sha256": sha256, "space": space, "dataset": dataset, "truth": truth,
            "score_column": column, "lower_is_better": lower_is_better}


def differences(held: Dict, job: Dict) -> List[str]:
    """What differs between two jobs, for the error message."""
    if held.get("kind") != job.get("kind"):
        what = {"rank": "a supernet's ranking", "scores": "a score file's evaluation"}
        return [f"it holds {what.get(held.get('kind'), held.get('kind'))}, this is {what.get(job.get('kind'))}"]
    out = []
    for key in sorted(set(held) | set(job)):
        a, b = held.get(key), job.get(key)
        if key == "config" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"{f}: {a.get(f)!r} there, {b.get(f)!r} here" for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
        elif a != b:
            out.append(f"{key}: {a!r} there, {b!r} here")
    return out


def _legacy_matches(out: Path, job: Dict) -> bool:
    """An earlier version's folder (no job.json) of the same job: its config.json (a supernet's ranking) or
    metrics.json (a score file's) agrees on what decides the numbers."""
    try:
        if job["kind"] == "scores":
            p = json.loads((out / "metrics.json").read_text())["protocol"]
            return p.get("scores_sha256") == job["sha256"] and p.get("dataset") == job["dataset"] \
                and not job["lower_is_better"]
        held = json.loads((out / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    from kshot_bench.config import RunConfig, from_dict

    try:
        held_cfg = from_dict(held).to_dict()
    except UserError:
        return False
    defaults = RunConfig().to_dict()
    return all(held_cfg.get(f, defaults[f]) == job["config"].get(f, defaults[f]) for f in LEGACY_FIELDS)


def _clear(out: Path) -> None:
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def claim(out: Path, job: Dict, overwrite: bool = False, write: bool = True) -> None:
    """Make `out` this job's results folder, or stop: see the module docstring. A folder that does not exist yet is
    not created here (refused input leaves none behind): `record` writes the job once the job has made it.
    `write`: empty a replaced folder (the main process under torchrun; the others only check)."""
    out = Path(out)
    record_path = out / JOB
    if record_path.is_file():
        try:
            held = json.loads(record_path.read_text())
        except ValueError:
            held = {"kind": "unreadable job.json"}
        if held == job:
            return
        if not overwrite:
            raise UserError(f"{out} holds the results of another job ({'; '.join(differences(held, job)[:6])})",
                            fix="choose another --out, or pass --overwrite to replace that folder's contents")
        if write:
            _clear(out)
    elif out.is_dir() and any(out.iterdir()):
        if _legacy_matches(out, job):
            pass
        elif not any((out / name).exists() for name in RESULT_FILES):
            raise UserError(f"{out} is not empty and holds no kshot-bench results",
                            fix="choose an empty or new folder for --out (this one is never emptied, not even with "
                                "--overwrite)")
        elif not overwrite:
            raise UserError(f"{out} holds results written by an earlier kshot-bench whose job differs from this one",
                            fix="choose another --out, or pass --overwrite to replace that folder's contents")
        elif write:
            _clear(out)


def record(out: Path, job: Dict) -> None:
    """Write the job into its results folder, once the job has created it (also after an interruption or an
    error, so that the same command continues it and another job is refused)."""
    out = Path(out)
    if not out.is_dir():
        return
    tmp = out / (JOB + ".tmp")
    tmp.write_text(json.dumps(job, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / JOB)
