"""Ranking metrics and their uncertainty: pure maths over score and truth arrays (imports nothing of kshot_bench).

Metrics (scipy where it has them), for scores s and ground truth t over the arch set:
  kendall_tau   Kendall's tau-b (ties in either list handled as tau-b does)
  spearman      Spearman's rho
  split_tau[n]  the paper's split tau (Fig. 5): the true top-n archs form the high group, the rest
                the low group; over all (high, low) pairs, (concordant - discordant) / pairs, a pair
                with equal scores counting as neither. Computed as 2*AUC - 1 (Mann-Whitney, ties 1/2).
  top_tau[n]    Kendall's tau-b among the true top-n archs only
  precision_at_k[k]  |predicted top-k  and  true top-k| / k; archs tied at the k-th best score share the
                places left among them equally (the expected overlap over random tie-breaks), so a score with
                few distinct values (a layer count) is not credited or blamed for the order of the arch list
  regret        best true accuracy in the set minus the true accuracy of the predicted best
                (the mean over archs tied at the top score)
Ties in t at a group boundary are broken by position in the set (a seeded order for sampled sets; score files
are put in key order first, so that no figure depends on the order in which a file lists its archs).

Undefined figures: Kendall's tau-b, Spearman and a top-n tau are undefined when either list is constant (all
scores equal: an untrained supernet, or a handful of archs on few images), and so is a split tau when every score
is equal. They are NaN here (null in metrics.json), `undefined` gives the reason for each, and nothing that
reads them (summaries, reports, `compare`) makes a claim from an undefined figure. `ties` counts tied scores.

Uncertainty: bootstrap intervals, the null band of random scores, paired differences.

A Kendall's tau over a few hundred archs moves by several hundredths between arch samples, and a single
random-score draw can land at +-0.1 (SPEC 5a); a number without its spread says little. Three tools:

  bootstrap_ci     percentile interval of a metric over `n_boot` resamples of the archs (with
                   replacement; scores and truth resampled together). Seeded: the same call gives the
                   same interval.
  null_band        the metric for scores that carry no information about the truth, on the same archs:
                   the observed scores permuted at random (`n_perm` times; a permutation keeps their
                   ties, which accuracy on a finite image set has many of). Its central 95% band, and
                   the two-sided permutation p-value (1 + #{|null| >= |observed|}) / (1 + n_perm).
  tau_null_band    the same for Kendall's tau-b in closed form: under independence S = nc - nd has mean 0
                   and Kendall's tie-corrected variance, and is close to normal for n >= 30 (tests
                   check it against the permutation band); so the band is +-1.96 sd and the p-value
                   two-sided normal. Instant, where 1,000 permutations cost about a second.
  tau_bootstrap_ci Kendall's tau-b over bootstrap resamples without a loop for n <= 400: with the
                   pair-sign matrices Sx, Sy of the n archs and the resample's counts c per arch,
                   nc - nd = c'(Sx*Sy)c / 2 and the untied pairs are c'|Sx|c / 2 and c'|Sy|c / 2
                   (copies of one arch are tied pairs), so all resamples are three matrix products.
  paired_diff      metric(A) - metric(B) for two score lists on the same archs (two methods scored on
                   the same archs and images), with the percentile interval of the difference over
                   joint resamples of the archs; the difference of a run with itself is exactly 0.
Resamples are index arrays drawn once per call from `numpy.random.default_rng(seed)`.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

SPLIT_NS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
PRECISION_KS = (5, 10, 20, 50, 100)


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
    return _split_from_rank_sum(ranks[high].sum(), n_high, len(s))


def _split_from_rank_sum(rank_sum: float, n_high: int, n: int) -> float:
    """Split tau from the score-rank sum of the n_high best archs in the truth: 2 U / (n_high n_low) - 1, with
    U = rank_sum - n_high (n_high + 1) / 2 the Mann-Whitney count of (high, low) pairs scored in the right order."""
    return float(2 * (rank_sum - n_high * (n_high + 1) / 2) / (n_high * (n - n_high)) - 1)


def top_tau(scores: Sequence[float], truth: Sequence[float], n: int) -> float:
    idx = _true_order(np.asarray(truth))[:n]
    return kendall_tau(np.asarray(scores)[idx], np.asarray(truth)[idx])


def precision_at_k(scores: Sequence[float], truth: Sequence[float], k: int) -> float:
    s = np.asarray(scores, dtype=np.float64)
    kth = np.sort(s)[::-1][k - 1]
    above, tied = s > kth, s == kth
    share = above + tied * ((k - above.sum()) / tied.sum())  # the k places: whole for those above, shared at the tie
    return float(share[_true_order(np.asarray(truth))[:k]].sum() / k)


def constant_reason(values: np.ndarray, what: str) -> Optional[str]:
    """Why a rank correlation over `values` is undefined (they are all equal), or None."""
    return f"all {len(values):,} {what} are equal" if len(values) and np.all(values == values[0]) else None


def undefined_reasons(s: np.ndarray, t: np.ndarray, m: Dict) -> Dict:
    """The reason each undefined figure of `m` (from `all_metrics`) is undefined; only those that are."""
    whole = constant_reason(s, "scores") or constant_reason(t, "true accuracies")
    out: Dict = {}
    if whole:
        out["kendall_tau"] = out["spearman"] = whole
    if constant_reason(s, "scores"):
        out["split_tau"] = {k: constant_reason(s, "scores") for k in m["split_tau"]}
    top = {}
    order = _true_order(t)
    for k in m["top_tau"]:
        idx = order[: int(k)]
        why = constant_reason(s[idx], f"scores of the true top {k}") or constant_reason(t[idx], f"true accuracies of the top {k}")
        if why:
            top[k] = why
    if top:
        out["top_tau"] = top
    return out


def tie_counts(scores: Sequence[float]) -> Dict[str, int]:
    """How many archs share their score with another, and how many distinct scores there are."""
    s = np.asarray(scores, dtype=np.float64)
    _, counts = np.unique(s, return_counts=True)
    return {"n_archs": int(len(s)), "distinct_scores": int(len(counts)), "tied_archs": int(counts[counts > 1].sum())}


def regret(scores: Sequence[float], truth: Sequence[float]) -> float:
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return float(t.max() - t[s == s.max()].mean())


def all_metrics(scores: Sequence[float], truth: Sequence[float]) -> Dict:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    n = len(s)
    if n < 3:
        raise ValueError(f"ranking needs at least 3 archs, got {n}")
    ns = [k for k in SPLIT_NS if k < n] or [n // 2]
    constant = constant_reason(s, "scores") is not None
    m = {
        "kendall_tau": kendall_tau(s, t),
        "spearman": spearman(s, t),
        "split_tau": {str(k): float("nan") if constant else split_tau(s, t, k) for k in ns},
        "top_tau": {str(k): top_tau(s, t, k) for k in ns if k >= 3},
        # P@k where it can fail: at k = n every arch is in both top-k sets
        "precision_at_k": {str(k): precision_at_k(s, t, k) for k in PRECISION_KS if k < n},
        "regret": regret(s, t),
        "n_archs": n,
        "ties": tie_counts(s),
    }
    undefined = undefined_reasons(s, t, m)
    if undefined:
        m["undefined"] = undefined
    return m


def ranking_metrics(scores: Sequence[float], truth: Sequence[float], null: bool = True) -> Dict:
    """`all_metrics` plus their uncertainty (below): bootstrap 95% intervals of Kendall's tau,
    Spearman and every split tau, and (with `null`) the permutation null band of tau and its p-value."""
    m = all_metrics(scores, truth)
    m["ci95"] = {"kendall_tau": tau_bootstrap_ci(scores, truth),
                 "split_tau": split_tau_bootstrap_cis(scores, truth, [k for k in CI_SPLIT_NS if k in m["split_tau"]])}
    undefined = m.get("undefined", {})
    nan = (float("nan"), float("nan"))
    if "kendall_tau" in undefined:
        m["ci95"]["kendall_tau"] = nan
    for k in undefined.get("split_tau", {}):
        if k in m["ci95"]["split_tau"]:
            m["ci95"]["split_tau"][k] = nan
    if null:
        m["null"] = tau_null_band(scores, truth)
    m["uncertainty"] = (f"95% percentile intervals over {N_BOOT} bootstrap resamples of the archs (seed "
                        f"{STATS_SEED})" + ("; null band: tau-b of scores independent of the truth, Kendall's "
                                                  "tie-corrected variance (normal approximation)" if null else ""))
    return m


CI_SPLIT_NS = ("10", "50", "100", "1000")


def _split_at(scores, truth, n_high: int) -> float:
    return split_tau(scores, truth, n_high) if 0 < n_high < len(scores) else float("nan")


def aggregate(runs: List[Dict]) -> Dict:
    """Mean and sample std (ddof=1; 0 for one run) of every metric over runs, nested keys kept."""
    out: Dict = {}
    for key, value in runs[0].items():
        if key in ("ties", "undefined"):  # counts and reasons of one run, not figures to average
            continue
        if isinstance(value, dict):
            common = [k for k in value if all(k in r.get(key, {}) for r in runs)]
            out[key] = {k: aggregate([{"v": r[key][k]} for r in runs])["v"] for k in common}
        elif isinstance(value, (int, float)):
            vals = np.array([r[key] for r in runs], dtype=np.float64)
            out[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                        "n": len(vals), "values": vals.tolist()}
    return out



# ----------------------------------------------------------------------------- uncertainty
N_BOOT = 1000
N_PERM = 1000
STATS_SEED = 0

Metric = Callable[[np.ndarray, np.ndarray], float]


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 17]).integers(0, n, size=(n_boot, n))


def _interval(values: np.ndarray, level: float = 0.95) -> Tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(metric: Metric, scores: Sequence[float], truth: Sequence[float], n_boot: int = N_BOOT,
                 seed: int = STATS_SEED, level: float = 0.95) -> Tuple[float, float]:
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    vals = np.array([metric(s[i], t[i]) for i in _resamples(len(s), n_boot, seed)])
    return _interval(vals, level)


def split_tau_bootstrap_cis(scores: Sequence[float], truth: Sequence[float], ns: Sequence[str], n_boot: int = N_BOOT,
                            seed: int = STATS_SEED, level: float = 0.95) -> Dict[str, Tuple[float, float]]:
    """`bootstrap_ci` of `split_tau` at every n in `ns` (the same resamples): each resample's true order and
    score ranks are computed once for all n, so the numbers are `bootstrap_ci(partial(_split_at, n_high=n))`'s
    at a fraction of the time (all 15,625 NB201 archs: one sort per resample instead of one per n)."""
    from scipy.stats import rankdata

    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    highs = [int(k) for k in ns]
    vals = np.full((len(highs), n_boot), np.nan)
    for b, i in enumerate(_resamples(len(s), n_boot, seed)):
        order, ranks = _true_order(t[i]), rankdata(s[i])
        top = np.cumsum(ranks[order])  # the rank sum of the n best in the truth, for every n
        for j, h in enumerate(highs):
            if 0 < h < len(s):
                vals[j, b] = _split_from_rank_sum(top[h - 1], h, len(s))
    return {k: _interval(vals[j], level) for j, k in enumerate(ns)}


def null_band(metric: Metric, scores: Sequence[float], truth: Sequence[float], n_perm: int = N_PERM,
              seed: int = STATS_SEED, level: float = 0.95) -> Dict[str, float]:
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    rng = np.random.default_rng([seed, 23])
    null = np.array([metric(rng.permutation(s), t) for _ in range(n_perm)])
    observed = metric(s, t)
    finite = null[np.isfinite(null)]
    p = (1 + int(np.sum(np.abs(finite) >= abs(observed) - 1e-12))) / (1 + len(finite)) if np.isfinite(observed) else float("nan")
    lo, hi = _interval(null, level)
    return {"band_lo": lo, "band_hi": hi, "p_value": float(p), "n_perm": n_perm}


def _pair_signs(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    r = rankdata(v)  # ranks: the same signs, and -inf scores (naswot has some) compare without inf - inf
    return np.sign(r[:, None] - r[None, :]).astype(np.float32)


def tau_resampled(scores: np.ndarray, truth: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every resample given by `counts` ([B, n]: how often each arch is drawn)."""
    sx, sy = _pair_signs(scores), _pair_signs(truth)
    c = counts.astype(np.float32)
    num = np.einsum("bi,bi->b", c @ (sx * sy), c, dtype=np.float64)
    dx = np.einsum("bi,bi->b", c @ np.abs(sx), c, dtype=np.float64)
    dy = np.einsum("bi,bi->b", c @ np.abs(sy), c, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / np.sqrt(dx * dy)


FAST_TAU_MAX_N = 400  # beyond, B*n^2 products cost more than B calls of scipy's O(n log n) tau


def tau_bootstrap_ci(scores: Sequence[float], truth: Sequence[float], n_boot: int = N_BOOT, seed: int = STATS_SEED,
                     level: float = 0.95) -> Tuple[float, float]:
    """`bootstrap_ci` of Kendall's tau-b (same resamples), three matrix products for small n."""
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    n = len(s)
    if n > FAST_TAU_MAX_N:
        return bootstrap_ci(kendall_tau, s, t, n_boot, seed, level)
    idx = _resamples(n, n_boot, seed)
    counts = np.zeros((n_boot, n), dtype=np.int32)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1)
    vals = np.concatenate([tau_resampled(s, t, counts[i:i + 250]) for i in range(0, n_boot, 250)])
    return _interval(vals, level)


