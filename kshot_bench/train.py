"""Supernet + simplex-net training (paper Algorithm 1, Eq. 8-9), run directories and checkpoints.

Each iteration takes one batch b:
  * supernet step: one sampled path a (`sampling`: uniform, or ENN-balanced on NB201), the full batch,
    code lambda = pi(a) held fixed (1/K during the first `warmup_epochs`), update the K-shot weights Theta;
  * after warm-up, every `simplex_interval` iterations and only for a trainable code source: a
    simplex-net step on the same batch: m paths, the batch split into m groups of b/m images, the
    mean loss back-propagated into sigma only (Theta frozen), Adam. On a CPU its m paths run side by
    side on worker threads, one intra-op thread each (`simplex_threads`); on a GPU in one batched pass
    (`simplex_batched`, supernet/groups.py); the sequential form is the reference. All three compute
    the same step (tests/test_groups.py).
Design choices the paper leaves open (docs/design.md): per-step cosine LR; the simplex step reuses
the iteration's batch; every code mode warms up with 1/K; what SGD does to the weights off the sampled
path (`offpath_update`): `none` leaves them untouched that step (their gradients are None: neither momentum
nor weight decay, as the SPOS authors' trainer), `decay` gives every weight that has been used at least once
weight decay and its momentum on every step (its gradient is zero-filled: what `zero_grad()` of PyTorch < 2.0
did in the public NB201 supernet trainers, whose runs give the released one-shot figures).

Determinism: the path of step t and the simplex paths come from generators seeded with
(seed, stream, t); the data order and augmentation of epoch e from (seed, e). A checkpoint
therefore needs only the weights, both optimizers, the position and the running meters to resume
exactly; it is written atomically (temp file + rename) every `checkpoint_every` steps, at every
epoch end and on Ctrl-C.

Run directory: config.json (resolved), log.csv (one row per epoch), checkpoint.pt (latest),
supernet.pt (final weights + simplex-net, written when training ends).
"""
from __future__ import annotations

import csv
import math
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from kshot_bench.config import RunConfig, parse_snapshot_epochs
from kshot_bench.data import Splits
from kshot_bench.datasets import DATASETS
from kshot_bench.distributed import Dist
from kshot_bench.errors import UserError
from kshot_bench.loop import append_log_row, rewrite_log
from kshot_bench.models import build_code_source, build_supernet, uses_widths
from kshot_bench.rundir import (
    CHECKPOINT,
    FINAL,
    LOG,
    MACHINES_NOT_RECORDED,
    SCORING_FIELDS,
    SNAPSHOTS,
    atomic_save,
    check_same_config,
    load_checkpoint,
    machine_info,
    machine_label,
    peak_memory_mb,
    run_hash,
    snapshot_name,
)
from kshot_bench.runtime import ThreadWorkers, bf16_autocast, device_layout, use_bf16
from kshot_bench.search_space import SPACES
from kshot_bench.simplex import WARMUP_CODES, CodeSource, code_stats

LOG_FIELDS = ["epoch", "phase", "lr", "train_loss", "train_acc", "simplex_loss", "rc", "code_entropy", "code_max",
              "code_spread", "code_top_share", "code_width_spread", "w_rms_ops", "w_rms_trunk", "copy_spread_ops",
              "copy_spread_trunk", "images", "time_s", "images_per_s", "peak_mem_mb"]
PROBE_ARCHS, PROBE_SEED = 256, 12345  # the fixed archs whose codes the log summarises each epoch
STREAM_PATH, STREAM_SIMPLEX, STREAM_WARMUP_CODE = 1, 2, 3


def weight_part(name: str) -> str:
    """Which part of a supernet a parameter belongs to: `ops` for the candidate ops (NB201 cell edges, the
    choice blocks of Macro and MBV2: the weights a path may leave out), `trunk` for the rest (stem,
    reductions, head, classifier: on every path)."""
    return "ops" if name.startswith(("cells.", "layers.")) else "trunk"


