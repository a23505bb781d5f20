"""The report's tables (paper Tables 1-6 shapes, paired comparisons, search results) from loaded runs."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kshot_bench.report_runs import (
    DEFAULT_SPACE,
    MBV2_VARIANTS,
    METHOD_ORDER,
    RankRun,
    RetrainRun,
    Runs,
    SearchRun,
    _retrained_top1,
    ci_text,
    paired,
    group,
    md,
    method_name,
    method_order,
    pm,
    protocol_line,
    run_cis,
    run_network_groups,
    run_noise_ceiling,
    run_space,
    variant_name,
)
from kshot_bench.report_rules import across_seeds, diff_text, paired_diffs, rule_tables, table_diagnostics
from kshot_bench.results import fmt
from kshot_bench.rundir import machine_label


def tables(runs: Runs) -> List[str]:
    """Every table of the report, in order. Each asks the runs whether they have a ground truth: tau and its
    companions where they do (paper Tables 4 and 5/6 on NB201), scores, costs, codes and retrained accuracy where
    they do not (the paper's Tables 5/6 and 2 on MobileNetV2)."""
    ranks, searches = runs.ranks, runs.searches
    lines = []
    if ranks:
        lines += table4(ranks) + table_without_no_path(ranks) + table_top(ranks) + paired_comparisons(ranks) + rule_tables(ranks) + table_score_by(ranks)
        lines += table_same_network(ranks)
        lines += table_ablation(ranks, searches) + table1(ranks) + table_diagnostics(ranks)
    lines += unranked_tables(runs) + table_ablation_unranked(runs)
    lines += table1(runs.without_truth) if any(r.log for r in runs.without_truth) else []
    lines += table2(runs.retrains, runs.all_searches)
    if searches or not (runs.searches_without_truth or runs.retrains):
        lines += search_table(searches)
    return lines


def unranked_tables(runs: Runs) -> List[str]:
    """Runs of spaces without ground truth (MBV2): the supernet's scores and codes, and searched archs."""
    lines = []
    if runs.without_truth:
        lines += ["### Scored runs without ground truth", "",
                  "| run | space | dataset | method | K | epochs | archs | score mean ± std | tau(score, FLOPs) | "
                  "code spread between archs | between widths (same ops) | config |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs.without_truth:
            path, m = r.path, r.metrics
            p, st = m["protocol"], m.get("code_stats", {})
            lines.append(f"| {path.name} | {p['space']} | {p['dataset']} | {method_name(int(p['k']), p['code'])} | {p['k']} | "
                         f"{p['epochs']} | {m['n_archs']} | {m['score_mean']:.2f} ± {m['score_std']:.2f} | "
                         f"{fmt(m.get('kendall_tau_vs_flops'))} | {fmt(st.get('between_archs', {}).get('code_spread'), 4)} | "
                         f"{fmt(st.get('between_widths_same_ops', {}).get('code_spread'), 4)} | {p['config_hash']} |")
        lines += ["", "No Kendall's tau: these spaces have no ground-truth benchmark. Spread: mean total-variation "
                  "distance between the codes of two archs (or of two width settings of the same ops).", ""]
    if runs.searches_without_truth:
        lines += ["### Searched archs without ground truth", "",
                  "| run | space | algo | FLOPs limit (M) | FLOPs (M) | params (M) | supernet fitness | archs scored | arch |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for sr in runs.searches_without_truth:
            r = sr.result
            lines.append(f"| {sr.path.name} | {r.get('space')} | {r['algo']} | {r.get('flops_limit_M')} | {r['flops_M']:.1f} | "
                         f"{r.get('params_M', float('nan')):.2f} | {r['fitness_value']:.2f} | {r['n_evaluated']} | "
                         f"`{md(r['arch_str'])}` |")
        lines.append("")
    return lines




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

    searches = group(runs.searches_without_truth, lambda sr: where(sr.result.get("protocol", {}).get("checkpoint")))
    rows = [(variant_name(r.p), r.p, r.path.name, r.metrics, searches.pop(supernet_file(r.p), []))
            for r in runs.without_truth]
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
    from kshot_bench import metrics as stats
    from kshot_bench.datasets import DATASETS
    from kshot_bench.ground_truth import baseline_scores

    out, seen = [], set()
    for r in runs:
        pred = r.predictions()
        key = r.p.get("arch_set")
        if pred is None or key in seen:
            continue
        seen.add(key)
        space = run_space(r)
        archs = [space.from_key(k) for k in pred["key"]]
        scores = baseline_scores(space, DATASETS.get(r.p["dataset"]), pred["key"], archs).get(name)
        if scores is None:
            continue
        from kshot_bench.metrics import kendall_tau

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


def _ceiling_rows(runs: List[RankRun]) -> List[str]:
    """Where the truth's own noise caps any ranking: the benchmark's independent trainings against each other
    on each distinct arch set (spaces whose table ships them)."""
    found, seen = [], set()
    for r in runs:
        if r.p.get("arch_set") in seen:
            continue
        seen.add(r.p.get("arch_set"))
        ceiling = run_noise_ceiling(r)
        if ceiling:
            found.append(ceiling)
    if not found:
        return []
    pairs = "; ".join(", ".join(f"{v:.3f}" for v in c["pairs"].values()) for c in found)
    return [f"| noise ceiling: {found[0]['description']} | – | – | {pm([c['kendall_tau'] for c in found])} | "
            f"pairs: {pairs} | – | the runs' arch sets ({len(found)}) |"]


def table4(ranks: List[RankRun]) -> List[str]:
    lines = []
    for dataset, runs in group(ranks, lambda r: r.p["dataset"]).items():
        lines += [f"### Table 4 shape: Kendall's tau on {dataset}", "",
                  "| method | K | epochs | Kendall tau | each run: tau [95% CI] | Spearman | runs |",
                  "|---|---|---|---|---|---|---|"]
        by = group(runs, lambda r: (method_order(r.name), int(r.p["k"]), -int(r.p["epochs"]), r.name))
        for (_, k, neg_epochs, method), rs in sorted(by.items()):
            lines.append(f"| {method} | {k} | {-neg_epochs} | {pm([r.metrics['kendall_tau'] for r in rs])} | "
                         f"{run_cis(rs)} | {pm([r.metrics['spearman'] for r in rs])} | {', '.join(r.label for r in rs)} |")
        lines += _baseline_rows(runs) + _chance_rows(runs) + _ceiling_rows(runs)
        lines += ["", "Mean ± std over the runs of each row (seeds); rows with different training budgets are kept "
                  "apart. A baseline's spread is over the distinct arch sets of the runs. Brackets: 95% bootstrap "
                  "intervals of each run's tau (1,000 resamples of its archs).", "",
                  f"Protocol: {protocol_line(runs)}.", ""]
    return lines


def table_without_no_path(ranks: List[RankRun]) -> List[str]:
    """Each run's tau without the archs whose network outputs a constant (NB201: no input-to-output path),
    from its metrics.json; nothing when no run scored such archs."""
    runs = [r for r in ranks if r.metrics.get("without_no_path")]
    if not runs:
        return []
    lines = ["### Without the archs whose network outputs a constant", "",
             "| method | K | epochs | archs | Kendall tau [95% CI] | with them | split tau n=10 / 50 / 100 | run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r.p["dataset"], int(r.p["k"]), int(r.p["epochs"]), r.label)):
        w = r.metrics["without_no_path"]
        split = " / ".join(fmt(w["split_tau"].get(n), 2) for n in ("10", "50", "100"))
        lines.append(f"| {r.name} | {r.p['k']} | {r.p['epochs']} | {w['n_archs']:,} of {r.metrics['n_archs']:,} | "
                     f"{ci_text(w['kendall_tau'], w.get('ci95', {}).get('kendall_tau'))} | {fmt(r.metrics['kendall_tau'], 3)} | "
                     f"{split} | {r.label} |")
    return lines + ["", "Their networks compute a constant (on NB201 each sits at chance accuracy in the truth), so "
                    "no score can order them among themselves; tau without them says how well the rest is ranked. "
                    "Brackets: 95% bootstrap intervals over the remaining archs.", ""]


def table_same_network(ranks: List[RankRun]) -> List[str]:
    """Archs the supernet computes as one network (the space's `network_key`: on NB201 the same live edges) get one
    score with one code for all, and each its own with a code per arch: the spread of a run's scores inside such
    groups, beside the truth's spread inside them (the benchmark trained each arch on its own). Runs whose arch set
    holds no such group are left out; nothing for spaces without `network_key`."""
    rows = []
    for r in sorted(ranks, key=lambda r: (r.p["dataset"], method_order(r.name), int(r.p["k"]), int(r.p["epochs"]),
                                          int(r.p.get("seed") or 0), r.label)):
        shared = run_network_groups(r)
        if not shared:
            continue
        pr = r.predictions()
        score = np.mean([np.ptp(pr["acc"][g]) for g in shared])
        truth = np.mean([np.ptp(pr["truth"][g]) for g in shared])
        rows.append(f"| {r.p['dataset']} | {r.name} | {r.p['k']} | {r.p['epochs']} | {r.p.get('seed', '')} | "
                    f"{sum(map(len, shared)):,} of {len(pr['key']):,} in {len(shared):,} | {score:.2f} | {truth:.2f} | "
                    f"{r.label} |")
    if not rows:
        return []
    return ["### Archs that are one network in the supernet", "",
            "| dataset | method | K | epochs | seed | archs in groups | score range in a group | truth range in a group "
            "| run |", "|---|---|---|---|---|---|---|---|---|", *rows, "",
            "Archs whose edges differ only where nothing reaches the output (NB201: the same live edges) are the same "
            "network in the supernet. With one code for all (one-shot, fixed codes) they get one score; the "
            "simplex-net gives each arch its own code, so each gets its own score, and their spread (the mean over "
            "groups of the largest minus the smallest top-1 accuracy, in points) is noise the codes add. The truth's "
            "spread inside the same groups is the benchmark's own training noise (each arch trained on its own).", ""]


TOP_N = ("10", "50", "100")


def table_top(ranks: List[RankRun]) -> List[str]:
    """The top of each run's ranking beside the baselines on the same archs: tau among the true top-n archs,
    precision at k (the share of the true top k among the k best scored) and regret, from metrics.json and
    baselines.json."""
    def cells(m: Dict) -> str:
        top, prec = m.get("top_tau", {}), m.get("precision_at_k", {})
        return (f"{' / '.join(fmt(top.get(n), 2) for n in TOP_N)} | {' / '.join(fmt(prec.get(n), 2) for n in TOP_N)} | "
                f"{fmt(m.get('regret'), 2)}")

    runs = [r for r in ranks if r.metrics.get("top_tau")]
    if not runs:
        return []
    # recomputed from predictions.csv where it exists, so that every row follows the current definitions
    # (P@k with ties shared since 2026-12-03); the baselines' scores are recomputed on the same archs
    from kshot_bench.datasets import DATASETS
    from kshot_bench.ground_truth import baseline_scores
    from kshot_bench.metrics import all_metrics
    lines = ["### The top of the ranking", "",
             f"| method | K | epochs | top-n tau, n = {' / '.join(TOP_N)} | P@k, k = {' / '.join(TOP_N)} | regret (accuracy points) | run |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r.p["dataset"], int(r.p["k"]), int(r.p["epochs"]), r.label)):
        lines.append(f"| {r.name} | {r.p['k']} | {r.p['epochs']} | {cells(r.stats() or r.metrics)} | {r.label} |")
    sets = {}
    for r in runs:
        sets.setdefault(r.p.get("arch_set"), r)
    base = {}
    for key, r in sets.items():
        pred = r.predictions()
        if pred is None:
            base[key] = r.baselines
            continue
        space = run_space(r)
        scores = baseline_scores(space, DATASETS.get(r.p["dataset"]), pred["key"], [space.from_key(k) for k in pred["key"]])
        base[key] = {n: {**all_metrics(v, pred["truth"]), "description": d} for n, (v, d) in scores.items()}
    for name in sorted({b for v in base.values() for b in v} - {"random"}):
        for key, r in sets.items():
            b = base[key].get(name)
            if b and b.get("top_tau"):
                lines.append(f"| baseline: {b.get('description', name)} | – | – | {cells(b)} | arch set of {r.label} |")
    return lines + ["", "Top-n tau: Kendall's tau among the n archs that are best in the truth. P@k: the share of the "
                    "true top k among the k archs scored best. Regret: the truth of the best-scored arch below the best "
                    "arch's, in accuracy points (the mean over archs tied at the best score).", ""]


def table_ablation(ranks: List[RankRun], searches: List[SearchRun]) -> List[str]:
    bench = " / ".join(sorted({run_space(r).TRUTH_SOURCE.split(",")[0] for r in ranks}))
    lines = [f"### Tables 5/6 shape: ablation of the K-shot parts (ranking quality on {bench})", "",
             "| # | K-shot | simplex-net | codes | K | epochs | Kendall tau | split tau (n=100) | searched ground truth | runs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    supernet_searches = [s for s in searches if s.result["fitness"] == "supernet"]
    n = 0
    for method in METHOD_ORDER:
        rs_all = [r for r in ranks if r.method == method]
        for (k, neg_epochs, _), rs in sorted(group(rs_all, lambda r: (int(r.p["k"]), -int(r.p["epochs"]),
                                                                         r.rules)).items()):
            n += 1
            code = (rs[0].p["code"] if k > 1 else "[1]") + rs[0].suffix
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


def split_taus(sa: Dict, sb: Dict, n_archs: int) -> List[Tuple[str, str]]:
    """(n, "split tau of A [CI] vs of B [CI]") for n = 10, 50, 100 below the number of archs."""
    return [(n, f"{ci_text(sa['split_tau'][n], sa['ci95']['split_tau'].get(n), 2)} vs "
                f"{ci_text(sb['split_tau'][n], sb['ci95']['split_tau'].get(n), 2)}")
            for n in ("10", "50", "100") if int(n) < n_archs]


def paired_comparisons(ranks: List[RankRun]) -> List[str]:
    """Every K-shot run against the one-shot run it pairs with: the difference in tau with its bootstrap
    interval (joint resamples of the archs), by accuracy and by loss, and the split taus of both."""
    from kshot_bench import metrics as stats

    pairs = [(r, o) for r in ranks if int(r.p["k"]) > 1 for o in ranks
             if int(o.p["k"]) == 1 and r.rules[:2] == o.rules[:2] and paired(r, o)]
    if not pairs:
        return []
    lines = ["### Paired comparisons: K-shot against one-shot on the same archs and images", "",
             "| dataset | method | K | epochs | seed | tau K-shot [95% CI] | tau one-shot [95% CI] | Δtau [95% CI] | "
             "tau by loss: K-shot vs one-shot | Δtau by loss [95% CI] | split tau n=10 / 50 / 100 (K-shot vs one-shot) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for r, o in sorted(pairs, key=lambda ro: (ro[0].p["dataset"], -int(ro[0].p["epochs"]), ro[0].name, int(ro[0].p["k"]),
                                              int(ro[0].p["seed"]))):
        pr = r.predictions()
        sr, so = r.stats(), o.stats()
        d, dl = paired_diffs(r, o)
        splits = [text for _, text in split_taus(sr, so, len(pr["truth"]))]
        lines.append(f"| {r.p['dataset']} | {r.name} | {r.p['k']} | {r.p['epochs']} | {r.p['seed']} | "
                     f"{ci_text(sr['kendall_tau'], sr['ci95']['kendall_tau'])} | "
                     f"{ci_text(so['kendall_tau'], so['ci95']['kendall_tau'])} | "
                     f"{ci_text(d['diff'], (d['ci_lo'], d['ci_hi']))} | {loss_taus(sr, so)} | "
                     f"{ci_text(dl['diff'], (dl['ci_lo'], dl['ci_hi'])) if dl else 'n/a'} | {'; '.join(splits)} |")
        verdicts.append((r, d, dl, o))
    lines += ["", f"Δtau = tau(K-shot) - tau(one-shot), scored {pairs[0][0].score_by} unless stated; intervals over "
              f"{stats.N_BOOT} bootstrap resamples of the archs, the same resamples for both runs.", ""]
    top = max(int(r.p["epochs"]) for r, *_ in verdicts)
    for (method, k), vs in group([v for v in verdicts if int(v[0].p["epochs"]) == top],
                                 lambda v: (v[0].name, int(v[0].p["k"]))).items():
        what, parts = verdict(method, k, [(r, d) for r, d, *_ in vs])
        lines.append(f"- At {top} epochs, {what} ({parts}). Each interval covers the choice of archs "
                     "only, not the training seed.")
        if len(vs) > 1:
            lines.append(f"- {across_seeds(vs)}")
        if all(dl is not None for _, _, dl, _ in vs):
            what, parts = verdict(method, k, [(r, dl) for r, _, dl, _ in vs])
            lines.append(f"- Scored by validation loss instead: {what} ({parts}).")
    # earlier snapshots that already pair on several seeds (a run still in progress on its second seed)
    for (method, k, epochs), vs in sorted(group([v for v in verdicts if int(v[0].p["epochs"]) != top],
                                                lambda v: (v[0].name, int(v[0].p["k"]), int(v[0].p["epochs"]))).items(),
                                          key=lambda kv: -kv[0][2]):
        if len(vs) > 1:
            lines.append(f"- At {epochs} epochs, {method} (K={k}): {across_seeds(vs)}")
    return lines + [""]


def table_score_by(ranks: List[RankRun]) -> List[str]:
    """Each run's ranking by accuracy against its ranking by validation loss, paired on its own archs (both
    scores are in every predictions.csv): which score a supernet should be ranked by is a protocol choice, and
    this is its evidence. Runs whose losses are missing or all equal are left out."""
    from kshot_bench import metrics as stats

    rows = []
    for r in sorted(ranks, key=lambda r: (r.p["dataset"], method_order(r.name), int(r.p["k"]), int(r.p["epochs"]),
                                          int(r.p.get("seed") or 0), r.label)):
        pr = r.predictions()
        if pr is None or not np.isfinite(pr["loss"]).all() or np.ptp(pr["loss"]) == 0:
            continue
        rows.append((r, stats.paired_tau_diff(pr["loss"], pr["acc"], pr["truth"])))
    if not rows:
        return []
    lines = ["### Scored by accuracy or by validation loss", "",
             "| dataset | method | K | epochs | seed | tau by accuracy [95% CI] | tau by loss [95% CI] | "
             "loss minus accuracy [95% CI] | run |", "|---|---|---|---|---|---|---|---|---|"]
    for r, d in rows:
        acc, loss = r.scored("acc"), r.scored("loss")
        lines.append(f"| {r.p['dataset']} | {r.name} | {r.p['k']} | {r.p['epochs']} | {r.p.get('seed', '')} | "
                     f"{ci_text(acc['kendall_tau'], acc['ci95']['kendall_tau'])} | "
                     f"{ci_text(loss['kendall_tau'], loss['ci95']['kendall_tau'])} | "
                     f"{diff_text(d)} | {r.label} |")
    above = sum(d["ci_lo"] > 0 for _, d in rows)
    below = sum(d["ci_hi"] < 0 for _, d in rows)
    return lines + ["", f"The same archs and images scored two ways: top-1 accuracy (the paper's score and the "
                    f"default, `score_by=acc`) and mean cross-entropy (`score_by=loss`, lower is better). Brackets: "
                    f"{stats.N_BOOT:,} bootstrap resamples of the archs, the same for both scores. Loss ranks better "
                    f"in {above} of {len(rows)} runs and worse in {below} (intervals clear of 0).", ""]


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
        parts.append(f"seed {r.p['seed']}: {diff_text(d)}, {side}")
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
             "| K | code | warm-up epoch (s) | K-shot epoch (s) | median K-shot epoch (s) | images/s (warm-up) | "
             "peak memory (MB) | runs |",
             "|---|---|---|---|---|---|---|---|"]
    rows = 0
    longest: Dict[str, RankRun] = {}  # snapshots of one training run share its log: the latest one counts once
    for r in ranks:
        if r.log and len(r.log) > len(longest.get(r.p["config_hash"], RankRun(r.path, {}, {})).log):
            longest[r.p["config_hash"]] = r
    for (k, code, _), rs in sorted(group(list(longest.values()),
                                                lambda r: (int(r.p["k"]), r.p["code"], r.rules)).items()):
        warm = [float(row["time_s"]) for r in rs for row in r.log if row["phase"] == "warmup"]
        kshot = [float(row["time_s"]) for r in rs for row in r.log if row["phase"] != "warmup"]
        ips = [float(row["images_per_s"]) for r in rs for row in r.log if row["phase"] == "warmup"]
        mem = [max(float(row["peak_mem_mb"]) for row in r.log) for r in rs]
        lines.append(f"| {k} | {(code if k > 1 else '–') + rs[0].suffix} | {pm(warm, digits=1)} | {pm(kshot, digits=1)} | "
                     f"{fmt(float(np.median(kshot)), 1) if kshot else 'n/a'} | {pm(ips, digits=0)} | {pm(mem, digits=0)} | "
                     f"{', '.join(r.label for r in rs)} |")
        rows += 1
    if not rows:
        return ["### Table 1 shape", "", "Missing: none of the runs has a training log (train/log.csv); runs scored "
                "from a --checkpoint carry none.", ""]
    machines = sorted({f"{machine_label(r.p['machine'])} ({r.p['machine'].get('device')})" for r in ranks if "machine" in r.p})
    lines += ["", "Time per epoch from the runs' logs (the K-shot phase adds the simplex-net steps; the median is robust "
              "to epochs slowed by other work on the machine or by a restart); peak memory is the "
              f"process's peak RSS on the CPU. Machines: {'; '.join(machines)}. Controlled step-time and memory ratios "
              "against K are in benchmarks/results/k_overhead-*.json.", ""]
    return lines




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
    from kshot_bench.ground_truth import space_truth
    from kshot_bench.search_space import SPACES

    vals = []
    for s in searches:
        space = SPACES.get(s.result.get("space") or DEFAULT_SPACE)
        truth = space_truth(space, s.result.get("truth_column") or space.TRUTH[s.result["dataset"]])
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
    return lines + ["", "Percentile: the share of all archs of the space whose ground truth is below the chosen arch's "
                        "(50 = a typical random arch).", ""]


