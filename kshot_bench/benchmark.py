"""NB201 ground truth: the embedded table shipped as package data, and loaders for official files.

The embedded table (`package_data/nb201_truth.npz`) is derived from the reference CSV by
`scripts/build_package_data.py`; it holds the official index order and the accuracy/parameter
columns for all 15,625 archs, float64 as in the source.
"""
from __future__ import annotations

import functools
from importlib import resources
from typing import Dict

import numpy as np


def _package_file(name: str):
    return resources.files("kshot_bench").joinpath("package_data", name)


@functools.lru_cache(maxsize=None)
def load_truth_arrays() -> Dict[str, np.ndarray]:
    """All columns of the embedded NB201 table, in official index order (read-only arrays)."""
    with _package_file("nb201_truth.npz").open("rb") as fh, np.load(fh) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for a in arrays.values():
        a.setflags(write=False)
    return arrays
