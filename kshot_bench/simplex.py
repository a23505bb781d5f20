"""Simplex-net: architecture (+ width) encoding -> code on the simplex (paper Sec. 3-4, Eq. 6, 11).

`SimplexNet` is a two-layer MLP over the one-hot arch encoding, softmax over K. The channel branch
(a second two-layer MLP over a width encoding) adds its logits to the arch branch's before the
softmax, so one code serves the whole path (arch + widths). `channel_regulariser` is r_c (Eq. 15-16).

Code modes (paper Tables 5-6), each a `CodeSource` that maps a list of archs to a `[n, K]` code:
  simplex  the learned simplex-net; its output layer starts at zero (`simplex_init`=0, our choice), so the
           first codes after the uniform warm-up are exactly uniform and the hand-over is continuous; with
           `simplex_init` > 0 its weights start N(0, simplex_init^2) (the codes start spread);
  uniform  fixed 1/K ("fixed K-shot");
  random   a simplex-net drawn at random (output layer N(0, 1)) and never trained ("random K-shot");
           the larger output init spreads codes over the simplex; a near-uniform random net would
           just repeat `uniform`.
For K = 1 every mode yields the code [1].

How the simplex-net trains where the paper is silent or a CPU budget differs (issue 45; docs/design.md,
"Simplex-net training variants"), each a named choice:
  warm-up codes (`warmup_code`, WARMUP_CODES): `uniform` 1/K (the paper), or `dirichlet`, a Dirichlet(1) code per
      step, so the copies get different gradients from the start and learn to differ;
  the step (`simplex_step`, SIMPLEX_STEP_KINDS): `separate` (the paper's Algorithm 1: m paths on b/m images each,
      after the supernet step, the supernet frozen) or `joint` (the code is not detached in the supernet step: one
      backward gives the copies and the simplex-net their gradients; no extra forward);
  `simplex_paths` (images per path = batch / paths), `simplex_interval`, `simplex_init`.
SIMPLEX_VARIANTS names the combinations the screens compare.

Scoring may replace each arch's own code (`score_code`): `uniform` 1/K, or `mean`, the mean code over the scored
archs (`scoring_codes`): comparing them separates what the codes add from what the trained copies hold.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kshot_bench.registry import Registry


class SimplexNet(nn.Module):
    def __init__(self, arch_dim: int, k: int, hidden: int = 64, width_dim: int = 0, width_hidden: int = 64):
        super().__init__()
        self.k = k
        self.arch_branch = nn.Sequential(nn.Linear(arch_dim, hidden), nn.ReLU(), nn.Linear(hidden, k))
        self.width_branch = (nn.Sequential(nn.Linear(width_dim, width_hidden), nn.ReLU(), nn.Linear(width_hidden, k))
                             if width_dim else None)

    def output_layers(self) -> List[nn.Linear]:
        branches = [self.arch_branch] + ([self.width_branch] if self.width_branch is not None else [])
        return [b[-1] for b in branches]

    def logits(self, arch_enc: Tensor, width_enc: Optional[Tensor] = None) -> Tensor:
        out = self.arch_branch(arch_enc)
        if self.width_branch is not None:
            if width_enc is None:
                raise ValueError("this simplex-net has a channel branch: pass width_enc")
            out = out + self.width_branch(width_enc)
        return out

    def forward(self, arch_enc: Tensor, width_enc: Optional[Tensor] = None) -> Tensor:
        return F.softmax(self.logits(arch_enc, width_enc), dim=-1)


def channel_regulariser(codes: Tensor, widths: Tensor, margin: float, tau: float = 0.3) -> Tensor:
    """r_c (paper Eq. 15-16) for the codes of n width settings of one arch.

    `codes` [n, K], `widths` [n, L] (width multipliers per layer). For every positive pair (i, k),
    i != k with ||c_i - c_k||_1 < margin:  P(c_i | c_k) = exp(s_ik) / (exp(s_ik) + sum_{j != i, k} exp(s_ij)),
    s = lambda_i . lambda_j / tau; r_c = mean over positive pairs of -log P. Zero when no pair is
    positive. (The sum leaves out j = i, the code's similarity with itself.)
    """
    n = codes.shape[0]
    sim = codes @ codes.t() / tau
    dist = torch.cdist(widths.float(), widths.float(), p=1)
    eye = torch.eye(n, dtype=torch.bool, device=codes.device)
    positive = (dist < margin) & ~eye
    if not positive.any():
        return codes.sum() * 0.0
    # log-denominator: logsumexp over j != i of s_ij (this includes k itself, as in Eq. 15)
    log_den = torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    log_p = sim - log_den
    return -log_p[positive].mean()


# ----------------------------------------------------------------------------- code sources
class CodeSource(nn.Module):
    """Maps archs to codes `[n, K]`. `trainable` says whether a simplex-net step has anything to do.

    `space` is a search-space module (search_space/__init__.py): `encode` feeds the architecture
    branch; with `widths` (a space with width search) `encode_width` feeds the channel branch.
    """

    trainable = False

    def __init__(self, k: int, space, hidden: int, widths: bool = False):
        super().__init__()
        self.k = k
        self._space = space
        probe = space.sample(_probe_rng())
        self.arch_dim = len(space.encode(probe))
        self.width_dim = len(space.encode_width(probe)) if widths and space.HAS_WIDTHS else 0

    def encode(self, archs: Sequence, like: Tensor) -> Tensor:
        """The archs' encodings on the device and in the dtype of `like` (the net's weights)."""
        return torch.tensor([self._space.encode(a) for a in archs], dtype=like.dtype, device=like.device)

    def encode_widths(self, archs: Sequence, like: Tensor) -> Optional[Tensor]:
        if not self.width_dim:
            return None
        return torch.tensor([self._space.encode_width(a) for a in archs], dtype=like.dtype, device=like.device)

    def _net_codes(self, archs: Sequence) -> Tensor:
        like = self.net.arch_branch[0].weight
        return self.net(self.encode(archs, like), self.encode_widths(archs, like))

    def forward(self, archs: Sequence) -> Tensor:
        raise NotImplementedError


def _probe_rng():
    import numpy as np

    return np.random.default_rng(0)


class UniformCode(CodeSource):
    def __init__(self, k, space, hidden, widths=False):
        super().__init__(k, space, hidden, widths)
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)

    def forward(self, archs):
        probe = self._device_probe
        return torch.full((len(archs), self.k), 1.0 / self.k, device=probe.device, dtype=probe.dtype)


class SimplexCode(CodeSource):
    trainable = True

    def __init__(self, k, space, hidden, widths=False, init_std: float = 0.0):
        super().__init__(k, space, hidden, widths)
        self.net = SimplexNet(self.arch_dim, k, hidden, self.width_dim, hidden)
        for layer in self.net.output_layers():
            if init_std > 0:
                nn.init.normal_(layer.weight, std=init_std)
            else:
                nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, archs):
        return self._net_codes(archs)


class RandomCode(CodeSource):
    def __init__(self, k, space, hidden, widths=False):
        super().__init__(k, space, hidden, widths)
        self.net = SimplexNet(self.arch_dim, k, hidden, self.width_dim, hidden)
        for layer in self.net.output_layers():
            nn.init.normal_(layer.weight, std=1.0)
            nn.init.normal_(layer.bias, std=1.0)
        self.net.requires_grad_(False)

    def forward(self, archs):
        with torch.no_grad():
            return self._net_codes(archs)


CODE_MODES: Registry[type] = Registry("code mode")
CODE_MODES.register("simplex", SimplexCode)
CODE_MODES.register("uniform", UniformCode)
CODE_MODES.register("random", RandomCode)


def make_code_source(mode: str, k: int, space, hidden: int = 64, widths: bool = False,
                     init_std: float = 0.0) -> CodeSource:
    """The code source of `mode` for archs of `space`; `widths` adds the channel branch (spaces with
    width search); `init_std` the simplex-net's output-layer scale (0: zeros). K = 1 always gets the
    constant code [1] (one-shot)."""
    cls = CODE_MODES.get(mode)
    if k == 1:
        return UniformCode(k, space, hidden, widths)
    return cls(k, space, hidden, widths, init_std) if cls is SimplexCode else cls(k, space, hidden, widths)


# ----------------------------------------------------------------------------- training variants
def _dirichlet_code(k: int, rng) -> Tensor:
    """A code drawn from Dirichlet(1, ..., 1): uniform on the simplex."""
    return torch.as_tensor(rng.dirichlet([1.0] * k), dtype=torch.float32)


def _uniform_code(k: int, rng) -> Tensor:
    return torch.full((k,), 1.0 / k)


# warm-up code: (K, numpy Generator seeded by the step) -> the code of that warm-up step
WARMUP_CODES: Registry = Registry("warm-up code")
WARMUP_CODES.register("uniform", _uniform_code)
WARMUP_CODES.register("dirichlet", _dirichlet_code)

SIMPLEX_STEP_KINDS = ("separate", "joint")

# named simplex-net training variants (issue 45's screens): the config fields each sets
SIMPLEX_VARIANTS: Registry[Dict[str, object]] = Registry("simplex-net variant")
_BASE = dict(kshot_copies="all", warmup_code="uniform", simplex_init=0.0)
SIMPLEX_VARIANTS.register("paper", dict(_BASE, simplex_step="separate", simplex_interval=1, simplex_paths=16))
SIMPLEX_VARIANTS.register("cpu", dict(_BASE, simplex_step="separate", simplex_interval=4,
                                      simplex_paths=16))  # the CPU presets until issue 45
SIMPLEX_VARIANTS.register("paths4", dict(_BASE, simplex_step="separate", simplex_interval=4,
                                         simplex_paths=4))  # 16 images per path at batch 64
SIMPLEX_VARIANTS.register("dirichlet", dict(_BASE, simplex_step="separate", simplex_interval=4, simplex_paths=4,
                                            warmup_code="dirichlet"))
SIMPLEX_VARIANTS.register("init", dict(_BASE, simplex_step="separate", simplex_interval=4, simplex_paths=4,
                                       simplex_init=0.1))
SIMPLEX_VARIANTS.register("joint", dict(_BASE, simplex_step="joint", simplex_interval=1))
SIMPLEX_VARIANTS.register("joint-dirichlet", dict(_BASE, simplex_step="joint", simplex_interval=1,
                                                  warmup_code="dirichlet"))
# the joint step on a supernet whose layers no BN normalises are one shared copy (supernet/kshot.py): with codes at
# 1/K it trains exactly as one-shot, where "all" copies train the classifier and shortcuts at lr / K
SIMPLEX_VARIANTS.register("joint-shared", dict(_BASE, simplex_step="joint", simplex_interval=1,
                                               kshot_copies="normalised"))
# Every variant names each field it sets, `kshot_copies` included, so that `--variant` on a preset that carries
# another variant's fields gives exactly the named variant.
# The CPU presets' simplex-net training (NB201 `long`, `narrow`, `cpu`, `demo`; Macro `cpu`) since issue 45: of the
# variants that cost at most x1.15 a one-shot epoch, the one that ranked best on the Macro screen at 20 epochs
# (x1.05 NB201, x1.06 Macro; reports/macro-cifar10, "Issue 45"). The paper-scale presets keep the paper's step.
CPU_VARIANT = "joint-shared"


def cpu_variant_fields() -> Dict[str, object]:
    """The config fields of CPU_VARIANT, a fresh dict for a preset."""
    return dict(SIMPLEX_VARIANTS.get(CPU_VARIANT))


def variant_of(cfg) -> str:
    """The name of the SIMPLEX_VARIANTS entry whose fields the config holds ('' when none matches)."""
    for name in SIMPLEX_VARIANTS.names():
        fields = dict(SIMPLEX_VARIANTS.get(name))
        if fields.get("simplex_step") == "joint":
            fields.pop("simplex_paths", None)
        if all(getattr(cfg, f) == v for f, v in fields.items()):
            return name
    return ""


# ----------------------------------------------------------------------------- scoring codes
class ConstantCode(nn.Module):
    """One code for every arch (scoring with a fixed code, `score_code`)."""

    trainable = False

    def __init__(self, code: Tensor):
        super().__init__()
        self.register_buffer("code", code.detach().clone())
        self.k = len(code)

    def forward(self, archs: Sequence) -> Tensor:
        return self.code.expand(len(archs), -1).clone()


SCORE_CODES = ("own", "uniform", "mean")


def scoring_codes(codes, archs: Sequence, mode: str):
    """The code source a scoring uses: `own` each arch's code; `uniform` 1/K for all; `mean` the mean of the
    archs' own codes (over `archs`, the whole scored set) for all."""
    if mode == "own":
        return codes
    if mode not in SCORE_CODES:
        from kshot_bench.errors import UserError

        raise UserError(f"unknown score_code {mode!r}", fix=f"choose one of: {', '.join(SCORE_CODES)}")
    with torch.no_grad():
        own = codes(list(archs))
    k = own.shape[1]
    code = torch.full((k,), 1.0 / k, dtype=own.dtype, device=own.device) if mode == "uniform" else own.double().mean(0).to(own.dtype)
    return ConstantCode(code)


