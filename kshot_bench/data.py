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
    root = Path(root).expanduser()
    batches = root / "cifar-10-batches-py"
    if not batches.is_dir() and (root / "data_batch_1").is_file():
        batches = root
    if not batches.is_dir() and not (root / "train").is_dir() and download:
        _try_download("CIFAR10", root)
    if batches.is_dir():
        names = [f"data_batch_{i}" for i in range(1, 6)]
        missing = [n for n in names + ["test_batch"] if not (batches / n).is_file()]
        if missing:
            raise UserError(f"{batches} lacks {', '.join(missing)}", fix=f"CIFAR-10 must be in one of these layouts: {CIFAR10_LAYOUTS}")
        x, y = _read_python_batches(batches, names)
        train, valid = official_split("cifar10_train"), official_split("cifar10_valid")
        source = f"CIFAR-10 python batches in {batches}; NB201 cifar-split.txt train ({len(train)}) / valid ({len(valid)})"
    elif (root / "train").is_dir() and (root / "test").is_dir():
        x, y, _, _ = _load_cifar10_folder(root)
        train, valid = stratified_half(y)
        source = (f"CIFAR-10 image folder {root}; seeded class-stratified half split (seed {FOLDER_SPLIT_SEED}) "
                  f"train ({len(train)}) / valid ({len(valid)})")
    else:
        raise UserError(f"no CIFAR-10 data under {root}",
                        fix=f"pass --data-root DIR holding {CIFAR10_LAYOUTS} (or run once with internet to download)")
    t = torch.from_numpy
    return Splits(t(x[train]), t(y[train]), t(x[valid]), t(y[valid]), source)


def cifar10_test_set(root: Path) -> Tuple[Tensor, Tensor]:
    """The 10,000 CIFAR-10 test images and labels, in either layout. Not part of the NB201 protocol (archs are
    scored on the `valid` half); the released SPOS rankings scored every arch on these images, the ones the
    ground truth `cifar10_test_200ep` is measured on, and `benchmarks/scoring_protocol.py` measures what that
    choice changes."""
    root = Path(root).expanduser()
    batches = root / "cifar-10-batches-py"
    if not batches.is_dir() and (root / "test_batch").is_file():
        batches = root
    if batches.is_dir():
        if not (batches / "test_batch").is_file():
            raise UserError(f"{batches} lacks test_batch", fix=f"CIFAR-10 must be in one of these layouts: {CIFAR10_LAYOUTS}")
        x, y = _read_python_batches(batches, ["test_batch"])
    elif (root / "train").is_dir() and (root / "test").is_dir():
        _, _, x, y = _load_cifar10_folder(root)
    else:
        raise UserError(f"no CIFAR-10 data under {root}", fix=f"pass --data-root DIR holding {CIFAR10_LAYOUTS}")
    return torch.from_numpy(x), torch.from_numpy(y)


def _try_download(name: str, root: Path) -> None:
    try:
        import torchvision

        getattr(torchvision.datasets, name)(str(root), train=True, download=True)
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
        _try_download("CIFAR100", root)
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
        raise UserError(f"data directory {root} does not exist", fix="pass --data-root DIR pointing at the dataset's files")
    if not os.access(root, os.R_OK):
        raise UserError(f"data directory {root} is not readable", fix="check its permissions or pass another --data-root")
    if name not in LOADERS:
        raise UserError(f"no loader for dataset {name!r} yet", fix=f"available: {', '.join(LOADERS)}")
    return LOADERS[name](root, download)


# ----------------------------------------------------------------------------- fast loader
def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1))
    return g


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
        g = _epoch_generator(self.seed, epoch)
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


# ----------------------------------------------------------------------------- ImageNet (image folder)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_LAYOUT = "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (the ILSVRC-2012 layout)"


def default_workers() -> int:
    """Loader workers: every core but one, at most 8 (one worker starves a GPU on JPEG decoding)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass
class ImageNetParts:
    train: object       # torch Dataset: train minus the local validation images
    local_val: object   # the seeded local validation split carved from train (paper Sec. 5.1)
    test: object        # the official validation set, used as the test set
    source: str


def _read_bytes(path: str) -> Tensor:
    """The file's bytes as a uint8 tensor: decoding waits for the transform."""
    with open(path, "rb") as fh:
        return torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8)


