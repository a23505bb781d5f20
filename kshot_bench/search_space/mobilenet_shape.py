"""The shape of a MobileNet-block network, as a MobileNet-block space hands it to the engine
(supernet/mobilenet.py): per searchable layer its nominal channels and stride, plus the fixed stem, first
block and head. Shared by every space of MobileNet blocks (mbv2, macro)."""
from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple


class LayerSpec(NamedTuple):
    c_in: int      # nominal input channels
    c_out: int
    stride: int


class Macro(NamedTuple):
    """Channel counts of a network: stem, first block (0: none), head (0: none), the searchable layers,
    and the stem's stride."""
    stem: int
    first: int
    head: int
    layers: Tuple[LayerSpec, ...]
    stem_stride: int


def stage_layers(c_in: int, stages: Sequence[Tuple[int, int, int]]) -> Tuple[LayerSpec, ...]:
    """The layers of stages given as (channels, layers, first stride), starting from `c_in` channels."""
    out = []
    for c, n, s in stages:
        for i in range(n):
            out.append(LayerSpec(c_in, c, s if i == 0 else 1))
            c_in = c
    return tuple(out)
