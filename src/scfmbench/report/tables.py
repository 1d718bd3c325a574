"""Aggregate metrics records into paper-style tables: mean ± std over seeds, best per column in bold.

Two forms of one summary:

- the *wide* table from :func:`summary_table`: one row per method, columns
  ``(dataset, metric, stat)`` with ``stat`` in :data:`STATS`;
- the *tidy* table from :func:`to_tidy`: columns :data:`TIDY_COLUMNS`, one row per
  (method, dataset, metric), what ``{task}_table.csv`` holds.

Conventions, stated once:

- ``n`` counts the seeds with a finite value; mean and std (ddof=1) are over those seeds. A
  record whose value is NaN (the Pearson correlation of a constant prediction, e.g. the ``none``
  imputation control) counts in no statistic, so a method with only NaN values has ``n == 0`` and
  is shown as ``n/a``. A (method, dataset, metric) that was not run at all has ``n`` missing
  (``<NA>``) and is shown as ``–``.
- The best mean per column is flagged according to :data:`METRIC_DIRECTION`; ties are all best;
  NaN never wins. Oracles (:data:`ORACLES`, the imputation controls ``perfect`` and ``true_rate``,
  which read the held-out answer) bracket the table but are not ranked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from scfmbench import InputError
from scfmbench._io import markdown_cell
from scfmbench.results import METRIC_COLUMNS

log = logging.getLogger(__name__)

#: Whether a larger value is better, per metric name. Unknown metrics count as higher-better
#: (with a warning); add a metric with :func:`register_metric`.
METRIC_DIRECTION: dict[str, bool] = {
    "accuracy": True,
    "macro_f1": True,
    "macro_f1_seen": True,
    "doublet_f1": True,
    "pearson": True,
    "pearson_truth": True,
    "mse": False,
    "mse_truth": False,
    "poisson": False,
    "mse_sqrt": False,
    "mse_log1p": False,
    "pearson_sqrt": True,
    "mse_openproblems": False,
}

#: Metrics on a fixed unit scale (F1 and accuracy in [0, 1], Pearson in [-1, 1]): shown with 3
#: decimals. Every other registered metric (MSE, Poisson deviance: unbounded, often small) is shown
#: with 4 significant digits.
UNIT_SCALE_METRICS: set[str] = {
    "accuracy",
    "macro_f1",
    "macro_f1_seen",
    "doublet_f1",
    "pearson",
    "pearson_truth",
    "pearson_sqrt",
}

#: Controls that read the held-out answer (the noise-free truth; the Poisson rate of an MCV split);
#: shown but never flagged best.
ORACLES: tuple[str, ...] = ("perfect", "true_rate")

STATS = ("mean", "std", "n", "best")
TIDY_COLUMNS = ["method", "dataset", "metric", "mean", "std", "n", "best"]
_KEY = ["task", "dataset", "method", "seed", "metric"]

NOT_RUN = "–"
UNDEFINED = "n/a"


def register_metric(name: str, higher_is_better: bool, *, unit_scale: bool = False) -> None:
    """Declare a metric's direction (and whether it lies on a unit scale, for formatting)."""
    METRIC_DIRECTION[name] = bool(higher_is_better)
    if unit_scale:
        UNIT_SCALE_METRICS.add(name)
    else:
        UNIT_SCALE_METRICS.discard(name)


def higher_is_better(metric: str) -> bool:
    if metric not in METRIC_DIRECTION:
        log.warning(
            "metric %r has no registered direction; treating it as higher-is-better "
            "(scfmbench.report.register_metric(%r, higher_is_better=...) to declare it)",
            metric,
            metric,
        )
        return True
    return METRIC_DIRECTION[metric]


def _task_rows(metrics: pd.DataFrame, task: str) -> pd.DataFrame:
    missing = [c for c in METRIC_COLUMNS if c not in metrics]
    if missing:
        raise InputError(f"metrics frame lacks columns {missing}; records have {METRIC_COLUMNS}.")
    df = metrics.loc[metrics["task"] == task, METRIC_COLUMNS].copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    dup = df.duplicated(_KEY, keep=False)
    if dup.any():
        # Two records for one run would silently inflate n; it means a metrics file was listed twice.
        raise InputError(
            f"duplicate metrics records for {task!r}:\n{df.loc[dup, _KEY].drop_duplicates().to_string(index=False)}"
        )
    return df


