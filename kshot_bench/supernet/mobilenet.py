"""The MobileNet engine: the stand-alone network of an arch and the K-shot supernet of a space built from
MobileNetV2 inverted-residual blocks. A space module describes the network (`macro(scale)`: stem, optional first
block, head and the searchable layers' channels and strides; `OPS`, `OP_SPECS` (kernel, expansion, SE) with
`ID` the identity choice; `ACTIVATION` of the blocks; `has_residual`, `mid_channels`, `se_channels`, `scaled`
for widths; archs with `.ops` and `.widths`); supernet/mbv2.py and supernet/macro.py bind it to their space.

MobileNetV2's GreedyNAS SE space as the example (SPEC 7; `search_space.mbv2` holds the layout and the width rule):
  stem      conv3x3 3 -> 32 (s2) + BN + ReLU                       width: output channels
  first     MB k3 e1 (no expand conv): dw3x3 + BN + HSwish, project 32 -> 16 + BN    width: output channels
  layer1-21 MB kK eE [SE]: expand 1x1 + BN + HSwish, dw kxk (stride s) + BN + HSwish, [SE], project 1x1 + BN,
            residual when stride 1 and in == out                  width: expanded (mid) channels
            or `id`: identity, or conv1x1 (stride s) + BN where the shape changes     no width
  head      conv1x1 320 -> 1280 + BN + ReLU                         width: output channels
  classifier  global average pool, dropout, linear
SE: 1x1 conv with bias mid -> max(1, int(mid/4)), HSwish, 1x1 conv with bias back to mid, HSigmoid gate.

K-shot supernet: every choice of every layer holds its own `[K, ...]` weights, at the layer's full
width. `forward(x, arch, code)` merges, for the choices on the path only, the leftmost channels the
arch's widths ask for (`theta[:, :mid]` merged with the code: ordinal sharing, paper Fig. 3); with the
channel branch the code itself depends on the widths, so every width setting gets its own merged
weights. No arch state, no mode flag. BN uses batch statistics (no running stats); affine BN (K copies
of gamma/beta) when `bn_affine`. The supernet has no dropout (the stand-alone network keeps 0.2).
Any subnet computes what `MBV2Network` of the same arch computes with the merged, sliced weights copied
in (tests/test_mbv2.py), and K=1 is a plain SPOS supernet: theta[0] sliced.

`forward_groups(x, archs, codes)`: the simplex-net step's m paths in one pass (supernet/groups.py). The
groups' paths differ in widths, and grouped convolutions need equal groups, so a tensor whose width
differs between groups is padded to the largest of them, and each group's merged weights (and BN affine
parameters, SE biases) are zero outside its own channels: its padded channels hold exact zeros, which
every op maps to zero (BN of a zero channel is zero; hardswish(0) = relu(0) = 0; a zero SE gate input
scales a zero map), and no padded channel reaches a real one or the code's gradient. In each searchable
layer an op runs once for the groups that chose it, padded to the largest expansion among them; the
layer outputs (stage widths) are never searched, so the trunk between layers needs no padding.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kshot_bench.supernet.groups import GroupStack
from kshot_bench.supernet.kshot import PrefixCache, copies_for, kshot_parameter, merge
from kshot_bench.supernet.ops import batch_norm


def pointwise(x: Tensor, w: Tensor, stride: int = 1) -> Tensor:
    """A 1x1 convolution with stride `stride`, computed as a 1x1 convolution of the subsampled input
    (the same numbers: a 1x1 kernel reads only the strided positions). The strided 1x1 convolution's
    backward crashes the process on this project's torch 2.14 CPU build (oneDNN, channels_last input
    with fewer than 16 channels at about 96x96 and larger: heap corruption, tests/test_mbv2.py has the
    case); the `id` op of a stride-2 layer is exactly that convolution."""
    return F.conv2d(x[:, :, ::stride, ::stride] if stride > 1 else x, w)


class _StridedPointwise(nn.Conv2d):
    """nn.Conv2d(c_in, c_out, 1, stride) computed as `pointwise` does (parameters and FLOPs are a 1x1 conv's)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__(c_in, c_out, 1, bias=False)
        self.sub = stride

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x[:, :, ::self.sub, ::self.sub] if self.sub > 1 else x)


