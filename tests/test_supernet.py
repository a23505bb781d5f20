import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kshot_bench.errors import UserError
from kshot_bench.search_space import nb201 as s
from kshot_bench.simplex import CODE_MODES, make_code_source
from kshot_bench.supernet import ops
from kshot_bench.supernet.kshot import merge
from kshot_bench.supernet.nb201 import KShotNB201, NB201Network

ARCHS = [s.from_index(i) for i in (0, 1, 6111, 857, 9930)] + [
    s.from_str("|none~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"),  # zero-source convs
    s.from_str("|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"),          # dead: output is zero
    s.from_str("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"),  # dead-end edge
]


class PlainSPOS(nn.Module):
    """A plain single-path one-shot supernet written the usual way (as in NB201's weight-sharing
    baselines): one nn.Conv2d per candidate op per edge, every non-`none` edge of the path computed,
    its own ReLU per op. Used only as the reference for K = 1."""

    def __init__(self, num_classes=10, C=4, N=1):
        super().__init__()
        chans = [C, 2 * C, 4 * C]
        self.stem = nn.Conv2d(3, C, 3, padding=1, bias=False)
        self.cells, self.reds = nn.ModuleList(), nn.ModuleList()
        for i, c in enumerate(chans):
            if i:
                self.reds.append(nn.ModuleDict(dict(a=nn.Conv2d(chans[i - 1], c, 3, 2, 1, bias=False),
                                                    b=nn.Conv2d(c, c, 3, 1, 1, bias=False),
                                                    d=nn.Conv2d(chans[i - 1], c, 1, bias=False))))
            for _ in range(N):
                self.cells.append(nn.ModuleList(nn.ModuleDict({"2": nn.Conv2d(c, c, 1, bias=False),
                                                               "3": nn.Conv2d(c, c, 3, padding=1, bias=False)})
                                                for _ in range(6)))
        self.fc = nn.Linear(chans[-1], num_classes)
        self.N = N

    @staticmethod
    def bn(x):
        return F.batch_norm(x, None, None, None, None, True, 0.0, 1e-5)

    def cell(self, x, edges, arch):
        nodes = [x]
        for i in range(1, 4):
            acc = None
            for e, (t, src) in enumerate(s.EDGES):
                if t != i:
                    continue
                op, h = arch[e], nodes[src]
                if op == s.NONE:
                    out = h * 0.0
                elif op == s.SKIP:
                    out = h
                elif op == s.POOL:
                    out = ops.avg_pool3x3(h)
                else:
                    out = self.bn(edges[e][str(op)](F.relu(h)))
                acc = out if acc is None else acc + out
            nodes.append(acc)
        return nodes[3]

    def forward(self, x, arch):
        h = self.bn(self.stem(x))
        cid = 0
        for st in range(3):
            if st:
                r = self.reds[st - 1]
                b = self.bn(r["b"](F.relu(self.bn(r["a"](F.relu(h))))))
                h = r["d"](F.avg_pool2d(h, 2, 2)) + b
            for _ in range(self.N):
                h = self.cell(h, self.cells[cid], arch)
                cid += 1
        return self.fc(F.relu(self.bn(h)).mean((2, 3)))


def copy_into_plain(kshot: KShotNB201, plain: PlainSPOS) -> None:
    with torch.no_grad():
        plain.stem.weight.copy_(kshot.stem[0])
        for red, r in zip(kshot.reductions, plain.reds):
            r["a"].weight.copy_(red.conv_a[0]); r["b"].weight.copy_(red.conv_b[0]); r["d"].weight.copy_(red.down[0])
        for cell, edges in zip(kshot.cells, plain.cells):
            for e in range(6):
                edges[e]["2"].weight.copy_(cell.w[f"e{e}_nor_conv_1x1"][0])
                edges[e]["3"].weight.copy_(cell.w[f"e{e}_nor_conv_3x3"][0])
        plain.fc.weight.copy_(kshot.fc_w[0]); plain.fc.bias.copy_(kshot.fc_b[0])


def kshot_to_plain_grads(kshot: KShotNB201):
    out = {"stem": kshot.stem.grad, "fc_w": kshot.fc_w.grad, "fc_b": kshot.fc_b.grad}
    for i, cell in enumerate(kshot.cells):
        for key, p in cell.w.items():
            out[f"c{i}_{key}"] = p.grad
    return out


