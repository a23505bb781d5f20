"""NAS-Bench-Macro: a MobileNet-block space with ground truth on CIFAR-10, pure Python.

The space (Su et al., CVPR 2021, the K-shot authors' group; data README in ../shared): a stem (3x3 conv 3 -> 32,
BN, ReLU), 8 searchable layers in 3 stages of 2, 3 and 3 layers, the first layer of each stage with stride 2 and
twice the channels (64, 128, 256), then a 1x1 conv to 1,280 channels + BN + ReLU, global average pooling and a
linear classifier. Each layer is one of three blocks, the digit of the arch string:
  0  identity; where the layer changes shape (the first of a stage) a 1x1 conv with the stride + BN, no activation
  1  MobileNetV2 inverted residual, expansion 3, depthwise kernel 3 (ReLU, no SE)
  2  the same with expansion 6 and kernel 5
An arch is `Arch(ops, widths)` as in the MobileNetV2 space, so the same MobileNet engine builds its networks
(supernet/mobilenet.py); this space has no width search (one width, 1.0, everywhere). Its string is the 8
digits, e.g. `22212220`.

Canonical form: an identity in a layer that keeps the shape is a no-op, so strings that differ only in where such
identities sit inside a stage are one network; moving every such identity to the end of its stage gives 3,969
distinct networks (the table gives the strings of a network identical entries; tests check both). Keys (the
rows of the shipped truth table, `package_data/macro_cifar10.npz`) number these networks in the order of their
canonical strings; rankings are over distinct networks.
"""
from __future__ import annotations

import functools
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.search_space.mobilenet_shape import Macro, stage_layers
from kshot_bench.simplex import cpu_variant_fields

NAME = "macro"
HAS_WIDTHS = False
SAMPLINGS = ("uniform",)
ACTIVATION = "relu"  # of the blocks' expand and depthwise convs (MobileNetV2's GreedyNAS space: hardswish)

OPS: Tuple[str, ...] = ("id", "k3e3", "k5e6")  # the string's digits 0, 1, 2
OP_SPECS: Tuple[Optional[Tuple[int, int, bool]], ...] = (None, (3, 3, False), (5, 6, False))  # (kernel, expansion, SE)
ID = 0
WIDTHS: Tuple[float, ...] = (1.0,)
FULL = 0
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
STAGES: Tuple[Tuple[int, int, int], ...] = ((64, 2, 2), (128, 3, 2), (256, 3, 2))  # (channels, layers, first stride)
NUM_LAYERS = sum(n for _, n, _ in STAGES)  # 8
NUM_WIDTHS = NUM_LAYERS + 3  # the engine's layout (stem, first block, layers, head); every width is 1.0 here
LAYERS = stage_layers(STEM_CHANNELS, STAGES)
STAGE_OF = tuple(j for j, (_, n, _) in enumerate(STAGES) for _ in range(n))
_MACRO = Macro(STEM_CHANNELS, 0, HEAD_CHANNELS, LAYERS, 1)


def macro(scale: float = 1.0) -> Macro:
    if scale != 1.0:
        raise UserError(f"net_scale={scale!r}: the NAS-Bench-Macro network has one size", fix="leave net_scale at 1.0")
    return _MACRO


def scaled(channels: int, width_id: int) -> int:
    return channels


def mid_channels(layer: int, op: int, width_id: int = FULL, scale: float = 1.0) -> int:
    spec = OP_SPECS[op]
    return 0 if spec is None else LAYERS[layer].c_in * spec[1]


def se_channels(mid: int) -> int:
    return max(1, int(mid * 0.25))


def has_residual(layer: int) -> bool:
    spec = LAYERS[layer]
    return spec.stride == 1 and spec.c_in == spec.c_out


class Arch(NamedTuple):
    ops: Tuple[int, ...]
    widths: Tuple[int, ...]


_WIDTHS = (FULL,) * NUM_WIDTHS
EXAMPLE = "22212220"


