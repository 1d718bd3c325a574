"""GEARS' perturbation metrics (``gears/inference.py``: ``compute_metrics``, ``deeper_analysis``,
``non_dropout_analysis``, ``non_zero_analysis``), per condition then averaged.

Per test condition, with ``pred`` and ``true`` the mean over the condition's cells of the
prediction and of X, and ``ctrl`` the mean of X over every control cell of the dataset:

==================================  ========================================================
``pearson``, ``mse``                all genes, pred vs true
``pearson_de``, ``mse_de``          the top 20 of ``uns['rank_genes_groups_cov_all']``
``pearson_delta``                   all genes, pred - ctrl vs true - ctrl
``pearson_delta_de``                the same on the top 20 DE genes
``*_top20_de_non_dropout``          ``pearson_delta_``, ``pearson_``, ``mse_`` on
                                    ``uns['top_non_dropout_de_20']``
``*_top20_de_non_zero``             the same on ``uns['top_non_zero_de_20']``
==================================  ========================================================

A Pearson correlation that is undefined (an exactly constant side, e.g. ``no_change``'s delta of
exactly 0: its prediction is the float64 control mean computed here, :func:`~scfmbench.perturbation.data.control_mean`)
counts as 0, as in GEARS; there is no tolerance, so a near-constant side gets its (noisy) r, as in GEARS. Each metric is
the mean over conditions, overall (``all``) and per test subgroup. Plain ``pearson`` is ~0.99 for any predictor (every
condition shares the control's profile): the delta metrics lead every table.

Metrics records (task ``perturbation``) name the subgroup in the metric: ``<metric>:<subgroup>``,
e.g. ``pearson_delta:combo_seen1`` and ``pearson_delta:all``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scfmbench import InputError
from scfmbench.metrics import mse, pearson

#: Delta metrics first: they are the ones that tell predictors apart.
DELTA_METRICS = (
    "pearson_delta",
    "pearson_delta_de",
    "pearson_delta_top20_de_non_dropout",
    "pearson_delta_top20_de_non_zero",
)
METRICS = DELTA_METRICS + (
    "pearson",
    "pearson_de",
    "mse",
    "mse_de",
    "pearson_top20_de_non_dropout",
    "mse_top20_de_non_dropout",
    "pearson_top20_de_non_zero",
    "mse_top20_de_non_zero",
)
ALL = "all"
SEP = ":"


def _pearsonr(a, b) -> float:
    """``scipy.stats.pearsonr(a, b)[0]`` as GEARS calls it: NaN when a side is exactly constant
    (scipy tests ``(x == x[0]).all()``), else Pearson's r in float64. A near-constant side is not
    constant: it gets r, however noisy (as GEARS)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not len(a) or (a == a[0]).all() or (b == b[0]).all():
        return float("nan")
    return pearson(a, b)


def _r(a, b) -> float:
    """GEARS' metric value: a NaN Pearson (a constant side, e.g. ``no_change``'s delta of exactly 0)
    counts as 0 (``inference.py``: ``if np.isnan(val): val = 0``)."""
    r = _pearsonr(a, b)
    return 0.0 if np.isnan(r) else r


def condition_metrics(
    pred: np.ndarray,
    true: np.ndarray,
    ctrl: np.ndarray,
    *,
    de: np.ndarray,
    non_dropout: np.ndarray,
    non_zero: np.ndarray,
) -> dict[str, float]:
    """Every metric of one condition (module docstring); ``de``, ``non_dropout``, ``non_zero`` are
    gene indices (the top-20 lists)."""
    dp, dt = pred - ctrl, true - ctrl
    out = {
        "pearson": _r(pred, true), "mse": mse(true, pred),
        "pearson_de": _r(pred[de], true[de]), "mse_de": mse(true[de], pred[de]),
        "pearson_delta": _r(dp, dt), "pearson_delta_de": _r(dp[de], dt[de]),
    }  # fmt: skip
    for name, idx in (("non_dropout", non_dropout), ("non_zero", non_zero)):
        out[f"pearson_delta_top20_de_{name}"] = _r(dp[idx], dt[idx])
        out[f"pearson_top20_de_{name}"] = _r(pred[idx], true[idx])
        out[f"mse_top20_de_{name}"] = mse(dt[idx], dp[idx])  # GEARS: on deltas (the same as on values)
    return out


def _gene_index(adata, key: str, name: str, index: dict[str, int], n: int | None = None) -> np.ndarray:
    genes = list(adata.uns[key][name])[:n]
    missing = [g for g in genes if g not in index]
    if missing:
        raise InputError(f"uns[{key!r}][{name!r}] lists genes not in var_names: {missing[:5]}")
    return np.array([index[g] for g in genes], dtype=np.int64)


def perturbation_scores(adata, conditions, pred_means: np.ndarray, subgroup: dict[str, str]) -> pd.DataFrame:
    """Per-condition metrics of predicted mean profiles ``pred_means`` (C, G), one row per condition
    with its ``subgroup``, against the dataset's X (module docstring)."""
    from scfmbench.perturbation.data import condition_means, control_mean

    conditions = [str(c) for c in conditions]
    pred_means = np.asarray(pred_means, dtype=np.float64)
    if pred_means.shape != (len(conditions), adata.n_vars):
        raise InputError(
            f"predictions have shape {pred_means.shape}; expected ({len(conditions)} conditions, {adata.n_vars} genes)"
        )
    names, means = condition_means(adata)
    row = {c: i for i, c in enumerate(names)}
    ctrl = control_mean(adata)
    to_name = dict(zip(adata.obs["condition"].astype(str), adata.obs["condition_name"].astype(str)))
    index = {g: i for i, g in enumerate(adata.var_names.astype(str))}
    rows = []
    for c, pred in zip(conditions, pred_means):
        if c not in row:
            raise InputError(f"prediction for condition {c!r}, which has no cells in the dataset")
        name = to_name[c]
        de = _gene_index(adata, "rank_genes_groups_cov_all", name, index, 20)
        nd = _gene_index(adata, "top_non_dropout_de_20", name, index)
        nz = _gene_index(adata, "top_non_zero_de_20", name, index)
        m = condition_metrics(pred, means[row[c]], ctrl, de=de, non_dropout=nd, non_zero=nz)
        rows.append({"condition": c, "subgroup": subgroup.get(c, ""), **m})
    return pd.DataFrame(rows, columns=["condition", "subgroup", *METRICS])


def summarize(per_condition: pd.DataFrame, subgroups=None) -> dict[str, float]:
    """Mean over conditions of each metric, overall and per subgroup: ``{'<metric>:<subgroup>': value}``.
    A subgroup with no condition in this split is left out (GEARS reports only what it has)."""
    out = {f"{m}{SEP}{ALL}": float(per_condition[m].mean()) for m in METRICS}
    for g in subgroups if subgroups is not None else sorted(set(per_condition["subgroup"]) - {""}):
        sub = per_condition[per_condition["subgroup"] == g]
        if len(sub):
            out.update({f"{m}{SEP}{g}": float(sub[m].mean()) for m in METRICS})
    return out


def split_metric(name: str) -> tuple[str, str]:
    """``'pearson_delta:combo_seen1'`` -> (``'pearson_delta'``, ``'combo_seen1'``)."""
    metric, _, group = name.partition(SEP)
    return metric, group or ALL
