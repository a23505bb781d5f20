"""Retrain a searched MobileNetV2 arch from scratch and evaluate it (paper Sec. 5.1, SPEC 7).

`kshot-bench retrain --arch STR --data-root IMAGENET`: the stand-alone network of the arch
(`MBV2Network`) on the whole of ImageNet train (no local validation split: the search is over), with the
paper's recipe (preset `imagenet`): RMSProp (momentum 0.9, alpha 0.9, eps 1e-3), batch 1024, lr linear
0 -> 0.128 over 5 epochs then x0.97 every 2.4 epochs (per step), weight decay 1e-5 on conv and linear
weights only (not BN, not biases), label smoothing 0.1, dropout 0.2, EMA of the weights with decay
0.9999 (`torch.optim.swa_utils`, buffers included), bf16 autocast on CUDA. The paper does not state the
retraining epochs; the preset takes 350, the RMSProp recipe's usual length (a config field).
`kshot-bench evaluate --checkpoint RUN/retrained.pt --data-root IMAGENET`: top-1/top-5 on the official
val set (resize 256/224, center crop), EMA weights by default.

One loop, the supernet's habits: the data order and each image's augmentation are seeded
(`FolderLoader`), a checkpoint every `checkpoint_every` steps and at each epoch end (atomic), exact
resume, per-epoch `log.csv`, progress bars, and torchrun (each process its share of the global batch,
gradients averaged by `Dist.average_grads`, the main process writes). BN running statistics: each
process tracks its own; the saved network carries the main process's, which is what DDP's default
buffer broadcast would give.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kshot_bench.config import config_hash, override
from kshot_bench.distributed import Dist
from kshot_bench.errors import UserError
from kshot_bench.loop import append_log_row
from kshot_bench.registry import Registry
from kshot_bench.runtime import bf16_autocast, use_bf16

LOG = "log.csv"
CHECKPOINT = "checkpoint.pt"
FINAL = "retrained.pt"
LOG_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "images", "time_s", "images_per_s"]


@dataclass(frozen=True)
class RetrainConfig:
    arch: str = ""
    seed: int = 0
    epochs: int = 350
    batch_size: int = 1024          # global
    lr: float = 0.128               # after warm-up, for the global batch
    warmup_epochs: float = 5.0
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    momentum: float = 0.9
    rms_alpha: float = 0.9
    rms_eps: float = 1e-3
    weight_decay: float = 1e-5
    label_smoothing: float = 0.1
    dropout: float = 0.2
    net_scale: float = 1.0          # channel counts x this (search_space.mbv2.macro); 1.0 = the paper's network
    ema_decay: float = 0.9999
    bn_recal_images: int = 10000    # after training, the EMA network's BN statistics re-estimated on this many
                                    # training images (0: keep the averaged running statistics)
    image_size: int = 224
    amp: str = "auto"               # auto: bf16 autocast on CUDA, fp32 elsewhere | bf16 | fp32
    train_subset: int = 0           # 0 = all of train/
    loader_workers: int = -1
    checkpoint_every: int = 500

    def __post_init__(self):
        from kshot_bench.search_space import mbv2

        mbv2.from_str(self.arch) if self.arch else None
        mbv2.macro(self.net_scale)
        for name in ("epochs", "batch_size", "image_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}", fix=f"set {name} to a positive integer")
        if not 0 <= self.ema_decay < 1 or self.amp not in ("auto", "bf16", "fp32"):
            raise UserError(f"ema_decay must lie in [0, 1) and amp be auto|bf16|fp32 (got {self.ema_decay}, {self.amp!r})",
                            fix="e.g. --set ema_decay=0.9999 --set amp=auto")

    def to_dict(self):
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return config_hash(self.to_dict(), LATER_FIELDS)


LATER_FIELDS = {"net_scale": 1.0, "bn_recal_images": 10000}  # field -> default, for fields added after runs were made


# `imagenet`: the paper's recipe (above). `cpu`: the CIFAR-10 images in ImageNet layout at 32x32, the network at
# half its channels as the `cpu` supernet preset, a seeded 25,000 of the training images, 10 epochs of
# batch 128 with the lr scaled linearly to the batch (0.128 * 128/1024), 1 warm-up epoch, and EMA decay 0.999
# (at 0.9999 an average over ~10,000 steps would still be mostly the initial weights after 1,950 steps).
# `smoke`: seconds, for tests (a quarter of the channels).
RETRAIN_PRESETS: Registry[Dict] = Registry("retrain preset")
RETRAIN_PRESETS.register("imagenet", {})
RETRAIN_PRESETS.register("cpu", dict(net_scale=0.5, train_subset=25000, epochs=10, batch_size=128, lr=0.016,
                                     warmup_epochs=1.0, ema_decay=0.999,
                                     image_size=32, checkpoint_every=100))
RETRAIN_PRESETS.register("smoke", dict(net_scale=0.25, epochs=2, batch_size=16, lr=0.01, warmup_epochs=1.0, ema_decay=0.9,
                                       image_size=32, train_subset=48, checkpoint_every=2))


def retrain_config(preset: str, **changes) -> RetrainConfig:
    return override(override(RetrainConfig(arch=changes.get("arch", "")), RETRAIN_PRESETS.get(preset)),
                    {k: v for k, v in changes.items() if v is not None})


def full_train_set(root: Path, image_size: int):
    """All of ImageNet train/ with the training augmentation (`TensorResizedCrop`); val/ must be there too,
    for `evaluate`, so a missing one is reported before a long run rather than after it."""
    from torchvision.datasets import ImageFolder

    from kshot_bench.imagenet_data import IMAGENET_LAYOUT, TensorResizedCrop, _read_bytes

    root = Path(root).expanduser()
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise UserError(f"no ImageNet {part}/ folder under {root}", fix=f"expected {IMAGENET_LAYOUT}")
    return ImageFolder(str(root / "train"), transform=TensorResizedCrop(image_size), loader=_read_bytes)


def test_set(root: Path, image_size: int):
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    tf = T.Compose([T.Resize(int(image_size * 256 / 224)), T.CenterCrop(image_size), T.PILToTensor()])
    return ImageFolder(str(Path(root).expanduser() / "val"), transform=tf)


def lr_at(cfg: RetrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up from 0, then x decay_rate every decay_epochs (counted from the start), per step."""
    epoch = step / steps_per_epoch
    if epoch < cfg.warmup_epochs:
        return cfg.lr * epoch / cfg.warmup_epochs
    return cfg.lr * cfg.decay_rate ** math.floor(epoch / cfg.decay_epochs)