def plain_grads(plain: PlainSPOS):
    out = {"stem": plain.stem.weight.grad, "fc_w": plain.fc.weight.grad, "fc_b": plain.fc.bias.grad}
    for i, edges in enumerate(plain.cells):
        for e in range(6):
            out[f"c{i}_e{e}_nor_conv_1x1"] = edges[e]["2"].weight.grad
            out[f"c{i}_e{e}_nor_conv_3x3"] = edges[e]["3"].weight.grad
    return out


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: str(s.to_code(a)))
def test_k1_equals_plain_spos(arch):
    """Forward: bitwise equal with the plain ops (`reference_ops`), equal to float rounding with the CPU
    paths for small channel counts (supernet/ops.py). Gradients: equal to float rounding (~1e-6 relative),
    because our supernet applies each node's ReLU once for all its conv consumers and so sums the gradient
    contributions in another order."""
    torch.manual_seed(0)
    kshot = KShotNB201(1, C=4, N=2)
    plain = PlainSPOS(C=4, N=2)
    copy_into_plain(kshot, plain)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    with ops.reference_ops():
        assert torch.equal(kshot(x, arch, torch.ones(1)), plain(x, arch))
    out_k = kshot(x, arch, torch.ones(1))
    out_p = plain(x, arch)
    torch.testing.assert_close(out_k, out_p, rtol=1e-5, atol=1e-6)
    F.cross_entropy(out_k, y).backward()
    F.cross_entropy(out_p, y).backward()
    gk, gp = kshot_to_plain_grads(kshot), plain_grads(plain)
    for key, g in gp.items():
        mine = gk[key]
        if mine is None:  # not on the effective path: the plain net's gradient is exactly zero or absent
            assert g is None or not g.any(), key
        else:
            torch.testing.assert_close(mine[0], g, rtol=0, atol=1e-5 * float(g.abs().max()), msg=key)


def test_k1_training_trajectory_equals_plain_spos():
    """Three SGD steps on paths without zero-input ops: weights stay equal to float rounding."""
    torch.manual_seed(1)
    kshot, plain = KShotNB201(1, C=4, N=1), PlainSPOS(C=4, N=1)
    copy_into_plain(kshot, plain)
    opt_k = torch.optim.SGD(kshot.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    opt_p = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    full = (3, 2, 3, 3, 2, 4)  # every edge live, so both nets update the same weights
    for _ in range(3):
        for opt, net, args in ((opt_k, kshot, (full, None)), (opt_p, plain, (full,))):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x, *args), y).backward()
            opt.step()
    torch.testing.assert_close(kshot.fc_w[0], plain.fc.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kshot.cells[0].w["e0_nor_conv_3x3"][0], plain.cells[0][0]["3"].weight, rtol=1e-5, atol=1e-6)


def test_merge_is_convex_combination():
    theta = torch.randn(3, 5, 4)
    code = torch.tensor([0.2, 0.5, 0.3])
    torch.testing.assert_close(merge(theta, code), 0.2 * theta[0] + 0.5 * theta[1] + 0.3 * theta[2])
    one = torch.randn(1, 5, 4)
    assert merge(one, None).data_ptr() == one.data_ptr()  # K=1: the weights themselves, no copy


def test_vertex_code_selects_one_supernet():
    """With code e_k the K-shot supernet is exactly the one-shot supernet holding copy k."""
    torch.manual_seed(0)
    k4 = KShotNB201(4, C=4, N=1)
    k1 = KShotNB201(1, C=4, N=1)
    with torch.no_grad():
        for (n4, p4), (n1, p1) in zip(k4.named_parameters(), k1.named_parameters()):
            assert n4 == n1
            p1.copy_(p4[2:3])
    x = torch.randn(4, 3, 32, 32)
    code = torch.tensor([0.0, 0.0, 1.0, 0.0])
    for arch in ARCHS:
        torch.testing.assert_close(k4(x, arch, code), k1(x, arch), rtol=1e-6, atol=1e-6)


def test_only_path_weights_get_gradients():
    net = KShotNB201(3, C=4, N=1)
    arch = s.from_str("|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")  # e0 dead-end
    net(torch.randn(2, 3, 32, 32), arch, torch.tensor([0.2, 0.3, 0.5])).sum().backward()
    with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    cell_grads = {n.split(".", 2)[2] for n in with_grad if n.startswith("cells.")}
    assert cell_grads == {"w.e3_nor_conv_1x1"}
    g = net.cells[0].w["e3_nor_conv_1x1"].grad
    # d loss / d theta_k = lambda_k * d loss / d w
    torch.testing.assert_close(g[1] / 0.3, g[0] / 0.2, rtol=1e-4, atol=1e-6)


