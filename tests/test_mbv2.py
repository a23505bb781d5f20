"""MobileNetV2 space: strings, costs against the real network, the K-shot supernet against the
stand-alone network with the merged weights, the channel branch and r_c, training and resume."""
import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kshot_bench.errors import UserError
from kshot_bench.search_space import mbv2 as s
from kshot_bench.simplex import channel_regulariser, make_code_source
from kshot_bench.supernet.kshot import merge
from kshot_bench.supernet.mbv2 import KShotMBV2, MBV2Network

RNG = np.random.default_rng(0)
ARCHS = [s.sample(RNG) for _ in range(6)] + [
    s.Arch((s.ID,) * s.NUM_LAYERS, (0,) * s.NUM_WIDTHS),            # every layer identity / 1x1, narrowest
    s.Arch((11,) * s.NUM_LAYERS, (s.FULL,) * s.NUM_WIDTHS),         # k7e6_se everywhere, full width
    s.Arch(tuple(range(13)) + (3,) * 8, tuple(i % 5 for i in range(24))),
]


# ----------------------------------------------------------------------------- strings
def test_string_round_trip_and_default_widths():
    rng = np.random.default_rng(1)
    for _ in range(300):
        a = s.sample(rng)
        assert s.from_str(s.to_str(a)) == a
    ops_only = "-".join(s.OPS[o] for o in ARCHS[0].ops)
    assert s.from_str(ops_only).widths == (s.FULL,) * 24


@pytest.mark.parametrize("text, words", [
    ("k3e3-k5e3", "lists 2 ops, expected 21"),
    ("-".join(["k3e9"] * 21), "unknown op 'k3e9' at layer 1"),
    ("-".join(["k3e3"] * 21) + "@" + "-".join(["0.5"] * 24), "width '0.5' of stem is not a searchable width"),
    ("-".join(["k3e3"] * 21) + "@" + "-".join(["1.0"] * 21), "lists 21 widths after '@', expected 24"),
])
def test_bad_strings_say_what_and_how(text, words):
    with pytest.raises(UserError, match=words) as err:
        s.from_str(text)
    assert err.value.fix


def test_bad_arch_tuples():
    with pytest.raises(UserError, match="21 searchable layers"):
        s.validate(((0,) * 20, (0,) * 24))
    with pytest.raises(UserError, match="24 width layers"):
        s.validate(((0,) * 21, (0,) * 21))
    with pytest.raises(UserError, match="op id 13 of layer 3"):
        s.validate(((0, 0, 13) + (0,) * 18, (0,) * 24))
    with pytest.raises(UserError, match="width id 5 of stem"):
        s.validate(((0,) * 21, (5,) + (0,) * 23))


def test_sampling_mutation_crossover_and_encodings():
    rng = np.random.default_rng(2)
    ops = np.array([s.sample(rng).ops for _ in range(4000)])
    assert np.allclose(np.bincount(ops.ravel(), minlength=13) / ops.size, 1 / 13, atol=0.01)
    widths = np.array([s.sample(rng).widths for _ in range(4000)])
    assert np.allclose(np.bincount(widths.ravel(), minlength=5) / widths.size, 0.2, atol=0.01)
    assert s.sample(rng, widths=False).widths == (s.FULL,) * 24
    a, b = ARCHS[0], ARCHS[1]
    for _ in range(50):
        m = s.mutate(a, rng)
        assert m != a and s.validate(m) == m
        assert s.mutate(a, rng, widths=False).widths == a.widths
        c = s.crossover(a, b, rng)
        assert all(x in (p, q) for x, p, q in zip(c.ops, a.ops, b.ops))
        assert all(x in (p, q) for x, p, q in zip(c.widths, a.widths, b.widths))
    enc, wenc = s.encode(a), s.encode_width(a)
    assert len(enc) == 21 * 13 and sum(enc) == 21 and len(wenc) == 24 * 5 and sum(wenc) == 24
    assert [enc[i * 13:(i + 1) * 13].index(1.0) for i in range(21)] == list(a.ops)


