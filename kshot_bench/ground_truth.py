"""NB201 ground truth: the embedded table shipped as package data, and loaders for official files.

The embedded table (`package_data/nb201_truth.npz`) is derived from the reference CSV by
`scripts/build_package_data.py`: the official index order (as base-5 arch codes) and float64
columns for all 15,625 archs (200- and 12-epoch accuracies, parameter counts). It loads in a few
milliseconds. `export_official` writes the same compact table from the files users already have:
  * NAS-Bench-201 `.pth` (v1_0 / v1_1), read through the official `nas_201_api`;
  * NATS-Bench topology (`tss`) `.pickle.pbz2` file or `-simple` directory, through `nats_bench`.
How each column is read from the official API (`get_more_info(..., is_random=False)`, the mean over
the benchmark's seeds):
  cifar10_test_200ep      cifar10,        hp 200, test-accuracy   (ori-test)
  cifar100_xtest_200ep    cifar100,       hp 200, test-accuracy   (x-test)
  cifar100_oritest_200ep  cifar100,       hp 200, valtest-accuracy (ori-test)
  imagenet16_*            ImageNet16-120, likewise
  *_test_12ep / *_val_12ep  hp 12: test-accuracy / valid-accuracy (cifar10: cifar10 test, cifar10-valid valid)
  params_M_*              get_cost_info(index, dataset, hp='200')['params']
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.resources import package_npz, read_npz
from kshot_bench.search_space import nb201

TRUTH_COLUMNS = [
    "cifar10_test_200ep", "cifar100_xtest_200ep", "imagenet16_xtest_200ep",
    "cifar100_oritest_200ep", "imagenet16_oritest_200ep",
    "params_M_cifar10", "params_M_cifar100", "params_M_imagenet16",
    "cifar10_test_12ep", "cifar10_val_12ep", "cifar100_test_12ep", "cifar100_val_12ep",
    "imagenet_test_12ep", "imagenet_val_12ep",
]
TRUTH_FILE = "nb201_truth.npz"
NB201_DOWNLOAD = ("NAS-Bench-201-v1_1-096897.pth (or v1_0-e61699.pth) from the NAS-Bench-201 project "
                  "(github.com/D-X-Y/NAS-Bench-201), or NATS-tss-v1_0-3ffb9.pickle.pbz2 / NATS-tss-v1_0-3ffb9-simple/ "
                  "from NATS-Bench (github.com/D-X-Y/NATS-Bench)")

# Published Kendall's tau over all 15,625 archs against cifar10_test_200ep (SPEC 5a, with its sources): reference
# lines in the report's figures, always labelled as published figures, never as our measurements.
PUBLISHED_TAU = {
    "cifar10_test_200ep": [
        ("SPOS supernet, C=16, 250 epochs", 0.59),
        ("narrow supernet, C=5, ENN-balanced, 250 epochs", 0.726),
        ("few-shot supernet (ENN split), C=8, 500 epochs", 0.751),
        ("AZ-NAS (zero-cost)", 0.741),
        ("VKDNW (zero-cost)", 0.750),
    ],
}


@functools.lru_cache(maxsize=None)
def load_truth_arrays(path: Optional[str] = None) -> Dict[str, np.ndarray]:
    """All columns of the NB201 table (the embedded one, or an exported file), in official index order."""
    if path is None:
        return package_npz(TRUTH_FILE)
    p = Path(path)
    if not p.is_file():
        raise UserError(f"benchmark table {p} does not exist",
                        fix="pass a table written by `kshot-bench export-benchmark`, or leave --benchmark out to use the embedded one")
    try:
        arrays = read_npz(p)
    except Exception as err:
        raise UserError(f"cannot read benchmark table {p}: {err}", fix="write it with `kshot-bench export-benchmark`") from None
    if "arch_code" not in arrays or len(arrays["arch_code"]) != 15625:
        raise UserError(f"{p} is not an NB201 table (it needs arch_code for 15,625 archs)",
                        fix="write it with `kshot-bench export-benchmark`")
    embedded = load_truth_arrays(None)["arch_code"]
    if not np.array_equal(arrays["arch_code"], embedded):
        raise UserError(f"{p} lists the archs in another order than the official NB201 index")
    return arrays


@functools.lru_cache(maxsize=1)
def load_proxy_arrays() -> Dict[str, np.ndarray]:
    """Zero-cost proxy scores (naswot, synflow, logsynflow, nregions per dataset), official index order."""
    return package_npz("nb201_proxies.npz")


def truth_columns(path: Optional[str] = None) -> List[str]:
    return [c for c in load_truth_arrays(path) if c != "arch_code"]


def truth_column(name: str, path: Optional[str] = None) -> np.ndarray:
    arrays = load_truth_arrays(path)
    if name not in arrays or name == "arch_code":
        raise UserError(f"unknown ground-truth column {name!r}", fix=f"choose one of: {', '.join(truth_columns(path))}")
    return arrays[name]


# ----------------------------------------------------------------------------- any space with a ground truth
def has_truth(space, dataset: str) -> bool:
    """The space ships a ground-truth table for this dataset (its TRUTH names the default column)."""
    return dataset in space.TRUTH


def space_truth(space, column: str) -> np.ndarray:
    """A column of the space's truth table, one value per key (row = key)."""
    if not space.TRUTH:
        raise UserError(f"the {space.NAME} space has no ground-truth benchmark", fix="drop --truth")
    table = package_npz(space.TRUTH_TABLE)
    names = [c for c, v in table.items() if v.dtype.kind == "f"]  # not the index columns (codes, strings)
    if column not in names:
        raise UserError(f"unknown ground-truth column {column!r}", fix=f"choose one of: {', '.join(names)}")
    return table[column]