def _decode_rgb(data: Tensor) -> Tensor:
    """Encoded image bytes -> uint8 [3, H, W]: torchvision.io's decoder (libjpeg-turbo), or PIL where a
    torchvision release no longer has it (torchvision 0.29 marks it deprecated in favour of TorchCodec;
    the pinned 0.29.1 has it)."""
    import warnings

    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        import io

        from PIL import Image

        img = Image.open(io.BytesIO(data.numpy().tobytes())).convert("RGB")
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    global _DECODE_NOTICE_OFF
    if not _DECODE_NOTICE_OFF:  # this one notice, once per process (a filter change per image is slow)
        warnings.filterwarnings("ignore", message=".*image decoding and encoding capabilities of TorchVision.*",
                                category=DeprecationWarning)
        _DECODE_NOTICE_OFF = True
    return decode_image(data, mode=ImageReadMode.RGB)


_DECODE_NOTICE_OFF = False


class TensorResizedCrop:
    """RandomResizedCrop + horizontal flip on uint8 tensors: decode (libjpeg-turbo through
    `torchvision.io.decode_image`), crop by slicing, antialiased bilinear resize of the uint8 crop
    (torchvision's vectorised uint8 kernel), flip; returns uint8 [3, size, size] (normalised later, on
    the batch: `normalize_batch`). The crop is drawn exactly as torchvision's RandomResizedCrop draws it
    (scale 0.08-1, ratio 3/4-4/3, the same torch random numbers), so only the resize kernel differs from
    the PIL pipeline (by a level or two of 255); faster than the PIL pipeline per image
    (benchmarks/imagenet_loader.py, results in benchmarks/results/). Workers send uint8 images:
    a quarter of the bytes of float32 through the worker queues and pinned memory.
    (Decoding at 1/2-1/8 scale in the DCT domain, PIL's `draft`, does not pay at 224: a 500x375 image's
    crops are almost never 448 px on their short side, the least that a 2x reduction needs.)"""

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), normalize: bool = False):
        self.size, self.scale, self.ratio, self.normalize = size, scale, ratio, normalize
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
        self.inv_std = 1.0 / (torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255)

    def __call__(self, data: Tensor) -> Tensor:
        from torchvision.transforms import RandomResizedCrop
        from torchvision.transforms.v2.functional import resize

        img = _decode_rgb(data)
        i, j, h, w = RandomResizedCrop.get_params(img, list(self.scale), list(self.ratio))
        out = resize(img[:, i:i + h, j:j + w], [self.size, self.size], antialias=True)
        out = out.flip(-1) if torch.rand(1).item() < 0.5 else out
        return out.float().sub_(self.mean).mul_(self.inv_std) if self.normalize else out