def test_width_variants_give_positives_and_negatives():
    rng = np.random.default_rng(3)
    for a in ARCHS:
        v = s.width_variants(a, rng, 4)
        assert len(v) == 4 and v[0] == a and all(x.ops == a.ops for x in v)
        d = [np.abs(np.subtract(s.width_values(a), s.width_values(x))).sum() for x in v]
        assert 0 < d[1] <= 0.6 + 1e-9  # near neighbour: positive under the default margin of 2.0


# ----------------------------------------------------------------------------- costs
def hook_count(net: nn.Module, size: int):
    """Multiply-adds of conv and linear layers by forward hooks on the real network (SPEC 7 convention),
    on the meta device: shapes only, no arithmetic."""
    flops = []

    def conv_hook(m, inp, out):
        flops.append(out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])

    def linear_hook(m, inp, out):
        flops.append(m.in_features * m.out_features)

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear_hook)
    net.eval()(torch.empty(1, 3, size, size, device="meta"))
    return sum(p.numel() for p in net.parameters()), sum(flops)


@pytest.mark.slow
def test_analytic_costs_equal_the_hook_counter_on_many_archs():
    rng = np.random.default_rng(4)
    archs = ARCHS + [s.sample(rng) for _ in range(60)] + [s.sample(rng, widths=False) for _ in range(10)]
    for a in archs:
        with torch.device("meta"):
            net = MBV2Network(a, 1000)
        assert s.cost(a) == hook_count(net, 224), s.to_str(a)
    for a, classes, size in ((ARCHS[0], 10, 32), (ARCHS[1], 100, 64), (ARCHS[2], 10, 37)):
        with torch.device("meta"):
            net = MBV2Network(a, classes)
        assert s.cost(a, classes, size) == hook_count(net, size)
    for scale in (0.25, 0.5, 0.35, 1.5):  # a narrower / wider network of the same archs
        for a in archs[::12]:
            with torch.device("meta"):
                net = MBV2Network(a, 10, scale=scale)
            assert s.cost(a, 10, 32, scale=scale) == hook_count(net, 32), (scale, s.to_str(a))


def test_network_scale_rounds_channels_and_keeps_the_papers_residuals():
    full = s.macro(1.0)
    assert (full.stem, full.first, full.head, full.layers) == (s.STEM_CHANNELS, s.FIRST_CHANNELS, s.HEAD_CHANNELS, s.LAYERS)
    m = s.macro(0.25)
    assert (m.stem, m.first, m.head) == (8, 8, 320)
    assert [c % 8 for l in m.layers for c in (l.c_in, l.c_out)] == [0] * 42
    assert [l.stride for l in m.layers] == [l.stride for l in s.LAYERS]
    # 80 -> 96 (stride 1, no residual in the paper's net) both round to 24 at 0.25: `id` stays a 1x1 conv
    i = next(i for i, l in enumerate(s.LAYERS) if l.c_in == 80 and l.c_out == 96)
    assert m.layers[i].c_in == m.layers[i].c_out == 24 and not s.has_residual(i)
    net = MBV2Network(s.Arch((s.ID,) * 21, (s.FULL,) * 24), 10, scale=0.25)
    assert not isinstance(net.layers[i], nn.Identity)
    for bad in (0, -1.0, 5.0, "half"):
        with pytest.raises(UserError, match="scale"):
            s.macro(bad)


def test_the_op_space_spans_the_spec_flops():
    smallest = s.cost(s.Arch((s.ID,) * 21, (s.FULL,) * 24))[1]
    largest = s.cost(s.Arch((11,) * 21, (s.FULL,) * 24))[1]
    assert round(smallest / 1e6) == 51 and round(largest / 1e6) == 697  # SPEC 7: about 51M to 697M