class Retrainer:
    def __init__(self, cfg: RetrainConfig, run_dir: Path, data_root: Path, device: torch.device,
                 progress: bool = True, dist: Optional[Dist] = None):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        from kshot_bench.imagenet_data import FolderLoader, folder_subset
        from kshot_bench.search_space import mbv2
        from kshot_bench.supernet.mbv2 import MBV2Network

        if not cfg.arch:
            raise UserError("retrain needs an arch", fix="pass --arch STR (e.g. the best arch of a search's result.json)")
        self.cfg, self.run_dir, self.device, self.dist = cfg, Path(run_dir), device, dist or Dist()
        self.progress = progress and self.dist.is_main
        if cfg.batch_size % self.dist.world_size:
            raise UserError(f"batch_size={cfg.batch_size} does not split over {self.dist.world_size} processes",
                            fix="use a process count that divides batch_size")
        train = folder_subset(full_train_set(data_root, cfg.image_size), cfg.train_subset)
        self.loader = FolderLoader(train, cfg.batch_size, cfg.seed, device, cfg.loader_workers)
        if len(self.loader) == 0:
            raise UserError(f"train/ has {len(train)} images, fewer than one batch of {cfg.batch_size}",
                            fix="lower batch_size")
        self.n_train = len(train)
        torch.manual_seed(cfg.seed)
        self.model = MBV2Network(mbv2.from_str(cfg.arch), 1000, cfg.dropout, cfg.net_scale).to(device).to(memory_format=torch.channels_last)
        decay = [p for n, p in self.model.named_parameters() if p.dim() > 1]  # conv and linear weights
        rest = [p for n, p in self.model.named_parameters() if p.dim() <= 1]
        self.params = decay + rest
        self.opt = torch.optim.RMSprop([{"params": decay, "weight_decay": cfg.weight_decay},
                                        {"params": rest, "weight_decay": 0.0}], lr=0.0, alpha=cfg.rms_alpha,
                                       eps=cfg.rms_eps, momentum=cfg.momentum)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.bf16 = use_bf16(cfg.amp, device)
        self.steps_per_epoch = len(self.loader)
        self.epoch, self.step_in_epoch = 0, 0
        self.meters = {"loss": 0.0, "correct": 0.0, "images": 0.0, "time": 0.0}
        self.ema_bn = "averaged running statistics"

    def step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, step, self.steps_per_epoch)
        self.opt.zero_grad(set_to_none=True)
        with bf16_autocast(self.device, self.bf16):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing)
        loss.backward()
        self.dist.average_grads(self.params)
        self.opt.step()
        self.ema.update_parameters(self.model)
        m = self.meters
        m["loss"] += float(loss.detach()) * len(y)
        m["correct"] += float((logits.argmax(1) == y).sum())
        m["images"] += len(y)

    def fit(self, stop_at_step: Optional[int] = None) -> None:
        from kshot_bench.loop import run_epochs

        self.model.train()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        run_epochs(self, self.cfg.epochs, self.step, stop_at_step, desc="retrain")
        self.ema_bn = self.recalibrate_ema_bn()
        self.save(FINAL)
        self.dist.barrier()

    def recalibrate_ema_bn(self) -> str:
        """Re-estimate the BN statistics of the EMA network on `bn_recal_images` training images (the batches
        of a seeded epoch past the last, with the training augmentation; each process its share). Why: with
        use_buffers the EMA averages running statistics alongside weights, and when the weights still move
        fast relative to the EMA window (short runs) the averaged statistics do not fit the averaged weights:
        a 10-epoch CIFAR run's EMA network predicted one class for every image (top-1 10.00%, raw weights
        17.7%). At ImageNet scale (EMA 0.9999 over 350 epochs) the change is small. Returns a description."""
        n = self.cfg.bn_recal_images
        if n <= 0:
            return "averaged running statistics (bn_recal_images=0)"
        net = self.ema.module
        bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches
        net.train()
        seen, mine = 0, -(-n // self.dist.world_size)
        with torch.no_grad(), bf16_autocast(self.device, self.bf16):
            for x, _ in self.loader.epoch(self.cfg.epochs, 0, (self.dist.rank, self.dist.world_size)):
                net(x)
                seen += len(x)
                if seen >= mine:
                    break
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        return f"re-estimated on {seen * self.dist.world_size:,} training images after training"

    def save_checkpoint(self) -> None:
        self.save(CHECKPOINT)

    def _end_epoch(self) -> None:
        m = self.meters
        if self.dist.active:
            for key, total in zip(("loss", "correct", "images"), self.dist.sum([m["loss"], m["correct"], m["images"]])):
                m[key] = total
        if self.dist.is_main:
            row = {"epoch": self.epoch + 1, "lr": lr_at(self.cfg, (self.epoch + 1) * self.steps_per_epoch - 1,
                                                         self.steps_per_epoch),
                   "train_loss": m["loss"] / max(1, m["images"]), "train_acc": 100 * m["correct"] / max(1, m["images"]),
                   "images": int(m["images"]), "time_s": m["time"],
                   "images_per_s": m["images"] / m["time"] if m["time"] else 0.0}
            append_log_row(self.run_dir / LOG, row, LOG_FIELDS)
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.meters = {"loss": 0.0, "correct": 0.0, "images": 0.0, "time": 0.0}
        self.save(CHECKPOINT)

    def save(self, name: str) -> None:
        from kshot_bench.rundir import atomic_save

        rank_meters = self.dist.all_gather(dict(self.meters))
        if not self.dist.is_main:
            return
        state = {"kind": "retrain", "config": self.cfg.to_dict(), "arch": self.cfg.arch, "epoch": self.epoch,
                 "model": self.model.state_dict(), "ema": self.ema.module.state_dict()}
        if name == FINAL:
            state["ema_bn"] = self.ema_bn
        if name == CHECKPOINT:
            state.update(step_in_epoch=self.step_in_epoch, rank_meters=rank_meters, opt=self.opt.state_dict(),
                         ema_state=self.ema.state_dict(), torch_rng=torch.get_rng_state(), world_size=self.dist.world_size)
        atomic_save(state, self.run_dir / name)

    def resume(self) -> bool:
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        from kshot_bench.rundir import load_checkpoint

        state = load_checkpoint(path, self.device)
        if state.get("kind") != "retrain":
            raise UserError(f"{path} is not a retrain checkpoint", fix="resume a run directory that `retrain` wrote")
        saved = RetrainConfig(**state["config"])
        if dataclasses.replace(saved, loader_workers=self.cfg.loader_workers, checkpoint_every=self.cfg.checkpoint_every) != self.cfg:
            raise UserError(f"checkpoint {path} comes from a different retrain config",
                            fix="use the same arch, preset and --set values, or start a new --out directory")
        if state["world_size"] != self.dist.world_size:
            raise UserError(f"checkpoint {path} was written by {state['world_size']} process(es), not {self.dist.world_size} "
                            "(BN statistics are per process)", fix=f"resume with {state['world_size']} process(es)")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.ema.load_state_dict(state["ema_state"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.meters = dict(state["rank_meters"][self.dist.rank])
        return True


def evaluate(checkpoint: Path, data_root: Path, device: torch.device, weights: str = "ema", batch_size: int = 250,
             workers: int = -1, progress: bool = True, dist: Optional[Dist] = None) -> Dict:
    """Top-1 / top-5 (%) of a retrained network on the official val set; `weights` = ema | raw. Under
    torchrun (`dist`) each process evaluates every world_size-th image and the counts are summed."""
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from kshot_bench.imagenet_data import default_workers, normalize_batch
    from kshot_bench.search_space import mbv2
    from kshot_bench.supernet.mbv2 import MBV2Network

    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist", fix="pass the retrained.pt (or checkpoint.pt) of a retrain run")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception:
        state = None
    if not isinstance(state, dict) or state.get("kind") != "retrain":
        raise UserError(f"{path} is not a retrained network", fix="pass the retrained.pt that `kshot-bench retrain` wrote")
    cfg = RetrainConfig(**state["config"])
    model = MBV2Network(mbv2.from_str(state["arch"]), 1000, cfg.dropout, cfg.net_scale).to(device).to(memory_format=torch.channels_last)
    model.load_state_dict(state["ema" if weights == "ema" else "model"])
    model.eval()
    dist = dist or Dist()
    data = test_set(data_root, cfg.image_size)
    n_all = len(data)
    if dist.active:
        data = Subset(data, range(dist.rank, n_all, dist.world_size))
    loader = DataLoader(data, batch_size=batch_size, num_workers=default_workers() if workers < 0 else workers,
                        pin_memory=device.type == "cuda")
    top1 = top5 = n = 0
    with torch.inference_mode(), bf16_autocast(device, use_bf16(cfg.amp, device)):
        for x, y in tqdm(loader, disable=not (progress and dist.is_main), desc="evaluate", unit="batch", leave=False):
            y = y.to(device)
            best = model(normalize_batch(x, device)).float().topk(5, dim=1).indices
            top1 += int((best[:, 0] == y).sum())
            top5 += int((best == y[:, None]).any(1).sum())
            n += len(y)
    if dist.active:
        top1, top5, n = (int(round(v)) for v in dist.sum([top1, top5, n]))
    assert n == n_all, (n, n_all)
    return {"checkpoint": str(path), "arch": state["arch"], "weights": weights, "epochs": state["epoch"],
            "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "images": n, "image_size": cfg.image_size,
            "data": f"val/ of {data_root} (resize {int(cfg.image_size * 256 / 224)}, center crop {cfg.image_size})",
            "bn_statistics": (state.get("ema_bn", "averaged running statistics") if weights == "ema"
                              else "running statistics of training")}
