"""Which weights have K copies (`kshot_copies`, supernet/kshot.py; issue 45), and what a code of 1/K amounts to.

SGD with momentum is linear, so the mean W of K copies merged by a code of 1/K follows SGD with the gradient over K
and the weight decay times K. A conv followed by BN without affine is scale-invariant (but for BN's eps, set to 0
here), so sqrt(K) W trains exactly as a one-shot supernet's weight. A K-copied weight that is not scale-invariant
(the classifier; NB201's reduction shortcut convs) trains as one-shot's with lr / K and weight decay * K. Under
`kshot_copies=normalised` those weights are one shared copy, and the K-shot supernet trains exactly as one-shot.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kshot_bench.supernet.ops as ops
from kshot_bench.config import from_preset
from kshot_bench.errors import UserError
from kshot_bench.search_space import macro, nb201
from kshot_bench.simplex import variant_of
from kshot_bench.supernet.macro import KShotMacro
from kshot_bench.supernet.nb201 import KShotNB201
from kshot_bench.train import weight_stats

K, LR, WD = 4, 0.025, 5e-4
SGD = dict(lr=LR, momentum=0.9, nesterov=True, weight_decay=WD)


def train_side_by_side(kshot, oneshot, space, slowed):
    """Start one-shot at what the K-shot supernet's mean copies amount to, train both four SGD steps on the same
    batches and paths (K-shot at the code 1/K; one-shot's `slowed` weights at lr / K, decay * K) and compare.
    Returns how many K-copied tensors ended with copies apart."""

    def expected(name, theta):  # one-shot's weight, from the copies
        if len(theta) == 1:
            return theta[0]
        return theta.mean(0) * (1.0 if name in slowed else math.sqrt(len(theta)))

    with torch.no_grad():
        for (name, theta), (_, w) in zip(kshot.named_parameters(), oneshot.named_parameters()):
            w[0].copy_(expected(name, theta))
    opt_k = torch.optim.SGD(kshot.parameters(), **SGD)
    groups = [[p for n, p in oneshot.named_parameters() if (n in slowed) == c] for c in (False, True)]
    opt_1 = torch.optim.SGD([dict(params=groups[0]), dict(params=groups[1], lr=LR / K, weight_decay=WD * K)], **SGD)
    code = torch.full((K,), 1.0 / K, dtype=torch.float64)
    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    for _ in range(4):
        arch = space.sample(rng)
        x, y = torch.randn(8, 3, 32, 32, dtype=torch.float64, generator=g), torch.randint(0, 10, (8,), generator=g)
        for model, opt, c in ((kshot, opt_k, code), (oneshot, opt_1, None)):
            opt.zero_grad(set_to_none=False)
            F.cross_entropy(model(x, arch, c), y).backward()
            opt.step()
    apart = 0
    for (name, theta), (_, w) in zip(kshot.named_parameters(), oneshot.named_parameters()):
        torch.testing.assert_close(expected(name, theta), w[0], rtol=1e-9, atol=1e-12, msg=name)
        apart += int(len(theta) > 1 and not torch.equal(theta[0], theta[1]))
    return apart


MACRO_CLASSIFIER = {"fc_w", "fc_b"}
NB201_UNNORMALISED = {"fc_w", "fc_b"} | {f"reductions.{i}.down" for i in range(2)}


@pytest.fixture
def no_bn_eps(monkeypatch):
    monkeypatch.setattr(ops, "BN_EPS", 1e-30)
    torch.manual_seed(0)


def test_all_copies_at_a_uniform_code_train_as_one_shot_with_a_slower_classifier(no_bn_eps):
    kshot, oneshot = KShotMacro(K).double(), KShotMacro(1).double()
    apart = train_side_by_side(kshot, oneshot, macro, MACRO_CLASSIFIER)
    assert apart == len(list(kshot.parameters()))  # the copies stay apart: only their mean is one-shot's


def test_all_copies_fail_the_plain_one_shot_comparison(no_bn_eps):
    """The same run with one-shot's classifier at the plain lr and decay does not match (from the first weight
    compared, the stem: the classifier's gradients reach every layer): the slowing is real."""
    kshot, oneshot = KShotMacro(K).double(), KShotMacro(1).double()
    with pytest.raises(AssertionError):
        train_side_by_side(kshot, oneshot, macro, slowed=set())


@pytest.mark.parametrize("space", ["macro", "nb201"])
def test_normalised_copies_at_a_uniform_code_train_exactly_as_one_shot(no_bn_eps, space):
    if space == "macro":
        kshot, oneshot, sp = KShotMacro(K, copies="normalised").double(), KShotMacro(1).double(), macro
        shared = MACRO_CLASSIFIER
    else:
        kshot, oneshot, sp = KShotNB201(K, 10, C=4, N=1, copies="normalised").double(), KShotNB201(1, 10, C=4, N=1).double(), nb201
        shared = NB201_UNNORMALISED
    assert {n for n, p in kshot.named_parameters() if len(p) == 1} == shared
    apart = train_side_by_side(kshot, oneshot, sp, slowed=set())
    assert apart == len(list(kshot.parameters())) - len(shared)


def test_nb201_all_copies_slow_the_shortcuts_too(no_bn_eps):
    kshot, oneshot = KShotNB201(K, 10, C=4, N=1).double(), KShotNB201(1, 10, C=4, N=1).double()
    train_side_by_side(kshot, oneshot, nb201, NB201_UNNORMALISED)
    with pytest.raises(AssertionError):  # the shortcuts left at the plain lr and decay
        train_side_by_side(KShotNB201(K, 10, C=4, N=1).double(), KShotNB201(1, 10, C=4, N=1).double(), nb201, MACRO_CLASSIFIER)


def test_normalised_copies_share_affine_and_keep_k_copies_of_the_convs():
    net = KShotNB201(3, 10, C=4, N=1, bn_affine=True, copies="normalised")
    one = {n for n, p in net.named_parameters() if len(p) == 1}
    assert one and all(p.dim() == 2 or n in NB201_UNNORMALISED for n, p in net.named_parameters() if n in one)
    assert all(len(p) == 3 for n, p in net.named_parameters() if n not in one)
    assert any(n.startswith("cells.") for n in one)  # the ops' BN affine parameters
    stats = weight_stats(net)  # copy spread over the K-copied tensors only: shared ones would read as 0
    assert stats["copy_spread_trunk"] > 0.5 and stats["copy_spread_ops"] > 0.5


def test_kshot_copies_setting_and_variant():
    with pytest.raises(UserError, match="kshot_copies") as err:
        from_preset("smoke", kshot_copies="some")
    assert "normalised" in err.value.fix
    cfg = from_preset("smoke", k=3, simplex_step="joint", simplex_interval=1)
    assert variant_of(cfg) == "joint" and variant_of(cfg.replace(kshot_copies="normalised")) == "joint-shared"
    assert cfg.hash() != cfg.replace(kshot_copies="normalised").hash()  # runs before the field keep their hash