# ----------------------------------------------------------------------------- supernet
def copy_merged(sup: KShotMBV2, net: MBV2Network, arch, code):
    """The stand-alone network of `arch` with the supernet's merged, sliced weights (and BN affine)."""
    arch = s.validate(arch)

    def put(param: nn.Parameter, theta: torch.Tensor):
        view = theta[(slice(None),) + tuple(slice(0, n) for n in param.shape)]
        with torch.no_grad():
            param.copy_(merge(view, code).reshape(param.shape))

    def put_bn(bn: nn.BatchNorm2d, params):
        if params is not None:
            put(bn.weight, params[0])
            put(bn.bias, params[1])

    put(net.stem[0].weight, sup.stem)
    put_bn(net.stem[1], sup.stem_bn)
    put(net.first.dw[0].weight, sup.first_dw)
    put_bn(net.first.dw[1], sup.first_dw_bn)
    put(net.first.project[0].weight, sup.first_proj)
    put_bn(net.first.project[1], sup.first_proj_bn)
    for i, op in enumerate(arch.ops):
        layer = net.layers[i]
        if op == s.ID:
            if not isinstance(layer, nn.Identity):
                b = sup.layers[i]["id"]
                put(layer[0].weight, b.conv)
                put_bn(layer[1], getattr(b, "bn", None))
            continue
        b = sup.layers[i][s.OPS[op]]
        for name in ("expand", "dw", "project"):
            put(getattr(layer, name)[0].weight, getattr(b, name))
            put_bn(getattr(layer, name)[1], getattr(b, f"{name}_bn", None))
        if layer.se is not None:
            put(layer.se.reduce.weight, b.se_reduce)
            put(layer.se.reduce.bias, b.se_reduce_b)
            put(layer.se.expand.weight, b.se_expand)
            put(layer.se.expand.bias, b.se_expand_b)
    put(net.head[0].weight, sup.head)
    put_bn(net.head[1], sup.head_bn)
    put(net.classifier.weight, sup.fc_w)
    put(net.classifier.bias, sup.fc_b)


@pytest.fixture(scope="module")
def supernets():
    torch.manual_seed(0)
    nets = {(k, affine, 1.0): KShotMBV2(k, 10, bn_affine=affine).double() for k in (1, 3) for affine in (False, True)}
    nets[(3, True, 0.25)] = KShotMBV2(3, 10, bn_affine=True, scale=0.25).double()
    return nets


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: s.to_str(a)[:20])
@pytest.mark.parametrize("k, affine, scale", [(1, False, 1.0), (3, False, 1.0), (3, True, 1.0), (3, True, 0.25)])
def test_subnet_equals_standalone_network_with_merged_weights(supernets, arch, k, affine, scale):
    """Forward and gradients (float64): the merged-weight gradient that the stand-alone network gets,
    spread over the K copies by the code, is the supernet's gradient; and the code's gradient."""
    sup = supernets[(k, affine, scale)]
    torch.manual_seed(1)
    if affine:  # BN affine away from its identity init, so the merge of gamma/beta is tested
        with torch.no_grad():
            for name, p in sup.named_parameters():
                if p.dim() == 2 and "_b" not in name and "fc" not in name:
                    p.add_(0.1 * torch.randn_like(p))
    code = torch.softmax(torch.randn(k, dtype=torch.float64), 0).requires_grad_(k > 1)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 3, 5, 9])
    net = MBV2Network(arch, 10, dropout=0.0, scale=scale).double().train()
    copy_merged(sup, net, arch, code.detach())
    sup.zero_grad(set_to_none=True)
    out = sup(x, arch, code if k > 1 else None)
    ref = net(x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    F.cross_entropy(out, y).backward()
    F.cross_entropy(ref, y).backward()
    g_code = torch.zeros(k, dtype=torch.float64)
    for p_net, theta in ((net.stem[0].weight, sup.stem), (net.classifier.weight, sup.fc_w), (net.head[0].weight, sup.head)):
        sl = (slice(None),) + tuple(slice(0, n) for n in p_net.shape)
        got = theta.grad[sl]
        want = code.detach().view(-1, *[1] * p_net.dim()) * p_net.grad
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)
    if k > 1:  # the code's gradient: sum over every merged tensor of <dL/dW, theta_k>
        for p_net, theta in _pairs(sup, net, arch):
            sl = (slice(None),) + tuple(slice(0, n) for n in p_net.shape)
            g_code += (theta.detach()[sl].reshape(k, -1) @ p_net.grad.reshape(-1))
        torch.testing.assert_close(code.grad, g_code, rtol=1e-8, atol=1e-12)
    assert all(p.grad is None for n, p in sup.layers.named_parameters() if not _on_path(n, arch))