def _empty_wide() -> pd.DataFrame:
    cols = pd.MultiIndex.from_arrays([[], [], []], names=["dataset", "metric", "stat"])
    return pd.DataFrame(index=pd.Index([], name="method"), columns=cols)


def summary_table(metrics: pd.DataFrame, task: str, *, unranked: Iterable[str] = ORACLES) -> pd.DataFrame:
    """Mean, std and seed count per method for every (dataset, metric) of ``task``.

    Parameters
    ----------
    metrics
        Metrics records (:data:`scfmbench.results.METRIC_COLUMNS`), any tasks.
    task
        Task to summarise; other tasks' rows are ignored.
    unranked
        Methods shown but never flagged best (default: the oracle controls).

    Returns
    -------
    DataFrame indexed by ``method`` (sorted), columns a MultiIndex ``(dataset, metric, stat)``:
    ``mean`` and ``std`` (float, over seeds with a finite value; std NaN below two seeds),
    ``n`` (Int64, seeds with a finite value; <NA> when not run) and ``best`` (bool).
    Empty (no rows, no columns) when ``task`` has no records.
    """
    df = _task_rows(metrics, task)
    if df.empty:
        return _empty_wide()
    long = (
        df.groupby(["method", "dataset", "metric"], sort=True)["value"]
        .agg(mean="mean", std="std", n="count")
        .reset_index()
    )
    unranked = set(unranked)
    long["best"] = False
    for (_, metric), idx in long.groupby(["dataset", "metric"]).groups.items():
        block = long.loc[idx]
        eligible = block["mean"].notna() & ~block["method"].isin(unranked)
        if not eligible.any():
            continue
        means = block.loc[eligible, "mean"]
        target = means.max() if higher_is_better(metric) else means.min()
        # Means of identical seed values are identical; the tolerance only absorbs summation order.
        best = eligible & np.isclose(block["mean"], target, rtol=1e-12, atol=0.0)
        long.loc[idx, "best"] = best.to_numpy()

    wide = long.set_index(["method", "dataset", "metric"]).unstack(["dataset", "metric"])
    wide.columns = wide.columns.reorder_levels([1, 2, 0]).set_names(["dataset", "metric", "stat"])
    keys = sorted({(d, m) for d, m, _ in wide.columns})
    wide = wide.reindex(
        columns=pd.MultiIndex.from_tuples(
            [(d, m, s) for d, m in keys for s in STATS], names=["dataset", "metric", "stat"]
        )
    )
    for d, m in keys:
        wide[(d, m, "mean")] = wide[(d, m, "mean")].astype(float)
        wide[(d, m, "std")] = wide[(d, m, "std")].astype(float)
        wide[(d, m, "n")] = wide[(d, m, "n")].astype("Int64")  # <NA>: this method was not run here
        wide[(d, m, "best")] = wide[(d, m, "best")].eq(True)  # NaN (not run) -> False
    wide.index.name = "method"
    return wide


def _column_keys(table: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys((d, m) for d, m, _ in table.columns))


def to_tidy(table: pd.DataFrame) -> pd.DataFrame:
    """The wide :func:`summary_table` as tidy rows (:data:`TIDY_COLUMNS`); runs that did not happen are dropped."""
    frames = []
    for d, m in _column_keys(table):
        block = table[(d, m)].reset_index()
        block = block[block["n"].notna()]
        frames.append(block.assign(dataset=d, metric=m))
    if not frames:
        return pd.DataFrame(columns=TIDY_COLUMNS)
    out = pd.concat(frames, ignore_index=True)[TIDY_COLUMNS]
    out["n"] = out["n"].astype(int)
    out["best"] = out["best"].astype(bool)
    return out.sort_values(["dataset", "metric", "method"], ignore_index=True)


def _unit_scale(metric: str, values: pd.Series) -> bool:
    if metric in METRIC_DIRECTION:
        return metric in UNIT_SCALE_METRICS
    finite = values[np.isfinite(values.astype(float))]
    return bool(len(finite)) and bool(((finite >= 0) & (finite <= 1)).all())


