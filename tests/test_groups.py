"""The batched simplex-net step (supernet/groups.py): m paths in one pass compute what m sequential
passes compute, and only the simplex-net learns from it; on NB201 and on MobileNetV2 (paths of
different widths padded to the widest)."""
import numpy as np
import pytest
import torch

from benchmarks.groups_float32_error import errors, make_trainer, step_grads
from kshot_bench.search_space import mbv2 as mb
from kshot_bench.search_space import nb201 as s
from kshot_bench.supernet.mbv2 import KShotMBV2
from kshot_bench.supernet.nb201 import KShotNB201

SPECIAL = [
    s.from_str("|none~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"),  # convs on a zero node
    s.from_str("|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"),          # dead: output is zero
    s.from_str("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"),  # dead-end edge
    (0, 0, 0, 0, 0, 0),
    (3, 3, 3, 3, 3, 3),
    (1, 1, 1, 1, 1, 1),
]


MB_SPECIAL = [
    mb.Arch((mb.ID,) * mb.NUM_LAYERS, (0,) * mb.NUM_WIDTHS),          # id everywhere: strided 1x1 where the shape changes
    mb.Arch((11,) * mb.NUM_LAYERS, (mb.FULL,) * mb.NUM_WIDTHS),      # k7e6_se, full width
    mb.Arch((11,) * mb.NUM_LAYERS, (0,) * mb.NUM_WIDTHS),            # the same op at the narrowest width
    mb.Arch(tuple(range(13)) + (3,) * 8, tuple(i % 5 for i in range(mb.NUM_WIDTHS))),
]


def paths(m, seed=0, space=s):
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(m)]
    special = SPECIAL if space is s else MB_SPECIAL
    archs[: min(m, len(special))] = special[:m]
    return archs


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("copies", ["all", "normalised"])
def test_forward_groups_equals_each_group_alone(k, affine, copies):
    torch.manual_seed(0)
    net = KShotNB201(k, 10, C=4, N=2, bn_affine=affine, copies=copies)
    m, g = 6, 3
    archs = paths(m)
    x = torch.randn(m * g, 3, 32, 32)
    codes = torch.softmax(torch.randn(m, k), -1)
    out = net.forward_groups(x, archs, codes)
    ref = torch.cat([net(x[j * g:(j + 1) * g], a, codes[j]) for j, a in enumerate(archs)])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


MB_SETS = {
    "mixed": paths(6, seed=1, space=mb),  # layer 0: id (strided 1x1) beside MB ops, inputs of different widths
    "one op": [mb.Arch((11,) * mb.NUM_LAYERS, (w,) * mb.NUM_WIDTHS) for w in (0, 2, 4)],  # every layer: all groups, padded
    "residual id": [mb.Arch((mb.ID,) * mb.NUM_LAYERS, (w,) * mb.NUM_WIDTHS) for w in (1, 3)],  # layers with nothing to run
    "sixteen": paths(16, seed=2, space=mb),
}


@pytest.mark.parametrize("name, k, affine, copies", [
    pytest.param(name, k, affine, copies, marks=pytest.mark.slow if (name, k) == ("sixteen", 3) else ())
    for name in MB_SETS for k, affine, copies in ((1, False, "all"), (3, False, "all"), (3, True, "all"),
                                                  (3, True, "normalised"))])
def test_mbv2_forward_groups_equals_each_group_alone(k, affine, copies, name):
    """float64, 64x64 inputs (at 32x32 the last layers' BN sees 4 values per channel, and rounding
    differences of 1e-15 grow to 1e-9): logits and the codes' gradient. `normalised`: SE, BN affine and the
    classifier are one shared copy beside K-copied convs."""
    torch.manual_seed(0)
    net = KShotMBV2(k, 10, bn_affine=affine, scale=0.25, copies=copies).double()
    if affine:  # BN affine and SE biases away from their init, so their merge and masks are tested
        with torch.no_grad():
            for p in net.parameters():
                if p.dim() == 2:
                    p.add_(0.1 * torch.randn_like(p))
    archs, g = MB_SETS[name], 2 if name == "sixteen" else 4
    x = torch.randn(len(archs) * g, 3, 64, 64, dtype=torch.float64)
    codes = torch.softmax(torch.randn(len(archs), k, dtype=torch.float64), -1).requires_grad_(k > 1)
    out = net.forward_groups(x, archs, codes)
    ref = torch.cat([net(x[j * g:(j + 1) * g], a, codes[j]) for j, a in enumerate(archs)])
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    if k > 1:
        w = torch.randn_like(out)
        (got,), (want,) = (torch.autograd.grad((o * w).sum(), codes) for o in (out, ref))
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))


@pytest.mark.parametrize("net", [KShotNB201(2, 10, C=4, N=1), KShotMBV2(2, 10, scale=0.25)], ids=["nb201", "mbv2"])
def test_forward_groups_refuses_uneven_groups(net):
    archs = paths(4, space=s if isinstance(net, KShotNB201) else mb)
    with pytest.raises(ValueError, match="equal groups"):
        net.forward_groups(torch.randn(10, 3, 32, 32), archs, torch.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="codes must have shape"):
        net.forward_groups(torch.randn(8, 3, 32, 32), archs, torch.full((4, 3), 1 / 3))


