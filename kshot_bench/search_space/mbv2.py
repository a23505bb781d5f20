"""MobileNetV2 (GreedyNAS SE) search space with width search, pure Python (SPEC section 7).

An architecture is `Arch(ops, widths)`: a plain hashable named tuple of 21 op ids (one per searchable
layer, indexing `OPS`) and 24 width ids (one per layer, indexing `WIDTHS`: multipliers 0.2 .. 1.0).
Width ids count in steps of 0.2, so a multiplier is `(w + 1) / 5` and every channel count is exact
integer arithmetic (0.6 * 40 * 3 in floating point is 72.00000000000001, whose ceiling is 73).

The 24 width layers, in network order (`WIDTH_LAYERS`): the stem conv, the fixed first MB block, the
21 searchable layers, the final 1x1 conv. In an MB layer the multiplier scales the expanded (mid)
channels, `ceil(w * in * t)` with `in` the layer's nominal input width; the block output keeps the
stage width, so residuals stay valid. In the three fixed layers it scales their output channels.
`id` layers have no width: their width id stays in the arch (and in the encoding) and the network
ignores it.

Network scale (not in the paper): `macro(scale)` multiplies every nominal channel count of the macro-
architecture (stem 32, first block 16, the stage widths, head 1280) by `scale`, rounded to a multiple of 8
as MobileNet width multipliers are (never below 8). The arch, its string, the width rule and which layers
have residuals stay those of the paper's network; only the channel counts shrink. Scale 1.0 is the paper's
network and the one FLOPs limits refer to (`COST_CONVENTION`); smaller scales make CPU runs and tests
affordable (the `cpu` and `smoke` presets), and `cost(arch, scale=...)` counts what such a network holds.

Arch string (SPEC 7): the 21 op names joined by `-`, then optionally `@` and the 24 multipliers joined
by `-`; no `@` part means every width is 1.0. `to_str` always writes the widths.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.search_space.mobilenet_shape import LayerSpec, Macro, stage_layers

NAME = "mbv2"
HAS_WIDTHS = True
SAMPLINGS = ("uniform",)  # no ENN-like grouping is defined for this space
ACTIVATION = "hardswish"  # of the blocks' expand and depthwise convs (and the first block's)
NUM_ARCHS = None  # far too many to list (5^24 x 13^21): arch sets are seeded samples
COST_CONVENTION = (1000, 224)  # FLOPs limits always mean one 224x224 image, 1,000 classes (SPEC 7)

# op id -> (kernel, expansion, SE); `id` is None
OPS: Tuple[str, ...] = ("k3e3", "k5e3", "k7e3", "k3e3_se", "k5e3_se", "k7e3_se",
                        "k3e6", "k5e6", "k7e6", "k3e6_se", "k5e6_se", "k7e6_se", "id")
OP_SPECS: Tuple[Optional[Tuple[int, int, bool]], ...] = tuple(
    (int(name[1]), int(name[3]), name.endswith("_se")) for name in OPS[:-1]) + (None,)
ID = len(OPS) - 1
WIDTHS: Tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
FULL = len(WIDTHS) - 1  # width id of 1.0

# macro-architecture at 224x224
STEM_CHANNELS, FIRST_CHANNELS, HEAD_CHANNELS = 32, 16, 1280
STAGES: Tuple[Tuple[int, int, int], ...] = ((32, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
NUM_LAYERS = sum(n for _, n, _ in STAGES)  # 21 searchable
NUM_WIDTHS = NUM_LAYERS + 3                # 24: stem, first MB block, 21 searchable, head
WIDTH_LAYERS: Tuple[str, ...] = ("stem", "first") + tuple(f"layer{i + 1}" for i in range(NUM_LAYERS)) + ("head",)
LAYERS = stage_layers(FIRST_CHANNELS, STAGES)


def _divisible(channels: float, divisor: int = 8) -> int:
    """MobileNet's rounding of a scaled channel count: nearest multiple of `divisor`, at least `divisor`,
    and never more than 10% below the unrounded count."""
    out = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * channels else out


@lru_cache(maxsize=None)
def macro(scale: float = 1.0) -> Macro:
    if not (isinstance(scale, (int, float)) and 0 < scale <= 4):
        raise UserError(f"the MBV2 network scale must be in (0, 4], got {scale!r}",
                        fix="use 1.0 for the paper's network, e.g. 0.5 or 0.25 for a narrower one")
    if scale == 1.0:
        return Macro(STEM_CHANNELS, FIRST_CHANNELS, HEAD_CHANNELS, LAYERS, 2)
    layers = tuple(LayerSpec(_divisible(s.c_in * scale), _divisible(s.c_out * scale), s.stride) for s in LAYERS)
    return Macro(_divisible(STEM_CHANNELS * scale), _divisible(FIRST_CHANNELS * scale),
                 _divisible(HEAD_CHANNELS * scale), layers, 2)


class Arch(NamedTuple):
    ops: Tuple[int, ...]
    widths: Tuple[int, ...]


def scaled(channels: int, width_id: int) -> int:
    """ceil(multiplier * channels), exactly: the multiplier is (width_id + 1) / 5."""
    return -(-(width_id + 1) * channels // len(WIDTHS))


def mid_channels(layer: int, op: int, width_id: int, scale: float = 1.0) -> int:
    """Expanded channels of searchable layer `layer` (0-based) running `op` at width `width_id`."""
    spec = OP_SPECS[op]
    if spec is None:
        return 0
    return scaled(macro(scale).layers[layer].c_in * spec[1], width_id)


def se_channels(mid: int) -> int:
    return max(1, int(mid * 0.25))


def has_residual(layer: int) -> bool:
    """The paper network's rule at every scale (stride 1 and nominal in == out), so an arch means the same
    network at every scale even where rounding makes a layer's scaled in and out equal."""
    spec = LAYERS[layer]
    return spec.stride == 1 and spec.c_in == spec.c_out