# ----------------------------------------------------------------------------- validation and strings
def validate(arch) -> Arch:
    """`arch` as an `Arch`, or UserError naming what is wrong. Accepts an Arch, 8 op ids or the arch string."""
    if isinstance(arch, str):
        return from_str(arch)
    ops = arch.ops if isinstance(arch, Arch) else tuple(arch)
    if len(ops) != NUM_LAYERS:
        raise UserError(f"a NAS-Bench-Macro arch has {NUM_LAYERS} layers, got {len(ops)}: {ops}",
                        fix=f"pass {NUM_LAYERS} digits 0-2, e.g. {EXAMPLE}")
    for op in ops:
        if isinstance(op, bool) or not isinstance(op, (int, np.integer)) or not 0 <= op < len(OPS):
            raise UserError(f"op {op!r} in {tuple(ops)} is not a NAS-Bench-Macro op",
                            fix="ops are 0 (identity), 1 (MB e3 k3), 2 (MB e6 k5)")
    return Arch(tuple(int(o) for o in ops), _WIDTHS)


def from_str(arch_str: str) -> Arch:
    if not isinstance(arch_str, str):
        raise UserError(f"arch string must be a str, got {type(arch_str).__name__}")
    text = arch_str.strip()
    if len(text) != NUM_LAYERS or any(c not in "012" for c in text):
        raise UserError(f"malformed NAS-Bench-Macro arch string {arch_str!r}: expected {NUM_LAYERS} digits 0-2",
                        fix=f"one digit a layer (0 identity, 1 MB e3 k3, 2 MB e6 k5), e.g. {EXAMPLE}")
    return Arch(tuple(int(c) for c in text), _WIDTHS)


def to_str(arch) -> str:
    return "".join(str(o) for o in validate(arch).ops)


def _canonical_ops(ops: Tuple[int, ...]) -> Tuple[int, ...]:
    out, i = [], 0
    for _, n, _ in STAGES:
        first, rest = ops[i], ops[i + 1: i + n]
        kept = [o for o in rest if o != ID]
        out += [first] + kept + [ID] * (len(rest) - len(kept))
        i += n
    return tuple(out)


def canonical(arch, rule: str = "nb201") -> str:
    """The string of the arch's network: every shape-keeping identity moved to the end of its stage."""
    return "".join(str(o) for o in _canonical_ops(validate(arch).ops))


@functools.lru_cache(maxsize=1)
def _networks() -> Tuple[str, ...]:
    strings = {"".join(str(o) for o in _canonical_ops(tuple(int(c) for c in np.base_repr(i, 3).zfill(NUM_LAYERS))))
               for i in range(len(OPS) ** NUM_LAYERS)}
    return tuple(sorted(strings))


@functools.lru_cache(maxsize=1)
def _key_of_string() -> Dict[str, int]:
    return {s: i for i, s in enumerate(_networks())}


def all_strings() -> List[str]:
    """Every arch string of the space (3^8 = 6,561), in base-3 order."""
    return [np.base_repr(i, 3).zfill(NUM_LAYERS) for i in range(len(OPS) ** NUM_LAYERS)]


# ----------------------------------------------------------------------------- sampling & variation
def sample(rng: np.random.Generator, unique: bool = False, widths: bool = True, sampling: str = "uniform") -> Arch:
    """Each layer's block uniform over the three (or, with `unique`, a distinct network uniformly)."""
    if sampling not in SAMPLINGS:
        raise UserError(f"sampling {sampling!r} is not defined for the NAS-Bench-Macro space",
                        fix=f"use sampling={SAMPLINGS[0]}")
    if unique:
        return from_key(int(rng.integers(NUM_ARCHS)))
    return Arch(tuple(int(o) for o in rng.integers(len(OPS), size=NUM_LAYERS)), _WIDTHS)


def mutate(arch, rng: np.random.Generator, prob: Optional[float] = None, widths: bool = True) -> Arch:
    """Each layer takes another block with probability `prob` (default 1/8); at least one layer changes."""
    ops = list(validate(arch).ops)
    prob = 1.0 / NUM_LAYERS if prob is None else prob
    flips = rng.random(NUM_LAYERS) < prob
    if not flips.any():
        flips[int(rng.integers(NUM_LAYERS))] = True
    for i in np.flatnonzero(flips):
        ops[i] = (ops[i] + 1 + int(rng.integers(len(OPS) - 1))) % len(OPS)
    return Arch(tuple(ops), _WIDTHS)


