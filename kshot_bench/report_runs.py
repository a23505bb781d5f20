"""Run directories as a report reads them: rank, search and retrain runs, their names and methods, and the
formatting the tables share. Read-only."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kshot_bench.config import RunConfig
from kshot_bench.errors import UserError
from kshot_bench.scoring import SCORE_CODE_LABELS

DEFAULT_SPACE = RunConfig.space  # runs written before the protocol named its space


def run_space(run):
    """The search space module of a run (its protocol's `space`)."""
    from kshot_bench.search_space import SPACES

    return SPACES.get(run.p.get("space") or DEFAULT_SPACE)


def run_noise_ceiling(run) -> Optional[Dict]:
    """The benchmark's own repeat-to-repeat tau on the run's archs (ground_truth.noise_ceiling), or None."""
    from kshot_bench.ground_truth import noise_ceiling

    pred = run.predictions()
    return None if pred is None else noise_ceiling(run_space(run), run.p["dataset"], pred["key"])


def run_network_groups(run) -> List[List[int]]:
    """Positions in the run's predictions of the archs that are one network in its supernet (the space's
    `network_key`, with the run's `bn_affine`), groups of two or more; empty for spaces without that key."""
    space, pred = run_space(run), run.predictions()
    if not hasattr(space, "network_key") or pred is None:
        return []
    cfg_path = run.path / "config.json"
    cfg = _load_json(cfg_path, "rank config") if cfg_path.is_file() else {}
    affine = bool(cfg.get("config", cfg).get("bn_affine", False))
    groups: Dict[tuple, List[int]] = {}
    for j, key in enumerate(pred["key"]):
        groups.setdefault(space.network_key(space.from_key(key), affine), []).append(j)
    return [g for g in groups.values() if len(g) > 1]


METHOD_ORDER = ["one-shot (K=1)", "fixed K-shot (1/K)", "random K-shot", "K-shot + simplex-net"]


METHOD_COLORS = dict(zip(METHOD_ORDER, ["black", "tab:blue", "tab:orange", "tab:green"]))  # the same in every figure


REQUIRED = ("kendall_tau", "spearman", "split_tau", "n_archs", "protocol")


REQUIRED_PROTOCOL = ("dataset", "k", "code", "config_hash", "seed", "epochs", "arch_set", "score_set", "truth")


def method_name(k: Optional[int], code: str) -> str:
    if k is None:  # external scores
        return code
    if k == 1:
        return METHOD_ORDER[0]
    return {"uniform": METHOD_ORDER[1], "random": METHOD_ORDER[2], "simplex": METHOD_ORDER[3]}.get(code, code)


PATHS_SEP = ", "  # between a row name's method and its sampling


def paths_label(sampling: Optional[str], explicit: bool = False) -> str:
    """How a run's training drew its paths, as its row name adds it: ", <sampling> paths" (issue 25: runs of
    other samplings are other methods, never pooled or paired as one); nothing for uniform paths (the paper's
    protocol, and runs written before `sampling` existed) unless `explicit` (a report that mixes samplings)."""
    sampling = sampling or "uniform"
    return "" if sampling == "uniform" and not explicit else f"{PATHS_SEP}{sampling} paths"


def name_method(name: str) -> str:
    """The method of a row name (`RankRun.name`), without its sampling."""
    return name.split(PATHS_SEP, 1)[0]


def uniform_paths(name: str) -> bool:
    """Whether a row name's run drew its training paths uniformly (named so or not)."""
    return not any(part.endswith(" paths") and part != "uniform paths" for part in name.split(PATHS_SEP)[1:])


def rules_label(offpath: str, variant: str, score_code: str = "own") -> str:
    """The training rules beyond the method and the sampling, as a row name adds them: the off-path update when
    it is not `none`, the simplex-net variant of a K-shot run where one was named (issues 44, 45), and a K-shot
    run scored with one fixed code instead of each arch's own (`score_code`): runs under other rules are other
    methods, never pooled or paired as one."""
    return (f"{PATHS_SEP}off-path {offpath}" if offpath != "none" else "") + \
        (f"{PATHS_SEP}{variant} simplex-net" if variant else "") + \
        (f"{PATHS_SEP}{SCORE_CODE_LABELS[score_code]}" if score_code in SCORE_CODE_LABELS else "")


def method_order(name: str) -> Tuple[int, bool, str]:
    """Sort key of a row name: the paper's method order first (`METHOD_ORDER`), then the sampling (uniform, the
    paper's, first)."""
    method = name_method(name)
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else 9, not uniform_paths(name), name)


