"""The speed reference for issue 2: an NB201 single-path supernet built the way the widely used
NB201 code bases build theirs (the NAS-Bench-201 paper's search cell, as in the public AutoDL-style
supernets that SPOS/SETN/ENAS baselines train). Written here from that published design, not copied,
so the K-shot supernet's speed can be compared with it in one process, on the same paths and batch.

What makes it the reference design (and what `kshot_bench.supernet.nb201.KShotNB201` does differently):
  * every edge holds a list of its 5 candidate ops; a sampled arch runs the chosen op on *every* edge,
    `none` included (a multiply by zero), and edges that cannot reach the cell output are computed too;
  * every ReLU-Conv-BN op applies its own ReLU to its input (ours: one ReLU per source node);
  * 3x3 average pooling through `nn.AvgPool2d(count_include_pad=False)` (ours: a depthwise conv);
  * BN without affine, with running statistics tracked, as in the reference search cells.
Memory layout is not one of the differences: benchmarks/k_overhead.py feeds it the same
channels_last batch as our supernet, and its convs keep that layout, so the measured speed-up holds
no layout gain.
The skeleton is the NB201 one: stem conv3x3 + BN, 3 stages of N cells with a ResNet basic block
between them, BN-ReLU, global average pool, linear classifier. In training mode it computes the same
function as `KShotNB201(1)` with the same weights (tests/test_supernet.py checks it).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor, nn

from kshot_bench.search_space import nb201 as space


def _relu_conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(c_out, affine=False, track_running_stats=True))


class _Zero(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mul(0.0)


def _candidates(c: int) -> nn.ModuleList:
    """The 5 ops of an edge, in `space.OPS` order."""
    return nn.ModuleList([_Zero(), nn.Identity(), _relu_conv_bn(c, c, 1), _relu_conv_bn(c, c, 3),
                          nn.AvgPool2d(3, 1, 1, count_include_pad=False)])


class _SearchCell(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.edges = nn.ModuleList([_candidates(c) for _ in space.EDGES])

    def forward(self, x: Tensor, arch: Sequence[int]) -> Tensor:
        nodes: List[Tensor] = [x]
        for target in range(1, space.NUM_NODES):
            inputs = [self.edges[e][arch[e]](nodes[source])
                      for e, (t, source) in enumerate(space.EDGES) if t == target]
            nodes.append(sum(inputs[1:], inputs[0]))
        return nodes[-1]


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = _relu_conv_bn(c_in, c_out, 3, 2)
        self.conv_b = _relu_conv_bn(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class ReferenceNB201Supernet(nn.Module):
    def __init__(self, num_classes: int = 10, C: int = 16, N: int = 5):
        super().__init__()
        chans = [C, 2 * C, 4 * C]
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C, affine=False, track_running_stats=True))
        self.layers = nn.ModuleList()
        for s, c in enumerate(chans):
            if s > 0:
                self.layers.append(_ResBlock(chans[s - 1], c))
            self.layers.extend(_SearchCell(c) for _ in range(N))
        self.lastact = nn.Sequential(nn.BatchNorm2d(chans[-1], affine=False, track_running_stats=True), nn.ReLU())
        self.classifier = nn.Linear(chans[-1], num_classes)

    def forward(self, x: Tensor, arch: Sequence[int]) -> Tensor:
        h = self.stem(x)
        for layer in self.layers:
            h = layer(h, arch) if isinstance(layer, _SearchCell) else layer(h)
        return self.classifier(self.lastact(h).mean((2, 3)))

    @torch.no_grad()
    def load_from_kshot(self, net) -> None:
        """Copy the weights of a `KShotNB201(1)` (affine-free BN) into this network."""
        conv = {space.CONV1: 2, space.CONV3: 3}
        self.stem[0].weight.copy_(net.stem[0])
        cells = iter(net.cells)
        reds = iter(net.reductions)
        for layer in self.layers:
            if isinstance(layer, _SearchCell):
                cell = next(cells)
                for e in range(space.NUM_EDGES):
                    for op, i in conv.items():
                        layer.edges[e][i][1].weight.copy_(cell.w[f"e{e}_{space.OPS[op]}"][0])
            else:
                red = next(reds)
                layer.conv_a[1].weight.copy_(red.conv_a[0])
                layer.conv_b[1].weight.copy_(red.conv_b[0])
                layer.downsample[1].weight.copy_(red.down[0])
        self.classifier.weight.copy_(net.fc_w[0])
        self.classifier.bias.copy_(net.fc_b[0])