def crossover(a, b, rng: np.random.Generator) -> Arch:
    a, b = validate(a), validate(b)
    pick = rng.random(NUM_LAYERS) < 0.5
    return Arch(tuple(x if p else y for x, y, p in zip(a.ops, b.ops, pick)), _WIDTHS)


def encode(arch) -> List[float]:
    """Layer-major one-hot blocks: 8 layers x 3 = 24 values (simplex-net input)."""
    out = [0.0] * (NUM_LAYERS * len(OPS))
    for i, op in enumerate(validate(arch).ops):
        out[i * len(OPS) + op] = 1.0
    return out


def encode_width(arch) -> None:
    return None


def width_variants(arch, rng: np.random.Generator, n: int) -> List[Arch]:
    raise NotImplementedError("NAS-Bench-Macro has no width search")


def width_values(arch) -> List[float]:
    return []


def smallest() -> Arch:
    """The arch with the fewest FLOPs: every layer an identity."""
    return Arch((ID,) * NUM_LAYERS, _WIDTHS)


# ----------------------------------------------------------------------------- cost
def cost(arch, num_classes: int = 10, input_size: int = 32) -> Tuple[int, int]:
    """(parameters, FLOPs) by the table's convention: every parameter (conv weights, BN affine pairs, the
    classifier's weight and bias); multiply-adds of every conv and the classifier's weight for one image (no BN,
    activations, biases or additions). Equal to the table for every string (tests/test_macro.py)."""
    ops = validate(arch).ops
    size = input_size
    params = 3 * STEM_CHANNELS * 9 + 2 * STEM_CHANNELS
    flops = 3 * STEM_CHANNELS * 9 * size * size
    for i, (op, spec) in enumerate(zip(ops, LAYERS)):
        out_size = (size - 1) // spec.stride + 1
        if op == ID:
            if not has_residual(i):
                params += spec.c_in * spec.c_out + 2 * spec.c_out
                flops += spec.c_in * spec.c_out * out_size * out_size
        else:
            k, _, _ = OP_SPECS[op]
            mid = mid_channels(i, op)
            params += spec.c_in * mid + 2 * mid + mid * k * k + 2 * mid + mid * spec.c_out + 2 * spec.c_out
            flops += (spec.c_in * mid * size * size + mid * k * k * out_size * out_size
                      + mid * spec.c_out * out_size * out_size)
        size = out_size
    c = LAYERS[-1].c_out
    params += c * HEAD_CHANNELS + 2 * HEAD_CHANNELS + HEAD_CHANNELS * num_classes + num_classes
    flops += c * HEAD_CHANNELS * size * size + HEAD_CHANNELS * num_classes
    return params, flops


COST_CONVENTION = None  # the dataset's (CIFAR-10: 32x32, 10 classes), the table's convention


def layers_used(arch) -> int:
    """The number of non-identity layers: a trivial baseline any supernet must beat (tau 0.679, data README)."""
    return sum(op != ID for op in validate(arch).ops)


# ----------------------------------------------------------------------------- what the space offers the engine
DATASETS = ("cifar10",)
NUM_ARCHS = 3969  # distinct networks (tests/test_macro.py counts them)
NUM_STRINGS = len(OPS) ** NUM_LAYERS  # 6,561 arch strings
KEY, KEY_TYPE = "index", int  # results files name a network by its row in the truth table
TRUTH_TABLE = "macro_cifar10.npz"
TRUTH = {"cifar10": "mean_acc"}
TRUTH_SOURCE = "NAS-Bench-Macro, the embedded table: the mean of its three trainings"
PAPER_TAU: Dict[str, Tuple[float, float]] = {}  # the paper reports no ranking on this space
REPEATS = {"cifar10": ("acc_run0", "acc_run1", "acc_run2")}  # the table's three independent trainings
COST_BASELINES = {"params": "parameter count (NAS-Bench-Macro)", "flops": "FLOPs ({size}x{size} input)"}


