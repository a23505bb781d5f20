"""`kshot-bench` command line: argparse subcommands, imports deferred to the chosen command.

Errors in user input (`UserError`) print as `error: ...` plus a `fix:` line and exit with status 2;
Ctrl-C during training saves a checkpoint and exits with status 130.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from kshot_bench.errors import UserError

DATASET_CHOICES = ("cifar10", "cifar100", "ImageNet16-120")


def _run_options(p: argparse.ArgumentParser, preset_default: str = "cpu") -> None:
    p.add_argument("--dataset", default="cifar10", help="cifar10 | cifar100 | ImageNet16-120 (default cifar10)")
    p.add_argument("--k", type=int, default=None, help="number of weight copies K (default 4; 1 = one-shot)")
    p.add_argument("--code", default=None, help="code mode: simplex | uniform | random (default simplex)")
    p.add_argument("--preset", default=preset_default, help=f"nb201 | cpu | smoke (default {preset_default})")
    p.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    p.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE",
                   help="override one config field, e.g. --set epochs=3 (repeatable)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _config(args, **extra):
    from kshot_bench.config import from_preset, override, parse_sets

    cfg = from_preset(args.preset, dataset=args.dataset, k=args.k, code=args.code, seed=args.seed, **extra)
    return override(cfg, parse_sets(args.sets))


# ----------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from kshot_bench.data import load_dataset
    from kshot_bench.train import CHECKPOINT, FINAL, Trainer, machine_info, pick_device, write_config

    cfg = _config(args)
    out = Path(args.out)
    if (out / CHECKPOINT).exists() and not args.resume:
        raise UserError(f"{out} already holds a training run", fix="pass --resume to continue it, or choose another --out")
    if args.resume and (out / FINAL).exists():
        print(f"{out} is already finished ({FINAL} exists); nothing to do")
        return 0
    device = pick_device(args.device)
    splits = load_dataset(cfg.dataset, args.data_root)
    trainer = Trainer(cfg, out, splits, device, progress=not args.quiet)
    resumed = trainer.resume() if args.resume else False
    write_config(cfg, out, {"data": splits.source, "machine": machine_info(device)})
    print(f"train: {cfg.dataset} K={cfg.k} code={cfg.code} preset={args.preset} (config {cfg.hash()}) -> {out}"
          + (f", resumed at epoch {trainer.epoch + 1} step {trainer.step_in_epoch}" if resumed else ""))
    print(f"data: {splits.source}")
    try:
        last = trainer.fit()
    except KeyboardInterrupt:
        print(f"\ninterrupted at epoch {trainer.epoch + 1}, step {trainer.step_in_epoch}; checkpoint saved in {out}.\n"
              f"resume with the same command plus --resume", file=sys.stderr)
        return 130
    print(f"done: {cfg.epochs} epochs; last epoch train_loss {float(last['train_loss']):.4f} "
          f"train_acc {float(last['train_acc']):.2f}%  ({out / FINAL})")
    return 0


# ----------------------------------------------------------------------------- cost
def cmd_cost(args) -> int:
    from kshot_bench.datasets import DATASETS
    from kshot_bench.search_space import nb201

    info = DATASETS.get(args.dataset)
    if args.arch is not None:
        archs = [nb201.from_str(args.arch)]
    elif args.index is not None:
        archs = [nb201.from_index(i) for i in args.index]
    else:
        archs = nb201.all_archs()
    out = sys.stdout
    out.write("index,arch_str,params,flops\n")
    for arch in archs:
        params, flops = nb201.cost(arch, info.num_classes, info.input_size)
        out.write(f"{nb201.to_index(arch)},{nb201.to_str(arch)},{params},{flops}\n")
    return 0


# ----------------------------------------------------------------------------- parser
EXAMPLES = {
    "train": """examples:
  kshot-bench train --dataset cifar10 --k 4 --code simplex --preset cpu --data-root ~/data/cifar10 --out runs/k4
  kshot-bench train ... --out runs/k4 --resume          # continue an interrupted run
  kshot-bench train ... --preset smoke --set epochs=3    # override single config fields""",
    "cost": """examples:
  kshot-bench cost --dataset cifar10 --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
  kshot-bench cost --dataset ImageNet16-120 --index 0 6111
  kshot-bench cost --dataset cifar100 --all > costs.csv
columns: params = parameter count, flops = multiply-adds of one image's forward pass (NB201 convention)""",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kshot-bench", description="K-shot NAS supernets and ranking benchmarks on NAS-Bench-201.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("train", help="train a K-shot supernet and simplex-net", epilog=EXAMPLES["train"], formatter_class=fmt)
    _run_options(p)
    p.add_argument("--data-root", type=Path, required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="run directory (config, log, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("cost", help="parameters and FLOPs of NB201 archs as CSV", epilog=EXAMPLES["cost"], formatter_class=fmt)
    p.add_argument("--dataset", default="cifar10", choices=DATASET_CHOICES)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--arch", help="an official NB201 arch string")
    g.add_argument("--index", type=int, nargs="+", help="one or more NB201 indices")
    g.add_argument("--all", action="store_true", help="all 15,625 archs")
    p.set_defaults(func=cmd_cost)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {err.problem}", file=sys.stderr)
        if err.fix:
            print(f"  fix: {err.fix}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `kshot-bench cost --all | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
