"""Ranking: score archs on a trained supernet, compare with the NB201 ground truth, report.

Metrics (scipy where it has them), for scores s and ground truth t over the arch set:
  kendall_tau   Kendall's tau-b (ties in either list handled as tau-b does)
  spearman      Spearman's rho
  split_tau[n]  the paper's split tau (Fig. 5): the true top-n archs form the high group, the rest
                the low group; over all (high, low) pairs, (concordant - discordant) / pairs, a pair
                with equal scores counting as neither. Computed as 2*AUC - 1 (Mann-Whitney, ties 1/2).
  top_tau[n]    Kendall's tau-b among the true top-n archs only
  precision_at_k[k]  |predicted top-k  and  true top-k| / k
  regret        best true accuracy in the set minus the true accuracy of the predicted best
                (the mean over archs tied at the top score)
Ties in t at a group boundary are broken by position in the set (a seeded order for sampled sets).

Scoring protocol: every arch is evaluated with its own code pi(a) on a fixed set of scoring images
(a seeded subset of the dataset's scoring part, the same for every run and seed), in fixed batches,
BN with batch statistics; score = top-1 accuracy (%), the mean cross-entropy is kept too.
Only the live part of each cell is computed (supernet.nb201.run_cell). Scores are appended to
`predictions.partial.csv` as they come, so an interrupted rank continues where it stopped.
"""
from __future__ import annotations

import csv
import json
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from kshot_bench.errors import UserError
from kshot_bench.runtime import bf16_autocast, layout_name

SPLIT_NS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
PRECISION_KS = (5, 10, 20, 50, 100)
SCORE_SUBSET_SEED = 0
CALIBRATION_SEED = 1  # the training images that re-estimate BN statistics (bn_calibration)
PAPER_TABLE4 = {"cifar10": (55.00, 62.64), "cifar100": (56.00, 61.22), "ImageNet16-120": (54.00, 56.33)}  # SPOS, K-shot (%)


