"""Zero-cost proxies (kshot_bench/proxies.py): each against its definition computed by hand on small networks,
seeded initialisation, and the `kshot-bench proxies` command (CSV, resume, tau against a ground truth)."""
import csv

import numpy as np
import pytest
import torch
from torch import nn

from kshot_bench.errors import UserError
from kshot_bench.proxies import PROXIES, arch_proxies


def mlp(d=6, h=5, c=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, c, bias=False))


def test_synflow_of_a_linear_chain_is_its_path_sum_once_per_layer():
    """Bias-free layers, all-ones input: R = 1'|W2||W1|1 and each layer's sum of |w dR/dw| is R (synaptic flow
    is conserved layer by layer), so the score is 2R. The ReLU never clips (everything is positive)."""
    net = mlp()
    w1, w2 = net[1].weight.detach().abs().double(), net[3].weight.detach().abs().double()
    r = float(torch.ones(1, 3, dtype=torch.float64) @ w2 @ w1 @ torch.ones(6, 1, dtype=torch.float64))
    x = torch.randn(4, 6)
    assert PROXIES.get("synflow")(net, x, torch.zeros(4, dtype=torch.long)) == pytest.approx(2 * r, rel=1e-12)


def test_naswot_is_the_log_determinant_of_the_hamming_kernel():
    net = mlp()
    x = torch.randn(5, 6)
    with torch.no_grad():
        pre = (net[1](x) > 0).double().numpy()  # the one ReLU's input pattern
    k = pre @ pre.T + (1 - pre) @ (1 - pre).T
    expected = np.linalg.slogdet(k)[1]
    assert PROXIES.get("naswot")(net, x, torch.zeros(5, dtype=torch.long)) == pytest.approx(expected, rel=1e-10)


def test_snip_and_grad_norm_from_one_cross_entropy_backward():
    net = mlp()
    x, y = torch.randn(8, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    ref = mlp()
    loss = nn.functional.cross_entropy(ref(x), y)
    g1, g2 = torch.autograd.grad(loss, [ref[1].weight, ref[3].weight])
    snip = float((ref[1].weight.detach() * g1).abs().sum() + (ref[3].weight.detach() * g2).abs().sum())
    norm = float(g1.norm() + g2.norm())
    assert PROXIES.get("snip")(net, x, y) == pytest.approx(snip, rel=1e-6)
    assert PROXIES.get("grad_norm")(mlp(), x, y) == pytest.approx(norm, rel=1e-6)


def test_arch_proxies_start_every_proxy_from_the_same_seeded_weights():
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    made = []

    def build(arch):
        net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False))
        made.append(net[1].weight.detach().clone())
        return net

    a = arch_proxies(build, None, ["synflow", "snip", "naswot"], x, y)
    b = arch_proxies(build, None, ["synflow", "snip", "naswot"], x, y)
    assert a == b and all(torch.equal(made[0], w) for w in made)
    with pytest.raises(UserError, match="zero-cost proxy"):
        PROXIES.get("jacob_cov")


def test_naswot_of_an_nb201_cell_with_no_path_is_minus_infinity():
    """A cell whose output is constant gives every image the same codes after the cell: K is singular."""
    from kshot_bench.models import NETWORKS
    from kshot_bench.search_space import nb201

    arch = nb201.from_str("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    torch.manual_seed(0)
    x, y = torch.randn(6, 3, 32, 32), torch.arange(6) % 10
    scores = arch_proxies(lambda a: NETWORKS.get("nb201")(a, 10), arch, ["naswot"], x, y)
    assert scores["naswot"] == float("-inf")


def test_proxies_command_writes_resumes_and_compares_with_the_truth(tmp_path, capsys, tiny_cifar_folder):
    from kshot_bench.cli import main

    out = tmp_path / "p.csv"
    args = ["proxies", "--space", "macro", "--dataset", "cifar10", "--archs", "4", "--batch", "8",
            "--proxies", "synflow", "--proxies", "snip", "--data-root", str(tiny_cifar_folder), "--quiet"]
    assert main(args + ["--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r.keys() for r in rows][0] == {"index", "arch_str", "synflow", "snip"} and len(rows) == 4
    assert all(np.isfinite(float(r["synflow"])) and float(r["snip"]) > 0 for r in rows)
    printed = capsys.readouterr().out
    assert "synflow: Kendall's tau" in printed and "over 4 archs" in printed
    # a larger set continues the file: the 4 rows stay as they were, 2 are added (samples nest)
    assert main(args + ["--archs", "6", "--out", str(out)]) == 0
    again = list(csv.DictReader(open(out)))
    assert again[:4] == rows and len(again) == 6 and "4 already there" in capsys.readouterr().out
