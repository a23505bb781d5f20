"""Uncertainty of ranking metrics (stats.py) on cases small enough to check by hand."""
import itertools

import numpy as np
import pytest

from kshot_bench import metrics as stats
from kshot_bench.metrics import kendall_tau, ranking_metrics, split_tau


def test_bootstrap_of_a_perfect_ranking_is_a_point():
    t = np.arange(20.0)
    assert stats.tau_bootstrap_ci(t, t) == (1.0, 1.0)       # copies of an arch are tied in both lists
    assert stats.tau_bootstrap_ci(-t, t) == (-1.0, -1.0)
    assert stats.bootstrap_ci(kendall_tau, t, t) == pytest.approx((1.0, 1.0))


def test_resampled_tau_equals_scipy_on_every_resample():
    """All 4^4 resamples of 4 archs (with ties in the scores): the matrix form is Kendall's tau-b."""
    s, t = np.array([1.0, 2.0, 2.0, 3.0]), np.array([0.1, 0.4, 0.3, 0.2])
    idx = np.array(list(itertools.product(range(4), repeat=4)))
    counts = np.zeros((len(idx), 4), dtype=np.int32)
    np.add.at(counts, (np.arange(len(idx))[:, None], idx), 1)
    fast = stats.tau_resampled(s, t, counts)
    slow = np.array([kendall_tau(s[i], t[i]) for i in idx])
    both = np.isfinite(slow)
    assert np.array_equal(np.isfinite(fast), both)
    np.testing.assert_allclose(fast[both], slow[both], atol=1e-6)


def test_fast_and_looped_bootstrap_agree():
    rng = np.random.default_rng(0)
    t = rng.random(150)
    s = np.round(t + rng.normal(0, 0.4, 150), 1)  # ties, as accuracies on few images have
    assert stats.tau_bootstrap_ci(s, t) == pytest.approx(stats.bootstrap_ci(kendall_tau, s, t), abs=1e-9)


def test_null_band_hand_case_and_permutations():
    # n = 4, no ties: var(S) = n(n-1)(2n+5)/18 = 26/3, tau = S/6, so sd = sqrt(26/3)/6
    band = stats.tau_null_band([1, 2, 3, 4], [1, 3, 2, 4])
    sd = np.sqrt(26 / 3) / 6
    assert band["sd"] == pytest.approx(sd) and band["band_hi"] == pytest.approx(1.959964 * sd, rel=1e-5)
    assert band["band_lo"] == -band["band_hi"]
    # with heavy ties the closed form still matches the permutation band of the same scores
    rng = np.random.default_rng(1)
    t = rng.random(300)
    s = np.round(rng.random(300) * 20)  # 21 distinct scores
    closed, perm = stats.tau_null_band(s, t), stats.null_band(kendall_tau, s, t, n_perm=2000)
    assert closed["band_hi"] == pytest.approx(perm["band_hi"], abs=0.01)
    assert closed["band_lo"] == pytest.approx(perm["band_lo"], abs=0.01)
    assert 0.05 < closed["p_value"] and 0.05 < perm["p_value"]  # these scores are noise
    strong = stats.tau_null_band(t + rng.normal(0, 0.1, 300), t)
    assert strong["p_value"] < 1e-10


def test_paired_difference_of_a_run_with_itself_is_exactly_zero():
    rng = np.random.default_rng(2)
    t, s = rng.random(80), rng.random(80)
    d = stats.paired_tau_diff(s, s, t)
    assert (d["diff"], d["ci_lo"], d["ci_hi"]) == (0.0, 0.0, 0.0)
    d = stats.paired_diff(lambda a, b: split_tau(a, b, 10), s, s, t)
    assert (d["diff"], d["ci_lo"], d["ci_hi"]) == (0.0, 0.0, 0.0)


def test_paired_difference_sees_a_better_method():
    rng = np.random.default_rng(3)
    t = rng.random(200)
    good, bad = t + rng.normal(0, 0.1, 200), t + rng.normal(0, 1.0, 200)
    d = stats.paired_tau_diff(good, bad, t)
    assert d["diff"] == pytest.approx(kendall_tau(good, t) - kendall_tau(bad, t))
    assert 0 < d["ci_lo"] < d["diff"] < d["ci_hi"] and d["share_of_resamples_above_0"] == 1.0
    assert stats.paired_tau_diff(good, bad, t) == d  # seeded


def test_interval_over_training_seeds_covers_the_spread_between_seeds():
    """Two-level bootstrap (seeds, then archs): the mean of the per-seed paired differences, an interval that
    reaches across seeds that disagree, exactly 0 for runs equal to their partners, and it needs two seeds."""
    rng = np.random.default_rng(6)
    t = rng.random(150)
    good, bad = t + rng.normal(0, 0.1, 150), t + rng.normal(0, 1.0, 150)
    d = stats.seeds_tau_diff([(good, bad, t), (bad, good, t)])  # seed 1 says the opposite of seed 0
    one = stats.paired_tau_diff(good, bad, t)
    assert d["diff"] == pytest.approx(0.0, abs=1e-12) and d["n_seeds"] == 2
    assert d["ci_lo"] < -0.9 * one["diff"] and d["ci_hi"] > 0.9 * one["diff"]  # wider than either seed's own
    assert d["seed_std"] == pytest.approx(np.sqrt(2) * one["diff"])
    same = stats.seeds_tau_diff([(good, bad, t), (good + 1e-9, bad, t)])
    assert 0 < same["ci_lo"] < same["diff"] < same["ci_hi"] and same["share_of_resamples_above_0"] == 1.0
    zero = stats.seeds_tau_diff([(good, good, t), (bad, bad, t)])
    assert (zero["diff"], zero["ci_lo"], zero["ci_hi"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="two seeds or more"):
        stats.seeds_tau_diff([(good, bad, t)])


def test_ranking_metrics_carry_intervals():
    rng = np.random.default_rng(4)
    t = rng.random(120)
    m = ranking_metrics(t + rng.normal(0, 0.3, 120), t)
    lo, hi = m["ci95"]["kendall_tau"]
    assert lo < m["kendall_tau"] < hi
    assert set(m["ci95"]["split_tau"]) == {"10", "50", "100"}
    assert m["null"]["band_lo"] < 0 < m["null"]["band_hi"] < m["kendall_tau"]


def test_split_tau_intervals_in_one_pass_equal_one_bootstrap_per_split():
    """The shared-resample split-tau intervals are bootstrap_ci's of split_tau at each n, number for number,
    with ties in both lists and an n too large for the archs (NaN interval)."""
    from functools import partial

    rng = np.random.default_rng(7)
    t = np.round(rng.random(300), 2)  # ties in the truth
    s = np.round(t + rng.normal(0, 0.3, 300), 1)  # and in the scores
    ns = ["10", "50", "100", "1000"]
    got = stats.split_tau_bootstrap_cis(s, t, ns, n_boot=200)
    for k in ns:
        want = stats.bootstrap_ci(partial(stats._split_at, n_high=int(k)), s, t, n_boot=200)
        assert got[k] == want or (np.isnan(want).all() and np.isnan(got[k]).all()), k
    assert not np.isnan(got["100"]).any() and np.isnan(got["1000"]).all()