# ----------------------------------------------------------------------------- validation and strings
def validate(arch) -> Arch:
    """`arch` as an `Arch`, or UserError naming what is wrong. Accepts an Arch or a pair (ops, widths)."""
    if isinstance(arch, str):
        return from_str(arch)
    try:
        ops, widths = arch
    except (TypeError, ValueError):
        raise UserError(f"an MBV2 arch is (ops, widths), got {arch!r}",
                        fix=f"pass {NUM_LAYERS} op ids and {NUM_WIDTHS} width ids, or an arch string") from None
    ops, widths = tuple(ops), tuple(widths)
    if len(ops) != NUM_LAYERS:
        raise UserError(f"an MBV2 arch has {NUM_LAYERS} searchable layers, got {len(ops)} op ids",
                        fix=f"pass {NUM_LAYERS} op ids (0..{len(OPS) - 1})")
    if len(widths) != NUM_WIDTHS:
        raise UserError(f"an MBV2 arch has {NUM_WIDTHS} width layers (stem, first block, {NUM_LAYERS} searchable, "
                        f"head), got {len(widths)} widths", fix=f"pass {NUM_WIDTHS} width ids (0..{len(WIDTHS) - 1})")
    for i, op in enumerate(ops):
        if not isinstance(op, (int, np.integer)) or isinstance(op, bool) or not 0 <= op < len(OPS):
            raise UserError(f"op id {op!r} of layer {i + 1} is not an MBV2 op id",
                            fix=f"op ids are 0..{len(OPS) - 1}: {', '.join(f'{j}={o}' for j, o in enumerate(OPS))}")
    for i, w in enumerate(widths):
        if not isinstance(w, (int, np.integer)) or isinstance(w, bool) or not 0 <= w < len(WIDTHS):
            raise UserError(f"width id {w!r} of {WIDTH_LAYERS[i]} is not a width id",
                            fix=f"width ids are 0..{len(WIDTHS) - 1} for multipliers {', '.join(map(str, WIDTHS))}")
    return Arch(tuple(int(o) for o in ops), tuple(int(w) for w in widths))


EXAMPLE = "-".join(["k3e6"] * NUM_LAYERS) + "@" + "-".join(["1.0"] * NUM_WIDTHS)


