"""Report tables of training rules: the same supernet (method, K, code, seed, budget, arch set and images) trained
under another rule than the paper's or the default, paired on the same archs. One table per rule:
  sampling        ENN-balanced (or other) paths against uniform ones (issue 25);
  offpath_update  `decay` (every used weight decays and keeps its momentum each step) against `none` (issue 44);
  simplex_variant a named simplex-net training variant against the earlier CPU presets' (`cpu`, issue 45).
Every other rule must be the same for two runs to pair. Also the paired difference of two runs and its text, which
the other report tables share."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from kshot_bench.report_runs import RankRun, ci_text, method_order, paired, rules_label

# rule -> (index in RankRun.rules, the value the others are compared against, heading, column of the others)
RULES = {
    "sampling": (0, "uniform", "Sampling: the same supernet trained on other paths than uniform ones", "sampling"),
    "offpath_update": (1, "none", "Off-path update: weights off the sampled path decayed every step (`decay`) "
                                  "against left untouched (`none`)", "off-path"),
    "simplex_variant": (2, "cpu", "Simplex-net variants against the earlier CPU presets' "
                                  "(`cpu`: 16 paths every 4th step)", "variant"),
}


def paired_diffs(a: RankRun, b: RankRun) -> Tuple[Dict, Optional[Dict]]:
    """tau(a) - tau(b) on their common archs (`paired`), each run scored its own way, with the bootstrap interval
    of metrics.paired_tau_diff; and the same by validation loss (None when either run lacks losses)."""
    from kshot_bench import metrics as stats

    pa, pb = a.predictions(), b.predictions()
    d = stats.paired_tau_diff(pa[a.score_by], pb[b.score_by], pa["truth"])
    by_loss = np.isfinite(pa["loss"]).all() and np.isfinite(pb["loss"]).all()
    return d, stats.paired_tau_diff(pa["loss"], pb["loss"], pa["truth"]) if by_loss else None


def diff_text(d: Dict) -> str:
    """A paired difference (metrics.paired_tau_diff) as '+0.123 [+0.100, +0.150]'; `undefined` where a tau is."""
    return f"{d['diff']:+.3f} [{d['ci_lo']:+.3f}, {d['ci_hi']:+.3f}]" if np.isfinite(d["diff"]) else "undefined"


def across_seeds(vs: List) -> str:
    """The mean paired difference over the training seeds of `vs` ((K-shot run, diff, diff by loss, one-shot run)
    per seed) with its two-level bootstrap interval (seeds, then archs), as a sentence."""
    from kshot_bench import metrics as stats

    pairs = []
    for r, _, _, o in vs:
        pr, po = r.predictions(), o.predictions()
        pairs.append((pr[r.score_by], po[o.score_by], pr["truth"]))
    d = stats.seeds_tau_diff(pairs)
    if not np.isfinite(d["diff"]):
        return (f"Across the {d['n_seeds']} training seeds: undefined (a run gave every arch the same score), so no "
                "difference is claimed.")
    side = "contains 0" if d["ci_lo"] <= 0 <= d["ci_hi"] else ("above 0" if d["diff"] > 0 else "below 0")
    return (f"Across the {d['n_seeds']} training seeds: mean Δtau {d['diff']:+.3f} [{d['ci_lo']:+.3f}, "
            f"{d['ci_hi']:+.3f}], {side} (std between seeds {d['seed_std']:.3f}). The interval resamples the "
            f"seeds, then the archs within each; with {d['n_seeds']} seeds it can only show the spread of the "
            "seeds at hand, so it is a lower bound on the uncertainty over training seeds.")


def a_value(vs: List, i: int) -> str:
    return vs[0][0].rules[i]


def rule_tables(ranks: List[RankRun]) -> List[str]:
    return [line for rule in RULES for line in table_rule(ranks, rule)]


def table_rule(ranks: List[RankRun], rule: str) -> List[str]:
    """Runs that differ only in `rule` (RULES): each run under another value against the base value's run of the
    same method, K, code, seed and budget, scored on the same archs and images. The difference in tau with its
    bootstrap interval (joint resamples of the archs), by accuracy and by loss."""
    from kshot_bench import metrics as stats

    i, base, heading, column = RULES[rule]

    def others(r: RankRun) -> tuple:
        return r.rules[:i] + r.rules[i + 1:]

    pairs = [(a, b) for a in ranks if a.rules[i] not in (base, "") for b in ranks
             if b.rules[i] == base and (a.p["k"], a.p["code"]) == (b.p["k"], b.p["code"]) and others(a) == others(b)
             and paired(a, b)]
    if not pairs:
        return []
    lines = [f"### {heading}", "",
             f"| dataset | method | K | epochs | seed | {column} | tau [95% CI] | tau, {base} [95% CI] | "
             "Δtau [95% CI] | Δtau by loss [95% CI] |", "|---|---|---|---|---|---|---|---|---|---|"]
    for a, b in sorted(pairs, key=lambda ab: (ab[0].p["dataset"], method_order(ab[0].method), int(ab[0].p["k"]),
                                              ab[0].rules[i], -int(ab[0].p["epochs"]), int(ab[0].p["seed"]))):
        sa, sb = a.stats(), b.stats()
        d, dl = paired_diffs(a, b)
        name = a.method + ("" if i == 0 else a.paths) + rules_label("none" if i == 1 else a.offpath,
                                                                  "" if i == 2 else a.variant, a.score_code)
        lines.append(f"| {a.p['dataset']} | {name} | {a.p['k']} | {a.p['epochs']} | {a.p['seed']} | {a.rules[i]} | "
                     f"{ci_text(sa['kendall_tau'], sa['ci95']['kendall_tau'])} | "
                     f"{ci_text(sb['kendall_tau'], sb['ci95']['kendall_tau'])} | "
                     f"{diff_text(d)} | {diff_text(dl) if dl else 'n/a'} |")
    by_epochs: Dict[tuple, List] = {}
    for a, b in pairs:
        by_epochs.setdefault((a.name, int(a.p["epochs"])), []).append((a, None, None, b))
    seeds = [f"- {name}, {epochs} epochs, {a_value(vs, i)} minus {base}: {across_seeds(vs)}"
             for (name, epochs), vs in sorted(by_epochs.items(), key=lambda kv: (kv[0][0], -kv[0][1])) if len(vs) > 1]
    lines += [""] + seeds if seeds else []
    return lines + ["", f"Δtau = tau({column}) - tau({base}), scored {pairs[0][0].score_by} unless stated; "
                    f"intervals over {stats.N_BOOT} bootstrap resamples of the archs, the same resamples for both runs. "
                    "They cover the choice of archs only, not the training seed.", ""]


DIAGNOSTICS = (("train_loss", "train loss", 3), ("simplex_loss", "simplex-net loss", 3), ("code_entropy", "code entropy", 3),
               ("code_spread", "code spread", 3), ("copy_spread_ops", "copy spread, ops", 3),
               ("copy_spread_trunk", "copy spread, trunk", 3), ("w_rms_ops", "weight RMS, ops", 3),
               ("w_rms_trunk", "weight RMS, trunk", 3))


def table_diagnostics(ranks: List[RankRun]) -> List[str]:
    """How each training run's codes and weights developed (issue 45): from its log (one row per epoch, the
    longest log of each training run), at the end of warm-up, at each quarter of the rest and at the end. Logs
    written before the weight diagnostics existed are left out."""
    from kshot_bench.results import fmt

    longest: Dict[str, RankRun] = {}  # snapshots of one training run share its log: the longest one speaks for it
    for r in ranks:
        held = longest.get(r.p["config_hash"])
        if r.log and "w_rms_ops" in r.log[0] and (held is None or len(r.log) > len(held.log)):
            longest[r.p["config_hash"]] = r
    if not longest:
        return []
    lines = ["### Training diagnostics: codes, copies and weights over the epochs", "",
             "| run | K | epoch | phase | " + " | ".join(head for _, head, _ in DIAGNOSTICS) + " |",
             "|---|---|---|---|" + "---|" * len(DIAGNOSTICS)]
    for r in sorted(longest.values(), key=lambda r: (r.name, int(r.p["seed"]))):
        log = r.log
        warm = [i for i, row in enumerate(log) if row["phase"] == "warmup"]
        start = warm[-1] if warm else 0
        picks = sorted({start, *(start + round(q * (len(log) - 1 - start) / 4) for q in (1, 2, 3, 4))})
        for i in picks:
            row = log[i]
            cells = [fmt(float(row[key]), d) if row.get(key) not in (None, "") and not (int(r.p["k"]) == 1 and "code" in key)
                     else "–" for key, _, d in DIAGNOSTICS]
            lines.append(f"| {r.name}, seed {r.p['seed']} | {r.p['k']} | {row['epoch']} | {row['phase']} | "
                         + " | ".join(cells) + " |")
    return lines + ["", "code entropy: mean entropy of a code relative to log K (1 = uniform, every copy alike); code "
                    "spread: mean total-variation distance between two archs' codes (0 = every arch the same code); copy "
                    "spread: mean over weight tensors of ||theta_k - mean|| / ||mean|| (0 = identical copies, which give the "
                    "simplex-net no gradient); weight RMS: of the mean copy's conv and linear weights (under BN their "
                    "effective step scales as lr / RMS^2). Simplex-net loss: the mean over its paths of a separate step, "
                    "or the supernet step's loss of a joint step.", ""]
