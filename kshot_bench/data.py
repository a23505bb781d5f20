"""Datasets, official NB201 splits and the fast in-memory loader.

Every small dataset is held whole as a uint8 tensor `[N, 3, H, W]` (on the GPU when there is one);
batches are cut from a per-epoch permutation and augmented as whole-batch tensor ops (random crop
with 4-pixel zero padding + horizontal flip, NB201's CIFAR augmentation), with no per-image Python.

Randomness is a pure function of (seed, epoch): the permutation and every crop/flip of an epoch come
from a generator seeded with both, so a run resumed mid-epoch sees exactly the batches it would
have seen (train.py relies on this).

CIFAR-10 layouts accepted under `--data-root`:
  * the official python batches: `cifar-10-batches-py/{data_batch_1..5,test_batch}` (downloaded
    there by torchvision when absent and the machine is online); split by the official
    `cifar-split.txt` (shipped as package data);
  * an image folder: `train/<class>/*.jpg|png` and `test/<class>/*.jpg|png` (e.g.
    `cifar10_images.tar.gz` unpacked); its order is not the official one, so the train/valid halves
    come from a seeded, class-stratified split (seed `FOLDER_SPLIT_SEED`). Decoded once, then cached
    as `.kshot_cache.npz` beside the folders (or under ~/.cache/kshot_bench when read-only).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kshot_bench.datasets import DATASETS, DatasetInfo
from kshot_bench.errors import UserError
from kshot_bench.runtime import epoch_generator

FOLDER_SPLIT_SEED = 0
SUBSET_SEED = 0  # a training subset (train_subset) is part of the protocol, equal for every run seed
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPEG")


@dataclass
class Splits:
    """uint8 images `[N, 3, H, W]` and int64 labels for the supernet's training and scoring parts."""

    train_x: Tensor
    train_y: Tensor
    score_x: Tensor
    score_y: Tensor
    source: str  # a sentence for results files: which files and which split
    embedded: bool = False  # the small sample shipped with the package, not a user's data

    def to(self, device: torch.device) -> "Splits":
        return Splits(self.train_x.to(device), self.train_y.to(device), self.score_x.to(device),
                      self.score_y.to(device), self.source, self.embedded)

    # the interface FolderSplits shares, so that scoring and protocols need not ask which kind they hold
    @property
    def n_train(self) -> int:
        return len(self.train_x)

    @property
    def n_score(self) -> int:
        return len(self.score_x)

    def score_subset(self, indices) -> Tuple[Tensor, Tensor]:
        return self.score_x[indices], self.score_y[indices]

    def train_subset(self, indices) -> Tuple[Tensor, Tensor]:
        return self.train_x[indices], self.train_y[indices]

    def train_loader(self, info: DatasetInfo, batch_size: int, seed: int, device: torch.device, subset: int = 0,
                     workers: int = -1) -> "TensorLoader":
        """The training loader of in-memory images (`subset`: a fixed class-balanced subset of that many)."""
        train_x, train_y = self.train_x, self.train_y
        if subset and subset < len(train_x):
            keep, _ = stratified_half(train_y.cpu().numpy(), SUBSET_SEED)  # balanced classes
            keep = np.random.default_rng(SUBSET_SEED).permutation(keep)[:subset]
            keep = torch.as_tensor(np.sort(keep))
            train_x, train_y = train_x[keep], train_y[keep]
        return TensorLoader(train_x.to(device), train_y.to(device), info, batch_size, seed)


# ----------------------------------------------------------------------------- package split files
def official_split(name: str) -> np.ndarray:
    """Index array of an official NB201 split, e.g. `cifar10_train`, `cifar100_xvalid`."""
    from kshot_bench.resources import package_npz

    return package_npz("nb201_splits.npz")[name]