def from_str(arch_str: str) -> Arch:
    """Parse `op-op-...-op[@w-w-...-w]`; errors name the bad part."""
    if not isinstance(arch_str, str):
        raise UserError(f"arch string must be a str, got {type(arch_str).__name__}")
    head, sep, tail = arch_str.strip().partition("@")
    names = head.split("-")
    if len(names) != NUM_LAYERS:
        raise UserError(f"MBV2 arch string {arch_str!r} lists {len(names)} ops, expected {NUM_LAYERS}",
                        fix=f"write {NUM_LAYERS} op names joined by '-', optionally '@' and {NUM_WIDTHS} widths, "
                            f"e.g. {EXAMPLE}")
    ops = []
    for i, name in enumerate(names):
        if name not in OPS:
            raise UserError(f"unknown op {name!r} at layer {i + 1} of MBV2 arch string",
                            fix=f"MBV2 ops are: {', '.join(OPS)}")
        ops.append(OPS.index(name))
    if not sep:
        return Arch(tuple(ops), (FULL,) * NUM_WIDTHS)
    values = tail.split("-")
    if len(values) != NUM_WIDTHS:
        raise UserError(f"MBV2 arch string {arch_str!r} lists {len(values)} widths after '@', expected {NUM_WIDTHS} "
                        f"(stem, first block, {NUM_LAYERS} searchable layers, head)",
                        fix=f"write {NUM_WIDTHS} multipliers joined by '-', e.g. ...@{'-'.join(['1.0'] * NUM_WIDTHS)}")
    widths = []
    for i, v in enumerate(values):
        try:
            w = float(v)
        except ValueError:
            w = None
        match = [j for j, m in enumerate(WIDTHS) if w is not None and math.isclose(w, m)]
        if not match:
            raise UserError(f"width {v!r} of {WIDTH_LAYERS[i]} is not a searchable width",
                            fix=f"widths are one of {', '.join(map(str, WIDTHS))}")
        widths.append(match[0])
    return Arch(tuple(ops), tuple(widths))


def to_str(arch) -> str:
    arch = validate(arch)
    return "-".join(OPS[o] for o in arch.ops) + "@" + "-".join(f"{WIDTHS[w]:.1f}" for w in arch.widths)


def canonical(arch, rule: str = "nb201") -> str:
    """The string with the widths of `id` layers (which the network ignores) set to 1.0."""
    arch = validate(arch)
    widths = list(arch.widths)
    for i, op in enumerate(arch.ops):
        if op == ID:
            widths[i + 2] = FULL
    return to_str(Arch(arch.ops, tuple(widths)))


# ----------------------------------------------------------------------------- sampling & variation
def sample(rng: np.random.Generator, unique: bool = False, widths: bool = True, sampling: str = "uniform") -> Arch:
    """Each layer's op uniform over the 13 choices; each width uniform over the 5 (or all 1.0)."""
    if sampling not in SAMPLINGS:
        raise UserError(f"sampling {sampling!r} is not defined for the MobileNetV2 space",
                        fix=f"use sampling={SAMPLINGS[0]}")
    ops = tuple(int(o) for o in rng.integers(len(OPS), size=NUM_LAYERS))
    ws = tuple(int(w) for w in rng.integers(len(WIDTHS), size=NUM_WIDTHS)) if widths else (FULL,) * NUM_WIDTHS
    return Arch(ops, ws)


def mutate(arch, rng: np.random.Generator, prob: Optional[float] = None, widths: bool = True) -> Arch:
    """Each op and each width changes to another value with probability `prob` (default 1/21); at
    least one gene changes. With `widths=False` the widths stay as they are."""
    arch = validate(arch)
    prob = 1.0 / NUM_LAYERS if prob is None else prob
    n_genes = NUM_LAYERS + (NUM_WIDTHS if widths else 0)
    flips = rng.random(n_genes) < prob
    if not flips.any():
        flips[int(rng.integers(n_genes))] = True
    ops, ws = list(arch.ops), list(arch.widths)
    for g in np.flatnonzero(flips):
        if g < NUM_LAYERS:
            ops[g] = (ops[g] + 1 + int(rng.integers(len(OPS) - 1))) % len(OPS)
        else:
            i = g - NUM_LAYERS
            ws[i] = (ws[i] + 1 + int(rng.integers(len(WIDTHS) - 1))) % len(WIDTHS)
    return Arch(tuple(ops), tuple(ws))


def crossover(a, b, rng: np.random.Generator) -> Arch:
    """Uniform crossover over both genomes: each op and each width from either parent."""
    a, b = validate(a), validate(b)
    po = rng.random(NUM_LAYERS) < 0.5
    pw = rng.random(NUM_WIDTHS) < 0.5
    return Arch(tuple(x if p else y for x, y, p in zip(a.ops, b.ops, po)),
                tuple(x if p else y for x, y, p in zip(a.widths, b.widths, pw)))


def width_variants(arch, rng: np.random.Generator, n: int) -> List[Arch]:
    """`n` width settings of the arch's ops for the channel regulariser r_c: the arch itself, a near
    neighbour (1-3 layers moved one width step: L1 distance <= 0.6, a positive pair under the default
    margin) and n-2 independent draws (L1 distance about 7.7 +- 1.2: negatives)."""
    arch = validate(arch)
    out = [arch]
    if n >= 2:
        ws = list(arch.widths)
        for i in rng.choice(NUM_WIDTHS, size=int(rng.integers(1, 4)), replace=False):
            ws[i] = ws[i] + 1 if ws[i] == 0 or (ws[i] < FULL and rng.random() < 0.5) else ws[i] - 1
        out.append(Arch(arch.ops, tuple(ws)))
    while len(out) < n:
        out.append(Arch(arch.ops, tuple(int(w) for w in rng.integers(len(WIDTHS), size=NUM_WIDTHS))))
    return out


