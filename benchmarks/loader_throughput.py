"""Loading + augmentation throughput for CIFAR-10: the in-memory fast path vs a torchvision pipeline.

Both produce the same thing per image: random crop 32 with 4-pixel zero padding, random horizontal
flip, float32 normalised with NB201's mean/std, in batches of 64 of shuffled images.
  fast        kshot_bench.data.TensorLoader: the uint8 set in one tensor, one gather per batch
  torchvision a Dataset over the same uint8 images (PIL per image) with RandomCrop(32, padding=4),
              RandomHorizontalFlip, ToTensor, Normalize, in a DataLoader with `--workers` workers
              (default: both 0 and 2 are measured; this machine has 2 cores)
Images: the CIFAR-10 image folder if `--data-root` is given (decoded once, cached), otherwise 25,000
random uint8 images (throughput does not depend on pixel values). Median of `--rounds` epochs.
Target (issue 4): the fast path at least 3x the torchvision pipeline.

  python benchmarks/loader_throughput.py [--data-root DIR] [--quick]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402

from kshot_bench.data import TensorLoader, load_dataset  # noqa: E402
from kshot_bench.datasets import DATASETS  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402

INFO = DATASETS.get("cifar10")


class UInt8Dataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def torchvision_epoch(images_hwc, labels, workers, limit):
    import torchvision.transforms as T

    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(INFO.mean, INFO.std)])
    loader = torch.utils.data.DataLoader(UInt8Dataset(images_hwc[:limit], labels[:limit], tf), batch_size=64,
                                         shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=False)
    t0 = time.perf_counter()
    n = 0
    for x, y in loader:
        n += len(y)
    return n / (time.perf_counter() - t0)


def fast_epoch(loader: TensorLoader, epoch: int, limit: int):
    t0 = time.perf_counter()
    n = 0
    for x, y in loader.epoch(epoch):
        n += len(y)
        if n >= limit:
            break
    return n / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tune_allocator()
    if args.data_root is not None:
        splits = load_dataset("cifar10", args.data_root, download=False)
        images, labels, source = splits.train_x, splits.train_y, splits.source
    else:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (25000, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (25000,), generator=g)
        source = "25,000 random uint8 32x32 images"
    limit = 6400 if args.quick else len(images)
    rounds = 2 if args.quick else args.rounds
    images_hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
    fast_loader = TensorLoader(images, labels, INFO, 64, seed=0)
    results = {"fast": [], "torchvision_w0": [], "torchvision_w2": []}
    for r in range(rounds):
        results["fast"].append(fast_epoch(fast_loader, r, limit))
        results["torchvision_w0"].append(torchvision_epoch(images_hwc, labels.numpy(), 0, limit))
        results["torchvision_w2"].append(torchvision_epoch(images_hwc, labels.numpy(), 2, limit))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in results.items()), flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    best_tv = max(med["torchvision_w0"], med["torchvision_w2"])
    result = {
        "benchmark": "loader_throughput",
        "protocol": f"CIFAR-10 crop(32, pad 4) + flip + normalise, batch 64, shuffled; {limit} images per epoch, "
                    f"median of {rounds} epochs; images: {source}",
        "machine": machine_info(torch.device("cpu")),
        "images_per_s": med,
        "raw_images_per_s": results,
        "fast_vs_torchvision_best": med["fast"] / best_tv,
        "fast_vs_torchvision_w0": med["fast"] / med["torchvision_w0"],
        "fast_vs_torchvision_w2": med["fast"] / med["torchvision_w2"],
    }
    print(f"fast path {med['fast']:.0f} img/s; torchvision 0 workers {med['torchvision_w0']:.0f}, 2 workers "
          f"{med['torchvision_w2']:.0f}; ratio vs the better torchvision setting {result['fast_vs_torchvision_best']:.1f}x "
          "(target >= 3)")
    emit(result, "loader_throughput", args.quick, "cpu", args.out)


if __name__ == "__main__":
    main()
