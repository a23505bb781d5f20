"""What each dataset is: class count, input size, normalisation, split protocol. A space's ground truth per
dataset is the space's own (search_space/<space>.py: TRUTH).

Pure metadata (no torch); `data.py` holds the loaders. Names follow NB201: cifar10, cifar100,
ImageNet16-120.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from kshot_bench.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    train_part: str         # what the supernet trains on
    score_part: str         # what archs are scored on
    crop_pad: int = 4       # random-crop padding of the training augmentation (NB201: 4 for CIFAR, 2 for 16x16)


_CIFAR_MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))  # NB201's normalisation
_CIFAR_STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))
_IN16_MEAN = tuple(v / 255 for v in (122.68, 116.66, 104.01))
_IN16_STD = tuple(v / 255 for v in (63.22, 61.26, 65.09))

DATASETS: Registry[DatasetInfo] = Registry("dataset")
DATASETS.register("cifar10", DatasetInfo(
    "cifar10", 10, 32, _CIFAR_MEAN, _CIFAR_STD,
    "NB201 'train' half of the CIFAR-10 training set", "NB201 'valid' half of the CIFAR-10 training set"))
DATASETS.register("cifar100", DatasetInfo(
    "cifar100", 100, 32, _CIFAR_MEAN, _CIFAR_STD,
    "CIFAR-100 training set", "NB201 'xvalid' half of the CIFAR-100 test set"))
DATASETS.register("ImageNet16-120", DatasetInfo(
    "ImageNet16-120", 120, 16, _IN16_MEAN, _IN16_STD,
    "ImageNet16-120 training set", "NB201 'xvalid' half of the ImageNet16-120 test set", crop_pad=2))
# ImageNet (ILSVRC-2012 image folders) for the MobileNetV2 space;
# input size = the training crop (`image_size` in the config can lower it for small runs)
DATASETS.register("imagenet", DatasetInfo(
    "imagenet", 1000, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
    "ImageNet train minus the seeded local validation split (RandomResizedCrop + flip)",
    "the local validation split carved from ImageNet train (paper Sec. 5.1; resize + center crop)", crop_pad=0))

# other spellings in use (the truth table's columns say imagenet16_*; papers write CIFAR-10): all accepted, any case
for _alias, _name in (("imagenet16", "ImageNet16-120"), ("imagenet16-120", "ImageNet16-120"),
                      ("imagenet16_120", "ImageNet16-120"), ("cifar-10", "cifar10"), ("cifar-100", "cifar100"),
                      ("ilsvrc2012", "imagenet"), ("imagenet-1k", "imagenet")):
    DATASETS.alias(_alias, _name)


def canonical_dataset(name: str) -> str:
    """The dataset's one name (`ImageNet16-120`, `cifar10`, ...) for any accepted spelling; an unknown name is a
    UserError listing the datasets."""
    return DATASETS.canonical(name)

