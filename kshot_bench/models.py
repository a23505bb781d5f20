"""What a run config builds: the K-shot supernet of its search space and its code source (simplex-net or a
fixed code mode). Each space enters through its registry entry here (`SUPERNETS`)."""
from __future__ import annotations

from typing import Dict

import torch

from kshot_bench.config import RunConfig, from_dict, uses_widths
from kshot_bench.datasets import DATASETS
from kshot_bench.registry import Registry
from kshot_bench.search_space import SPACES
from kshot_bench.simplex import CodeSource, make_code_source

__all__ = ["SUPERNETS", "NETWORKS", "build_supernet", "build_code_source", "code_source_from", "uses_widths"]


def _nb201_supernet(cfg: RunConfig, num_classes: int) -> torch.nn.Module:
    from kshot_bench.supernet.nb201 import KShotNB201

    return KShotNB201(cfg.k, num_classes, cfg.channels, cfg.cells, cfg.bn_affine, cfg.kshot_init, cfg.kshot_copies)


def _mbv2_supernet(cfg: RunConfig, num_classes: int) -> torch.nn.Module:
    from kshot_bench.supernet.mbv2 import KShotMBV2

    return KShotMBV2(cfg.k, num_classes, cfg.bn_affine, cfg.kshot_init, cfg.net_scale, cfg.kshot_copies)


def _macro_supernet(cfg: RunConfig, num_classes: int) -> torch.nn.Module:
    from kshot_bench.supernet.macro import KShotMacro

    return KShotMacro(cfg.k, num_classes, cfg.bn_affine, cfg.kshot_init, cfg.kshot_copies)


# the supernet class of each search space: (config, class count) -> module with forward(x, arch, code)
# (and, where the space batches simplex steps, forward_groups(x, archs, codes))
SUPERNETS = Registry("supernet")
SUPERNETS.register("nb201", _nb201_supernet)
SUPERNETS.register("mbv2", _mbv2_supernet)
SUPERNETS.register("macro", _macro_supernet)


def build_supernet(cfg: RunConfig) -> torch.nn.Module:
    return SUPERNETS.get(cfg.space)(cfg, DATASETS.get(cfg.dataset).num_classes)


def build_code_source(cfg: RunConfig) -> CodeSource:
    return make_code_source(cfg.code, cfg.k, SPACES.get(cfg.space), cfg.simplex_hidden, widths=uses_widths(cfg),
                            init_std=cfg.simplex_init)


def code_source_from(state: Dict, device: torch.device = torch.device("cpu")) -> CodeSource:
    """The trained code source (simplex-net, or a fixed mode) held in a checkpoint's state."""
    codes = build_code_source(from_dict(state["config"])).to(device)
    codes.load_state_dict(state["codes"])
    return codes


# the stand-alone network of an arch of each space (zero-cost proxies, retraining): (arch, class count) -> module
def _nb201_network(arch, num_classes: int) -> torch.nn.Module:
    from kshot_bench.supernet.nb201 import NB201Network

    return NB201Network(arch, num_classes, prune=False)  # the benchmark's network (C=16, N=5), every edge


def _mbv2_network(arch, num_classes: int) -> torch.nn.Module:
    from kshot_bench.supernet.mbv2 import MBV2Network

    return MBV2Network(arch, num_classes)


def _macro_network(arch, num_classes: int) -> torch.nn.Module:
    from kshot_bench.supernet.macro import MacroNetwork

    return MacroNetwork(arch, num_classes)


NETWORKS = Registry("stand-alone network")
NETWORKS.register("nb201", _nb201_network)
NETWORKS.register("mbv2", _mbv2_network)
NETWORKS.register("macro", _macro_network)
