"""Files shipped inside the package (`kshot_bench/package_data/`), read without touching ../shared.

The lowest layer of the package: search spaces, the ground-truth table and the data loaders all read
their tables through here, so none of them needs to import another to find a file.
"""
from __future__ import annotations

import functools
from importlib import resources
from typing import Dict

import numpy as np


def package_file(name: str):
    """A package resource (has `.open`) under kshot_bench/package_data/."""
    return resources.files("kshot_bench").joinpath("package_data", name)


def read_npz(source) -> Dict[str, np.ndarray]:
    """All arrays of an npz file, read-only. `source`: a Path or a package resource (both have .open)."""
    with source.open("rb") as fh, np.load(fh) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=None)
def package_npz(name: str) -> Dict[str, np.ndarray]:
    """A shipped npz table, loaded once per process."""
    return read_npz(package_file(name))