# MBV2 with 16 paths takes 15-50 s a case: `slow` (run by .ci/run after the default suite)
STEP_CASES = [pytest.param(space, m, k, marks=pytest.mark.slow if (space, m) == ("mbv2", 16) else ())
              for space in ("nb201", "mbv2") for m in (4, 16) for k in (2, 4)]


def step_setup(tmp_path, k, m, space):
    """A smoke Trainer with a trained-looking simplex-net (codes away from uniform), a batch and m paths."""
    t = make_trainer(tmp_path, k, m, space)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in t.codes.parameters():
            p.normal_(0, 0.5)
    x, y = next(iter(t.loader.epoch(0)))
    return t, x, y, paths(m, seed=k, space=s if space == "nb201" else mb)


@pytest.mark.parametrize("space, m, k", STEP_CASES)
def test_batched_simplex_step_equals_sequential(tmp_path, k, m, space):
    """In float64 the two steps agree to 1e-10: they compute the same function. In float32 each has its
    own rounding (the grouped and the per-group convolutions sum in different orders); measured against
    the float64 result of the same weights, the batched step must be about as accurate as the sequential
    one. MBV2: the simplex-net with its channel branch, paths of sampled widths."""
    t, x, y, archs = step_setup(tmp_path, k, m, space)
    f32 = step_grads(t, x, y, archs, torch.float32)
    f64 = step_grads(t, x, y, archs, torch.float64)
    assert all(p.grad is None for p in t.model.parameters()), "supernet weights must stay frozen"
    (lb, gb, cb), (ls, gs, cs) = f64["batched"], f64["sequential"]
    assert lb == pytest.approx(ls, rel=1e-10)
    scale = float(gs.abs().max())  # relative to the gradient's scale: small entries are sums that cancel
    assert scale > 0
    torch.testing.assert_close(gb, gs, rtol=1e-10, atol=1e-10 * scale)
    torch.testing.assert_close(cb, cs, rtol=1e-10, atol=1e-10 * float(cs.abs().max()))
    assert f32["batched"][0] == pytest.approx(ls, rel=1e-5)
    # float32: the median over groups of the error in the gradient into each group's code, not the largest
    # error: an activation within rounding of a ReLU's kink can flip in one group, in either step, and change
    # its gradient by a whole term (seen on this draw, MBV2 K=4 m=4, at 2 threads: 307x the sequential error
    # by the largest entry, 0.8x by the median). benchmarks/groups_float32_error.py, 24 draws at 1 and at 2
    # threads: median ratio 0.03 .. 2.1 (largest: 0.05 .. 14.6); with the batched step's conv weights rounded
    # to bf16 (--flaw) 11 .. 71,000. The float64 check above is the equivalence test
    err = errors(f32, f64)
    median = {name: e["median_group"] for name, e in err.items()}
    assert median["batched"] <= max(4 * median["sequential"], 1e-5), err


@pytest.mark.parametrize("space, m, k", STEP_CASES)
def test_threaded_simplex_step_equals_sequential(tmp_path, k, m, space):
    """The CPU default (the groups side by side on worker threads, one intra-op thread each) computes the
    sequential step's loss and gradients, float64 to 1e-10, and the same bits for any number of workers."""
    from kshot_bench.runtime import ThreadWorkers

    t, x, y, archs = step_setup(tmp_path, k, m, space)
    threads = torch.get_num_threads()
    if threads > 1:  # the CPU default: the groups on workers (one thread's choice: test_simplex_threads_setting)
        assert t.simplex_mode == f"threads({min(threads, m)})"
    t.simplex_threads = max(t.simplex_threads, 1)  # at one thread: one worker all the same (the threaded step is under test)
    f64 = step_grads(t, x, y, archs, torch.float64, steps=("threaded", "sequential"))
    assert all(p.grad is None for p in t.model.parameters()), "supernet weights must stay frozen"
    (lt, gt, ct), (ls, gs, cs) = f64["threaded"], f64["sequential"]
    assert lt == pytest.approx(ls, rel=1e-10)
    torch.testing.assert_close(gt, gs, rtol=1e-10, atol=1e-10 * float(gs.abs().max()))
    torch.testing.assert_close(ct, cs, rtol=1e-10, atol=1e-10 * float(cs.abs().max()))
    torch.set_num_threads(1)  # the sequential step on one intra-op thread: what every worker runs
    try:
        one_thread = step_grads(t, x, y, archs, torch.float32, steps=("sequential",))["sequential"]
    finally:
        torch.set_num_threads(threads)
    runs = []
    for n in (1, 3):
        t._workers = ThreadWorkers(n)
        runs.append(step_grads(t, x, y, archs, torch.float32, steps=("threaded",))["threaded"])
    for run in runs:
        assert run[0] == one_thread[0] and torch.equal(run[1], one_thread[1]) and torch.equal(run[2], one_thread[2])


