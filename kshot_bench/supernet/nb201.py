"""NAS-Bench-201 networks: the exact stand-alone network of one arch, and the K-shot supernet.

Skeleton (NB201 `TinyNetwork`): stem conv3x3 + BN; 3 stages of N cells (C, 2C, 4C channels) with a
ResNet basic block (stride 2) between stages; BN-ReLU, global average pool, linear classifier.
Cell ops are ReLU-Conv-BN (1x1, 3x3), 3x3 average pooling (count_include_pad=False), identity, zero.

Both networks run a cell through `run_cell`, which computes only what reaches the output
(`search_space.nb201.live_edges`): `none` edges, and ops feeding nodes that cannot reach the output,
are never computed; the ReLU in front of the convs is computed once per source node. This is exact:
the output and every gradient equal those of the plain all-edges forward.
The supernet also skips ops whose input node is identically zero (exact there: BN without affine
maps a zero map to zero); the stand-alone network, whose BN has affine parameters, does not.

The K-shot supernet holds every parametric tensor as K copies `[K, ...]`; `forward(x, arch, code)`
merges the copies of the ops on the path with `code` (see `kshot.merge`) and keeps no arch state.
BN in the supernet uses batch statistics always (no running stats), affine off by default.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kshot_bench.search_space import nb201 as space
from kshot_bench.supernet.kshot import conv_weight, kshot_parameter, merge
from kshot_bench.supernet.ops import avg_pool3x3, batch_norm, conv2d

CONV_KERNEL = {space.CONV1: 1, space.CONV3: 3}


def run_cell(x: Tensor, edges: Sequence[tuple], conv_bn: Callable[[int, int, Tensor], Tensor]) -> Optional[Tensor]:
    """Compute a cell's output node from its live edges; None means the output is zero.

    `conv_bn(edge, op, relu_input)` applies the conv + BN of a parametric op to an already-ReLU'd input.
    """
    nodes: List[Optional[Tensor]] = [x, None, None, None]
    relus: List[Optional[Tensor]] = [None, None, None, None]
    owned = [False] * space.NUM_NODES  # node tensor is a fresh op output, so sums may add into it in place
    for e, target, source, op in edges:
        h = nodes[source]
        if h is None:  # only reached when zero is not a fixed point of the ops (affine BN)
            h = nodes[source] = torch.zeros_like(x)
        if op == space.SKIP:
            out = h
        elif op == space.POOL:
            out = avg_pool3x3(h)
        else:
            r = relus[source]
            if r is None:
                r = relus[source] = F.relu(h)
            out = conv_bn(e, op, r)
        prev = nodes[target]
        if prev is None:
            nodes[target], owned[target] = out, op != space.SKIP
        elif owned[target]:
            prev.add_(out)  # safe for autograd: BN and pooling do not keep their outputs for backward
        else:
            nodes[target], owned[target] = prev + out, True
    return nodes[space.NUM_NODES - 1]


def stage_channels(C: int) -> List[int]:
    return [C, 2 * C, 4 * C]


# ----------------------------------------------------------------------------- stand-alone network
class _ReLUConvBN(nn.Sequential):
    """ReLU is applied by the caller (`run_cell` shares it per node), so this holds conv + BN."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int):
        super().__init__(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out))


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = _ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = _ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(F.relu(self.conv_a(F.relu(x))))


class _InferCell(nn.Module):
    def __init__(self, arch: space.Arch, C: int, prune: bool):
        super().__init__()
        self.edges_all = tuple((e, t, s, op) for e, ((t, s), op) in enumerate(zip(space.EDGES, arch)) if op != space.NONE)
        self.edges = space.live_edges(arch, False) if prune else self.edges_all
        self.ops = nn.ModuleDict({str(e): _ReLUConvBN(C, C, CONV_KERNEL[op], 1)
                                  for e, _, _, op in self.edges_all if op in CONV_KERNEL})

    def forward(self, x: Tensor) -> Tensor:
        out = run_cell(x, self.edges, lambda e, op, r: self.ops[str(e)](r))
        return torch.zeros_like(x) if out is None else out


