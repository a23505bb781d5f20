import numpy as np
import pytest
import torch

from kshot_bench.errors import UserError
from kshot_bench.search_space import nb201 as s
from kshot_bench.simplex import CODE_MODES, SimplexNet, channel_regulariser, code_stats, make_code_source

ARCHS = [s.sample(np.random.default_rng(i)) for i in range(64)]


@pytest.mark.parametrize("mode", CODE_MODES.names())
@pytest.mark.parametrize("k", [1, 2, 4, 8, 12])
def test_codes_lie_on_the_simplex(mode, k):
    torch.manual_seed(0)
    source = make_code_source(mode, k, s)
    codes = source(ARCHS)
    assert codes.shape == (len(ARCHS), k)
    assert (codes >= 0).all()
    torch.testing.assert_close(codes.sum(1), torch.ones(len(ARCHS)))


def test_mode_semantics():
    torch.manual_seed(0)
    uniform = make_code_source("uniform", 4, s)(ARCHS)
    assert torch.equal(uniform, torch.full((64, 4), 0.25))
    simplex = make_code_source("simplex", 4, s)
    torch.testing.assert_close(simplex(ARCHS), uniform)  # zero-initialised output layer: continuous hand-over
    assert simplex.trainable
    random = make_code_source("random", 4, s)
    codes = random(ARCHS)
    assert not random.trainable and not any(p.requires_grad for p in random.parameters())
    assert codes.max(1).values.mean() > 0.4          # spread over the simplex, not near 1/K
    assert len({tuple(c.round(decimals=4).tolist()) for c in codes}) == 64  # one code per arch
    assert torch.equal(make_code_source("simplex", 1, s)(ARCHS), torch.ones(64, 1))


def test_simplex_net_learns_a_target_code():
    torch.manual_seed(0)
    source = make_code_source("simplex", 3, s)
    opt = torch.optim.Adam(source.parameters(), lr=0.05)
    target = torch.tensor([0.7, 0.2, 0.1])
    for _ in range(150):
        opt.zero_grad()
        ((source(ARCHS[:8]) - target) ** 2).sum().backward()
        opt.step()
    torch.testing.assert_close(source(ARCHS[:8]).mean(0), target, atol=0.02, rtol=0)


def test_channel_branch_changes_the_code():
    torch.manual_seed(0)
    net = SimplexNet(30, 4, width_dim=24)
    arch = torch.tensor([s.encode(ARCHS[0])] * 2)
    widths = torch.tensor([[0.2] * 24, [1.0] * 24])
    codes = net(arch, widths)
    torch.testing.assert_close(codes.sum(1), torch.ones(2))
    assert not torch.allclose(codes[0], codes[1])
    with pytest.raises(ValueError, match="width_enc"):
        net(arch)


def test_channel_regulariser_hand_computed():
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.4]])
    widths = torch.tensor([[1.0], [0.2], [0.9]])
    tau, margin = 0.5, 0.5
    # positives: (0, 2) and (2, 0); for (i, k): -log exp(s_ik) / sum_{j != i} exp(s_ij)
    sim = (codes @ codes.T / tau).numpy()
    expected = np.mean([-(sim[0, 2] - np.log(np.exp(sim[0, 1]) + np.exp(sim[0, 2]))),
                        -(sim[2, 0] - np.log(np.exp(sim[2, 0]) + np.exp(sim[2, 1])))])
    got = channel_regulariser(codes, widths, margin, tau)
    assert abs(float(got) - expected) < 1e-6
    assert float(channel_regulariser(codes, widths, margin=0.01, tau=tau)) == 0.0  # no positive pair


def test_code_stats():
    st = code_stats(torch.full((5, 4), 0.25))
    assert abs(st["code_entropy"] - 1.0) < 1e-6 and st["code_max"] == 0.25
    assert st["code_spread"] == 0.0 and st["code_top_share"] == 1.0  # equal codes: every argmax is copy 0
    assert code_stats(torch.ones(3, 1))["code_max"] == 1.0
    # two archs on disjoint copies, one on a third: spread = mean TV over the 6 ordered pairs = 1
    onehot = torch.eye(4)[[0, 1, 2]]
    st = code_stats(onehot)
    assert st["code_entropy"] == pytest.approx(0.0) and st["code_max"] == 1.0
    assert st["code_spread"] == pytest.approx(1.0) and st["code_top_share"] == pytest.approx(1 / 3)
    # hand-checked: codes (.5,.5) and (1,0): TV distance 0.5, both lean on copy 0 (argmax ties go to 0)
    st = code_stats(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    assert st["code_spread"] == pytest.approx(0.5) and st["code_top_share"] == 1.0
    assert st["code_entropy"] == pytest.approx(0.5) and st["code_max"] == pytest.approx(0.75)


def test_unknown_code_mode():
    with pytest.raises(UserError, match="unknown code mode 'learned'"):
        make_code_source("learned", 4, s)