def method_style(name: str) -> Dict[str, str]:
    """Colour and line of a row name in the figures: the colour of its method (`METHOD_COLORS`, the same in
    every figure), dashed where its paths were not drawn uniformly."""
    return {"color": METHOD_COLORS.get(name_method(name)), "linestyle": "-" if uniform_paths(name) else "--"}


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
    show_sampling: bool = False  # name uniform paths too: set by `discover` when the runs mix samplings

    @property
    def p(self) -> Dict:
        return self.metrics["protocol"]

    @property
    def has_truth(self) -> bool:
        """Ranked against a ground truth (its space has one for the dataset): tau and the rest exist."""
        return self.p.get("truth") is not None

    def predictions(self) -> Optional[Dict[str, np.ndarray]]:
        """key (the space's: the NB201 index), truth, accuracy score and val_loss per arch, from predictions.csv
        (None without it)."""
        if self._pred is None and (self.path / "predictions.csv").is_file():
            with open(self.path / "predictions.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            space = run_space(self)
            self._pred = {"key": np.array([space.KEY_TYPE(r[space.KEY]) for r in rows]),
                          "truth": np.array([float(r["truth"]) for r in rows]),
                          "acc": np.array([float(r["score"]) for r in rows]),
                          "loss": -np.array([float(r["val_loss"]) if r.get("val_loss") not in (None, "") else np.nan
                                             for r in rows])}
        return self._pred

    @property
    def score_by(self) -> str:
        return self.p.get("score_by", "acc")

    def config(self) -> Optional[Dict]:
        """Every field of the run's config (its config.json, defaults filled in for fields added later), None
        where it has none (external scores) or one this version cannot read."""
        from kshot_bench.config import from_dict

        path = self.path / "config.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        try:
            return from_dict(data.get("config", data)).to_dict()
        except UserError:
            return None

    def stats(self) -> Dict:
        """Uncertainty of this run's ranking, recomputed from predictions.csv (so runs written before
        rank stored intervals get them too): tau and split-tau intervals, null band, loss-scored tau."""
        if self._stats is None:
            from kshot_bench.metrics import ranking_metrics

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
        """The paper's method (one of METHOD_ORDER for a supernet), whatever the sampling."""
        return method_name(None if self.p["k"] is None else int(self.p["k"]), self.p["code"])

    @property
    def sampling(self) -> str:
        return self.p.get("sampling") or "uniform"

    @property
    def offpath(self) -> str:
        """The off-path update rule it trained under (runs written before the field: `none`)."""
        return self.p.get("offpath_update") or "none"

    @property
    def variant(self) -> str:
        """The simplex-net variant of a K-shot simplex-net run ('' for others, and for runs before variants)."""
        if self.p["k"] is None or int(self.p["k"]) == 1 or self.p.get("code") != "simplex":
            return ""
        return self.p.get("simplex_variant") or ""

    @property
    def score_code(self) -> str:
        """The code a K-shot run was scored with: each arch's own (`own`, also for K=1 and older runs), 1/K or the
        mean code."""
        if self.p["k"] is None or int(self.p["k"]) == 1:
            return "own"
        return self.p.get("score_code") or "own"

    @property
    def rules(self) -> Tuple[str, str, str]:
        """What its training did beyond K and the code: (sampling, off-path update, simplex-net variant)."""
        return self.sampling, self.offpath, self.variant

    @property
    def name(self) -> str:
        """The run's row name: its method, its sampling (`paths_label`) and other rules (`rules_label`)."""
        return self.method + self.paths + rules_label(self.offpath, self.variant, self.score_code)

    @property
    def suffix(self) -> str:
        """What a row name adds to the method: the sampling and the other rules."""
        return self.paths + rules_label(self.offpath, self.variant, self.score_code)

    @property
    def paths(self) -> str:
        """The sampling as a row name adds it: not for uniform paths, unless the report mixes samplings."""
        return paths_label(self.sampling, self.show_sampling)

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


def snapshot_log(metrics: Dict) -> Optional[Path]:
    """The training log of the run a snapshot came from (`rank --checkpoint RUN_DIR` scores
    RUN_DIR/snapshots/epoch-E.pt; its log is RUN_DIR/log.csv), when that file is still there."""
    source = str(metrics.get("protocol", {}).get("supernet", ""))
    snap = Path(source.split(" ", 1)[-1])
    if snap.parent.name != "snapshots":
        return None
    log = snap.parent.parent / "log.csv"
    return log if log.is_file() else None


def _train_log(path: Path, metrics: Optional[Dict] = None) -> List[Dict[str, str]]:
    """The run's training log: its own train/log.csv, else (a snapshot scored from a checkpoint) the log of
    the training run, up to the snapshot's epoch."""
    log_path = path / "train" / "log.csv"
    upto = None
    if not log_path.exists():
        log_path = snapshot_log(metrics or {})
        if log_path is None:
            return []
        upto = int(metrics["protocol"].get("epochs") or 0)
    with open(log_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows if upto is None else [r for r in rows if int(r["epoch"]) <= upto]


def load_rank_run(path: Path) -> RankRun:
    metrics = _load_json(path / "metrics.json", "metrics file")
    if metrics.get("protocol", {}).get("truth") is None:  # no ground truth: scores, costs and codes
        return RankRun(path, _with_train_config(path, metrics), {}, _train_log(path, metrics))
    missing = [k for k in REQUIRED if k not in metrics]
    missing += [f"protocol.{k}" for k in REQUIRED_PROTOCOL if k not in metrics.get("protocol", {})]
    if missing:
        raise UserError(f"run {path}: metrics.json lacks {', '.join(missing)}",
                        fix="re-run `kshot-bench rank` for this run (its metrics.json is incomplete or from another tool)")
    baselines = _load_json(path / "baselines.json", "baselines file") if (path / "baselines.json").exists() else {}
    return RankRun(path, metrics, baselines, _train_log(path, metrics))


def config_differences(a: RankRun, b: RankRun) -> List[str]:
    """The config fields in which two runs' trainings differ, as "field A vs B" (scoring fields left out: the
    compared runs share them); empty when either has no readable config."""
    from kshot_bench.rundir import SCORING_FIELDS

    ca, cb = a.config(), b.config()
    if ca is None or cb is None:
        return []
    return [f"{k} {ca[k]!r} vs {cb[k]!r}" for k in ca if k not in SCORING_FIELDS and ca[k] != cb[k]]


def machine_differences(a: RankRun, b: RankRun) -> List[str]:
    """Lines naming the machines (processor or GPU, torch, threads) where two runs' trainings or scorings
    differ: float rounding differs between them, and trainings that differ only in rounding can rank archs
    quite differently (docs/results.md), so equal configs do not make a comparison a controlled one."""
    from kshot_bench.rundir import machine_label

    lines = []
    ta, tb = a.p.get("train_machines"), b.p.get("train_machines")
    if ta and tb and ta != tb:
        lines.append(f"supernets trained on different machines: {' then '.join(ta)} vs {' then '.join(tb)} (A vs B)")
    sa, sb = (machine_label(r.p["machine"]) if isinstance(r.p.get("machine"), dict) else None for r in (a, b))
    if sa and sb and sa != sb:
        lines.append(f"scored on different machines: {sa} vs {sb} (A vs B)")
    return lines


def data_differences(a: RankRun, b: RankRun) -> List[str]:
    """A line for each data source two runs' protocols name differently: another folder may hold other images (a
    re-encoding, a subset), which no config field shows. `data` is the scoring data; `train_data` the images the
    supernet trained on (recorded since 2026-12-07; older protocols lack it and say nothing here)."""
    lines = []
    for key, what in (("train_data", "training data differ"), ("data", "scoring data differ")):
        da, db = a.p.get(key), b.p.get(key)
        if da and db and da != db:
            lines.append(f"{what}: {da} vs {db} (A vs B)")
    return lines


SCORING_CHOICES = ("score_code", "score_by", "score_precision", "bn_calibration")


def scoring_differences(a: RankRun, b: RankRun) -> List[str]:
    """A line naming the scoring choices in which two runs on the same archs and images differ (the code a K-shot
    supernet was scored with, accuracy or loss, precision, BN re-estimation): the comparison is then one of
    scoring, not of training."""
    differ = [f"{k} {a.p.get(k)!r} vs {b.p.get(k)!r}" for k in SCORING_CHOICES
              if k in a.p and k in b.p and a.p[k] != b.p[k]]
    return [f"scoring differs in: {'; '.join(differ)} (A vs B)"] if differ else []


@dataclass
class Runs:
    """Every run found: scored runs (with or without a ground truth), searches, retrained networks."""
    scored: List[RankRun]
    all_searches: List[SearchRun]
    retrains: List[RetrainRun] = field(default_factory=list)  # retrained + evaluated archs (Table 2 shape)

    @property
    def ranks(self) -> List[RankRun]:  # ranked against a ground truth
        return [r for r in self.scored if r.has_truth]

    @property
    def without_truth(self) -> List[RankRun]:  # scored runs of a space (or dataset) without a ground truth
        return [r for r in self.scored if not r.has_truth]

    @property
    def searches(self) -> List[SearchRun]:  # searches with the ground truth of the chosen arch
        return [s for s in self.all_searches if s.result["truth"] is not None]

    @property
    def searches_without_truth(self) -> List[SearchRun]:
        return [s for s in self.all_searches if s.result["truth"] is None]


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


def _refuse_rescorings(runs: Sequence[RankRun]) -> None:
    """A report's tables pool the runs of a method as training seeds, so two scorings of one trained supernet
    (the same training config and epoch: another arch set, other images, another truth column) would pass for
    two seeds and their spread for seed noise. Refuse them, naming both."""
    seen: Dict[Tuple, RankRun] = {}
    for r in runs:
        key = (r.p.get("config_hash"), r.p.get("epochs"))
        if key[0] is None:
            continue
        if key in seen:
            raise UserError(f"runs {seen[key].path} and {r.path} score the same trained supernet (config {key[0]}, "
                            f"epoch {key[1]}); a report pools a method's runs as training seeds, so it takes one "
                            "scoring per supernet",
                            fix="pass only one of them to `kshot-bench report` (for paired tables, the one scored "
                                "on the other runs' archs and images) and build another report for the other")
        seen[key] = r


def discover(paths: Sequence[Path]) -> Runs:
    found = Runs([], [])
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise UserError(f"run directory {root} does not exist", fix="pass directories written by rank, ablate or search")
        for m in sorted(root.rglob("metrics.json")) if root.is_dir() else []:
            run = load_rank_run(m.parent)
            if run.p.get("code") != "external":  # `rank --scores` folders: `compare` takes them, the report does not
                found.scored.append(run)
        for r in sorted(root.rglob("result.json")) if root.is_dir() else []:
            res = _load_json(r, "search result")
            for key in ("algo", "fitness", "truth", "seed", "dataset"):
                if key not in res:
                    raise UserError(f"search run {r.parent}: result.json lacks {key!r}", fix="re-run `kshot-bench search`")
            found.all_searches.append(SearchRun(r.parent, res))
        for d in sorted({e.parent for e in root.rglob("eval-*.json")}) if root.is_dir() else []:
            evals = {e.stem[len("eval-"):]: _load_json(e, "evaluation") for e in sorted(d.glob("eval-*.json"))}
            found.retrains.append(RetrainRun(d, _load_json(d / "config.json", "retrain config"), evals))
    _refuse_rescorings(found.scored)
    if len({r.sampling for r in found.scored}) > 1:  # uniform is not the only protocol here: name it too
        for r in found.scored:
            r.show_sampling = True
    if not (found.scored or found.all_searches or found.retrains):
        raise UserError(f"no runs found under {', '.join(map(str, paths))}",
                        fix="pass directories holding metrics.json (rank/ablate) or result.json (search)")
    return found


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


SAME_SCORING = ("dataset", "truth", "arch_set", "score_set")


def paired(a: RankRun, b: RankRun, keys: Sequence[str] = ("seed", "epochs") + SAME_SCORING) -> bool:
    """Two runs can be compared pair by pair: same dataset, seed, budget, ground truth, arch set and
    scoring images (`keys`), and their predictions list the same archs with the same truth."""
    if any(str(a.p.get(k)) != str(b.p.get(k)) for k in keys):
        return False
    pa, pb = a.predictions(), b.predictions()
    return (pa is not None and pb is not None and np.array_equal(pa["key"], pb["key"])
            and np.array_equal(pa["truth"], pb["truth"]))


def ci_text(value, ci, digits: int = 3) -> str:
    """A ranking figure with its interval; `undefined` where the figure is (metrics.undefined_reasons)."""
    from kshot_bench.results import is_defined, with_ci

    return with_ci(value, ci, digits) if is_defined(value) else "undefined"


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


def _retrained_top1(arch: str, retrains: Sequence["RetrainRun"]) -> List[float]:
    return [rr.evals.get("ema", next(iter(rr.evals.values())))["top1"] for rr in retrains
            if rr.config.get("config", {}).get("arch") == arch and rr.evals]