ACTIVATIONS = {"hardswish": F.hardswish, "relu": F.relu}  # a space's ACTIVATION -> the function


# ----------------------------------------------------------------------------- stand-alone network
def _conv_bn(c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out))


class _SE(nn.Module):
    def __init__(self, mid: int, r: int):
        super().__init__()
        self.reduce = nn.Conv2d(mid, r, 1)
        self.expand = nn.Conv2d(r, mid, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.expand(F.hardswish(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * F.hardsigmoid(s)


class _MB(nn.Module):
    """Inverted residual: [expand 1x1 + BN + act], depthwise kxk + BN + act, [SE], project 1x1 + BN, [+ x].
    `act` and `se` (the SE's reduced channels, 0 = none) are the space's."""

    def __init__(self, c_in: int, mid: int, c_out: int, k: int, stride: int, se: int, residual: bool,
                 expand: bool = True, act=F.hardswish):
        super().__init__()
        self.expand = _conv_bn(c_in, mid) if expand else None
        self.dw = _conv_bn(mid, mid, k, stride, groups=mid)
        self.se = _SE(mid, se) if se else None
        self.project = _conv_bn(mid, c_out)
        self.residual, self.act = residual, act

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.expand(x)) if self.expand is not None else x
        h = self.act(self.dw(h))
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return x + h if self.residual else h


class MobileNetNetwork(nn.Module):
    """The stand-alone network of one arch of `space` (any class count and input size); costs: `space.cost`."""

    def __init__(self, space, arch, num_classes: int = 1000, dropout: float = 0.2, scale: float = 1.0):
        super().__init__()
        arch = space.validate(arch)
        m = space.macro(scale)
        w = arch.widths
        act = ACTIVATIONS[space.ACTIVATION]
        stem = space.scaled(m.stem, w[0])
        self.stem = _conv_bn(3, stem, 3, m.stem_stride)
        c_in = stem
        self.first = nn.Identity()
        if m.first:
            first = space.scaled(m.first, w[1])
            self.first = _MB(stem, stem, first, 3, 1, 0, False, expand=False, act=act)
            c_in = first
        layers: List[nn.Module] = []
        for i, (op, spec) in enumerate(zip(arch.ops, m.layers)):
            if op == space.ID:
                layers.append(nn.Identity() if space.has_residual(i) else
                              nn.Sequential(_StridedPointwise(c_in, spec.c_out, spec.stride), nn.BatchNorm2d(spec.c_out)))
            else:
                k, _, se = space.OP_SPECS[op]
                mid = space.mid_channels(i, op, w[i + 2], scale)
                layers.append(_MB(c_in, mid, spec.c_out, k, spec.stride, space.se_channels(mid) if se else 0,
                                  space.has_residual(i), act=act))
            c_in = spec.c_out
        self.layers = nn.Sequential(*layers)
        head = space.scaled(m.head, w[-1])
        self.head = _conv_bn(c_in, head)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.stem(x))
        h = self.layers(self.first(h))
        h = F.relu(self.head(h)).mean((2, 3))
        return self.classifier(self.dropout(h))


# ----------------------------------------------------------------------------- K-shot supernet
def _bn(x: Tensor, gamma: Optional[Tensor] = None, beta: Optional[Tensor] = None) -> Tensor:
    return batch_norm(x, gamma, beta)


class KShotMobileNet(nn.Module):
    """K-shot supernet of a MobileNet-block space. `forward(x, arch, code)`: `code` a `[K]` tensor on the simplex
    (ignored, and may be None, when K = 1). `scale`: the network scale (the space's `macro`; 1.0 = its own)."""

    GROUPED_PASS = True  # forward_groups: the simplex-net step's m paths in one pass (supernet/groups.py)

    def __init__(self, space, k: int, num_classes: int = 1000, bn_affine: bool = False, init: str = "independent",
                 scale: float = 1.0, copies: str = "all"):
        super().__init__()
        self.space, self.act = space, ACTIVATIONS[space.ACTIVATION]
        if not isinstance(k, int) or k < 1:
            from kshot_bench.errors import UserError
            raise UserError(f"K must be an integer >= 1, got {k!r}", fix="use K=1 for a one-shot supernet, K>=2 for K-shot")
        self.k, self.num_classes, self.bn_affine, self.init, self.scale = k, num_classes, bn_affine, init, scale
        self.copies = copies
        k_free = copies_for(k, copies, normalised=False)  # the copies of a weight no BN normalises (supernet/kshot.py)
        self.macro = m = space.macro(scale)
        S, F0, H = m.stem, m.first, m.head
        self.stem = self._conv(S, 3, 3)
        self.stem_bn = self._bn_params(S)
        if F0:  # the fixed first block (depthwise + project, no expand conv)
            self.first_dw = self._conv(S, 1, 3)
            self.first_dw_bn = self._bn_params(S)
            self.first_proj = self._conv(F0, S, 1)
            self.first_proj_bn = self._bn_params(F0)
        self.layers = nn.ModuleList()
        for i, spec in enumerate(m.layers):
            layer = nn.ModuleDict()
            for op, op_spec in enumerate(space.OP_SPECS):
                if op_spec is None:
                    if not space.has_residual(i):
                        layer[space.OPS[op]] = self._block(conv=self._conv(spec.c_out, spec.c_in, 1),
                                                           bn=self._bn_params(spec.c_out))
                    continue
                ks, t, se = op_spec
                mid = spec.c_in * t
                parts = dict(expand=self._conv(mid, spec.c_in, 1), expand_bn=self._bn_params(mid),
                             dw=self._conv(mid, 1, ks), dw_bn=self._bn_params(mid),
                             project=self._conv(spec.c_out, mid, 1), project_bn=self._bn_params(spec.c_out))
                if se:
                    r = space.se_channels(mid)
                    parts.update(se_reduce=self._conv(r, mid, 1, k_free), se_reduce_b=kshot_parameter(k_free, (r,), init, fan_in=mid),
                                 se_expand=self._conv(mid, r, 1, k_free), se_expand_b=kshot_parameter(k_free, (mid,), init, fan_in=r))
                layer[space.OPS[op]] = self._block(**parts)
            self.layers.append(layer)
        self.head = self._conv(H, m.layers[-1].c_out, 1)
        self.head_bn = self._bn_params(H)
        self.fc_w = kshot_parameter(k_free, (num_classes, H), init, fan_in=H)
        self.fc_b = kshot_parameter(k_free, (num_classes,), init, fan_in=H)

    # ------------------------------------------------------------------ parameters
    def _conv(self, c_out: int, c_in: int, ksize: int, k: Optional[int] = None) -> nn.Parameter:
        """`[K, c_out, c_in, k, k]` (`k` copies where given); depthwise convs pass c_in=1 (fan-in k*k, PyTorch's default)."""
        return kshot_parameter(self.k if k is None else k, (c_out, c_in, ksize, ksize), self.init,
                               fan_in=c_in * ksize * ksize)

    def _bn_params(self, c: int) -> Optional[nn.ParameterList]:
        if not self.bn_affine:
            return None
        k = copies_for(self.k, self.copies, normalised=False)
        return nn.ParameterList([kshot_parameter(k, (c,), self.init, fill=1.0),
                                 kshot_parameter(k, (c,), self.init, fill=0.0)])

    @staticmethod
    def _block(**parts) -> nn.Module:
        block = nn.Module()
        for name, p in parts.items():
            if p is not None:
                setattr(block, name, p)
        return block

    # ------------------------------------------------------------------ forward
    def _norm(self, x: Tensor, bn: Optional[nn.ParameterList], c: int, code: Optional[Tensor]) -> Tensor:
        if bn is None:
            return _bn(x)
        return _bn(x, merge(bn[0][:, :c], code), merge(bn[1][:, :c], code))

    PREFIX_SHARING = True  # forward(..., prefix=PrefixCache()): archs sharing their first layers share that work

    def forward(self, x: Tensor, arch, code: Optional[Tensor] = None, prefix: Optional["PrefixCache"] = None) -> Tensor:
        """The logits of `arch` with `code`. `prefix`: a PrefixCache of an earlier call on the same `x` and
        `code` (inference only): the trunk of the longest prefix of stages (stem, first block, searchable
        layers, each with its op and width) that this arch shares with that call is taken from it, not
        recomputed; the same numbers, since a stage's output depends on its input batch and its own choice only
        (BN uses that batch's statistics)."""
        if self.k > 1 and (code is None or code.shape != (self.k,)):
            raise ValueError(f"a K={self.k} supernet needs a code of shape ({self.k},), got "
                             f"{None if code is None else tuple(code.shape)}")
        space = self.space
        arch = space.validate(arch)
        w = arch.widths
        stages = self.stage_keys(arch)
        start, h = prefix.resume(x, code, stages) if prefix is not None else (0, x)
        for j in range(start, len(stages)):
            h = self._stage(h, j, stages[j], w, code)
            if prefix is not None:
                prefix.keep(stages[j], h)
        head = space.scaled(self.macro.head, w[-1])
        h = F.relu(self._norm(F.conv2d(h, merge(self.head[:, :head], code)), self.head_bn, head, code)).mean((2, 3))
        return F.linear(h, merge(self.fc_w[:, :, :head], code), merge(self.fc_b, code))

    def stage_keys(self, arch) -> List[tuple]:
        """What each trunk stage computes for `arch` (its choice and width), in network order: archs that agree
        on the first n keys share the first n stages' outputs (sorting archs by these keys groups them)."""
        w, m = arch.widths, self.macro
        return [("stem", w[0])] + ([("first", w[1])] if m.first else []) + list(zip(arch.ops, w[2:2 + len(m.layers)]))

    def _stage(self, h: Tensor, j: int, stage, w, code: Optional[Tensor]) -> Tensor:
        """Stage j of the trunk: the stem, the fixed first block (when the space has one), then the layers."""
        space, m = self.space, self.macro
        if j < (2 if m.first else 1):  # stem and first block: the stem's width
            stem = space.scaled(m.stem, w[0])
        if j == 0:
            return F.relu(self._norm(F.conv2d(h, merge(self.stem[:, :stem], code), stride=m.stem_stride, padding=1),
                                     self.stem_bn, stem, code))
        if m.first and j == 1:
            first = space.scaled(m.first, w[1])
            h = self.act(self._norm(F.conv2d(h, merge(self.first_dw[:, :stem], code), padding=1, groups=stem),
                                    self.first_dw_bn, stem, code))
            return self._norm(F.conv2d(h, merge(self.first_proj[:, :first, :stem], code)), self.first_proj_bn, first, code)
        i = j - (2 if m.first else 1)
        return self._layer(h, i, stage[0], stage[1], m.layers[i], code)

    def _layer(self, x: Tensor, i: int, op: int, width: int, spec, code: Optional[Tensor]) -> Tensor:
        space, act = self.space, self.act
        name = space.OPS[op]
        if op == space.ID:
            if space.has_residual(i):
                return x
            b = self.layers[i][name]
            return self._norm(pointwise(x, merge(b.conv[:, :, :x.shape[1]], code), spec.stride), getattr(b, "bn", None),
                              spec.c_out, code)
        b = self.layers[i][name]
        k, _, se = space.OP_SPECS[op]
        mid = space.mid_channels(i, op, width, self.scale)
        c_in = x.shape[1]
        h = act(self._norm(F.conv2d(x, merge(b.expand[:, :mid, :c_in], code)), getattr(b, "expand_bn", None), mid, code))
        h = act(self._norm(F.conv2d(h, merge(b.dw[:, :mid], code), stride=spec.stride, padding=k // 2,
                                    groups=mid), getattr(b, "dw_bn", None), mid, code))
        if se:
            r = space.se_channels(mid)
            s = F.conv2d(h.mean((2, 3), keepdim=True), merge(b.se_reduce[:, :r, :mid], code), merge(b.se_reduce_b[:, :r], code))
            s = F.conv2d(F.hardswish(s), merge(b.se_expand[:, :mid, :r], code), merge(b.se_expand_b[:, :mid], code))
            h = h * F.hardsigmoid(s)
        h = self._norm(F.conv2d(h, merge(b.project[:, :, :mid], code)), getattr(b, "project_bn", None), spec.c_out, code)
        return x + h if space.has_residual(i) else h

    def forward_groups(self, x: Tensor, archs: Sequence, codes: Tensor) -> Tensor:
        """m paths at once (the simplex-net step): `x` holds m equal groups of images (group j = rows
        j*g .. (j+1)*g), group j runs `archs[j]` (ops and widths) with code `codes[j]`. Returns the logits
        `[m*g, classes]` in the same row order; equal, to float rounding, to `forward(x_j, archs[j],
        codes[j])` of each group on its own (padding of differing widths: the module docstring)."""
        return _forward_groups(self, x, archs, codes)


# ----------------------------------------------------------------------------- m paths in one pass
class _Channels:
    """The channel counts of one tensor in each of n groups, padded to the largest (`pad`); `mask`
    `[n, pad]` is 1 on a group's own channels (None when no group is padded)."""

    def __init__(self, counts: Sequence[int], like: Tensor, pad: int = 0):
        self.counts, self.pad, self.like = list(counts), max(pad, *counts), like
        self.mask = None
        if min(counts) != self.pad:
            own = torch.arange(self.pad, device=like.device) < torch.tensor(counts, device=like.device)[:, None]
            self.mask = own.to(like.dtype)

    def subset(self, groups: Sequence[int]) -> "_Channels":
        """Some of the groups, padded as before (their blocks are gathered from the same tensor)."""
        return _Channels([self.counts[j] for j in groups], self.like, self.pad)


def _masked(w: Tensor, out: Optional[_Channels], inp: Optional[_Channels] = None) -> Tensor:
    """Per-group weights `[n, c_out, c_in, ...]` (or `[n, c]`) zeroed outside each group's own channels."""
    if out is not None and out.mask is not None:
        w = w * out.mask.view(*out.mask.shape, *[1] * (w.dim() - 2))
    if inp is not None and inp.mask is not None:
        w = w * inp.mask.view(inp.mask.shape[0], 1, inp.mask.shape[1], *[1] * (w.dim() - 3))
    return w


def _forward_groups(net: KShotMobileNet, x: Tensor, archs: Sequence, codes: Tensor) -> Tensor:
    m = len(archs)
    if x.shape[0] % m:
        raise ValueError(f"{x.shape[0]} images do not split into {m} equal groups")
    if codes.shape != (m, net.k):
        raise ValueError(f"codes must have shape ({m}, {net.k}), got {tuple(codes.shape)}")
    space = net.space
    archs = [space.validate(a) for a in archs]
    gs, mac = GroupStack(codes), net.macro
    stem = _Channels([space.scaled(mac.stem, a.widths[0]) for a in archs], codes)
    head = _Channels([space.scaled(mac.head, a.widths[-1]) for a in archs], codes)
    h = gs.conv_merged(gs.stack(x), _masked(gs.merge(net.stem[:, :stem.pad]), stem), stride=mac.stem_stride)
    h = F.relu(_gnorm(gs, h, net.stem_bn, stem))
    c_in: Optional[_Channels] = stem
    if mac.first:
        first = _Channels([space.scaled(mac.first, a.widths[1]) for a in archs], codes)
        h = gs.conv_merged(h, _masked(gs.merge(net.first_dw[:, :stem.pad]), stem), depthwise=True)
        h = net.act(_gnorm(gs, h, net.first_dw_bn, stem))
        h = gs.conv_merged(h, _masked(gs.merge(net.first_proj[:, :first.pad, :stem.pad]), first, stem))
        h = _gnorm(gs, h, net.first_proj_bn, first)
        c_in = first
    for i, spec in enumerate(mac.layers):
        h = _layer_groups(net, gs, h, i, spec, archs, c_in)
        c_in = None  # the stage widths: equal in every group from here on
    h = gs.conv_merged(h, _masked(gs.merge(net.head[:, :head.pad]), head))
    feat = F.relu(_gnorm(gs, h, net.head_bn, head)).mean((2, 3))
    return gs.linear_merged(feat, _masked(gs.merge(net.fc_w[:, :, :head.pad]), None, head), gs.merge(net.fc_b))


def _gnorm(gs: GroupStack, t: Tensor, bn: Optional[nn.ParameterList], ch: _Channels,
           idx: Optional[Tensor] = None) -> Tensor:
    if bn is None:
        return gs.batch_norm_merged(t)
    return gs.batch_norm_merged(t, _masked(gs.merge(bn[0][:, :ch.pad], idx), ch),
                                _masked(gs.merge(bn[1][:, :ch.pad], idx), ch))


def _layer_groups(net: KShotMobileNet, gs: GroupStack, x: Tensor, i: int, spec, archs,
                  c_in: Optional[_Channels]) -> Tensor:
    """Searchable layer i for every group: each op once, on the groups that chose it (their blocks of the
    trunk gathered), its output added into theirs; a residual layer starts from the input (`id` adds nothing)."""
    space = net.space
    chose: dict = {}
    for j, a in enumerate(archs):
        chose.setdefault(a.ops[i], []).append(j)
    residual = space.has_residual(i)
    plan = [(op, js, None if len(js) == gs.m else torch.tensor(js, device=x.device))
            for op, js in sorted(chose.items()) if not (residual and op == space.ID)]
    xb = gs.blocks(x, gs.m)
    out, owned = (xb, False) if residual else (None, False)
    for (op, js, idx), part in zip(plan, gs.gather(xb, [idx for _, _, idx in plan])):
        y = _op_groups(net, gs, part, i, op, spec, [archs[j] for j in js], idx,
                       None if c_in is None else c_in.subset(js))
        out, owned = gs.accumulate(out, owned, idx, gs.blocks(y, len(js)))
    return gs.image(out)


def _op_groups(net: KShotMobileNet, gs: GroupStack, x: Tensor, i: int, op: int, spec, archs, idx: Optional[Tensor],
               c_in: Optional[_Channels]) -> Tensor:
    """Op `op` of layer i on the n groups in `idx` (x: their blocks as an image `[g, n*c_in, H, W]`)."""
    space = net.space
    b, n = net.layers[i][space.OPS[op]], len(archs)
    cin_pad = x.shape[1] // n
    out = _Channels([spec.c_out] * n, x)
    if op == space.ID:  # a layer whose shape changes: strided 1x1 conv + BN (see `pointwise`)
        w = _masked(gs.merge(b.conv[:, :, :cin_pad], idx), None, c_in)
        h = gs.conv_merged(x[:, :, ::spec.stride, ::spec.stride] if spec.stride > 1 else x, w)
        return _gnorm(gs, h, getattr(b, "bn", None), out, idx)
    k, _, se = space.OP_SPECS[op]
    mid = _Channels([space.mid_channels(i, op, a.widths[i + 2], net.scale) for a in archs], gs.codes)
    h = gs.conv_merged(x, _masked(gs.merge(b.expand[:, :mid.pad, :cin_pad], idx), mid, c_in))
    h = net.act(_gnorm(gs, h, getattr(b, "expand_bn", None), mid, idx))
    h = gs.conv_merged(h, _masked(gs.merge(b.dw[:, :mid.pad], idx), mid), stride=spec.stride, depthwise=True)
    h = net.act(_gnorm(gs, h, getattr(b, "dw_bn", None), mid, idx))
    if se:
        r = _Channels([space.se_channels(c) for c in mid.counts], gs.codes)
        s = gs.conv_merged(h.mean((2, 3), keepdim=True), _masked(gs.merge(b.se_reduce[:, :r.pad, :mid.pad], idx), r, mid),
                           bias=_masked(gs.merge(b.se_reduce_b[:, :r.pad], idx), r))
        s = gs.conv_merged(F.hardswish(s), _masked(gs.merge(b.se_expand[:, :mid.pad, :r.pad], idx), mid, r),
                           bias=_masked(gs.merge(b.se_expand_b[:, :mid.pad], idx), mid))
        h = h * F.hardsigmoid(s)
    h = gs.conv_merged(h, _masked(gs.merge(b.project[:, :, :mid.pad], idx), None, mid))
    return _gnorm(gs, h, getattr(b, "project_bn", None), out, idx)
