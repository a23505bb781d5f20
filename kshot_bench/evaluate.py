"""Evaluate anyone's ranking: per-arch scores (from any supernet, predictor or proxy) against a space's ground
truth, with the same figures and files as a rank run (`rank --scores FILE`, and `evaluate_ranking` in Python).

Score files. CSV with a header: an arch column (`arch_str` or `arch`: arch strings; or the space's key column,
e.g. `index` for NB201: official indices) and a `score` column (another name with `score_column`); higher
scores rank higher. Or JSON: one object {arch: score}, where an arch is an arch string, or a key written as an
integer when it is not a valid arch string (NAS-Bench-Macro strings of 8 digits are strings). Every row must
name a different arch (for NAS-Bench-Macro: a different network), every score must be finite, at least 3 archs.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.results import tau_sort_key

EXTERNAL = "external scores"
ARCH_COLUMNS = ("arch_str", "arch")


@dataclass
class ScoreTable:
    """Scores of distinct archs: keys (the space's), archs, scores, and where they came from."""
    keys: list
    archs: list
    scores: np.ndarray
    source: str
    sha256: Optional[str] = None


def _arch_of(space, value, where: str, as_key: bool):
    """The arch a cell names: a key (as_key) or an arch string; errors name the row."""
    try:
        if as_key:
            text = str(value).strip()
            if not text.lstrip("-").isdigit():
                raise UserError(f"{text!r} is not a {space.KEY}", fix=f"write each {space.KEY} as an integer")
            return space.from_key(space.KEY_TYPE(int(text)))
        return space.from_str(str(value).strip())
    except UserError as e:
        raise UserError(f"{where}: {e.problem}", fix=e.fix) from None


def _score_of(value, where: str) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: score {value!r} is not a number", fix="write one number per arch") from None
    if not math.isfinite(score):
        raise UserError(f"{where}: score {value!r} is not finite (NaN or infinity)",
                        fix="drop the arch or give it a finite score (e.g. the lowest score minus one)")
    return score


def from_items(space, items: Sequence[Tuple[str, object, object, bool]], source: str,
               sha256: Optional[str] = None) -> ScoreTable:
    """(where, arch cell, score cell, cell is a key) rows -> a ScoreTable; duplicates and too few archs refused."""
    keys, archs, scores, seen = [], [], [], {}
    for where, arch_cell, score_cell, as_key in items:
        arch = _arch_of(space, arch_cell, where, as_key)
        key = space.key_of(arch)
        if key in seen:
            raise UserError(f"{where} names the same arch as {seen[key]} ({space.KEY} {key}, "
                            f"{space.to_str(space.from_key(key))})", fix="give each arch one score")
        seen[key] = where
        keys.append(key)
        archs.append(space.from_key(key))
        scores.append(_score_of(score_cell, where))
    if len(keys) < 3:
        raise UserError(f"{source}: {len(keys)} arch(s) scored; a ranking needs at least 3", fix="score 3 archs or more")
    return ScoreTable(keys, archs, np.asarray(scores, dtype=np.float64), source, sha256)


def read_scores(path: Union[str, Path], space, score_column: str = "score") -> ScoreTable:
    """A score file (CSV or JSON, see the module docstring) as a ScoreTable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"score file {path} not found", fix="pass a CSV (arch_str or index, score) or a JSON object")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    text = raw.decode("utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e})", fix='write one object: {"<arch>": score, ...}') from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: the JSON is a {type(data).__name__}, not an object",
                            fix='write one object: {"<arch>": score, ...}')
        items = [(f"{path.name}, entry {name!r}", name, score, _looks_like_key(space, name))
                 for name, score in data.items()]
        return from_items(space, items, str(path), sha)
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise UserError(f"{path} is empty", fix="write a header (arch_str,score) and one row per arch")
    header = [h.strip() for h in rows[0]]
    arch_col = next((c for c in ARCH_COLUMNS + (space.KEY,) if c in header), None)
    if arch_col is None:
        raise UserError(f"{path}: no arch column (the header is {','.join(header)})",
                        fix=f"name the column of arch strings arch_str (or of {space.KEY}es {space.KEY})")
    if score_column not in header:
        raise UserError(f"{path}: no {score_column!r} column (the header is {','.join(header)})",
                        fix=f"name the scores' column {score_column}, or pass --score-column with its name")
    a, s = header.index(arch_col), header.index(score_column)
    items = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(a, s):
            raise UserError(f"{path}, line {line}: {len(row)} cells, the header has {len(header)}",
                            fix="give every row an arch and a score")
        items.append((f"{path.name}, line {line}", row[a], row[s], arch_col == space.KEY))
    return from_items(space, items, str(path), sha)


def _looks_like_key(space, name: str) -> bool:
    """A JSON entry's name is a key when it is an integer and not a valid arch string."""
    if not str(name).strip().lstrip("-").isdigit():
        return False
    try:
        space.from_str(str(name).strip())
        return False
    except UserError:
        return True


def as_score_table(scores, space, score_column: str = "score") -> ScoreTable:
    """A path to a score file, a mapping {arch string or key: score}, or a pandas Series (index = archs)."""
    if isinstance(scores, ScoreTable):
        return scores
    if isinstance(scores, (str, Path)):
        return read_scores(scores, space, score_column)
    if hasattr(scores, "items"):
        items = [(f"entry {name!r}", name, value,
                  isinstance(name, (int, np.integer)) or (isinstance(name, str) and _looks_like_key(space, name)))
                 for name, value in scores.items()]
        return from_items(space, items, "scores given in Python")
    raise UserError(f"scores of type {type(scores).__name__}", fix="pass a dict {arch: score}, a pandas Series or a file path")


def restrict(table: ScoreTable, keys: Sequence) -> ScoreTable:
    """The scores of these archs only, in this order."""
    where = {k: i for i, k in enumerate(table.keys)}
    missing = [k for k in keys if k not in where]
    if missing:
        raise UserError(f"{table.source} has no score for {len(missing):,} of the {len(keys):,} archs asked for "
                        f"(e.g. key {missing[0]})", fix="score every arch of the run you compare with")
    pick = [where[k] for k in keys]
    return ScoreTable([table.keys[i] for i in pick], [table.archs[i] for i in pick], table.scores[pick], table.source,
                      table.sha256)


def ranking_results(space, dataset: str, keys: Sequence, archs: Sequence, scores: np.ndarray,
                    truth: np.ndarray) -> Tuple[Dict, Dict]:
    """Metrics of scores against the truth on these archs (with intervals and the chance band; again without
    the archs whose network outputs a constant) and the baselines on the same archs."""
    from kshot_bench.datasets import DATASETS
    from kshot_bench.ground_truth import baseline_scores
    from kshot_bench.metrics import all_metrics, ranking_metrics, tau_bootstrap_ci

    metrics = ranking_metrics(scores, truth)
    live = np.array([not space.outputs_constant(a) for a in archs])
    if not live.all() and live.sum() >= 3:  # archs whose network outputs a constant sit at chance: tau without them
        metrics["without_no_path"] = {"n_archs": int(live.sum()),
                                      **ranking_metrics(scores[live], truth[live], null=False)}
    baselines = {}
    for name, (bscores, desc) in baseline_scores(space, DATASETS.get(dataset), keys, archs).items():
        baselines[name] = {"description": desc, **all_metrics(bscores, truth)}
        baselines[name]["ci95"] = {"kendall_tau": tau_bootstrap_ci(bscores, truth)}
    return metrics, baselines


def content_sha256(table: ScoreTable) -> str:
    """A digest of scores given in Python (no file to hash): the (key, score) pairs in key order."""
    pairs = sorted(zip(map(str, table.keys), map(float, table.scores)))
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def in_key_order(table: ScoreTable) -> ScoreTable:
    """The table sorted by key: every figure (ties in the truth at a split's boundary, bootstrap resamples) is then
    the same whatever order a file lists its archs in."""
    order = sorted(range(len(table.keys)), key=lambda i: table.keys[i])
    return ScoreTable([table.keys[i] for i in order], [table.archs[i] for i in order], table.scores[order],
                      table.source, table.sha256)


def evaluate_ranking(scores, space: str = "nb201", dataset: str = "cifar10", truth: Optional[str] = None,
                     out: Optional[Union[str, Path]] = None, score_column: str = "score",
                     command: str = "", only: Optional[Sequence] = None, lower_is_better: bool = False,
                     overwrite: bool = False) -> Dict:
    """Kendall's tau (with its 95% interval and the chance band), Spearman, split and top-n tau, P@k and regret
    of `scores` against the space's ground truth, and the baselines on the same archs.

    `scores`: a score file (CSV or JSON), a dict {arch string or key: score} or a pandas Series. `truth`: a
    column of the truth table (default: the space's for the dataset). With `out`, writes the rank run's files
    there (metrics.json, baselines.json, predictions.csv, summary.md, scatter.png). `only`: keys of the archs
    to evaluate, all of which the scores must cover (e.g. a rank run's, to compare with it). `lower_is_better`:
    smaller scores rank higher (a loss, a rank): the scores are negated before anything is computed, and
    predictions.csv keeps the given ones as `given_score`. `out` is never a different job's results folder
    unless `overwrite` (claims.claim). Returns the metrics, with the baselines under
    "baselines" and the protocol under "protocol"."""
    from kshot_bench.ground_truth import has_truth, space_truth
    from kshot_bench.search_space import SPACES

    from kshot_bench.datasets import canonical_dataset

    sp = SPACES.get(space)
    dataset = canonical_dataset(dataset)  # any accepted spelling (imagenet16)
    if not has_truth(sp, dataset):
        have = ", ".join(sp.TRUTH) or "none"
        raise UserError(f"the {space} space has no ground truth for {dataset} (it has: {have})",
                        fix="evaluate against a space and dataset with a truth table")
    truth_name = truth or sp.TRUTH[dataset]
    truth_all = space_truth(sp, truth_name)
    table = in_key_order(as_score_table(scores, sp, score_column))
    job = None
    if out is not None:
        from kshot_bench.claims import claim, scores_job

        job = scores_job(table.sha256 or content_sha256(table), space, dataset, truth_name, score_column, lower_is_better)
        claim(Path(out), job, overwrite)
    if only is not None:
        table = restrict(table, only)
    given = table.scores
    if lower_is_better:
        table = ScoreTable(table.keys, table.archs, -table.scores, table.source, table.sha256)
    t = truth_all[np.asarray(table.keys)]
    metrics, baselines = ranking_results(sp, dataset, table.keys, table.archs, table.scores, t)
    metrics["protocol"] = {
        "space": space, "dataset": dataset, "truth": truth_name, "supernet": EXTERNAL, "scores_file": table.source,
        "scores_sha256": table.sha256, "k": None, "code": "external", "code_label": EXTERNAL,
        "config_hash": (table.sha256 or "")[:10], "seed": None, "epochs": None,
        "arch_set": f"the {len(table.keys):,} archs of {table.source}", "n_archs": len(table.keys),
        "score_set": EXTERNAL, "score_by": "acc", "lower_is_better": lower_is_better,
        "score": ("the given scores, negated (lower ranks higher)" if lower_is_better
                  else "the given scores (higher ranks higher)"),
        "command": command,
    }
    if out is not None:
        from kshot_bench.claims import record

        write_results(Path(out), sp, table, t, metrics, baselines, given if lower_is_better else None)
        record(Path(out), job)
    return {**metrics, "baselines": baselines}


def write_results(out: Path, space, table: ScoreTable, truth: np.ndarray, metrics: Dict, baselines: Dict,
                  given: Optional[np.ndarray] = None) -> None:
    """The rank run's files for external scores. predictions.csv: `score` is what is ranked (higher ranks higher);
    with `given` (lower-is-better scores) the file's own values are kept beside it as `given_score`."""
    from kshot_bench.results import plot_scatter, write_json

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([space.KEY, "arch_str", "score"] + (["given_score"] if given is not None else []) + ["truth"])
        for i, (key, arch, score, t) in enumerate(zip(table.keys, table.archs, table.scores, truth)):
            w.writerow([key, space.to_str(arch), f"{score:.10g}"] + ([f"{given[i]:.10g}"] if given is not None else [])
                       + [f"{t:.10g}"])
    write_json(out / "metrics.json", metrics)
    write_json(out / "baselines.json", baselines)
    p = metrics["protocol"]
    plot_scatter(out, table.scores if given is None else given, truth, metrics,
                 ylabel="given score" + (" (lower ranks higher)" if given is not None else ""),
                 title=f"{p['space']} on {p['dataset']}: {Path(table.source).name}")
    (out / "summary.md").write_text("\n".join(summary_lines(metrics, baselines)) + "\n")


def summary_lines(metrics: Dict, baselines: Dict) -> List[str]:
    from kshot_bench.results import headline, significance_lines, summary_table, ties_line, without_no_path_line

    p = metrics["protocol"]
    split_keys = [k for k in ("10", "50", "100", "1000") if k in metrics["split_tau"]] or list(metrics["split_tau"])[:3]
    rows = [("given scores", metrics)] + sorted(((f"{n}: {b['description']}", b) for n, b in baselines.items()),
                                                key=lambda r: tau_sort_key(r[1]))
    direction = ("lower ranks higher: the scores were negated before ranking (--lower-is-better)"
                 if p.get("lower_is_better") else "higher ranks higher")
    return [f"# Ranking of external scores: {p['space']} on {p['dataset']}", "",
            headline("the given scores", metrics, baselines, p["truth"]), "",
            *summary_table(rows, split_keys), "",
            "Brackets: 95% bootstrap intervals (resampling the archs).", *ties_line(metrics),
            *without_no_path_line(metrics), "",
            *[line.replace("the supernet's", "the scores'").replace("The supernet's", "Their")
              for line in significance_lines(metrics)], "",
            "## Protocol", f"- scores: `{p['scores_file']}`" + (f" (sha256 {p['scores_sha256']})" if p['scores_sha256'] else ""),
            f"- direction: {direction}",
            f"- run: `{p['command']}`" if p["command"] else "- run: the Python API (`evaluate_ranking`)",
            f"- ground truth: `{p['truth']}` (the {p['space']} table shipped with kshot_bench)", "",
            "![given score vs true accuracy](scatter.png)", "",
            "Files: `predictions.csv` (per arch: key, string, score, truth), `metrics.json`, `baselines.json`."]


def print_summary(metrics: Dict) -> None:
    from kshot_bench.results import print_table

    print_table(metrics, metrics["baselines"], label="given scores")
