"""Reports from run directories only (never trains): ablation tables and the paper's Figures 4-7.

Inputs: rank run directories (`metrics.json`, `baselines.json`, `predictions.csv`, `train/log.csv`)
and search run directories (`result.json`), found under the given paths. Output: `report.md` and
PNG figures. Every table and figure names the runs it came from, their config hashes and the
protocol; a figure whose inputs are missing is listed with the reason instead of silently dropped.

Table/figure shapes (paper numbering), NB201 at the scale of the runs given:
  Table 4   Kendall's tau, mean +- std over seeds, per method and dataset, with the baselines
  Table 5/6 the ablation rows (one-shot, fixed K-shot, random K-shot, K-shot + simplex-net)
  Table 1   training time per epoch and peak memory against K
  Fig. 4    tau against K per code mode (and searched accuracy where search runs exist)
  Fig. 5    split tau against n_high, one line per method
  Fig. 6    histogram of the K code values of (up to) 1,000 archs of a simplex-net run
  Fig. 7    tau against K and training epochs
  scatter   predicted vs true per run
MobileNetV2 runs (no ground truth), at the scale of the runs given:
  Table 5/6 the paper's ablation rows (one-shot, + channel, fixed / random K-shot, + simplex-net, + channel,
            + r_c): each supernet's scores, the arch its search chose, and that arch's retrained top-1
  Table 1   training time per epoch and peak memory against K
  Table 2   searched archs retrained and evaluated
  Fig. 4    best supernet fitness against the number of archs searched, one line per search
  Fig. 6    code histogram of 1,000 archs of a simplex-net run
  Fig. 7    top-1 of the searched, retrained archs against K and supernet epochs
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.rank import fmt

METHOD_ORDER = ["one-shot (K=1)", "fixed K-shot (1/K)", "random K-shot", "K-shot + simplex-net"]
METHOD_COLORS = dict(zip(METHOD_ORDER, ["black", "tab:blue", "tab:orange", "tab:green"]))  # the same in every figure
REQUIRED = ("kendall_tau", "spearman", "split_tau", "n_archs", "protocol")
REQUIRED_PROTOCOL = ("dataset", "k", "code", "config_hash", "seed", "epochs", "arch_set", "score_set", "truth")


def method_name(k: int, code: str) -> str:
    if k == 1:
        return METHOD_ORDER[0]
    return {"uniform": METHOD_ORDER[1], "random": METHOD_ORDER[2], "simplex": METHOD_ORDER[3]}.get(code, code)


MBV2_VARIANTS = ["one-shot", "one-shot + channel", "fixed K-shot", "fixed K-shot + channel", "random K-shot",
                 "random K-shot + channel", "K-shot + simplex-net", "K-shot + simplex-net + channel",
                 "K-shot + simplex-net + channel + r_c"]  # paper Tables 5/6 order


def variant_name(p: Dict) -> str:
    """The ablation row of a MobileNetV2 supernet (paper Tables 5/6) from its protocol."""
    k, code, widths, rc = int(p["k"]), p["code"], p.get("width_search"), p.get("rc_weight")
    channel = " + channel" if widths else ""
    if k == 1:
        return "one-shot" + channel
    if code != "simplex":
        return {"uniform": "fixed K-shot", "random": "random K-shot"}.get(code, code) + channel
    if not widths:
        return "K-shot + simplex-net"
    return "K-shot + simplex-net + channel" + ("" if rc is not None and rc <= 0 else " + r_c")


@dataclass
class RankRun:
    path: Path
    metrics: Dict
    baselines: Dict
    log: List[Dict[str, str]] = field(default_factory=list)
    _pred: Optional[Dict[str, np.ndarray]] = None
    _stats: Optional[Dict] = None

    @property
    def p(self) -> Dict:
        return self.metrics["protocol"]

    def predictions(self) -> Optional[Dict[str, np.ndarray]]:
        """index, truth, accuracy score and val_loss per arch, from predictions.csv (None without it)."""
        if self._pred is None and (self.path / "predictions.csv").is_file():
            with open(self.path / "predictions.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            self._pred = {"index": np.array([int(r["index"]) for r in rows]),
                          "truth": np.array([float(r["truth"]) for r in rows]),
                          "acc": np.array([float(r["score"]) for r in rows]),
                          "loss": -np.array([float(r["val_loss"]) if r.get("val_loss") not in (None, "") else np.nan
                                             for r in rows])}
        return self._pred

    @property
    def score_by(self) -> str:
        return self.p.get("score_by", "acc")

    def stats(self) -> Dict:
        """Uncertainty of this run's ranking, recomputed from predictions.csv (so runs written before
        rank stored intervals get them too): tau and split-tau intervals, null band, loss-scored tau."""
        if self._stats is None:
            from kshot_bench.rank import ranking_metrics

            pred = self.predictions()
            if pred is None:
                self._stats = {}
            else:
                self._stats = ranking_metrics(pred[self.score_by], pred["truth"])
                other = "loss" if self.score_by == "acc" else "acc"
                if np.isfinite(pred[other]).all():
                    self._stats["other_score"] = {"score_by": other,
                                                  **ranking_metrics(pred[other], pred["truth"], null=False)}
        return self._stats

    def scored(self, by: str) -> Dict:
        """`stats()` of this run's ranking by score `by` ("acc" or "loss"); {} when it has none."""
        st = self.stats()
        return st if by == self.score_by else st.get("other_score", {})

    @property
    def is_snapshot(self) -> bool:
        return "snapshots/epoch-" in str(self.p.get("supernet", ""))

    @property
    def method(self) -> str:
        return method_name(int(self.p["k"]), self.p["code"])

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.p['config_hash']})"


@dataclass
class SearchRun:
    path: Path
    result: Dict


@dataclass
class RetrainRun:
    path: Path
    config: Dict             # retrain's config.json
    evals: Dict[str, Dict]   # weights (ema | raw) -> eval-<weights>.json


def _load_json(path: Path, what: str) -> Dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {what} {path}: {err}", fix="re-run the command that writes it") from None


def _train_log(path: Path) -> List[Dict[str, str]]:
    log_path = path / "train" / "log.csv"
    if not log_path.exists():
        return []
    with open(log_path, newline="") as fh:
        return list(csv.DictReader(fh))


def load_rank_run(path: Path) -> RankRun:
    metrics = _load_json(path / "metrics.json", "metrics file")
    missing = [k for k in REQUIRED if k not in metrics]
    missing += [f"protocol.{k}" for k in REQUIRED_PROTOCOL if k not in metrics.get("protocol", {})]
    if missing:
        raise UserError(f"run {path}: metrics.json lacks {', '.join(missing)}",
                        fix="re-run `kshot-bench rank` for this run (its metrics.json is incomplete or from another tool)")
    baselines = _load_json(path / "baselines.json", "baselines file") if (path / "baselines.json").exists() else {}
    return RankRun(path, metrics, baselines, _train_log(path))


@dataclass
class Runs:
    ranks: List[RankRun]                                   # ranked against a ground truth (NB201)
    searches: List[SearchRun]                              # searches with ground truth of the chosen arch
    unranked: List[Tuple[Path, Dict]] = field(default_factory=list)   # scored runs of spaces without truth
    unranked_searches: List[SearchRun] = field(default_factory=list)
    retrains: List[RetrainRun] = field(default_factory=list)  # retrained + evaluated archs (Table 2 shape)


