"""Zero-cost proxies of any space's stand-alone networks at initialisation: ranking baselines that cost no
training, computed by the project (NB201 also ships reference scores; spaces without a shipped table need ours).

  synflow    (Tanaka et al. 2020; Abdelfattah et al. 2021) the network's parameters replaced by their absolute
             values, BN in eval mode with fresh statistics (the identity), in float64; one all-ones input; the
             sum of the outputs back-propagated; score = sum over conv and linear weights of |w * dR/dw|
  naswot     (Mellor et al. 2021) one batch in train mode; every ReLU's output pattern (x > 0, per image,
             flattened; for hardswish likewise x > 0) gives binary codes c; K = sum over ReLUs of
             c c' + (1 - c)(1 - c)'; score = log|det K|. Every ReLU the network's definition applies counts,
             so the stand-alone networks apply them as their reference code does (NB201: one per conv edge,
             not one per node; sharing it made ours agree with the reference at tau 0.76 instead of 0.97)
  snip       (Lee et al. 2019) one batch in train mode, cross-entropy; score = sum over conv and linear weights
             of |w * dL/dw|
  grad_norm  the same backward; score = sum over conv and linear weights of ||dL/dw||
Each network is built with a fixed seed (the same initial weights for every proxy of an arch). The batch: the
first `batch` images of the dataset's training part, unaugmented (`batch_images`).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterator, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kshot_bench.registry import Registry

PROXIES: Registry[Callable] = Registry("zero-cost proxy")
INIT_SEED = 0


def _weights(net: nn.Module) -> List[nn.Parameter]:
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@PROXIES.register("synflow")
def synflow(net: nn.Module, x: Tensor, y: Tensor) -> float:
    net = net.double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    ones = torch.ones((1,) + tuple(x.shape[1:]), dtype=torch.float64)
    net(ones).sum().backward()
    return float(sum((w.detach() * w.grad).abs().sum() for w in _weights(net) if w.grad is not None))


@contextlib.contextmanager
def _activation_codes(store: List[Tensor]) -> Iterator[None]:
    """Record (x > 0) of every ReLU / hardswish input while the block runs (functional calls included)."""
    originals = {name: getattr(F, name) for name in ("relu", "hardswish")}

    def wrap(fn):
        def recorded(x, *args, **kwargs):
            store.append((x.detach() > 0).flatten(1).to(torch.float64))
            return fn(x, *args, **kwargs)
        return recorded

    try:
        for name, fn in originals.items():
            setattr(F, name, wrap(fn))
        yield
    finally:
        for name, fn in originals.items():
            setattr(F, name, fn)


@PROXIES.register("naswot")
def naswot(net: nn.Module, x: Tensor, y: Tensor) -> float:
    codes: List[Tensor] = []
    net.train()
    for m in net.modules():  # module ReLUs call F.relu too; make in-place ones record their input
        if isinstance(m, nn.ReLU):
            m.inplace = False
    with torch.no_grad(), _activation_codes(codes):
        net(x)
    k = torch.zeros(len(x), len(x), dtype=torch.float64)
    for c in codes:
        k += c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(k)[1])


def _loss_grads(net: nn.Module, x: Tensor, y: Tensor) -> List[nn.Parameter]:
    net.train()
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    return [w for w in _weights(net) if w.grad is not None]


@PROXIES.register("snip")
def snip(net: nn.Module, x: Tensor, y: Tensor) -> float:
    return float(sum((w.detach() * w.grad).abs().sum() for w in _loss_grads(net, x, y)))


@PROXIES.register("grad_norm")
def grad_norm(net: nn.Module, x: Tensor, y: Tensor) -> float:
    return float(sum(w.grad.norm() for w in _loss_grads(net, x, y)))


def batch_images(splits, info, batch: int = 64):
    """The first `batch` images of the training part, unaugmented and normalised, NCHW float32."""
    from kshot_bench.data import TensorLoader

    x, y = splits.train_subset(torch.arange(min(batch, splits.n_train)))
    loader = TensorLoader(x, y, info, len(x), seed=0, augment=False, drop_last=False)
    xb, yb = loader.fixed_batches()[0]
    return xb.contiguous(), yb


def arch_proxies(build: Callable[[object], nn.Module], arch, names: Sequence[str], x: Tensor, y: Tensor) -> Dict[str, float]:
    """Every proxy in `names` of one arch: each on a fresh network with the same seeded initial weights."""
    out = {}
    for name in names:
        fn = PROXIES.get(name)
        torch.manual_seed(INIT_SEED)
        net = build(arch)
        score = fn(net, x, y)
        out[name] = score if np.isfinite(score) else float("-inf")
    return out
