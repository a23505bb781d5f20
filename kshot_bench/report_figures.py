"""The report's figures (paper Figures 4-7 shapes, scatter plots) from loaded runs; each returns its file name
and caption, or None and the reason it could not be drawn."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from kshot_bench.report_runs import (
    METHOD_ORDER,
    RankRun,
    RetrainRun,
    Runs,
    SearchRun,
    _retrained_top1,
    group,
    mean_std,
    method_order,
    method_style,
    protocol_line,
    run_noise_ceiling,
    run_space,
    variant_name,
)
from kshot_bench.results import fmt


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
    ax.set_title(f"Fig. 4 shape ({where(sr.result.get('protocol', sr.result) for sr, _ in curves)}): search progress "
                 f"under a FLOPs limit of {', '.join(limits)} M", fontsize=10)
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


def where(protocols) -> str:
    """`nb201 on cifar10` (joined with `; ` where the runs differ): which space and dataset a figure shows."""
    pairs = sorted({(p.get("space") or "nb201", p.get("dataset") or "?") for p in protocols})
    return "; ".join(f"{s} on {d}" for s, d in pairs)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt


def _save(plt, fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, bbox_inches="tight")  # legends placed beside the axes stay in the picture
    plt.close(fig)
    return name




def comparable_budget(ranks, kind) -> int:
    """The training budget (epochs) a one-budget figure draws: the one where the runs cover the most kinds
    (values of K, methods), the largest of those. Snapshots of a longer run do not push the runs that stopped
    earlier off the figure."""
    kinds = group(ranks, lambda r: int(r.p["epochs"]))
    return max(kinds, key=lambda e: (len({kind(r) for r in kinds[e]}), e))


def fig4(ranks, searches, out: Path) -> Tuple[Optional[str], str]:
    budget = comparable_budget(ranks, lambda r: int(r.p["k"]))
    ranks = [r for r in ranks if int(r.p["epochs"]) == budget]
    if len({int(r.p["k"]) for r in ranks}) < 2:
        return None, "Fig. 4 needs runs at two or more values of K (at the same training budget)."
    by = group(ranks, lambda r: r.name)
    plt = _plt()
    has_search = any(s.result["fitness"] == "supernet" for s in searches)
    fig, axes = plt.subplots(1, 2 if has_search else 1, figsize=(10 if has_search else 5.5, 4), dpi=130, squeeze=False)
    ax = axes[0][0]
    all_k = sorted({int(r.p["k"]) for r in ranks})
    for j, method in enumerate(sorted(by, key=method_order)):
        rs = by[method]
        if rs[0].method == METHOD_ORDER[0]:
            m1, s1, _ = mean_std([r.metrics["kendall_tau"] for r in rs])
            ax.errorbar([1], [m1], yerr=[s1], marker="D", ms=7, capsize=3, label=method,
                        **{**method_style(method), "linestyle": "none"})
            continue
        ks = sorted({int(r.p["k"]) for r in rs})
        st = [mean_std([r.metrics["kendall_tau"] for r in rs if int(r.p["k"]) == k]) for k in ks]
        shift = 2 ** ((j - 2) * 0.04)  # small horizontal offsets keep overlapping methods visible
        ax.errorbar([k * shift for k in ks], [x[0] for x in st], yerr=[x[1] for x in st], marker="o", capsize=3,
                    label=method, **method_style(method))
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_k, [str(k) for k in all_k])
    ax.set_xlabel("K (K=1: one-shot)")
    ax.set_ylabel("Kendall's tau (mean ± std over seeds)")
    ax.set_title(f"Fig. 4 ({where(r.p for r in ranks)}): ranking quality against K ({budget} epochs)", fontsize=10)
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
    return name, f"Fig. 4 ({budget}-epoch runs) from {protocol_line(ranks)}."


def fig5(ranks, out: Path) -> Tuple[Optional[str], str]:
    budget = comparable_budget(ranks, lambda r: r.name)
    ranks = [r for r in ranks if int(r.p["epochs"]) == budget]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=130)
    by = group(ranks, lambda r: r.name)
    for method in sorted(by, key=method_order):
        rs = by[method]
        ns = sorted({int(n) for r in rs for n in r.metrics["split_tau"]})
        st = [mean_std([r.metrics["split_tau"].get(str(n)) for r in rs]) for n in ns]
        ax.errorbar(ns, [s[0] for s in st], yerr=[s[1] for s in st], marker="o", capsize=3, label=method,
                    **method_style(method))
    base = {r.p["arch_set"]: r.baselines["params"] for r in ranks if "params" in r.baselines}
    if base:
        ns = sorted({int(n) for b in base.values() for n in b["split_tau"]})
        ax.plot(ns, [mean_std([b["split_tau"].get(str(n)) for b in base.values()])[0] for n in ns], "k--",
                label="parameter count (baseline)")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("n_high (size of the true top group)")
    ax.set_ylabel("split Kendall's tau (mean ± std over seeds)")
    ax.set_title(f"Fig. 5 ({where(r.p for r in ranks)}): high vs low performers ({budget} epochs)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    name = _save(plt, fig, out, "fig5_split_tau.png")
    return name, f"Fig. 5 ({budget}-epoch runs) from {protocol_line(ranks)}."


FIG6_ARCHS = 1000


def run_codes(run: RankRun, n: int = FIG6_ARCHS) -> Tuple[np.ndarray, str]:
    """Codes of `n` archs for Fig. 6: the run's own simplex-net (train/supernet.pt, evaluated, never
    trained) on a seeded sample of n archs; without that file, the codes of the archs it scored."""
    ckpt = run.path / "train" / "supernet.pt"
    if ckpt.exists():
        import torch

        from kshot_bench.models import code_source_from
        from kshot_bench.rundir import load_checkpoint

        codes = code_source_from(load_checkpoint(ckpt, torch.device("cpu")))
        _, archs, desc = run_space(run).arch_set(str(n), int(run.p["seed"]), widths=bool(run.p.get("width_search", True)))
        with torch.no_grad():
            lam = codes.eval()(archs).numpy()
        return lam, f"the simplex-net of run {run.label} (train/supernet.pt) on {desc}"
    with open(run.path / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    k = int(run.p["k"])
    lam = np.array([[float(row[f"lam_{i}"]) for i in range(k)] for row in rows])
    note = "" if len(rows) >= n else f". The run scored {len(rows)} archs, fewer than the paper's {n:,}, and has no train/supernet.pt to code more"
    return lam, f"run {run.label}, the first {len(rows)} archs of its predictions.csv{note}"


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
    ax.set_title(f"Fig. 6 ({where([run.p])}): codes of {len(lam):,} archs, K={k} ({run.label})", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    name = _save(plt, fig, out, "fig6_code_histogram.png")
    return name, f"Fig. 6 from {source}."


def _best_baseline(runs: Sequence[RankRun]) -> Tuple[Optional[str], Optional[float], Optional[float]]:
    """(name, tau, params tau) of the runs' baselines, averaged over their distinct arch sets: the best
    baseline other than the parameter count (a zero-cost proxy, a short training, a layer count: whatever
    the space ships), and the parameter count."""
    per_set = {r.p["arch_set"]: r.baselines for r in runs if r.baselines}
    if not per_set:
        return None, None, None
    names = {n for b in per_set.values() for n in b} - {"params", "random"}
    proxies = {n: float(np.mean([b[n]["kendall_tau"] for b in per_set.values()])) for n in sorted(names)
               if all(n in b and b[n].get("kendall_tau") is not None for b in per_set.values())}
    best = max(proxies, key=proxies.get) if proxies else None
    params = [b["params"]["kendall_tau"] for b in per_set.values() if "params" in b]
    return best, proxies.get(best), float(np.mean(params)) if params else None


VARIANT_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def fig7(ranks, out: Path) -> Tuple[Optional[str], str]:
    pts = group([r for r in ranks if r.method in (METHOD_ORDER[0], METHOD_ORDER[3])],
                lambda r: (int(r.p["k"]), r.name, int(r.p["epochs"])))
    epochs = sorted({e for *_, e in pts})
    if len(epochs) < 2:
        return None, (f"Fig. 7 needs runs at two or more training budgets (epochs); the runs given all train "
                      f"{epochs[0] if epochs else '?'} epochs. Add cells with `kshot-bench ablate --epochs E1 E2`, "
                      "or snapshots of one run (`--set snapshot_epochs=...`, `rank --checkpoint RUN_DIR`).")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=130)
    lines = sorted({(k, name) for k, name, _ in pts}, key=lambda kn: (kn[0], method_order(kn[1])))
    span = epochs[-1] - epochs[0]
    bars = []
    for j, (k, method) in enumerate(lines):
        es = [e for e in epochs if (k, method, e) in pts]
        mid, lo, hi = [], [], []
        for e in es:
            rs = pts[(k, method, e)]
            if len(rs) == 1 and rs[0].stats():  # one run: its bootstrap interval
                st = rs[0].stats()
                m, (a, b) = st["kendall_tau"], st["ci95"]["kendall_tau"]
            else:  # several seeds: mean +- std
                m, sd, _ = mean_std([r.metrics["kendall_tau"] for r in rs])
                a, b = m - sd, m + sd
            mid.append(m)
            lo.append(m - a)
            hi.append(b - m)
        bars += ["bootstrap 95% CI (one seed)" if len(pts[(k, method, e)]) == 1 else "std over seeds (several)" for e in es]
        shift = (j - (len(lines) - 1) / 2) * 0.012 * span  # small offsets keep overlapping points visible
        style = method_style(method)  # several K of one method: the colours of the cycle, one per K
        style = {**style, "color": None} if len({kk for kk, _ in lines}) > 2 else style
        # lines of one colour (variants of one method at one K) told apart by their markers
        same = sum(1 for kk, mm in lines[:j] if style["color"] is not None and kk == k
                   and method_style(mm)["color"] == style["color"])
        ax.errorbar([e + shift for e in es], mid, yerr=[lo, hi], marker=VARIANT_MARKERS[same % len(VARIANT_MARKERS)],
                    capsize=3, label=method if k == 1 else f"K={k}: {method}", **style)
    runs = [r for rs in pts.values() for r in rs]
    n_sets = len({r.p["arch_set"] for r in runs})
    # baselines and chance on the same archs, drawn on the same axes (averaged when the runs' arch sets differ)
    best, best_tau, params_tau = _best_baseline(runs)
    if params_tau is not None:
        ax.axhline(params_tau, color="tab:gray", linestyle="--", linewidth=1.2, label=f"parameter count ({params_tau:.3f})")
    if best_tau is not None:
        ax.axhline(best_tau, color="tab:purple", linestyle=":", linewidth=1.5, label=f"best other baseline: {best} ({best_tau:.3f})")
    nulls = [r.stats()["null"] for r in runs if r.stats() and np.isfinite(r.stats()["null"]["band_lo"])]
    if nulls:
        ax.axhspan(np.mean([b["band_lo"] for b in nulls]), np.mean([b["band_hi"] for b in nulls]), color="tab:gray",
                   alpha=0.15, label="chance (95% band)")
    ceilings = {r.p["arch_set"]: run_noise_ceiling(r) for r in runs}
    if all(ceilings.values()):
        ceiling_tau = float(np.mean([c["kendall_tau"] for c in ceilings.values()]))
        ax.axhline(ceiling_tau, color="tab:brown", linestyle="-.", linewidth=1.2,
                   label=f"noise ceiling: two trainings of the truth ({ceiling_tau:.3f})")
    published = _published(runs)
    for (label, tau), color in zip(published, ("tab:red", "tab:orange", "tab:olive", "tab:cyan", "tab:pink")):
        ax.axhline(tau, color=color, linestyle=(0, (1, 2)), linewidth=1.0, label=f"published, all archs: {label} ({tau:.3f})")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(epochs, [str(e) for e in epochs])
    snapshots = all(r.is_snapshot for r in runs)
    ax.set_xlabel("supernet training epochs" + (" (snapshots of one run per K and seed)" if snapshots else ""))
    ax.set_ylabel("Kendall's tau")
    ax.set_title(f"Fig. 7 ({where(r.p for r in runs)}): ranking quality against K and training epochs\n"
                 f"error bars: {', '.join(sorted(set(bars)))}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    name = _save(plt, fig, out, "fig7_tau_vs_k_epochs.png")
    note = ("" if n_sets == 1 else f" Baselines and the chance band are averaged over the runs' {n_sets} arch sets.")
    if all(ceilings.values()):
        note += (f" Dash-dot line: the noise ceiling, {ceiling_tau:.3f}: {ceilings[next(iter(ceilings))]['description']} on "
                 "the same archs.")
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
        tau = fmt(r.metrics["kendall_tau"]) if r.metrics.get("kendall_tau") is not None else "undefined"
        ax.set_title(f"{r.path.name} ({where([r.p])})\ntau {tau}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(runs):]:
        ax.axis("off")
    fig.supxlabel("true accuracy (%)", fontsize=8)
    fig.supylabel("supernet accuracy (%)", fontsize=8)
    name = _save(plt, fig, out, "scatter_runs.png")
    return name, f"Predicted vs true for each run ({len(runs)} runs)."


def figures(runs: Runs, out: Path) -> List[Tuple[Optional[str], str]]:
    """Every figure of the report: (file, caption), or (None, why it was not drawn). Runs with a ground truth
    give tau against K, n_high and epochs (paper Figs. 4, 5, 7); searches and retrained archs without one give
    the search progress and the retrained accuracy (Figs. 4 and 7 on MobileNetV2); Fig. 6 for any."""
    ranks, searches, untruthed = runs.ranks, runs.searches, runs.without_truth
    drawn = []
    if ranks:
        drawn = [fig4(ranks, searches, out), fig5(ranks, out), fig6(ranks, out), fig7(ranks, out), scatter_grid(ranks, out)]
    if runs.searches_without_truth:
        drawn.append(fig4_search(runs.searches_without_truth, out))
    if untruthed:
        drawn.append(fig6(untruthed, out))
    if runs.searches_without_truth or (untruthed and runs.retrains):
        drawn.append(fig7_retrained(runs.searches_without_truth, runs.retrains, out))
    return drawn or [(None, "Figures 4-7 need rank runs (metrics.json) or search runs; none were given.")]
