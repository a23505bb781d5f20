"""NAS-Bench-201 cell search space, pure Python.

An architecture is a tuple of 6 op ids, one per edge, in the order of the official string
`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`, i.e. edges (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
Op ids index `OPS`, the official NB201 op list.

Index: the official NB201 / NATS-Bench `tss` index is not a formula of the ops; it comes from the
shipped table `package_data/nb201_truth.npz` (`arch_code[i]` = base-5 code of arch i).

Canonical forms (isomorphism); both are documented in docs/design.md and counted in the tests.
Each writes a node's value as a sorted sum of terms, node 0 being the input; `skip_connect` passes
the source node's expression through, a parametric or pool op wraps it as `(src)@op`.
  rule "nb201" (default, 6,466 classes: the usual reckoning of the NB201 paper and its code):
      a `none` edge, or any edge whose source node is exactly zero, contributes a zero term `#`
      that stays in the sum; so `x` and `x + 0` are different classes.
  rule "functional" (4,930 classes): zero terms are dropped and an op applied to a zero node is
      zero (true for weight-sharing cells: ReLU-Conv-BN without affine, average pooling), so two
      archs share a class exactly when they compute the same function up to the weights of their
      parametric ops.
"""
from __future__ import annotations

import functools
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.simplex import cpu_variant_fields

NAME = "nb201"
HAS_WIDTHS = False
# how training draws paths (`sample`): each edge's op uniform, or ENN-balanced (SPEC 5a)
SAMPLINGS = ("uniform", "balanced")
COST_CONVENTION = None  # FLOPs at the dataset's class count and input size (NB201's own convention)