def weight_stats(model: torch.nn.Module) -> Dict[str, object]:
    """Weight diagnostics for the training log, over the convolution and linear weights (2+ dims after the
    K copies' dimension): `w_rms_<part>` the mean over tensors of the RMS of their mean copy (under BN the
    effective step of a weight scales as lr / rms^2: docs/design.md, "Weights off the path"); `copy_spread_<part>`
    (K > 1) the mean over tensors of ||theta_k - mean|| / ||mean||, averaged over the copies (0: identical
    copies, which give the simplex-net no gradient to follow)."""
    acc: Dict[str, List[Tuple[float, float]]] = {"ops": [], "trunk": []}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() < 3:  # biases, BN and classifier biases: [K, C]
                continue
            w = p.detach().float()
            mean = w.mean(0)
            rms = float(mean.pow(2).mean().sqrt())
            spread = float(((w - mean).flatten(1).norm(dim=1) / mean.norm().clamp_min(1e-12)).mean()) if len(w) > 1 else None
            acc[weight_part(name)].append((rms, spread))
    out: Dict[str, object] = {}
    for part, vals in acc.items():  # the spread over the K-copied tensors only (kshot_copies=normalised shares some)
        spreads = [v[1] for v in vals if v[1] is not None]
        out[f"w_rms_{part}"] = float(np.mean([v[0] for v in vals])) if vals else ""
        out[f"copy_spread_{part}"] = float(np.mean(spreads)) if spreads else ""
    return out


def step_rng(seed: int, stream: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, step])


def channel_regulariser_loss(codes: CodeSource, space, archs, rng: np.random.Generator, cfg: RunConfig) -> torch.Tensor:
    """r_c (paper Eq. 13-16) of the simplex-net step, averaged over its m archs: for each arch's ops,
    `rc_widths` width settings (the path's own, a near neighbour, independent draws:
    `space.width_variants`), their codes, and the regulariser over them (`simplex.channel_regulariser`)."""
    from kshot_bench.simplex import channel_regulariser

    n = cfg.rc_widths
    variants = [v for a in archs for v in space.width_variants(a, rng, n)]
    lam = codes(variants).view(len(archs), n, -1)
    widths = torch.tensor([space.width_values(v) for v in variants], dtype=lam.dtype,
                          device=lam.device).view(len(archs), n, -1)
    return torch.stack([channel_regulariser(lam[j], widths[j], cfg.rc_margin, cfg.rc_tau)
                        for j in range(len(archs))]).mean()


def simplex_loss_batched(model, codes: CodeSource, x: torch.Tensor, y: torch.Tensor, archs, scale: float = 1.0) -> float:
    """Back-propagate the simplex-net loss of m paths on m equal groups of the batch, all in one pass
    (`forward_groups`): the mean over every image is the mean of the groups' mean losses. Gradients
    reach the code source's parameters only (the supernet is frozen); `scale` multiplies the loss that
    is back-propagated (1/micro_batches). Returns the loss."""
    loss = F.cross_entropy(model.forward_groups(x, archs, codes(archs)), y)
    (loss if scale == 1.0 else loss * scale).backward(inputs=list(codes.parameters()))
    return float(loss.detach())


def simplex_groups(x: torch.Tensor, y: torch.Tensor, archs) -> list:
    """The m groups of a simplex-net step: (arch, its images, their labels), group j = the j-th part."""
    m = len(archs)
    return list(zip(archs, x.tensor_split(m), y.tensor_split(m)))


def group_loss(model, codes: CodeSource, group, m: int) -> torch.Tensor:
    """One group's share of the simplex-net loss: its mean loss over its own path and code, / m."""
    arch, xj, yj = group
    return F.cross_entropy(model(xj, arch, codes([arch])[0]), yj) / m


def simplex_loss_sequential(model, codes: CodeSource, x: torch.Tensor, y: torch.Tensor, archs, scale: float = 1.0) -> float:
    """The same, one group after another (the reference; memory: one group's activations at a time)."""
    total, params = 0.0, list(codes.parameters())
    for group in simplex_groups(x, y, archs):
        loss = group_loss(model, codes, group, len(archs))
        (loss if scale == 1.0 else loss * scale).backward(inputs=params)
        total += float(loss.detach())
    return total