# ----------------------------------------------------------------------------- CIFAR-10
def _read_python_batches(folder: Path, names: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        with open(folder / name, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _class_dirs(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _read_image_folder(folder: Path, classes: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    files, labels = [], []
    for label, cls in enumerate(classes):
        names = sorted(p for p in (folder / cls).iterdir() if p.suffix in IMAGE_SUFFIXES)
        files.extend(names)
        labels.extend([label] * len(names))
    out = np.empty((len(files), 3, 32, 32), dtype=np.uint8)
    for i, path in enumerate(_progress(files, f"decoding {folder.name}/")):
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if arr.shape != (32, 32, 3):
            raise UserError(f"{path} is {arr.shape[1]}x{arr.shape[0]}, expected a 32x32 CIFAR image",
                            fix="point --data-root at the CIFAR-10 image folder (train/<class>/*.jpg, test/<class>/*.jpg)")
        out[i] = arr.transpose(2, 0, 1)
    return out, np.asarray(labels, dtype=np.int64)


def _progress(items, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", leave=False, mininterval=1.0, disable=len(items) < 2000)


def _cache_path(root: Path) -> Path:
    local = root / ".kshot_cache.npz"
    if os.access(root, os.W_OK):
        return local
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "kshot_bench" / f"cifar10-folder-{digest}.npz"


def _load_cifar10_folder(root: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    classes = [p.name for p in _class_dirs(root / "train")]
    test_classes = [p.name for p in _class_dirs(root / "test")]
    if len(classes) != 10 or classes != test_classes:
        raise UserError(f"{root} has train classes {classes} and test classes {test_classes}; expected the same 10",
                        fix="unpack cifar10_images.tar.gz there, giving train/<class>/ and test/<class>/ for 10 classes")
    cache = _cache_path(root)
    stamp = np.asarray([sum(1 for _ in (root / part / c).iterdir()) for part in ("train", "test") for c in classes])
    if cache.exists():
        try:
            with np.load(cache) as npz:
                if np.array_equal(npz["stamp"], stamp):
                    return npz["train_x"], npz["train_y"], npz["test_x"], npz["test_y"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: decode again and overwrite it
    train_x, train_y = _read_image_folder(root / "train", classes)
    test_x, test_y = _read_image_folder(root / "test", classes)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, stamp=stamp)
        os.replace(tmp, cache)
    except OSError:
        pass  # a cache is a convenience; decoding again next time is correct too
    return train_x, train_y, test_x, test_y


def stratified_half(labels: np.ndarray, seed: int = FOLDER_SPLIT_SEED) -> Tuple[np.ndarray, np.ndarray]:
    """Split indices into two halves with each class split evenly, by a seeded permutation."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        first.append(idx[: len(idx) // 2])
        second.append(idx[len(idx) // 2:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


CIFAR10_LAYOUTS = ("the official python batches: <root>/cifar-10-batches-py/data_batch_1..5, test_batch; "
                   "or an image folder: <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg")


def load_cifar10(root: Path, download: bool = True) -> Splits:
    root, batches = _cifar10_layout(root, download)
    if batches is not None:
        x, y = _read_python_batches(batches, CIFAR10_TRAIN_BATCHES)
        train, valid = official_split("cifar10_train"), official_split("cifar10_valid")
        source = f"CIFAR-10 python batches in {batches}; NB201 cifar-split.txt train ({len(train)}) / valid ({len(valid)})"
    else:
        x, y, _, _ = _load_cifar10_folder(root)
        train, valid = stratified_half(y)
        source = (f"CIFAR-10 image folder {root}; seeded class-stratified half split (seed {FOLDER_SPLIT_SEED}) "
                  f"train ({len(train)}) / valid ({len(valid)})")
    t = torch.from_numpy
    return Splits(t(x[train]), t(y[train]), t(x[valid]), t(y[valid]), source)


def cifar10_test_set(root: Path) -> Tuple[Tensor, Tensor]:
    """The 10,000 CIFAR-10 test images and labels, in either layout. Not part of the NB201 protocol (archs are
    scored on the `valid` half); the released SPOS rankings scored every arch on these images, the ones the
    ground truth `cifar10_test_200ep` is measured on, and `benchmarks/scoring_protocol.py` measures what that
    choice changes."""
    root, batches = _cifar10_layout(root, download=False)
    x, y = _read_python_batches(batches, ["test_batch"]) if batches is not None else _load_cifar10_folder(root)[2:]
    return torch.from_numpy(x), torch.from_numpy(y)


CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def _cifar10_layout(root: Path, download: bool) -> Tuple[Path, Optional[Path]]:
    """The expanded root and its complete python-batches folder, or None there for an image folder; each
    caller reads only the parts it needs."""
    root = Path(root).expanduser()
    batches = root / "cifar-10-batches-py"
    if not batches.is_dir() and (root / "data_batch_1").is_file():
        batches = root
    if not batches.is_dir() and not (root / "train").is_dir() and download:
        _try_download("cifar10", root)
    if batches.is_dir():
        missing = [n for n in CIFAR10_TRAIN_BATCHES + ["test_batch"] if not (batches / n).is_file()]
        if missing:
            raise UserError(f"{batches} lacks {', '.join(missing)}", fix=f"CIFAR-10 must be in one of these layouts: {CIFAR10_LAYOUTS}")
        return root, batches
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root, None
    raise UserError(f"no CIFAR-10 data under {root}",
                    fix=f"pass --data-root DIR holding {CIFAR10_LAYOUTS} (or run once with internet to download)")


TORCHVISION_DOWNLOADS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}  # datasets fetched into --data-root when online


def _try_download(name: str, root: Path) -> None:
    dataset_class = TORCHVISION_DOWNLOADS[name]
    try:
        import torchvision

        getattr(torchvision.datasets, dataset_class)(str(root), train=True, download=True)
    except Exception:  # offline or blocked: the caller reports the missing data with the layouts
        pass


# ----------------------------------------------------------------------------- CIFAR-100
CIFAR100_LAYOUT = "the official python files: <root>/cifar-100-python/{train,test}"


def load_cifar100(root: Path, download: bool = True) -> Splits:
    """NB201 protocol: the supernet trains on the 50,000 training images; archs are scored on the
    `xvalid` half of the test set (official cifar100-test-split.txt, shipped as package data)."""
    folder = root / "cifar-100-python"
    if not folder.is_dir() and (root / "train").is_file() and (root / "test").is_file():
        folder = root
    if not folder.is_dir() and download:
        _try_download("cifar100", root)
    missing = [n for n in ("train", "test") if not (folder / n).is_file()]
    if missing:
        raise UserError(f"no CIFAR-100 data under {root} (missing {', '.join(missing)})",
                        fix=f"pass --data-root DIR holding {CIFAR100_LAYOUT} (torchvision downloads it there when online)")
    train_x, train_y = _read_python_batches(folder, ["train"])
    test_x, test_y = _read_python_batches(folder, ["test"])
    _check_count(folder / "test", len(test_x), 10000)  # the official split indexes these 10,000
    xvalid = official_split("cifar100_xvalid")
    t = torch.from_numpy
    return Splits(t(train_x), t(train_y), t(test_x[xvalid]), t(test_y[xvalid]),
                  f"CIFAR-100 python files in {folder}; train (50000); NB201 cifar100-test-split.txt xvalid ({len(xvalid)})")


def _check_count(path: Path, got: int, want: int) -> None:
    if got != want:
        raise UserError(f"{path} holds {got} images, the official file holds {want}",
                        fix="replace it with the official file (the NB201 split indexes the official order)")


# ----------------------------------------------------------------------------- ImageNet16-120
IN16_FILES = [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]
IN16_SOURCE = ("ImageNet16 (downsampled ImageNet, 16x16) has no automatic download: get `Imagenet16_train.tar.gz` "
               "and `Imagenet16_val.tar.gz` from image-net.org (Downsampled ImageNet, Chrabaszcz et al. 2017) "
               "and unpack both into one directory, as NB201 does")


def _read_in16(path: Path, max_label: int = 120) -> Tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise UserError(f"{path} is not an ImageNet16 batch (a pickled dict with 'data' and 'labels')", fix=IN16_SOURCE)
    data = np.asarray(entry["data"], dtype=np.uint8)
    labels = np.asarray(entry["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 16 * 16:
        raise UserError(f"{path}: data has shape {data.shape}, expected N x 768 (16x16 RGB)", fix=IN16_SOURCE)
    keep = (labels >= 1) & (labels <= max_label)  # labels are 1-based over 1000 classes
    return data[keep].reshape(-1, 3, 16, 16), labels[keep] - 1


def load_imagenet16_120(root: Path, download: bool = True) -> Splits:
    """NB201 protocol: train on the 120-class training images; score on the `xvalid` half of the
    120-class validation images (official imagenet-16-120-test-split.txt)."""
    missing = [n for n in IN16_FILES if not (root / n).is_file()]
    if missing:
        raise UserError(f"ImageNet16-120 files missing under {root}: {', '.join(missing)}",
                        fix=f"the directory must hold {', '.join(IN16_FILES)}. {IN16_SOURCE}")
    xs, ys = zip(*(_read_in16(root / n) for n in IN16_FILES[:-1]))
    train_x, train_y = np.concatenate(xs), np.concatenate(ys)
    test_x, test_y = _read_in16(root / "val_data")
    xvalid = official_split("imagenet16_xvalid")
    n_test = len(official_split("imagenet16_xvalid")) + len(official_split("imagenet16_xtest"))
    _check_count(root / "val_data", len(test_x), n_test)
    t = torch.from_numpy
    return Splits(t(train_x), t(train_y), t(test_x[xvalid]), t(test_y[xvalid]),
                  f"ImageNet16-120 in {root}; train ({len(train_x)}); NB201 imagenet-16-120-test-split.txt "
                  f"xvalid ({len(xvalid)})")


# ----------------------------------------------------------------------------- embedded CIFAR-10 sample
SAMPLE_FILE = "cifar10_sample.npz"
FULL_DATA_HINT = ("for the full data pass --data-root DIR: the official CIFAR-10 python batches "
                  "(cifar-10-batches-py/, downloaded there when online) or an image folder (train/<class>/*.jpg, "
                  "test/<class>/*.jpg)")


def _decode_jpegs(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    import io

    from PIL import Image

    out = np.empty((len(offsets) - 1, 3, 32, 32), dtype=np.uint8)
    raw = data.tobytes()
    for i in range(len(out)):
        with Image.open(io.BytesIO(raw[offsets[i]:offsets[i + 1]])) as im:
            out[i] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    return out


def load_cifar10_sample() -> Splits:
    """The small real CIFAR-10 sample shipped with the package (scripts/build_cifar10_sample.py):
    5,000 training images from the NB201-style train half of the CIFAR-10 training images and 1,000
    scoring images from the valid half, class-balanced, stored as the original JPEG bytes."""
    from kshot_bench.resources import package_file, read_npz

    arrays = read_npz(package_file(SAMPLE_FILE))  # decoded once per call: it is not kept in memory
    t = torch.from_numpy
    train_x = _decode_jpegs(arrays["train_jpeg"], arrays["train_offsets"])
    score_x = _decode_jpegs(arrays["valid_jpeg"], arrays["valid_offsets"])
    source = (f"embedded CIFAR-10 sample (package data {SAMPLE_FILE}): {len(train_x):,} training images from the "
              f"train half and {len(score_x):,} scoring images from the valid half of a seeded class-stratified "
              f"split of the CIFAR-10 training images, class-balanced")
    return Splits(t(train_x), t(arrays["train_labels"].copy()), t(score_x), t(arrays["valid_labels"].copy()), source,
                  embedded=True)


LOADERS = {"cifar10": load_cifar10, "cifar100": load_cifar100, "ImageNet16-120": load_imagenet16_120}


def load_dataset(name: str, root: Optional[Path], download: bool = True) -> Splits:
    """The dataset under `root`; with no root, the embedded CIFAR-10 sample (cifar10 only)."""
    DATASETS.get(name)
    if root is None:
        if name == "cifar10":
            return load_cifar10_sample()
        raise UserError(f"dataset {name!r} needs --data-root (the embedded sample is CIFAR-10 only)",
                        fix="pass --data-root DIR with the dataset's files")
    root = Path(root).expanduser()
    if not root.exists():
        fix = "pass --data-root DIR pointing at the dataset's files"
        if name in TORCHVISION_DOWNLOADS:
            fix += f" (or an empty directory: {name} is downloaded into it when online)"
        if name == "cifar10":
            fix += "; without --data-root the embedded sample is used"
        raise UserError(f"data directory {root} does not exist", fix=fix)
    if not os.access(root, os.R_OK):
        raise UserError(f"data directory {root} is not readable", fix="check its permissions or pass another --data-root")
    if name not in LOADERS:
        raise UserError(f"no loader for dataset {name!r} yet", fix=f"available: {', '.join(LOADERS)}")
    return LOADERS[name](root, download)


# ----------------------------------------------------------------------------- fast loader
class TensorLoader:
    """Batches of a uint8 image tensor, augmented and normalised as whole-batch tensor ops.

    `epoch(e, start=s)` yields the batches of epoch e from batch s on; drop_last keeps every batch
    full. Output images are float32, channels_last, normalised with the dataset's mean and std.
    """

    def __init__(self, images: Tensor, labels: Tensor, info: DatasetInfo, batch_size: int, seed: int,
                 augment: bool = True, drop_last: bool = True, pad: Optional[int] = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("TensorLoader needs uint8 images [N, 3, H, W]")
        self.images, self.labels = images, labels
        pad = info.crop_pad if pad is None else pad
        self.batch_size, self.seed, self.augment, self.drop_last, self.pad = batch_size, seed, augment, drop_last, pad
        dev = images.device
        self.mean = torch.tensor(info.mean, device=dev).view(1, 3, 1, 1) * 255
        self.inv_std = 1.0 / (torch.tensor(info.std, device=dev).view(1, 3, 1, 1) * 255)
        # zero padding as torchvision's RandomCrop(padding=4); stored NHWC so one gather cuts a batch
        self._padded = F.pad(images, (pad,) * 4).permute(0, 2, 3, 1).contiguous() if augment else None

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def n_images(self) -> int:
        return len(self.images)

    def epoch(self, epoch: int, start: int = 0, shard: Tuple[int, int] = (0, 1)) -> Iterator[Tuple[Tensor, Tensor]]:
        """`shard=(r, n)`: the r-th of n equal contiguous parts of every batch (a process's share of the
        global batch under torchrun, as a DistributedSampler gives), with the augmentation each image
        gets in the whole batch, so n processes together see exactly the single process's batches."""
        n, dev = len(self.images), self.images.device
        part, parts = shard
        if self.batch_size % parts:
            raise ValueError(f"batch {self.batch_size} does not split into {parts} equal parts")
        per = self.batch_size // parts
        g = epoch_generator(self.seed, epoch)
        order = torch.randperm(n, generator=g).to(dev)
        if self.augment:
            shifts = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g).to(dev)
            flips = (torch.rand(n, generator=g) < 0.5).to(dev)
        for b in range(start, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if parts > 1:
                idx = idx[part * per:(part + 1) * per]
            if self.augment:
                x = self._crop_flip(idx, shifts[idx], flips[idx])
            else:
                x = self.images[idx]
            yield self._normalise(x), self.labels[idx]

    def _crop_flip(self, idx: Tensor, shift: Tensor, flip: Tensor) -> Tensor:
        h, w = self.images.shape[-2:]
        ar_h = torch.arange(h, device=idx.device)
        ar_w = torch.arange(w, device=idx.device)
        rows = shift[:, :1] + ar_h                                   # [B, H]
        cols = shift[:, 1:] + torch.where(flip[:, None], ar_w.flip(0), ar_w)  # [B, W]
        out = self._padded[idx[:, None, None], rows[:, :, None], cols[:, None, :]]  # [B, H, W, 3]
        return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last

    def _normalise(self, x: Tensor) -> Tensor:
        x = x.float() if x.is_contiguous(memory_format=torch.channels_last) else \
            x.contiguous(memory_format=torch.channels_last).float()
        return (x - self.mean) * self.inv_std

    def fixed_batches(self, limit: Optional[int] = None, batch_size: Optional[int] = None) -> List[Tuple[Tensor, Tensor]]:
        """The first `limit` images in stored order, unaugmented, in batches: a fixed scoring set."""
        n = len(self.images) if limit is None else min(limit, len(self.images))
        bs = batch_size or self.batch_size
        return [(self._normalise(self.images[i:min(i + bs, n)]), self.labels[i:min(i + bs, n)]) for i in range(0, n, bs)]


def load_for(cfg, root: Optional[Path], download: bool = True):
    """The data of a run config: `load_dataset`, or for `--dataset imagenet` the image folder split by
    the config (local validation size, seed 0 as the protocol, image size)."""
    if cfg.dataset != "imagenet":
        return load_dataset(cfg.dataset, root, download)
    from kshot_bench.imagenet_data import IMAGENET_LAYOUT, FolderSplits, imagenet_parts

    if root is None:
        raise UserError("--dataset imagenet needs --data-root (an ImageNet image folder)", fix=f"expected {IMAGENET_LAYOUT}")
    size = cfg.image_size or DATASETS.get("imagenet").input_size
    parts = imagenet_parts(root, cfg.local_val_size, seed=0, image_size=size, eval_uint8=True)
    return FolderSplits(parts.train, parts.local_val, parts.source + f"; {size}x{size} images")
