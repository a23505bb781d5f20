"""Run configuration: one frozen dataclass, presets, strict typed overrides, a stable hash.

A preset fills every field; the CLI's flags and `--set key=value` override single fields (unknown
keys and ill-typed values are errors, never `eval`). The resolved config is written beside the
results (`config.json`), and its hash names the protocol in every report.

Presets are named sets of fields that each search space declares (`PRESETS` in search_space/<space>.py, with
what each is for); `--preset NAME` starts from one of them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Tuple

from kshot_bench.errors import UserError
from kshot_bench.registry import Registry


@dataclass(frozen=True)
class RunConfig:
    # what is run
    dataset: str = "cifar10"
    space: str = "nb201"
    k: int = 4
    code: str = "simplex"
    seed: int = 0
    # network
    channels: int = 16          # C
    cells: int = 5              # N cells per stage
    bn_affine: bool = False     # affine BN in the supernet (K copies of gamma/beta)
    kshot_init: str = "independent"
    kshot_copies: str = "all"   # all: K copies of every weight | normalised: K copies only of the weights a BN normalises,
                                # one shared copy of the rest (classifier, shortcuts, BN affine, SE; supernet/kshot.py)
    net_scale: float = 1.0      # mbv2: every channel count of the macro-architecture x this (1.0 = the paper's network)
    # supernet training (paper Algorithm 1)
    epochs: int = 250
    warmup_epochs: int = 10     # T_w: code fixed at 1/K
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    grad_clip: float = 0.0      # 0 = off
    offpath_update: str = "none"  # weights off the sampled path: none (untouched that step) | decay (once used, weight
                                  # decay and momentum every step, as SGD with zero-filled gradients; train.OFFPATH_UPDATES)
    micro_batches: int = 1      # each process's batch in this many parts, one forward/backward each (BN per part)
    train_precision: str = "auto"  # fp32 | bf16 (autocast) | auto: bf16 on CUDA, fp32 elsewhere
    # image folders (--dataset imagenet)
    image_size: int = 0         # training crop / evaluation size; 0 = the dataset's (224 for imagenet)
    local_val_size: int = 50000  # images of ImageNet train held out as the local validation split (scoring)
    loader_workers: int = -1    # DataLoader workers for image folders; -1 = every core but one, at most 8
    unique_sampling: bool = False
    sampling: str = "uniform"   # how training draws paths: uniform | balanced (NB201: ENN groups, SPEC 5a)
    train_subset: int = 0       # 0 = the whole training part; else a fixed seeded subset
    # simplex-net
    simplex_hidden: int = 64
    simplex_lr: float = 1e-3    # Adam
    simplex_paths: int = 16     # m paths per simplex-net step, b/m images each
    simplex_interval: int = 1   # supernet steps per simplex-net step after warm-up
    simplex_step: str = "separate"  # separate: m paths on b/m images each (Algorithm 1) | joint: the supernet step's
                                    # own backward (code not detached), no extra forward (simplex.SIMPLEX_STEP_KINDS)
    warmup_code: str = "uniform"  # the code of warm-up steps: uniform 1/K | dirichlet (a Dirichlet(1) draw per step)
    simplex_init: float = 0.0   # std of the simplex-net output layer's initial weights (0: zeros, uniform first codes)
    simplex_batched: bool = True  # the m paths in one pass (supernet/groups.py); false: one after another
    simplex_threads: int = -1   # CPU: the m paths side by side on this many threads (1 intra-op thread each; overrides
                                # simplex_batched); -1 = automatic: torch's thread count on CPU (with one thread the
                                # sequential step, same bits), 0 (batched) on a GPU; train.resolve_simplex_step
    # width search (spaces with widths: mbv2), paper Sec. 4
    width_search: bool = True   # sample widths and give the simplex-net its channel branch; false: every width 1.0
    rc_weight: float = 1.0      # alpha of the channel regulariser r_c in the simplex-net loss (0 = off)
    rc_margin: float = 2.0      # m: width settings closer than this (L1 over the 24 multipliers) are positives
    rc_tau: float = 0.3         # temperature of r_c (paper: 0.3)
    rc_widths: int = 4          # width settings per sampled arch for r_c
    # scoring (rank)
    archs: str = "all"          # all | unique | N (a seeded sample of N archs)
    final_archs: str = ""       # the arch set for a supernet at the run's last epoch ("": the same as archs)
    score_images: int = 0       # 0 = the whole scoring part
    score_code: str = "own"     # own: each arch's code | uniform: 1/K | mean: the mean code over the scored archs
    score_part: str = "valid"   # valid: the dataset's scoring part (NB201: the `valid` half) | test: the CIFAR-10 test
                                # set, the images of the ground truth (the released one-shot rankings' protocol)
    score_batch: int = 512
    bn_calibration: int = 0     # scoring BN: 0 = each batch's own statistics; N = each arch's statistics re-estimated
                                # over N training images, then eval mode (rank.score_arch)
    score_by: str = "acc"       # acc: top-1 accuracy | loss: mean cross-entropy, negated (both are always computed)
    score_precision: str = "auto"  # fp32 | bf16 (autocast) | auto: bf16 on CUDA, fp32 elsewhere
    # bookkeeping
    checkpoint_every: int = 200  # steps between checkpoints (plus one at every epoch end)
    snapshot_epochs: str = ""    # e.g. "25,50,100": keep the weights + simplex-net after these epochs

    def __post_init__(self):
        from kshot_bench.datasets import canonical_dataset

        object.__setattr__(self, "dataset", canonical_dataset(self.dataset))  # one spelling (`imagenet16` is accepted)
        check(self)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short stable hash of every field: names the protocol in reports. Fields added later join it only
        when set away from their default, so the hashes of earlier runs stay what their reports say."""
        return config_hash(self.to_dict(), LATER_FIELDS)

    def replace(self, **changes) -> "RunConfig":
        return override(self, changes)


