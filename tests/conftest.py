"""Shared fixtures: the reference data beside the project and tiny datasets in official formats."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

# One intra-op thread unless the caller sets OMP_NUM_THREADS (before torch is imported; subprocesses inherit it).
# The suite's tensors are small: on the 2-core VM it took 167 s at one thread and 162 s at two, but beside a
# one-thread training run 173 s against 1,631 s at two (OpenMP threads waiting on a busy core; 2026-12-05).
# Tests of thread-dependent code set their own counts.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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


def write_cifar100(root: Path, n_train: int = 300, seed: int = 0) -> Path:
    """The official CIFAR-100 python layout: `train` small, `test` full size (the NB201 split
    indexes all 10,000 test images). Test image i has every pixel i % 256 and fine label i % 100."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train = {"data": rng.integers(0, 256, (n_train, 3072), dtype=np.uint8),
             "fine_labels": (np.arange(n_train) % 100).tolist(), "coarse_labels": [0] * n_train}
    ids = np.arange(10000)
    test = {"data": np.repeat((ids % 256).astype(np.uint8)[:, None], 3072, axis=1),
            "fine_labels": (ids % 100).tolist(), "coarse_labels": [0] * 10000}
    for name, entry in (("train", train), ("test", test), ("meta", {"fine_label_names": [str(i) for i in range(100)]})):
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    return root


def write_imagenet16(root: Path, per_batch: int = 40, seed: int = 0) -> Path:
    """The NB201 ImageNet16 layout: train_data_batch_1..10 and val_data, pickled dicts with `data`
    (N x 768 uint8) and 1-based `labels` over 1000 classes. val_data holds exactly 6,000 images of
    labels 1..120 (test image i: pixels i % 256, label i % 120 + 1) plus 500 of other classes."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for b in range(1, 11):
        labels = rng.integers(1, 1001, per_batch)
        labels[: per_batch // 2] = rng.integers(1, 121, per_batch // 2)  # enough of the 120 kept classes
        entry = {"data": rng.integers(0, 256, (per_batch, 768), dtype=np.uint8), "labels": labels.tolist(), "mean": None}
        with open(root / f"train_data_batch_{b}", "wb") as fh:
            pickle.dump(entry, fh)
    ids = np.arange(6000)
    data = np.concatenate([np.repeat((ids % 256).astype(np.uint8)[:, None], 768, axis=1),
                           rng.integers(0, 256, (500, 768), dtype=np.uint8)])
    labels = np.concatenate([ids % 120 + 1, rng.integers(121, 1001, 500)])
    order = rng.permutation(len(labels))
    # keep the 6,000 kept-class images in their order (the split file indexes that order)
    kept_positions = np.sort(order[:6000])
    full_data = np.empty_like(data)
    full_labels = np.empty_like(labels)
    other = np.setdiff1d(np.arange(6500), kept_positions)
    full_data[kept_positions], full_labels[kept_positions] = data[:6000], labels[:6000]
    full_data[other], full_labels[other] = data[6000:], labels[6000:]
    with open(root / "val_data", "wb") as fh:
        pickle.dump({"data": full_data, "labels": full_labels.tolist()}, fh)
    return root


def write_imagenet_folder(root: Path, classes: int = 3, per_class: int = 8, val_per_class: int = 2, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for part, n in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            d = root / part / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)).save(d / f"img_{i}.JPEG", format="JPEG")
    return root
