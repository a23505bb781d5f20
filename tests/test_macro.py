"""NAS-Bench-Macro: the space, its shipped table, its networks from the MobileNet engine, and a rank job."""
import collections
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kshot_bench.errors import UserError
from kshot_bench.resources import package_npz
from kshot_bench.search_space import macro as s
from kshot_bench.supernet.kshot import merge
from kshot_bench.supernet.macro import KShotMacro, MacroNetwork

ARCHS = ["00000000", "22222222", "22212220", "10201021", "01020102", "12121212"]


@pytest.fixture(scope="module")
def table(shared_data):
    return json.loads((shared_data / "nas-bench-macro" / "nas-bench-macro_cifar10.json").read_text())


def test_strings_keys_and_canonical_form():
    assert s.to_str(s.from_str("22212220")) == "22212220" and s.validate((2, 2, 2, 1, 2, 2, 2, 0)).ops[3] == 1
    # an identity in a shape-keeping layer moves to the end of its stage; a stage's first layer stays
    assert s.canonical("02012100") == "02012100" and s.canonical("22021001") == "22021010"
    assert s.canonical("00000000") == "00000000" and s.canonical("10201021") == "10210021"
    assert len(s.all_strings()) == 6561 and len({s.canonical(a) for a in s.all_strings()}) == 3969 == s.NUM_ARCHS
    for a in s.all_strings()[::7]:
        assert s.canonical(s.from_key(s.key_of(a))) == s.canonical(a)
    keys, archs, desc = s.arch_set("all", 0)
    assert keys == list(range(3969)) and "3,969 distinct networks" in desc
    assert s.arch_set("250", 1)[0][:100] == s.arch_set("100", 1)[0]  # samples nest
    for bad in ("22", "22212223", "2221222x", "222122200"):
        with pytest.raises(UserError, match="malformed NAS-Bench-Macro arch string"):
            s.from_str(bad)
    with pytest.raises(UserError, match="out of range"):
        s.from_key(3969)


def test_shipped_table_is_one_row_per_network():
    t = package_npz(s.TRUTH_TABLE)
    assert list(t["network"]) == sorted(set(t["network"])) and len(t["network"]) == 3969
    assert all(s.key_of(n) == i for i, n in enumerate(t["network"][::50]) for i in [i * 50])
    best = int(np.argmax(t["mean_acc"]))
    assert t["network"][best] == "22212220" and t["mean_acc"][best] == pytest.approx(93.13, abs=0.01)
    np.testing.assert_allclose((t["acc_run0"] + t["acc_run1"] + t["acc_run2"]) / 3, t["mean_acc"], atol=1e-6)
    assert (t["layers"] == [s.layers_used(n) for n in t["network"]]).all()


def test_noise_ceiling_is_the_tables_repeat_agreement():
    """Over all 3,969 networks the table's three trainings agree at tau 0.88 pair by pair (the data README's
    noise ceiling); on a subset it is the same computation on those rows; NB201 ships no repeats."""
    from kshot_bench.ground_truth import noise_ceiling
    from kshot_bench.metrics import kendall_tau
    from kshot_bench.search_space import nb201

    c = noise_ceiling(s, "cifar10", np.arange(s.NUM_ARCHS))
    assert len(c["pairs"]) == 3 and all(0.87 < v < 0.89 for v in c["pairs"].values())
    assert c["kendall_tau"] == pytest.approx(np.mean(list(c["pairs"].values())))
    t, rows = package_npz(s.TRUTH_TABLE), np.arange(0, 3969, 7)
    assert noise_ceiling(s, "cifar10", rows)["pairs"]["acc_run0~acc_run2"] == pytest.approx(
        kendall_tau(t["acc_run0"][rows], t["acc_run2"][rows]))
    assert noise_ceiling(nb201, "cifar10", np.arange(10)) is None


