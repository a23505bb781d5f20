"""NAS-Bench-Macro networks: the MobileNet engine (supernet/mobilenet.py) on the `macro` search space (ReLU blocks,
no SE, no width search): `MacroNetwork` (the stand-alone network of an arch, the benchmark's network) and
`KShotMacro` (the K-shot supernet; K = 1 is a SPOS supernet)."""
from __future__ import annotations

from kshot_bench.search_space import macro as space
from kshot_bench.supernet.mobilenet import KShotMobileNet, MobileNetNetwork

__all__ = ["MacroNetwork", "KShotMacro"]


class MacroNetwork(MobileNetNetwork):
    def __init__(self, arch, num_classes: int = 10, dropout: float = 0.0):
        super().__init__(space, arch, num_classes, dropout)


class KShotMacro(KShotMobileNet):
    def __init__(self, k: int, num_classes: int = 10, bn_affine: bool = False, init: str = "independent",
                 copies: str = "all"):
        super().__init__(space, k, num_classes, bn_affine, init, copies=copies)