def _on_path(name: str, arch) -> bool:
    layer, op = name.split(".")[:2]
    return s.OPS[arch.ops[int(layer)]] == op


def _pairs(sup, net, arch):
    """(stand-alone parameter, supernet K-copy tensor) for every merged tensor of the path."""
    yield net.stem[0].weight, sup.stem
    yield net.first.dw[0].weight, sup.first_dw
    yield net.first.project[0].weight, sup.first_proj
    for bn, params in ((net.stem[1], sup.stem_bn), (net.first.dw[1], sup.first_dw_bn),
                       (net.first.project[1], sup.first_proj_bn), (net.head[1], sup.head_bn)):
        if params is not None:
            yield bn.weight, params[0]
            yield bn.bias, params[1]
    for i, op in enumerate(arch.ops):
        layer = net.layers[i]
        if op == s.ID:
            if not isinstance(layer, nn.Identity):
                b = sup.layers[i]["id"]
                yield layer[0].weight, b.conv
                if getattr(b, "bn", None) is not None:
                    yield layer[1].weight, b.bn[0]
                    yield layer[1].bias, b.bn[1]
            continue
        b = sup.layers[i][s.OPS[op]]
        for name in ("expand", "dw", "project"):
            yield getattr(layer, name)[0].weight, getattr(b, name)
            bn = getattr(b, f"{name}_bn", None)
            if bn is not None:
                yield getattr(layer, name)[1].weight, bn[0]
                yield getattr(layer, name)[1].bias, bn[1]
        if layer.se is not None:
            yield layer.se.reduce.weight, b.se_reduce
            yield layer.se.reduce.bias, b.se_reduce_b
            yield layer.se.expand.weight, b.se_expand
            yield layer.se.expand.bias, b.se_expand_b
    yield net.head[0].weight, sup.head
    yield net.classifier.weight, sup.fc_w
    yield net.classifier.bias, sup.fc_b


def test_k1_is_spos_and_a_vertex_code_selects_one_copy(supernets):
    """K=1 runs theta[0] itself (a plain SPOS supernet); a K-shot supernet at the vertex code e_j
    computes what a K=1 supernet holding copy j computes."""
    torch.manual_seed(2)
    three = supernets[(3, False, 1.0)]
    one = KShotMBV2(1, 10).double()
    with torch.no_grad():
        for (_, p1), (_, p3) in zip(one.named_parameters(), three.named_parameters()):
            p1.copy_(p3[2:3])
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    for arch in ARCHS[:4]:
        e = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        torch.testing.assert_close(three(x, arch, e), one(x, arch), rtol=1e-12, atol=1e-12)
    assert one.stem.shape[0] == 1 and merge(one.stem, None).data_ptr() == one.stem.data_ptr()  # a view, no copy


def test_supernet_needs_a_code_of_shape_k():
    net = KShotMBV2(2, 10)
    with pytest.raises(ValueError, match="code of shape"):
        net(torch.randn(2, 3, 32, 32), ARCHS[0])


# ----------------------------------------------------------------------------- simplex-net, r_c
def test_codes_on_the_simplex_and_the_channel_branch_sees_widths():
    codes = make_code_source("simplex", 4, s, widths=True)
    assert codes.width_dim == 120 and codes.arch_dim == 273
    with torch.no_grad():
        for p in codes.parameters():
            p.normal_(0, 0.5)
    lam = codes(ARCHS)
    assert lam.shape == (len(ARCHS), 4) and torch.allclose(lam.sum(1), torch.ones(len(ARCHS))) and (lam >= 0).all()
    same_ops = [s.Arch(ARCHS[0].ops, w.widths) for w in ARCHS[1:4]]
    assert not torch.allclose(codes(same_ops)[0], codes(same_ops)[1])  # widths alone change the code
    assert make_code_source("simplex", 4, s, widths=False).width_dim == 0
    assert torch.equal(make_code_source("uniform", 4, s, widths=True)(ARCHS), torch.full((len(ARCHS), 4), 0.25))


