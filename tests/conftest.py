"""Shared fixtures: the reference data beside the project and tiny datasets in official formats."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "nb201" / "nb201_ground_truth.csv").is_file():
        pytest.skip(f"reference data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def truth_csv(shared_data):
    import pandas as pd

    return pd.read_csv(shared_data / "nb201" / "nb201_ground_truth.csv")


def write_image_folder(root: Path, per_class: int = 6, test_per_class: int = 3, seed: int = 0, suffix: str = ".png") -> Path:
    """A CIFAR-10 image-folder layout with random 32x32 PNGs (lossless, so pixels can be checked)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for part, n in (("train", per_class), ("test", test_per_class)):
        for c in classes:
            d = root / part / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:04d}{suffix}")
    return root


def write_cifar10_batches(root: Path, seed: int = 0) -> Path:
    """The official CIFAR-10 python layout, full size (the official split indexes 50,000 images),
    with a cheap pattern: image i has every pixel equal to i % 256 and label i % 10."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(6):
        n = 10000
        ids = np.arange(b * n, (b + 1) * n)
        data = np.repeat((ids % 256).astype(np.uint8)[:, None], 3072, axis=1)
        entry = {"batch_label": f"batch {b}", "labels": (ids % 10).tolist(), "data": data,
                 "filenames": [f"{i}.png" for i in ids]}
        name = f"data_batch_{b + 1}" if b < 5 else "test_batch"
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    return root


@pytest.fixture(scope="session")
def tiny_cifar_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("cifar_folder"), per_class=20, test_per_class=2)