def simplex_loss_threaded(model, codes: CodeSource, x: torch.Tensor, y: torch.Tensor, archs, workers: ThreadWorkers,
                          scale: float = 1.0, autocast: Callable[[], ContextManager] = nullcontext) -> float:
    """The sequential step with its groups run side by side on `workers` (runtime.ThreadWorkers: one
    intra-op thread per group), the CPU default: each group's simplex-net gradient is computed on its own
    (`autograd.grad`), then added into the parameters' gradients in group order, as the sequential step
    adds them, so the result does not depend on the number of workers. `autocast` is entered in each
    worker (autocast state is per thread)."""
    params = list(codes.parameters())

    def run(group):
        with autocast():
            loss = group_loss(model, codes, group, len(archs))
        grads = torch.autograd.grad(loss if scale == 1.0 else loss * scale, params, allow_unused=True)
        return float(loss.detach()), grads

    total = 0.0
    for loss, grads in workers.map(run, simplex_groups(x, y, archs)):
        total += loss
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)
    return total


def resolve_simplex_step(cfg: RunConfig, device: torch.device, grouped: bool, narrow: bool = False) -> Tuple[str, int]:
    """How this run computes its simplex-net steps, resolved once: (strategy, worker threads), the strategy
    one of SIMPLEX_STEPS. `simplex_threads` = -1 (automatic): on a CPU the m paths on torch's intra-op
    thread count of workers (at most m), and with one thread the sequential step on the main thread (the
    same bits as one worker, and faster: docs/design.md), except for a `narrow` supernet (its CPU paths for
    narrow networks, NB201 at C <= 8), where the batched pass is faster on one thread; on a GPU the batched
    pass. 0: batched where the supernet has a grouped pass (`grouped`) and `simplex_batched`, else sequential.
    N > 0: N CPU workers."""
    if cfg.simplex_threads > 0 and device.type != "cpu":
        raise UserError(f"simplex_threads={cfg.simplex_threads} runs the simplex-net step's paths on CPU threads, "
                        f"but this run is on {device}", fix="set simplex_threads=-1 (automatic) or 0 on a GPU")
    if cfg.simplex_threads == -1 and device.type == "cpu":
        n = min(torch.get_num_threads(), cfg.simplex_paths)
        if n > 1:
            return "threaded", n
        return ("batched" if narrow and grouped and cfg.simplex_batched else "sequential"), 0
    if cfg.simplex_threads > 0:
        return "threaded", cfg.simplex_threads
    return ("batched" if cfg.simplex_batched and grouped else "sequential"), 0


def resolve_simplex_threads(cfg: RunConfig, device: torch.device) -> int:
    """Worker threads of the simplex-net step (0: it runs on the main thread)."""
    return resolve_simplex_step(cfg, device, grouped=True)[1]


# strategy -> the Trainer method that back-propagates the simplex-net loss of one micro-batch
SIMPLEX_STEPS = {"threaded": "simplex_loss_threaded", "batched": "simplex_loss_batched",
                 "sequential": "simplex_loss_sequential"}