# ----------------------------------------------------------------------------- metrics
def kendall_tau(scores: Sequence[float], truth: Sequence[float]) -> float:
    """NaN when either list is constant (an untrained supernet scoring every arch alike)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.kendalltau(scores, truth).statistic)


def spearman(scores: Sequence[float], truth: Sequence[float]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(scores, truth).statistic)


def _true_order(truth: np.ndarray) -> np.ndarray:
    """Indices sorted by truth, best first; ties keep their position (stable)."""
    return np.argsort(-np.asarray(truth, dtype=np.float64), kind="stable")


def split_tau(scores: Sequence[float], truth: Sequence[float], n_high: int) -> float:
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if not 0 < n_high < len(s):
        raise ValueError(f"n_high={n_high} must leave both groups non-empty (n={len(s)})")
    high = np.zeros(len(s), dtype=bool)
    high[_true_order(t)[:n_high]] = True
    ranks = stats.rankdata(s)  # average ranks for ties: a tied pair counts 1/2 in U
    n_low = len(s) - n_high
    u = ranks[high].sum() - n_high * (n_high + 1) / 2
    return float(2 * u / (n_high * n_low) - 1)


def top_tau(scores: Sequence[float], truth: Sequence[float], n: int) -> float:
    idx = _true_order(np.asarray(truth))[:n]
    return kendall_tau(np.asarray(scores)[idx], np.asarray(truth)[idx])


def precision_at_k(scores: Sequence[float], truth: Sequence[float], k: int) -> float:
    pred = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    true = _true_order(np.asarray(truth))[:k]
    return len(set(pred.tolist()) & set(true.tolist())) / k


def regret(scores: Sequence[float], truth: Sequence[float]) -> float:
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return float(t.max() - t[s == s.max()].mean())


def all_metrics(scores: Sequence[float], truth: Sequence[float]) -> Dict:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    n = len(s)
    if n < 3:
        raise UserError(f"ranking needs at least 3 archs, got {n}", fix="use a larger --archs set")
    ns = [k for k in SPLIT_NS if k < n] or [n // 2]
    return {
        "kendall_tau": kendall_tau(s, t),
        "spearman": spearman(s, t),
        "split_tau": {str(k): split_tau(s, t, k) for k in ns},
        "top_tau": {str(k): top_tau(s, t, k) for k in ns if k >= 3},
        "precision_at_k": {str(k): precision_at_k(s, t, k) for k in PRECISION_KS if k <= n},
        "regret": regret(s, t),
        "n_archs": n,
    }


SCORE_KINDS = {
    "acc": "top-1 accuracy (%) on the scoring images",
    "loss": "mean cross-entropy on the scoring images, negated (lower loss ranks higher)",
}


def score_values(rows: Dict[int, dict], indices: Sequence[int], kind: str) -> np.ndarray:
    """The scores an arch set is ranked by: accuracy, or the negated mean cross-entropy."""
    if kind == "acc":
        return np.array([rows[i]["score"] for i in indices], dtype=np.float64)
    return -np.array([rows[i]["val_loss"] for i in indices], dtype=np.float64)


def ranking_metrics(scores: Sequence[float], truth: Sequence[float], null: bool = True) -> Dict:
    """`all_metrics` plus their uncertainty (stats.py): bootstrap 95% intervals of Kendall's tau,
    Spearman and every split tau, and (with `null`) the permutation null band of tau and its p-value."""
    from functools import partial

    from kshot_bench import stats

    m = all_metrics(scores, truth)
    m["ci95"] = {"kendall_tau": stats.tau_bootstrap_ci(scores, truth),
                 "split_tau": {k: stats.bootstrap_ci(partial(_split_at, n_high=int(k)), scores, truth)
                               for k in CI_SPLIT_NS if k in m["split_tau"]}}
    if null:
        m["null"] = stats.tau_null_band(scores, truth)
    m["uncertainty"] = (f"95% percentile intervals over {stats.N_BOOT} bootstrap resamples of the archs (seed "
                        f"{stats.STATS_SEED})" + ("; null band: tau-b of scores independent of the truth, Kendall's "
                                                  "tie-corrected variance (normal approximation)" if null else ""))
    return m


CI_SPLIT_NS = ("10", "50", "100", "1000")


def _split_at(scores, truth, n_high: int) -> float:
    return split_tau(scores, truth, n_high) if 0 < n_high < len(scores) else float("nan")


def aggregate(runs: List[Dict]) -> Dict:
    """Mean and sample std (ddof=1; 0 for one run) of every metric over runs, nested keys kept."""
    out: Dict = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            common = [k for k in value if all(k in r.get(key, {}) for r in runs)]
            out[key] = {k: aggregate([{"v": r[key][k]} for r in runs])["v"] for k in common}
        elif isinstance(value, (int, float)):
            vals = np.array([r[key] for r in runs], dtype=np.float64)
            out[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                        "n": len(vals), "values": vals.tolist()}
    return out


# ----------------------------------------------------------------------------- arch sets
def arch_set(spec: str, seed: int) -> Tuple[List[int], str]:
    """NB201 indices of an arch set and a description: all | unique | N (seeded sample of N)."""
    from kshot_bench.search_space import nb201

    if spec == "all":
        return list(range(nb201.NUM_ARCHS)), "all 15,625 archs"
    if spec == "unique":
        idx = [nb201.to_index(a) for a in nb201.unique_archs()]
        return idx, f"the {len(idx):,} unique archs (NB201 isomorphism rule, lowest index of each class)"
    if spec.isdigit() and 0 < int(spec) <= nb201.NUM_ARCHS:
        n = int(spec)
        # the first n of one seeded permutation: smaller samples nest inside larger ones
        idx = np.random.default_rng([seed, 7]).permutation(nb201.NUM_ARCHS)[:n].tolist()
        return idx, f"a seeded uniform sample of {n:,} archs (seed {seed})"
    raise UserError(f"unknown arch set {spec!r}", fix="use --archs all, --archs unique or --archs N with 1 <= N <= 15625")


# ----------------------------------------------------------------------------- baselines
def baseline_scores(dataset: str, indices: Sequence[int], seed: int) -> Dict[str, Tuple[np.ndarray, str]]:
    """Ranking baselines on the same archs: name -> (scores, description)."""
    from kshot_bench.ground_truth import load_proxy_arrays, truth_column
    from kshot_bench.datasets import DATASETS

    info = DATASETS.get(dataset)
    idx = np.asarray(indices)
    out = {"params": (truth_column(info.params_column)[idx], "parameter count (NB201)")}
    from kshot_bench.search_space import nb201

    flops = np.array([nb201.cost(nb201.from_index(int(i)), info.num_classes, info.input_size)[1] for i in idx], float)
    out["flops"] = (flops, f"FLOPs (NB201 convention, {info.input_size}x{info.input_size} input)")
    proxies = load_proxy_arrays()
    for proxy in ("naswot", "synflow", "logsynflow", "nregions"):
        col = f"{proxy}_{dataset}"
        if col in proxies:
            out[proxy] = (proxies[col][idx], f"zero-cost proxy {proxy} (reference scores)")
    val12 = {"cifar10": "cifar10_val_12ep", "cifar100": "cifar100_val_12ep", "ImageNet16-120": "imagenet_val_12ep"}[dataset]
    out["train_12ep"] = (truth_column(val12)[idx], f"12 epochs of stand-alone training ({val12}, NB201 hp=12)")
    # no single random-score draw: it lands anywhere in about +-0.1 by chance; ranking_metrics gives the
    # null band of uninformative scores on the same archs instead
    return out


# ----------------------------------------------------------------------------- scoring
@dataclass
class ScoreSet:
    batches: list
    n_images: int
    description: str
    calibration: list = field(default_factory=list)  # training batches that re-estimate each arch's BN statistics


def scoring_batches(splits, info, limit: int, batch_size: int, device, calibration: int = 0) -> ScoreSet:
    """A fixed, class-mixed subset of the scoring part: the first `limit` of a seeded permutation; with
    `calibration` > 0 also that many training images (unaugmented, the first of another seeded permutation)
    over which each arch's BN statistics are re-estimated before it is scored in eval mode."""
    import torch

    from kshot_bench.data import TensorLoader
    from kshot_bench.runtime import device_layout

    n_all = splits.n_score
    n = n_all if limit <= 0 else min(limit, n_all)
    keep = torch.as_tensor(np.random.default_rng(SCORE_SUBSET_SEED).permutation(n_all)[:n])
    x, y = splits.score_subset(keep)  # an image folder (ImageNet) decodes only these
    loader = TensorLoader(x.to(device), y.to(device), info, batch_size, seed=0, augment=False, drop_last=False)
    batches = [(device_layout(xb, device), yb) for xb, yb in loader.fixed_batches()]
    bn = "BN with batch statistics"
    calib = []
    if calibration > 0:
        m = min(calibration, splits.n_train)
        pick = torch.as_tensor(np.random.default_rng(CALIBRATION_SEED).permutation(splits.n_train)[:m])
        cx, cy = splits.train_subset(pick)
        cal = TensorLoader(cx.to(device), cy.to(device), info, batch_size, seed=0, augment=False, drop_last=False)
        calib = [(device_layout(xb, device), yb) for xb, yb in cal.fixed_batches()]
        bn = (f"BN statistics of each arch re-estimated over {m:,} images of {info.train_part} (seeded subset "
              f"{CALIBRATION_SEED}, batches of {batch_size}), then eval-mode BN")
    desc = (f"{n:,} images of {info.score_part} (seeded subset {SCORE_SUBSET_SEED} of {n_all:,}), "
            f"batches of {batch_size}, {bn}")
    return ScoreSet(batches, n, desc, calib)


