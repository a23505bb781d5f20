"""Functional ops shared by every network of the package (supernets and stand-alone networks).

On a CPU, for float32/float64 NCHW tensors outside autocast, the ops of the NB201 cells take paths
written for small channel counts (the `narrow` preset's C=5 and 10: oneDNN's kernels are tuned for
wide layers and waste most of their time on a 5-channel map). Each computes the same function and the
same gradients as the plain op, to float rounding (tests/test_supernet.py, float64); measured in
benchmarks/narrow_speed.py, which also times the plain ops (`reference_ops()`) in the same run.

  batch_norm   batch statistics in two passes over the map (mean, then the centred sum of squares) and
               PyTorch's own BN backward kernel; the training-mode BN of PyTorch computes its statistics
               far more slowly on the CPU. BN and convs take these paths from MIN_ELEMENTS values on.
  conv2d 1x1   one batched matrix product over the pixels of each image (and two in backward), up to
               MATMUL_1X1_CHANNELS input channels.
  conv2d 3x3   stride 1, up to SMALL_3X3_CHANNELS input channels: oneDNN's forward, and its backward
               on channels_last copies of the gradient and input (about half the time of its NCHW
               backward at 5 channels; slower from 16 channels on).
  avg_pool3x3  NB201's 3x3 average pooling (stride 1, count_include_pad=False) as a separable box sum by
               shifted in-place adds, times the reciprocal window count; its backward is the same box sum
               of the scaled gradient (the zero-padded box filter is its own adjoint).
On the same paths the NB201 supernet runs its cells by source node (`stack_sources`, supernet/nb201.py:
`run_cell_by_source`), one stacked convolution for the edges that leave a node.
Everywhere else (GPU, autocast, other layouts, wider layers) the plain PyTorch op runs. The loaders give
channels_last batches, which suit oneDNN's convolutions but make BN and every broadcast op slow at 5
channels: a supernet narrower than NCHW_MAX_CHANNELS turns its input to NCHW on the CPU (`cpu_layout`).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

BN_EPS = 1e-5
MATMUL_1X1_CHANNELS = 16  # 1x1 convs as matrix products up to this many input channels (benchmarks/narrow_speed.py)
SMALL_3X3_CHANNELS = 24   # 3x3 backward through channels_last up to this many input channels
NCHW_MAX_CHANNELS = 8     # networks this narrow (C, the first stage's width) run in NCHW on the CPU, wider ones in
                          # the channels_last layout the loaders give (oneDNN's convolutions prefer it from C=16 on)
MIN_ELEMENTS = 65536      # BN and convs take the CPU paths from maps of this many values (the simplex-net step's
                          # 4-image groups are cheaper with the plain ops: a custom Function costs more to call)

_reference = False
_by_edge = False


@contextlib.contextmanager
def reference_ops() -> Iterator[None]:
    """Within this block every op runs as plain PyTorch: the reference the CPU paths are tested and timed
    against. Process-wide (the simplex-net step's worker threads follow it), so not for concurrent use."""
    global _reference
    before, _reference = _reference, True
    try:
        yield
    finally:
        _reference = before


@contextlib.contextmanager
def cells_by_edge() -> Iterator[None]:
    """Within this block the NB201 supernet runs its cells one edge at a time (`run_cell`) also where it would
    run them by source node (`stack_sources`), the other CPU paths unchanged: what `benchmarks/narrow_speed.py`
    times that change against. Process-wide, like `reference_ops`."""
    global _by_edge
    before, _by_edge = _by_edge, True
    try:
        yield
    finally:
        _by_edge = before


def is_narrow(channels: int) -> bool:
    """Whether a network whose first stage is `channels` wide counts as narrow (NCHW on the CPU: `narrow_cpu`)."""
    return channels <= NCHW_MAX_CHANNELS


def narrow_cpu(x: Tensor, channels: int) -> bool:
    """Whether a network whose first stage is `channels` wide runs on the CPU paths for narrow networks with
    input `x` (NCHW maps: `cpu_layout`). False within `reference_ops()`."""
    return not _reference and x.device.type == "cpu" and is_narrow(channels)


def stack_sources(x: Tensor, channels: int) -> bool:
    """Whether the NB201 supernet runs each op of a cell once per source node for all its out-edges, their
    convolutions stacked into one (`supernet.nb201.run_cell_by_source`): on the CPU paths for narrow networks,
    where it is faster (docs/design.md "CPU speed at C=5"); not within `cells_by_edge()`."""
    return not _by_edge and narrow_cpu(x, channels)


def cpu_layout(x: Tensor, channels: int) -> Tensor:
    """The input batch of a network whose first stage is `channels` wide in the layout its ops run fastest in:
    NCHW for narrow networks on the CPU (where the paths below apply), else as given."""
    if narrow_cpu(x, channels) and x.dim() == 4:
        return x.contiguous()
    return x


def _cpu_path(x: Tensor, min_elements: int = 0) -> bool:
    return (not _reference and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.dim() == 4
            and x.numel() >= min_elements and x.is_contiguous() and not torch.is_autocast_enabled("cpu"))


# ----------------------------------------------------------------------------- convolution
class _Conv1x1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:
        # detached: torch.matmul folds the images into one product only for inputs that need no grad
        x, w = x.detach(), w.detach()
        ctx.save_for_backward(x, w)
        n, c, h, wd = x.shape
        out = x.new_empty(n, w.shape[0], h, wd)  # written through a view: a custom Function must not return one
        torch.matmul(w.view(w.shape[0], c), x.view(n, c, h * wd), out=out.view(n, w.shape[0], h * wd))
        return out

    @staticmethod
    def backward(ctx, g: Tensor) -> Tuple[Tensor | None, Tensor | None]:
        x, w = ctx.saved_tensors
        n, c, h, wd = x.shape
        co = w.shape[0]
        gv = g.reshape(n, co, h * wd)
        gx = torch.matmul(w.view(co, c).t(), gv).view(n, c, h, wd) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(gv, x.view(n, c, h * wd).transpose(1, 2)).sum(0).view_as(w) if ctx.needs_input_grad[1] else None
        return gx, gw


class _Conv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:
        x, w = x.detach(), w.detach()
        ctx.save_for_backward(x, w)
        return F.conv2d(x, w, padding=1)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tuple[Tensor | None, Tensor | None]:
        x, w = ctx.saved_tensors
        cl = torch.channels_last
        gx, gw, _ = torch.ops.aten.convolution_backward(
            g.contiguous(memory_format=cl), x.contiguous(memory_format=cl), w, None, [1, 1], [1, 1], [1, 1], False,
            [0, 0], 1, [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        return (None if gx is None else gx.contiguous()), gw


def conv2d(x: Tensor, w: Tensor, stride: int = 1) -> Tensor:
    """Convolution with 'same' padding for odd kernels (padding k // 2), no bias."""
    k = w.shape[-1]
    if stride == 1 and _cpu_path(x, MIN_ELEMENTS) and w.dtype == x.dtype:
        if k == 1 and x.shape[1] <= MATMUL_1X1_CHANNELS:
            return _Conv1x1.apply(x, w)
        if k == 3 and x.shape[1] <= SMALL_3X3_CHANNELS:
            return _Conv3x3.apply(x, w)
    return F.conv2d(x, w, stride=stride, padding=k // 2)


# ----------------------------------------------------------------------------- batch norm
class BNStatistics:
    """Per-site BN statistics of one architecture, for scoring with fixed statistics (rank's
    `bn_calibration`): `collect` them over some batches (each batch normalised by its own statistics, as
    training does), then run the network in eval mode with them (`fixed`). Sites are the BN calls of one
    forward pass in call order, which is the same for every pass of the same arch and code.
    The statistics are those of every calibration image together (the mean of the batch means; the variance
    by the law of total variance), not a moving average."""

    def __init__(self):
        self.count: list = []   # images seen at each site
        self.sum: list = []     # per channel: sum over batches of (batch mean x batch size)
        self.sumsq: list = []   # per channel: sum over batches of ((batch variance + batch mean^2) x batch size)
        self._site = 0
        self._mode = ""

    def _next(self) -> int:
        i, self._site = self._site, self._site + 1
        return i

    def add(self, mean: Tensor, var: Tensor, n: int) -> None:
        """One batch's statistics at the next site (accumulated in float64)."""
        i = self._next()
        mean, var = mean.detach().double(), var.detach().double()
        if i == len(self.count):
            self.count.append(0)
            self.sum.append(torch.zeros_like(mean))
            self.sumsq.append(torch.zeros_like(mean))
        self.count[i] += n
        self.sum[i] += mean * n
        self.sumsq[i] += (var + mean * mean) * n

    def site(self, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
        i = self._next()
        if i >= len(self.count):
            raise RuntimeError(f"BN site {i} has no calibration statistics: calibrate with the same arch and code")
        mean = self.sum[i] / self.count[i]
        var = (self.sumsq[i] / self.count[i] - mean * mean).clamp_(min=0)
        return mean.to(dtype), var.to(dtype)


_bn_stats: BNStatistics | None = None


@contextlib.contextmanager
def bn_statistics(stats: BNStatistics, mode: str) -> Iterator[BNStatistics]:
    """Around one forward pass: `collect` adds each BN site's batch statistics to `stats` (the pass itself
    normalises with the batch's, as in training); `fixed` normalises every site with its collected
    statistics (eval-mode BN). Process-wide, like `reference_ops`: not for concurrent use."""
    global _bn_stats
    if mode not in ("collect", "fixed"):
        raise ValueError(f"mode must be collect or fixed, got {mode!r}")
    before, _bn_stats = _bn_stats, stats
    stats._site, stats._mode = 0, mode
    try:
        yield stats
    finally:
        _bn_stats = before


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.detach()
        c = x.shape[1]
        n = x.numel() // c
        mean = x.sum((0, 2, 3)).div_(n)
        centred = x - mean.view(1, c, 1, 1)
        rstd = (centred * centred).sum((0, 2, 3)).div_(n).add_(BN_EPS).rsqrt_()
        ctx.save_for_backward(x, mean, rstd)
        return centred.mul_(rstd.view(1, c, 1, 1))

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        x, mean, rstd = ctx.saved_tensors
        return torch.ops.aten.native_batch_norm_backward(g.contiguous(), x, None, None, None, mean, rstd, True, BN_EPS,
                                                         [True, False, False])[0]


def _batch_statistics(x: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-channel mean and (biased) variance of an N x C x H x W map, in two passes (centred sum of squares)."""
    c = x.shape[1]
    n = x.numel() // c
    mean = x.sum((0, 2, 3)).div_(n)
    centred = x - mean.view(1, c, 1, 1)
    return mean, centred.mul_(centred).sum((0, 2, 3)).div_(n)


def batch_norm(x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None) -> Tensor:
    """BN with the batch's statistics (training-mode normalisation, no running stats); within
    `bn_statistics(..., "fixed")` with the collected ones (eval mode)."""
    if _bn_stats is not None:  # scoring with re-estimated statistics: no autograd here
        if _bn_stats._mode == "fixed":
            mean, var = _bn_stats.site(x.dtype)
        else:  # normalised by its own statistics, as in training; they are kept
            mean, var = _batch_statistics(x)
            _bn_stats.add(mean, var, x.shape[0])
        return F.batch_norm(x, mean, var, gamma, beta, False, 0.0, BN_EPS)
    if gamma is None and beta is None and _cpu_path(x, MIN_ELEMENTS):
        return _BatchNorm.apply(x)
    return F.batch_norm(x, None, None, gamma, beta, True, 0.0, BN_EPS)


# ----------------------------------------------------------------------------- pooling
def _box3x3(x: Tensor) -> Tensor:
    """3x3 sums with zero padding, stride 1: a row pass, then a column pass (shifted in-place adds)."""
    rows = x.clone()
    rows[..., 1:].add_(x[..., :-1])
    rows[..., :-1].add_(x[..., 1:])
    out = rows.clone()
    out[..., 1:, :].add_(rows[..., :-1, :])
    out[..., :-1, :].add_(rows[..., 1:, :])
    return out


@functools.lru_cache(maxsize=None)
def _inv_window(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """1 / (the number of in-image pixels in each 3x3 window), shape [1, 1, h, w]."""
    with torch.inference_mode(False):  # cached: must serve training after a first call under inference_mode
        return _box3x3(torch.ones(1, 1, h, w, dtype=dtype, device=device)).reciprocal_()


class _AvgPool3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return _box3x3(x.detach()).mul_(_inv_window(x.shape[2], x.shape[3], x.dtype, x.device))

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        return _box3x3(g * _inv_window(g.shape[2], g.shape[3], g.dtype, g.device))


@functools.lru_cache(maxsize=None)
def _pool_consts(channels: int, h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tuple[Tensor, Tensor]:
    # made as normal tensors even when the first call comes from scoring under inference_mode: the cache
    # outlives that call, and a training step (same process: ablate, tests) must be able to use them
    with torch.inference_mode(False):
        ones = torch.ones(channels, 1, 3, 3, dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)
        count = F.avg_pool2d(torch.ones(1, 1, h, w, dtype=dtype, device=device), 3, 1, 1, count_include_pad=True) * 9
        return ones, count.reciprocal_()


def avg_pool3x3(x: Tensor) -> Tensor:
    """3x3 average pooling, stride 1, padding 1, count_include_pad=False (the NB201 pooling op).
    Elsewhere than the CPU path above: maps of 16x16 and more as a depthwise convolution with a ones kernel
    times the reciprocal window count (on oneDNN with channels_last faster than `F.avg_pool2d`: docs/design.md)."""
    if _cpu_path(x):
        return _AvgPool3x3.apply(x)
    n, c, h, w = x.shape
    if h < 16:
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    ones, inv_count = _pool_consts(c, h, w, x.dtype, x.device)
    return F.conv2d(x, ones, padding=1, groups=c).mul_(inv_count)  # the conv output is not kept for backward