def test_code_gradient_reaches_simplex_net():
    net = KShotNB201(4, C=4, N=1)
    codes = make_code_source("simplex", 4, s)
    arch = s.from_index(1)
    out = net(torch.randn(4, 3, 32, 32), arch, codes([arch])[0])
    F.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    assert codes.net.arch_branch[-1].weight.grad.abs().sum() > 0


def test_identical_init_starves_the_simplex_net():
    """Equal copies: the loss does not depend on the code, so the simplex-net gets no gradient
    (the trap documented in docs/design.md and warned about by Trainer)."""
    torch.manual_seed(0)
    net = KShotNB201(4, C=4, N=1, init="identical")
    codes = make_code_source("simplex", 4, s)
    arch = s.from_index(1)
    out = net(torch.randn(4, 3, 32, 32), arch, codes([arch])[0])
    F.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    grad = codes.net.arch_branch[-1].weight.grad
    assert grad is None or grad.abs().max() < 1e-6


@pytest.mark.parametrize("mode", CODE_MODES.names())
@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("affine", [False, True])
def test_every_code_mode_runs(mode, k, affine):
    torch.manual_seed(0)
    net = KShotNB201(k, num_classes=7, C=4, N=1, bn_affine=affine)
    codes = make_code_source(mode, k, s)
    for arch in ARCHS[:4]:
        out = net(torch.randn(3, 3, 16, 16), arch, codes([arch])[0])
        assert out.shape == (3, 7) and torch.isfinite(out).all()
        out.sum().backward()


def test_kshot_init_choices():
    torch.manual_seed(0)
    ind = KShotNB201(4, C=4, N=1, init="independent")
    same = KShotNB201(4, C=4, N=1, init="identical")
    w_ind, w_same = ind.cells[0].w["e0_nor_conv_3x3"], same.cells[0].w["e0_nor_conv_3x3"]
    assert not torch.equal(w_ind[0], w_ind[1])
    assert all(torch.equal(w_same[0], w_same[k]) for k in range(4))
    bound = 1 / np.sqrt(4 * 9)  # PyTorch's default conv init bound, per copy
    assert w_ind.abs().max() <= bound and w_ind.abs().max() > 0.9 * bound
    # identical copies + uniform code: exactly the one-shot supernet of copy 0
    one = KShotNB201(1, C=4, N=1)
    with torch.no_grad():
        for p1, p4 in zip(one.parameters(), same.parameters()):
            p1.copy_(p4[:1])
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(same(x, ARCHS[1], torch.full((4,), 0.25)), one(x, ARCHS[1]), rtol=1e-5, atol=1e-6)


def test_bad_k_and_code():
    with pytest.raises(UserError, match="K must be"):
        KShotNB201(0)
    net = KShotNB201(3, C=4, N=1)
    with pytest.raises(ValueError, match="code of shape"):
        net(torch.randn(1, 3, 32, 32), ARCHS[0], torch.ones(2) / 2)


def test_supernet_keeps_no_arch_state():
    net = KShotNB201(2, C=4, N=1)
    x, code = torch.randn(2, 3, 32, 32), torch.tensor([0.5, 0.5])
    first = net(x, ARCHS[0], code)
    net(x, ARCHS[1], code)
    assert torch.equal(net(x, ARCHS[0], code), first)
    assert not any(isinstance(v, tuple) and len(v) == 6 for v in vars(net).values())


def test_avg_pool3x3_matches_torch():
    for size in (32, 16, 8):
        x = torch.randn(2, 5, size, size).contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(ops.avg_pool3x3(x), F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))


def test_pruned_network_equals_full_network():
    for arch in ARCHS:
        torch.manual_seed(0)
        full = NB201Network(arch, C=4, N=1, prune=False)
        pruned = NB201Network(arch, C=4, N=1, prune=True)
        pruned.load_state_dict(full.state_dict())
        x = torch.randn(4, 3, 32, 32)
        torch.testing.assert_close(pruned(x), full(x), rtol=0, atol=0)


def _hook_flops(net: nn.Module, size: int) -> int:
    """NB201's counting rule (xautodl get_model_infos): conv and linear multiply-adds (+ bias)."""
    total = [0]

    def conv_hook(m, inp, out):
        total[0] += m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups * out.shape[2] * out.shape[3]

    def fc_hook(m, inp, out):
        total[0] += m.in_features * m.out_features + (m.out_features if m.bias is not None else 0)

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(fc_hook)
    net.eval()
    with torch.no_grad():
        net(torch.randn(1, 3, size, size))
    return total[0]