class NB201Network(nn.Module):
    """The NB201 network of one arch (default C=16, N=5): parameter counts equal the benchmark's.

    `prune=False` runs every non-`none` edge like the official code (the FLOPs convention counts
    them all); `prune=True` (default) skips what cannot reach the output, with the same result.
    """

    def __init__(self, arch: Sequence[int], num_classes: int = 10, C: int = 16, N: int = 5, prune: bool = True):
        super().__init__()
        arch = space.validate(arch)
        chans = stage_channels(C)
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: List[nn.Module] = []
        for s, c in enumerate(chans):
            if s > 0:
                layers.append(_ResBlock(chans[s - 1], c))
            layers.extend(_InferCell(arch, c, prune) for _ in range(N))
        self.layers = nn.Sequential(*layers)
        self.lastact = nn.BatchNorm2d(chans[-1])
        self.classifier = nn.Linear(chans[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.lastact(self.layers(self.stem(x))))
        return self.classifier(h.mean((2, 3)))


# ----------------------------------------------------------------------------- K-shot supernet
class KShotNB201(nn.Module):
    """K-shot NB201 supernet. `forward(x, arch, code)`: `code` is a `[K]` tensor on the simplex
    (ignored, and may be None, when K = 1)."""

    def __init__(self, k: int, num_classes: int = 10, C: int = 16, N: int = 5,
                 bn_affine: bool = False, init: str = "independent"):
        super().__init__()
        if not isinstance(k, int) or k < 1:
            from kshot_bench.errors import UserError
            raise UserError(f"K must be an integer >= 1, got {k!r}", fix="use K=1 for a one-shot supernet, K>=2 for K-shot")
        self.k, self.C, self.N, self.num_classes = k, C, N, num_classes
        self.bn_affine, self.init = bn_affine, init
        chans = stage_channels(C)
        self.stem = conv_weight(k, C, 3, 3, init)
        self.stem_bn = self._bn_params(C)
        self.cells = nn.ModuleList()
        self.reductions = nn.ModuleList()
        for s, c in enumerate(chans):
            if s > 0:
                red = nn.Module()
                red.conv_a = conv_weight(k, c, chans[s - 1], 3, init)
                red.bn_a = self._bn_params(c)
                red.conv_b = conv_weight(k, c, c, 3, init)
                red.bn_b = self._bn_params(c)
                red.down = conv_weight(k, c, chans[s - 1], 1, init)
                self.reductions.append(red)
            for _ in range(N):
                cell = nn.Module()
                cell.w = nn.ParameterDict({f"e{e}_{space.OPS[op]}": conv_weight(k, c, c, ks, init)
                                           for e in range(space.NUM_EDGES) for op, ks in CONV_KERNEL.items()})
                cell.bn = nn.ModuleDict({key: self._bn_params(c) for key in cell.w}) if bn_affine else None
                self.cells.append(cell)
        self.last_bn = self._bn_params(chans[-1])
        self.fc_w = kshot_parameter(k, (num_classes, chans[-1]), init, fan_in=chans[-1])
        self.fc_b = kshot_parameter(k, (num_classes,), init, fan_in=chans[-1])
        # plain lookup tables for the hot path (the parameters stay registered once, above)
        self._cell_w = [[{op: cell.w[f"e{e}_{space.OPS[op]}"] for op in CONV_KERNEL} for e in range(space.NUM_EDGES)]
                        for cell in self.cells]
        self._cell_bn = [[{op: (cell.bn[f"e{e}_{space.OPS[op]}"] if bn_affine else None) for op in CONV_KERNEL}
                          for e in range(space.NUM_EDGES)] for cell in self.cells]

    def _bn_params(self, c: int) -> Optional[nn.ParameterList]:
        if not self.bn_affine:
            return None
        return nn.ParameterList([kshot_parameter(self.k, (c,), self.init, fill=1.0),
                                 kshot_parameter(self.k, (c,), self.init, fill=0.0)])

    def _norm(self, x: Tensor, bn: Optional[nn.ParameterList], code: Optional[Tensor]) -> Tensor:
        if bn is None:
            return batch_norm(x)
        return batch_norm(x, merge(bn[0], code), merge(bn[1], code))

    def forward(self, x: Tensor, arch: Sequence[int], code: Optional[Tensor] = None) -> Tensor:
        if self.k > 1 and (code is None or code.shape != (self.k,)):
            raise ValueError(f"a K={self.k} supernet needs a code of shape ({self.k},), got "
                             f"{None if code is None else tuple(code.shape)}")
        edges = space.live_edges(tuple(arch), not self.bn_affine)
        h = self._norm(conv2d(x, merge(self.stem, code)), self.stem_bn, code)
        cell_id = 0
        for s in range(3):
            if s > 0:
                h = self._reduce(h, self.reductions[s - 1], code)
            for _ in range(self.N):
                h = self._cell(h, cell_id, edges, code)
                cell_id += 1
        h = F.relu(self._norm(h, self.last_bn, code)).mean((2, 3))
        return F.linear(h, merge(self.fc_w, code), merge(self.fc_b, code))

    def _cell(self, x: Tensor, cell_id: int, edges, code: Optional[Tensor]) -> Tensor:
        weights, bns = self._cell_w[cell_id], self._cell_bn[cell_id]

        def conv_bn(e: int, op: int, r: Tensor) -> Tensor:
            y = conv2d(r, merge(weights[e][op], code))
            bn = bns[e][op]
            return batch_norm(y) if bn is None else batch_norm(y, merge(bn[0], code), merge(bn[1], code))

        out = run_cell(x, edges, conv_bn)
        return torch.zeros_like(x) if out is None else out

    def _reduce(self, x: Tensor, red: nn.Module, code: Optional[Tensor]) -> Tensor:
        a = self._norm(conv2d(F.relu(x), merge(red.conv_a, code), stride=2), red.bn_a, code)
        b = self._norm(conv2d(F.relu(a), merge(red.conv_b, code)), red.bn_b, code)
        return conv2d(F.avg_pool2d(x, 2, 2), merge(red.down, code)) + b