def test_rc_hand_computed_and_its_gradient_reaches_the_channel_branch():
    # three codes, the first two positive (L1 distance 0.2 < margin 1), the third far away
    lam = torch.tensor([[0.6, 0.4], [0.5, 0.5], [0.1, 0.9]], dtype=torch.float64)
    widths = torch.tensor([[1.0, 1.0], [1.0, 0.8], [0.2, 0.2]], dtype=torch.float64)
    tau = 0.3
    sim = (lam @ lam.T / tau).numpy()
    # pair (0, 1): P = exp(s01) / (exp(s01) + exp(s02)); pair (1, 0): exp(s10) / (exp(s10) + exp(s12))
    p01 = np.exp(sim[0, 1]) / (np.exp(sim[0, 1]) + np.exp(sim[0, 2]))
    p10 = np.exp(sim[1, 0]) / (np.exp(sim[1, 0]) + np.exp(sim[1, 2]))
    want = -(np.log(p01) + np.log(p10)) / 2
    assert float(channel_regulariser(lam, widths, margin=1.0, tau=tau)) == pytest.approx(float(want), rel=1e-12)

    from kshot_bench.config import from_preset
    from kshot_bench.train import channel_regulariser_loss

    codes = make_code_source("simplex", 4, s, widths=True)
    with torch.no_grad():
        for p in codes.parameters():
            p.normal_(0, 0.3)
    rc = channel_regulariser_loss(codes, s, ARCHS[:3], np.random.default_rng(0), from_preset("smoke", space="mbv2"))
    rc.backward()
    assert rc > 0 and codes.net.width_branch[0].weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def splits():
    from kshot_bench.data import load_dataset

    return load_dataset("cifar10", None)


@pytest.mark.slow
def test_training_with_widths_resumes_exactly(tmp_path, splits):
    from kshot_bench.config import from_preset
    from kshot_bench.train import Trainer
    from kshot_bench.rundir import CHECKPOINT, LOG, load_checkpoint

    cfg = from_preset("smoke", space="mbv2", k=4, epochs=3, train_subset=48, checkpoint_every=2)
    straight = Trainer(cfg, tmp_path / "a", splits, torch.device("cpu"), progress=False)
    straight.fit()
    stopped = Trainer(cfg, tmp_path / "b", splits, torch.device("cpu"), progress=False)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(stop_at_step=4)  # epoch 2 (the K-shot phase), step 2 of 3
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT, torch.device("cpu"))["step_in_epoch"] == 1
    resumed = Trainer(cfg, tmp_path / "b", splits, torch.device("cpu"), progress=False)
    assert resumed.resume()
    resumed.fit()
    for key in ("model", "codes"):
        for (n, a), (_, b) in zip(getattr(straight, key).state_dict().items(), getattr(resumed, key).state_dict().items()):
            assert torch.equal(a, b), n
    with open(tmp_path / "b" / LOG, newline="") as fh:
        log = list(csv.DictReader(fh))
    assert float(log[-1]["rc"]) > 0 and log[-1]["code_width_spread"] != ""
    assert resumed.codes.width_dim == 120  # the channel branch is on


def test_rc_weight_zero_switches_rc_off(tmp_path, splits):
    from kshot_bench.config import from_preset
    from kshot_bench.train import Trainer
    from kshot_bench.rundir import LOG

    cfg = from_preset("smoke", space="mbv2", k=2, train_subset=32, rc_weight=0.0)
    Trainer(cfg, tmp_path, splits, torch.device("cpu"), progress=False).fit()
    with open(tmp_path / LOG, newline="") as fh:
        assert float(list(csv.DictReader(fh))[-1]["rc"]) == 0.0


@pytest.mark.parametrize("changes, words", [
    ({"channels": 8}, "channels=8.*NB201-only"), ({"cells": 3}, "cells=3.*NB201-only"),
    ({"unique_sampling": True}, "NB201-only"), ({"archs": "unique"}, "NB201-only"),
    ({"rc_margin": 0.0}, "rc_margin > 0"),
])
def test_nb201_only_options_are_refused_for_mbv2(changes, words):
    from kshot_bench.config import from_preset

    with pytest.raises(UserError, match=words):
        from_preset("smoke", space="mbv2", **changes)


