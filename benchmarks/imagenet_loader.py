"""ImageNet training-loader throughput at 224: kshot_bench's loader against a plain torchvision one.

Both read the same ImageNet-layout folder of JPEGs, draw RandomResizedCrop(224) (scale 0.08-1) and a
horizontal flip per image, and deliver batches of `--batch` shuffled images, with the same number of
DataLoader workers:
  torchvision  ImageFolder + RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize (float32 in
               the workers): the pipeline most NAS code bases use
  kshot_bench  `imagenet_parts(fast=True)`: decode, crop and resize as uint8 tensors (`TensorResizedCrop`:
               torchvision.io's libjpeg-turbo decoder, the vectorised uint8 antialiased resize),
               normalised in the workers (the CPU default)
  kshot_bench_uint8  the same with uint8 through the workers, normalised on the batch by `normalize_batch`
               on `--device` (the CUDA default; timed here, so on a CPU the main process pays for it)
Images: `--images` JPEGs at ImageNet's typical size (500x375, quality 90) made from the CIFAR-10 images
(`--data-root`, upscaled) or, without it, from smooth synthetic pictures; JPEG decoding cost depends on
the size and the content's frequencies, so random noise would not do. Each loader runs `--rounds`
passes over the folder; the median images/s counts, the first batches (worker start-up) excluded.

  python benchmarks/imagenet_loader.py --workers 2 [--data-root CIFAR10_IMAGE_FOLDER]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402

from kshot_bench.imagenet_data import imagenet_loader, imagenet_parts, normalize_batch  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402

SIZE = (500, 375)  # the most common ImageNet training-image size


def source_images(data_root, n: int, seed: int):
    """n small RGB pictures: CIFAR-10 JPEGs from the folder, or smooth synthetic ones."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    if data_root:
        files = sorted(Path(data_root, "train").glob("*/*"))
        picks = rng.choice(len(files), size=n, replace=len(files) < n)
        return [Image.open(files[i]).convert("RGB") for i in picks], f"CIFAR-10 images from {data_root}, upscaled"
    out = []
    yy, xx = np.mgrid[0:64, 0:64]
    for _ in range(n):
        f = rng.uniform(3, 20, 3)
        img = np.stack([128 + 120 * np.sin(xx / f[0] + yy / f[1]), 128 + 120 * np.cos(yy / f[2]),
                        (xx * f[0] + yy * f[1]) % 256], -1)
        out.append(Image.fromarray(img.astype(np.uint8)))
    return out, "smooth synthetic pictures"


def write_folder(root: Path, images, classes: int = 10) -> None:
    from PIL import Image

    for part, share in (("train", images), ("val", images[:classes])):
        for i, img in enumerate(share):
            d = root / part / f"n{i % classes:08d}"
            d.mkdir(parents=True, exist_ok=True)
            img.resize(SIZE, Image.BICUBIC).save(d / f"img_{i}.JPEG", format="JPEG", quality=90)


def images_per_s(loader, device, convert: bool, warm_batches: int) -> float:
    n, t0 = 0, None
    for b, (x, _) in enumerate(loader):
        if convert:
            x = normalize_batch(x, device)
        if b == warm_batches - 1:
            t0 = time.perf_counter()
        elif b >= warm_batches:
            n += len(x)
    return n / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, default=None, help="result file (default: benchmarks/results/)")
    args = parser.parse_args()
    device = torch.device(args.device)
    images, what = source_images(args.data_root, args.images, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_folder(root, images)
        loaders = {}
        for name, fast, uint8 in (("torchvision", False, False), ("kshot_bench", True, False),
                                  ("kshot_bench_uint8", True, True)):
            parts = imagenet_parts(root, local_val_size=10, seed=0, image_size=224, fast=fast, uint8=uint8)
            loaders[name] = (imagenet_loader(parts.train, args.batch, train=True, workers=args.workers), fast)
        raw = {name: [] for name in loaders}
        for _ in range(args.rounds):  # interleaved, so drift of the machine hits both alike
            for name, (loader, fast) in loaders.items():
                raw[name].append(images_per_s(loader, device, fast, warm_batches=2))
    med = {name: statistics.median(v) for name, v in raw.items()}
    result = {
        "benchmark": "imagenet_loader",
        "protocol": f"{args.images} JPEGs of {SIZE[0]}x{SIZE[1]} (quality 90; {what}) in ImageNet layout; "
                    f"RandomResizedCrop(224) + flip, batch {args.batch}, shuffled, {args.workers} workers each, "
                    f"median of {args.rounds} passes, the first 2 batches of each pass excluded",
        "machine": machine_info(device),
        "images_per_s": med,
        "raw_images_per_s": raw,
        "speedup": med["kshot_bench"] / med["torchvision"],
        "speedup_uint8": med["kshot_bench_uint8"] / med["torchvision"],
        "note": args.note,
    }
    emit(result, "imagenet_loader", quick=False, device=device.type, out=args.out)


if __name__ == "__main__":
    main()