def _tie_sums(v: np.ndarray) -> Tuple[float, float, float, float]:
    _, t = np.unique(v, return_counts=True)
    t = t.astype(np.float64)
    return (float((t * (t - 1) / 2).sum()), float((t * (t - 1) * (2 * t + 5)).sum()),
            float((t * (t - 1) * (t - 2)).sum()), float((t * (t - 1)).sum()))


def tau_null_band(scores: Sequence[float], truth: Sequence[float], level: float = 0.95) -> Dict[str, float]:
    """Null band and p-value of Kendall's tau-b for scores independent of the truth (closed form)."""
    from scipy.stats import norm

    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    n = float(len(s))
    n0 = n * (n - 1) / 2
    x1, x2, x3, x4 = _tie_sums(s)
    y1, y2, y3, y4 = _tie_sums(t)
    var_s = ((n * (n - 1) * (2 * n + 5) - x2 - y2) / 18 + x3 * y3 / (9 * n * (n - 1) * (n - 2))
             + x4 * y4 / (2 * n * (n - 1)))
    denom = np.sqrt((n0 - x1) * (n0 - y1))
    observed = kendall_tau(s, t)
    if denom == 0 or var_s <= 0 or not np.isfinite(observed):
        return {"band_lo": float("nan"), "band_hi": float("nan"), "p_value": float("nan"), "method": "closed form"}
    sd = np.sqrt(var_s) / denom
    z = norm.ppf((1 + level) / 2)
    return {"band_lo": float(-z * sd), "band_hi": float(z * sd), "p_value": float(2 * norm.sf(abs(observed) / sd)),
            "sd": float(sd), "method": "closed form: Kendall's tie-corrected variance of S, normal approximation"}