def smallest() -> Arch:
    """The arch with the fewest FLOPs: every layer `id`, every width 0.2."""
    return Arch((ID,) * NUM_LAYERS, (0,) * NUM_WIDTHS)


def width_values(arch) -> List[float]:
    """The 24 multipliers of the arch (what r_c measures L1 distances on)."""
    return [WIDTHS[w] for w in validate(arch).widths]


# ----------------------------------------------------------------------------- encodings
def _one_hot(values: Sequence[int], choices: int) -> List[float]:
    """Layer-major one-hot: value v of layer i sets position i * choices + v."""
    out = [0.0] * (len(values) * choices)
    for i, v in enumerate(values):
        out[i * choices + v] = 1.0
    return out


def encode(arch) -> List[float]:
    """Architecture branch input: one-hot ops, layer-major: 21 layers x 13 ops = 273 values."""
    return _one_hot(validate(arch).ops, len(OPS))


def encode_width(arch) -> List[float]:
    """Channel branch input: one-hot widths, layer-major: 24 layers x 5 widths = 120 values."""
    return _one_hot(validate(arch).widths, len(WIDTHS))


# ----------------------------------------------------------------------------- cost
def cost(arch, num_classes: int = 1000, input_size: int = 224, scale: float = 1.0) -> Tuple[int, int]:
    """(parameters, FLOPs) of the stand-alone network of `arch` (SPEC 7 convention).

    FLOPs: multiply-adds of every conv and the classifier for one `input_size` image (SE convs at 1x1;
    biases, BN, activations, the SE multiply, pooling and additions not counted). Parameters: every
    parameter (conv weights, SE conv biases, BN affine pairs, classifier weight and bias). Equal to
    hook-based counting on `MBV2Network` (tests/test_mbv2.py). `scale`: the network scale (`macro`).
    """
    arch = validate(arch)
    m = macro(scale)
    w = arch.widths
    size = _out(input_size, 2)
    stem = scaled(m.stem, w[0])
    params = 3 * stem * 9 + 2 * stem
    flops = 3 * stem * 9 * size * size
    first = scaled(m.first, w[1])  # depthwise 3x3 on the stem output, then project (no expand conv)
    params += stem * 9 + 2 * stem + stem * first + 2 * first
    flops += (stem * 9 + stem * first) * size * size
    c_in = first
    for i, (op, spec) in enumerate(zip(arch.ops, m.layers)):
        out_size = _out(size, spec.stride)
        if op == ID:
            if not has_residual(i):
                params += c_in * spec.c_out + 2 * spec.c_out
                flops += c_in * spec.c_out * out_size * out_size
        else:
            k, _, se = OP_SPECS[op]
            mid = mid_channels(i, op, w[i + 2], scale)
            params += c_in * mid + 2 * mid + mid * k * k + 2 * mid + mid * spec.c_out + 2 * spec.c_out
            flops += c_in * mid * size * size + mid * k * k * out_size * out_size + mid * spec.c_out * out_size * out_size
            if se:
                r = se_channels(mid)
                params += 2 * mid * r + r + mid
                flops += 2 * mid * r
        c_in, size = spec.c_out, out_size
    head = scaled(m.head, w[-1])
    params += c_in * head + 2 * head + head * num_classes + num_classes
    flops += c_in * head * size * size + head * num_classes
    return params, flops


def _out(size: int, stride: int) -> int:
    """Output size of a 'same'-padded conv (padding k // 2, odd k) with this stride."""
    return (size - 1) // stride + 1


# ----------------------------------------------------------------------------- what the space offers the engine
DATASETS = ("cifar10", "cifar100", "ImageNet16-120", "imagenet")  # any image data; `imagenet` is its paper protocol
KEY, KEY_TYPE = "arch_str", str  # results files name an arch by its string
TRUTH: Dict[str, str] = {}  # no ground-truth benchmark: rank reports scores, costs and codes
REPEATS: Dict[str, Tuple[str, ...]] = {}
TRUTH_SOURCE = ""
PAPER_TAU: Dict[str, Tuple[float, float]] = {}


def describe_network(protocol: Dict) -> str:
    return f"MobileNetV2 network at scale {protocol.get('net_scale', 1.0)}"