def score_precision(cfg, device) -> str:
    """The scoring precision of a run: `score_precision`, with auto = bf16 on CUDA, fp32 elsewhere (bf16
    autocast is the GPU's fast path; on CPUs without bf16 units it is slower). Recorded in the protocol;
    benchmarks/bf16_scoring.py measures how far bf16 moves a ranking."""
    from kshot_bench.runtime import use_bf16

    return "bf16" if use_bf16(cfg.score_precision, device) else "fp32"


def score_arch(model, arch, code, batches, bf16: bool = False, calibration=None) -> Tuple[float, float]:
    """Top-1 accuracy (%) and mean cross-entropy of one arch with its code over the scoring batches
    (`bf16`: under bfloat16 autocast; the loss is computed in float32 as autocast does for it). With
    `calibration` batches: every BN site's statistics are first re-estimated over them (each normalised by
    its own batch, as in training), and the scoring batches then run with those fixed statistics."""
    import torch
    import torch.nn.functional as F

    from kshot_bench.supernet.ops import BNStatistics, bn_statistics

    dev = batches[0][0].device
    correct = torch.zeros((), dtype=torch.long, device=dev)
    loss = torch.zeros((), dtype=torch.float64, device=dev)
    n = 0
    stats = BNStatistics() if calibration else None
    with torch.inference_mode(), bf16_autocast(dev, bf16):
        for x, _ in calibration or ():
            with bn_statistics(stats, "collect"):
                model(x, arch, code)
        for x, y in batches:
            with bn_statistics(stats, "fixed") if stats is not None else nullcontext():
                logits = model(x, arch, code)
            correct += (logits.argmax(1) == y).sum()
            loss += F.cross_entropy(logits, y, reduction="sum").double()
            n += len(y)
    return 100.0 * float(correct) / n, float(loss) / n