def test_shipped_proxies_cover_every_network():
    """macro_proxies.npz (scripts/build_macro_proxies.py from `kshot-bench proxies --space macro --archs all`)."""
    t = package_npz(s.PROXY_TABLE)
    assert "kshot-bench proxies" in str(t["source"])
    for name in ("synflow", "naswot", "snip"):
        assert len(t[f"{name}_cifar10"]) == s.NUM_ARCHS and np.isfinite(t[f"{name}_cifar10"]).all()


def test_canonical_form_groups_exactly_the_strings_with_equal_entries(table):
    """The table gives the strings of one network identical entries, and different networks different ones."""
    by_network, by_entry = collections.defaultdict(set), collections.defaultdict(set)
    for arch_str, entry in table.items():
        row = json.dumps([entry["test_acc"], entry["params"], entry["flops"]])
        by_network[s.canonical(arch_str)].add(row)
        by_entry[row].add(s.canonical(arch_str))
    assert len(by_network) == 3969 and all(len(v) == 1 for v in by_network.values())
    assert len(by_entry) == 3969 and all(len(v) == 1 for v in by_entry.values())


def hook_count(net: nn.Module, size: int = 32):
    """Per top-level part of the network ("stem", "layers.3", "head", ...): (parameters, multiply-adds of
    convs and the linear weight), by forward hooks on meta tensors."""
    counts = collections.defaultdict(lambda: [0, 0])

    def hook(part):
        def count(m, inp, out):
            if isinstance(m, nn.Linear):
                counts[part][1] += m.in_features * m.out_features
            else:
                counts[part][1] += out.shape[1] * out.shape[2] * out.shape[3] * (m.in_channels // m.groups) * m.kernel_size[0] ** 2
        return count

    for name, m in net.named_modules():
        part = ".".join(name.split(".")[:2]) if name.startswith("layers.") else name.split(".")[0]
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook(part))
        for p in m.parameters(recurse=False):
            counts[part][0] += p.numel()
    net.eval()(torch.empty(1, 3, size, size, device="meta"))
    return {part: tuple(c) for part, c in counts.items()}


def total(counts):
    return tuple(int(x) for x in np.sum(list(counts.values()), axis=0))


def test_network_params_and_flops_equal_the_table_for_every_string(table):
    """The stand-alone network (the MobileNet engine's blocks with ReLU and no SE) counted by hooks, and the
    space's analytic cost, against the table's params and FLOPs: all 6,561 strings. A layer's count depends
    only on its index and op (shown on 60 whole networks), so each string's count is the sum of its parts,
    each counted by hooks once."""
    for arch_str, entry in table.items():
        assert s.cost(arch_str) == (entry["params"], entry["flops"]), arch_str
    parts = {}
    for op in "012":
        with torch.device("meta"):
            parts[op] = hook_count(MacroNetwork(op * 8))
    fixed = {p: c for p, c in parts["0"].items() if not p.startswith("layers.")}
    assert set(fixed) == {"stem", "head", "classifier"} and all(parts[op][p] == c for op in "12" for p, c in fixed.items())
    for arch_str in table:
        counted = total({**fixed, **{i: parts[op].get(f"layers.{i}", (0, 0)) for i, op in enumerate(arch_str)}})
        assert counted == (table[arch_str]["params"], table[arch_str]["flops"]), arch_str
    for arch_str in np.random.default_rng(0).choice(sorted(table), 60, replace=False):
        with torch.device("meta"):
            assert total(hook_count(MacroNetwork(arch_str))) == (table[arch_str]["params"], table[arch_str]["flops"])


def copy_merged(sup: KShotMacro, net: MacroNetwork, arch, code):
    """The stand-alone network of `arch` with the supernet's merged weights."""
    arch = s.validate(arch)

    def put(param, theta):
        with torch.no_grad():
            param.copy_(merge(theta, code).reshape(param.shape))

    put(net.stem[0].weight, sup.stem)
    for i, op in enumerate(arch.ops):
        layer = net.layers[i]
        if op == s.ID:
            if not isinstance(layer, nn.Identity):
                put(layer[0].weight, sup.layers[i]["id"].conv)
            continue
        b = sup.layers[i][s.OPS[op]]
        for name in ("expand", "dw", "project"):
            put(getattr(layer, name)[0].weight, getattr(b, name))
    put(net.head[0].weight, sup.head)
    put(net.classifier.weight, sup.fc_w)
    put(net.classifier.bias, sup.fc_b)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("arch", ARCHS)