COST_BASELINES: Dict[str, str] = {}


def table_baselines(dataset: str) -> List[Tuple[str, str, str, str]]:
    return []


def arch_set(spec: str, seed: int, widths: bool = True) -> Tuple[List[str], List[Arch], str]:
    """(arch strings, archs, description) of a seeded uniform sample of N distinct archs (the space is far too
    large to list)."""
    if not spec.isdigit() or int(spec) < 1:
        raise UserError(f"--archs {spec} lists every arch of the {NAME} space, which is far too large",
                        fix="use --archs N: a seeded uniform sample of N archs")
    rng = np.random.default_rng([seed, 7])
    archs = list(dict.fromkeys(sample(rng, widths=widths) for _ in range(int(spec))))
    kind = "with widths" if widths else "every width 1.0"
    return [to_str(a) for a in archs], archs, f"a seeded uniform sample of {len(archs):,} {NAME} archs ({kind}, seed {seed})"


def key_of(arch) -> str:
    return to_str(arch)


def from_key(key) -> Arch:
    return from_str(key)


def outputs_constant(arch) -> bool:
    return False


# Presets (RunConfig fields) of this space (SPEC 7). `imagenet`: the paper's supernet recipe (SGD nesterov 0.9,
# batch 1024 global, lr 0.12 cosine, 120 epochs, 5 warm-up epochs with code 1/K, wd 4e-5 as GreedyNAS); b_s = 16
# images per simplex path (m = 64 paths of a 1024 batch), a simplex step after every supernet step as Algorithm 1.
# `cpu`: the network at half its channels (net_scale 0.5: a quarter of the compute) on the CIFAR-10 images at their
# own 32x32 (the five stride-2 layers leave a 1x1 map at the end: the deep layers see no spatial context; that is
# what the size shrinks), 15,000 training images, 8 epochs (2 warm-up), batch 64, lr 0.02 cosine (0.05 diverged at
# full width: loss above chance), a simplex step every 4 supernet steps, 100 archs scored on 1,000 images; with
# `--dataset imagenet` on an ImageNet-layout folder of those images, 5,000 training images are the local validation
# split. It tests the pipeline, not the method (docs/design.md). `smoke`: seconds, for tests, on the network at a
# quarter of its channels.
PRESETS = {
    "imagenet": dict(space="mbv2", epochs=120, warmup_epochs=5, batch_size=1024, lr=0.12, lr_min=0.0,
                     weight_decay=4e-5, simplex_paths=64, simplex_interval=1, archs="1000", score_images=10000,
                     score_batch=250, checkpoint_every=500),
    "cpu": dict(space="mbv2", net_scale=0.5, image_size=32, local_val_size=5000, epochs=8, warmup_epochs=2,
                batch_size=64, lr=0.02, lr_min=0.0, weight_decay=4e-5, train_subset=15000, simplex_paths=16,
                simplex_interval=4, archs="100", score_images=1000, score_batch=500, checkpoint_every=50),
    "smoke": dict(space="mbv2", net_scale=0.25, epochs=2, warmup_epochs=1, batch_size=16, lr=0.05, train_subset=64,
                  simplex_paths=4, simplex_interval=2, archs="4", score_images=32, score_batch=32, checkpoint_every=4,
                  rc_widths=3),
}
PRESET_ABOUT = {
    "imagenet": "the paper's ImageNet supernet recipe: 120 epochs, batch 1024 (8 GPUs), 1,000 archs on 10,000 images",
    "cpu": "a half-width network on 32x32 images, 8 epochs over 15,000 images, 100 archs (a pipeline check)",
    "smoke": "seconds, for tests: a quarter-width network, 2 epochs over 64 images, 4 archs",
}
EMBEDDED_PRESET = None  # no preset sized for the embedded sample: `cpu` everywhere
# NB201 skeleton options: they must keep their defaults here (the macro-architecture is fixed, SPEC 7)
_OTHER_SPACE_OPTIONS = ("channels", "cells", "unique_sampling")


def check_options(values: Dict, defaults: Dict) -> None:
    macro(values["net_scale"])
    wrong = [f"{k}={values[k]!r}" for k in _OTHER_SPACE_OPTIONS if values[k] != defaults[k]]
    if values["archs"] == "unique":
        wrong.append("archs='unique'")
    if wrong:
        raise UserError(f"{', '.join(wrong)}: NB201-only option{'s' if len(wrong) > 1 else ''}, not for --space {NAME} "
                        "(its macro-architecture is fixed, SPEC 7, and it has no isomorphism classes)",
                        fix="drop them, or use --space nb201")
