"""`kshot-bench compare`: the paired tau difference of two rank runs (or a run and a score file) on the same archs,
images and truth, per training seed and across seeds; with `common`, one supernet scored on two protocols, paired on
the archs both scored."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.report_runs import (
    SAME_SCORING,
    RankRun,
    ci_text,
    config_differences,
    data_differences,
    load_rank_run,
    machine_differences,
    paired,
    scoring_differences,
)
from kshot_bench.report_rules import diff_text
from kshot_bench.report_tables import split_taus

MIN_COMMON_ARCHS = 10  # fewer archs than this in common give no tau worth a comparison


def load_pair(path_a: Path, path_b: Path, common: bool = False) -> Tuple[RankRun, RankRun, bool]:
    """Two rank runs that scored the same archs on the same images against the same truth (one may be external
    scores, aligned to the other's archs), and whether one is; a UserError naming what differs otherwise.
    `common`: runs that scored other images or other arch samples (the same supernet scored on two protocols)
    are paired on the archs both scored, in A's order; dataset and truth must still agree."""
    from kshot_bench.evaluate import EXTERNAL

    for path in (path_a, path_b):
        if not (Path(path) / "metrics.json").is_file():
            raise UserError(f"{path} is not a rank run (it holds no metrics.json)",
                            fix="pass folders written by `kshot-bench rank` (a run folder, one snapshot's epoch-EEEE/, "
                                "or a `rank --scores` folder) or a score file")
    a, b = load_rank_run(Path(path_a)), load_rank_run(Path(path_b))
    external = EXTERNAL in (a.p.get("supernet"), b.p.get("supernet"))
    if common:
        _restrict_to_common(a, b)
        return a, b, external
    if b.p.get("supernet") == EXTERNAL:
        _align(b, a)
    elif a.p.get("supernet") == EXTERNAL:
        _align(a, b)
    keys = ("dataset", "truth") if external else SAME_SCORING
    if not paired(a, b, keys):
        diff = [k for k in keys if str(a.p.get(k)) != str(b.p.get(k))]
        raise UserError(f"{a.path} and {b.path} did not score the same archs on the same images against the same "
                        f"truth ({', '.join(diff) or 'their predictions.csv list different archs'} differ)",
                        fix="compare rank runs of one protocol (same --archs sample, scoring images and dataset), "
                            "or score files of the same archs as the run")
    return a, b, external


def compare_seeds(pairs: Sequence[Tuple[Path, Path]], common: bool = False) -> List[str]:
    """The same comparison A - B made once per training seed (each pair paired on its own archs and images): each
    pair's difference by accuracy and by loss, and their mean over the pairs with the two-level bootstrap interval
    (seeds, then archs) of metrics.seeds_tau_diff. Markdown lines."""
    from kshot_bench import metrics as stats

    runs = [load_pair(a, b, common=common)[:2] for a, b in pairs]
    lines = [f"## A - B over {len(runs)} pairs (one per training seed)", "",
             "| pair | A | B | A - B, acc [95% CI] | A - B, loss [95% CI] |", "|---|---|---|---|---|"]
    by_kind = {}
    for by in ("acc", "loss"):
        if all(np.isfinite(r.predictions()[by]).all() for pair in runs for r in pair):
            by_kind[by] = [(a.predictions()[by], b.predictions()[by], a.predictions()["truth"]) for a, b in runs]
    for i, (a, b) in enumerate(runs):
        cells = [diff_text(stats.paired_tau_diff(*by_kind[by][i])) if by in by_kind else "n/a" for by in ("acc", "loss")]
        lines.append(f"| {i + 1} | {a.path} (seed {a.p.get('seed')}) | {b.path} (seed {b.p.get('seed')}) | "
                     f"{cells[0]} | {cells[1]} |")
    lines.append("")
    for by, triples in by_kind.items():
        d = stats.seeds_tau_diff(triples)
        lines.append(f"across the {d['n_seeds']} pairs, by {by}: mean A - B {diff_text(d)} (std between pairs "
                     f"{d['seed_std']:.3f}; {100 * d['share_of_resamples_above_0']:.0f}% of resamples above 0)")
    seeds = [(a.p.get("seed"), b.p.get("seed")) for a, b in runs]
    if len(set(seeds)) < len(seeds):
        lines.append(f"note: pairs repeat a training seed ({seeds}); the interval treats them as different seeds.")
    return lines + [f"intervals: {stats.N_BOOT} resamples: the pairs with replacement, then each pair's archs jointly "
                    "for A and B; with few seeds this shows only the spread of the seeds at hand."]


def compare(path_a: Path, path_b: Path, common: bool = False) -> List[str]:
    """Any two rank runs that scored the same archs on the same images against the same truth (other
    epochs, seeds or methods allowed: e.g. two budgets of about equal compute): each run's tau with its
    interval, by accuracy and by loss, the paired difference A - B with its interval (joint resamples of
    the archs), and the split taus. Either may be external scores (`rank --scores`): then they are compared on the
    other's archs (which the scores must cover) against the same truth. `common`: two runs scored on other images
    or arch samples, paired on the archs both scored (load_pair). Markdown lines."""
    from kshot_bench import metrics as stats
    from kshot_bench.evaluate import EXTERNAL

    a, b, external = load_pair(path_a, path_b, common=common)
    pa, pb = a.predictions(), b.predictions()
    lines = [f"{name}: {r.path} " + (f"(external scores, sha256 {r.p['scores_sha256'][:12]})"
                                      if r.p.get("supernet") == EXTERNAL else
                                      f"({r.name}, K={r.p['k']}, {r.p['epochs']} epochs, seed {r.p['seed']}, config "
                                      f"{r.p['config_hash']})") for name, r in (("A", a), ("B", b))]
    differ = config_differences(a, b)
    lines += ([f"training configs differ in: {'; '.join(differ)} (A vs B)"] if differ else [])
    lines += machine_differences(a, b) + data_differences(a, b) + scoring_differences(a, b)
    base = b if a.p.get("supernet") == EXTERNAL else a  # a run's protocol where there is one
    if common and any(str(a.p.get(k)) != str(b.p.get(k)) for k in ("arch_set", "score_set")):
        lines += [f"on the {len(pa['truth'])} archs both scored (A: {a.p.get('arch_set')}; B: {b.p.get('arch_set')}); "
                  f"truth {a.p['truth']}", f"A scored on {a.p.get('score_set')}", f"B scored on {b.p.get('score_set')}"]
        if a.p.get("supernet") and a.p.get("supernet") == b.p.get("supernet"):
            lines.append(f"both scored the supernet {a.p['supernet']}: A - B is the scoring protocol's doing")
    else:
        lines.append(f"on {len(pa['truth'])} archs: {base.p['arch_set']}; scored on {base.p['score_set']}; "
                     f"truth {a.p['truth']}")
    lines += ["", "| scored by | tau A [95% CI] | tau B [95% CI] | A - B [95% CI] | resamples with A > B |",
              "|---|---|---|---|---|"]

    def tau(run: RankRun, by: str) -> str:
        return ci_text(st["kendall_tau"], st["ci95"]["kendall_tau"]) if (st := run.scored(by)) else "n/a"

    notes = []
    for by in ("acc", "loss"):
        if not (np.isfinite(pa[by]).all() and np.isfinite(pb[by]).all()):
            continue  # a score one of them does not have (external scores have no loss)
        d = stats.paired_tau_diff(pa[by], pb[by], pa["truth"])
        undefined = [f"{name}: {why}" for name, values in (("A", pa[by]), ("B", pb[by]))
                     if (why := stats.constant_reason(np.asarray(values), "scores"))]
        share = "n/a" if undefined else f"{100 * d['share_of_resamples_above_0']:.0f}%"
        lines.append(f"| {by} | {tau(a, by)} | {tau(b, by)} | {diff_text(d)} | {share} |")
        if undefined:
            notes.append(f"by {by}, tau is undefined for {'; '.join(undefined)}: no difference is claimed.")
    by = a.score_by
    splits = [f"n={n}: {text}" for n, text in split_taus(a.scored(by), b.scored(by), len(pa["truth"]))]
    return lines + ["", *notes, f"split tau ({by}), A vs B: " + "; ".join(splits),
                    f"intervals: {stats.N_BOOT} bootstrap resamples of the archs, the same for A and B."]


def _restrict_to_common(a: RankRun, b: RankRun) -> None:
    """Keep in both runs' predictions only the archs both scored, in A's order (load_pair's `common`)."""
    differ = [k for k in ("dataset", "truth") if str(a.p.get(k)) != str(b.p.get(k))]
    if differ:
        raise UserError(f"{a.path} and {b.path} were scored against different ground truths ({', '.join(differ)} "
                        "differ)", fix="pair runs of one dataset and truth column")
    pa, pb = a.predictions(), b.predictions()
    if pa is None or pb is None:
        raise UserError(f"{a.path if pa is None else b.path} holds no predictions.csv",
                        fix="pass rank runs that wrote their per-arch scores")
    where = {k: i for i, k in enumerate(pb["key"].tolist())}
    keep_a = np.array([i for i, k in enumerate(pa["key"].tolist()) if k in where], dtype=int)
    if len(keep_a) < MIN_COMMON_ARCHS:
        raise UserError(f"{a.path} and {b.path} have {len(keep_a)} scored archs in common (at least "
                        f"{MIN_COMMON_ARCHS} needed)", fix="score both runs on overlapping arch samples (the same "
                                                           "--archs seed; a smaller sample is a prefix of a larger)")
    keep_b = np.array([where[k] for k in pa["key"][keep_a].tolist()], dtype=int)
    if not np.allclose(pa["truth"][keep_a], pb["truth"][keep_b]):
        raise UserError(f"{a.path} and {b.path} give the same archs different truths",
                        fix="pair runs of one dataset and truth column")
    a._pred = {name: values[keep_a] for name, values in pa.items()}
    b._pred = {name: values[keep_b] for name, values in pb.items()}
    a._stats = b._stats = None  # the runs' own metrics are for their full arch sets


def _align(run: RankRun, to: RankRun) -> None:
    """Put `run`'s predictions (external scores) in the arch order of `to`'s, keeping only `to`'s archs, when
    it holds all of them (a score file has its own order, and may score more archs than a run did)."""
    pr, pt = run.predictions(), to.predictions()
    if pr is None or pt is None or not set(pt["key"].tolist()) <= set(pr["key"].tolist()):
        return
    where = {k: i for i, k in enumerate(pr["key"].tolist())}
    order = np.array([where[k] for k in pt["key"].tolist()])
    run._pred = {name: values[order] for name, values in pr.items()}
