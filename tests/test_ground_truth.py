"""The embedded NB201 table against the reference files, and export from official-format files."""
import bz2
import pickle
import zlib

import numpy as np
import pytest
import torch

from kshot_bench.ground_truth import (TRUTH_COLUMNS, export_official, load_proxy_arrays, load_truth_arrays,
                                   truth_column)
from kshot_bench.errors import UserError
from kshot_bench.search_space import nb201


def test_embedded_table_equals_reference_on_every_row(truth_csv):
    table = load_truth_arrays()
    assert len(table["arch_code"]) == 15625
    for i, arch_str in enumerate(truth_csv["arch_str"]):
        assert nb201.from_code(int(table["arch_code"][i])) == nb201.from_str(arch_str)
    for col in TRUTH_COLUMNS:
        np.testing.assert_array_equal(table[col], truth_csv[col].to_numpy(np.float64), err_msg=col)


def test_embedded_proxies_equal_reference(shared_data):
    import pandas as pd

    ref = pd.read_csv(shared_data / "nb201" / "nb201_zero_cost_proxies.csv")
    for col, values in load_proxy_arrays().items():
        np.testing.assert_array_equal(values, ref[col].to_numpy(np.float64), err_msg=col)


def test_unknown_truth_column_lists_choices():
    with pytest.raises(UserError, match="unknown ground-truth column 'cifar10_acc'") as err:
        truth_column("cifar10_acc")
    assert "cifar10_test_200ep" in err.value.fix


# ----------------------------------------------------------------------------- synthetic official files
EVALUATED = {0: 2, 6111: 1, 857: 3}  # index -> number of seeds
DATASETS = {  # dataset -> (eval sets, classes)
    "cifar10-valid": (["x-valid", "ori-test"], 10),
    "cifar10": (["ori-test"], 10),
    "cifar100": (["x-valid", "x-test", "ori-test"], 100),
    "ImageNet16-120": (["x-valid", "x-test", "ori-test"], 120),
}


def fake_acc(index, dataset, setname, hp, seed):
    """A distinct, reproducible number per (arch, dataset, set, hp, seed)."""
    key = f"{index}|{dataset}|{setname}|{hp}|{seed}"
    return float(np.random.default_rng(zlib.crc32(key.encode())).uniform(10, 95))


def results_count(index, dataset, hp, seed, epochs):
    evals, classes = DATASETS[dataset]
    arch_str = nb201.to_str(nb201.from_index(index))
    params = nb201.cost(nb201.from_index(index), classes, 16 if dataset.startswith("Image") else 32)[0] / 1e6
    last = epochs - 1
    return {
        "name": dataset, "net_state_dict": None,
        "train_acc1es": {last: fake_acc(index, dataset, "train", hp, seed)}, "train_acc5es": None,
        "train_losses": {last: 0.5}, "train_times": None,
        "arch_config": {"arch_str": arch_str, "channel": 16, "num_cells": 5, "class_num": classes},
        "params": params, "flop": 1.0, "seed": seed, "epochs": epochs, "latency": None,
        "eval_names": list(evals),
        "eval_acc1es": {f"{s}@{last}": fake_acc(index, dataset, s, hp, seed) for s in evals},
        "eval_times": {}, "eval_losses": {f"{s}@{last}": 1.0 for s in evals},
    }


def arch_results(index, hp, seeds, datasets):
    seed_list = [777, 888, 999][:seeds]
    epochs = 200 if hp == "200" else 12
    return {
        "arch_index": index, "arch_str": nb201.to_str(nb201.from_index(index)),
        "all_results": {(d, s): results_count(index, d, hp, s, epochs) for d in datasets for s in seed_list},
        "dataset_seed": {d: list(seed_list) for d in datasets}, "clear_net_done": True,
    }


def official_dict(hp_keys):
    full = ["cifar10-valid", "cifar10", "cifar100", "ImageNet16-120"]
    return {
        "meta_archs": [nb201.to_str(a) for a in nb201.all_archs()],
        "arch2infos": {i: {hp_keys["12"]: arch_results(i, "12", n, full), hp_keys["200"]: arch_results(i, "200", n, full)}
                       for i, n in EVALUATED.items()},
        "evaluated_indexes": sorted(EVALUATED),
    }


def expected(index, column):
    seeds = [777, 888, 999][:EVALUATED[index]]
    spec = {
        "cifar10_test_200ep": ("cifar10", "ori-test", "200"), "cifar100_xtest_200ep": ("cifar100", "x-test", "200"),
        "imagenet16_xtest_200ep": ("ImageNet16-120", "x-test", "200"),
        "cifar100_oritest_200ep": ("cifar100", "ori-test", "200"),
        "imagenet16_oritest_200ep": ("ImageNet16-120", "ori-test", "200"),
        "cifar10_test_12ep": ("cifar10", "ori-test", "12"), "cifar10_val_12ep": ("cifar10-valid", "x-valid", "12"),
        "cifar100_test_12ep": ("cifar100", "x-test", "12"), "cifar100_val_12ep": ("cifar100", "x-valid", "12"),
        "imagenet_test_12ep": ("ImageNet16-120", "x-test", "12"), "imagenet_val_12ep": ("ImageNet16-120", "x-valid", "12"),
    }
    if column.startswith("params_M_"):
        return load_truth_arrays()[column][index]
    d, s, hp = spec[column]
    return float(np.mean([fake_acc(index, d, s, hp, seed) for seed in seeds]))


def check_export(out):
    with np.load(out) as npz:
        table = {k: npz[k] for k in npz.files}
    np.testing.assert_array_equal(table["arch_code"], load_truth_arrays()["arch_code"])
    for col in TRUTH_COLUMNS:
        for index in EVALUATED:
            assert table[col][index] == pytest.approx(expected(index, col), rel=1e-12), (col, index)
        assert np.isnan(table[col][1])  # not evaluated in the file
    return table


def test_export_from_nb201_pth(tmp_path):
    src = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    torch.save(official_dict({"12": "less", "200": "full"}), src)
    filled = export_official(src, tmp_path / "nb201.npz", progress=False)
    assert filled["cifar10_test_200ep"] == len(EVALUATED)
    check_export(tmp_path / "nb201.npz")
    # the exported table is usable as a benchmark table
    table = load_truth_arrays(str(tmp_path / "nb201.npz"))
    assert table["cifar100_xtest_200ep"][6111] == pytest.approx(expected(6111, "cifar100_xtest_200ep"))


def test_export_from_nats_tss_file(tmp_path):
    pytest.importorskip("nats_bench")
    src = tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2"
    with bz2.BZ2File(src, "wb") as fh:
        pickle.dump(official_dict({"12": "12", "200": "200"}), fh, protocol=4)
    export_official(src, tmp_path / "nats.npz", progress=False)
    check_export(tmp_path / "nats.npz")


def test_missing_or_wrong_official_file(tmp_path):
    with pytest.raises(UserError, match="does not exist") as err:
        export_official(tmp_path / "NAS-Bench-201-v1_1-096897.pth", tmp_path / "x.npz")
    assert "NAS-Bench-201-v1_1-096897.pth" in err.value.fix
    bad = tmp_path / "bad.pth"
    torch.save({"something": 1}, bad)
    with pytest.raises(UserError, match="not a readable NAS-Bench-201"):
        export_official(bad, tmp_path / "x.npz")
    with pytest.raises(UserError, match="does not exist"):
        load_truth_arrays(str(tmp_path / "none.npz"))