class Trainer:
    """Supernet + simplex-net training in one process or under torchrun (`dist`).

    Under torchrun every process runs the same step: the same path and simplex paths (seeded by the
    step), its contiguous share of the same global batch (`cfg.batch_size` is global), and gradients
    averaged over the processes before each update (`Dist.average_grads`, supernet and simplex-net),
    so every process holds the same weights; the main process writes the log and checkpoints.
    Batch norm uses each process's own batch statistics (no SyncBN): with N processes the BN batch is
    batch_size/N. One process computes exactly that (to float rounding) with `micro_batches=N`: each
    part of the batch is a forward/backward of its own (its own BN statistics), the gradients averaged.
    A run records its BN part size and refuses a resume that would change it."""

    def __init__(self, cfg: RunConfig, run_dir: Path, splits: Splits, device: torch.device, progress: bool = True,
                 dist: Optional[Dist] = None):
        self.dist = dist or Dist()
        self.cfg, self.run_dir, self.device = cfg, Path(run_dir), device
        self.config_hash = run_hash(cfg, self.run_dir, SCORING_FIELDS)  # the run's name, kept from its start
        self.progress = progress and self.dist.is_main
        self.parts = self.dist.world_size * cfg.micro_batches  # BN parts of the global batch
        self.bf16 = use_bf16(cfg.train_precision, device)  # autocast of the supernet and simplex-net forwards
        self._workers: Optional[ThreadWorkers] = None  # started by the first threaded simplex-net step
        if cfg.batch_size % self.parts or cfg.batch_size // self.parts < cfg.simplex_paths:
            raise UserError(f"batch_size={cfg.batch_size} does not split into {self.dist.world_size} processes x "
                            f"{cfg.micro_batches} micro-batches of at least simplex_paths={cfg.simplex_paths} images",
                            fix="use a process count (and micro_batches) that divides batch_size, or raise batch_size")
        if cfg.k > 1 and cfg.kshot_init == "identical" and cfg.code == "simplex":
            warnings.warn("kshot_init=identical: equal copies get equal gradients and stay equal, so the "
                          "simplex-net gets no gradient and the run is a one-shot supernet with K-times smaller "
                          "steps (docs/design.md); use kshot_init=independent for K-shot training", stacklevel=2)
        self.space = SPACES.get(cfg.space)
        self.info = DATASETS.get(cfg.dataset)
        torch.manual_seed(cfg.seed)
        self.model = build_supernet(cfg).to(device)
        self.machines = [machine_label(machine_info(device))]  # every machine this run trained on, in order
        self.simplex_strategy, self.simplex_threads = resolve_simplex_step(
            cfg, device, getattr(self.model, "GROUPED_PASS", False), getattr(self.model, "narrow", False))
        self.codes = build_code_source(cfg).to(device)
        self.loader = splits.train_loader(self.info, cfg.batch_size, cfg.seed, device, cfg.train_subset,
                                          cfg.loader_workers)
        n_train = self.loader.n_images
        if len(self.loader) == 0:
            raise UserError(f"the training part has {n_train} images, fewer than one batch of {cfg.batch_size}",
                            fix="lower batch_size or use more training images")
        self.params = list(self.model.parameters())
        # offpath_update=decay: which weights have had a gradient (from then on SGD updates them every step)
        self.used = [False] * len(self.params)
        self.opt = torch.optim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum,
                                   nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
        self.simplex_opt = (torch.optim.Adam(self.codes.parameters(), lr=cfg.simplex_lr)
                            if self.codes.trainable else None)
        self.steps_per_epoch = len(self.loader)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup_steps = cfg.warmup_epochs * self.steps_per_epoch
        self.epoch, self.step_in_epoch = 0, 0
        self.meters = self._fresh_meters()
        self.source = splits.source

    # ------------------------------------------------------------------ schedule & sampling
    def lr_at(self, step: int) -> float:
        c = self.cfg
        return c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * step / max(1, self.total_steps)))

    def sample(self, rng: np.random.Generator):
        return self.space.sample(rng, self.cfg.unique_sampling, widths=uses_widths(self.cfg), sampling=self.cfg.sampling)

    def path(self, step: int):
        return self.sample(step_rng(self.cfg.seed, STREAM_PATH, step))

    def _fresh_meters(self) -> Dict[str, float]:
        return {"loss": 0.0, "correct": 0.0, "images": 0.0, "steps": 0.0, "simplex_loss": 0.0, "simplex_steps": 0.0,
                "rc": 0.0, "time": 0.0}

    def probe_code_stats(self) -> Dict[str, float]:
        """Code statistics (simplex.code_stats) of the codes in use on a fixed seeded set of archs:
        1/K during warm-up, the code source's codes after it."""
        k = self.cfg.k
        if self.epoch < self.cfg.warmup_epochs:
            return code_stats(torch.full((PROBE_ARCHS, k), 1.0 / k))
        rng = np.random.default_rng(PROBE_SEED)
        archs = [self.sample(rng) for _ in range(PROBE_ARCHS)]
        with torch.no_grad():
            stats = code_stats(self.codes(archs).cpu())
            if uses_widths(self.cfg):  # how much the code moves with the widths alone, same ops
                variants = [v for a in archs[:64] for v in self.space.width_variants(a, rng, 4)]
                codes = self.codes(variants).cpu().view(64, 4, -1)
                stats["code_width_spread"] = float(0.5 * torch.cdist(codes.double(), codes.double(), p=1).mean() * 4 / 3)
        return stats

    # ------------------------------------------------------------------ steps
    def iteration(self, x: torch.Tensor, y: torch.Tensor, step: int) -> None:
        """Algorithm 1 on one batch: the supernet step, then (after warm-up, every simplex_interval) a
        simplex-net step on the same batch."""
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(step)
        x = device_layout(x, self.device)
        self.supernet_step(x, y, step)
        if self.simplex_due(step) and self.cfg.simplex_step == "separate":
            self.simplex_step(x, y, step)

    def simplex_due(self, step: int) -> bool:
        """The simplex-net learns at this step (after warm-up, every simplex_interval steps, a trainable source)."""
        return (self.simplex_opt is not None and step >= self.warmup_steps
                and (step - self.warmup_steps) % self.cfg.simplex_interval == 0)

    def warmup_code(self, step: int) -> torch.Tensor:
        """The code of warm-up step `step` (`warmup_code`): 1/K, or a seeded Dirichlet(1) draw."""
        if self.cfg.warmup_code == "uniform":
            return torch.full((self.cfg.k,), 1.0 / self.cfg.k, device=self.device)
        draw = WARMUP_CODES.get(self.cfg.warmup_code)
        return draw(self.cfg.k, step_rng(self.cfg.seed, STREAM_WARMUP_CODE, step)).to(self.device)

    def supernet_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> None:
        """One path on the whole batch. With `simplex_step=joint` on a simplex step, the code is not detached: the
        same backward gives the simplex-net its gradient, and it steps too."""
        arch = self.path(step)
        joint = self.cfg.simplex_step == "joint" and self.simplex_due(step)
        if step < self.warmup_steps:
            code = self.warmup_code(step)
        elif not joint:
            with torch.no_grad():
                code = self.codes([arch])[0]
        self.opt.zero_grad(set_to_none=True)
        if joint:
            self.simplex_opt.zero_grad(set_to_none=True)
        m, scale = self.meters, 1.0 / self.cfg.micro_batches
        total = 0.0
        for xp, yp in self.micro(x, y):
            with self.autocast():
                if joint:
                    code = self.codes([arch])[0]
                logits = self.model(xp, arch, code)
            loss = F.cross_entropy(logits.float(), yp)
            (loss if scale == 1.0 else loss * scale).backward()
            total += float(loss.detach()) * scale
            m["loss"] += float(loss.detach()) * len(yp)
            m["correct"] += float((logits.argmax(1) == yp).sum())
            m["images"] += len(yp)
        self.dist.average_grads(self.params)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        if self.cfg.offpath_update == "decay":
            self.fill_offpath_grads()
        self.opt.step()
        m["steps"] += 1
        if joint:
            self.finish_simplex_step([arch], step_rng(self.cfg.seed, STREAM_SIMPLEX, step), total)

    def finish_simplex_step(self, archs, rng: np.random.Generator, loss: float) -> None:
        """The end of a simplex-net step (separate or joint), its loss already back-propagated: r_c over the archs'
        width settings (a space with widths; the same on every process, so the mean keeps it), the all-reduce,
        Adam, the meters."""
        if uses_widths(self.cfg) and self.cfg.rc_weight > 0:
            rc = channel_regulariser_loss(self.codes, self.space, archs, rng, self.cfg)
            (self.cfg.rc_weight * rc).backward(inputs=list(self.codes.parameters()))
            self.meters["rc"] += float(rc.detach())
        self.dist.average_grads(list(self.codes.parameters()))
        self.simplex_opt.step()
        self.meters["simplex_loss"] += loss
        self.meters["simplex_steps"] += 1

    def fill_offpath_grads(self) -> None:
        """`offpath_update=decay`: a weight that has had a gradient in an earlier step but has none now (off the
        sampled path) gets a zero gradient, so that SGD gives it weight decay and momentum this step, as SGD did
        with `zero_grad()` filling gradients with zeros. After the all-reduce and the clip: the zeros change
        neither (every process takes the same path, so they are the same on every process)."""
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.used[i] = True
            elif self.used[i]:
                p.grad = torch.zeros_like(p)

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def autocast(self):
        return bf16_autocast(self.device, self.bf16)

    def micro(self, x: torch.Tensor, y: torch.Tensor):
        """This process's batch in `micro_batches` equal parts (one part: the batch itself)."""
        if self.cfg.micro_batches == 1:
            return [(x, y)]
        return list(zip(x.chunk(self.cfg.micro_batches), y.chunk(self.cfg.micro_batches)))

    def simplex_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> None:
        """m paths on m groups of b/m images, the mean of the groups' losses into sigma only."""
        rng = step_rng(self.cfg.seed, STREAM_SIMPLEX, step)
        m = self.cfg.simplex_paths
        archs = [self.sample(rng) for _ in range(m)]
        self.simplex_opt.zero_grad(set_to_none=True)
        total, scale = 0.0, 1.0 / self.cfg.micro_batches
        loss_fn = getattr(self, SIMPLEX_STEPS[self.simplex_strategy])
        for xp, yp in self.micro(x, y):
            total += loss_fn(xp, yp, archs, scale) * scale
        self.finish_simplex_step(archs, rng, total)

    def simplex_loss_batched(self, x: torch.Tensor, y: torch.Tensor, archs, scale: float = 1.0) -> float:
        if len(y) % len(archs):  # the batch does not split into equal groups: the reference
            return self.simplex_loss_sequential(x, y, archs, scale)
        with self.autocast():
            return simplex_loss_batched(self.model, self.codes, x, y, archs, scale)

    def simplex_loss_sequential(self, x: torch.Tensor, y: torch.Tensor, archs, scale: float = 1.0) -> float:
        with self.autocast():
            return simplex_loss_sequential(self.model, self.codes, x, y, archs, scale)

    def simplex_loss_threaded(self, x: torch.Tensor, y: torch.Tensor, archs, scale: float = 1.0) -> float:
        if self._workers is None:
            self._workers = ThreadWorkers(self.simplex_threads)
        return simplex_loss_threaded(self.model, self.codes, x, y, archs, self._workers, scale, self.autocast)

    @property
    def simplex_mode(self) -> str:
        """How this run computes its simplex-net steps (recorded with the run's figures)."""
        return f"threads({self.simplex_threads})" if self.simplex_strategy == "threaded" else self.simplex_strategy

    # ------------------------------------------------------------------ loop
    def fit(self, stop_at_step: Optional[int] = None, until_epoch: Optional[int] = None) -> Dict[str, float]:
        """Train to the end, or to the end of epoch `until_epoch` (a checkpoint, no supernet.pt: a later
        call continues). `stop_at_step` (tests) raises KeyboardInterrupt at that global step."""
        from kshot_bench.loop import run_epochs

        self.model.train()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        last = self.cfg.epochs if until_epoch is None else min(until_epoch, self.cfg.epochs)
        run_epochs(self, last, self.iteration, stop_at_step)
        if self.epoch == self.cfg.epochs:
            self.save_final()
        self.dist.barrier()  # the main process has written the log and files before any process reads them
        return self.read_log()[-1] if self.read_log() else {}

    def _end_epoch(self) -> None:
        m = self.meters
        if self.dist.active:  # the epoch's figures over every process's images
            keys = ("loss", "correct", "images", "simplex_loss", "rc")
            for key, total in zip(keys, self.dist.sum([m[key] for key in keys])):
                m[key] = total if key in ("loss", "correct", "images") else total / self.dist.world_size
        if self.dist.is_main:
            self._write_log_row(m)
        self.epoch += 1
        self.step_in_epoch = 0
        self.meters = self._fresh_meters()
        if self.epoch in parse_snapshot_epochs(self.cfg):
            self.save_snapshot()
        self.save_checkpoint()

    def _write_log_row(self, m: Dict[str, float]) -> None:
        row = {
            "epoch": self.epoch + 1,
            "phase": "warmup" if self.epoch < self.cfg.warmup_epochs else ("kshot" if self.cfg.k > 1 else "oneshot"),
            "lr": self.lr_at((self.epoch + 1) * self.steps_per_epoch - 1),
            "train_loss": m["loss"] / max(1, m["images"]),
            "train_acc": 100.0 * m["correct"] / max(1, m["images"]),
            "simplex_loss": m["simplex_loss"] / m["simplex_steps"] if m["simplex_steps"] else "",
            "rc": m.get("rc", 0.0) / m["simplex_steps"] if m["simplex_steps"] and uses_widths(self.cfg) else "",
            **self.probe_code_stats(),
            **weight_stats(self.model),
            "images": int(m["images"]),
            "time_s": m["time"],
            "images_per_s": m["images"] / m["time"] if m["time"] else 0.0,
            "peak_mem_mb": peak_memory_mb(self.device),
        }
        append_log_row(self.run_dir / LOG, row, LOG_FIELDS)

    def read_log(self) -> List[Dict[str, str]]:
        path = self.run_dir / LOG
        if not path.exists():
            return []
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))

    # ------------------------------------------------------------------ persistence
    def state(self) -> Dict:
        return {
            "config": self.cfg.to_dict(),
            "config_hash": self.config_hash,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "meters": dict(self.meters),
            "model": self.model.state_dict(),
            "codes": self.codes.state_dict(),
            "opt": self.opt.state_dict(),
            "simplex_opt": self.simplex_opt.state_dict() if self.simplex_opt else None,
            "torch_rng": torch.get_rng_state(),
            "log_rows": len(self.read_log()),
            "bn_parts": self.parts,
            "train_precision": self.precision,
            "simplex_step": self.simplex_mode,
            "machines": self.machines,
            "used": list(self.used),
        }

    def save_checkpoint(self) -> None:
        """Every process calls it (at the same step); under torchrun the meters of every process go
        into the file, and the main process writes it."""
        rank_meters = self.dist.all_gather(dict(self.meters))
        if self.dist.is_main:
            atomic_save({**self.state(), "rank_meters": rank_meters}, self.run_dir / CHECKPOINT)

    def _used_from_optimizer(self) -> List[bool]:
        """A checkpoint written before `used` was kept: the weights SGD has a momentum buffer for (every weight
        that has had a gradient, when momentum > 0; with momentum 0 such checkpoints were only ever `none` runs,
        for which `used` is not read)."""
        return [self.opt.state.get(p, {}).get("momentum_buffer") is not None for p in self.params]

    def weights(self) -> Dict:
        """What scoring needs: config, supernet weights, code source, epochs trained."""
        return {"config": self.cfg.to_dict(), "config_hash": self.config_hash, "model": self.model.state_dict(),
                "codes": self.codes.state_dict(), "epochs": self.epoch, "data": self.source, "machine": machine_info(self.device),
                "train_precision": self.precision, "simplex_step": self.simplex_mode, "train_machines": self.machines}

    def save_final(self) -> None:
        if self.dist.is_main:
            atomic_save(self.weights(), self.run_dir / FINAL)

    def save_snapshot(self) -> Path:
        """`snapshots/epoch-EEE.pt`: the weights after epoch E, scored like a final supernet.pt."""
        path = self.run_dir / SNAPSHOTS / snapshot_name(self.epoch)
        if self.dist.is_main:
            path.parent.mkdir(exist_ok=True)
            atomic_save(self.weights(), path)
        return path

    def resume(self) -> bool:
        """Load `checkpoint.pt` from the run directory; False when there is none."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        state = load_checkpoint(path, self.device)
        # processes x micro_batches is what the computation depends on (checked next), not either alone
        check_same_config(self.cfg, state["config"], path, ignore=SCORING_FIELDS + ("micro_batches",))
        if state.get("train_precision", "fp32") != self.precision:
            raise UserError(f"checkpoint {path} was trained in {state.get('train_precision', 'fp32')}; this run would "
                            f"train in {self.precision} (train_precision={self.cfg.train_precision} on {self.device.type})",
                            fix=f"resume with --set train_precision={state.get('train_precision', 'fp32')}, or start a "
                                "new --out directory")
        parts = state.get("bn_parts", 1)
        if parts != self.parts:
            raise UserError(f"checkpoint {path} was trained with batch norm over {parts} part(s) of each batch "
                            f"(processes x micro_batches); this run would use {self.parts} ({self.dist.world_size} "
                            f"process(es) x micro_batches={self.cfg.micro_batches}), a different computation",
                            fix=f"resume with processes x micro_batches = {parts}, or start a new --out directory")
        self.model.load_state_dict(state["model"])
        self.codes.load_state_dict(state["codes"])
        self.opt.load_state_dict(state["opt"])
        if self.simplex_opt is not None:
            self.simplex_opt.load_state_dict(state["simplex_opt"])
        torch.set_rng_state(state["torch_rng"])
        self.used = list(state["used"]) if "used" in state else self._used_from_optimizer()
        self.epoch, self.step_in_epoch, self.meters = state["epoch"], state["step_in_epoch"], state["meters"]
        past = list(state.get("machines") or [MACHINES_NOT_RECORDED])
        self.machines = past if past[-1] == self.machines[-1] else past + self.machines[-1:]
        if "rank_meters" in state:
            self.meters = dict(state["rank_meters"][self.dist.rank])
        rows = self.read_log()[: state["log_rows"]]  # drop rows written after this checkpoint
        self.dist.barrier()  # every process has read the log before the main one rewrites it
        if rows and self.dist.is_main:
            rewrite_log(self.run_dir / LOG, rows, LOG_FIELDS)
        return True