PROXY_TABLE = "macro_proxies.npz"  # computed by `kshot-bench proxies` (scripts/build_macro_proxies.py)


def table_baselines(dataset: str) -> List[Tuple[str, str, str, str]]:
    return [("layers", TRUTH_TABLE, "layers", "the number of non-identity layers")] + [
        (p, PROXY_TABLE, f"{p}_{dataset}", f"zero-cost proxy {p} (computed by kshot-bench proxies, seed-0 weights)")
        for p in ("synflow", "naswot", "snip")]


def arch_set(spec: str, seed: int, widths: bool = True) -> Tuple[List[int], List[Arch], str]:
    """(keys, archs, description): all (or unique: the same) = the 3,969 distinct networks; N = a seeded sample
    of N of them (the first N of one seeded permutation, so smaller samples nest inside larger ones)."""
    if spec in ("all", "unique"):
        keys = list(range(NUM_ARCHS))
        desc = f"all {NUM_ARCHS:,} distinct networks"
    elif spec.isdigit() and 0 < int(spec) <= NUM_ARCHS:
        keys = np.random.default_rng([seed, 7]).permutation(NUM_ARCHS)[: int(spec)].tolist()
        desc = f"a seeded uniform sample of {int(spec):,} distinct networks (seed {seed})"
    else:
        raise UserError(f"unknown arch set {spec!r}", fix=f"use --archs all or --archs N with 1 <= N <= {NUM_ARCHS}")
    return keys, [from_key(k) for k in keys], desc


def key_of(arch) -> int:
    return _key_of_string()[canonical(arch)]


def from_key(key) -> Arch:
    k = int(key)
    if not 0 <= k < NUM_ARCHS:
        raise UserError(f"NAS-Bench-Macro index {key!r} is out of range", fix=f"indices run from 0 to {NUM_ARCHS - 1}")
    return from_str(_networks()[k])


def describe_network(protocol: Dict) -> str:
    return f"the NAS-Bench-Macro network ({NUM_LAYERS} searchable layers, fixed channels)"


def outputs_constant(arch) -> bool:
    return False


# Presets (RunConfig fields). `cpu`: the table's own recipe (SGD momentum 0.9, wd 5e-4, cosine; lr 0.1 at batch
# 256) at batch 64 (lr 0.025) and 20 of its 50 epochs, sized by measurement for one CPU core (docs/design.md,
# "The Macro `cpu` preset"); K-shot trains with the `joint-shared` simplex-net step (simplex.CPU_VARIANT, issue 45;
# until then a separate simplex-net step every 4 supernet steps, `--variant cpu`); 1,000 networks scored at epoch 10,
# every distinct network at the end, on 1,000 images. `smoke`: seconds, for tests.
PRESETS = {
    "cpu": dict(space="macro", epochs=20, warmup_epochs=2, batch_size=64, lr=0.025, lr_min=0.0, nesterov=False,
                weight_decay=5e-4, **cpu_variant_fields(), snapshot_epochs="10,20", archs="1000",
                final_archs="all", score_images=1000, score_batch=500, checkpoint_every=100),
    "smoke": dict(space="macro", epochs=2, warmup_epochs=1, batch_size=16, lr=0.05, train_subset=64, simplex_paths=4,
                  simplex_interval=2, archs="6", score_images=32, score_batch=32, checkpoint_every=4),
}
PRESET_ABOUT = {
    "cpu": "the table's recipe over 20 of its 50 epochs on the CIFAR-10 half split; 1,000 networks at 10, all at 20",
    "smoke": "seconds, for tests: 2 epochs over 64 images, 6 networks",
}
EMBEDDED_PRESET = None
_OTHER_SPACE_OPTIONS = ("channels", "cells", "net_scale")


def check_options(values: Dict, defaults: Dict) -> None:
    wrong = [f"{k}={values[k]!r}" for k in _OTHER_SPACE_OPTIONS if values[k] != defaults[k]]
    if wrong:
        raise UserError(f"{', '.join(wrong)}: not options of --space {NAME} (its macro-architecture is fixed)",
                        fix="drop them")

