"""The batched simplex-net step (supernet/groups.py): m paths in one pass compute what m sequential
passes compute, and only the simplex-net learns from it."""
import numpy as np
import pytest
import torch

from kshot_bench.config import from_preset
from kshot_bench.data import Splits
from kshot_bench.search_space import nb201 as s
from kshot_bench.supernet.nb201 import KShotNB201
from kshot_bench.train import Trainer

SPECIAL = [
    s.from_str("|none~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"),  # convs on a zero node
    s.from_str("|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"),          # dead: output is zero
    s.from_str("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"),  # dead-end edge
    (0, 0, 0, 0, 0, 0),
    (3, 3, 3, 3, 3, 3),
    (1, 1, 1, 1, 1, 1),
]


def paths(m, seed=0):
    rng = np.random.default_rng(seed)
    archs = [s.sample(rng) for _ in range(m)]
    archs[: min(m, len(SPECIAL))] = SPECIAL[:m]
    return archs


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("affine", [False, True])
def test_forward_groups_equals_each_group_alone(k, affine):
    torch.manual_seed(0)
    net = KShotNB201(k, 10, C=4, N=2, bn_affine=affine)
    m, g = 6, 3
    archs = paths(m)
    x = torch.randn(m * g, 3, 32, 32)
    codes = torch.softmax(torch.randn(m, k), -1)
    out = net.forward_groups(x, archs, codes)
    ref = torch.cat([net(x[j * g:(j + 1) * g], a, codes[j]) for j, a in enumerate(archs)])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_forward_groups_refuses_uneven_groups():
    net = KShotNB201(2, 10, C=4, N=1)
    with pytest.raises(ValueError, match="equal groups"):
        net.forward_groups(torch.randn(10, 3, 32, 32), paths(4), torch.full((4, 2), 0.5))


def trainer(tmp_path, k, m, batched=True):
    cfg = from_preset("smoke", k=k, simplex_paths=m, batch_size=32, simplex_batched=batched, cells=2)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8))
    y = torch.as_tensor(rng.integers(0, 10, 64))
    return Trainer(cfg, tmp_path, Splits(x, y, x, y, "random images"), torch.device("cpu"), progress=False)


def simplex_grads(t, x, y, archs, dtype):
    """(loss, simplex-net gradients) of the batched and the sequential step, in `dtype`."""
    t.model.to(dtype)
    t.codes.to(dtype)
    out = {}
    for name, fn in (("batched", t.simplex_loss_batched), ("sequential", t.simplex_loss_sequential)):
        t.codes.zero_grad(set_to_none=True)
        loss = fn(x.to(dtype), y, archs)
        out[name] = (loss, torch.cat([p.grad.flatten().double() for p in t.codes.parameters()]))
        assert all(p.grad is None for p in t.model.parameters()), "supernet weights must stay frozen"
    return out


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("m", [4, 16])
def test_batched_simplex_step_equals_sequential(tmp_path, k, m):
    """In float64 the two steps agree to 1e-10: they compute the same function. In float32 each has its
    own rounding (the grouped and the per-group convolutions sum in different orders); measured against
    the float64 result of the same weights, the batched step must be as accurate as the sequential one."""
    t = trainer(tmp_path, k, m)
    torch.manual_seed(1)
    with torch.no_grad():  # a trained-looking simplex-net: codes away from uniform
        for p in t.codes.parameters():
            p.normal_(0, 0.5)
    x, y = next(iter(t.loader.epoch(0)))
    archs = paths(m, seed=k)
    f32 = simplex_grads(t, x, y, archs, torch.float32)
    f64 = simplex_grads(t, x, y, archs, torch.float64)
    (lb, gb), (ls, gs) = f64["batched"], f64["sequential"]
    assert lb == pytest.approx(ls, rel=1e-10)
    scale = float(gs.abs().max())  # relative to the gradient's scale: small entries are sums that cancel
    assert scale > 0
    torch.testing.assert_close(gb, gs, rtol=1e-10, atol=1e-10 * scale)
    assert f32["batched"][0] == pytest.approx(ls, rel=1e-5)
    err = {name: float((g - gs).abs().max()) / scale for name, (_, g) in f32.items()}
    assert err["batched"] <= max(2 * err["sequential"], 1e-5), err


def test_uneven_groups_fall_back_to_the_sequential_step(tmp_path):
    t = trainer(tmp_path, 2, 5)  # 32 images do not split into 5 equal groups
    calls = []
    t.simplex_loss_sequential = lambda *a: calls.append(1) or 0.0
    t.simplex_step(*next(iter(t.loader.epoch(0))), step=0)
    assert calls == [1]