def test_mbv2_end_to_end_on_the_command_line(tmp_path, capsys):
    """rank (train + score), search under a FLOPs limit, report and cost, all with --space mbv2."""
    import json

    from kshot_bench.cli import main

    run = tmp_path / "rank"
    assert main(["rank", "--space", "mbv2", "--k", "2", "--preset", "smoke", "--quiet", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "rank: mbv2" in out and "no Kendall's tau" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["protocol"]["space"] == "mbv2" and metrics["n_archs"] == 4
    assert "between_widths_same_ops" in metrics["code_stats"]
    with open(run / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(s.cost(s.from_str(r["arch_str"]))[1] / 1e6 == pytest.approx(float(r["flops_M"]), abs=1e-3)
                                  for r in rows)
    search = tmp_path / "search"
    assert main(["search", "--checkpoint", str(run / "train" / "supernet.pt"), "--flops-limit", "300", "--population", "4",
                 "--generations", "1", "--parents", "2", "--score-images", "16", "--quiet", "--out", str(search)]) == 0
    result = json.loads((search / "result.json").read_text())
    assert result["space"] == "mbv2" and result["truth"] is None and result["flops_M"] <= 300
    assert result["widths_searched"] and len(result["code"]) == 2
    with open(search / "history.csv", newline="") as fh:
        history = list(csv.DictReader(fh))
    assert len(history) == result["n_evaluated"] and all(float(h["flops_M"]) <= 300 for h in history)
    assert main(["report", str(run), str(search), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Scored runs without ground truth" in text and "Searched archs without ground truth" in text
    # a supernet trained by the rank run: its Table 5/6 row holds its search, and Table 1 its epoch times
    row = next(line for line in text.splitlines() if line.startswith("| 1 | K-shot + simplex-net + channel + r_c | 2 |"))
    assert f"| {run.name} |" in row and f"| {search.name} (nsga2, limit 300.0 M" in row and "not retrained" in row
    table1 = text[text.index("### Table 1 shape"):]
    assert next(line for line in table1.splitlines() if line.startswith("| 2 | simplex |"))
    capsys.readouterr()
    assert main(["cost", "--space", "mbv2", "--sample", "3", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "arch_str,params,flops" and len(lines) == 4
    # the other space's checkpoint, and NB201-only options, are refused with a fix
    assert main(["rank", "--space", "nb201", "--checkpoint", str(run / "train" / "supernet.pt"), "--quiet"]) == 2
    assert "space: checkpoint 'mbv2', asked 'nb201'" in capsys.readouterr().err
    assert main(["rank", "--space", "mbv2", "--preset", "smoke", "--truth", "cifar10_test_12ep", "--quiet",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--truth needs a ground truth; the mbv2 space has none" in capsys.readouterr().err
    assert main(["train", "--space", "mbv2", "--preset", "smoke", "--set", "cells=3", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "NB201-only" in err and "fix:" in err


def test_strided_pointwise_is_the_strided_1x1_convolution():
    from kshot_bench.supernet.mbv2 import pointwise

    x = torch.randn(2, 7, 17, 17, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 7, 1, 1, dtype=torch.float64, requires_grad=True)
    a = pointwise(x, w, 2)
    b = F.conv2d(x, w, stride=2)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(a.square().sum(), (x, w))
    gb = torch.autograd.grad(b.square().sum(), (x, w))
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v)


def test_a_narrow_strided_identity_layer_trains_at_224(tmp_path):
    """The case that crashed torch's strided 1x1 convolution (channels_last, 7 input channels at 112x112)
    runs; in a child process, so a crash fails this test instead of killing the test run."""
    import subprocess
    import sys

    code = """
import torch, torch.nn.functional as F
from kshot_bench.search_space import mbv2 as s
from kshot_bench.supernet.mbv2 import KShotMBV2, MBV2Network
arch = s.Arch((s.ID, 6) + (s.ID,) * 19, (4, 1, 1) + (4,) * 21)  # first block 7 channels, then id at stride 2
x = torch.randn(4, 3, 224, 224).contiguous(memory_format=torch.channels_last)
for net in (KShotMBV2(1, 10), MBV2Network(arch, 10)):
    for _ in range(3):
        out = net(x, arch, None) if isinstance(net, KShotMBV2) else net(x)
        F.cross_entropy(out, torch.zeros(4, dtype=torch.long)).backward()
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]
