"""K-shot parameters: K weight copies stacked in one tensor `[K, ...]`, merged by a simplex code.

The merge `sum_k code[k] * theta[k]` runs once per forward for each op on the sampled path, before
the op runs, so no extra feature maps exist (paper Sec. 3, Table 1). For K = 1 the merge returns
`theta[0]` itself: exactly a one-shot (SPOS) supernet, no copy and no code needed.

Init of the K copies (`init`, a design choice the paper leaves open; docs/design.md):
  "independent": each copy drawn on its own, as K separately initialised supernets (default).
  "identical":   every copy equal to the first; with a uniform code the K-shot supernet then
                 starts as exactly the one-shot supernet.

Which weights have K copies (`copies`, ours where the paper is silent; docs/design.md, "What a code of 1/K
amounts to"):
  "all":        every weight, as K whole supernets (our reading of the paper's "K supernets", default).
  "normalised": only the weights whose output a BN normalises (scale-invariant: the convs of the stem, the
                ops, the reductions' main branch, the head); the others (classifier, NB201's reduction shortcut
                convs, BN affine parameters, SE layers) are one copy shared by every code. With a code of 1/K
                the K-shot supernet then trains exactly as a one-shot supernet (up to BN's eps); with "all" its
                classifier and shortcuts train at lr / K and weight decay * K (tests/test_kshot_copies.py).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

KSHOT_INITS = ("independent", "identical")
KSHOT_COPIES = ("all", "normalised")


def copies_for(k: int, copies: str, normalised: bool) -> int:
    """How many copies a weight gets: K, or 1 for a weight no BN normalises under `copies="normalised"`."""
    if copies not in KSHOT_COPIES:
        raise ValueError(f"unknown K-shot copies {copies!r}; choose one of {KSHOT_COPIES}")
    return k if copies == "all" or normalised else 1


def merge(theta: Tensor, code: Tensor | None) -> Tensor:
    """`sum_k code[k] * theta[k]`; for K = 1, `theta[0]` whatever the code: a view (a free reshape in
    backward; indexing would scatter), copied only where `theta` is a channel slice (MBV2 widths) that
    is not contiguous: convolutions with a strided weight view ran slower than with a copy (docs/design.md)."""
    if theta.shape[0] == 1:
        w = theta.squeeze(0)
        return w if w.is_contiguous() else w.contiguous()
    if code.dtype != theta.dtype:  # a bf16 code (from the simplex-net under autocast) merges fp32 copies in fp32
        code = code.to(theta.dtype)
    return torch.tensordot(code, theta, dims=1)


def kshot_parameter(k: int, shape: tuple, init: str, fan_in: int | None = None, fill: float | None = None) -> nn.Parameter:
    """A `[k, *shape]` parameter. `fill` gives a constant (BN affine); else Kaiming-uniform on fan_in,
    the PyTorch default for conv and linear weights (bound = 1 / sqrt(fan_in))."""
    if init not in KSHOT_INITS:
        raise ValueError(f"unknown K-shot init {init!r}; choose one of {KSHOT_INITS}")
    copies = 1 if init == "identical" else k
    if fill is not None:
        data = torch.full((copies, *shape), float(fill))
    else:
        bound = 1.0 / math.sqrt(fan_in)
        data = torch.empty((copies, *shape)).uniform_(-bound, bound)
    if copies != k:
        data = data.expand(k, *shape).clone()
    return nn.Parameter(data)


def conv_weight(k: int, c_out: int, c_in: int, ksize: int, init: str) -> nn.Parameter:
    return kshot_parameter(k, (c_out, c_in, ksize, ksize), init, fan_in=c_in * ksize * ksize)


class PrefixCache:
    """The trunk states of the last arch a supernet ran on one batch with one code (`forward(..., prefix=)`):
    stage keys (the stage's op and width) and outputs, along that arch's path. Scoring archs in sorted
    order on one batch reuses the longest shared prefix of each. Valid for inference on that very batch and
    code: a new batch or code (another tensor object) starts from the input."""

    def __init__(self):
        self.x, self.code, self.keys, self.states = None, None, [], []

    def resume(self, x: Tensor, code: Optional[Tensor], stages: Sequence) -> Tuple[int, Tensor]:
        """(the first stage to compute, its input)."""
        if x is not self.x or code is not self.code or torch.is_grad_enabled():
            self.x, self.code, self.keys, self.states = x, code, [], []
        d = 0
        while d < min(len(self.keys), len(stages)) and self.keys[d] == stages[d]:
            d += 1
        del self.keys[d:], self.states[d:]
        return d, (self.states[d - 1] if d else x)

    def keep(self, key, state: Tensor) -> None:
        if not torch.is_grad_enabled():
            self.keys.append(key)
            self.states.append(state)