PARTIAL = "predictions.partial.csv"


def score_archs(model, codes, batches, keys: Sequence, archs: Sequence, out_dir: Path, k: int,
                progress: bool = True, dist=None, bf16: bool = False, calibration=None) -> Dict:
    """Score every arch (each with its own code), resuming from the journal `out_dir/predictions.partial*.csv`.

    `keys` name the archs in that journal and in the result (NB201: index; other spaces: arch string).
    Under torchrun (`dist`, distributed.Dist) rank r scores archs r, r+N, ... into its own journal
    `predictions.partial.rR.csv`; every journal found counts as done, whichever process count wrote it, so
    an interrupted run continues with any number of processes. Returns every arch's result on every rank.
    """
    import torch
    from tqdm import tqdm

    from kshot_bench.distributed import Dist

    dist = dist or Dist()
    out_dir = Path(out_dir)
    fields = ["key", "score", "val_loss"] + [f"lam_{i}" for i in range(k)]
    as_key = {str(key): key for key in keys}
    done = _read_journals(out_dir, as_key, fields)
    dist.barrier()  # every process has read the journals before any of them adds to its own
    mine = set(dist.share(list(keys)))
    todo = [(key, arch) for key, arch in zip(keys, archs) if key in mine and key not in done]
    path = out_dir / (PARTIAL if not dist.active else PARTIAL.replace(".csv", f".r{dist.rank}.csv"))
    stop_after = int(os.environ.get("KSHOT_TEST_STOP_AFTER", "0"))  # tests: interrupt after this many scores
    model.eval()
    with torch.no_grad():
        all_codes = codes([a for _, a in todo]) if todo else None
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(fields)
        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc="scoring" + (f" (rank {dist.rank})" if dist.active else ""),
                   unit="arch", disable=not progress or not dist.is_main, mininterval=1.0)
        for j, (key, arch) in enumerate(todo):
            if stop_after and j == stop_after:
                raise KeyboardInterrupt
            code = all_codes[j]
            acc, loss = score_arch(model, arch, code, batches, bf16, calibration)
            lam = code.tolist()
            done[key] = {"score": acc, "val_loss": loss, **{f"lam_{i}": v for i, v in enumerate(lam)}}
            writer.writerow([key, f"{acc:.6g}", f"{loss:.6g}"] + [f"{v:.6g}" for v in lam])
            fh.flush()
            bar.update(1)
        bar.close()
    dist.barrier()  # every rank's journal is complete: read them all (one process too, so that a result
    return _read_journals(out_dir, as_key, fields)  # never depends on which run or process count scored it


def _read_journals(out_dir: Path, as_key: Dict[str, object], fields: List[str]) -> Dict:
    """Scores in every partial journal of `out_dir` (one, or one per rank); rows cut short are dropped.
    Values are read back from the journal's text, so a result does not depend on which run made it."""
    done: Dict = {}
    for path in sorted(Path(out_dir).glob(PARTIAL.replace(".csv", "*.csv"))):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("key") in as_key and all(row.get(f) not in (None, "") for f in fields):
                    done[as_key[row["key"]]] = {f: float(row[f]) for f in fields[1:]}
    return done


def remove_journals(out_dir: Path) -> None:
    for path in Path(out_dir).glob(PARTIAL.replace(".csv", "*.csv")):
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- outputs
def write_predictions(out_dir: Path, indices: Sequence[int], scored: Dict[int, dict], truth: np.ndarray, k: int) -> Path:
    from kshot_bench.search_space import nb201

    path = Path(out_dir) / "predictions.csv"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "arch_str", "score", "truth", "val_loss"] + [f"lam_{i}" for i in range(k)])
        for i, t in zip(indices, truth):
            r = scored[i]
            w.writerow([i, nb201.to_str(nb201.from_index(i)), f"{r['score']:.6g}", f"{t:.10g}", f"{r['val_loss']:.6g}"]
                       + [f"{r[f'lam_{j}']:.6g}" for j in range(k)])
    os.replace(tmp, path)
    return path


