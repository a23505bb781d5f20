"""Run directories: the files a run leaves and how they are written, read and named.

A train run directory holds `config.json` (the resolved config and its hash), `log.csv` (one row per
epoch), `checkpoint.pt` (the latest resumable state), `supernet.pt` (the final weights and simplex-net)
and `snapshots/epoch-EEEE.pt` (weights kept after chosen epochs). Every file is written atomically (a
temporary file moved over the old one), so an interruption leaves the previous version whole. A run keeps
the config hash it started with (`run_hash`), which names it in every report.
"""
from __future__ import annotations

import json
import os
import platform
import resource
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from kshot_bench.config import RunConfig, from_dict
from kshot_bench.errors import UserError

CHECKPOINT = "checkpoint.pt"
FINAL = "supernet.pt"
LOG = "log.csv"
SNAPSHOTS = "snapshots"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def machine_info(device: torch.device) -> Dict[str, str]:
    info = {"python": platform.python_version(), "torch": str(torch.__version__), "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "threads": str(torch.get_num_threads()),
            "device": str(device)}
    model = _cpu_model()
    if model:
        info["cpu_model"] = model
    for package in ("torchvision", "numpy", "pillow"):  # the image decoding and augmentation that feed training
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_label(info: Dict[str, str]) -> str:
    """One line for what decides a run's float rounding: the processor (or GPU), torch and the thread count.
    Trainings that differ only in rounding can rank archs quite differently (docs/results.md), so runs record
    the machines they trained on and `compare` names them when they differ."""
    chip = info.get("gpu") or info.get("cpu_model") or info.get("cpu") or "?"
    return f"{chip}, torch {info.get('torch', '?')}, {info.get('threads', '?')} threads"


MACHINES_NOT_RECORDED = "not recorded (a checkpoint written before runs kept their machines)"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def snapshot_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.pt"


def list_snapshots(run_dir: Path) -> List[Path]:
    """The snapshots of a train run, in epoch order."""
    return sorted((Path(run_dir) / SNAPSHOTS).glob("epoch-*.pt"))


def load_checkpoint(path: Path, device: torch.device) -> Dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist", fix="pass the supernet.pt or checkpoint.pt of a finished train run")
    try:
        # our own files: tensors, dicts and numbers only, so the safe loader suffices
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise UserError(f"{path} is not a kshot-bench checkpoint (torch cannot read it: "
                        f"{str(err).splitlines()[0][:160] if str(err) else type(err).__name__})",
                        fix="pass the supernet.pt or checkpoint.pt that `kshot-bench train` or `rank` wrote") from None
    if not isinstance(state, dict) or "config" not in state or not ({"model", "codes"} & set(state)):
        raise UserError(f"{path} is not a kshot-bench checkpoint (it is a torch file without the config and weights "
                        "that kshot-bench writes)", fix="pass the supernet.pt or checkpoint.pt that `kshot-bench train` "
                        "or `rank` wrote")
    return state


# fields that may differ between a checkpoint and the run that loads it: they do not change the weights
SCORING_FIELDS = ("archs", "final_archs", "bn_calibration", "score_images", "score_batch", "score_by", "checkpoint_every", "loader_workers",
                  "score_precision", "score_part", "score_code")


def check_same_config(cfg: RunConfig, saved: Dict, path: Path, ignore=SCORING_FIELDS) -> None:
    try:
        other = from_dict(saved)
    except UserError as err:
        raise UserError(f"checkpoint {path} holds a config this version cannot read ({err.problem})") from None
    diff = [f"{k}: checkpoint {getattr(other, k)!r} vs now {getattr(cfg, k)!r}"
            for k in cfg.to_dict() if k not in ignore and getattr(other, k) != getattr(cfg, k)]
    if diff:
        raise UserError(f"checkpoint {path} comes from a different config ({'; '.join(diff)})",
                        fix="use the same dataset, K, code mode, preset and --set values as the run that wrote it, "
                            "or start a new --out directory")


def recorded_hash(cfg, run_dir: Path, ignore: Sequence[str] = ()) -> Optional[str]:
    """The config hash that `run_dir/config.json` recorded, if it records this same config (a field it
    lacks counts as that field's default: added to kshot_bench after the run started; fields in `ignore`
    may differ: a training run's scoring fields); else None. A run keeps the name it started with although
    the hash rule of later versions may differ (fields added later that are not left out of the hash,
    config.LATER_FIELDS), and a training run keeps it when a preset's scoring fields change."""
    import dataclasses

    try:
        data = json.loads((Path(run_dir) / "config.json").read_text())
        recorded = dict(data["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    now = json.loads(json.dumps(cfg.to_dict()))
    defaults = json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(cfg)
                                      if f.default is not dataclasses.MISSING}))
    missing = object()
    same = set(recorded) <= set(now) and all(recorded.get(k, defaults.get(k, missing)) == v
                                             for k, v in now.items() if k not in ignore)
    return data.get("config_hash") if same else None


def run_hash(cfg, run_dir: Path, ignore: Sequence[str] = ()) -> str:
    """The name of the run of `cfg` in `run_dir`: the hash its config.json recorded (`recorded_hash`),
    else today's `cfg.hash()` (a new run)."""
    return recorded_hash(cfg, run_dir, ignore) or cfg.hash()


def trained_config(path: Path) -> RunConfig:
    """The config a supernet was trained with: from a checkpoint file, or a train run directory's config.json."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} holds no config.json: it is not a train run directory",
                            fix="pass a train run directory, or a checkpoint file (supernet.pt, snapshots/epoch-EEEE.pt)")
        return from_dict(json.loads((path / "config.json").read_text())["config"])
    return from_dict(load_checkpoint(path, torch.device("cpu"))["config"])


def write_config(cfg: RunConfig, run_dir: Path, extra: Optional[Dict] = None, config_hash: Optional[str] = None) -> None:
    """`run_dir/config.json`: the config and its hash (`config_hash` if given, else the one this file
    recorded for the same config before, else today's)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data = {"config": cfg.to_dict(), "config_hash": config_hash or run_hash(cfg, run_dir),
            **(extra or {})}
    tmp = run_dir / "config.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, run_dir / "config.json")