def normalize_batch(x: Tensor, device: torch.device, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Tensor:
    """A uint8 batch [B, 3, H, W] from the loader -> float32 channels_last on `device`, normalised (a
    float batch, normalised in the workers already, only moves). One conversion pass (dtype and layout
    together) and two in-place passes."""
    x = x.to(device, non_blocking=True)
    if x.dtype != torch.uint8:
        return x.contiguous(memory_format=torch.channels_last)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    inv = 1.0 / (torch.tensor(std, device=device).view(1, 3, 1, 1) * 255)
    out = torch.empty(x.shape, dtype=torch.float32, device=device, memory_format=torch.channels_last)
    return out.copy_(x).sub_(m).mul_(inv)


def imagenet_parts(root: Path, local_val_size: int = 50000, seed: int = 0, image_size: int = 224,
                   fast: bool = True, uint8: Optional[bool] = None, eval_uint8: Optional[bool] = None) -> ImageNetParts:
    """ImageNet from an image folder, split as in SPOS / K-shot NAS: `local_val_size` images drawn
    from train with a seeded permutation form the local validation set, the rest trains the
    supernet; the official val set is the test set. Training: RandomResizedCrop + flip; evaluation:
    resize to 256/224 of the size, center crop. `fast` (default): training images decoded and cropped
    as uint8 tensors (`TensorResizedCrop`); with `uint8` (the default on CUDA machines) every part stays
    uint8 for `normalize_batch` on the GPU (a quarter of the bytes through workers and pinned memory),
    without it (the default on CPUs, where the main process would do that work alone) the workers
    normalise (`eval_uint8` sets the evaluation parts apart: scoring keeps a fixed uint8 subset).
    `fast=False`: the classic torchvision pipeline (PIL, float tensors normalised in the workers).
    benchmarks/imagenet_loader.py compares them; `normalize_batch` takes either output."""
    import torchvision.transforms as T
    from torch.utils.data import Subset
    from torchvision.datasets import ImageFolder

    root = Path(root).expanduser()
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise UserError(f"no ImageNet {part}/ folder under {root}", fix=f"expected {IMAGENET_LAYOUT}")
    resize = [T.Resize(int(image_size * 256 / 224)), T.CenterCrop(image_size)]
    uint8 = torch.cuda.is_available() if uint8 is None else uint8
    eval_uint8 = uint8 if eval_uint8 is None else eval_uint8
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if fast:
        train_aug = ImageFolder(str(root / "train"), transform=TensorResizedCrop(image_size, normalize=not uint8),
                                loader=_read_bytes)
        eval_tf = T.Compose([*resize, T.PILToTensor()] if eval_uint8 else [*resize, T.ToTensor(), normalize])
    else:
        train_tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
        train_aug = ImageFolder(str(root / "train"), transform=train_tf)
        eval_tf = T.Compose([*resize, T.ToTensor(), normalize])
    train_eval = ImageFolder(str(root / "train"), transform=eval_tf)
    test = ImageFolder(str(root / "val"), transform=eval_tf)
    if train_aug.classes != test.classes:
        raise UserError(f"train/ and val/ under {root} hold different classes", fix=f"expected {IMAGENET_LAYOUT}")
    n = len(train_aug)
    if not 0 < local_val_size < n:
        raise UserError(f"a local validation split of {local_val_size} images needs more than that in train/ (found {n})",
                        fix="lower local_val_size")
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:local_val_size]), np.sort(perm[local_val_size:])
    return ImageNetParts(Subset(train_aug, train_idx.tolist()), Subset(train_eval, val_idx.tolist()), test,
                         f"ImageNet folder {root}: {len(train_idx)} train / {local_val_size} local val "
                         f"(seed {seed}) / {len(test)} test")


@dataclass
class FolderSplits:
    """An image-folder dataset (ImageNet) for `train` and scoring: the training images stay on disk and
    stream through `FolderLoader`; scoring decodes only the fixed subset it needs (`score_subset`)."""

    train: object        # Dataset of (image, label), training augmentation
    local_val: object    # Dataset of (uint8 image, label), evaluation transform
    source: str
    embedded: bool = False

    def score_subset(self, indices) -> Tuple[Tensor, Tensor]:
        """uint8 images [n, 3, S, S] and labels of these local-validation indices, decoded once."""
        from torch.utils.data import DataLoader, Subset

        loader = DataLoader(Subset(self.local_val, [int(i) for i in indices]), batch_size=256,
                            num_workers=default_workers())
        xs, ys = zip(*loader)
        return torch.cat(xs), torch.cat(ys)

    def train_loader(self, info: DatasetInfo, batch_size: int, seed: int, device: torch.device, subset: int = 0,
                     workers: int = -1) -> "FolderLoader":
        """Images streamed from disk, augmented by loader workers (`subset`: a fixed seeded subset)."""
        return FolderLoader(folder_subset(self.train, subset), batch_size, seed, device, workers)

    def train_subset(self, indices) -> Tuple[Tensor, Tensor]:
        raise UserError("re-estimating BN statistics on training images (bn_calibration) is not available for "
                        "image-folder datasets yet: their training images stream with augmentation",
                        fix="score with --set bn_calibration=0 (each batch's own statistics)")

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_score(self) -> int:
        return len(self.local_val)

    def __len__(self) -> int:
        return self.n_score


