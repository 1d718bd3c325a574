"""scfmbench.stats against hand-worked values: paired tests, the t interval, Holm, Friedman, Nemenyi."""

import math

import numpy as np
import pandas as pd
import pytest

from scfmbench.stats import critical_difference, friedman, holm, mean_ranks, nemenyi_q, pair_by_seed, paired_test

# --- paired tests -------------------------------------------------------------------------------


def test_identical_inputs_give_p_one_not_nan():
    x = np.array([0.71, 0.69, 0.74, 0.70, 0.72])
    r = paired_test(x, x.copy())
    assert (r.n, r.t_p, r.wilcoxon_p) == (5, 1.0, 1.0)
    assert (r.mean_diff, r.ci_low, r.ci_high) == (0.0, 0.0, 0.0)
    assert "identical" in r.note


def test_constant_shift_with_small_noise_gives_a_small_t_p():
    rng = np.random.default_rng(0)
    y = rng.uniform(0.6, 0.8, size=5)
    x = y + 0.05 + rng.normal(0, 1e-3, size=5)
    r = paired_test(x, y)
    assert r.t_p < 1e-5
    assert r.ci_low < 0.05 < r.ci_high and r.ci_low > 0
    # Exact Wilcoxon: all five differences positive is the most extreme outcome, p = 2 / 2**5.
    assert r.wilcoxon_p == pytest.approx(2 / 2**5)
    # With three seeds its floor is 2 / 2**3 = 0.25, however large the shift (docs/statistics.md).
    assert paired_test(x[:3], y[:3]).wilcoxon_p == pytest.approx(0.25)


def test_t_interval_and_p_by_hand():
    # d = (0.1, 0.3, 0.2): mean 0.2, sd 0.1, se 0.1 / sqrt(3); t_{0.975, 2} = 4.302652729749464.
    y = np.array([0.5, 0.5, 0.5])
    r = paired_test(y + [0.1, 0.3, 0.2], y)
    half = 4.302652729749464 * 0.1 / math.sqrt(3)
    assert r.mean_diff == pytest.approx(0.2)
    assert (r.ci_low, r.ci_high) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    # df = 2 has a closed form: two-sided p = 1 - |t| / sqrt(t^2 + 2), t = 0.2 / se = 2 sqrt(3).
    t = 2 * math.sqrt(3)
    assert r.t_p == pytest.approx(1 - t / math.sqrt(t * t + 2))


def test_exact_wilcoxon_with_ties_and_zeros_by_hand():
    y = np.zeros(5)
    # |d| ranks 1.5, 1.5, 3, 4, 5; the negative sum T- = 1.5. Sign patterns (of 32) with T- <= 1.5:
    # none negative, or either 1.5 alone: 3; two-sided p = 6 / 32.
    assert paired_test(np.array([0.1, -0.1, 0.3, 0.4, 0.5]), y).wilcoxon_p == pytest.approx(6 / 32)
    # The zero difference is dropped (Wilcoxon's convention): n' = 4, T- = 1, P(T- <= 1) = 2 / 16.
    assert paired_test(np.array([0.0, -0.1, 0.3, 0.4, 0.5]), y).wilcoxon_p == pytest.approx(2 * 2 / 16)


def test_same_difference_on_every_seed_is_the_t_limit():
    y = np.array([0.5, 0.25, 0.75])
    r = paired_test(y + 0.125, y)  # exact in binary: every difference is exactly 0.125
    assert r.t_p == 0.0 and r.ci_low == r.ci_high == pytest.approx(0.125)
    assert "zero variance" in r.note
    assert r.wilcoxon_p == pytest.approx(0.25)


def test_fewer_than_two_pairs_is_nan_with_a_reason():
    r = paired_test(np.array([0.7]), np.array([0.6]))
    assert r.n == 1 and r.mean_diff == pytest.approx(0.1)
    assert math.isnan(r.t_p) and math.isnan(r.wilcoxon_p) and math.isnan(r.ci_low)
    assert "at least 2" in r.note
    # NaN values (an undefined metric on a seed) leave their pair out.
    r = paired_test(np.array([0.7, np.nan, 0.8]), np.array([0.6, 0.5, np.nan]))
    assert r.n == 1 and "at least 2" in r.note


def test_pairing_uses_only_the_seeds_both_have():
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([10.0, 30.0, 40.0], index=[0, 2, 3])
    x, y, seeds = pair_by_seed(a, b)
    assert seeds == [0, 2] and list(x) == [1.0, 3.0] and list(y) == [10.0, 30.0]


# --- Holm ---------------------------------------------------------------------------------------


def test_holm_by_hand():
    # Sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; made monotone
    # (running maximum): 0.02, 0.03, 0.06, 0.06. Back in input order:
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    # NaN stays NaN and does not count in m.
    np.testing.assert_allclose(holm([0.01, np.nan, 0.04, 0.03, 0.005]), [0.03, np.nan, 0.06, 0.06, 0.02])
    # Capped at 1: 0.5 x 2 = 1.0, then max(1.0, 0.6) = 1.0.
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    assert np.isnan(holm([np.nan])).all() and holm([]).size == 0


# --- ranks, Friedman, Nemenyi -------------------------------------------------------------------


def test_friedman_by_hand():
    scores = pd.DataFrame({"A": [0.9, 0.9, 0.8], "B": [0.8, 0.7, 0.9], "C": [0.7, 0.8, 0.7]}, index=["d1", "d2", "d3"])
    ranks = mean_ranks(scores, higher_is_better=True)
    # Best = 1 per row: A 1, 1, 2; B 2, 3, 1; C 3, 2, 3.
    np.testing.assert_allclose(ranks.mean(), [4 / 3, 2.0, 8 / 3])
    # Rank sums (either direction) 4, 6, 8: chi2 = 12 / (N k (k + 1)) sum R^2 - 3 N (k + 1)
    # = 12 / 36 * 116 - 36 = 8 / 3; with k - 1 = 2 df, p = exp(-chi2 / 2).
    chi2, p, note = friedman(scores)
    assert chi2 == pytest.approx(8 / 3) and p == pytest.approx(math.exp(-4 / 3)) and note == ""
    assert "at least 3" in friedman(scores[["A", "B"]])[2]
    assert "at least 2" in friedman(scores.iloc[:1])[2]
    # Lower-is-better ranks are the mirror image.
    np.testing.assert_allclose(mean_ranks(scores, higher_is_better=False).mean(), [8 / 3, 2.0, 4 / 3])


def test_ties_share_their_average_rank():
    scores = pd.DataFrame({"A": [0.9], "B": [0.9], "C": [0.5]})
    assert list(mean_ranks(scores, higher_is_better=True).iloc[0]) == [1.5, 1.5, 3.0]


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (10, 3.164)])
def test_nemenyi_q_matches_demsar_table(k, q):
    assert nemenyi_q(k, 0.05) == pytest.approx(q, abs=1e-3)


def test_critical_difference_demsar_example():
    # Demšar 2006, section 3.2.4: four methods on 14 datasets, CD = 2.569 sqrt(4 * 5 / (6 * 14)) = 1.25.
    assert critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(20 / 84), abs=1e-3)
    assert round(critical_difference(4, 14), 2) == 1.25
    assert math.isnan(critical_difference(1, 5))


def test_holm_agrees_with_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.3, rng.integers(1, 15))
        np.testing.assert_allclose(holm(p), multitest.multipletests(p, method="holm")[1])
