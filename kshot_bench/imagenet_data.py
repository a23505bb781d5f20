"""ImageNet as an image folder (the MobileNetV2 search, paper Sec. 5): the seeded local validation split
carved from the training images, JPEG decoding, the tensor-side resized crop, and the loaders. The small
in-memory datasets are in `data.py`, whose `load_for` reaches this module for `--dataset imagenet`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from kshot_bench.datasets import DatasetInfo
from kshot_bench.errors import UserError
from kshot_bench.runtime import epoch_generator


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
        order = torch.randperm(len(self.dataset), generator=epoch_generator(self.seed, epoch)).tolist()
        batches = [[(i, epoch) for i in order[b * self.batch_size:(b + 1) * self.batch_size][part * per:(part + 1) * per]]
                   for b in range(start, len(self))]
        if not batches:
            return
        # its own generator: a DataLoader draws its workers' base seed from the global RNG otherwise, which
        # would make the dropout of a resumed run differ (the augmentation is seeded per image anyway)
        loader = DataLoader(_SeededSample(self.dataset, self.seed), batch_sampler=batches, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", generator=epoch_generator(self.seed, epoch))
        for x, y in loader:
            yield normalize_batch(x, self.device), y.to(self.device, non_blocking=True)


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