OPS: Tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NONE, SKIP, CONV1, CONV3, POOL = range(5)
NUM_NODES = 4
# (target node, source node) of each edge, in official string order.
EDGES: Tuple[Tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_EDGES = len(EDGES)
NUM_ARCHS = len(OPS) ** NUM_EDGES

Arch = Tuple[int, ...]

_NODE_RE = re.compile(r"^\|(?:[a-z0-9_]+~\d+\|)+$")


def validate(arch: Sequence[int]) -> Arch:
    """Return `arch` as a tuple of 6 op ids, or raise UserError naming what is wrong."""
    if isinstance(arch, str):
        raise UserError(f"an arch string where op ids were expected: {arch!r}",
                        fix="parse it first: nb201.from_str(arch_str) gives the 6 op ids")
    if isinstance(arch, (int, np.integer)):
        raise UserError(f"an integer where op ids were expected: {arch!r}",
                        fix="for an NB201 index use nb201.from_index(index); for the space's code nb201.from_code(code)")
    arch = tuple(arch)
    if len(arch) != NUM_EDGES:
        raise UserError(f"an NB201 arch has {NUM_EDGES} edges, got {len(arch)}: {arch}",
                        fix="pass 6 op ids, one per edge, or an official arch string")
    for op in arch:
        if not isinstance(op, (int, np.integer)) or not 0 <= op < len(OPS):
            raise UserError(f"op id {op!r} in {arch} is not an NB201 op id",
                            fix=f"op ids are 0..{len(OPS) - 1}: {', '.join(f'{i}={o}' for i, o in enumerate(OPS))}")
    return tuple(int(op) for op in arch)


def from_str(arch_str: str) -> Arch:
    """Parse an official NB201 arch string; errors name the malformed part."""
    if not isinstance(arch_str, str):
        raise UserError(f"arch string must be a str, got {type(arch_str).__name__}")
    example = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    nodes = arch_str.strip().split("+")
    if len(nodes) != NUM_NODES - 1:
        raise UserError(f"malformed NB201 arch string {arch_str!r}: expected 3 nodes separated by '+', got {len(nodes)}",
                        fix=f"use the official format, e.g. {example}")
    ops: List[int] = []
    for target, node in enumerate(nodes, start=1):
        if not _NODE_RE.match(node):
            raise UserError(f"malformed node {node!r} in NB201 arch string {arch_str!r}",
                            fix=f"each node reads like |op~input|op~input|, e.g. {example}")
        tokens = node.strip("|").split("|")
        if len(tokens) != target:
            raise UserError(f"node {target} of {arch_str!r} has {len(tokens)} inputs, expected {target}",
                            fix=f"node i lists its inputs 0..i-1 in order, e.g. {example}")
        for source, token in enumerate(tokens):
            name, src = token.split("~")
            if int(src) != source:
                raise UserError(f"node {target} of {arch_str!r} lists input {src} where input {source} belongs",
                                fix=f"node i lists its inputs 0..i-1 in order, e.g. {example}")
            if name not in OPS:
                raise UserError(f"unknown op {name!r} in NB201 arch string {arch_str!r}",
                                fix=f"NB201 ops are: {', '.join(OPS)}")
            ops.append(OPS.index(name))
    return tuple(ops)


def to_str(arch: Sequence[int]) -> str:
    arch = validate(arch)
    it = iter(arch)
    return "+".join("|" + "|".join(f"{OPS[next(it)]}~{j}" for j in range(i)) + "|" for i in range(1, NUM_NODES))


def to_code(arch: Sequence[int]) -> int:
    """Base-5 code with the first edge most significant (0 .. 15,624); not the NB201 index."""
    code = 0
    for op in validate(arch):
        code = code * len(OPS) + op
    return code


def from_code(code: int) -> Arch:
    ops = []
    for _ in range(NUM_EDGES):
        code, op = divmod(int(code), len(OPS))
        ops.append(op)
    return tuple(reversed(ops))


@functools.lru_cache(maxsize=1)
def _index_tables() -> Tuple[np.ndarray, np.ndarray]:
    from kshot_bench.resources import package_npz

    code_of_index = package_npz("nb201_truth.npz")["arch_code"].astype(np.int64)
    index_of_code = np.empty_like(code_of_index)
    index_of_code[code_of_index] = np.arange(len(code_of_index))
    return code_of_index, index_of_code


def to_index(arch: Sequence[int]) -> int:
    """Official NB201 index of `arch`."""
    return int(_index_tables()[1][to_code(arch)])


def from_index(index: int) -> Arch:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < NUM_ARCHS:
        raise UserError(f"NB201 index {index!r} is out of range", fix=f"indices run from 0 to {NUM_ARCHS - 1}")
    return from_code(int(_index_tables()[0][index]))


def all_archs() -> List[Arch]:
    """All 15,625 archs in official index order."""
    return [from_code(c) for c in _index_tables()[0]]


# ----------------------------------------------------------------------------- graph analysis
@functools.lru_cache(maxsize=None)
def live_edges(arch: Arch, zero_is_fixed_point: bool = True) -> Tuple[Tuple[int, int, int, int], ...]:
    """Edges whose op must run to compute the cell output, as (edge, target, source, op), in order.

    Always dropped: `none` edges and edges into a node that cannot reach the output node.
    With `zero_is_fixed_point` (every op maps 0 to 0, true for weight-sharing cells: BN without
    affine), also edges whose source node is identically zero. An empty result means the cell
    outputs zero. Pure function of the arch, cached.
    """
    reaches = [False] * NUM_NODES
    reaches[NUM_NODES - 1] = True
    for e in reversed(range(NUM_EDGES)):
        target, source = EDGES[e]
        if arch[e] != NONE and reaches[target]:
            reaches[source] = True
    nonzero = [True] + [False] * (NUM_NODES - 1)
    for e, (target, source) in enumerate(EDGES):
        if arch[e] != NONE and nonzero[source]:
            nonzero[target] = True
    return tuple(
        (e, target, source, arch[e])
        for e, (target, source) in enumerate(EDGES)
        if arch[e] != NONE and reaches[target] and (nonzero[source] or not zero_is_fixed_point)
    )


CANONICAL_RULES = ("nb201", "functional")


@functools.lru_cache(maxsize=None)
def _canonical(arch: Arch, rule: str) -> str:
    functional = rule == "functional"
    expr: Dict[int, str] = {0: "x"}
    for i in range(1, NUM_NODES):
        terms: List[str] = []
        for e, (target, source) in enumerate(EDGES):
            if target != i:
                continue
            src, op = expr[source], arch[e]
            if op == NONE or src in ("#", ""):
                if not functional:
                    terms.append("#")
            elif op == SKIP:
                terms.append(src)
            else:
                terms.append(f"({src})@{OPS[op]}")
        # a functional sum is flat, so split nested sums before sorting
        if functional:
            terms = [t for term in terms for t in _split_sum(term)]
        expr[i] = "+".join(sorted(terms))
    return expr[NUM_NODES - 1] or "0"


def _split_sum(expr: str) -> List[str]:
    """Top-level terms of a sum expression (parentheses protect nested ones)."""
    terms, depth, start = [], 0, 0
    for pos, ch in enumerate(expr):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "+" and depth == 0:
            terms.append(expr[start:pos])
            start = pos + 1
    terms.append(expr[start:])
    return [t for t in terms if t]


def canonical(arch: Sequence[int], rule: str = "nb201") -> str:
    """Canonical string of the cell's function; archs with equal strings are isomorphic."""
    if rule not in CANONICAL_RULES:
        raise UserError(f"unknown canonical rule {rule!r}", fix=f"choose one of: {', '.join(CANONICAL_RULES)}")
    return _canonical(validate(arch), rule)


@functools.lru_cache(maxsize=None)
def unique_archs(rule: str = "nb201") -> List[Arch]:
    """One representative per canonical class: the member with the lowest official index."""
    seen, reps = set(), []
    for arch in all_archs():
        key = canonical(arch, rule)
        if key not in seen:
            seen.add(key)
            reps.append(arch)
    return reps


def is_dead(arch: Arch) -> bool:
    """True when no path joins the input to the output: the cell outputs zero."""
    return not live_edges(validate(arch), True)


# ----------------------------------------------------------------------------- ENN
CONV_OPS = (CONV1, CONV3)
# the groups of ENN-balanced sampling (SPEC 5a): a group is drawn uniformly, then an arch inside it
ENN_GROUPS: Tuple[Tuple[int, ...], ...] = ((0, 1), (2,), (3,))


@functools.lru_cache(maxsize=None)
def _enn(arch: Arch) -> Optional[int]:
    best: List[Optional[int]] = [0, None, None, None]  # most convs on a path from node 0 to each node
    for e, (target, source) in enumerate(EDGES):
        op = arch[e]
        if op == NONE or best[source] is None:
            continue
        here = best[source] + (op in CONV_OPS)
        if best[target] is None or here > best[target]:
            best[target] = here
    return best[NUM_NODES - 1]


def enn(arch: Sequence[int]) -> Optional[int]:
    """The effective number of nonlinearities of the cell (SPEC 5a): over every path from the input
    (node 0) to the output (node 3) without a `none` edge, the largest count of conv edges on it (0..3);
    None when no such path exists (the network outputs a constant)."""
    return _enn(validate(arch))


@functools.lru_cache(maxsize=None)
def balanced_groups(unique: bool = False) -> Tuple[Tuple[Arch, ...], ...]:
    """The archs of each ENN group (`ENN_GROUPS`), in official index order (or the unique
    representatives only); archs without an input-to-output path belong to none."""
    archs = unique_archs() if unique else all_archs()
    return tuple(tuple(a for a in archs if _enn(a) in group) for group in ENN_GROUPS)


# ----------------------------------------------------------------------------- sampling & variation
def sample(rng: np.random.Generator, unique: bool = False, widths: bool = True, sampling: str = "uniform") -> Arch:
    """A single path for training or search. `uniform`: each edge's op uniform (or, with `unique`, uniform
    over the unique classes). `balanced`: one of the ENN groups uniformly, then an arch uniformly inside it
    (over the unique classes with `unique`); archs with no input-to-output path are never drawn.
    (`widths` is part of the space interface; NB201 has none.)"""
    if sampling == "balanced":
        groups = balanced_groups(unique)
        group = groups[int(rng.integers(len(groups)))]
        return group[int(rng.integers(len(group)))]
    if sampling != "uniform":
        raise UserError(f"unknown sampling {sampling!r} for NB201", fix=f"choose one of: {', '.join(SAMPLINGS)}")
    if unique:
        reps = unique_archs()
        return reps[int(rng.integers(len(reps)))]
    return tuple(int(op) for op in rng.integers(len(OPS), size=NUM_EDGES))


def mutate(arch: Arch, rng: np.random.Generator, prob: Optional[float] = None, widths: bool = True) -> Arch:
    """Each edge takes a different op with probability `prob` (default 1/6); at least one edge changes."""
    arch = validate(arch)
    prob = 1.0 / NUM_EDGES if prob is None else prob
    flips = rng.random(NUM_EDGES) < prob
    if not flips.any():
        flips[int(rng.integers(NUM_EDGES))] = True
    child = list(arch)
    for e in np.flatnonzero(flips):
        child[e] = (arch[e] + 1 + int(rng.integers(len(OPS) - 1))) % len(OPS)
    return tuple(child)


def crossover(a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
    """Uniform crossover: each edge's op from either parent with probability 1/2."""
    a, b = validate(a), validate(b)
    pick = rng.random(NUM_EDGES) < 0.5
    return tuple(x if p else y for x, y, p in zip(a, b, pick))


def encode(arch: Arch) -> List[float]:
    """One-hot encoding, edge-major: 6 edges x 5 ops = 30 values (simplex-net input)."""
    out = [0.0] * (NUM_EDGES * len(OPS))
    for e, op in enumerate(validate(arch)):
        out[e * len(OPS) + op] = 1.0
    return out


def encode_width(arch: Arch) -> None:
    """NB201 archs have no widths: no channel-branch input."""
    return None


def width_variants(arch: Arch, rng: np.random.Generator, n: int) -> List[Arch]:
    raise NotImplementedError("NB201 has no widths")


def width_values(arch: Arch) -> List[float]:
    return []


# ----------------------------------------------------------------------------- cost
def op_counts(arch: Arch) -> Tuple[int, int]:
    """(number of conv1x1 edges, number of conv3x3 edges): all that params and FLOPs depend on."""
    arch = validate(arch)
    return arch.count(CONV1), arch.count(CONV3)


def cost(arch: Sequence[int], num_classes: int = 10, input_size: int = 32, C: int = 16, N: int = 5) -> Tuple[int, int]:
    """(parameters, FLOPs) of the NB201 network of `arch`, by the NB201 conventions.

    Parameters: every conv weight (no bias), BN affine pairs, the classifier with bias; all edges
    count, dead ones too. FLOPs: multiply-adds of one image's forward pass for every conv (all
    non-`none` edges run in the official network) and the classifier (weights + bias); BN, ReLU,
    pooling and additions are not counted (xautodl `get_model_infos`). Equal to hook-based counting
    on `NB201Network(prune=False)` (tests/test_supernet.py).
    """
    n1, n3 = op_counts(arch)
    chans = [C, 2 * C, 4 * C]
    params = 3 * C * 9 + 2 * C
    flops = 3 * C * 9 * input_size * input_size
    for s, c in enumerate(chans):
        hw = (input_size >> s) ** 2
        if s > 0:
            cin = chans[s - 1]
            params += 9 * cin * c + 2 * c + 9 * c * c + 2 * c + cin * c
            flops += (9 * cin * c + 9 * c * c + cin * c) * hw
        params += N * (n1 * (c * c + 2 * c) + n3 * (9 * c * c + 2 * c))
        flops += N * (n1 * c * c + n3 * 9 * c * c) * hw
    params += 2 * chans[-1] + chans[-1] * num_classes + num_classes
    flops += chans[-1] * num_classes + num_classes
    return params, flops


# ----------------------------------------------------------------------------- what the space offers the engine
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")  # the NB201 datasets, each with its split protocol (SPEC 5)
KEY, KEY_TYPE = "index", int  # results files name an arch by its official NB201 index
TRUTH_TABLE = "nb201_truth.npz"  # package data, one row per official index (ground_truth.py)
PROXY_TABLE = "nb201_proxies.npz"
# the ground truth a ranking is compared with by default (SPEC 5), per dataset
TRUTH_SOURCE = "NAS-Bench-201, the embedded table"
# the paper's Table 4 (250-epoch supernets, all archs): SPOS and K-shot Kendall's tau (%), for scale in summaries
PAPER_TAU = {"cifar10": (55.00, 62.64), "cifar100": (56.00, 61.22), "ImageNet16-120": (54.00, 56.33)}
REPEATS: Dict[str, Tuple[str, ...]] = {}  # the table ships the mean over the benchmark's seeds only
TRUTH = {"cifar10": "cifar10_test_200ep", "cifar100": "cifar100_xtest_200ep", "ImageNet16-120": "imagenet16_xtest_200ep"}
_VAL_12EP = {"cifar10": "cifar10_val_12ep", "cifar100": "cifar100_val_12ep", "ImageNet16-120": "imagenet_val_12ep"}
COST_BASELINES = {"params": "parameter count (NB201)", "flops": "FLOPs (NB201 convention, {size}x{size} input)"}


def table_baselines(dataset: str) -> List[Tuple[str, str, str, str]]:
    """Baselines read from the shipped tables: (name, table, column, description); a column missing from its
    table (nregions for ImageNet16-120) is skipped where the table is read."""
    out = [(p, PROXY_TABLE, f"{p}_{dataset}", f"zero-cost proxy {p} (reference scores)")
           for p in ("naswot", "synflow", "logsynflow", "nregions")]
    col = _VAL_12EP[dataset]
    return out + [("train_12ep", TRUTH_TABLE, col, f"12 epochs of stand-alone training ({col}, NB201 hp=12)")]


def arch_set(spec: str, seed: int, widths: bool = True) -> Tuple[List[int], List[Arch], str]:
    """(official indices, archs, description) of an arch set: all | unique | N (a seeded sample of N: the first N
    of one seeded permutation, so smaller samples nest inside larger ones)."""
    if spec == "all":
        idx = list(range(NUM_ARCHS))
        desc = "all 15,625 archs"
    elif spec == "unique":
        idx = [to_index(a) for a in unique_archs()]
        desc = f"the {len(idx):,} unique archs (NB201 isomorphism rule, lowest index of each class)"
    elif spec.isdigit() and 0 < int(spec) <= NUM_ARCHS:
        idx = np.random.default_rng([seed, 7]).permutation(NUM_ARCHS)[: int(spec)].tolist()
        desc = f"a seeded uniform sample of {int(spec):,} archs (seed {seed})"
    else:
        raise UserError(f"unknown arch set {spec!r}", fix="use --archs all, --archs unique or --archs N with 1 <= N <= 15625")
    return idx, [from_index(i) for i in idx], desc


def key_of(arch: Sequence[int]) -> int:
    return to_index(arch)


def from_key(key) -> Arch:
    return from_index(int(key))


def describe_network(protocol: Dict) -> str:
    """The supernet's shape in a run's protocol, for summaries."""
    return f"network C={protocol['channels']}, N={protocol['cells']}"


def outputs_constant(arch: Sequence[int]) -> bool:
    """The network computes a constant (no input-to-output path): such archs sit at chance accuracy."""
    return is_dead(tuple(arch))


def network_key(arch: Sequence[int], bn_affine: bool = False) -> tuple:
    """What the weight-sharing supernet computes of `arch`: its live edges (`live_edges`; with BN without affine
    parameters, the supernet's default, edges out of an identically zero node are dead too). Archs with the same
    key are the same network in the supernet: with the same code they get the same score."""
    return live_edges(tuple(arch), not bn_affine)


# Presets (RunConfig fields) of this space:
#   nb201  the NB201 weight-sharing protocol at paper scale (SGD nesterov 0.9, lr 0.025 cosine to
#          0.001, wd 5e-4, batch 64, 250 epochs), C=16, N=5, every validation image scored.
#   cpu    a whole rank job (train + score) on CIFAR-10 within 20 minutes on 2 CPU cores: the NB201
#          width C=16 with one cell per stage (N=1, 3 cells instead of 15), 12 epochs (3 warm-up)
#          over the 25,000-image NB201 train half, 250 sampled archs scored on 1,000 validation images
#          each (scores on 500 images were too noisy: docs/design.md). Sized by wall time; its tau is not
#          comparable with paper-scale numbers.
#   long   ranking evidence on the real NB201 skeleton (C=16, N=5; issue 13): the nb201 recipe over 100
#          epochs (5 warm-up) with snapshots after epochs 10, 25, 50, 75 and 100, so one run gives the
#          tau-vs-epochs curve; 500 sampled archs scored on 2,000 validation images each.
#   narrow the NB201 recipe at the paper's 250 epochs on one CPU core (issue 25): a narrow skeleton (C=5, N=5;
#          SPEC 5a: C=5 ranks as well as C=16 and costs far less), ENN-balanced sampling, snapshots
#          after epochs 50, 100, 150, 200 and 250; 1,000 sampled archs scored at every snapshot, 3,000
#          (`final_archs`, a superset) at the last one, each on a fixed seeded subset of the NB201 `valid`
#          half (`score_images`, sized by measurement: docs/design.md, "The `narrow` preset").
#   demo   the default when no --data-root is given: the embedded CIFAR-10 sample (5,000 training and
#          1,000 scoring images shipped with the package), the cpu skeleton (C=16, N=1), 3 epochs
#          (1 warm-up), 50 sampled archs scored on all 1,000 sample images. About a minute on 2 cores; it
#          shows the whole job and its table, not a ranking anyone should cite.
#   smoke  a few seconds, for tests: C=4, N=1, 2 epochs over 256 images.
# K-shot in `long`, `narrow`, `cpu` and `demo` trains with the `joint-shared` simplex-net step (below; until issue
# 45 a separate simplex-net step every 4 supernet steps, `--variant cpu`); `nb201` keeps the paper's separate step.
# Every NB201 preset trains with `offpath_update=decay` (issue 44): once a weight has been on a sampled path it gets
# weight decay and momentum on every step, as the released NB201 supernet trainers do (zero-filled gradients). On
# `narrow` at 250 epochs it ranked better than `none` in both seeds (paired +0.028 and +0.156; worse at 50-150
# epochs of the same schedule); docs/design.md, "Weights off the path". `--set offpath_update=none` gives the old rule.
_NB201_RULE = dict(offpath_update="decay")
# `joint-shared` (simplex.CPU_VARIANT): the code gets its gradient from the supernet step's own backward, and the
# layers no BN normalises are one shared copy.
_CPU_KSHOT = cpu_variant_fields()
PRESETS = {
    "nb201": dict(_NB201_RULE),
    "long": dict(**_NB201_RULE, **_CPU_KSHOT, epochs=100, warmup_epochs=5, snapshot_epochs="10,25,50,75,100",
                 archs="500", score_images=2000, score_batch=500, checkpoint_every=100),
    "narrow": dict(**_NB201_RULE, **_CPU_KSHOT, channels=5, cells=5, epochs=250, warmup_epochs=10,
                   sampling="balanced", snapshot_epochs="50,100,150,200,250", archs="1000", final_archs="3000",
                   score_images=1000, score_batch=500, checkpoint_every=100),
    "cpu": dict(**_NB201_RULE, **_CPU_KSHOT, channels=16, cells=1, epochs=12, warmup_epochs=3,
                archs="250", score_images=1000, score_batch=500, checkpoint_every=100),
    "demo": dict(**_NB201_RULE, **_CPU_KSHOT, channels=16, cells=1, epochs=3, warmup_epochs=1,
                 archs="50", score_images=0, score_batch=500, checkpoint_every=50),
    "smoke": dict(**_NB201_RULE, channels=4, cells=1, epochs=2, warmup_epochs=1, batch_size=32, train_subset=256,
                  simplex_paths=4, simplex_interval=2, archs="12", score_images=64, score_batch=64, checkpoint_every=4),
}
PRESET_ABOUT = {  # one line each for `kshot-bench presets` (the comment above says more)
    "nb201": "the NB201 weight-sharing protocol at paper scale: C=16, N=5, 250 epochs, every validation image",
    "long": "C=16, N=5 over 100 epochs with snapshots (the tau-vs-epochs curve), 500 archs on 2,000 images",
    "narrow": "the paper's 250 epochs on one CPU core: C=5, N=5, ENN-balanced paths, snapshots, 1,000 / 3,000 archs",
    "cpu": "a whole rank job on 2 CPU cores in about 20 minutes: C=16, N=1, 12 epochs, 250 archs on 1,000 images",
    "demo": "the default without --data-root: the embedded sample, 3 epochs, 50 archs (a demonstration, not a result)",
    "smoke": "seconds, for tests: C=4, N=1, 2 epochs over 256 images, 12 archs",
}
EMBEDDED_PRESET = "demo"  # the preset without --data-root (the embedded CIFAR-10 sample); with data: `cpu`


def check_options(values: Dict, defaults: Dict) -> None:
    """Config fields that mean nothing for NB201 must keep their defaults."""
    if values["net_scale"] != defaults["net_scale"]:
        raise UserError(f"net_scale={values['net_scale']!r} is an MBV2 option", fix="for NB201 set channels (C) and cells (N)")
