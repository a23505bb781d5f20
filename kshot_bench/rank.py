"""The rank job: train (or load) a supernet, score an arch set with each arch's own code (scoring.py), and
when the space has a ground truth, compare with it (metrics.py) beside the baselines on the same archs; write
the results (results.py). Also the tau-vs-epochs curve of one run's snapshots (`rank_snapshots`)."""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.metrics import kendall_tau, ranking_metrics
from kshot_bench.results import fmt, plot_scatter, time_and_machine_lines, write_json, write_predictions, write_summary
from kshot_bench.runtime import layout_name
from kshot_bench.simplex import scoring_codes, variant_of
from kshot_bench.scoring import (
    SCORE_KINDS,
    ScoreSet,
    code_label,
    journal_count,
    load_supernet,
    remove_journals,
    score_archs,
    score_precision,
    score_values,
    scoring_batches,
    with_test_images,
)


@dataclass
class Scored:
    """What a rank job measured before it compares with any ground truth."""
    cfg: object
    keys: list
    archs: list
    set_desc: str
    scored: Dict
    score_set: ScoreSet
    protocol: Dict
    codes: object


def score_job(cfg, out: Path, data_root: Optional[Path], device, checkpoint: Optional[Path] = None,
              expect: Optional[Dict] = None, progress: bool = True, command: str = "", preset: str = "",
              download: bool = True, dist=None) -> Scored:
    """Train (or load) a supernet and score the arch set with each arch's own code: the part of the
    rank job that every search space shares. Under torchrun (`dist`) the processes train together
    (each its share of every batch, gradients averaged) and split the archs for scoring (the same
    images and codes on each)."""
    from kshot_bench.data import load_for
    from kshot_bench.datasets import DATASETS
    from kshot_bench.distributed import Dist
    from kshot_bench.rundir import machine_info, machine_label, write_config
    from kshot_bench.search_space import SPACES
    from kshot_bench.train import Trainer
    from kshot_bench.models import uses_widths

    dist = dist or Dist()
    out = Path(out)
    t0 = time.perf_counter()
    if checkpoint is not None:
        scoring = {f: getattr(cfg, f) for f in ("archs", "final_archs", "score_images", "score_batch", "score_by",
                                                "bn_calibration", "score_part", "score_code")}
        ckpt_cfg, model, codes, finished, state = load_supernet(Path(checkpoint), device, expect or {})
        cfg = ckpt_cfg.replace(**scoring)
        # the training run's own name (its hash rule may be an older version's), whatever the scoring fields: they
        # are recorded in the protocol (arch set, score set), and every snapshot of a run carries the same name
        config_hash = state["config_hash"]
        splits = load_for(cfg, data_root, download)
        out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known good: no empty run folders
        train_s = float("nan")
        trained_epochs = state.get("epochs", state.get("epoch"))
        source = f"checkpoint {checkpoint}" + ("" if finished else f" (unfinished run, epoch {trained_epochs})")
        train_precision = state.get("train_precision", "fp32")
        train_data = state.get("data")  # the images the supernet trained on (a snapshot records them)
        train_machines = state.get("train_machines") or (  # older snapshots: only the machine that saved them
            [f"{machine_label(state['machine'])} (saved it; any earlier machine not recorded)"] if "machine" in state else None)
    else:
        splits = load_for(cfg, data_root, download)
        out.mkdir(parents=True, exist_ok=True)
        run_dir = out / "train"
        trainer = Trainer(cfg, run_dir, splits, device, progress=progress, dist=dist)
        trainer.resume()  # re-running the same rank command continues an interrupted training
        config_hash = trainer.config_hash
        if trainer.epoch < cfg.epochs:
            if dist.is_main:
                write_config(cfg, run_dir, {"data": splits.source, "machine": machine_info(device),
                                            "world_size": dist.world_size})
            trainer.fit()
        model, codes = trainer.model, trainer.codes
        train_s = sum(float(r["time_s"]) for r in trainer.read_log())
        trained_epochs = cfg.epochs
        source = f"trained here in {run_dir}"
        train_precision = trainer.precision
        train_data = splits.source
        train_machines = trainer.machines
    if cfg.final_archs and trained_epochs == cfg.epochs:  # the run's last supernet: its own arch set
        cfg = cfg.replace(archs=cfg.final_archs)
    space = SPACES.get(cfg.space)
    keys, archs, set_desc = space.arch_set(cfg.archs, cfg.seed, widths=uses_widths(cfg))
    codes = scoring_codes(codes, archs, cfg.score_code)  # each arch's own code, or one fixed code for all
    if dist.is_main:
        write_config(cfg, out, {"data": splits.source, "machine": machine_info(device), "command": command,
                                "world_size": dist.world_size}, config_hash=config_hash)
    info = DATASETS.get(cfg.dataset)
    if cfg.score_part == "test":
        splits, info = with_test_images(splits, info, data_root)
    score_set = scoring_batches(splits, info, cfg.score_images, cfg.score_batch, device, cfg.bn_calibration)
    resumed = journal_count(out, keys, cfg.k)
    t1 = time.perf_counter()
    precision = score_precision(cfg, device)
    counts: Dict = {}
    scored = score_archs(model, codes, score_set.batches, keys, archs, out, cfg.k, progress, dist, precision == "bf16",
                         score_set.calibration, counts)
    computed = int(dist.sum([counts["computed"]])[0])  # over every process
    score_s = time.perf_counter() - t1
    train_images = min(cfg.train_subset or splits.n_train, splits.n_train)
    protocol = {
        "space": cfg.space, "dataset": cfg.dataset, "k": cfg.k, "code": cfg.code, "code_label": code_label(cfg.k, cfg.code, cfg.score_code),
        "preset": preset, "seed": cfg.seed, "config_hash": config_hash, "channels": cfg.channels, "cells": cfg.cells,
        "epochs": trained_epochs, "warmup_epochs": cfg.warmup_epochs, "train_images": train_images,
        "sampling": cfg.sampling, "offpath_update": cfg.offpath_update, "bn_calibration": cfg.bn_calibration,
        "score_part": cfg.score_part, "score_code": cfg.score_code,
        "simplex_step": cfg.simplex_step, "simplex_interval": cfg.simplex_interval, "simplex_paths": cfg.simplex_paths,
        "warmup_code": cfg.warmup_code, "simplex_init": cfg.simplex_init, "simplex_variant": variant_of(cfg),
        "kshot_copies": cfg.kshot_copies,
        "train_part": info.train_part, "data": splits.source, "train_data": train_data, "supernet": source, "train_precision": train_precision,
        "train_machines": train_machines, "arch_set": set_desc, "n_archs": len(keys), "score_set": score_set.description,
        "n_score_images": score_set.n_images, "score": SCORE_KINDS[cfg.score_by], "score_by": cfg.score_by,
        "train_s": train_s, "score_s": score_s, "archs_scored": len(keys) - resumed, "archs_computed": computed,
        "archs_per_s": (len(keys) - resumed) / score_s if score_s > 0 and len(keys) > resumed else None,
        "total_s": time.perf_counter() - t0, "machine": machine_info(device), "command": command,
        "world_size": dist.world_size, "score_precision": precision, "memory_format": layout_name(device),
    }
    return Scored(cfg, keys, archs, set_desc, scored, score_set, protocol, codes)