@pytest.mark.parametrize("classes,size", [(10, 32), (100, 32), (120, 16)])
def test_cost_matches_the_real_network(classes, size):
    """Params and FLOPs depend only on the numbers of 1x1 and 3x3 convs: check every combination."""
    seen = set()
    for arch in itertools.product(range(5), repeat=6):
        counts = s.op_counts(arch)
        if counts in seen:
            continue
        seen.add(counts)
        net = NB201Network(arch, num_classes=classes, prune=False)
        params, flops = s.cost(arch, classes, size)
        assert params == sum(p.numel() for p in net.parameters())
        assert flops == _hook_flops(net, size)
    assert len(seen) == 28


@pytest.mark.parametrize("arch", ARCHS[:4] + ARCHS[-3:], ids=lambda a: str(s.to_code(a)))
def test_benchmark_reference_supernet_computes_the_same_function(arch):
    """benchmarks/k_overhead.py times K=1 against a reference-design supernet (every edge computed,
    module ops): it must be the same network, or the speed ratio would mean nothing."""
    from benchmarks.reference_nb201 import ReferenceNB201Supernet

    torch.manual_seed(0)
    kshot, ref = KShotNB201(1, C=4, N=2), ReferenceNB201Supernet(C=4, N=2).train()
    ref.load_from_kshot(kshot)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    out_k, out_r = kshot(x, arch, None), ref(x, arch)
    torch.testing.assert_close(out_k, out_r, rtol=1e-4, atol=1e-5)
    F.cross_entropy(out_k, y).backward()
    F.cross_entropy(out_r, y).backward()
    g_ref = ref.classifier.weight.grad
    torch.testing.assert_close(kshot.fc_w.grad[0], g_ref, rtol=1e-3, atol=1e-5 * float(g_ref.abs().max()))


def test_channels_last_batches_compute_what_contiguous_ones_do():
    """The CUDA layout (`device_layout`): both supernets, forward and gradients, on channels_last input
    (run here on the CPU, where the CPU kernels take the same path by layout) equal the contiguous ones."""
    from kshot_bench.runtime import device_layout, layout_name
    from kshot_bench.search_space import mbv2
    from kshot_bench.supernet.mbv2 import KShotMBV2
    from kshot_bench.supernet.nb201 import KShotNB201

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    assert device_layout(x, cuda).is_contiguous(memory_format=torch.channels_last)
    assert device_layout(x, cpu) is x and (layout_name(cuda), layout_name(cpu)) == ("channels_last", "contiguous")
    torch.manual_seed(0)
    nets = [(KShotNB201(3, 10, 8, 1).double(), (1, 2, 3, 4, 0, 2)),
            (KShotMBV2(3, 10, scale=0.25).double(), mbv2.sample(np.random.default_rng(0)))]
    code = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    for net, arch in nets:
        outs = []
        for inp in (x, device_layout(x, cuda)):
            net.zero_grad(set_to_none=True)
            out = net(inp, arch, code)
            out.square().sum().backward()
            outs.append((out.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None]))
        torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-9, atol=1e-9)
        for a, b in zip(outs[0][1], outs[1][1]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_pool_constants_cached_under_inference_mode_serve_training():
    """Scoring (inference_mode) first, then training in the same process (ablate, or bf16 scoring then bf16
    training): the cached pooling constants must not be inference tensors."""
    ops._pool_consts.cache_clear()
    x = torch.randn(2, 5, 17, 17, dtype=torch.bfloat16)
    with torch.inference_mode():
        ops.avg_pool3x3(x)
    y = x.clone().requires_grad_()
    ops.avg_pool3x3(y).float().sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad.float()).all()


CPU_OPS = {  # op -> (call on x, the autograd node the CPU path leaves)
    "batch_norm": (lambda x, w: ops.batch_norm(x), "_BatchNormBackward"),
    "conv1x1": (lambda x, w: ops.conv2d(x, w[:, :, :1, :1].contiguous()), "_Conv1x1Backward"),
    "conv3x3": (lambda x, w: ops.conv2d(x, w), "_Conv3x3Backward"),
    "avg_pool3x3": (lambda x, w: ops.avg_pool3x3(x), "_AvgPool3x3Backward"),
}


@pytest.mark.parametrize("op", list(CPU_OPS))
@pytest.mark.parametrize("shape", [(16, 5, 32, 32), (64, 10, 16, 16), (128, 12, 9, 7)])
def test_cpu_paths_equal_the_plain_ops_in_float64(op, shape):
    """The CPU paths for small channel counts compute the plain ops' outputs and gradients (x and weight)."""
    fn, node = CPU_OPS[op]
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 0.5  # an offset: BN's centring matters
    w = torch.randn(shape[1], shape[1], 3, 3, dtype=torch.float64)
    g = torch.randn(*shape, dtype=torch.float64)
    outs = []
    for reference in (False, True):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        with ops.reference_ops() if reference else torch.enable_grad():
            y = fn(xi, wi)
        assert (type(y.grad_fn).__name__ == node) != reference
        y.backward(g)
        outs.append((y.detach(), xi.grad, wi.grad))
    (y, gx, gw), (y_ref, gx_ref, gw_ref) = outs
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-12)
    if gw_ref is not None:
        torch.testing.assert_close(gw, gw_ref, rtol=1e-12, atol=1e-10)
    y.add_(1.0)  # an output may be added into in place (run_cell does): no view of the Function's internals