def _with_train_config(path: Path, metrics: Dict) -> Dict:
    """metrics with width_search / rc_weight in its protocol: runs scored before rank wrote them get them
    from the supernet's own train/config.json where the run has one."""
    p = metrics.get("protocol", {})
    cfg_path = path / "train" / "config.json"
    if ("width_search" in p and "rc_weight" in p) or not cfg_path.is_file():
        return metrics
    cfg = _load_json(cfg_path, "training config")
    cfg = cfg.get("config", cfg)
    extra = {"width_search": bool(cfg.get("width_search", True)), "rc_weight": cfg.get("rc_weight")}
    return {**metrics, "protocol": {**extra, **p}}


def discover(paths: Sequence[Path]) -> Runs:
    found = Runs([], [])
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise UserError(f"run directory {root} does not exist", fix="pass directories written by rank, ablate or search")
        for m in sorted(root.rglob("metrics.json")) if root.is_dir() else []:
            metrics = _load_json(m, "metrics file")
            if metrics.get("protocol", {}).get("space", "nb201") != "nb201":
                found.unranked.append((m.parent, _with_train_config(m.parent, metrics)))
            else:
                found.ranks.append(load_rank_run(m.parent))
        for r in sorted(root.rglob("result.json")) if root.is_dir() else []:
            res = _load_json(r, "search result")
            for key in ("algo", "fitness", "truth", "seed", "dataset"):
                if key not in res:
                    raise UserError(f"search run {r.parent}: result.json lacks {key!r}", fix="re-run `kshot-bench search`")
            (found.searches if res["truth"] is not None else found.unranked_searches).append(SearchRun(r.parent, res))
        for d in sorted({e.parent for e in root.rglob("eval-*.json")}) if root.is_dir() else []:
            evals = {e.stem[len("eval-"):]: _load_json(e, "evaluation") for e in sorted(d.glob("eval-*.json"))}
            found.retrains.append(RetrainRun(d, _load_json(d / "config.json", "retrain config"), evals))
    if not (found.ranks or found.searches or found.unranked or found.unranked_searches or found.retrains):
        raise UserError(f"no runs found under {', '.join(map(str, paths))}",
                        fix="pass directories holding metrics.json (rank/ablate) or result.json (search)")
    return found


