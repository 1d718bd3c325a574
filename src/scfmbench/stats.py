"""Paired comparisons over seeds, multiple-testing adjustment, and ranks across datasets.

Every run of a (task, dataset) with the same seed sees the same split (test set, validation
hold-out, folds, masks), so two methods' values on one seed form a *pair*: comparisons are paired
by seed, over the seeds both methods have.

Conventions, defined here once (scipy leaves them undefined or warns):

- **Fewer than 2 paired seeds**: no test; p-values and the interval are NaN and ``note`` says why.
- **Identical on every seed** (every difference exactly 0): p = 1 for both tests and the interval
  is [0, 0]. (scipy's ``ttest_rel`` returns NaN, 0/0, for this case.)
- **The same non-zero difference on every seed** (zero variance): the t statistic is infinite and
  ``ttest_rel``'s p = 0, the limit of the t-test as the noise vanishes; the interval is the point.
  ``note`` flags it, and the Wilcoxon p (which only sees signs and ranks) is the sober number.
- **Wilcoxon signed-rank**: zero differences are dropped (``zero_method="wilcox"``, Wilcoxon's
  original), p from the exact null distribution of the remaining n' differences. The pinned scipy
  (1.17) enumerates that distribution with tied ranks too. Exactness has a floor: with n' non-zero
  differences the smallest two-sided p is 2 / 2**n' (0.25 for 3 seeds, 0.0625 for 5), so with
  fewer than 6 seeds it can never reach 0.05.
- **Holm's step-down adjustment** over the finite p-values of a family; NaN stays NaN and does
  not count in the family size.
- **Ranks** (Demšar 2006): per dataset rank 1 is the best mean, ties get their average rank; the
  Friedman test compares the k methods' ranks over N datasets (blocks), and the Nemenyi critical
  difference is ``q_alpha * sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized range
  quantile over sqrt(2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "PairedResult",
    "critical_difference",
    "friedman",
    "holm",
    "mean_ranks",
    "nemenyi_q",
    "paired_test",
    "pair_by_seed",
]


@dataclass(frozen=True)
class PairedResult:
    """One paired comparison: x - y over ``n`` paired seeds.

    ``mean_diff`` is the mean of x - y; ``ci_low``, ``ci_high`` its t interval; ``t_p`` and
    ``wilcoxon_p`` two-sided p-values; ``note`` empty or the reason a number is missing or degenerate.
    """

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    t_p: float
    wilcoxon_p: float
    note: str = ""


def paired_test(x, y, *, confidence: float = 0.95) -> PairedResult:
    """Paired t-test and exact Wilcoxon signed-rank test of ``x`` against ``y`` (same seed order).

    Pairs where either value is NaN are left out (an undefined metric, e.g. the Pearson of a
    constant prediction). See the module docstring for the degenerate cases.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired_test needs two 1-d arrays of equal length, got shapes {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    d = x - y
    n = len(d)
    nan = math.nan
    if n < 2:
        mean = float(d.mean()) if n else nan
        return PairedResult(
            n,
            mean,
            nan,
            nan,
            nan,
            nan,
            f"{n} paired seed{'s' if n != 1 else ''} with a finite value on both sides: a paired test needs at least 2",
        )
    mean = float(d.mean())
    if np.all(d == 0):
        return PairedResult(n, 0.0, 0.0, 0.0, 1.0, 1.0, "identical on every seed")
    # The Wilcoxon p from the exact distribution of the non-zero differences (module docstring).
    wil = float(stats.wilcoxon(d, zero_method="wilcox", method="exact").pvalue)
    if np.all(d == d[0]):
        return PairedResult(
            n, mean, mean, mean, 0.0, wil, "the same difference on every seed (zero variance): t-test p = 0"
        )
    res = stats.ttest_rel(x, y)
    ci = res.confidence_interval(confidence_level=confidence)
    return PairedResult(n, mean, float(ci.low), float(ci.high), float(res.pvalue), wil)


def pair_by_seed(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, list]:
    """Values of ``a`` and ``b`` (each indexed by seed) on the seeds both have, in seed order."""
    seeds = sorted(set(a.index) & set(b.index))
    return a.loc[seeds].to_numpy(dtype=float), b.loc[seeds].to_numpy(dtype=float), seeds


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order.

    Sorted ascending, p_(i) is multiplied by (m - i + 1), the running maximum makes the sequence
    monotone, and values are capped at 1 (Holm 1979). NaN p-values stay NaN and do not count in the
    family size m. Hand-written rather than statsmodels' ``multipletests(method="holm")`` (which
    agrees): that calls ``gc.collect()`` on every call, about 0.1 s each once torch and scanpy are
    loaded, and the report adjusts hundreds of families.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m:
        order = finite[np.argsort(p[finite], kind="stable")]
        scaled = p[order] * (m - np.arange(m))
        out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def mean_ranks(scores: pd.DataFrame, *, higher_is_better: bool) -> pd.DataFrame:
    """Rank methods within each dataset: ``scores`` has datasets as rows and methods as columns.

    Returns the same shape with rank 1 the best per row (ties get their average rank).
    """
    return scores.rank(axis=1, ascending=not higher_is_better, method="average")


def friedman(scores: pd.DataFrame) -> tuple[float, float, str]:
    """Friedman chi-square and p over ``scores`` (datasets x methods, no missing values).

    Returns (statistic, p, note); NaN with a note when it is undefined: fewer than 3 methods (scipy's
    minimum), fewer than 2 datasets, or every dataset ranking the methods identically tied.
    """
    n, k = scores.shape
    if k < 3:
        return math.nan, math.nan, f"{k} methods: the Friedman test needs at least 3"
    if n < 2:
        return math.nan, math.nan, f"{n} dataset: the Friedman test needs at least 2"
    res = stats.friedmanchisquare(*(scores[c].to_numpy(dtype=float) for c in scores.columns))
    if not np.isfinite(res.pvalue):
        return math.nan, math.nan, "every method tied on every dataset"
    return float(res.statistic), float(res.pvalue), ""


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi's q_alpha for k methods: the studentized range quantile (infinite df) over sqrt(2)
    (Demšar 2006, Table 5a: 1.960, 2.343, 2.569, 2.728 for k = 2..5 at alpha 0.05)."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks: k methods over n datasets (Demšar 2006, eq. 5).
    Two methods whose average ranks differ by at least this are significantly different."""
    if k < 2 or n < 1:
        return math.nan
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n))