def test_supernet_path_equals_the_standalone_network_with_its_weights(k, arch):
    """K=1 (SPOS) and K=3: a path of the supernet computes the stand-alone network with the merged weights
    (float64, BN with batch statistics in both), and the weight gradients agree."""
    torch.manual_seed(0)
    sup = KShotMacro(k).double()
    code = torch.softmax(torch.randn(k, dtype=torch.float64), 0) if k > 1 else None
    net = MacroNetwork(arch).double().train()
    copy_merged(sup, net, arch, code)
    for m in net.modules():  # the supernet's BN has no affine and no running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.weight.requires_grad_(False)
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    out_s, out_n = sup(x, s.from_str(arch), code), net(x)
    torch.testing.assert_close(out_s, out_n, rtol=1e-9, atol=1e-10)
    F.cross_entropy(out_s, y).backward()
    F.cross_entropy(out_n, y).backward()
    if k == 1:
        torch.testing.assert_close(sup.head.grad[0], net.head[0].weight.grad, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(sup.stem.grad[0], net.stem[0].weight.grad, rtol=1e-8, atol=1e-10)


def test_simplex_step_ways_agree_on_macro(tmp_path):
    """The batched, sequential and threaded simplex-net steps compute the same step on this space too."""
    from kshot_bench.config import from_preset
    from kshot_bench.data import Splits
    from kshot_bench.train import Trainer

    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (32, 3, 32, 32), dtype=np.uint8))
    y = torch.as_tensor(rng.integers(0, 10, 32))
    grads = {}
    for name, changes in {"threads": {"simplex_threads": 2}, "batched": {"simplex_threads": 0},
                          "sequential": {"simplex_threads": 0, "simplex_batched": False}}.items():
        cfg = from_preset("smoke", space="macro", k=2, simplex_paths=4, batch_size=16, **changes)
        torch.manual_seed(0)
        t = Trainer(cfg, tmp_path / name, Splits(x, y, x, y, "random images"), torch.device("cpu"), progress=False)
        t.model.double()
        t.codes.double()
        xb, yb = next(iter(t.loader.epoch(0)))
        t.simplex_step(xb.double(), yb, step=0)
        grads[name] = torch.cat([p.grad.flatten() for p in t.codes.parameters()])
    for name in ("threads", "batched"):
        torch.testing.assert_close(grads[name], grads["sequential"], rtol=1e-8, atol=1e-12)


