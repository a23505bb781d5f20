"""`kshot-bench` command line: argparse subcommands, imports deferred to the chosen command.

Errors in user input (`UserError`) print as `error: ...` plus a `fix:` line and exit with status 2;
Ctrl-C during training saves a checkpoint and exits with status 130.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from kshot_bench.cli_text import EXAMPLES, cmd_presets, code_modes, preset_help, rank_preset_help, registry_names, variant_names
from kshot_bench.errors import UserError
from kshot_bench.runtime import layout_name

def _space_option(p: argparse.ArgumentParser, default=None, extra: str = "") -> None:
    from kshot_bench.config import RunConfig

    p.add_argument("--space", default=default,
                   help=f"search space: {' | '.join(registry_names('space'))} (default {default or RunConfig.space}{extra})")


def _dataset_option(p: argparse.ArgumentParser, default="cifar10", extra: str = "") -> None:
    p.add_argument("--dataset", default=default, metavar="NAME",
                   help=f"{' | '.join(registry_names('dataset'))} (also imagenet16, cifar-10, ...; NB201: cifar10, cifar100, "
                        f"ImageNet16-120; Macro: cifar10; MobileNetV2: any of them); default {default}{extra}")



def _run_options(p: argparse.ArgumentParser, preset_text: Optional[str] = None) -> None:
    _space_option(p)
    _dataset_option(p)
    p.add_argument("--k", type=int, default=None, help="number of weight copies K (default 4; 1 = one-shot)")
    p.add_argument("--code", default=None, help=f"code mode: {' | '.join(code_modes())} (default simplex)")
    p.add_argument("--preset", default=None, help=preset_text or preset_help())
    p.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    p.add_argument("--variant", default=None,
                   help="a named simplex-net training variant (its fields after the preset's, before --set): "
                        + " | ".join(variant_names()) + " (docs/design.md, 'Simplex-net training variants')")
    p.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE",
                   help="override one config field, e.g. --set epochs=3 (repeatable)")
    _process_flags(p)


def _process_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--offline", action="store_true", help="never try to download a missing dataset")


def _default_preset(args) -> None:
    """No --preset: the space's preset for the embedded sample (no --data-root, nothing to load; NB201: `demo`),
    else `cpu`."""
    if args.preset is None:
        from kshot_bench.config import RunConfig
        from kshot_bench.search_space import SPACES

        space = SPACES.get(getattr(args, "space", None) or RunConfig.space)
        embedded = args.data_root is None and getattr(args, "checkpoint", None) is None
        args.preset = space.EMBEDDED_PRESET if embedded and space.EMBEDDED_PRESET else "cpu"


def _say_data(args, dataset: str) -> None:
    """Tell the user, first thing, when the run uses the embedded sample rather than their data."""
    if args.data_root is None and dataset == "cifar10":
        from kshot_bench.data import FULL_DATA_HINT

        print("data: the embedded CIFAR-10 sample shipped with the package (5,000 training / 1,000 scoring "
              f"images; preset {args.preset}); {FULL_DATA_HINT}")


def _config(args, **extra):
    from kshot_bench.config import from_preset, override, parse_sets

    _default_preset(args)
    cfg = from_preset(args.preset, space=getattr(args, "space", None), dataset=args.dataset, k=args.k, code=args.code,
                      seed=args.seed, **extra)
    if getattr(args, "variant", None):
        from kshot_bench.simplex import SIMPLEX_VARIANTS

        cfg = override(cfg, SIMPLEX_VARIANTS.get(args.variant))
    return override(cfg, parse_sets(args.sets))


# ----------------------------------------------------------------------------- train
def _finished(out: Path, resume: bool, checkpoint: str, final: str, what: str) -> bool:
    """Refuse to start over a run without --resume; True (after saying so) when a resumed run is done."""
    if (out / checkpoint).exists() and not resume:
        raise UserError(f"{out} already holds a {what} run", fix="pass --resume to continue it, or choose another --out")
    if resume and (out / final).exists():
        print(f"{out} is already finished ({final} exists); nothing to do")
        return True
    return False


def cmd_train(args) -> int:
    from kshot_bench.data import load_for
    from kshot_bench.distributed import Dist
    from kshot_bench.train import Trainer
    from kshot_bench.rundir import CHECKPOINT, FINAL, machine_info, write_config

    cfg = _config(args)
    out = Path(args.out)
    if _finished(out, args.resume, CHECKPOINT, FINAL, "training"):
        return 0
    if args.until_epoch is not None and args.until_epoch < 1:
        raise UserError(f"--until-epoch must be >= 1, got {args.until_epoch}", fix=f"pick an epoch in 1..{cfg.epochs}")
    dist = Dist.from_env()
    say = print if dist.is_main else (lambda *a, **k: None)
    try:
        device = dist.device(args.device)
        if dist.is_main:
            _say_data(args, cfg.dataset)
        splits = load_for(cfg, args.data_root, download=not args.offline) if dist.is_main else None
        dist.barrier()  # a download happens once, on the main process, before the others read the files
        splits = splits or load_for(cfg, args.data_root, download=False)
        trainer = Trainer(cfg, out, splits, device, progress=not args.quiet, dist=dist)
        resumed = trainer.resume() if args.resume else False
        if dist.is_main:
            write_config(cfg, out, {"data": splits.source, "machine": machine_info(device), "world_size": dist.world_size},
                         config_hash=trainer.config_hash)
        say(f"train: {cfg.dataset} K={cfg.k} code={cfg.code} preset={args.preset} (config {trainer.config_hash}) -> {out}"
            + (f", resumed at epoch {trainer.epoch + 1} step {trainer.step_in_epoch}" if resumed else "")
            + (f" ({dist.world_size} processes, {dist.backend}, {cfg.batch_size // dist.world_size} images each a step)"
               if dist.active else ""))
        say(f"data: {splits.source}")
        try:
            last = trainer.fit(until_epoch=args.until_epoch)
        except KeyboardInterrupt:
            where = ("checkpoint saved" if not dist.active else
                     f"the last checkpoint (every {cfg.checkpoint_every} steps and at every epoch end) is")
            print(f"\ninterrupted at epoch {trainer.epoch + 1}, step {trainer.step_in_epoch}; {where} in {out}.\n"
                  f"resume with the same command plus --resume", file=sys.stderr)
            return 130
    finally:
        dist.close()
    if not dist.is_main:
        return 0
    summary = (f"last epoch train_loss {float(last['train_loss']):.4f} train_acc {float(last['train_acc']):.2f}%"
               if last else "no epoch logged yet")
    if trainer.epoch < cfg.epochs:
        print(f"stopped after epoch {trainer.epoch} of {cfg.epochs} (--until-epoch); {summary}. "
              f"Continue with the same command plus --resume")
        return 0
    print(f"done: {cfg.epochs} epochs; {summary}  ({out / FINAL})")
    return 0


# ----------------------------------------------------------------------------- rank
def cmd_rank(args) -> int:
    from kshot_bench.distributed import Dist
    from kshot_bench.rank import rank_job
    from kshot_bench.results import print_table

    if args.scores is not None:
        from kshot_bench.cli_eval import rank_scores

        return rank_scores(args)
    if args.lower_is_better:
        raise UserError("--lower-is-better is for --scores files; a supernet's scores are accuracies (higher is better)",
                        fix="drop --lower-is-better, or rank by loss with --score loss")
    explicit = {"space": args.space, "dataset": args.dataset, "k": args.k, "code": args.code}
    if args.checkpoint is None:
        args.dataset = args.dataset or "cifar10"
    else:  # what the supernet was trained with, unless given (a given value must match: load_supernet checks)
        from kshot_bench.rundir import trained_config

        if args.checkpoint.is_file() or (args.checkpoint / "config.json").is_file():  # else rank says what is missing
            trained = trained_config(args.checkpoint)
            args.space, args.dataset = args.space or trained.space, args.dataset or trained.dataset
            args.k, args.code = args.k or trained.k, args.code or trained.code
    if args.variant is not None and args.checkpoint is not None:
        raise UserError("--variant sets how a supernet trains; --checkpoint scores one already trained",
                        fix="drop --variant (the checkpoint's training fields are recorded in its protocol)")
    scoring = {} if args.score_code is None else {"score_code": args.score_code}
    if args.score_protocol == "released":  # the released one-shot rankings' scoring (scoring.with_test_images)
        scoring.update(score_part="test", score_batch=512, bn_calibration=0,
                       score_images=0 if args.score_images is None else args.score_images)
    cfg = _config(args, archs=args.archs, score_by=args.score,
                  **{"score_images": args.score_images, **scoring})
    if args.archs is not None:  # the archs asked for, also at a run's last epoch (no preset's final_archs)
        cfg = cfg.replace(final_archs="")
    if args.checkpoint is not None and args.seed is None:
        cfg = cfg.replace(seed=0)
    dist = Dist.from_env()
    device = dist.device(args.device)
    out = Path(args.out or f"runs/rank-{cfg.dataset}-k{cfg.k}-{cfg.code}-{args.preset}-s{cfg.seed}")
    command = "kshot-bench " + shlex.join(args.argv)
    from kshot_bench.claims import claim, record, supernet_job

    curve = args.checkpoint is not None and args.checkpoint.is_dir()
    target = Path(args.out or f"runs/curve-{Path(args.checkpoint).name}") if curve else out
    job = supernet_job(cfg, args.checkpoint)
    claim(target, job, args.overwrite, write=dist.is_main)
    try:
        if curve:
            return _rank_snapshots(args, cfg, device, command, explicit, dist)
        return _rank_one(args, cfg, device, out, command, explicit, dist)
    finally:
        if dist.is_main:
            record(target, job)


def _rank_one(args, cfg, device, out: Path, command: str, explicit, dist) -> int:
    from kshot_bench.rank import rank_job
    from kshot_bench.results import print_table

    say = print if dist.is_main else (lambda *a, **k: None)
    say(f"rank: {cfg.space} on {cfg.dataset} K={cfg.k} code={cfg.code} preset={args.preset} archs={cfg.archs} -> {out}"
        + (f" ({dist.world_size} processes, {dist.backend})" if dist.active else ""))
    if dist.is_main:
        _say_data(args, cfg.dataset)
    try:
        metrics, baselines = rank_job(cfg, out, args.data_root, device, args.checkpoint, args.truth,
                                      expect=explicit if args.checkpoint else None, progress=not args.quiet,
                                      command=command, preset=args.preset, download=not args.offline, dist=dist)
    except KeyboardInterrupt:
        print(f"\ninterrupted; progress is saved in {out}. Run the same command again to continue.", file=sys.stderr)
        return 130
    finally:
        dist.close()
    if not dist.is_main:
        return 0
    if "kendall_tau" not in metrics:  # a space without ground truth: scores and code statistics
        print((out / "summary.md").read_text().split("## Protocol")[0].rstrip())
        print(f"results: {out}/summary.md, metrics.json, predictions.csv")
        return 0
    print_table(metrics, baselines)
    print(f"results: {out}/summary.md, metrics.json, baselines.json, predictions.csv, scatter.png")
    return 0


def _rank_snapshots(args, cfg, device, command: str, explicit, dist) -> int:
    from kshot_bench.rank import rank_snapshots

    say = print if dist.is_main else (lambda *a, **k: None)
    out = Path(args.out or f"runs/curve-{Path(args.checkpoint).name}")
    say(f"rank: every snapshot of the train run {args.checkpoint} (archs={cfg.archs}, {cfg.score_images or 'all'} "
        f"scoring images) -> {out}" + (f" ({dist.world_size} processes, {dist.backend})" if dist.active else ""))
    if dist.is_main:
        _say_data(args, cfg.dataset)
    try:
        path = rank_snapshots(cfg, args.checkpoint, out, args.data_root, device, args.truth, explicit,
                              progress=not args.quiet, command=command, preset=args.preset, download=not args.offline,
                              dist=dist)
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished snapshots are kept in {out}. Run the same command again to continue.",
              file=sys.stderr)
        return 130
    finally:
        dist.close()
    say(path.read_text().rstrip())
    say(f"results: {path} and one rank run per snapshot in {out}/epoch-*/")
    return 0


# ----------------------------------------------------------------------------- retrain & evaluate
def cmd_retrain(args) -> int:
    from kshot_bench.distributed import Dist
    from kshot_bench.config import parse_sets
    from kshot_bench.retrain import CHECKPOINT, FINAL, Retrainer, retrain_config
    from kshot_bench.rundir import machine_info, write_config

    cfg = retrain_config(args.preset, arch=args.arch, seed=args.seed, **parse_sets(args.sets))
    out = Path(args.out)
    if _finished(out, args.resume, CHECKPOINT, FINAL, "retrain"):
        return 0
    dist = Dist.from_env()
    try:
        device = dist.device(args.device)
        job = Retrainer(cfg, out, args.data_root, device, progress=not args.quiet, dist=dist)
        resumed = job.resume() if args.resume else False
        if dist.is_main:
            write_config(cfg, out, {"preset": args.preset, "train_images": job.n_train, "bf16": job.bf16,
                                    "world_size": dist.world_size, "machine": machine_info(device)})
            print(f"retrain: {cfg.arch} preset={args.preset} ({job.n_train:,} training images, {cfg.image_size}x"
                  f"{cfg.image_size}, {'bf16' if job.bf16 else 'fp32'}) -> {out}"
                  + (f", resumed at epoch {job.epoch + 1} step {job.step_in_epoch}" if resumed else ""))
        try:
            job.fit()
        except KeyboardInterrupt:
            print(f"\ninterrupted at epoch {job.epoch + 1}, step {job.step_in_epoch}; resume with the same command "
                  f"plus --resume", file=sys.stderr)
            return 130
    finally:
        dist.close()
    if dist.is_main:
        print(f"done: {cfg.epochs} epochs ({out / FINAL}); evaluate with: kshot-bench evaluate --checkpoint "
              f"{out / FINAL} --data-root {args.data_root}")
    return 0


def cmd_evaluate(args) -> int:
    from kshot_bench.distributed import Dist
    from kshot_bench.retrain import evaluate

    dist = Dist.from_env()  # under torchrun the processes share the val set
    try:
        result = evaluate(args.checkpoint, args.data_root, dist.device(args.device), args.weights,
                          progress=not args.quiet, dist=dist)
    finally:
        dist.close()
    if not dist.is_main:
        return 0
    result["world_size"] = dist.world_size
    path = Path(args.checkpoint).with_name(f"eval-{args.weights}.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['arch']}: top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  ({result['images']:,} images, "
          f"{args.weights} weights, {result['epochs']} epochs) -> {path}")
    return 0


# ----------------------------------------------------------------------------- ablate & report
def cmd_ablate(args) -> int:
    from kshot_bench.ablate import ABLATION_CODES, cells, run_ablation
    from kshot_bench.config import from_preset, override, parse_sets
    from kshot_bench.simplex import CODE_MODES
    from kshot_bench.runtime import pick_device

    for code in args.codes or []:
        CODE_MODES.get(code)
    args.k, args.seeds = args.k or [1, 2, 4, 8], args.seeds if args.seeds is not None else [0, 1, 2]
    if any(k < 1 for k in args.k):
        raise UserError(f"every K must be >= 1, got {args.k}", fix="e.g. --k 1 2 4 8")
    _default_preset(args)
    base = override(from_preset(args.preset, space=args.space, dataset=args.dataset, archs=args.archs),
                    parse_sets(args.sets))
    grid = cells(args.k, args.codes or ABLATION_CODES, args.seeds, args.epochs or [None])
    out = Path(args.out or f"runs/ablation-{args.dataset}-{args.preset}")
    print(f"ablate: {len(grid)} cells ({args.dataset}, preset {args.preset}) -> {out}")
    _say_data(args, args.dataset)
    try:
        run_ablation(base, grid, out, args.data_root, pick_device(args.device), args.preset, progress=not args.quiet,
                     download=not args.offline)
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished cells are kept in {out}. Run the same command again to continue.", file=sys.stderr)
        return 130
    print(f"done. Report: kshot-bench report {out} --out reports/<name>")
    return 0


def cmd_report(args) -> int:
    from kshot_bench.report import build_report

    path = build_report(args.runs, Path(args.out), command="kshot-bench " + shlex.join(args.argv))
    print(f"wrote {path} and its figures")
    return 0


# ----------------------------------------------------------------------------- search
def cmd_search(args) -> int:
    from kshot_bench.config import RunConfig
    from kshot_bench.distributed import Dist
    from kshot_bench.search import ALGOS, SearchConfig, aggregate_seeds, run_search, supernet_fitness
    from kshot_bench.search_space import SPACES

    if args.space is not None:
        SPACES.get(args.space)
    ALGOS.get(args.algo)
    if args.fitness not in ("supernet", "oracle"):
        raise UserError(f"unknown fitness {args.fitness!r}", fix="use --fitness supernet (with --checkpoint) or --fitness oracle")
    cfg = SearchConfig(population=args.population, generations=args.generations, parents=args.parents,
                       flops_limit=args.flops_limit)
    seeds = args.seeds or [args.seed]
    out = Path(args.out or f"runs/search-{args.dataset}-{args.fitness}-{args.algo}")
    fitness, protocol, dataset = None, {"command": "kshot-bench " + shlex.join(args.argv)}, args.dataset
    dist = Dist.from_env()
    if args.fitness == "supernet":
        if args.checkpoint is None:
            raise UserError("--fitness supernet needs --checkpoint", fix="pass the supernet.pt of a train or rank run")
        from kshot_bench.data import load_for
        from kshot_bench.datasets import DATASETS
        from kshot_bench.scoring import load_supernet, score_precision, scoring_batches

        from kshot_bench.models import uses_widths

        device = dist.device(args.device)
        ckpt_cfg, model, codes, _, state = load_supernet(args.checkpoint, device, {"dataset": args.dataset,
                                                                               "space": args.space})
        splits = load_for(ckpt_cfg, args.data_root, download=not args.offline)
        images = args.score_images if args.score_images is not None else ckpt_cfg.score_images
        score_set = scoring_batches(splits, DATASETS.get(ckpt_cfg.dataset), images, ckpt_cfg.score_batch, device)
        precision = score_precision(ckpt_cfg, device)
        fitness = supernet_fitness(model, codes, score_set.batches, precision == "bf16")
        cfg = dataclasses.replace(cfg, widths=uses_widths(ckpt_cfg))
        args.space = ckpt_cfg.space
        protocol.update({"checkpoint": str(args.checkpoint), "k": ckpt_cfg.k, "code": ckpt_cfg.code,
                         "config_hash": state["config_hash"], "score_set": score_set.description,
                         "epochs": ckpt_cfg.epochs, "width_search": uses_widths(ckpt_cfg), "score_precision": precision,
                         "memory_format": layout_name(device),
                         "rc_weight": ckpt_cfg.rc_weight, "net_scale": ckpt_cfg.net_scale})
    args.space = args.space or RunConfig.space
    results = []
    for seed in seeds:
        run_out = out / f"seed-{seed}" if len(seeds) > 1 else out
        try:
            r = run_search(args.space, dataset, args.algo, args.fitness, seed, run_out, cfg, fitness, protocol,
                           progress=not args.quiet, dist=dist)
        except KeyboardInterrupt:
            print(f"\ninterrupted; the scores so far are saved in {run_out}. Run the same command again to continue.",
                  file=sys.stderr)
            return 130
        if not dist.is_main:
            continue
        results.append(r)
        line = f"seed {seed}: {r['arch_str']}  fitness {r['fitness_value']:.2f}  FLOPs {r['flops_M']:.1f} M  "
        if r["truth"] is None:
            print(line + f"params {r['params_M']:.2f} M, {r['n_evaluated']} archs scored (no ground truth in {args.space})")
        else:
            print(line + f"ground truth {r['truth']:.2f} (optimum {r['optimum']['truth']:.2f}), {r['n_evaluated']} archs scored")
    dist.close()
    if len(seeds) > 1 and results and results[0]["truth"] is not None:
        s = aggregate_seeds(results, out)
        print(f"{args.algo} / {args.fitness}: {s['truth_mean']:.2f} +- {s['truth_std']:.2f} over {len(seeds)} seeds "
              f"(optimum {s['optimum']:.2f}) -> {out}/summary.json")
    return 0


# ----------------------------------------------------------------------------- parser
def _common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="output directory")
    _process_flags(p)


def build_parser() -> argparse.ArgumentParser:
    from kshot_bench.cli_eval import cmd_compare, cmd_cost, cmd_export, cmd_proxies

    from kshot_bench import __version__

    parser = argparse.ArgumentParser(prog="kshot-bench", description="K-shot NAS supernets: ranking benchmarks on NAS-Bench-201 and NAS-Bench-Macro, NSGA-II search on NAS-Bench-201, NAS-Bench-Macro and MobileNetV2 (ImageNet), reports.",
                                     epilog="`kshot-bench COMMAND --help` shows a command's options and examples.")
    parser.add_argument("--version", action="version", version=f"kshot-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from kshot_bench.config import RunConfig
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("train", help="train a K-shot supernet and simplex-net", epilog=EXAMPLES["train"], formatter_class=fmt)
    _run_options(p)
    p.add_argument("--data-root", type=Path, default=None, help="dataset directory (default: the embedded CIFAR-10 sample)")
    p.add_argument("--out", required=True, help="run directory (config, log, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--until-epoch", type=int, default=None, metavar="E",
                   help="stop after epoch E (checkpoint kept); a later --resume continues, exactly as one run")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("rank", help="train (or load) a supernet, rank archs against the ground truth (NB201, Macro)",
                       epilog=EXAMPLES["rank"], formatter_class=fmt)
    _run_options(p, rank_preset_help())
    p.set_defaults(dataset=None)
    p.add_argument("--data-root", type=Path, default=None,
                   help="dataset directory (scoring images; training unless --checkpoint); default: the embedded "
                        "CIFAR-10 sample")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="score this trained supernet (supernet.pt or a snapshot) instead of training; a train run "
                        "directory: score every snapshot in it (the tau-vs-epochs curve, OUT/curve.csv)")
    p.add_argument("--archs", default=None, help="all | unique | N: a seeded sample of N archs (default: the preset's)")
    p.add_argument("--truth", default=None, help="ground-truth column (default: the dataset's, e.g. cifar10_test_200ep)")
    p.add_argument("--score", default=None, choices=("acc", "loss"),
                   help="rank by top-1 accuracy (default) or by mean cross-entropy; both are computed and reported")
    p.add_argument("--score-images", type=int, default=None, metavar="N",
                   help="scoring images per arch (default: the preset's; 0 = the whole scoring part)")
    p.add_argument("--score-code", default=None, choices=("own", "uniform", "mean"),
                   help="the code each arch is scored with: own (its simplex-net code, default), uniform (1/K) or "
                        "mean (the mean code over the scored archs): separates what the codes add from the copies")
    p.add_argument("--score-protocol", default=None, choices=("released",),
                   help="released: score as the released NB201 one-shot rankings did: the 10,000 CIFAR-10 test "
                        "images (the ground truth's own images), batches of 512, batch statistics (score_part=test, "
                        "score_batch=512; --score-images N for a seeded subset); default: the preset's scoring "
                        "(a seeded subset of the `valid` half)")
    p.add_argument("--scores", type=Path, default=None, metavar="FILE",
                   help="evaluate these scores instead of a supernet's: a CSV (arch_str or index, score) or a JSON "
                        "object {arch: score}; no training, no data")
    p.add_argument("--score-column", default="score", help="with --scores: the CSV column of the scores (default score)")
    p.add_argument("--lower-is-better", action="store_true",
                   help="with --scores: smaller scores rank higher (a loss, a rank); recorded in the protocol")
    p.add_argument("--out", default=None, help="output directory (default runs/rank-<dataset>-k<K>-<code>-<preset>-s<seed>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of a different job in --out (without it such a folder is refused; the "
                        "same command run again continues its own job)")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("ablate", help="run the ablation grid (one-shot, fixed, random, simplex K-shot) as rank runs",
                       epilog=EXAMPLES["ablate"], formatter_class=fmt)
    _space_option(p)
    _dataset_option(p)
    p.add_argument("--preset", default=None, help=preset_help())
    p.add_argument("--seeds", type=int, nargs="+", action="extend", default=None, help="default 0 1 2")
    p.add_argument("--k", type=int, nargs="+", action="extend", default=None, help="default 1 2 4 8")
    p.add_argument("--codes", nargs="+", action="extend", default=None,
                   help=f"code modes for K > 1, of {' | '.join(code_modes())} (default: uniform random simplex)")
    p.add_argument("--epochs", type=int, nargs="+", action="extend", default=None,
                   help="training budgets (default: the preset's)")
    p.add_argument("--archs", default=None, help="all | unique | N (default: the preset's)")
    p.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE")
    p.add_argument("--data-root", type=Path, default=None)
    _common_flags(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("report", help="tables and figures from run directories (never trains)",
                       epilog=EXAMPLES["report"], formatter_class=fmt)
    p.add_argument("runs", nargs="+", type=Path, help="run directories or folders holding them")
    p.add_argument("--out", required=True, help="report directory (report.md + PNG figures)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="paired tau difference of two rank runs on the same archs and images",
                       epilog=EXAMPLES["compare"], formatter_class=fmt)
    p.add_argument("a", type=Path, help="rank run A (a folder with metrics.json and predictions.csv), or a score file "
                                        "(CSV / JSON as for rank --scores)")
    p.add_argument("b", type=Path, help="rank run B, scored on the same archs and images, or a score file")
    p.add_argument("--space", default=None, help="for score files: the space (default: the run's, else nb201)")
    p.add_argument("--dataset", default=None, help="for score files: the dataset (default: the run's, else cifar10)")
    p.add_argument("--truth", default=None, help="for score files: the ground-truth column (default: the run's)")
    p.add_argument("--pair", nargs=2, type=Path, action="append", metavar=("A2", "B2"), default=[],
                   help="the same comparison for another training seed (repeatable): adds each pair's difference "
                        "and their mean over the seeds with an interval over seeds and archs (rank runs only)")
    p.add_argument("--common-archs", action="store_true",
                   help="pair two rank runs that scored other images or arch samples (e.g. one supernet scored on the "
                        "`valid` and the released protocol) on the archs both scored; dataset and truth must agree")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("search", help="NSGA-II (or random) search over a space, by supernet or oracle fitness",
                       epilog=EXAMPLES["search"], formatter_class=fmt)
    _space_option(p, extra="; with --checkpoint the checkpoint's")
    _dataset_option(p)
    p.add_argument("--fitness", default="supernet", help="supernet (needs --checkpoint) | oracle (NB201 ground truth)")
    p.add_argument("--checkpoint", type=Path, default=None, help="supernet.pt for --fitness supernet")
    p.add_argument("--data-root", type=Path, default=None, help="dataset directory (scoring images for --fitness supernet)")
    p.add_argument("--algo", default="nsga2", help="nsga2 | random (default nsga2)")
    p.add_argument("--flops-limit", type=float, default=None,
                   help="hard limit in MFLOPs (nb201: its convention at the dataset's size; mbv2: one 224x224 image)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", action="extend", default=None,
                   help="several seeds: runs each, reports mean +- std")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--parents", type=int, default=20)
    p.add_argument("--score-images", type=int, default=None, help="scoring images per arch (default: the checkpoint's)")
    _common_flags(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("export-benchmark", help="write the compact NB201 table from an official benchmark file",
                       epilog=EXAMPLES["export-benchmark"], formatter_class=fmt)
    p.add_argument("--from", dest="source", required=True, help="NB201 .pth (v1_0/v1_1) or NATS-Bench tss file/directory")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("presets", help="what each preset runs: its fields, beside the defaults",
                       epilog="examples:\n  kshot-bench presets\n  kshot-bench presets --space macro\n"
                              "  kshot-bench presets --space nb201 --preset narrow   # every field, resolved",
                       formatter_class=fmt)
    p.add_argument("--space", default=None, help="only this space's presets (default: every space)")
    p.add_argument("--preset", default=None, help="one preset: every field of the config it gives")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("cost", help="parameters and FLOPs of archs as CSV", epilog=EXAMPLES["cost"], formatter_class=fmt)
    _space_option(p, default=RunConfig.space)
    _dataset_option(p, extra=" (the class count and input size, where the space's costs follow the dataset; "
                              "MBV2 costs are always at 224x224, 1,000 classes)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--arch", nargs="+", action="extend", help="one or more arch strings (repeatable)")
    g.add_argument("--index", type=int, nargs="+", action="extend",
                   help="one or more indices (spaces that list their archs, e.g. NB201; repeatable)")
    g.add_argument("--all", action="store_true", help="every arch (spaces that list their archs)")
    g.add_argument("--sample", type=int, default=None, metavar="N", help="N seeded uniform samples (spaces too large to list)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--no-widths", action="store_true", help="--sample with every width 1.0")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("proxies", help="zero-cost proxies (synflow, naswot, snip, grad_norm) of an arch set as CSV",
                       epilog=EXAMPLES["proxies"], formatter_class=fmt)
    _space_option(p, default=RunConfig.space)
    _dataset_option(p)
    p.add_argument("--archs", default="all", help="all | unique | N: a seeded sample of N archs (default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of a sampled arch set (default 0)")
    p.add_argument("--proxies", nargs="+", action="extend", default=None,
                   help="which (default synflow naswot snip); of: synflow | naswot | snip | grad_norm")
    p.add_argument("--batch", type=int, default=64, help="training images for naswot, snip, grad_norm (default 64)")
    p.add_argument("--data-root", type=Path, default=None, help="dataset directory (default: the embedded CIFAR-10 sample)")
    p.add_argument("--out", required=True, help="output CSV (a run of the same command continues it)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--offline", action="store_true")
    p.set_defaults(func=cmd_proxies)

    p = sub.add_parser("retrain", help="retrain a searched MobileNetV2 arch from scratch on ImageNet train",
                       epilog=EXAMPLES["retrain"], formatter_class=fmt)
    p.add_argument("--arch", required=True, help="the mbv2 arch string (e.g. from a search's result.json)")
    p.add_argument("--preset", default="imagenet", help="imagenet (the paper's recipe) | cpu | smoke")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--data-root", type=Path, required=True, help="ImageNet image folder (train/, val/)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    _process_flags(p)
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("evaluate", help="top-1/top-5 of a retrained network on the official val set",
                       epilog=EXAMPLES["evaluate"], formatter_class=fmt)
    p.add_argument("--checkpoint", type=Path, required=True, help="retrained.pt of a retrain run")
    p.add_argument("--data-root", type=Path, required=True, help="ImageNet image folder (val/)")
    p.add_argument("--weights", default="ema", choices=("ema", "raw"), help="EMA weights (default) or the raw ones")
    _process_flags(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command is None:  # bare `kshot-bench`: the commands, not a one-line usage
        parser.print_help()
        return 2
    from kshot_bench.runtime import stop_on_sigterm, tune_allocator

    tune_allocator()
    stop_on_sigterm()
    try:
        if getattr(args, "dataset", None):  # one spelling from here on (imagenet16 -> ImageNet16-120)
            from kshot_bench.datasets import canonical_dataset

            args.dataset = canonical_dataset(args.dataset)
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