def noise_ceiling(space, dataset: str, keys: Sequence) -> Optional[Dict]:
    """How well one independent training of the benchmark ranks the archs like another, on these archs:
    Kendall's tau of each pair of the table's repeated trainings (space.REPEATS), and their mean. No ranking
    against a truth measured with that noise can be expected to agree much better. None where the table
    ships no repeats."""
    from itertools import combinations

    from kshot_bench.metrics import kendall_tau

    columns = space.REPEATS.get(dataset, ())
    if len(columns) < 2:
        return None
    table, rows = package_npz(space.TRUTH_TABLE), np.asarray(keys)
    pairs = {f"{a}~{b}": kendall_tau(table[a][rows], table[b][rows]) for a, b in combinations(columns, 2)}
    return {"kendall_tau": float(np.mean(list(pairs.values()))), "pairs": pairs,
            "description": f"two independent trainings of the benchmark agree (mean over its {len(pairs)} pairs)"}


def baseline_scores(space, info, keys: Sequence, archs: Sequence) -> Dict[str, Tuple[np.ndarray, str]]:
    """Ranking baselines on the same archs: name -> (scores, description). Costs (parameters, FLOPs) by the
    space's convention, and the columns its tables ship (zero-cost proxies, short trainings)."""
    out = {}
    if space.COST_BASELINES:
        classes, size = space.COST_CONVENTION or (info.num_classes, info.input_size)
        costs = np.array([space.cost(a, classes, size) for a in archs], dtype=np.float64).reshape(-1, 2)
        for j, name in enumerate(("params", "flops")):
            if name in space.COST_BASELINES:
                out[name] = (costs[:, j], space.COST_BASELINES[name].format(size=size, classes=classes))
    rows = np.asarray(keys)
    for name, table, column, desc in space.table_baselines(info.name):
        values = package_npz(table)
        if column in values:
            out[name] = (values[column][rows], desc)
    # no single random-score draw: it lands anywhere in about +-0.1 by chance; ranking_metrics gives the
    # null band of uninformative scores on the same archs instead
    return out


