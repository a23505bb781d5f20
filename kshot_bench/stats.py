"""Uncertainty of ranking metrics: bootstrap intervals, the null band of random scores, paired differences.

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

from typing import Callable, Dict, Sequence, Tuple

import numpy as np

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
    from kshot_bench.rank import kendall_tau

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

    from kshot_bench.rank import kendall_tau

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
    from kshot_bench.rank import kendall_tau

    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    n = len(t)
    if not len(a) == len(b) == n:
        raise ValueError("paired comparison needs scores of the same archs")
    if n > FAST_TAU_MAX_N:
        return paired_diff(kendall_tau, a, b, t, n_boot, seed, level)
    idx = _resamples(n, n_boot, seed)
    counts = np.zeros((n_boot, n), dtype=np.int32)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1)
    boots = np.concatenate([tau_resampled(a, t, counts[i:i + 250]) - tau_resampled(b, t, counts[i:i + 250])
                            for i in range(0, n_boot, 250)])
    lo, hi = _interval(boots, level)
    return {"diff": float(kendall_tau(a, t) - kendall_tau(b, t)), "ci_lo": lo, "ci_hi": hi, "n_boot": n_boot,
            "share_of_resamples_above_0": float(np.mean(boots > 0))}


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
