"""Run configuration: one frozen dataclass, presets, strict typed overrides, a stable hash.

A preset fills every field; the CLI's flags and `--set key=value` override single fields (unknown
keys and ill-typed values are errors, never `eval`). The resolved config is written beside the
results (`config.json`), and its hash names the protocol in every report.

Presets:
  nb201  the NB201 weight-sharing protocol at paper scale (SGD nesterov 0.9, lr 0.025 cosine to
         0.001, wd 5e-4, batch 64, 250 epochs), C=16, N=5, every validation image scored.
  cpu    a whole rank job (train + score) on CIFAR-10 within 20 minutes on 2 CPU cores: the NB201
         width C=16 with one cell per stage (N=1, 3 cells instead of 15), 12 epochs (3 warm-up)
         over the 25,000-image NB201 train half, a simplex-net step every 4 supernet steps, 250
         sampled archs scored on 1,000 validation images each (scores on 500 images were too noisy:
         docs/design.md). Sized by wall time; its tau is not comparable with paper-scale numbers.
  long   ranking evidence on the real NB201 skeleton (C=16, N=5; issue 13): the nb201 recipe over 100
         epochs (5 warm-up) with snapshots after epochs 10, 25, 50, 75 and 100, so one run gives the
         tau-vs-epochs curve; a simplex-net step every 4 supernet steps (the batched step costs about
         2.2 supernet steps on a 2-core CPU, so this keeps the K-shot phase near 1.5x one-shot per
         iteration; docs/design.md); 500 sampled archs scored on 2,000 validation images each.
  narrow the NB201 recipe at the paper's 250 epochs on one CPU core (issue 25): a narrow skeleton (C=5, N=5;
         SPEC 5a: C=5 ranks as well as C=16 and costs far less), ENN-balanced sampling, a simplex-net
         step every 4 supernet steps (as `long`), snapshots after epochs 50, 100, 150, 200 and 250; 1,000
         sampled archs scored at every snapshot, a larger set (`final_archs`) at the last one, each on a
         fixed seeded subset of the NB201 `valid` half (`score_images`, sized by measurement:
         docs/design.md, "The `narrow` preset").
  demo   the default when no --data-root is given: the embedded CIFAR-10 sample (5,000 training and
         1,000 scoring images shipped with the package), the cpu skeleton (C=16, N=1), 3 epochs
         (1 warm-up), 50 sampled archs scored on all 1,000 sample images. About a minute on 2 cores; it
         shows the whole job and its table, not a ranking anyone should cite.
  smoke  a few seconds, for tests: C=4, N=1, 2 epochs over 256 images.
MobileNetV2 presets (`--space mbv2`) are listed beside MBV2_PRESETS below; `--dataset imagenet` reads an
ImageNet image folder (`image_size`, `local_val_size`, `loader_workers`).
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
    score_batch: int = 512
    bn_calibration: int = 0     # scoring BN: 0 = each batch's own statistics; N = each arch's statistics re-estimated
                                # over N training images, then eval mode (rank.score_arch)
    score_by: str = "acc"       # acc: top-1 accuracy | loss: mean cross-entropy, negated (both are always computed)
    score_precision: str = "auto"  # fp32 | bf16 (autocast) | auto: bf16 on CUDA, fp32 elsewhere
    # bookkeeping
    checkpoint_every: int = 200  # steps between checkpoints (plus one at every epoch end)
    snapshot_epochs: str = ""    # e.g. "25,50,100": keep the weights + simplex-net after these epochs

    def __post_init__(self):
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


# field -> default, for fields added after reports were committed
LATER_FIELDS = {"micro_batches": 1, "image_size": 0, "local_val_size": 50000, "loader_workers": -1,
                "score_precision": "auto", "net_scale": 1.0, "train_precision": "auto",
                "simplex_threads": -1, "sampling": "uniform", "final_archs": "",
                "bn_calibration": 0}


def check(cfg: RunConfig) -> None:
    from kshot_bench.datasets import DATASETS
    from kshot_bench.search_space import SPACES
    from kshot_bench.simplex import CODE_MODES
    from kshot_bench.supernet.kshot import KSHOT_INITS

    DATASETS.get(cfg.dataset)
    space = SPACES.get(cfg.space)
    if cfg.sampling not in space.SAMPLINGS:
        raise UserError(f"sampling={cfg.sampling!r} is not defined for the {cfg.space} space (it offers: "
                        f"{', '.join(space.SAMPLINGS)})",
                        fix=f"use --set sampling={space.SAMPLINGS[0]}; balanced sampling needs a space that groups its "
                            "archs (NB201: by ENN)")
    CODE_MODES.get(cfg.code)
    if cfg.k < 1:
        raise UserError(f"K must be >= 1, got {cfg.k}", fix="use --k 1 for a one-shot supernet, --k 2 or more for K-shot")
    if cfg.kshot_init not in KSHOT_INITS:
        raise UserError(f"unknown kshot_init {cfg.kshot_init!r}", fix=f"choose one of: {', '.join(KSHOT_INITS)}")
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
    if cfg.dataset == "imagenet" and cfg.space != "mbv2":
        raise UserError(f"--dataset imagenet is for the MobileNetV2 space, not {cfg.space} (NB201's ImageNet is "
                        "ImageNet16-120)", fix="add --space mbv2, or use --dataset ImageNet16-120 for NB201")
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
    _check_space_options(cfg)
    if cfg.rc_weight < 0 or cfg.rc_margin <= 0 or cfg.rc_tau <= 0:
        raise UserError(f"r_c needs rc_weight >= 0, rc_margin > 0 and rc_tau > 0 (got {cfg.rc_weight}, {cfg.rc_margin}, "
                        f"{cfg.rc_tau})", fix="e.g. --set rc_weight=1 --set rc_margin=2 --set rc_tau=0.3; rc_weight=0 "
                                              "switches r_c off")
    for name in ("score_precision", "train_precision"):
        if getattr(cfg, name) not in ("auto", "fp32", "bf16"):
            raise UserError(f"unknown {name} {getattr(cfg, name)!r}",
                            fix="use fp32, bf16 (autocast) or auto (bf16 on CUDA, fp32 elsewhere)")
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


NB201_ONLY = {"channels": 16, "cells": 5, "unique_sampling": False}  # NB201 skeleton options and their defaults


def _check_space_options(cfg: RunConfig) -> None:
    """Options that mean something in one space only must keep their defaults in the other."""
    if cfg.space == "nb201":
        if cfg.net_scale != 1.0:
            raise UserError(f"net_scale={cfg.net_scale!r} is an MBV2 option", fix="for NB201 set channels (C) and cells (N)")
        return
    from kshot_bench.search_space import mbv2

    mbv2.macro(cfg.net_scale)
    wrong = [f"{k}={getattr(cfg, k)!r}" for k, v in NB201_ONLY.items() if getattr(cfg, k) != v]
    if cfg.archs == "unique":
        wrong.append("archs='unique'")
    if wrong:
        raise UserError(f"{', '.join(wrong)}: NB201-only option{'s' if len(wrong) > 1 else ''}, not for --space {cfg.space} "
                        "(its macro-architecture is fixed, SPEC 7, and it has no isomorphism classes)",
                        fix="drop them, or use --space nb201")


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
    raise UserError(f"config key {name!r} takes a {kind.__name__}, got {value!r}",
                    fix=f"write --set {name}=<{kind.__name__}>, e.g. --set {name}={getattr(RunConfig, name)}")


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


PRESETS: Registry[Dict[str, Any]] = Registry("preset")  # NB201 presets
PRESETS.register("nb201", {})
PRESETS.register("long", dict(epochs=100, warmup_epochs=5, simplex_interval=4, snapshot_epochs="10,25,50,75,100",
                              archs="500", score_images=2000, score_batch=500, checkpoint_every=100))
PRESETS.register("narrow", dict(channels=5, cells=5, epochs=250, warmup_epochs=10, simplex_interval=4,
                                sampling="balanced", snapshot_epochs="50,100,150,200,250", archs="1000",
                                final_archs="3000", score_images=1000, score_batch=500, checkpoint_every=100))
PRESETS.register("cpu", dict(channels=16, cells=1, epochs=12, warmup_epochs=3, simplex_interval=4,
                             archs="250", score_images=1000, score_batch=500, checkpoint_every=100))
PRESETS.register("demo", dict(channels=16, cells=1, epochs=3, warmup_epochs=1, simplex_interval=4,
                              archs="50", score_images=0, score_batch=500, checkpoint_every=50))
PRESETS.register("smoke", dict(channels=4, cells=1, epochs=2, warmup_epochs=1, batch_size=32, train_subset=256,
                               simplex_paths=4, simplex_interval=2, archs="12", score_images=64,
                               score_batch=64, checkpoint_every=4))

# MobileNetV2 presets (SPEC 7). `imagenet`: the paper's supernet recipe (SGD nesterov 0.9, batch 1024 global,
# lr 0.12 cosine, 120 epochs, 5 warm-up epochs with code 1/K, wd 4e-5 as GreedyNAS); b_s = 16 images per
# simplex path (m = 64 paths of a 1024 batch), a simplex step after every supernet step as Algorithm 1.
# `cpu`: the network at half its channels (net_scale 0.5: a quarter of the compute) on the CIFAR-10 images at
# their own 32x32 (the five stride-2 layers leave a 1x1 map at the end: the deep layers see no spatial context;
# that is what the size shrinks), 15,000 training images, 8 epochs (2 warm-up), batch 64, lr 0.02 cosine (0.05
# diverged at full width: loss above chance), a simplex step every 4 supernet steps, 100 archs scored on 1,000
# images; with `--dataset imagenet` on an ImageNet-layout folder of those images, 5,000 training images are the
# local validation split. A K=1 train job takes about 8 minutes on one core. Such a supernet learns little
# (K=1: 13.5% train accuracy after 8 epochs, one thread, CIFAR-10 folder): it tests the pipeline, not the method.
# `smoke`: seconds, for tests, on the network at a quarter of its channels (net_scale 0.25: a K=4 supernet of
# 54 MB instead of 670 MB).
MBV2_PRESETS: Registry[Dict[str, Any]] = Registry("mbv2 preset")
MBV2_PRESETS.register("imagenet", dict(space="mbv2", epochs=120, warmup_epochs=5, batch_size=1024,
                                       lr=0.12, lr_min=0.0, weight_decay=4e-5, simplex_paths=64, simplex_interval=1,
                                       archs="1000", score_images=10000, score_batch=250, checkpoint_every=500))
MBV2_PRESETS.register("cpu", dict(space="mbv2", net_scale=0.5, image_size=32, local_val_size=5000, epochs=8,
                                  warmup_epochs=2, batch_size=64, lr=0.02, lr_min=0.0,
                                  weight_decay=4e-5, train_subset=15000, simplex_paths=16, simplex_interval=4,
                                  archs="100", score_images=1000, score_batch=500, checkpoint_every=50))
MBV2_PRESETS.register("smoke", dict(space="mbv2", net_scale=0.25, epochs=2, warmup_epochs=1, batch_size=16, lr=0.05,
                                    train_subset=64,
                                    simplex_paths=4, simplex_interval=2, archs="4", score_images=32, score_batch=32,
                                    checkpoint_every=4, rc_widths=3))
PRESETS_BY_SPACE = {"nb201": PRESETS, "mbv2": MBV2_PRESETS}


def from_preset(name: str, **changes) -> RunConfig:
    """The preset `name` of the space in `changes` (default nb201), then the non-None changes."""
    space = changes.get("space") or "nb201"
    from kshot_bench.search_space import SPACES

    SPACES.get(space)
    presets = PRESETS_BY_SPACE[space]
    base = override(RunConfig(), presets.get(name))
    return override(base, {k: v for k, v in changes.items() if v is not None})


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    return override(RunConfig(), data)