def paired_tau_diff(scores_a: Sequence[float], scores_b: Sequence[float], truth: Sequence[float], n_boot: int = N_BOOT,
                    seed: int = STATS_SEED, level: float = 0.95) -> Dict[str, float]:
    """`paired_diff` of Kendall's tau-b, with the fast resampled tau (same resamples for A and B)."""
    diff, boots = _paired_tau_boots(scores_a, scores_b, truth, n_boot, seed)
    lo, hi = _interval(boots, level)
    return {"diff": diff, "ci_lo": lo, "ci_hi": hi, "n_boot": n_boot,
            "share_of_resamples_above_0": float(np.mean(boots > 0))}


def _paired_tau_boots(scores_a, scores_b, truth, n_boot: int, seed: int) -> Tuple[float, np.ndarray]:
    """tau(A) - tau(B) and its value on each of `n_boot` joint resamples of the archs."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    n = len(t)
    if not len(a) == len(b) == n:
        raise ValueError("paired comparison needs scores of the same archs")
    diff = float(kendall_tau(a, t) - kendall_tau(b, t))
    idx = _resamples(n, n_boot, seed)
    if n > FAST_TAU_MAX_N:
        return diff, np.array([kendall_tau(a[i], t[i]) - kendall_tau(b[i], t[i]) for i in idx])
    counts = np.zeros((n_boot, n), dtype=np.int32)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1)
    return diff, np.concatenate([tau_resampled(a, t, counts[i:i + 250]) - tau_resampled(b, t, counts[i:i + 250])
                                 for i in range(0, n_boot, 250)])


def seeds_tau_diff(pairs: Sequence[Tuple[Sequence[float], Sequence[float], Sequence[float]]], n_boot: int = N_BOOT,
                   seed: int = STATS_SEED, level: float = 0.95) -> Dict[str, float]:
    """The mean over training seeds of tau(A) - tau(B), one (scores A, scores B, truth) per seed, with an interval
    that covers the choice of training seed as well as of the archs: a two-level bootstrap (draw the seeds with
    replacement, then for each drawn seed a joint resample of its archs; take the mean). With few seeds the
    seed level can only show the spread between the seeds at hand, so the interval is narrower than the
    truth would be: read it beside the per-seed differences and their number."""
    if len(pairs) < 2:
        raise ValueError("an interval over training seeds needs the paired runs of two seeds or more")
    per_seed = [_paired_tau_boots(a, b, t, n_boot, seed + i) for i, (a, b, t) in enumerate(pairs)]
    diffs = np.array([d for d, _ in per_seed])
    boots = np.stack([bs for _, bs in per_seed])  # [seeds, n_boot]
    rng = np.random.default_rng([seed, 29])
    drawn = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))
    column = rng.integers(0, n_boot, size=(n_boot, len(pairs)))
    means = boots[drawn, column].mean(axis=1)
    lo, hi = _interval(means, level)
    return {"diff": float(diffs.mean()), "ci_lo": lo, "ci_hi": hi, "n_seeds": len(pairs), "n_boot": n_boot,
            "seed_std": float(diffs.std(ddof=1)), "share_of_resamples_above_0": float(np.mean(means > 0))}


def paired_diff(metric: Metric, scores_a: Sequence[float], scores_b: Sequence[float], truth: Sequence[float],
                n_boot: int = N_BOOT, seed: int = STATS_SEED, level: float = 0.95) -> Dict[str, float]:
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if not len(a) == len(b) == len(t):
        raise ValueError("paired comparison needs scores of the same archs")
    diff = metric(a, t) - metric(b, t)
    boots = np.array([metric(a[i], t[i]) - metric(b[i], t[i]) for i in _resamples(len(t), n_boot, seed)])
    lo, hi = _interval(boots, level)
    return {"diff": float(diff), "ci_lo": lo, "ci_hi": hi, "n_boot": n_boot,
            "share_of_resamples_above_0": float(np.mean(boots > 0))}