def folder_subset(dataset, n: int):
    """A fixed seeded subset of n images of an image-folder dataset (all of it for n = 0 or n >= its size);
    the seed is part of the protocol, the same for every run seed."""
    if not n or n >= len(dataset):
        return dataset
    keep = np.sort(np.random.default_rng(0).permutation(len(dataset))[:n])
    return torch.utils.data.Subset(dataset, keep.tolist())


class _SeededSample(torch.utils.data.Dataset):
    """Item (i, epoch): sample i augmented with torch random numbers seeded by (seed, epoch, i), so an
    image gets the same crop and flip whichever worker (or process) loads it, and a resumed epoch
    repeats the interrupted one exactly. The caller's random state is left as it was."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        i, epoch = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, i]).generate_state(1, np.uint64)[0] >> 1))
            return self.dataset[i]


class FolderLoader:
    """TensorLoader's interface over an image folder: `epoch(e, start, shard)` yields normalised
    channels_last batches on `device`, from batch `start` on, the `shard` part of every global batch;
    the order of epoch e is a permutation seeded by (seed, e), the augmentation is seeded per image
    (`_SeededSample`): the same batches whatever the worker count, and exact on resume."""

    def __init__(self, dataset, batch_size: int, seed: int, device: torch.device, workers: int = -1):
        self.dataset, self.batch_size, self.seed, self.device = dataset, batch_size, seed, device
        self.workers = default_workers() if workers < 0 else workers

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    @property
    def n_images(self) -> int:
        return len(self.dataset)

    def epoch(self, epoch: int, start: int = 0, shard: Tuple[int, int] = (0, 1)) -> Iterator[Tuple[Tensor, Tensor]]:
        from torch.utils.data import DataLoader

        part, parts = shard
        per = self.batch_size // parts
        order = torch.randperm(len(self.dataset), generator=_epoch_generator(self.seed, epoch)).tolist()
        batches = [[(i, epoch) for i in order[b * self.batch_size:(b + 1) * self.batch_size][part * per:(part + 1) * per]]
                   for b in range(start, len(self))]
        if not batches:
            return
        # its own generator: a DataLoader draws its workers' base seed from the global RNG otherwise, which
        # would make the dropout of a resumed run differ (the augmentation is seeded per image anyway)
        loader = DataLoader(_SeededSample(self.dataset, self.seed), batch_sampler=batches, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", generator=_epoch_generator(self.seed, epoch))
        for x, y in loader:
            yield normalize_batch(x, self.device), y.to(self.device, non_blocking=True)


def load_for(cfg, root: Optional[Path], download: bool = True):
    """The data of a run config: `load_dataset`, or for `--dataset imagenet` the image folder split by
    the config (local validation size, seed 0 as the protocol, image size)."""
    if cfg.dataset != "imagenet":
        return load_dataset(cfg.dataset, root, download)
    if root is None:
        raise UserError("--dataset imagenet needs --data-root (an ImageNet image folder)", fix=f"expected {IMAGENET_LAYOUT}")
    size = cfg.image_size or DATASETS.get("imagenet").input_size
    parts = imagenet_parts(root, cfg.local_val_size, seed=0, image_size=size, eval_uint8=True)
    return FolderSplits(parts.train, parts.local_val, parts.source + f"; {size}x{size} images")


def imagenet_loader(dataset, batch_size: int, train: bool, workers: Optional[int] = None, distributed: bool = False,
                    seed: int = 0):
    """DataLoader with enough workers, pinned memory, persistent workers; a DistributedSampler under
    torch.distributed (call `loader.sampler.set_epoch(e)` each epoch)."""
    from torch.utils.data import DataLoader, DistributedSampler

    workers = default_workers() if workers is None else workers
    sampler = DistributedSampler(dataset, shuffle=train, seed=seed) if distributed else None
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=workers, pin_memory=torch.cuda.is_available(), drop_last=train,
                      persistent_workers=workers > 0, generator=g)
