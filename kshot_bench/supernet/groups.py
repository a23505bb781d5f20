"""Many paths in one pass: m groups of images, each group through its own path with its own code.

The simplex-net step (paper Algorithm 1) evaluates m sampled paths on m groups of b/m images. Run one
group after another, that is m small forward/backward passes whose fixed per-op costs dominate
(benchmarks/k_overhead.py measures it). Here the groups are stacked along channels: a
batch of m groups of g images becomes one tensor `[g, m*C, H, W]` in which group j owns channels
`j*C .. (j+1)*C`. Then
  * a layer every path shares (stem, reductions, classifier) is one grouped convolution
    (`groups=m`) whose group j holds group j's merged weight `sum_k code[j, k] * theta[k]`;
  * a searchable op runs once for the groups whose path uses it: their channel blocks are gathered,
    convolved with their own merged weights, and added into the target node's blocks (NB201 runs an
    op once per source node for all the edges that use it: a group that runs it on two edges is two
    groups of the convolution);
  * BN with batch statistics normalises each channel over the g images of its own group, which is
    exactly the per-group BN of the sequential step;
  * every group's loss sees only its own images.
So the batched pass computes what the m sequential passes compute (to float rounding; tests check the
loss and the simplex-net's gradients). The layout is channels_last throughout, so a gather of channel
blocks is one `index_select` over the innermost-but-one axis of a `[g, H, W, m, C]` view.

Nothing here knows a search space: NB201 and MobileNetV2 supernets build their batched forward from
these pieces (`conv`/`batch_norm`/`linear` merge the K copies themselves; the `*_merged` forms take
weights the space has merged and masked already: MobileNetV2 pads groups of different widths to the
widest and zeroes each group's weights outside its own channels, supernet/mbv2.py).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kshot_bench.supernet.ops import BN_EPS


class _GatherBlocks(torch.autograd.Function):
    """`src.index_select(3, idx)` for several idx at once, with a single gradient buffer in backward."""

    @staticmethod
    def forward(ctx, src: Tensor, *idxs: Tensor):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*idxs)
        ctx.src_shape = src.shape
        return tuple(src.index_select(3, i) for i in idxs)

    @staticmethod
    def backward(ctx, *grads):
        idxs = ctx.saved_tensors
        live = [(i, g) for i, g in zip(idxs, grads) if g is not None]
        if not live:
            return (None,) * (1 + len(idxs))
        out = live[0][1].new_zeros(ctx.src_shape)
        for i, g in live:
            out.index_add_(3, i, g)
        return (out,) + (None,) * len(idxs)


class GroupStack:
    """The layout and the merged-weight ops of m groups stacked along channels.

    `codes` is `[m, K]` (one code per group). Index arguments `idx` are LongTensors of group ids
    (sorted, unique); None means every group.
    """

    def __init__(self, codes: Tensor):
        self.codes = codes
        self.m = codes.shape[0]
        self.all = torch.arange(self.m, device=codes.device)

    # ------------------------------------------------------------------ layout
    def stack(self, x: Tensor) -> Tensor:
        """`[m*g, c, H, W]` (group j = rows j*g .. (j+1)*g) -> `[g, m*c, H, W]`, channels_last."""
        n, c, h, w = x.shape
        g = n // self.m
        xs = x.reshape(self.m, g, c, h, w).permute(1, 3, 4, 0, 2)  # [g, H, W, m, c]
        return xs.reshape(g, h, w, self.m * c).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

    @staticmethod
    def blocks(t: Tensor, groups: int) -> Tensor:
        """`[g, n*c, H, W]` -> the `[g, H, W, n, c]` view of its channels_last memory."""
        t = t.contiguous(memory_format=torch.channels_last)
        g, nc, h, w = t.shape
        return t.permute(0, 2, 3, 1).view(g, h, w, groups, nc // groups)

    @staticmethod
    def image(b: Tensor) -> Tensor:
        """`[g, H, W, n, c]` -> `[g, n*c, H, W]` (a channels_last view when `b` is laid out so)."""
        g, h, w, n, c = b.shape
        return b.reshape(g, h, w, n * c).permute(0, 3, 1, 2)

    def gather(self, b: Tensor, idxs: Sequence[Optional[Tensor]]) -> List[Tensor]:
        """For each index tensor, the blocks of those groups as an image `[g, |idx|*c, H, W]` (None: all
        groups, a view). One autograd node for all of them: its backward fills one zero gradient and
        adds every piece's gradient into it, where `index_select` would fill one per piece."""
        parts = [i for i in idxs if i is not None]
        picked = iter(_GatherBlocks.apply(b, *parts) if parts else ())
        return [self.image(b if i is None else next(picked)) for i in idxs]

    def accumulate(self, node: Optional[Tensor], owned: bool, idx: Optional[Tensor], pb: Tensor):
        """`node` (blocks `[g, H, W, m, c]`, None = zero) plus `pb` (the blocks `[g, H, W, |idx|, c]` of
        the groups in `idx`, None = all; any strides).

        Returns (node, owned). In-place adds go only into a base tensor made here (`owned`), never
        into a view: autograd would copy the whole base for an in-place op on a view (CopySlices)."""
        if node is None:
            if idx is None:
                return pb, False  # may alias the source node (skip) or an op's output
            g, h, w, _, c = pb.shape
            return pb.new_zeros((g, h, w, self.m, c)).index_add_(3, idx, pb), True
        if owned:
            return (node.add_(pb) if idx is None else node.index_add_(3, idx, pb)), True
        return (node + pb if idx is None else node.index_add(3, idx, pb)), True

    # ------------------------------------------------------------------ merged-weight ops
    def merge(self, theta: Tensor, idx: Optional[Tensor] = None) -> Tensor:
        """`[n, ...]`: row j = sum_k code[idx[j], k] * theta[k] (theta is `[K, ...]`)."""
        codes = self.codes if idx is None else self.codes.index_select(0, idx)
        if theta.shape[0] == 1:
            return theta.expand(len(codes), *theta.shape[1:])
        return (codes @ theta.reshape(theta.shape[0], -1)).view(len(codes), *theta.shape[1:])

    def conv(self, t: Tensor, theta: Tensor, stride: int = 1) -> Tensor:
        """Grouped convolution of every group's blocks with its merged weight, 'same' padding."""
        return self.conv_merged(t, self.merge(theta), stride)

    @staticmethod
    def conv_merged(t: Tensor, w: Tensor, stride: int = 1, bias: Optional[Tensor] = None,
                    depthwise: bool = False) -> Tensor:
        """The same with the groups' weights given, `w` `[n, c_out, c_in (1: depthwise), k, k]` (bias `[n, c_out]`)."""
        n, c_out = w.shape[:2]
        return F.conv2d(t, w.reshape(n * c_out, *w.shape[2:]), None if bias is None else bias.reshape(-1),
                        stride=stride, padding=w.shape[-1] // 2, groups=n * c_out if depthwise else n)

    def batch_norm(self, t: Tensor, gamma: Optional[Tensor] = None, beta: Optional[Tensor] = None) -> Tensor:
        """BN with batch statistics: each channel over its own group's images; affine from K copies."""
        if gamma is None:
            return self.batch_norm_merged(t)
        return self.batch_norm_merged(t, self.merge(gamma), self.merge(beta))

    @staticmethod
    def batch_norm_merged(t: Tensor, gamma: Optional[Tensor] = None, beta: Optional[Tensor] = None) -> Tensor:
        """The same with the groups' affine parameters given (`[n, c]`), or none."""
        if gamma is None:
            return F.batch_norm(t, None, None, None, None, True, 0.0, BN_EPS)
        return F.batch_norm(t, None, None, gamma.reshape(-1), beta.reshape(-1), True, 0.0, BN_EPS)

    def linear(self, feat: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """`feat` `[g, m*c]` -> logits `[m*g, out]` in the groups' row order, each with its own merged layer."""
        return self.linear_merged(feat, self.merge(weight), self.merge(bias))

    def linear_merged(self, feat: Tensor, w: Tensor, b: Tensor) -> Tensor:
        """The same with the groups' layers given: `w` `[m, out, c]`, `b` `[m, out]`."""
        g = feat.shape[0]
        out = torch.einsum("gmc,moc->mgo", feat.view(g, self.m, -1), w) + b[:, None, :]
        return out.reshape(self.m * g, -1)