def test_cpu_paths_keep_out_of_small_maps_wide_layers_and_autocast():
    x = torch.randn(4, 5, 8, 8, requires_grad=True)  # below MIN_ELEMENTS: the simplex-net step's groups
    assert type(ops.batch_norm(x).grad_fn).__name__ == "NativeBatchNormBackward0"
    wide = torch.randn(16, 32, 16, 16, requires_grad=True)
    assert type(ops.conv2d(wide, torch.randn(32, 32, 3, 3)).grad_fn).__name__ == "ConvolutionBackward0"
    big = torch.randn(16, 5, 32, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert type(ops.batch_norm(big).grad_fn).__name__ == "NativeBatchNormBackward0"
    with torch.inference_mode():  # scoring
        torch.testing.assert_close(ops.avg_pool3x3(big), F.avg_pool2d(big, 3, 1, 1, count_include_pad=False))


@pytest.mark.parametrize("k", [1, 3])
def test_supernet_with_cpu_paths_equals_reference_ops_in_float64(k):
    """A whole C=5 supernet step: same logits and same gradients of every weight, to float64 rounding."""
    torch.manual_seed(0)
    net = KShotNB201(k, C=5, N=2).double()
    # channels_last, as the loaders give batches: the CPU paths turn it to NCHW (ops.cpu_layout), the reference not
    x = torch.randn(16, 3, 32, 32, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert ops.cpu_layout(x, 5).is_contiguous() and ops.cpu_layout(x, 16) is x
    y = torch.randint(0, 10, (16,))
    code = torch.softmax(torch.randn(k, dtype=torch.float64), 0)
    for arch in ARCHS:
        grads = []
        for reference in (False, True):
            net.zero_grad(set_to_none=True)
            with ops.reference_ops() if reference else torch.enable_grad():
                logits = net(x, arch, code)
                F.cross_entropy(logits, y).backward()
            grads.append([logits.detach()] + [p.grad for p in net.parameters() if p.grad is not None])
        assert len(grads[0]) == len(grads[1])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


BY_SOURCE_ARCHS = ARCHS + [s.from_str(a) for a in (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # 3 stacked
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|",   # one pooling
    "|skip_connect~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_3x3~0|nor_conv_1x1~1|none~2|",  # node 1 is a block of a stacked map
)]


@pytest.mark.parametrize("k,bn_affine", [(1, False), (3, False), (2, True)])
def test_cells_run_by_source_equal_cells_run_by_edge_in_float64(monkeypatch, k, bn_affine):
    """`run_cell_by_source` (one op per source node, the edges' convolutions stacked) computes the logits and every
    gradient of `run_cell` (one op per edge), to float64 rounding; both on the CPU paths for narrow networks."""
    from kshot_bench.supernet import nb201 as net_module
    torch.manual_seed(0)
    net = KShotNB201(k, C=5, N=2, bn_affine=bn_affine).double()
    x = torch.randn(16, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    code = torch.softmax(torch.randn(k, dtype=torch.float64), 0)
    real_run = net_module.run_cell_by_source
    widest = []  # per by-source cell: the most edges one op ran for at once

    def run_by_source(x, plan, conv_bn_stacked):
        widest.append(max((len(uses) for _, works in plan for _, uses in works), default=0))
        return real_run(x, plan, conv_bn_stacked)

    monkeypatch.setattr(net_module, "run_cell_by_source", run_by_source)
    for arch in BY_SOURCE_ARCHS:
        grads = []
        for by_source in (True, False):
            calls = len(widest)
            net.zero_grad(set_to_none=True)
            with torch.enable_grad() if by_source else ops.cells_by_edge():
                logits = net(x, arch, code)
                F.cross_entropy(logits, y).backward()
            assert len(widest) - calls == (3 * 2 if by_source else 0)
            grads.append([logits.detach()] + [p.grad for p in net.parameters() if p.grad is not None])
        assert len(grads[0]) == len(grads[1])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert max(widest) == 3  # some cells ran three edges' convolutions as one