@pytest.mark.parametrize("space", ["nb201", "mbv2"])
def test_every_simplex_step_runs_in_bf16(tmp_path, space):
    """train_precision=bf16: each way of running the step gives finite simplex-net gradients that agree to
    bf16 rounding (the sequential step once failed: a bf16 code merged with fp32 copies)."""
    grads = {}
    for name, changes in {"threads": {"simplex_threads": 2}, "batched": {"simplex_threads": 0},
                          "sequential": {"simplex_threads": 0, "simplex_batched": False}}.items():
        t = make_trainer(tmp_path / name, 2, 4, space, train_precision="bf16", **changes)
        assert t.simplex_mode.startswith(name)
        t.simplex_step(*next(iter(t.loader.epoch(0))), step=0)
        grads[name] = torch.cat([p.grad.flatten() for p in t.codes.parameters()])
        assert torch.isfinite(grads[name]).all() and grads[name].abs().max() > 0
    ref = grads["sequential"]
    for name in ("threads", "batched"):
        # over the whole gradient, not per element: elements that are sums cancelling to near zero move by more
        # than bf16's relative rounding between summation orders. On an AMD EPYC with bf16 units (oneDNN's native
        # bf16 kernels) MBV2's batched step came 5.8% from the sequential one overall, with 4 of 25,540 elements
        # beyond 5% (2026-12-03); the bound is for rounding, the finite and non-zero checks above for breakage
        error = float((grads[name] - ref).norm() / ref.norm())
        assert error < 0.1, (name, error)


def test_thread_workers_keep_the_callers_threads_and_raise_errors():
    from kshot_bench.runtime import ThreadWorkers

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's count differs from the workers' one thread (the suite runs at one)
    try:
        workers = ThreadWorkers(2)
        assert workers.map(lambda i: (i, torch.get_num_threads()), range(5)) == [(i, 1) for i in range(5)]
        assert torch.get_num_threads() == 2

        def fail(i):
            if i == 1:
                raise RuntimeError("group 1 failed")
            return i

        with pytest.raises(RuntimeError, match="group 1 failed"):
            workers.map(fail, range(4))
        assert torch.get_num_threads() == 2
        workers.close()
    finally:
        torch.set_num_threads(threads)


def test_simplex_threads_setting(tmp_path):
    from kshot_bench.config import from_preset
    from kshot_bench.errors import UserError
    from kshot_bench.train import resolve_simplex_step, resolve_simplex_threads

    cfg = from_preset("smoke")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # automatic with one thread: the sequential step on the main thread
        assert resolve_simplex_step(cfg, torch.device("cpu"), grouped=True) == ("sequential", 0)
        # ... but the batched pass for a narrow supernet (C <= 8), unless simplex_batched is off
        assert resolve_simplex_step(cfg, torch.device("cpu"), grouped=True, narrow=True) == ("batched", 0)
        assert resolve_simplex_step(cfg.replace(simplex_batched=False), torch.device("cpu"), True, True) == ("sequential", 0)
        assert make_trainer(tmp_path / "narrow", 2, 4, channels=8).simplex_mode == "batched"
        assert make_trainer(tmp_path / "wide", 2, 4, channels=16).simplex_mode == "sequential"
        torch.set_num_threads(2)
        assert make_trainer(tmp_path / "narrow2", 2, 4, channels=8).simplex_mode == "threads(2)"
        assert resolve_simplex_step(cfg, torch.device("cpu"), grouped=True) == ("threaded", 2)
    finally:
        torch.set_num_threads(threads)
    assert resolve_simplex_step(cfg, torch.device("cuda"), grouped=False) == ("sequential", 0)
    assert resolve_simplex_threads(cfg, torch.device("cpu")) == (min(threads, cfg.simplex_paths) if threads > 1 else 0)
    assert resolve_simplex_threads(cfg, torch.device("cuda")) == 0  # automatic: the batched step on a GPU
    assert resolve_simplex_threads(cfg.replace(simplex_threads=3), torch.device("cpu")) == 3
    with pytest.raises(UserError, match="simplex_threads=2 runs .* on CPU threads"):
        resolve_simplex_threads(cfg.replace(simplex_threads=2), torch.device("cuda"))
    with pytest.raises(UserError, match="simplex_threads must be -1"):
        cfg.replace(simplex_threads=-2)
    assert make_trainer(tmp_path, 2, 4, simplex_threads=0).simplex_mode == "batched"
    assert make_trainer(tmp_path, 2, 4, simplex_threads=0, simplex_batched=False).simplex_mode == "sequential"


def test_uneven_groups_fall_back_to_the_sequential_step(tmp_path):
    t = make_trainer(tmp_path, 2, 5, simplex_threads=0)  # 32 images do not split into 5 equal groups
    calls = []
    t.simplex_loss_sequential = lambda *a: calls.append(1) or 0.0
    t.simplex_step(*next(iter(t.loader.epoch(0))), step=0)
    assert calls == [1]
