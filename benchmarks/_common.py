"""Shared by the benchmark scripts: write the result file and print it as the last line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

RESULTS = Path(__file__).resolve().parent / "results"


def emit(result: Dict, name: str, quick: bool, device: str = "cpu", out: Optional[Path] = None) -> Path:
    path = out or RESULTS / f"{name}{'-quick' if quick else ''}-{device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return path


def run_memory_child(code: str, root: Path) -> Dict:
    """Run a memory-measuring child (`code` prints JSON with base_mb and peak_mb last) and add train_mb.

    A fixed mmap threshold makes glibc hand every tensor of 64 KiB or more straight back to the OS on
    free, so the peak RSS follows the live tensors instead of the allocator's cached free space."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root, env=env)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["train_mb"] = data["peak_mb"] - data["base_mb"]
    return data


def rss_mb(field: str) -> float:
    """VmRSS (current) or VmHWM (peak since the last reset) of this process, MiB (Linux)."""
    import re

    with open("/proc/self/status") as fh:
        return int(re.search(field + r":\s+(\d+)", fh.read()).group(1)) / 1024


def memory_mark(device) -> float:
    """Start a peak-memory measurement in a memory child: reset the peak, return the memory now (MiB).
    GPU: allocated tensors; CPU: the process's RSS (its peak, VmHWM, reset through clear_refs)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return rss_mb("VmRSS")


def memory_peak(device) -> float:
    """The peak since `memory_mark` (MiB)."""
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss_mb("VmHWM")