# ----------------------------------------------------------------------------- official files
def _api_nb201(path: Path):
    """NASBench201API over the official .pth. Its `torch.load` predates `weights_only`: the file
    holds plain Python objects, so it is loaded with weights_only=False (trust the file's source)."""
    from nas_201_api import NASBench201API

    old = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
            return NASBench201API(str(path), verbose=False)
    finally:
        if old is None:
            os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = old


def _api_nats(path: Path):
    try:
        from nats_bench import create
    except ImportError:
        raise UserError("reading NATS-Bench files needs the nats_bench package", fix="pip install nats_bench") from None
    return create(str(path), "tss", fast_mode=path.is_dir(), verbose=False)


def open_official(path: Path):
    """The official API object for an NB201 .pth or a NATS-Bench tss file/directory."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"benchmark file {path} does not exist", fix=f"download {NB201_DOWNLOAD}")
    try:
        if path.is_dir() or path.name.endswith(".pbz2"):
            return _api_nats(path)
        return _api_nb201(path)
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"{path} is not a readable NAS-Bench-201 / NATS-Bench tss file ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:160] if str(err) else ''})", fix=f"expected {NB201_DOWNLOAD}") from None


def _readers() -> Dict[str, Callable]:
    def more(dataset, hp, key):
        return lambda api, i: api.get_more_info(i, dataset, hp=hp, is_random=False)[key]

    def params(dataset):
        return lambda api, i: api.get_cost_info(i, dataset, hp="200")["params"]

    return {
        "cifar10_test_200ep": more("cifar10", "200", "test-accuracy"),
        "cifar100_xtest_200ep": more("cifar100", "200", "test-accuracy"),
        "imagenet16_xtest_200ep": more("ImageNet16-120", "200", "test-accuracy"),
        "cifar100_oritest_200ep": more("cifar100", "200", "valtest-accuracy"),
        "imagenet16_oritest_200ep": more("ImageNet16-120", "200", "valtest-accuracy"),
        "params_M_cifar10": params("cifar10"),
        "params_M_cifar100": params("cifar100"),
        "params_M_imagenet16": params("ImageNet16-120"),
        "cifar10_test_12ep": more("cifar10", "12", "test-accuracy"),
        "cifar10_val_12ep": more("cifar10-valid", "12", "valid-accuracy"),
        "cifar100_test_12ep": more("cifar100", "12", "test-accuracy"),
        "cifar100_val_12ep": more("cifar100", "12", "valid-accuracy"),
        "imagenet_test_12ep": more("ImageNet16-120", "12", "test-accuracy"),
        "imagenet_val_12ep": more("ImageNet16-120", "12", "valid-accuracy"),
    }


def export_official(src: Path, out: Path, progress: bool = True) -> Dict[str, int]:
    """Write the compact table (same layout as the embedded one) from an official benchmark file.

    Archs or columns the file does not hold are NaN. Returns how many values each column got.
    """
    from tqdm import tqdm

    api = open_official(Path(src))
    codes = load_truth_arrays(None)["arch_code"]
    n = len(codes)
    if len(api) != n:
        raise UserError(f"{src} lists {len(api)} archs; NB201 has {n}", fix=f"expected {NB201_DOWNLOAD}")
    for i in (0, n - 1):
        if nb201.from_str(api.arch(i)) != nb201.from_code(int(codes[i])):
            raise UserError(f"{src} orders its archs differently from the official NB201 index (arch {i})")
    columns = {c: np.full(n, np.nan) for c in TRUTH_COLUMNS}
    filled = {c: 0 for c in TRUTH_COLUMNS}
    readers = _readers()
    evaluated = sorted(getattr(api, "evaluated_indexes", range(n)))
    for i in tqdm(evaluated, desc="export", unit="arch", disable=not progress, mininterval=1.0):
        for col, read in readers.items():
            try:
                value = read(api, i)
            except Exception:  # this file has no such result for this arch (v1_0 lacks most 12-epoch runs)
                continue
            if value is not None:
                columns[col][i] = float(value)
                filled[col] += 1
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, arch_code=codes, **columns)
    os.replace(tmp, out)
    return filled
