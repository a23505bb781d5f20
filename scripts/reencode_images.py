"""Re-encode an image folder as JPEG at a lower quality: the dose test of issue 44 (how much of the gap to the
released one-shot figures our JPEG copy of CIFAR-10 can explain). Our CIFAR-10 is already a JPEG re-encoding
(quality 75, 4:2:0 chroma); training on a second, harsher re-encoding (quality 50) and comparing with the same run
on our images bounds what image degradation does to the ranking: if one more step of degradation moves tau by
little, the first step (the original pixels against quality 75) is unlikely to explain a large gap.

Every image of SRC/{train,test}/<class>/ is decoded and written to the same place under DST as JPEG at `--quality`
with 4:2:0 chroma subsampling (Pillow's default), file names kept. The test images are re-encoded too, so that a
run's scoring images (a part of train/) and any test-set scoring see the same degradation.

  python scripts/reencode_images.py /work/data/cifar10 /work/data/cifar10-q50 --quality 50
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def reencode(src: Path, dst: Path, quality: int) -> int:
    from PIL import Image

    n = 0
    for path in sorted(src.glob("*/*/*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        out = dst / path.relative_to(src)
        out = out.with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im.convert("RGB").save(out, "JPEG", quality=quality, subsampling=2)
        n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--quality", type=int, default=50)
    args = p.parse_args()
    if not (args.src / "train").is_dir():
        sys.exit(f"{args.src} has no train/ folder (expected SRC/train/<class>/*.jpg)")
    print(f"{reencode(args.src, args.dst, args.quality)} images written to {args.dst} at quality {args.quality}")


if __name__ == "__main__":
    main()
