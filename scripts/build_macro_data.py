"""Derive the NAS-Bench-Macro table that kshot_bench ships from the reference file in ../shared/data.

Run from the project root:  python scripts/build_macro_data.py [--shared ../shared/data]

Writes into kshot_bench/package_data/:
  macro_cifar10.npz    one row per distinct network (search_space.macro: the 3,969 canonical strings in sorted
                       order, the space's keys): `network` (the canonical string), `mean_acc`, `acc_run0..2` (the
                       three independent trainings), `std`, `params`, `flops`, `layers` (non-identity layers)
  macro_LICENSE.txt    the Apache License 2.0 under which the table is published (copied unchanged)
  macro_NOTICE.txt     the attribution
Strings of the same network carry identical entries in the source table; the script checks that before it
keeps one row per network. The package never reads ../shared at run time; this script is the only bridge.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from kshot_bench.search_space import macro

SOURCE = "nas-bench-macro/nas-bench-macro_cifar10.json"
NOTICE = """NAS-Bench-Macro (CIFAR-10), as shipped by kshot_bench in macro_cifar10.npz.

Source: the public NAS-Bench-Macro table (nas-bench-macro_cifar10.json, sha256 {sha}) from
Xiu Su et al., "Prioritized Architecture Sampling with Monte-Carlo Tree Search", CVPR 2021
(github.com/xiusu/NAS-Bench-Macro). Copyright 2021 Xiu Su. Licensed under the Apache License, Version 2.0
(macro_LICENSE.txt beside this file).

Changes made by kshot_bench (scripts/build_macro_data.py): the 6,561 arch strings are reduced to the 3,969
distinct networks they describe (an identity in a shape-keeping layer moved to the end of its stage; the
source gives the strings of one network identical entries, which the script checks), keyed by the sorted
canonical string, and stored as arrays: mean_acc, acc_run0..2 (the three trainings' test_acc), std, params,
flops, and the number of non-identity layers (derived).
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("kshot_bench/package_data"))
    args = p.parse_args()
    source = args.shared / SOURCE
    raw = source.read_bytes()
    table = json.loads(raw)
    if len(table) != macro.NUM_STRINGS:
        raise SystemExit(f"{source}: {len(table)} archs, expected {macro.NUM_STRINGS}")
    rows = {}
    for arch_str, entry in table.items():
        key = macro.canonical(arch_str)
        row = (tuple(entry["test_acc"]), entry["mean_acc"], entry["std"], entry["params"], entry["flops"])
        if rows.setdefault(key, row) != row:
            raise SystemExit(f"{arch_str} and another string of network {key} carry different entries")
    networks = sorted(rows)
    if networks != list(macro._networks()) or len(networks) != macro.NUM_ARCHS:
        raise SystemExit("the canonical networks of the table differ from search_space.macro's")
    acc = np.array([rows[n][0] for n in networks], dtype=np.float64)
    arrays = {
        "network": np.array(networks),
        "mean_acc": np.array([rows[n][1] for n in networks], dtype=np.float64),
        "acc_run0": acc[:, 0], "acc_run1": acc[:, 1], "acc_run2": acc[:, 2],
        "std": np.array([rows[n][2] for n in networks], dtype=np.float64),
        "params": np.array([rows[n][3] for n in networks], dtype=np.float64),
        "flops": np.array([rows[n][4] for n in networks], dtype=np.float64),
        "layers": np.array([macro.layers_used(n) for n in networks], dtype=np.float64),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "macro_cifar10.npz", **arrays)
    shutil.copyfile(source.parent / "LICENSE", args.out / "macro_LICENSE.txt")
    (args.out / "macro_NOTICE.txt").write_text(NOTICE.format(sha=hashlib.sha256(raw).hexdigest()))
    print(f"wrote {args.out / 'macro_cifar10.npz'} ({len(networks):,} networks), macro_LICENSE.txt, macro_NOTICE.txt")


if __name__ == "__main__":
    main()