def rank_job(cfg, out: Path, data_root: Optional[Path], device, checkpoint: Optional[Path] = None,
             truth_name: Optional[str] = None, expect: Optional[Dict] = None, progress: bool = True,
             command: str = "", preset: str = "", download: bool = True, dist=None) -> Tuple[Dict, Dict]:
    """Train (or load) a supernet, score the arch set, write predictions, metrics and summary; where the space
    has a ground truth for the dataset, Kendall's tau and the rest against it, beside the baselines on the same
    archs; elsewhere the scores, costs and code statistics. Under torchrun only the main process writes the
    results (the others return empty dicts)."""
    from kshot_bench.distributed import Dist
    from kshot_bench.ground_truth import has_truth, space_truth
    from kshot_bench.search_space import SPACES
    from kshot_bench.models import uses_widths

    dist = dist or Dist()
    out = Path(out)
    space = SPACES.get(cfg.space)
    ranked = has_truth(space, cfg.dataset)
    if truth_name is not None and not ranked:
        raise UserError(f"--truth needs a ground truth; the {cfg.space} space has none for {cfg.dataset}",
                        fix="drop --truth")
    if ranked:
        truth_name = truth_name or space.TRUTH[cfg.dataset]
        space_truth(space, truth_name)  # fail fast on a bad --truth, before any training
        if len(space.arch_set(cfg.archs, cfg.seed, widths=uses_widths(cfg))[0]) < 3:  # and on a bad --archs
            raise UserError(f"--archs {cfg.archs}: a ranking needs at least 3 archs", fix="use --archs 3 or more")
    job = score_job(cfg, out, data_root, device, checkpoint, expect, progress, command, preset, download, dist)
    if not dist.is_main:
        return {}, {}
    if not ranked:
        return unranked_job(job, out), {}
    return ranked_job(job, out, space, space_truth(space, truth_name), truth_name)


