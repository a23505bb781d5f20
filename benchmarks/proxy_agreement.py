"""Agreement of the project's zero-cost proxies (kshot_bench/proxies.py) with the reference scores shipped for
NB201 (`package_data/nb201_proxies.npz`, from ../shared/data): Kendall's tau between ours and the reference on a
seeded sample of archs, and each one's tau against the ground truth on the same archs (issue 27, item 4).

  OMP_NUM_THREADS=1 python benchmarks/proxy_agreement.py --data-root ~/data/cifar10 [--archs 500] [--out FILE]
The reference scores were computed on the official CIFAR-10 batches with their own batch and seeds; ours on the
first 64 images of the seeded training half of the data given (an image folder here). As a yardstick for what two
faithful implementations reach, the shipped table's own independent re-computation of naswot (`naswot_reimpl_*`,
read from ../shared/data when it is there) is compared with its reference on the same archs. The last line printed
is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench.config import RunConfig  # noqa: E402
from kshot_bench.data import load_for  # noqa: E402
from kshot_bench.datasets import DATASETS  # noqa: E402
from kshot_bench.ground_truth import space_truth  # noqa: E402
from kshot_bench.metrics import kendall_tau  # noqa: E402
from kshot_bench.models import NETWORKS  # noqa: E402
from kshot_bench.proxies import arch_proxies, batch_images  # noqa: E402
from kshot_bench.resources import package_npz  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.search_space import nb201  # noqa: E402

NAMES = ("synflow", "naswot")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--archs", default="500")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    tune_allocator()
    info = DATASETS.get("cifar10")
    splits = load_for(RunConfig(), args.data_root, download=False)
    x, y = batch_images(splits, info)
    keys, archs, desc = nb201.arch_set(args.archs, args.seed)
    build = NETWORKS.get("nb201")
    t0 = time.perf_counter()
    ours = {n: [] for n in NAMES}
    for i, arch in enumerate(archs):
        scores = arch_proxies(lambda a: build(a, info.num_classes), arch, NAMES, x, y)
        for n in NAMES:
            ours[n].append(scores[n])
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(archs)} archs", file=sys.stderr, flush=True)
    idx = np.asarray(keys)
    truth = space_truth(nb201, "cifar10_test_200ep")[idx]
    reference = package_npz("nb201_proxies.npz")
    results = {}
    for n in NAMES:
        mine, ref = np.asarray(ours[n]), reference[f"{n}_cifar10"][idx]
        finite = np.isfinite(mine) & np.isfinite(ref)
        results[n] = {"tau_ours_vs_reference": kendall_tau(mine[finite], ref[finite]),
                      "tau_ours_vs_truth": kendall_tau(mine, truth),
                      "tau_reference_vs_truth": kendall_tau(ref, truth),
                      "archs_compared": int(finite.sum()), "ours_not_finite": int((~np.isfinite(mine)).sum()),
                      "reference_not_finite": int((~np.isfinite(ref)).sum())}
        print(f"{n}: ours vs reference {results[n]['tau_ours_vs_reference']:.3f}; vs truth ours "
              f"{results[n]['tau_ours_vs_truth']:.3f}, reference {results[n]['tau_reference_vs_truth']:.3f}",
              file=sys.stderr)
    shared_csv = ROOT.parent / "shared" / "data" / "nb201" / "nb201_zero_cost_proxies.csv"
    if shared_csv.is_file():
        import pandas as pd

        table = pd.read_csv(shared_csv).set_index("index").loc[idx]
        a, b = table["naswot_cifar10"].to_numpy(), table["naswot_reimpl_cifar10"].to_numpy()
        finite = np.isfinite(a) & np.isfinite(b)
        results["naswot"]["tau_reference_vs_its_reimplementation"] = kendall_tau(a[finite], b[finite])
        print(f"naswot: reference vs the table's re-implementation {kendall_tau(a[finite], b[finite]):.3f}",
              file=sys.stderr)
    result = {"benchmark": "proxy_agreement", "archs": desc, "data": splits.source,
              "batch": f"the first {len(y)} images of the training part, unaugmented", "truth": "cifar10_test_200ep",
              "network": "NB201Network(C=16, N=5, every edge), initialised with seed 0", "results": results,
              "wall_s": time.perf_counter() - t0, "machine": machine_info(torch.device("cpu")),
              "date": time.strftime("%Y-%m-%d")}
    emit(result, "proxy_agreement-nb201-cifar10", False, out=args.out)


if __name__ == "__main__":
    main()
