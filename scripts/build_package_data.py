"""Derive the package data that kshot_bench ships from the reference files in ../shared/data.

Run from the project root:  python scripts/build_package_data.py [--shared ../shared/data]

Writes into kshot_bench/package_data/:
  nb201_truth.npz    official index order (as base-5 arch codes) + ground-truth columns (float64)
  nb201_proxies.npz  zero-cost proxy scores used as ranking baselines (float64)
  nb201_splits.npz   the official NB201 split files as index arrays
The package never reads ../shared at run time; this script is the only bridge.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from kshot_bench.ground_truth import TRUTH_COLUMNS
from kshot_bench.search_space.nb201 import OPS

PROXY_COLUMNS = [
    "naswot_cifar10", "synflow_cifar10", "logsynflow_cifar10", "nregions_cifar10",
    "naswot_cifar100", "synflow_cifar100", "logsynflow_cifar100", "nregions_cifar100",
    "naswot_ImageNet16-120", "synflow_ImageNet16-120", "logsynflow_ImageNet16-120",
]
SPLIT_FILES = {
    "cifar-split.txt": ("cifar10", ["train", "valid"]),
    "cifar100-test-split.txt": ("cifar100", ["xvalid", "xtest"]),
    "imagenet-16-120-test-split.txt": ("imagenet16", ["xvalid", "xtest"]),
}


def arch_code(arch_str: str) -> int:
    """Base-5 code of an official arch string, the edges in string order (first edge most significant)."""
    ops = [tok.split("~")[0] for node in arch_str.split("+") for tok in node.strip("|").split("|")]
    code = 0
    for op in ops:
        code = code * 5 + OPS.index(op)
    return code


def read_split(path: Path) -> dict:
    """The official split files are JSON-like: {"train": ["int", ["0", "5", ...]], ...}."""
    raw = json.loads(path.read_text())
    return {name: np.asarray([int(v) for v in values], dtype=np.int32) for name, (_, values) in raw.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "kshot_bench" / "package_data")
    args = parser.parse_args()
    nb = args.shared / "nb201"
    args.out.mkdir(parents=True, exist_ok=True)

    truth = pd.read_csv(nb / "nb201_ground_truth.csv")
    assert (truth["index"].to_numpy() == np.arange(len(truth))).all(), "ground truth rows must be in index order"
    codes = np.asarray([arch_code(s) for s in truth["arch_str"]], dtype=np.uint16)
    assert len(set(codes.tolist())) == 5**6 == len(codes)
    np.savez_compressed(args.out / "nb201_truth.npz", arch_code=codes,
                        **{c: truth[c].to_numpy(np.float64) for c in TRUTH_COLUMNS})

    proxies = pd.read_csv(nb / "nb201_zero_cost_proxies.csv")
    assert (proxies["arch_str"] == truth["arch_str"]).all()
    np.savez_compressed(args.out / "nb201_proxies.npz", **{c: proxies[c].to_numpy(np.float64) for c in PROXY_COLUMNS})

    splits = {}
    for fname, (prefix, names) in SPLIT_FILES.items():
        parts = read_split(nb / "splits" / fname)
        for name in names:
            splits[f"{prefix}_{name}"] = parts[name]
    np.savez_compressed(args.out / "nb201_splits.npz", **splits)
    for f in sorted(args.out.glob("*.npz")):
        print(f"{f.name}: {f.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
