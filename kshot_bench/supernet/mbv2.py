"""MobileNetV2 (GreedyNAS SE space, SPEC 7) networks: the MobileNet engine (supernet/mobilenet.py) on the `mbv2`
search space: `MBV2Network` (the stand-alone network of an arch) and `KShotMBV2` (the K-shot supernet)."""
from __future__ import annotations

from kshot_bench.search_space import mbv2 as space
from kshot_bench.supernet.mobilenet import KShotMobileNet, MobileNetNetwork, pointwise

__all__ = ["MBV2Network", "KShotMBV2", "pointwise"]


class MBV2Network(MobileNetNetwork):
    def __init__(self, arch, num_classes: int = 1000, dropout: float = 0.2, scale: float = 1.0):
        super().__init__(space, arch, num_classes, dropout, scale)


class KShotMBV2(KShotMobileNet):
    def __init__(self, k: int, num_classes: int = 1000, bn_affine: bool = False, init: str = "independent",
                 scale: float = 1.0, copies: str = "all"):
        super().__init__(space, k, num_classes, bn_affine, init, scale, copies)