def code_stats(codes: Tensor) -> Dict[str, float]:
    """How the codes of a set of archs are spread (written to the training log every epoch).

    code_entropy    mean entropy of a code relative to log K (1 = uniform, 0 = one-hot)
    code_max        mean largest weight of a code (1/K = uniform, 1 = one copy only)
    code_spread     mean total-variation distance between the codes of two archs, over all pairs
                    (0 = every arch gets the same code; 1 = disjoint one-hot codes)
    code_top_share  share of archs whose largest weight sits on the most common copy (1 = every arch
                    leans on the same copy, the collapse the paper's Fig. 6 does not show)
    """
    n, k = codes.shape
    if k == 1:
        return {"code_entropy": 0.0, "code_max": 1.0, "code_spread": 0.0, "code_top_share": 1.0}
    codes = codes.detach().double()
    ent = -(codes.clamp_min(1e-12).log() * codes).sum(-1) / torch.log(torch.tensor(float(k), dtype=torch.float64))
    spread = 0.5 * torch.cdist(codes, codes, p=1).sum() / max(1, n * (n - 1))
    top = torch.bincount(codes.argmax(-1), minlength=k).max() / n
    return {"code_entropy": float(ent.mean()), "code_max": float(codes.max(-1).values.mean()),
            "code_spread": float(spread), "code_top_share": float(top)}
