"""Ship the project's zero-cost proxies of every NAS-Bench-Macro network as package data (the ranking
baselines of a space with no shipped proxy table; issue 27).

  OMP_NUM_THREADS=1 kshot-bench proxies --space macro --dataset cifar10 --archs all --batch 64 \
      --proxies synflow --proxies naswot --proxies snip --data-root ~/data/cifar10 --out macro_proxies.csv
  python scripts/build_macro_proxies.py --csv macro_proxies.csv

Writes kshot_bench/package_data/macro_proxies.npz: one row per distinct network in key order (the rows of
macro_cifar10.npz), a column `<proxy>_cifar10` per proxy in the CSV, and `source`: how it was computed. The CSV
must cover all 3,969 networks, each row's arch string must be the network of its key.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

import numpy as np

from kshot_bench.search_space import macro


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", type=Path, required=True, help="the output of `kshot-bench proxies --space macro --archs all`")
    p.add_argument("--data", default="the CIFAR-10 image folder (../shared/data/cifar10_images.tar.gz)",
                   help="what the batch images came from, recorded in the file")
    p.add_argument("--out", type=Path, default=Path("kshot_bench/package_data/macro_proxies.npz"))
    args = p.parse_args()
    with open(args.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_key = {int(r[macro.KEY]): r for r in rows}
    if sorted(by_key) != list(range(macro.NUM_ARCHS)):
        raise SystemExit(f"{args.csv}: {len(by_key)} networks, expected every key 0..{macro.NUM_ARCHS - 1}")
    names = [c for c in rows[0] if c not in (macro.KEY, "arch_str")]
    for key, row in by_key.items():
        if macro.key_of(row["arch_str"]) != key:
            raise SystemExit(f"{args.csv}: row {key} holds {row['arch_str']}, another network")
    columns = {f"{n}_cifar10": np.array([float(by_key[k][n]) for k in range(macro.NUM_ARCHS)]) for n in names}
    sha = hashlib.sha256(args.csv.read_bytes()).hexdigest()
    source = (f"kshot-bench proxies ({', '.join(names)}) of the {macro.NUM_ARCHS} NAS-Bench-Macro networks at seed-0 "
              f"initialisation, one batch of training images from {args.data}; csv sha256 {sha}")
    np.savez_compressed(args.out, source=np.array(source), **columns)
    print(f"{args.out}: {', '.join(columns)} for {macro.NUM_ARCHS} networks")


if __name__ == "__main__":
    main()