def ranked_job(job: "Scored", out: Path, space, truth_all: np.ndarray, truth_name: str) -> Tuple[Dict, Dict]:
    """The results of a space with ground truth: tau and the other metrics with their intervals, by both score
    kinds, without the archs whose network outputs a constant, and the baselines on the same archs."""
    from kshot_bench.evaluate import ranking_results

    cfg, keys, scored = job.cfg, job.keys, job.scored
    truth = truth_all[np.asarray(keys)]
    write_predictions(out, keys, [space.to_str(a) for a in job.archs], scored, truth, cfg.k, space.KEY)
    other = "loss" if cfg.score_by == "acc" else "acc"
    scores = score_values(scored, keys, cfg.score_by)
    metrics, baselines = ranking_results(space, cfg.dataset, keys, job.archs, scores, truth)
    metrics["other_score"] = {"score_by": other, "score": SCORE_KINDS[other],
                              **ranking_metrics(score_values(scored, keys, other), truth, null=False)}
    metrics["protocol"] = {**job.protocol, "truth": truth_name}
    write_json(out / "metrics.json", metrics)
    write_json(out / "baselines.json", baselines)
    plot_scatter(out, scores, truth, metrics)
    write_summary(out, metrics, baselines)
    remove_journals(out)
    return metrics, baselines