def test_rank_on_macro_end_to_end(tmp_path, capsys, tiny_cifar_folder):
    """`kshot-bench rank --space macro --dataset cifar10 --k 4 --preset smoke`: tau against the table's mean
    accuracy over distinct networks, beside its baselines (params, FLOPs, non-identity layers)."""
    from kshot_bench.cli import main

    out = tmp_path / "rank"
    assert main(["rank", "--space", "macro", "--dataset", "cifar10", "--k", "4", "--preset", "smoke", "--quiet",
                 "--data-root", str(tiny_cifar_folder), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["space"] == "macro" and metrics["protocol"]["truth"] == "mean_acc"
    assert metrics["n_archs"] == 6 and -1 <= metrics["kendall_tau"] <= 1
    baselines = json.loads((out / "baselines.json").read_text())
    assert {"params", "flops", "layers", "synflow", "naswot", "snip"} <= set(baselines)
    summary = (out / "summary.md").read_text()  # the space's own words, none of NB201's
    assert "(NAS-Bench-Macro, the embedded table" in summary and "the NAS-Bench-Macro network (8 searchable" in summary
    assert "NAS-Bench-201" not in summary and "C=" not in summary and "Table 4" not in summary
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("index,arch_str,score,truth") and len(rows) == 7
    table = package_npz(s.TRUTH_TABLE)
    for row in rows[1:]:
        key, arch_str, _, truth = row.split(",")[:4]
        assert table["network"][int(key)] == s.canonical(arch_str) and float(truth) == pytest.approx(table["mean_acc"][int(key)])
    # its supernet scored again from the checkpoint alone: the space comes from it, and --archs wins over the
    # preset's final_archs (macro `cpu`: all 3,969 at a run's last epoch)
    again = tmp_path / "again"
    assert main(["rank", "--checkpoint", str(out / "train" / "supernet.pt"), "--archs", "5", "--score-images", "32",
                 "--quiet", "--data-root", str(tiny_cifar_folder), "--out", str(again)]) == 0
    m2 = json.loads((again / "metrics.json").read_text())
    assert m2["protocol"]["space"] == "macro" and m2["n_archs"] == 5 and m2["protocol"]["k"] == 4
    assert main(["cost", "--space", "macro", "--arch", "22212220"]) == 0
    assert "22212220,1985514," in capsys.readouterr().out


@pytest.mark.slow
def test_scoring_with_shared_prefixes_gives_the_same_numbers(tmp_path):
    """One code for every arch (one-shot, fixed codes): scoring shares the trunk of archs with common first
    layers, and gives bit for bit what scoring each arch on its own gives, through the journal too; with a
    code per arch (the simplex-net) or re-estimated BN nothing is shared."""
    from kshot_bench.scoring import score_arch, score_archs, score_archs_shared, shares_prefixes
    from kshot_bench.search_space import mbv2
    from kshot_bench.supernet.mbv2 import KShotMBV2

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 3, 32, 32, generator=g), torch.randint(0, 10, (6,), generator=g)) for _ in range(2)]
    keys, archs, _ = s.arch_set("30", 0)
    net = KShotMacro(1)
    calls = collections.Counter()
    stage = net._stage
    net._stage = lambda h, j, *a: (calls.update([j]), stage(h, j, *a))[1]
    order = sorted(archs, key=net.stage_keys)
    one = torch.ones(1)
    shared = score_archs_shared(net, order, one, batches)
    prefixes = {tuple(net.stage_keys(a)[:d]) for a in archs for d in range(1, 10)}  # 9 stages: stem + 8 layers
    assert sum(calls.values()) == len(prefixes) * len(batches) < len(archs) * 9 * len(batches)  # each prefix once
    assert shared == [score_arch(net, a, one, batches) for a in order]
    codes = lambda a: torch.ones(len(a), 1)  # noqa: E731
    (tmp_path / "shared").mkdir()
    (tmp_path / "single").mkdir()
    done = score_archs(net, codes, batches, keys, archs, tmp_path / "shared", 1, progress=False)
    net.PREFIX_SHARING = False
    assert score_archs(net, codes, batches, keys, archs, tmp_path / "single", 1, progress=False) == done
    assert not shares_prefixes(net, torch.ones(3, 1), None)
    del net.PREFIX_SHARING
    assert shares_prefixes(net, torch.ones(3, 1), None) and not shares_prefixes(net, torch.ones(3, 1), batches)
    assert not shares_prefixes(net, torch.tensor([[0.5, 0.5], [0.4, 0.6]]), None)
    # a space with widths: the stem and first-block widths key the first stages
    wide = KShotMBV2(1, 10, scale=0.25)
    rng = np.random.default_rng(0)
    archs = sorted((mbv2.sample(rng) for _ in range(6)), key=wide.stage_keys)
    archs += [archs[0]._replace(widths=((archs[0].widths[0] + 1) % 5,) + archs[0].widths[1:])]
    assert score_archs_shared(wide, archs, one, batches) == [score_arch(wide, a, one, batches) for a in archs]