def unranked_tables(runs: Runs) -> List[str]:
    """Runs of spaces without ground truth (MBV2): the supernet's scores and codes, and searched archs."""
    lines = []
    if runs.unranked:
        lines += ["### Scored runs without ground truth", "",
                  "| run | space | dataset | method | K | epochs | archs | score mean ± std | tau(score, FLOPs) | "
                  "code spread between archs | between widths (same ops) | config |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for path, m in runs.unranked:
            p, st = m["protocol"], m.get("code_stats", {})
            lines.append(f"| {path.name} | {p['space']} | {p['dataset']} | {method_name(int(p['k']), p['code'])} | {p['k']} | "
                         f"{p['epochs']} | {m['n_archs']} | {m['score_mean']:.2f} ± {m['score_std']:.2f} | "
                         f"{fmt(m.get('kendall_tau_vs_flops'))} | {fmt(st.get('between_archs', {}).get('code_spread'), 4)} | "
                         f"{fmt(st.get('between_widths_same_ops', {}).get('code_spread'), 4)} | {p['config_hash']} |")
        lines += ["", "No Kendall's tau: these spaces have no ground-truth benchmark. Spread: mean total-variation "
                  "distance between the codes of two archs (or of two width settings of the same ops).", ""]
    if runs.unranked_searches:
        lines += ["### Searched archs without ground truth", "",
                  "| run | space | algo | FLOPs limit (M) | FLOPs (M) | params (M) | supernet fitness | archs scored | arch |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for sr in runs.unranked_searches:
            r = sr.result
            lines.append(f"| {sr.path.name} | {r.get('space')} | {r['algo']} | {r.get('flops_limit_M')} | {r['flops_M']:.1f} | "
                         f"{r.get('params_M', float('nan')):.2f} | {r['fitness_value']:.2f} | {r['n_evaluated']} | "
                         f"`{md(r['arch_str'])}` |")
        lines.append("")
    return lines


# ----------------------------------------------------------------------------- helpers
def _retrained_top1(arch: str, retrains: Sequence["RetrainRun"]) -> List[float]:
    return [rr.evals.get("ema", next(iter(rr.evals.values())))["top1"] for rr in retrains
            if rr.config.get("config", {}).get("arch") == arch and rr.evals]


def table_ablation_unranked(runs: Runs) -> List[str]:
    """Paper Tables 5/6 shape for MobileNetV2: one row per supernet (ablation variant), its scores on the
    local validation split, the arch its search chose under the FLOPs limit, and that arch retrained."""
    def where(path) -> Optional[str]:
        return str(Path(path).expanduser().resolve()) if path else None

    def supernet_file(p: Dict) -> Optional[str]:  # rank's protocol: "checkpoint FILE [(unfinished ...)]" | "trained here in DIR"
        text = p.get("supernet", "")
        if text.startswith("checkpoint "):
            return where(text[len("checkpoint "):].split(" (unfinished run")[0])
        return where(Path(text[len("trained here in "):]) / "supernet.pt") if text.startswith("trained here in ") else None

    searches = group(runs.unranked_searches, lambda sr: where(sr.result.get("protocol", {}).get("checkpoint")))
    rows = [(variant_name(m["protocol"]), m["protocol"], path.name, m, searches.pop(supernet_file(m["protocol"]), []))
            for path, m in runs.unranked]
    rows += [(variant_name(ss[0].result["protocol"]), ss[0].result["protocol"], "–", None, ss)
             for h, ss in searches.items() if h is not None and "k" in ss[0].result.get("protocol", {})]
    if not rows:
        return []
    order = {v: i for i, v in enumerate(MBV2_VARIANTS)}
    rows.sort(key=lambda r: (order.get(r[0], 99), int(r[1]["k"]), -int(r[1].get("epochs", 0)), r[2]))
    lines = ["### Tables 5/6 shape: ablation of the K-shot parts (MobileNetV2)", "",
             "| # | variant | K | epochs | supernet run | score mean ± std (%) | search | FLOPs (M) | supernet fitness (%) | "
             "retrained top-1 (%) | config |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, (variant, p, name, m, ss) in enumerate(rows, 1):
        scores = f"{m['score_mean']:.2f} ± {m['score_std']:.2f}" if m else "–"
        if not ss:
            lines.append(f"| {n} | {variant} | {p['k']} | {p.get('epochs', '?')} | {name} | {scores} | no search run | – | – | – | "
                         f"{p['config_hash']} |")
        for sr in ss:
            r = sr.result
            top1 = _retrained_top1(r["arch_str"], runs.retrains)
            lines.append(f"| {n} | {variant} | {p['k']} | {p.get('epochs', '?')} | {name} | {scores} | {sr.path.name} "
                         f"({r['algo']}, limit {r.get('flops_limit_M')} M, {r['n_evaluated']} archs) | {r['flops_M']:.1f} | "
                         f"{r['fitness_value']:.2f} | {pm(top1, digits=2) if top1 else 'not retrained'} | {p['config_hash']} |")
    missing = [v for v in MBV2_VARIANTS if v not in {r[0] for r in rows}]
    lines += ["", "A search belongs to the row of the supernet file it searched with. Score and fitness: top-1 of each arch "
              "with its own code on the scoring images (the local validation "
              "split for ImageNet folders) through the supernet. Retrained top-1: the chosen arch trained from scratch "
              "and evaluated (Table 2 shape below). FLOPs by the SPEC 7 convention (224x224, 1,000 classes). Rows "
              "differ in what they train; with one seed each, a difference between two rows carries the run-to-run "
              "noise of one search and one retraining.", ""]
    return lines + ([f"Not covered by the runs given: {', '.join(missing)}.", ""] if missing else [])


def fig4_search(searches: Sequence["SearchRun"], out: Path) -> Tuple[Optional[str], str]:
    """Paper Fig. 4 shape without ground truth: the best supernet fitness found against the number of archs
    the search has scored, one line per search (its supernet's ablation variant)."""
    curves = []
    for sr in searches:
        hist = sr.path / "history.csv"
        if not hist.is_file():
            continue
        with open(hist, newline="") as fh:
            fit = [float(row["fitness"]) for row in sorted(csv.DictReader(fh), key=lambda row: int(row["order"]))]
        if fit:
            curves.append((sr, np.maximum.accumulate(fit)))
    if not curves:
        return None, "Fig. 4 (search) needs search runs with history.csv."
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=130)
    for sr, best in curves:
        p = sr.result.get("protocol", {})
        label = f"{sr.path.name}: {variant_name(p)} (K={p['k']})" if "k" in p else sr.path.name
        ax.plot(np.arange(1, len(best) + 1), best, linewidth=1.6, label=label)
    ax.set_xlabel("archs scored by the search")
    ax.set_ylabel("best supernet fitness so far (top-1 %)")
    limits = sorted({str(sr.result.get("flops_limit_M")) for sr, _ in curves})
    ax.set_title(f"Fig. 4 shape: search progress under a FLOPs limit of {', '.join(limits)} M", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    name = _save(plt, fig, out, "fig4_search_progress.png")
    return name, (f"Fig. 4 shape from {len(curves)} search runs ({', '.join(sr.path.name for sr, _ in curves)}): each "
                  "line is one search's best supernet fitness so far; fitness is each supernet's own estimate, so lines "
                  "of different supernets compare what each supernet believes, not retrained accuracy.")


def fig7_retrained(searches: Sequence["SearchRun"], retrains: Sequence["RetrainRun"], out: Path) -> Tuple[Optional[str], str]:
    """Paper Fig. 7 shape (ImageNet): top-1 of the searched, retrained archs against the supernet's K and
    training epochs; one point per retrained network, one line per K."""
    pts = defaultdict(list)  # (k, epochs) -> top-1 of each retrained arch its searches chose
    for sr in searches:
        p = sr.result.get("protocol", {})
        if "k" in p and "epochs" in p:
            for top1 in _retrained_top1(sr.result["arch_str"], retrains):
                pts[(int(p["k"]), int(p["epochs"]))].append(top1)
    if len([v for vs in pts.values() for v in vs]) < 2:
        return None, ("Fig. 7 (MobileNetV2) needs two or more retrained archs chosen by searches on supernets of "
                      "different K or training epochs (retrain, then evaluate, each search's arch).")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=130)
    for k in sorted({k for k, _ in pts}):
        es = sorted(e for kk, e in pts if kk == k)
        st = [mean_std(pts[(k, e)]) for e in es]
        ax.errorbar(es, [x[0] for x in st], yerr=[x[1] for x in st], marker="o", capsize=3,
                    label="one-shot (K=1)" if k == 1 else f"K={k}")
        for e, (m, _, n) in zip(es, st):
            ax.annotate(f"n={n}", (e, m), textcoords="offset points", xytext=(6, -10), fontsize=7)
    epochs = sorted({e for _, e in pts})
    ax.set_xticks(epochs, [str(e) for e in epochs])
    ax.set_xlabel("supernet training epochs")
    ax.set_ylabel("top-1 of the searched arch, retrained (%)")
    ax.set_title("Fig. 7 shape: searched models against K and supernet epochs", fontsize=10)
    ax.legend(fontsize=8)
    name = _save(plt, fig, out, "fig7_retrained_vs_k_epochs.png")
    return name, (f"Fig. 7 shape from {sum(len(v) for v in pts.values())} retrained archs; error bars: std over the "
                  "archs of a point (none with one). Each point is one search and one retraining: their noise is in it.")


def md(text: str) -> str:
    """Escape pipes for a Markdown table cell (NB201 arch strings are full of them)."""
    return str(text).replace("|", "\\|")


def mean_std(values: Sequence[float]) -> Tuple[float, float, int]:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def pm(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> str:
    m, s, n = mean_std(values)
    if n == 0:
        return "n/a"
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f} (n={n})"


def ci_text(value, ci, digits: int = 3) -> str:
    from kshot_bench.rank import with_ci

    return with_ci(value, ci, digits)


def run_cis(runs: Sequence[RankRun]) -> str:
    """Each run's tau with its bootstrap 95% interval, `; `-joined (runs without predictions: n/a)."""
    out = []
    for r in runs:
        st = r.stats()
        out.append(ci_text(st["kendall_tau"], st["ci95"]["kendall_tau"]) if st else "n/a")
    return "; ".join(out)


def group(runs: Sequence[RankRun], key) -> Dict:
    out = defaultdict(list)
    for r in runs:
        out[key(r)].append(r)
    return dict(out)


def protocol_line(runs: Sequence[RankRun]) -> str:
    hashes = sorted({r.p["config_hash"] for r in runs})
    sets = sorted({r.p["arch_set"] for r in runs})
    scores = sorted({r.p["score_set"] for r in runs})
    truths = sorted({r.p["truth"] for r in runs})
    return (f"runs: {', '.join(r.path.name for r in runs)}; config hashes {', '.join(hashes)}; archs: {'; '.join(sets)}; "
            f"scored on {'; '.join(scores)}; ground truth {', '.join(truths)}")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt


def _save(plt, fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name)
    plt.close(fig)
    return name


# ----------------------------------------------------------------------------- tables
def _baseline_rows(runs: List[RankRun]) -> List[str]:
    """One row per baseline; each distinct arch set counts once (runs that share it share the values)."""
    rows = []
    for b in sorted({b for r in runs for b in r.baselines} - {"random"}):  # chance is the null band, not one draw
        per_set = {r.p.get("arch_set", r.label): r.baselines[b] for r in runs if b in r.baselines}
        desc = next(iter(per_set.values())).get("description", b)
        rows.append(f"| baseline: {desc} | – | – | {pm([v['kendall_tau'] for v in per_set.values()])} | "
                    f"{_baseline_cis(runs, b)} | {pm([v['spearman'] for v in per_set.values()])} | "
                    f"the runs' arch sets ({len(per_set)}) |")
    return rows


def _baseline_cis(runs: List[RankRun], name: str) -> str:
    """The baseline's tau with a bootstrap interval on each distinct arch set of the runs."""
    from kshot_bench import stats
    from kshot_bench.rank import baseline_scores

    out, seen = [], set()
    for r in runs:
        pred = r.predictions()
        key = r.p.get("arch_set")
        if pred is None or key in seen:
            continue
        seen.add(key)
        scores = baseline_scores(r.p["dataset"], pred["index"], int(r.p["seed"])).get(name)
        if scores is None:
            continue
        from kshot_bench.rank import kendall_tau

        out.append(ci_text(kendall_tau(scores[0], pred["truth"]), stats.tau_bootstrap_ci(scores[0], pred["truth"])))
    return "; ".join(out) or "n/a"


def _chance_rows(runs: List[RankRun]) -> List[str]:
    """Where uninformative scores land: the null band of tau on each distinct arch set."""
    bands, seen = [], set()
    for r in runs:
        null = r.stats().get("null") if r.stats() else None
        if null and r.p.get("arch_set") not in seen and np.isfinite(null["band_lo"]):
            seen.add(r.p.get("arch_set"))
            bands.append(f"[{null['band_lo']:.3f}, {null['band_hi']:.3f}]")
    if not bands:
        return []
    return [f"| chance: 95% band of tau for scores unrelated to the truth | – | – | 0 | {'; '.join(bands)} | – | "
            f"the runs' arch sets ({len(bands)}) |"]


def table4(ranks: List[RankRun]) -> List[str]:
    lines = []
    for dataset, runs in group(ranks, lambda r: r.p["dataset"]).items():
        lines += [f"### Table 4 shape: Kendall's tau on {dataset}", "",
                  "| method | K | epochs | Kendall tau | each run: tau [95% CI] | Spearman | runs |",
                  "|---|---|---|---|---|---|---|"]
        by = group(runs, lambda r: (METHOD_ORDER.index(r.method) if r.method in METHOD_ORDER else 9, int(r.p["k"]),
                                    -int(r.p["epochs"]), r.method))
        for (_, k, neg_epochs, method), rs in sorted(by.items()):
            lines.append(f"| {method} | {k} | {-neg_epochs} | {pm([r.metrics['kendall_tau'] for r in rs])} | "
                         f"{run_cis(rs)} | {pm([r.metrics['spearman'] for r in rs])} | {', '.join(r.label for r in rs)} |")
        lines += _baseline_rows(runs) + _chance_rows(runs)
        lines += ["", "Mean ± std over the runs of each row (seeds); rows with different training budgets are kept "
                  "apart. A baseline's spread is over the distinct arch sets of the runs. Brackets: 95% bootstrap "
                  "intervals of each run's tau (1,000 resamples of its archs).", "",
                  f"Protocol: {protocol_line(runs)}.", ""]
    return lines


def table_ablation(ranks: List[RankRun], searches: List[SearchRun]) -> List[str]:
    lines = ["### Tables 5/6 shape: ablation of the K-shot parts (ranking quality on NB201)", "",
             "| # | K-shot | simplex-net | codes | K | epochs | Kendall tau | split tau (n=100) | searched ground truth | runs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    supernet_searches = [s for s in searches if s.result["fitness"] == "supernet"]
    n = 0
    for method in METHOD_ORDER:
        rs_all = [r for r in ranks if r.method == method]
        for (k, neg_epochs), rs in sorted(group(rs_all, lambda r: (int(r.p["k"]), -int(r.p["epochs"]))).items()):
            n += 1
            code = rs[0].p["code"] if k > 1 else "[1]"
            split = [r.metrics["split_tau"].get("100") for r in rs]
            hashes = {r.p["config_hash"] for r in rs}
            srch = [s for s in supernet_searches if s.result.get("protocol", {}).get("config_hash") in hashes]
            lines.append(f"| {n} | {'✓' if k > 1 else ''} | {'✓' if method == METHOD_ORDER[3] else ''} | {code} | {k} | "
                         f"{-neg_epochs} | {pm([r.metrics['kendall_tau'] for r in rs])} | {pm(split)} | "
                         f"{pm([s.result['truth'] for s in srch], digits=2) if srch else 'no search run'} | "
                         f"{', '.join(r.label for r in rs)} |")
    missing = [m for m in METHOD_ORDER if not any(r.method == m for r in ranks)]
    lines += ["", "Searched ground truth: NSGA-II runs whose checkpoint has the config of a run in the row.", ""]
    lines += [f"Not covered by the runs given: {', '.join(missing)}.", ""] if missing else []
    return lines


SAME_SCORING = ("dataset", "truth", "arch_set", "score_set")


def paired(a: RankRun, b: RankRun, keys: Sequence[str] = ("seed", "epochs") + SAME_SCORING) -> bool:
    """Two runs can be compared pair by pair: same dataset, seed, budget, ground truth, arch set and
    scoring images (`keys`), and their predictions list the same archs with the same truth."""
    if any(str(a.p.get(k)) != str(b.p.get(k)) for k in keys):
        return False
    pa, pb = a.predictions(), b.predictions()
    return (pa is not None and pb is not None and np.array_equal(pa["index"], pb["index"])
            and np.array_equal(pa["truth"], pb["truth"]))


def compare(path_a: Path, path_b: Path) -> List[str]:
    """Any two rank runs that scored the same archs on the same images against the same truth (other
    epochs, seeds or methods allowed: e.g. two budgets of about equal compute): each run's tau with its
    interval, by accuracy and by loss, the paired difference A - B with its interval (joint resamples of
    the archs), and the split taus. Markdown lines."""
    from kshot_bench import stats

    for path in (path_a, path_b):
        if not (Path(path) / "metrics.json").is_file():
            raise UserError(f"{path} is not a rank run (it holds no metrics.json)",
                            fix="pass folders written by `kshot-bench rank`: a run folder, or one snapshot's epoch-EEEE/")
    a, b = load_rank_run(Path(path_a)), load_rank_run(Path(path_b))
    if not paired(a, b, SAME_SCORING):
        diff = [k for k in SAME_SCORING if str(a.p.get(k)) != str(b.p.get(k))]
        raise UserError(f"{a.path} and {b.path} did not score the same archs on the same images against the same "
                        f"truth ({', '.join(diff) or 'their predictions.csv list different archs'} differ)",
                        fix="compare rank runs of one protocol (same --archs sample, scoring images and dataset)")
    pa, pb = a.predictions(), b.predictions()
    lines = [f"{name}: {r.path} ({r.method}, K={r.p['k']}, {r.p['epochs']} epochs, seed {r.p['seed']}, config "
             f"{r.p['config_hash']})" for name, r in (("A", a), ("B", b))]
    lines += [f"on {len(pa['truth'])} archs: {a.p['arch_set']}; scored on {a.p['score_set']}; truth {a.p['truth']}", "",
              "| scored by | tau A [95% CI] | tau B [95% CI] | A - B [95% CI] | resamples with A > B |",
              "|---|---|---|---|---|"]

    def tau(run: RankRun, by: str) -> str:
        st = run.scored(by)
        return ci_text(st["kendall_tau"], st["ci95"]["kendall_tau"]) if st else "n/a"

    for by in ("acc", "loss"):
        if not (np.isfinite(pa[by]).all() and np.isfinite(pb[by]).all()):
            lines.append(f"| {by} | n/a | n/a | n/a | n/a |")
            continue
        d = stats.paired_tau_diff(pa[by], pb[by], pa["truth"])
        lines.append(f"| {by} | {tau(a, by)} | {tau(b, by)} | {ci_text(d['diff'], (d['ci_lo'], d['ci_hi']))} | "
                     f"{100 * d['share_of_resamples_above_0']:.0f}% |")
    by = a.score_by
    splits = [f"n={n}: {text}" for n, text in split_taus(a.scored(by), b.scored(by), len(pa["truth"]))]
    return lines + ["", f"split tau ({by}), A vs B: " + "; ".join(splits),
                    f"intervals: {stats.N_BOOT} bootstrap resamples of the archs, the same for A and B."]


def split_taus(sa: Dict, sb: Dict, n_archs: int) -> List[Tuple[str, str]]:
    """(n, "split tau of A [CI] vs of B [CI]") for n = 10, 50, 100 below the number of archs."""
    return [(n, f"{ci_text(sa['split_tau'][n], sa['ci95']['split_tau'].get(n), 2)} vs "
                f"{ci_text(sb['split_tau'][n], sb['ci95']['split_tau'].get(n), 2)}")
            for n in ("10", "50", "100") if int(n) < n_archs]


def paired_comparisons(ranks: List[RankRun]) -> List[str]:
    """Every K-shot run against the one-shot run it pairs with: the difference in tau with its bootstrap
    interval (joint resamples of the archs), by accuracy and by loss, and the split taus of both."""
    from kshot_bench import stats

    pairs = [(r, o) for r in ranks if int(r.p["k"]) > 1 for o in ranks if int(o.p["k"]) == 1 and paired(r, o)]
    if not pairs:
        return []
    lines = ["### Paired comparisons: K-shot against one-shot on the same archs and images", "",
             "| dataset | method | K | epochs | seed | tau K-shot [95% CI] | tau one-shot [95% CI] | Δtau [95% CI] | "
             "tau by loss: K-shot vs one-shot | Δtau by loss [95% CI] | split tau n=10 / 50 / 100 (K-shot vs one-shot) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for r, o in sorted(pairs, key=lambda ro: (ro[0].p["dataset"], -int(ro[0].p["epochs"]), ro[0].method, int(ro[0].p["k"]),
                                              int(ro[0].p["seed"]))):
        pr, po = r.predictions(), o.predictions()
        sr, so = r.stats(), o.stats()
        d = stats.paired_tau_diff(pr[r.score_by], po[o.score_by], pr["truth"])
        dl = (stats.paired_tau_diff(pr["loss"], po["loss"], pr["truth"])
              if np.isfinite(pr["loss"]).all() and np.isfinite(po["loss"]).all() else None)
        splits = [text for _, text in split_taus(sr, so, len(pr["truth"]))]
        lines.append(f"| {r.p['dataset']} | {r.method} | {r.p['k']} | {r.p['epochs']} | {r.p['seed']} | "
                     f"{ci_text(sr['kendall_tau'], sr['ci95']['kendall_tau'])} | "
                     f"{ci_text(so['kendall_tau'], so['ci95']['kendall_tau'])} | "
                     f"{ci_text(d['diff'], (d['ci_lo'], d['ci_hi']))} | {loss_taus(sr, so)} | "
                     f"{ci_text(dl['diff'], (dl['ci_lo'], dl['ci_hi'])) if dl else 'n/a'} | {'; '.join(splits)} |")
        verdicts.append((r, d, dl))
    lines += ["", f"Δtau = tau(K-shot) - tau(one-shot), scored {pairs[0][0].score_by} unless stated; intervals over "
              f"{stats.N_BOOT} bootstrap resamples of the archs, the same resamples for both runs.", ""]
    top = max(int(r.p["epochs"]) for r, _, _ in verdicts)
    for (method, k), vs in group([v for v in verdicts if int(v[0].p["epochs"]) == top],
                                 lambda v: (v[0].method, int(v[0].p["k"]))).items():
        what, parts = verdict(method, k, [(r, d) for r, d, _ in vs])
        lines.append(f"- At {top} epochs, {what} ({parts}). Each interval covers the choice of archs "
                     "only, not the training seed.")
        if all(dl is not None for _, _, dl in vs):
            what, parts = verdict(method, k, [(r, dl) for r, _, dl in vs])
            lines.append(f"- Scored by validation loss instead: {what} ({parts}).")
    return lines + [""]


def loss_taus(sr: Dict, so: Dict) -> str:
    """The two runs' taus scored by the other score (loss, when they rank by accuracy), with intervals."""
    a, b = sr.get("other_score"), so.get("other_score")
    if not a or not b:
        return "n/a"
    return f"{ci_text(a['kendall_tau'], a['ci95']['kendall_tau'])} vs {ci_text(b['kendall_tau'], b['ci95']['kendall_tau'])}"


def verdict(method: str, k: int, vs: List) -> Tuple[str, str]:
    """What paired differences (run, diff) over seeds establish, and the differences as text."""
    if not all(np.isfinite(d["diff"]) for _, d in vs):
        return "tau is undefined (a run gave every arch the same score)", "; ".join(f"seed {r.p['seed']}" for r, _ in vs)
    parts = []
    for r, d in vs:
        side = "contains 0" if d["ci_lo"] <= 0 <= d["ci_hi"] else ("above 0" if d["diff"] > 0 else "below 0")
        parts.append(f"seed {r.p['seed']}: {d['diff']:+.3f} [{d['ci_lo']:+.3f}, {d['ci_hi']:+.3f}], {side}")
    diffs = [d["diff"] for _, d in vs]
    every = "in every seed" if len(vs) > 1 else "on these archs (one training seed)"
    if all(d["ci_lo"] > 0 for _, d in vs):
        what = f"{method} (K={k}) ranks better than one-shot {every}"
    elif all(d["ci_hi"] < 0 for _, d in vs):
        what = f"{method} (K={k}) ranks worse than one-shot {every}"
    elif len(vs) > 1 and min(diffs) < 0 < max(diffs):
        what = (f"the sign of the difference flips between training seeds (mean {np.mean(diffs):+.3f}, std "
                f"{np.std(diffs, ddof=1):.3f}): the run-to-run spread is larger than the interval from the arch "
                f"sample, so no difference between {method} (K={k}) and one-shot is established")
    else:
        what = f"no difference between {method} (K={k}) and one-shot is established"
    return what, "; ".join(parts)


def table1(ranks: List[RankRun]) -> List[str]:
    lines = ["### Table 1 shape: training cost per epoch against K", "",
             "| K | code | warm-up epoch (s) | K-shot epoch (s) | images/s (warm-up) | peak memory (MB) | runs |",
             "|---|---|---|---|---|---|---|"]
    rows = 0
    for (k, code), rs in sorted(group([r for r in ranks if r.log], lambda r: (int(r.p["k"]), r.p["code"])).items()):
        warm = [float(row["time_s"]) for r in rs for row in r.log if row["phase"] == "warmup"]
        kshot = [float(row["time_s"]) for r in rs for row in r.log if row["phase"] != "warmup"]
        ips = [float(row["images_per_s"]) for r in rs for row in r.log if row["phase"] == "warmup"]
        mem = [max(float(row["peak_mem_mb"]) for row in r.log) for r in rs]
        lines.append(f"| {k} | {code if k > 1 else '–'} | {pm(warm, digits=1)} | {pm(kshot, digits=1)} | "
                     f"{pm(ips, digits=0)} | {pm(mem, digits=0)} | {', '.join(r.label for r in rs)} |")
        rows += 1
    if not rows:
        return ["### Table 1 shape", "", "Missing: none of the runs has a training log (train/log.csv); runs scored "
                "from a --checkpoint carry none.", ""]
    machines = sorted({f"{r.p['machine'].get('cpu')} {r.p['machine'].get('device')}, {r.p['machine'].get('threads')} threads"
                       for r in ranks if "machine" in r.p})
    lines += ["", "Time per epoch from the runs' logs (the K-shot phase adds the simplex-net steps); peak memory is the "
              f"process's peak RSS on the CPU. Machines: {'; '.join(machines)}. Controlled step-time and memory ratios "
              "against K are in benchmarks/results/k_overhead-*.json.", ""]
    return lines


# ----------------------------------------------------------------------------- figures
def fig4(ranks, searches, out: Path) -> Tuple[Optional[str], str]:
    budgets = sorted({int(r.p["epochs"]) for r in ranks})
    ranks = [r for r in ranks if int(r.p["epochs"]) == budgets[-1]]  # one training budget: the largest
    if len({int(r.p["k"]) for r in ranks}) < 2:
        return None, "Fig. 4 needs runs at two or more values of K (at the same training budget)."
    by = group(ranks, lambda r: r.method)
    plt = _plt()
    has_search = any(s.result["fitness"] == "supernet" for s in searches)
    fig, axes = plt.subplots(1, 2 if has_search else 1, figsize=(10 if has_search else 5.5, 4), dpi=130, squeeze=False)
    ax = axes[0][0]
    one = [r.metrics["kendall_tau"] for r in by.get(METHOD_ORDER[0], [])]
    all_k = sorted({int(r.p["k"]) for r in ranks})
    for j, method in enumerate(m for m in METHOD_ORDER if m in by):
        if method == METHOD_ORDER[0]:
            m1, s1, _ = mean_std(one)
            ax.errorbar([1], [m1], yerr=[s1], marker="D", ms=7, color="k", capsize=3, linestyle="none", label=method)
            continue
        rs = by[method]
        ks = sorted({int(r.p["k"]) for r in rs})
        st = [mean_std([r.metrics["kendall_tau"] for r in rs if int(r.p["k"]) == k]) for k in ks]
        shift = 2 ** ((j - 2) * 0.04)  # small horizontal offsets keep overlapping methods visible
        ax.errorbar([k * shift for k in ks], [x[0] for x in st], yerr=[x[1] for x in st], marker="o", capsize=3,
                    label=method, color=METHOD_COLORS.get(method))
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_k, [str(k) for k in all_k])
    ax.set_xlabel("K (K=1: one-shot)")
    ax.set_ylabel("Kendall's tau (mean ± std over seeds)")
    ax.set_title(f"Fig. 4: ranking quality against K ({budgets[-1]} epochs)", fontsize=10)
    ax.legend(fontsize=8)
    if has_search:
        ax2 = axes[0][1]
        sr = group([s for s in searches if s.result["fitness"] == "supernet"], lambda s: int(s.result.get("protocol", {}).get("k", 0)))
        ks = sorted(sr)
        st = [mean_std([s.result["truth"] for s in sr[k]]) for k in ks]
        ax2.errorbar(ks, [x[0] for x in st], yerr=[x[1] for x in st], marker="s", ms=7, capsize=3,
                     linestyle="-" if min(x[2] for x in st) > 1 else "none")  # no trend line through single runs
        for k, (m, _, n) in zip(ks, st):
            ax2.annotate(f"n={n}", (k, m), textcoords="offset points", xytext=(8, -4), fontsize=8)
        ax2.set_xscale("log", base=2)
        ax2.set_xticks(ks, [str(k) for k in ks])
        ax2.set_xlabel("K")
        ax2.set_ylabel("ground truth of the searched arch (%)")
        ax2.set_title("searched accuracy against K", fontsize=10)
    name = _save(plt, fig, out, "fig4_tau_vs_k.png")
    return name, f"Fig. 4 ({budgets[-1]}-epoch runs) from {protocol_line(ranks)}."


def fig5(ranks, out: Path) -> Tuple[Optional[str], str]:
    budgets = sorted({int(r.p["epochs"]) for r in ranks})
    ranks = [r for r in ranks if int(r.p["epochs"]) == budgets[-1]]  # one training budget: the largest
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=130)
    by = group(ranks, lambda r: r.method)
    for method in sorted(by, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 9):
        rs = by[method]
        ns = sorted({int(n) for r in rs for n in r.metrics["split_tau"]})
        st = [mean_std([r.metrics["split_tau"].get(str(n)) for r in rs]) for n in ns]
        ax.errorbar(ns, [s[0] for s in st], yerr=[s[1] for s in st], marker="o", capsize=3, label=method,
                    color=METHOD_COLORS.get(method))
    base = {r.p["arch_set"]: r.baselines["params"] for r in ranks if "params" in r.baselines}
    if base:
        ns = sorted({int(n) for b in base.values() for n in b["split_tau"]})
        ax.plot(ns, [mean_std([b["split_tau"].get(str(n)) for b in base.values()])[0] for n in ns], "k--",
                label="parameter count (baseline)")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("n_high (size of the true top group)")
    ax.set_ylabel("split Kendall's tau (mean ± std over seeds)")
    ax.set_title(f"Fig. 5: ranking of high vs low performers ({budgets[-1]} epochs)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    name = _save(plt, fig, out, "fig5_split_tau.png")
    return name, f"Fig. 5 ({budgets[-1]}-epoch runs) from {protocol_line(ranks)}."


FIG6_ARCHS = 1000


def run_codes(run: RankRun, n: int = FIG6_ARCHS) -> Tuple[np.ndarray, str]:
    """Codes of `n` archs for Fig. 6: the run's own simplex-net (train/supernet.pt, evaluated, never
    trained) on a seeded sample of n archs; without that file, the codes of the archs it scored."""
    ckpt = run.path / "train" / "supernet.pt"
    if ckpt.exists():
        import torch

        from kshot_bench.rank import arch_set
        from kshot_bench.search_space import nb201
        from kshot_bench.train import code_source_from, load_checkpoint

        codes = code_source_from(load_checkpoint(ckpt, torch.device("cpu")))
        if run.p.get("space", "nb201") == "nb201":
            idx, desc = arch_set(str(n), int(run.p["seed"]))
            archs = [nb201.from_index(i) for i in idx]
        else:
            from kshot_bench.search_space import SPACES

            space, rng = SPACES.get(run.p["space"]), np.random.default_rng([int(run.p["seed"]), 6])
            archs = [space.sample(rng, widths=bool(run.p.get("width_search", True))) for _ in range(n)]
            desc = f"{n:,} archs sampled uniformly (seed {run.p['seed']})"
        with torch.no_grad():
            lam = codes.eval()(archs).numpy()
        return lam, f"the simplex-net of run {run.label} (train/supernet.pt) on {desc}"
    with open(run.path / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    k = int(run.p["k"])
    lam = np.array([[float(row[f"lam_{i}"]) for i in range(k)] for row in rows])
    note = "" if len(rows) >= n else f" The run scored {len(rows)} archs, fewer than the paper's {n:,}, and has no train/supernet.pt to code more"
    return lam, f"run {run.label}, the first {len(rows)} archs of its predictions.csv.{note}"


def fig6(ranks, out: Path) -> Tuple[Optional[str], str]:
    runs = [r for r in ranks if r.p["code"] == "simplex" and int(r.p["k"]) > 1 and (r.path / "predictions.csv").exists()]
    if not runs:
        return None, "Fig. 6 needs a K-shot run with simplex-net codes (code=simplex, K > 1)."
    run = max(runs, key=lambda r: (int(r.p["k"]), int(r.p["epochs"]), (r.path / "train" / "supernet.pt").exists(),
                                   r.metrics["n_archs"], -int(r.p["seed"])))
    lam, source = run_codes(run)
    k = lam.shape[1]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=130)
    bins = np.linspace(0, 1, 41)
    for i in range(k):
        ax.hist(lam[:, i], bins=bins, histtype="step", linewidth=1.6, label=f"lambda_{i}")
    ax.set_xlabel("code value")
    ax.set_ylabel("archs")
    ax.set_title(f"Fig. 6: codes of {len(lam):,} archs, K={k} ({run.label})", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    name = _save(plt, fig, out, "fig6_code_histogram.png")
    return name, f"Fig. 6 from {source}."


def _best_proxy(runs: Sequence[RankRun]) -> Tuple[Optional[str], Optional[float], Optional[float]]:
    """(name, tau, params tau) of the runs' baselines, averaged over their distinct arch sets: the best
    zero-cost proxy and parameter count."""
    per_set = {r.p["arch_set"]: r.baselines for r in runs if r.baselines}
    if not per_set:
        return None, None, None
    names = ("naswot", "synflow", "logsynflow", "nregions")
    proxies = {n: float(np.mean([b[n]["kendall_tau"] for b in per_set.values()])) for n in names
               if all(n in b and b[n].get("kendall_tau") is not None for b in per_set.values())}
    best = max(proxies, key=proxies.get) if proxies else None
    params = [b["params"]["kendall_tau"] for b in per_set.values() if "params" in b]
    return best, proxies.get(best), float(np.mean(params)) if params else None


def fig7(ranks, out: Path) -> Tuple[Optional[str], str]:
    pts = group([r for r in ranks if r.method in (METHOD_ORDER[0], METHOD_ORDER[3])],
                lambda r: (int(r.p["k"]), int(r.p["epochs"])))
    epochs = sorted({e for _, e in pts})
    if len(epochs) < 2:
        return None, (f"Fig. 7 needs runs at two or more training budgets (epochs); the runs given all train "
                      f"{epochs[0] if epochs else '?'} epochs. Add cells with `kshot-bench ablate --epochs E1 E2`, "
                      "or snapshots of one run (`--set snapshot_epochs=...`, `rank --checkpoint RUN_DIR`).")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=130)
    ks = sorted({k for k, _ in pts})
    span = epochs[-1] - epochs[0]
    bars = []
    for j, k in enumerate(ks):
        es = [e for e in epochs if (k, e) in pts]
        mid, lo, hi = [], [], []
        for e in es:
            rs = pts[(k, e)]
            if len(rs) == 1 and rs[0].stats():  # one run: its bootstrap interval
                st = rs[0].stats()
                m, (a, b) = st["kendall_tau"], st["ci95"]["kendall_tau"]
            else:  # several seeds: mean +- std
                m, sd, _ = mean_std([r.metrics["kendall_tau"] for r in rs])
                a, b = m - sd, m + sd
            mid.append(m)
            lo.append(m - a)
            hi.append(b - m)
        bars.append("bootstrap 95% CI" if all(len(pts[(k, e)]) == 1 for e in es) else "std over seeds")
        shift = (j - (len(ks) - 1) / 2) * 0.012 * span  # small offsets keep overlapping points visible
        method = METHOD_ORDER[0] if k == 1 else METHOD_ORDER[3]
        ax.errorbar([e + shift for e in es], mid, yerr=[lo, hi], marker="o", capsize=3,
                    label=method if k == 1 else f"K={k}: {method}", color=None if len(ks) > 2 else METHOD_COLORS[method])
    runs = [r for rs in pts.values() for r in rs]
    n_sets = len({r.p["arch_set"] for r in runs})
    # baselines and chance on the same archs, drawn on the same axes (averaged when the runs' arch sets differ)
    best, best_tau, params_tau = _best_proxy(runs)
    if params_tau is not None:
        ax.axhline(params_tau, color="tab:gray", linestyle="--", linewidth=1.2, label=f"parameter count ({params_tau:.3f})")
    if best_tau is not None:
        ax.axhline(best_tau, color="tab:purple", linestyle=":", linewidth=1.5, label=f"best zero-cost proxy: {best} ({best_tau:.3f})")
    nulls = [r.stats()["null"] for r in runs if r.stats() and np.isfinite(r.stats()["null"]["band_lo"])]
    if nulls:
        ax.axhspan(np.mean([b["band_lo"] for b in nulls]), np.mean([b["band_hi"] for b in nulls]), color="tab:gray",
                   alpha=0.15, label="chance (95% band)")
    published = _published(runs)
    for (label, tau), color in zip(published, ("tab:red", "tab:orange", "tab:olive", "tab:cyan", "tab:pink")):
        ax.axhline(tau, color=color, linestyle=(0, (1, 2)), linewidth=1.0, label=f"published, all archs: {label} ({tau:.3f})")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(epochs, [str(e) for e in epochs])
    snapshots = all(r.is_snapshot for r in runs)
    ax.set_xlabel("supernet training epochs" + (" (snapshots of one run per K)" if snapshots else ""))
    ax.set_ylabel("Kendall's tau")
    ax.set_title(f"Fig. 7: ranking quality against K and training epochs\nerror bars: {', '.join(sorted(set(bars)))}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    name = _save(plt, fig, out, "fig7_tau_vs_k_epochs.png")
    note = ("" if n_sets == 1 else f" Baselines and the chance band are averaged over the runs' {n_sets} arch sets.")
    if published:
        note += (" Dotted lines: published figures over all 15,625 archs (SPEC 5a, with their sources), other "
                 "protocols and supernets than ours, drawn for reference; they are not our measurements.")
    return name, f"Fig. 7 from {protocol_line(runs)}.{note}"


def _published(runs: Sequence[RankRun]) -> List[Tuple[str, float]]:
    """Published taus for the runs' ground truth (ground_truth.PUBLISHED_TAU), when all runs share it."""
    from kshot_bench.ground_truth import PUBLISHED_TAU

    truths = {r.p.get("truth") for r in runs}
    return PUBLISHED_TAU.get(truths.pop(), []) if len(truths) == 1 else []


def scatter_grid(ranks, out: Path) -> Tuple[Optional[str], str]:
    runs = [r for r in ranks if (r.path / "predictions.csv").exists()]
    if not runs:
        return None, "Scatter plots need predictions.csv in the runs."
    plt = _plt()
    cols = min(4, len(runs))
    rows_n = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.8 * rows_n), dpi=110, squeeze=False)
    for ax, r in zip(axes.ravel(), runs):
        with open(r.path / "predictions.csv", newline="") as fh:
            data = list(csv.DictReader(fh))
        ax.scatter([float(d["truth"]) for d in data], [float(d["score"]) for d in data], s=4, alpha=0.5, edgecolors="none")
        ax.set_title(f"{r.path.name}\ntau {fmt(r.metrics['kendall_tau'])}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(runs):]:
        ax.axis("off")
    fig.supxlabel("true accuracy (%)", fontsize=8)
    fig.supylabel("supernet accuracy (%)", fontsize=8)
    name = _save(plt, fig, out, "scatter_runs.png")
    return name, f"Predicted vs true for each run ({len(runs)} runs)."


def table2(retrains: List[RetrainRun], searches: Sequence[SearchRun]) -> List[str]:
    """Searched archs retrained from scratch (paper Table 2 shape): FLOPs and params at 224x224 / 1,000
    classes, top-1/top-5 on the evaluation set, and the search that chose the arch (archs it scored)."""
    from kshot_bench.search_space import mbv2

    if not retrains:
        return []
    lines = ["### Retrained archs (Table 2 shape)", "",
             "| retrain run | FLOPs (M) | params (M) | top-1 (%) | top-5 (%) | weights | epochs | images | chosen by | "
             "archs scored | supernet | arch |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rr in retrains:
        arch = rr.config.get("config", {}).get("arch", "")
        params, flops = mbv2.cost(mbv2.from_str(arch))
        chooser = next((s for s in searches if s.result.get("arch_str") == arch), None)
        by = (f"{chooser.path.name} ({chooser.result['algo']}, limit {chooser.result.get('flops_limit_M')} M)"
              if chooser else "–")
        sup = chooser.result.get("protocol", {}) if chooser else {}
        sup_text = method_name(int(sup["k"]), sup["code"]) if "k" in sup and "code" in sup else "–"
        for weights, ev in rr.evals.items():
            lines.append(f"| {rr.path.name} | {flops / 1e6:.1f} | {params / 1e6:.2f} | {ev['top1']:.2f} | {ev['top5']:.2f} | "
                         f"{weights} | {ev['epochs']} | {ev['images']:,} ({ev['image_size']}px) | {by} | "
                         f"{chooser.result['n_evaluated'] if chooser else '–'} | {sup_text} | `{md(arch)}` |")
    scale = sorted({f"{rr.config.get('preset', '?')} preset, {rr.config.get('train_images', '?')} training images"
                    + (f", the network at net_scale {rr.config['config'].get('net_scale', 1.0)} (channels x that)"
                       if rr.config.get("config", {}).get("net_scale", 1.0) != 1.0 else "") for rr in retrains})
    return lines + ["", f"Scale: {'; '.join(scale)}. FLOPs and params by the SPEC 7 convention (one 224x224 image, "
                        "1,000 classes, net_scale 1.0) whatever size and scale the run trained at. Top-1/top-5 on the evaluation set named in "
                        "each eval file (the official val set for ImageNet).", ""]


def _percentile(searches: Sequence[SearchRun]) -> str:
    """Share of all archs (of the truth column) with lower ground truth than the chosen arch, mean over runs."""
    from kshot_bench.ground_truth import truth_column
    from kshot_bench.datasets import DATASETS

    vals = []
    for s in searches:
        truth = truth_column(s.result.get("truth_column") or DATASETS.get(s.result["dataset"]).truth_default)
        truth = truth[np.isfinite(truth)]
        vals.append(100.0 * float(np.mean(truth < s.result["truth"])))
    return f"{np.mean(vals):.1f}"


def search_table(searches: List[SearchRun]) -> List[str]:
    if not searches:
        return ["### Search (Table 3 shape)", "", "No search runs given (`kshot-bench search` writes result.json).", ""]
    lines = ["### Search results (Table 3 shape): ground truth of the chosen arch", "",
             "| dataset | algo | fitness | K | FLOPs limit (M) | ground truth (mean ± std) | percentile among all archs "
             "| optimum | archs scored | runs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    by = group(searches, lambda s: (s.result["dataset"], s.result["algo"], s.result["fitness"],
                                    s.result.get("protocol", {}).get("k", "–"), s.result.get("flops_limit_M")))
    for (ds, algo, fit, k, lim), ss in sorted(by.items(), key=lambda kv: str(kv[0])):
        lines.append(f"| {ds} | {algo} | {fit} | {k} | {lim if lim is not None else 'none'} | "
                     f"{pm([s.result['truth'] for s in ss], digits=2)} | {_percentile(ss)} | "
                     f"{ss[0].result['optimum']['truth']:.2f} | "
                     f"{np.mean([s.result['n_evaluated'] for s in ss]):.0f} | {', '.join(s.path.name for s in ss)} |")
    return lines + ["", "Percentile: the share of all NB201 archs whose ground truth is below the chosen arch's "
                        "(50 = a typical random arch).", ""]


# ----------------------------------------------------------------------------- the report
RUN_FILES = ("metrics.json", "baselines.json", "config.json", "summary.md", "predictions.csv", "scatter.png",
             "train/log.csv", "train/config.json", "result.json", "pareto.csv", "history.csv", "log.csv",
             "eval-ema.json", "eval-raw.json")


def copy_run_files(roots: Sequence[Path], ranks, searches, dest: Path, extra: Sequence[Path] = ()) -> Dict[Path, str]:
    """Copy each run's small result files to dest/<run path relative to its root's parent>."""
    import shutil

    names = {}
    for run in [r.path for r in ranks] + [s.path for s in searches] + list(extra):
        root = next((Path(x) for x in roots if Path(run).resolve().is_relative_to(Path(x).resolve())), Path(run))
        rel = Path(run).resolve().relative_to(root.resolve().parent)
        names[run] = str(rel)
        for f in RUN_FILES:
            src = Path(run) / f
            target = dest / rel / f
            if src.is_file() and not (target.exists() and target.resolve() == src.resolve()):  # a report rebuilt in place
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
        summary = Path(run).parent / "summary.json"  # a multi-seed search's aggregate
        target = dest / rel.parent / "summary.json"
        if (summary.is_file() and (Path(run).parent / "seed-0").exists()
                and not (target.exists() and target.resolve() == summary.resolve())):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(summary, target)
    return names


def build_report(paths: Sequence[Path], out: Path, command: str = "") -> Path:
    runs = discover(paths)
    ranks, searches = runs.ranks, runs.searches
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_runs = len(ranks) + len(runs.unranked)
    lines = ["# kshot_bench report", "",
             f"Built by `{command or 'kshot-bench report'}` from {n_runs} rank runs and "
             f"{len(searches) + len(runs.unranked_searches)} search runs"
             + (f" and {len(runs.retrains)} retrained networks" if runs.retrains else "")
             + " (read only; nothing was trained for this report).", ""]
    unranked = [RankRun(path, m, {}, _train_log(path)) for path, m in runs.unranked]
    if ranks:
        lines += table4(ranks) + paired_comparisons(ranks) + table_ablation(ranks, searches) + table1(ranks)
    lines += unranked_tables(runs) + table_ablation_unranked(runs)
    lines += table1(unranked) if any(r.log for r in unranked) else []
    lines += table2(runs.retrains, searches + runs.unranked_searches)
    if searches or not (runs.unranked_searches or runs.retrains):
        lines += search_table(searches)
    figures = []
    if ranks:
        figures = [fig4(ranks, searches, out), fig5(ranks, out), fig6(ranks, out), fig7(ranks, out), scatter_grid(ranks, out)]
    if runs.unranked_searches:
        figures.append(fig4_search(runs.unranked_searches, out))
    if unranked:
        figures.append(fig6(unranked, out))
    if runs.unranked_searches or (unranked and runs.retrains):
        figures.append(fig7_retrained(runs.unranked_searches, runs.retrains, out))
    if not figures:
        figures = [(None, "Figures 4-7 need rank runs (metrics.json) or search runs; none were given.")]
    lines += ["## Figures", ""]
    missing = []
    for name, caption in figures:
        if name:
            lines += [f"![{name}]({name})", "", caption, ""]
        else:
            missing.append(caption)
    if missing:
        lines += ["### Not drawn", ""] + [f"- {m}" for m in missing] + [""]
    copies = copy_run_files(paths, ranks, searches + runs.unranked_searches, out / "runs",
                            extra=[p for p, _ in runs.unranked] + [r.path for r in runs.retrains])
    lines += ["## Runs", "", "Each run's small result files are copied under `runs/` beside this report.", ""]
    if ranks:
        lines += ["| run | dataset | method | K | seed | epochs | config | tau |", "|---|---|---|---|---|---|---|---|"]
        for r in ranks:
            lines.append(f"| [{copies[r.path]}](runs/{copies[r.path]}) | {r.p['dataset']} | {r.method} | {r.p['k']} | "
                         f"{r.p['seed']} | {r.p['epochs']} | {r.p['config_hash']} | {fmt(r.metrics['kendall_tau'])} |")
        lines.append("")
    if searches:
        lines += ["| search run | algo | fitness | seed | chosen arch | ground truth | command |", "|---|---|---|---|---|---|---|"]
        for sr in searches:
            res = sr.result
            lines.append(f"| [{copies[sr.path]}](runs/{copies[sr.path]}) | {res['algo']} | {res['fitness']} | {res['seed']} | "
                         f"`{md(res.get('arch_str', '?'))}` | {res['truth']:.2f} | `{md(res.get('protocol', {}).get('command', ''))}` |")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