def config_hash(data: Dict[str, Any], later: Dict[str, Any]) -> str:
    """10 hex digits of sha1 over the fields, leaving out each field of `later` (field -> default) that
    holds its default: fields added after runs were recorded do not change those runs' hashes."""
    kept = {k: v for k, v in data.items() if later.get(k, object()) != v}
    return hashlib.sha1(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:10]


# how a supernet step treats the weights that are not on its sampled path (docs/design.md, "Weights off the path")
OFFPATH_UPDATES = ("none", "decay")

# field -> default, for fields added after reports were committed
LATER_FIELDS = {"micro_batches": 1, "image_size": 0, "local_val_size": 50000, "loader_workers": -1,
                "score_precision": "auto", "net_scale": 1.0, "train_precision": "auto",
                "simplex_threads": -1, "sampling": "uniform", "final_archs": "",
                "bn_calibration": 0, "offpath_update": "none",
                "score_part": "valid", "simplex_step": "separate", "warmup_code": "uniform", "simplex_init": 0.0,
                "score_code": "own", "kshot_copies": "all"}


def check(cfg: RunConfig) -> None:
    from kshot_bench.datasets import DATASETS
    from kshot_bench.search_space import SPACES
    from kshot_bench.simplex import CODE_MODES
    from kshot_bench.supernet.kshot import KSHOT_COPIES, KSHOT_INITS

    DATASETS.get(cfg.dataset)
    space = SPACES.get(cfg.space)
    if cfg.sampling not in space.SAMPLINGS:
        fix = "use " + " or ".join(f"--set sampling={s}" for s in space.SAMPLINGS)
        if len(space.SAMPLINGS) == 1:
            fix += "; balanced sampling needs a space that groups its archs (NB201: by ENN)"
        raise UserError(f"sampling={cfg.sampling!r} is not defined for the {cfg.space} space (it offers: "
                        f"{', '.join(space.SAMPLINGS)})", fix=fix)
    CODE_MODES.get(cfg.code)
    from kshot_bench.simplex import SCORE_CODES, SIMPLEX_STEP_KINDS, WARMUP_CODES

    WARMUP_CODES.get(cfg.warmup_code)
    if cfg.simplex_step not in SIMPLEX_STEP_KINDS:
        raise UserError(f"unknown simplex_step {cfg.simplex_step!r}",
                        fix="use simplex_step=separate (m paths after the supernet step, the paper's) or "
                            "simplex_step=joint (the supernet step's own backward)")
    if cfg.simplex_init < 0:
        raise UserError(f"simplex_init must be >= 0, got {cfg.simplex_init}",
                        fix="0 starts the simplex-net's output layer at zero (uniform codes); e.g. 0.1 starts it spread")
    if cfg.score_code not in SCORE_CODES:
        raise UserError(f"unknown score_code {cfg.score_code!r}",
                        fix="use score_code=own (each arch's code), uniform (1/K) or mean (the mean code)")
    if cfg.offpath_update not in OFFPATH_UPDATES:
        raise UserError(f"unknown offpath_update {cfg.offpath_update!r}",
                        fix="use --set offpath_update=none (weights off the sampled path untouched) or "
                            "--set offpath_update=decay (once used, weight decay and momentum on every step)")
    if cfg.k < 1:
        raise UserError(f"K must be >= 1, got {cfg.k}", fix="use --k 1 for a one-shot supernet, --k 2 or more for K-shot")
    if cfg.kshot_init not in KSHOT_INITS:
        raise UserError(f"unknown kshot_init {cfg.kshot_init!r}", fix=f"choose one of: {', '.join(KSHOT_INITS)}")
    if cfg.kshot_copies not in KSHOT_COPIES:
        raise UserError(f"unknown kshot_copies {cfg.kshot_copies!r}",
                        fix="use --set kshot_copies=all (K copies of every weight) or --set kshot_copies=normalised "
                            "(K copies only of the weights a BN normalises)")
    positive = ("channels", "cells", "epochs", "batch_size", "simplex_paths", "simplex_interval", "score_batch",
                "simplex_hidden", "checkpoint_every", "rc_widths", "micro_batches")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise UserError(f"{name} must be >= 1, got {getattr(cfg, name)}", fix=f"set {name} to a positive integer")
    if not 0 <= cfg.warmup_epochs <= cfg.epochs:
        raise UserError(f"warmup_epochs={cfg.warmup_epochs} must lie in 0..epochs ({cfg.epochs})",
                        fix="lower warmup_epochs or raise epochs")
    if cfg.simplex_paths > cfg.batch_size:
        raise UserError(f"simplex_paths={cfg.simplex_paths} exceeds batch_size={cfg.batch_size}",
                        fix="each of the m paths needs at least one image: lower simplex_paths or raise batch_size")
    if cfg.batch_size % cfg.micro_batches or cfg.simplex_paths > cfg.batch_size // cfg.micro_batches:
        raise UserError(f"batch_size={cfg.batch_size} does not split into micro_batches={cfg.micro_batches} equal parts of "
                        f"at least simplex_paths={cfg.simplex_paths} images",
                        fix="choose micro_batches that divides batch_size (and leaves each part >= simplex_paths images)")
    if cfg.dataset not in space.DATASETS:
        others = [n for n in SPACES.names() if cfg.dataset in SPACES.get(n).DATASETS]
        raise UserError(f"--dataset {cfg.dataset} is not a dataset of the {cfg.space} space",
                        fix=f"its datasets: {', '.join(space.DATASETS)}"
                            + (f"; {cfg.dataset} is for --space {' or '.join(others)}" if others else ""))
    if cfg.bn_calibration < 0:
        raise UserError(f"bn_calibration must be >= 0, got {cfg.bn_calibration}",
                        fix="0 scores with each batch's BN statistics; N > 0 re-estimates them over N training images")
    if cfg.image_size < 0 or cfg.local_val_size < 1 or cfg.loader_workers < -1:
        raise UserError(f"image_size must be >= 0 (0: the dataset's size), local_val_size >= 1 and loader_workers >= -1 "
                        f"(got {cfg.image_size}, {cfg.local_val_size}, {cfg.loader_workers})",
                        fix="e.g. --set image_size=64 --set local_val_size=5000 --set loader_workers=4 (-1: automatic)")
    if cfg.simplex_threads < -1:
        raise UserError(f"simplex_threads must be -1 (automatic), 0 or a thread count, got {cfg.simplex_threads}",
                        fix="e.g. --set simplex_threads=2; -1 picks torch's thread count on CPU and the batched "
                            "step on a GPU")
    parse_snapshot_epochs(cfg)
    space.check_options(cfg.to_dict(), {f.name: f.default for f in fields(RunConfig)})
    if cfg.rc_weight < 0 or cfg.rc_margin <= 0 or cfg.rc_tau <= 0:
        raise UserError(f"r_c needs rc_weight >= 0, rc_margin > 0 and rc_tau > 0 (got {cfg.rc_weight}, {cfg.rc_margin}, "
                        f"{cfg.rc_tau})", fix="e.g. --set rc_weight=1 --set rc_margin=2 --set rc_tau=0.3; rc_weight=0 "
                                              "switches r_c off")
    for name in ("score_precision", "train_precision"):
        if getattr(cfg, name) not in ("auto", "fp32", "bf16"):
            raise UserError(f"unknown {name} {getattr(cfg, name)!r}",
                            fix="use fp32, bf16 (autocast) or auto (bf16 on CUDA, fp32 elsewhere)")
    if cfg.score_part not in ("valid", "test"):
        raise UserError(f"unknown score_part {cfg.score_part!r}",
                        fix="use score_part=valid (the dataset's scoring part) or score_part=test (the CIFAR-10 test "
                            "set: rank --score-protocol released)")
    if cfg.score_part == "test" and cfg.dataset != "cifar10":
        raise UserError(f"score_part=test scores on the CIFAR-10 test set; this run's dataset is {cfg.dataset}",
                        fix="use score_part=valid for other datasets")
    if cfg.score_by not in ("acc", "loss"):
        raise UserError(f"unknown score {cfg.score_by!r}", fix="use --score acc (top-1 accuracy) or --score loss "
                                                               "(mean cross-entropy, lower ranks higher)")
    for name in ("archs", "final_archs"):
        value = getattr(cfg, name)
        if (value not in ("all", "unique") and not (value.isdigit() and int(value) > 0)
                and not (name == "final_archs" and value == "")):
            raise UserError(f"unknown arch set {name}={value!r}",
                            fix=f"use {'--archs' if name == 'archs' else '--set final_archs='}all, unique or N "
                                "(a seeded sample of N)")