def _finite(obj):
    """NaN/inf -> None, so results files are standard JSON (null = undefined, e.g. tau of constant scores)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(path: Path, data) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def fmt(v: Optional[float], digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def with_ci(value: Optional[float], ci: Optional[Sequence[float]], digits: int = 3) -> str:
    """`0.123 [0.081, 0.164]`: a value and its 95% interval, when there is one."""
    if ci is None or value is None or any(v is None for v in ci):
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def significance_lines(m: Dict) -> List[str]:
    """Plain sentences on whether a tau is told apart from chance, and the other scoring beside it."""
    lines = []
    null = m.get("null")
    if null and null.get("band_lo") is not None and np.isfinite(null["band_lo"]):
        inside = null["band_lo"] <= m["kendall_tau"] <= null["band_hi"]
        lines.append(f"- Scores that carry no information about the truth give tau in [{fmt(null['band_lo'])}, "
                     f"{fmt(null['band_hi'])}] on these archs (95%); p-value of the supernet's tau "
                     f"{null['p_value']:.2g}. " + ("The supernet's tau lies inside that band: it is not told apart "
                                                       "from chance." if inside else "The supernet's tau lies outside it."))
    other = m.get("other_score")
    if other:
        lines.append(f"- Scored by {other['score']} instead: tau {with_ci(other['kendall_tau'], other.get('ci95', {}).get('kendall_tau'))}.")
    if m.get("uncertainty"):
        lines.append(f"- Intervals: {m['uncertainty']}.")
    return lines


def summary_table(rows: List[Tuple[str, Dict]], split_keys: Iterable[str]) -> List[str]:
    split_keys = list(split_keys)
    head = ["method", "Kendall tau", "Spearman"] + [f"split tau n={k}" for k in split_keys] + ["P@10", "regret"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in rows:
        ci = m.get("ci95", {})
        cells = [name, with_ci(m["kendall_tau"], ci.get("kendall_tau")), fmt(m["spearman"])]
        cells += [with_ci(m["split_tau"].get(k), ci.get("split_tau", {}).get(k)) for k in split_keys]
        cells += [fmt(m["precision_at_k"].get("10"), 2), fmt(m["regret"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_summary(out_dir: Path, metrics: Dict, baselines: Dict[str, Dict]) -> Path:
    p = metrics["protocol"]
    label = f"supernet K={p['k']} ({p['code_label']})"
    split_keys = [k for k in ("10", "50", "100", "1000") if k in metrics["split_tau"]] or list(metrics["split_tau"])[:3]
    rows = [(label, metrics)] + sorted(((f"{n}: {b['description']}", b) for n, b in baselines.items()),
                                       key=lambda r: -r[1]["kendall_tau"])
    tau = metrics["kendall_tau"]
    beaten = [n for n, b in baselines.items() if b["kendall_tau"] > tau]
    spos, kshot = PAPER_TABLE4.get(p["dataset"], (None, None))
    lines = [
        f"# Ranking: {p['dataset']}, K={p['k']}, {p['code_label']}",
        "",
        f"Kendall's tau of the supernet: **{tau:.3f}** over {p['n_archs']:,} archs "
        f"(ground truth `{p['truth']}`). " + (f"Baselines ranking better: {', '.join(beaten)}." if beaten else
                                            "It ranks better than every baseline below."),
        "",
        *summary_table(rows, split_keys),
        "",
        "Brackets: 95% bootstrap intervals (resampling the archs).",
        *_without_no_path_line(metrics),
        "",
        *significance_lines(metrics),
        "",
        "## Protocol",
        f"- run: `{p['command']}`",
        f"- config hash `{p['config_hash']}`, preset `{p['preset']}`, seed {p['seed']}; network C={p['channels']}, N={p['cells']}; "
        f"{p['epochs']} epochs ({p['warmup_epochs']} warm-up) on {p['train_images']:,} training images",
        f"- supernet trained on: {p['train_part']}; data: {p['data']}",
        f"- archs: {p['arch_set']}",
        f"- training paths drawn: {p.get('sampling', 'uniform')}",
        f"- scored on: {p['score_set']}; score: {p.get('score', 'top-1 accuracy (%)')}",
        f"- ground truth: `{p['truth']}` (NB201, embedded table)",
        f"- time: training {fmt(p['train_s'], 0)} s, scoring {fmt(p['score_s'], 0)} s "
        f"({fmt(p['archs_per_s'], 2)} archs/s); machine: {p['machine'].get('cpu')} / {p['machine'].get('device')}, "
        f"torch {p['machine'].get('torch')}, {p['machine'].get('threads')} threads",
        "",
        f"For scale, the paper's Table 4 (paper-scale training, all archs): SPOS {spos}%, K-shot {kshot}% Kendall's tau "
        "on this dataset. Those numbers come from 250-epoch supernets; a short run is not comparable to them.",
        "",
        "![predicted vs true](scatter.png)",
        "",
        "Files: `predictions.csv` (per arch: score, truth, code), `metrics.json`, `baselines.json`.",
    ]
    path = Path(out_dir) / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _without_no_path_line(metrics: Dict) -> List[str]:
    w = metrics.get("without_no_path")
    if not w:
        return []
    n = metrics["n_archs"] - w["n_archs"]
    return ["", f"Without the {n:,} archs that have no input-to-output path (their networks output a constant and sit "
                f"at chance accuracy): tau {with_ci(w['kendall_tau'], w['ci95']['kendall_tau'])} over "
                f"{w['n_archs']:,} archs."]


def plot_scatter(out_dir: Path, scores: np.ndarray, truth: np.ndarray, metrics: Dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = metrics["protocol"]
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=130)
    ax.scatter(truth, scores, s=8, alpha=0.6, edgecolors="none", color="#1f77b4")
    ax.set_xlabel(f"true accuracy (%), {p['truth']}")
    ax.set_ylabel(f"supernet accuracy (%), {p['n_score_images']:,} images")
    ax.set_title(f"{p['dataset']}  K={p['k']} {p['code_label']}: Kendall tau {metrics['kendall_tau']:.3f}\n"
                 f"{p['n_archs']:,} archs, config {p['config_hash']}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out_dir) / "scatter.png"
    fig.savefig(path)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the rank job
CODE_LABELS = {"simplex": "simplex-net codes", "uniform": "fixed 1/K codes", "random": "random codes"}


def code_label(k: int, code: str) -> str:
    return "one-shot" if k == 1 else CODE_LABELS.get(code, code)


def load_supernet(path: Path, device, expect: Dict[str, object]):
    """Supernet + code source + config from a train checkpoint; `expect` holds fields the user set
    explicitly (dataset, k, code), which must match the checkpoint."""
    from kshot_bench.config import from_dict
    from kshot_bench.train import build_supernet, code_source_from, load_checkpoint, run_hash

    state = load_checkpoint(path, device)
    if "model" not in state:
        raise UserError(f"{path} holds no supernet weights", fix="pass the supernet.pt of a train run")
    cfg = from_dict(state["config"])
    wrong = [f"{k}: checkpoint {getattr(cfg, k)!r}, asked {v!r}" for k, v in expect.items()
             if v is not None and getattr(cfg, k) != v]
    if wrong:
        raise UserError(f"checkpoint {path} does not match this run ({'; '.join(wrong)})",
                        fix="drop those flags to use the checkpoint's own settings, or pass a matching checkpoint")
    model = build_supernet(cfg).to(device)
    model.load_state_dict(state["model"])
    codes = code_source_from(state, device)
    finished = "epochs" in state
    if not state.get("config_hash"):  # files written before checkpoints carried it: the run's config.json
        path = Path(path)
        run_dir = path.parent.parent if path.parent.name == "snapshots" else path.parent
        state["config_hash"] = run_hash(cfg, run_dir)
    return cfg, model, codes, finished, state


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
    from kshot_bench.search_space import SPACES
    from kshot_bench.train import Trainer, machine_info, write_config

    dist = dist or Dist()
    out = Path(out)
    t0 = time.perf_counter()
    if checkpoint is not None:
        scoring = {f: getattr(cfg, f) for f in ("archs", "final_archs", "score_images", "score_batch", "score_by",
                                                "bn_calibration")}
        ckpt_cfg, model, codes, finished, state = load_supernet(Path(checkpoint), device, expect or {})
        cfg = ckpt_cfg.replace(**scoring)
        # scored as trained: the training run's own name (its hash rule may be an older version's)
        config_hash = state["config_hash"] if cfg == ckpt_cfg else cfg.hash()
        splits = load_for(cfg, data_root, download)
        out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known good: no empty run folders
        train_s = float("nan")
        trained_epochs = state.get("epochs", state.get("epoch"))
        source = f"checkpoint {checkpoint}" + ("" if finished else f" (unfinished run, epoch {trained_epochs})")
        train_precision = state.get("train_precision", "fp32")
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
    if cfg.final_archs and trained_epochs == cfg.epochs:  # the run's last supernet: its own arch set
        cfg = cfg.replace(archs=cfg.final_archs)
    space = SPACES.get(cfg.space)
    keys, archs, set_desc = arch_sample(space, cfg)
    if dist.is_main:
        write_config(cfg, out, {"data": splits.source, "machine": machine_info(device), "command": command,
                                "world_size": dist.world_size}, config_hash=config_hash)
    info = DATASETS.get(cfg.dataset)
    score_set = scoring_batches(splits, info, cfg.score_images, cfg.score_batch, device, cfg.bn_calibration)
    t1 = time.perf_counter()
    precision = score_precision(cfg, device)
    scored = score_archs(model, codes, score_set.batches, keys, archs, out, cfg.k, progress, dist, precision == "bf16",
                         score_set.calibration)
    score_s = time.perf_counter() - t1
    train_images = min(cfg.train_subset or splits.n_train, splits.n_train)
    protocol = {
        "space": cfg.space, "dataset": cfg.dataset, "k": cfg.k, "code": cfg.code, "code_label": code_label(cfg.k, cfg.code),
        "preset": preset, "seed": cfg.seed, "config_hash": config_hash, "channels": cfg.channels, "cells": cfg.cells,
        "epochs": trained_epochs, "warmup_epochs": cfg.warmup_epochs, "train_images": train_images,
        "sampling": cfg.sampling, "bn_calibration": cfg.bn_calibration,
        "train_part": info.train_part, "data": splits.source, "supernet": source, "train_precision": train_precision,
        "arch_set": set_desc, "n_archs": len(keys), "score_set": score_set.description,
        "n_score_images": score_set.n_images, "score": SCORE_KINDS[cfg.score_by], "score_by": cfg.score_by,
        "train_s": train_s, "score_s": score_s, "archs_per_s": len(keys) / score_s if score_s > 0 else None,
        "total_s": time.perf_counter() - t0, "machine": machine_info(device), "command": command,
        "world_size": dist.world_size, "score_precision": precision, "memory_format": layout_name(device),
    }
    return Scored(cfg, keys, archs, set_desc, scored, score_set, protocol, codes)


def arch_sample(space, cfg) -> Tuple[list, list, str]:
    """(keys, archs, description) of the arch set a rank job scores. NB201: `arch_set` (keys = official
    indices); spaces too large to list: a seeded uniform sample of N (keys = arch strings)."""
    from kshot_bench.train import uses_widths

    if space.NAME == "nb201":
        indices, desc = arch_set(cfg.archs, cfg.seed)
        return indices, [space.from_index(i) for i in indices], desc
    if not cfg.archs.isdigit():
        raise UserError(f"--archs {cfg.archs} lists every arch of the {space.NAME} space, which is far too large",
                        fix="use --archs N: a seeded uniform sample of N archs")
    rng = np.random.default_rng([cfg.seed, 7])
    archs = list(dict.fromkeys(space.sample(rng, widths=uses_widths(cfg)) for _ in range(int(cfg.archs))))
    widths = "with widths" if uses_widths(cfg) else "every width 1.0"
    return [space.to_str(a) for a in archs], archs, f"a seeded uniform sample of {len(archs):,} {space.NAME} archs ({widths}, seed {cfg.seed})"


def rank_job(cfg, out: Path, data_root: Optional[Path], device, checkpoint: Optional[Path] = None,
             truth_name: Optional[str] = None, expect: Optional[Dict] = None, progress: bool = True,
             command: str = "", preset: str = "", download: bool = True, dist=None) -> Tuple[Dict, Dict]:
    """Train (or load) a supernet, score the arch set, write predictions, metrics, baselines, summary.
    Spaces without a ground-truth benchmark (MBV2) get their scores and code statistics instead.
    Under torchrun only the main process writes the results (the others return empty dicts)."""
    from kshot_bench.datasets import DATASETS
    from kshot_bench.distributed import Dist
    from kshot_bench.ground_truth import truth_column

    dist = dist or Dist()
    out = Path(out)
    if cfg.space != "nb201":
        if truth_name is not None:
            raise UserError(f"--truth is an NB201 option; the {cfg.space} space has no ground-truth benchmark",
                            fix="drop --truth")
        job = score_job(cfg, out, data_root, device, checkpoint, expect, progress, command, preset, download, dist)
        return (unranked_job(job, out), {}) if dist.is_main else ({}, {})
    truth_name = truth_name or DATASETS.get(cfg.dataset).truth_default
    truth_all = truth_column(truth_name)  # fail fast on a bad --truth, before any training
    arch_set(cfg.archs, cfg.seed)  # and on a bad --archs
    job = score_job(cfg, out, data_root, device, checkpoint, expect, progress, command, preset, download, dist)
    if not dist.is_main:
        return {}, {}
    cfg, indices, scored = job.cfg, job.keys, job.scored
    truth = truth_all[np.asarray(indices)]
    write_predictions(out, indices, scored, truth, cfg.k)
    other = "loss" if cfg.score_by == "acc" else "acc"
    scores = score_values(scored, indices, cfg.score_by)
    metrics = ranking_metrics(scores, truth)
    metrics["other_score"] = {"score_by": other, "score": SCORE_KINDS[other],
                              **ranking_metrics(score_values(scored, indices, other), truth, null=False)}
    metrics["protocol"] = {**job.protocol, "truth": truth_name}
    from kshot_bench.search_space import nb201

    live = np.array([not nb201.is_dead(nb201.from_index(i)) for i in indices])
    if not live.all() and live.sum() >= 3:  # the archs with no input-to-output path sit at chance: tau without them
        metrics["without_no_path"] = {"n_archs": int(live.sum()),
                                      **ranking_metrics(scores[live], truth[live], null=False)}
    baselines = {}
    from kshot_bench import stats

    for name, (bscores, desc) in baseline_scores(cfg.dataset, indices, cfg.seed).items():
        baselines[name] = {"description": desc, **all_metrics(bscores, truth)}
        baselines[name]["ci95"] = {"kendall_tau": stats.tau_bootstrap_ci(bscores, truth)}
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
    from kshot_bench.train import uses_widths

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
              f"- time: training {fmt(p['train_s'], 0)} s, scoring {fmt(p['score_s'], 0)} s; machine: "
              f"{p['machine'].get('cpu')} / {p['machine'].get('device')}, torch {p['machine'].get('torch')}, "
              f"{p['machine'].get('threads')} threads", "",
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
    from kshot_bench.train import FINAL, list_snapshots

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
                   command: str = "", preset: str = "", download: bool = True, log=print) -> Path:
    """Score every snapshot of one train run (the tau-vs-epochs curve of one run: paper Fig. 7 on
    NB201): one rank run per snapshot in OUT/epoch-EEEE/, then OUT/curve.csv. Snapshots scored on
    an earlier call (their metrics.json exists) are not scored again, so the command can follow a
    run that is still training."""
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
                                  download)
            log(f"epoch {epoch}: tau {fmt(metrics['kendall_tau'])}")
        split = metrics["split_tau"]
        rows.append([epoch, metrics["kendall_tau"], metrics["spearman"], split.get("10"), split.get("50"),
                     split.get("100"), metrics["regret"], metrics["n_archs"], metrics["protocol"]["n_score_images"],
                     str(path)])
    path = out / "curve.csv"
    with open(path.with_suffix(".tmp"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CURVE_FIELDS)
        w.writerows([["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in r] for r in rows])
    os.replace(path.with_suffix(".tmp"), path)
    return path


def print_table(metrics: Dict, baselines: Dict) -> None:
    p = metrics["protocol"]
    rows = [(f"supernet K={p['k']} {p['code_label']}", metrics)] + sorted(baselines.items(), key=lambda r: -r[1]["kendall_tau"])
    ns = [k for k in ("10", "100", "1000") if k in metrics["split_tau"]]
    print(f"\n{'method':<34}{'tau':>8}{'95% CI':>17}{'rho':>8}" + "".join(f"{'split@' + k:>12}" for k in ns)
          + f"{'regret':>9}")
    for name, m in rows:
        lo, hi = m.get("ci95", {}).get("kendall_tau") or (None, None)
        ci = f"[{fmt(lo)}, {fmt(hi)}]" if lo is not None else ""
        print(f"{name[:33]:<34}{fmt(m['kendall_tau']):>8}{ci:>17}{fmt(m['spearman']):>8}"
              + "".join(f"{fmt(m['split_tau'][k]):>12}" for k in ns) + f"{fmt(m['regret'], 2):>9}")
    null = metrics.get("null")
    if null and null.get("band_lo") is not None and np.isfinite(null["band_lo"]):
        print(f"random scores on these archs: tau in [{fmt(null['band_lo'])}, {fmt(null['band_hi'])}] (95%); "
              f"p-value of the supernet's tau {null['p_value']:.2g}")
    print(f"\n{p['n_archs']:,} archs ({p['arch_set']}), {p['n_score_images']:,} scoring images, "
          f"truth {p['truth']}; training {fmt(p['train_s'], 0)} s, scoring {fmt(p['score_s'], 0)} s")