def _fmt(x: float, unit_scale: bool) -> str:
    # '#' keeps trailing zeros (0.2000, not 0.2) so every cell shows 4 significant digits;
    # it also leaves a bare trailing '.' on integers (1235.), which is dropped.
    return f"{x:.3f}" if unit_scale else f"{x:#.4g}".rstrip(".")


def format_cell(mean: float, std: float, n, *, unit_scale: bool, n_max: int | None = None) -> str:
    """``mean ± std``; ``–`` if not run, ``n/a`` if undefined; ``(n=k)`` when fewer seeds than the table's most."""
    if n is pd.NA or n is None or (isinstance(n, float) and math.isnan(n)):
        return NOT_RUN
    if n == 0 or not np.isfinite(mean):
        return UNDEFINED
    text = _fmt(mean, unit_scale)
    if np.isfinite(std):
        # The std gets as many decimals as the mean (0.9739 ± 0.0067, not ± 0.006728), as in papers.
        decimals = len(text.partition(".")[2]) if "e" not in text else None
        text += f" ± {std:.{decimals}f}" if decimals is not None else f" ± {_fmt(std, unit_scale)}"
    if n_max is not None and n < n_max:
        text += f" (n={int(n)})"
    return text


def to_markdown(table: pd.DataFrame, *, markers: Mapping[tuple[str, str, str], str] | None = None) -> str:
    """Render a :func:`summary_table` as a GitHub pipe table, best per column in **bold**.

    ``markers``: (dataset, method, metric) -> a symbol after the cell (the ↑ / ↓ of
    :func:`scfmbench.report.significance.cell_markers`).

    Hand-written rather than ``DataFrame.to_markdown``: that needs the optional ``tabulate``
    package, which is not a dependency, and the table is a few lines of string joining.
    """
    keys = _column_keys(table)
    if table.empty or not keys:
        return "_no results configured_\n"
    n_all = pd.concat([table[(d, m, "n")] for d, m in keys]).dropna()
    n_max = int(n_all.max()) if len(n_all) else None
    header = ["method"] + [f"{markdown_cell(d)} / {markdown_cell(m)}" for d, m in keys]
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * len(keys)]
    for method, row in table.iterrows():
        cells = [markdown_cell(method)]
        for d, m in keys:
            unit = _unit_scale(m, table[(d, m, "mean")])
            cell = format_cell(row[(d, m, "mean")], row[(d, m, "std")], row[(d, m, "n")], unit_scale=unit, n_max=n_max)
            cell = f"**{cell}**" if row[(d, m, "best")] else cell
            mark = (markers or {}).get((d, method, m))
            cells.append(f"{cell} {mark}" if mark else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_legend(table: pd.DataFrame) -> str:
    """One-paragraph note for a markdown table: directions of the metrics shown and the cell symbols."""
    metrics = sorted({m for _, m in _column_keys(table)})
    up = [m for m in metrics if METRIC_DIRECTION.get(m, True)]
    down = [m for m in metrics if not METRIC_DIRECTION.get(m, True)]
    parts = ["Mean ± standard deviation over seeds; best mean per column in **bold**"]
    if up:
        parts.append(f"higher is better for {', '.join(up)}")
    if down:
        parts.append(f"lower is better for {', '.join(down)}")
    oracles = [m for m in ORACLES if m in table.index]
    note = f" Oracle controls ({', '.join(oracles)}) are shown but not ranked." if oracles else ""
    return (
        "; ".join(parts) + "." + note + " "
        f"`{UNDEFINED}`: undefined on every seed (e.g. Pearson of a constant prediction); "
        f"`{NOT_RUN}`: not run; `(n=k)`: only k seeds with a finite value.\n"
    )


from scfmbench.embedding import metrics as _embedding_metrics  # noqa: E402  (numpy only at import)

# Rare-cell-type F1 (scfmbench.metrics.rare_f1; MAM paper): macro F1 over classes below a share of the training cells.
register_metric("rare_f1", True, unit_scale=True)
#: The embedding task's metrics (scfmbench.embedding.metrics): higher is better, [0, 1] (ARI [-1, 1]).
EMBEDDING_METRICS = _embedding_metrics.LABEL_METRICS + _embedding_metrics.BATCH_METRICS
for _metric in EMBEDDING_METRICS:
    register_metric(_metric, True, unit_scale=True)
