"""Derive the embedded CIFAR-10 sample (`kshot_bench/package_data/cifar10_sample.npz`) from the
CIFAR-10 images in ../shared/data, so the main job runs from a plain clone with no data download.

Run from the project root:  python scripts/build_cifar10_sample.py [--tar ../shared/data/cifar10_images.tar.gz]

What it takes: the `train/<class>/NNNN.jpg` images of the tarball, ordered as the image-folder loader
orders them (classes sorted, files sorted), split into the NB201-style train / valid halves by the
same seeded class-stratified rule (`kshot_bench.data.stratified_half`, seed FOLDER_SPLIT_SEED). The
sample's training images come from the train half and its scoring images from the valid half, so a
supernet trained on the full image folder never saw the sample's scoring images. Per class: the
first TRAIN_PER_CLASS / VALID_PER_CLASS of a seeded permutation of that class's half.

The JPEG bytes are stored as they are in the tarball (no re-encoding: the pixels are exactly the
folder's), concatenated into one uint8 array with offsets, in a compressed npz: every tiny JPEG
repeats the same ~600-byte header tables, so an image costs about 0.3 KB (3 KB as raw pixels).
"""
from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

import numpy as np

from kshot_bench.data import FOLDER_SPLIT_SEED, stratified_half

TRAIN_PER_CLASS = 500
VALID_PER_CLASS = 100
SAMPLE_SEED = 0


def pack(blobs):
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tar", type=Path, default=root / ".." / "shared" / "data" / "cifar10_images.tar.gz")
    parser.add_argument("--out", type=Path, default=root / "kshot_bench" / "package_data" / "cifar10_sample.npz")
    args = parser.parse_args()

    files = {}
    with tarfile.open(args.tar) as tf:
        for member in tf:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[0] == "train":
                files[(parts[1], parts[2])] = tf.extractfile(member).read()
    classes = sorted({c for c, _ in files})
    assert len(classes) == 10, classes
    names = [(c, f) for c in classes for f in sorted(f for cc, f in files if cc == c)]  # the folder loader's order
    labels = np.asarray([classes.index(c) for c, _ in names], dtype=np.int64)
    train_half, valid_half = stratified_half(labels, FOLDER_SPLIT_SEED)

    rng = np.random.default_rng(SAMPLE_SEED)
    out = {}
    for part, half, per_class in (("train", train_half, TRAIN_PER_CLASS), ("valid", valid_half, VALID_PER_CLASS)):
        picked = np.sort(np.concatenate([rng.permutation(half[labels[half] == c])[:per_class] for c in range(10)]))
        data, offsets = pack([files[names[i]] for i in picked])
        out[f"{part}_jpeg"], out[f"{part}_offsets"], out[f"{part}_labels"] = data, offsets, labels[picked]
        out[f"{part}_files"] = np.asarray([f"train/{names[i][0]}/{names[i][1]}" for i in picked])
    out["classes"] = np.asarray(classes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KiB; train {len(out['train_labels'])}, "
          f"valid {len(out['valid_labels'])} images")


if __name__ == "__main__":
    main()