def parse_snapshot_epochs(cfg: RunConfig) -> Tuple[int, ...]:
    """The epochs after which `train` keeps a snapshot, parsed from the comma-separated field."""
    text = cfg.snapshot_epochs.replace(" ", "")
    if not text:
        return ()
    try:
        epochs = tuple(sorted({int(v) for v in text.split(",")}))
    except ValueError:
        raise UserError(f"snapshot_epochs={cfg.snapshot_epochs!r} is not a list of epochs",
                        fix="write --set snapshot_epochs=25,50,100 (comma-separated epoch numbers)") from None
    if epochs[0] < 1 or epochs[-1] > cfg.epochs:
        raise UserError(f"snapshot_epochs {list(epochs)} must lie in 1..epochs ({cfg.epochs})",
                        fix="drop the epochs beyond the run's length, or raise epochs")
    return epochs


def _coerce(name: str, kind: type, value: Any) -> Any:
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return kind(text)
        except ValueError:
            pass
    what = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[kind]
    example = getattr(RunConfig, name, None)
    raise UserError(f"config key {name!r} takes {what}, got {value!r}",
                    fix=f"write --set {name}=<{what}>" + (f", e.g. --set {name}={example}" if example is not None else ""))


def override(cfg: RunConfig, changes: Mapping[str, Any]) -> RunConfig:
    types = {f.name: f.type for f in fields(type(cfg))}  # RunConfig, or another config dataclass (retrain)
    kinds = {"int": int, "float": float, "bool": bool, "str": str}
    clean = {}
    for key, value in changes.items():
        if key not in types:
            raise UserError(f"unknown config key {key!r}", fix=f"valid keys: {', '.join(types)}")
        clean[key] = _coerce(key, kinds[types[key]], value)
    return dataclasses.replace(cfg, **clean)


def parse_sets(items) -> Dict[str, str]:
    """`["lr=0.1", "epochs=3"]` -> dict; errors name the malformed item."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"malformed --set {item!r}", fix="write --set key=value, e.g. --set epochs=3")
        out[key.strip()] = value
    return out


def presets(space: str) -> Registry:
    """The presets of a search space (its module's PRESETS), as a registry: errors list the choices."""
    from kshot_bench.search_space import SPACES

    reg: Registry[Dict[str, Any]] = Registry("preset")
    for name, values in SPACES.get(space).PRESETS.items():
        reg.register(name, values)
    return reg


def from_preset(name: str, **changes) -> RunConfig:
    """The preset `name` of the space in `changes` (default nb201), then the non-None changes."""
    space = changes.get("space") or RunConfig.space
    base = override(RunConfig(), presets(space).get(name))
    return override(base, {k: v for k, v in changes.items() if v is not None})


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    return override(RunConfig(), data)


def uses_widths(cfg: RunConfig) -> bool:
    """Widths are searched (sampled, and fed to the simplex-net's channel branch)."""
    from kshot_bench.search_space import SPACES

    return SPACES.get(cfg.space).HAS_WIDTHS and cfg.width_search
