"""Functional ops shared by every network of the package (supernets and stand-alone networks).

`avg_pool3x3` is NB201's pooling (3x3, stride 1, count_include_pad=False) computed as a depthwise
convolution with a ones kernel times the reciprocal window count: on the CPU (oneDNN, channels_last)
that is about twice as fast as `F.avg_pool2d` for maps of 16x16 and larger, forward and backward;
it agrees with `F.avg_pool2d` to float rounding (tests/test_supernet.py). We tried a custom
convolution backward (input gradient as a flipped-kernel convolution) and measured it slower than
oneDNN's own, so convolutions stay plain `F.conv2d`.
"""
from __future__ import annotations

import functools
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

BN_EPS = 1e-5


def conv2d(x: Tensor, w: Tensor, stride: int = 1) -> Tensor:
    """Convolution with 'same' padding for odd kernels (padding k // 2), no bias."""
    return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2)


@functools.lru_cache(maxsize=None)
def _pool_consts(channels: int, h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tuple[Tensor, Tensor]:
    # made as normal tensors even when the first call comes from scoring under inference_mode: the cache
    # outlives that call, and a training step (same process: ablate, tests) must be able to use them
    with torch.inference_mode(False):
        ones = torch.ones(channels, 1, 3, 3, dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)
        count = F.avg_pool2d(torch.ones(1, 1, h, w, dtype=dtype, device=device), 3, 1, 1, count_include_pad=True) * 9
        return ones, count.reciprocal_()


def avg_pool3x3(x: Tensor) -> Tensor:
    """3x3 average pooling, stride 1, padding 1, count_include_pad=False (the NB201 pooling op)."""
    n, c, h, w = x.shape
    if h < 16:
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    ones, inv_count = _pool_consts(c, h, w, x.dtype, x.device)
    return F.conv2d(x, ones, padding=1, groups=c).mul_(inv_count)  # the conv output is not kept for backward


def batch_norm(x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None) -> Tensor:
    """BN with the batch's statistics (training-mode normalisation, no running stats)."""
    return F.batch_norm(x, None, None, gamma, beta, True, 0.0, BN_EPS)
