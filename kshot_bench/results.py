"""Result files of a rank run and how they read: predictions.csv, metrics.json, summary.md, scatter.png,
the console table, and the number formatting the reports share."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np



# ----------------------------------------------------------------------------- score kinds


def write_predictions(out_dir: Path, keys: Sequence, arch_strs: Sequence[str], scored: Dict, truth: np.ndarray, k: int,
                      key_name: str = "index") -> Path:
    """predictions.csv of a ranked run: per arch its key (the space's, e.g. the NB201 index), string, score,
    ground truth, validation loss and code."""
    path = Path(out_dir) / "predictions.csv"
    tmp = path.with_name(path.name + ".tmp")
    lead = [key_name] if key_name != "arch_str" else []
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(lead + ["arch_str", "score", "truth", "val_loss"] + [f"lam_{i}" for i in range(k)])
        for key, arch_str, t in zip(keys, arch_strs, truth):
            r = scored[key]
            w.writerow(([key] if lead else []) + [arch_str, f"{r['score']:.6g}", f"{t:.10g}", f"{r['val_loss']:.6g}"]
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


def is_defined(value) -> bool:
    """A figure that exists: not None (null in metrics.json), not NaN."""
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def undefined_reason(m: Dict, key: str = "kendall_tau", sub: Optional[str] = None) -> Optional[str]:
    """Why a ranking figure of `m` is undefined (`metrics.undefined_reasons`), or None when it is defined. A
    figure without a recorded reason (runs written before reasons were kept) that is null says so plainly."""
    value = m.get(key) if sub is None else (m.get(key) or {}).get(sub)
    reasons = m.get("undefined") or {}
    reason = reasons.get(key) if sub is None else (reasons.get(key) or {}).get(sub)
    if reason:
        return reason
    return None if is_defined(value) else "all scores or all true accuracies are equal"


def tau_text(m: Dict, key: str = "kendall_tau", sub: Optional[str] = None, ci: bool = True, digits: int = 3) -> str:
    """A ranking figure with its interval, or `undefined` (the reason goes in `undefined_lines`)."""
    if undefined_reason(m, key, sub):
        return "undefined"
    value = m[key] if sub is None else m[key][sub]
    cis = m.get("ci95", {})
    interval = cis.get(key) if sub is None else (cis.get(key) or {}).get(sub)
    return with_ci(value, interval if ci else None, digits)


def tau_sort_key(m: Dict) -> float:
    """Rows by tau, best first; undefined ones last."""
    return -m["kendall_tau"] if is_defined(m.get("kendall_tau")) else float("inf")


def headline(subject: str, metrics: Dict, baselines: Dict[str, Dict], truth: str) -> str:
    """The summary's first sentence: the tau and how it stands against the baselines on the same archs. No claim
    of better, worse or level unless both figures are defined."""
    n = metrics["n_archs"]
    why = undefined_reason(metrics)
    if why:
        return (f"Kendall's tau of {subject}: **undefined**: {why} ({n:,} archs, ground truth `{truth}`), so it is "
                "not compared with the baselines.")
    tau = metrics["kendall_tau"]
    defined = {name: b for name, b in baselines.items() if not undefined_reason(b)}
    better = [name for name, b in defined.items() if b["kendall_tau"] > tau]
    level = [name for name, b in defined.items() if b["kendall_tau"] == tau]
    text = f"Kendall's tau of {subject}: **{tau:.3f}** over {n:,} archs (ground truth `{truth}`)."
    if better:
        text += f" Baselines ranking better: {', '.join(better)}."
    if level:
        text += f" Level with: {', '.join(level)}."
    if defined and not better and not level:
        text += " It ranks better than every baseline below" + (" whose tau is defined." if len(defined) < len(baselines) else ".")
    undefined = [name for name in baselines if name not in defined]
    if undefined:
        text += f" Undefined on these archs (not compared): {', '.join(undefined)}."
    return text


def ties_line(m: Dict) -> List[str]:
    """How many archs share their score with another: ties are common (accuracy on 1,000 images takes at most
    1,001 values) and decide how far an order can be told."""
    t = m.get("ties")
    if not t:
        return []
    if not t["tied_archs"]:
        return ["", f"Ties: none ({t['distinct_scores']:,} distinct scores for {t['n_archs']:,} archs)."]
    return ["", f"Ties: {t['tied_archs']:,} of {t['n_archs']:,} archs share their score with another "
                f"({t['distinct_scores']:,} distinct scores); tau-b, split tau, P@k and regret count tied scores as "
                "ties (P@k and regret as expectations over the tied places)."]


def undefined_lines(rows: List[Tuple[str, Dict]]) -> List[str]:
    """One line per row whose figures are undefined, with the reason."""
    lines = []
    for name, m in rows:
        reasons = sorted({r for k in ("kendall_tau", "spearman") if (r := (m.get("undefined") or {}).get(k))}
                         | {r for k in ("split_tau", "top_tau") for r in ((m.get("undefined") or {}).get(k) or {}).values()})
        if reasons:
            lines.append(f"- {name}: undefined figures ({'; '.join(reasons)}).")
        elif not is_defined(m.get("kendall_tau")):
            lines.append(f"- {name}: undefined figures (all scores or all true accuracies are equal).")
    return ([""] + lines) if lines else []


def with_ci(value: Optional[float], ci: Optional[Sequence[float]], digits: int = 3) -> str:
    """`0.123 [0.081, 0.164]`: a value and its 95% interval, when there is one."""
    if ci is None or value is None or any(v is None for v in ci):
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def significance_lines(m: Dict) -> List[str]:
    """Plain sentences on whether a tau is told apart from chance, and the other scoring beside it."""
    lines = []
    null = m.get("null")
    if null and null.get("band_lo") is not None and np.isfinite(null["band_lo"]) and is_defined(m["kendall_tau"]):
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
    p10 = any("10" in m.get("precision_at_k", {}) for _, m in rows)  # P@10 only where 10 < the number of archs
    head = ["method", "Kendall tau", "Spearman"] + [f"split tau n={k}" for k in split_keys] + (["P@10"] if p10 else []) + ["regret"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in rows:
        cells = [name, tau_text(m), tau_text(m, "spearman", ci=False)]
        cells += [tau_text(m, "split_tau", k) if k in m["split_tau"] else "n/a" for k in split_keys]
        cells += ([fmt(m["precision_at_k"].get("10"), 2)] if p10 else []) + [fmt(m["regret"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + undefined_lines(rows)


def write_summary(out_dir: Path, metrics: Dict, baselines: Dict[str, Dict]) -> Path:
    p = metrics["protocol"]
    label = f"supernet K={p['k']} ({p['code_label']})"
    split_keys = [k for k in ("10", "50", "100", "1000") if k in metrics["split_tau"]] or list(metrics["split_tau"])[:3]
    rows = [(label, metrics)] + sorted(((f"{n}: {b['description']}", b) for n, b in baselines.items()),
                                       key=lambda r: tau_sort_key(r[1]))
    from kshot_bench.config import RunConfig
    from kshot_bench.search_space import SPACES

    space = SPACES.get(p.get("space") or RunConfig.space)  # runs written before the protocol named its space
    paper = space.PAPER_TAU.get(p["dataset"])
    lines = [
        f"# Ranking: {p['dataset']}, K={p['k']}, {p['code_label']}",
        "",
        headline("the supernet", metrics, baselines, p["truth"]),
        "",
        *summary_table(rows, split_keys),
        "",
        "Brackets: 95% bootstrap intervals (resampling the archs).",
        *ties_line(metrics),
        *without_no_path_line(metrics),
        "",
        *significance_lines(metrics),
        "",
        "## Protocol",
        f"- run: `{p['command']}`",
        f"- config hash `{p['config_hash']}`, preset `{p['preset']}`, seed {p['seed']}; {space.describe_network(p)}; "
        f"{p['epochs']} epochs ({p['warmup_epochs']} warm-up) on {p['train_images']:,} training images",
        f"- supernet trained on: {p['train_part']}; data: {p['data']}",
        *([f"- the supernet's training images: {p['train_data']}"] if p.get("train_data") not in (None, p["data"]) else []),
        f"- archs: {p['arch_set']}",
        f"- training paths drawn: {p.get('sampling', 'uniform')}; weights off the path: {p.get('offpath_update', 'none')}"
        + (f"; simplex-net variant: {p['simplex_variant']}" if (p.get("k") or 1) > 1 and p.get("simplex_variant") else ""),
        f"- scored on: {p['score_set']}; score: {p.get('score', 'top-1 accuracy (%)')}",
        f"- ground truth: `{p['truth']}` ({space.TRUTH_SOURCE})",
        *time_and_machine_lines(p),
        "",
        *([f"For scale, the paper's Table 4 (paper-scale training, all archs): SPOS {paper[0]}%, K-shot {paper[1]}% "
           "Kendall's tau on this dataset. Those numbers come from the paper's supernets (C=16, 250 epochs, on GPUs); "
           "a run of another width, budget or arch set measures something else.", ""] if paper else []),
        "![predicted vs true](scatter.png)",
        "",
        "Files: `predictions.csv` (per arch: score, truth, code), `metrics.json`, `baselines.json`.",
    ]
    path = Path(out_dir) / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def without_no_path_line(metrics: Dict) -> List[str]:
    w = metrics.get("without_no_path")
    if not w:
        return []
    n = metrics["n_archs"] - w["n_archs"]
    return ["", f"Without the {n:,} archs that have no input-to-output path (their networks output a constant and sit "
                f"at chance accuracy): tau {with_ci(w['kendall_tau'], w['ci95']['kendall_tau'])} over "
                f"{w['n_archs']:,} archs."]


def scatter_title(metrics: Dict, title: Optional[str] = None) -> str:
    """The scatter plot's title: space, dataset, K, the code (and the simplex-net variant where a K-shot run has
    one), tau, the arch count and the config (or the scores' hash)."""
    p = metrics["protocol"]
    variant = f" ({p['simplex_variant']})" if (p.get("k") or 1) > 1 and p.get("simplex_variant") else ""
    title = title or f"{p.get('space', 'nb201')} on {p['dataset']}, K={p['k']} {p['code_label']}{variant}"
    ident = f"scores sha256 {p['scores_sha256'][:10]}" if p.get("scores_sha256") else f"config {p['config_hash']}"
    tau = "undefined" if undefined_reason(metrics) else f"{metrics['kendall_tau']:.3f}"
    return f"{title}: Kendall tau {tau}\n{p['n_archs']:,} archs, {ident}"


def plot_scatter(out_dir: Path, scores: np.ndarray, truth: np.ndarray, metrics: Dict, ylabel: Optional[str] = None,
                 title: Optional[str] = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = metrics["protocol"]
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=130)
    ax.scatter(truth, scores, s=8, alpha=0.6, edgecolors="none", color="#1f77b4")
    ax.set_xlabel(f"true accuracy (%), {p['truth']}")
    ax.set_ylabel(ylabel or f"supernet accuracy (%), {p['n_score_images']:,} images")
    ax.set_title(scatter_title(metrics, title), fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out_dir) / "scatter.png"
    fig.savefig(path)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the rank job


def print_table(metrics: Dict, baselines: Dict, label: Optional[str] = None) -> None:
    p = metrics["protocol"]
    rows = [(label or f"supernet K={p['k']} {p['code_label']}", metrics)] + sorted(baselines.items(),
                                                                              key=lambda r: tau_sort_key(r[1]))
    ns = [k for k in ("10", "100", "1000") if k in metrics["split_tau"]]
    print(f"\n{'method':<34}{'tau':>9}{'95% CI':>17}{'rho':>10}" + "".join(f"{'split@' + k:>12}" for k in ns)
          + f"{'regret':>9}")
    for name, m in rows:
        lo, hi = m.get("ci95", {}).get("kendall_tau") or (None, None)
        ci = f"[{fmt(lo)}, {fmt(hi)}]" if lo is not None else ""
        if undefined_reason(m):
            ci = ""
        print(f"{name[:33]:<34}{tau_text(m, ci=False):>9}{ci:>17}{tau_text(m, 'spearman', ci=False):>10}"
              + "".join(f"{tau_text(m, 'split_tau', k, ci=False):>12}" for k in ns) + f"{fmt(m['regret'], 2):>9}")
    for line in undefined_lines(rows):
        if line:
            print(line[2:])
    ties = metrics.get("ties")
    if ties and ties["tied_archs"]:
        print(f"ties: {ties['tied_archs']:,} of {ties['n_archs']:,} archs share their score with another "
              f"({ties['distinct_scores']:,} distinct scores)")
    null = metrics.get("null")
    if null and null.get("band_lo") is not None and np.isfinite(null["band_lo"]) and not undefined_reason(metrics):
        print(f"random scores on these archs: tau in [{fmt(null['band_lo'])}, {fmt(null['band_hi'])}] (95%); "
              f"p-value of this tau {null['p_value']:.2g}")
    if "n_score_images" not in p:  # external scores
        print(f"\n{p['n_archs']:,} archs ({p['arch_set']}), truth {p['truth']}")
        return
    print(f"\n{p['n_archs']:,} archs ({p['arch_set']}), {p['n_score_images']:,} scoring images, "
          f"truth {p['truth']}; training {fmt(p['train_s'], 0)} s, {scoring_time(p)}")


def time_and_machine_lines(p: Dict) -> List[str]:
    """The summary's protocol lines for time and machines: training and scoring time with the scoring machine,
    and the machines the supernet trained on where the run knows them."""
    m = p["machine"]
    return [f"- time: training {fmt(p['train_s'], 0)} s, {scoring_time(p)}; machine: {m.get('cpu')} / {m.get('device')}, "
            f"torch {m.get('torch')}, {m.get('threads')} threads",
            *([f"- training machines: {' then '.join(p['train_machines'])}"] if p.get("train_machines") else [])]


def scoring_time(p: Dict) -> str:
    """The scoring time of a rank run's protocol, with its rate over the archs this call scored: a scoring
    resumed from a journal times only its last part (runs written before `archs_scored` was kept say so)."""
    n, scored = p.get("n_archs"), p.get("archs_scored")
    world = int(p.get("world_size") or 1)
    procs = f", {world} processes" if world > 1 else ""
    if scored is None:
        return f"scoring {fmt(p['score_s'], 0)} s (its last call{procs}; a resumed scoring is timed from its restart)"
    if scored == 0:
        return "scoring: every arch was scored by an earlier call (kept in its journal)"
    computed = p.get("archs_computed")
    shared = (f"; {computed:,} forward computations: archs with the same live edges and code "
              f"share one" if computed is not None and computed < scored else "")
    if scored == n:
        return f"scoring {fmt(p['score_s'], 0)} s ({fmt(p['archs_per_s'], 2)} archs/s{procs}{shared})"
    return (f"scoring {fmt(p['score_s'], 0)} s for the last {scored:,} of {n:,} archs ({fmt(p['archs_per_s'], 2)} "
            f"archs/s{procs}{shared}; the others were scored by an earlier call, kept in its journal)")

