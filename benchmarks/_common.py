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


def paired_rates(rates: Dict[str, Dict[str, list]], old: str, new: str, label: str) -> Dict:
    """Per kind ("train", "score"): both variants' median images/s and the median over rounds of the paired ratio
    new / old (`rates[variant][kind]`: one rate per round, the same rounds for both); prints one line `label: ...`."""
    import statistics

    row = {}
    for kind in ("train", "score"):
        a, b = rates[new][kind], rates[old][kind]
        row[kind] = {f"{old}_images_per_s": statistics.median(b), f"{new}_images_per_s": statistics.median(a),
                     "paired_ratio_median": statistics.median(x / y for x, y in zip(a, b)), "raw": {old: b, new: a}}
    print(f"{label}: " + "; ".join(f"{kind} {row[kind][f'{old}_images_per_s']:.0f} -> {row[kind][f'{new}_images_per_s']:.0f}"
                                   f" images/s (x{row[kind]['paired_ratio_median']:.2f})" for kind in row), flush=True)
    return row


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