def unranked_job(job: Scored, out: Path) -> Dict:
    """Results of a space without ground truth: predictions (score, loss, FLOPs, params, code per arch),
    the code statistics (between archs; between width settings of the same ops) and the agreement of the
    scores with FLOPs and parameter count, in metrics.json and summary.md."""
    import torch

    from kshot_bench.search_space import SPACES
    from kshot_bench.simplex import code_stats
    from kshot_bench.models import uses_widths

    space, cfg = SPACES.get(job.cfg.space), job.cfg
    classes, size = space.COST_CONVENTION
    costs = [space.cost(a, classes, size) for a in job.archs]
    k = cfg.k
    path = out / "predictions.csv"
    with open(path.with_suffix(".tmp"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch_str", "score", "val_loss", "flops_M", "params_M"] + [f"lam_{i}" for i in range(k)])
        for key, (params, flops) in zip(job.keys, costs):
            r = job.scored[key]
            w.writerow([key, f"{r['score']:.6g}", f"{r['val_loss']:.6g}", f"{flops / 1e6:.3f}", f"{params / 1e6:.4f}"]
                       + [f"{r[f'lam_{i}']:.6g}" for i in range(k)])
    os.replace(path.with_suffix(".tmp"), path)
    lam = torch.tensor([[job.scored[key][f"lam_{i}"] for i in range(k)] for key in job.keys])
    stats = {"between_archs": code_stats(lam)}
    if uses_widths(cfg) and k > 1:
        rng = np.random.default_rng([cfg.seed, 29])
        variants = [v for a in job.archs[:100] for v in space.width_variants(a, rng, 4)]
        with torch.no_grad():
            codes = job.codes(variants).cpu().double().view(-1, 4, k)
        spread = 0.5 * torch.cdist(codes, codes, p=1).mean() * 4 / 3
        stats["between_widths_same_ops"] = {"code_spread": float(spread), "n_archs": len(codes), "settings": 4}
    scores = np.array([job.scored[key]["score"] for key in job.keys])
    metrics = {
        "n_archs": len(job.keys), "score_mean": float(scores.mean()), "score_std": float(scores.std()),
        "score_min": float(scores.min()), "score_max": float(scores.max()),
        "kendall_tau_vs_flops": kendall_tau(scores, [c[1] for c in costs]),
        "kendall_tau_vs_params": kendall_tau(scores, [c[0] for c in costs]),
        "code_stats": stats,
        "protocol": {**job.protocol, "truth": None, "cost_convention": f"{size}x{size} input, {classes} classes",
                     "width_search": uses_widths(cfg), "rc_weight": cfg.rc_weight, "net_scale": cfg.net_scale},
    }
    write_json(out / "metrics.json", metrics)
    p = metrics["protocol"]
    lines = [f"# Scores: {p['space']} on {p['dataset']}, K={p['k']}, {p['code_label']}", "",
             f"No ground-truth benchmark exists for the {p['space']} space, so there is no Kendall's tau here: these are "
             "the supernet's scores of a seeded arch sample (the fitness that `kshot-bench search` maximises) and "
             "what the simplex-net's codes look like.", "",
             f"- scores ({p['score']}): mean {metrics['score_mean']:.2f}, std {metrics['score_std']:.2f}, range "
             f"{metrics['score_min']:.2f} .. {metrics['score_max']:.2f} over {len(scores)} archs",
             f"- Kendall's tau of the scores with FLOPs: {fmt(metrics['kendall_tau_vs_flops'])}; with parameter count: "
             f"{fmt(metrics['kendall_tau_vs_params'])} (an under-trained supernet often favours small archs)",
             f"- codes between archs: entropy {stats['between_archs']['code_entropy']:.3f} (1 = uniform), largest "
             f"weight {stats['between_archs']['code_max']:.3f}, spread (mean TV distance between two archs' codes) "
             f"{stats['between_archs']['code_spread']:.4f}, share of archs leaning on the most common copy "
             f"{stats['between_archs']['code_top_share']:.2f}"]
    if "between_widths_same_ops" in stats:
        lines.append(f"- codes between width settings of the same ops: spread "
                     f"{stats['between_widths_same_ops']['code_spread']:.4f} (4 settings of each of "
                     f"{stats['between_widths_same_ops']['n_archs']} archs)")
    lines += ["", "## Protocol", f"- run: `{p['command']}`",
              f"- config hash `{p['config_hash']}`, preset `{p['preset']}`, seed {p['seed']}; {p['epochs']} epochs "
              f"({p['warmup_epochs']} warm-up) on {p['train_images']:,} training images; data: {p['data']}",
              f"- archs: {p['arch_set']}; scored on: {p['score_set']}",
              f"- FLOPs and params: {p['cost_convention']} (SPEC 7), whatever the training input size",
              *time_and_machine_lines(p), "",
              "Files: `predictions.csv` (per arch: score, loss, FLOPs, params, code), `metrics.json`."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    remove_journals(out)
    return metrics


# ----------------------------------------------------------------------------- snapshots of one run


CURVE_FIELDS = ["epoch", "kendall_tau", "spearman", "split_tau_10", "split_tau_50", "split_tau_100", "regret",
                "n_archs", "n_score_images", "checkpoint"]


def snapshot_files(run_dir: Path) -> List[Tuple[int, Path]]:
    """(epoch, file) of every snapshot of a train run (`snapshots/epoch-EEEE.pt`), plus its final
    `supernet.pt` when no snapshot holds that epoch."""
    from kshot_bench.rundir import FINAL, list_snapshots

    run_dir = Path(run_dir)
    found = [(int(p.stem.split("-")[1]), p) for p in list_snapshots(run_dir)]
    final = run_dir / FINAL
    if final.is_file():
        cfg = json.loads((run_dir / "config.json").read_text())["config"] if (run_dir / "config.json").is_file() else {}
        epochs = int(cfg.get("epochs", -1))
        if epochs not in {e for e, _ in found}:
            found.append((epochs, final))
    if not found:
        raise UserError(f"{run_dir} holds no snapshots (snapshots/epoch-*.pt) and no supernet.pt",
                        fix="train with --set snapshot_epochs=10,25,50 (or --preset long), or pass one checkpoint file")
    return sorted(found)


def rank_snapshots(cfg, run_dir: Path, out: Path, data_root, device, truth_name=None, expect=None, progress=True,
                   command: str = "", preset: str = "", download: bool = True, log=print, dist=None) -> Path:
    """Score every snapshot of one train run (the tau-vs-epochs curve of one run: paper Fig. 7 on
    NB201): one rank run per snapshot in OUT/epoch-EEEE/, then OUT/curve.csv. Snapshots scored on
    an earlier call (their metrics.json exists) are not scored again, so the command can follow a
    run that is still training. Under torchrun the processes split each snapshot's archs (`score_archs`)
    and the main process writes the results."""
    from kshot_bench.distributed import Dist

    dist = dist or Dist()
    log = log if dist.is_main else (lambda *a, **k: None)
    out = Path(out)
    rows = []
    for epoch, path in snapshot_files(run_dir):
        sub = out / f"epoch-{epoch:04d}"
        if (sub / "metrics.json").is_file():
            metrics = json.loads((sub / "metrics.json").read_text())
            log(f"epoch {epoch}: scored earlier (tau {fmt(metrics['kendall_tau'])})")
        else:
            log(f"epoch {epoch}: scoring {path}")
            metrics, _ = rank_job(cfg, sub, data_root, device, path, truth_name, expect, progress, command, preset,
                                  download, dist)
            dist.barrier()  # the main process has written metrics.json before any process looks for the next
            if not dist.is_main:
                continue
            log(f"epoch {epoch}: tau {fmt(metrics['kendall_tau'])}")
        split = metrics["split_tau"]
        rows.append([epoch, metrics["kendall_tau"], metrics["spearman"], split.get("10"), split.get("50"),
                     split.get("100"), metrics["regret"], metrics["n_archs"], metrics["protocol"]["n_score_images"],
                     str(path)])
    if not dist.is_main:
        return out / "curve.csv"
    path = out / "curve.csv"
    with open(path.with_suffix(".tmp"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CURVE_FIELDS)
        w.writerows([["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in r] for r in rows])
    os.replace(path.with_suffix(".tmp"), path)
    return path
