"""Quality checks on the collected metrics: what a reader should look at before trusting a table.

- a method below its control (annotation: ``majority``; imputation: ``none``; perturbation:
  ``train_mean`` on the delta metrics, :func:`scfmbench.perturbation.report.below_train_mean`) on a
  dataset and metric, by its mean over seeds (a method below its control is a bug until shown otherwise);
- a configured job (task, dataset, method, seed) that produced no record;
- a bounded metric out of range (accuracy and F1 in [0, 1], Pearson in [-1, 1], MSE and Poisson >= 0).
"""

from __future__ import annotations

import pandas as pd

from scfmbench.report.tables import higher_is_better

CONTROLS = {"annotation": "majority", "imputation": "none"}
BOUNDS = {"accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0), "doublet_f1": (0.0, 1.0), "pearson": (-1.0, 1.0), "pearson_truth": (-1.0, 1.0), "mse": (0.0, float("inf")), "mse_truth": (0.0, float("inf")), "poisson": (0.0, float("inf"))}
CHECK_COLUMNS = ["check", "task", "dataset", "method", "seed", "metric", "detail"]


def quality_checks(metrics: pd.DataFrame, expected: list[tuple[str, str, str, int]] | None = None, *, controls: dict[str, str] = CONTROLS) -> pd.DataFrame:
    """One row per problem found (empty frame when all is well)."""
    rows = []
    for (task, dataset, metric), g in metrics.groupby(["task", "dataset", "metric"]):
        control = controls.get(task)
        means = g.groupby("method")["value"].mean()
        if control not in means or pd.isna(means[control]):
            continue
        for method, value in means.items():
            if method == control or pd.isna(value):
                continue
            worse = value < means[control] if higher_is_better(metric) else value > means[control]
            if worse:
                rows.append(dict(check="below control", task=task, dataset=dataset, method=method, seed=None, metric=metric, detail=f"{value:.4g} vs {control} {means[control]:.4g}"))
    from scfmbench.perturbation.report import below_train_mean

    rows += below_train_mean(metrics)  # perturbation: models below train_mean on the delta metrics
    for rec in metrics.itertuples(index=False):
        lo, hi = BOUNDS.get(rec.metric, (float("-inf"), float("inf")))
        if pd.notna(rec.value) and not (lo - 1e-9 <= rec.value <= hi + 1e-9):
            rows.append(dict(check="out of range", task=rec.task, dataset=rec.dataset, method=rec.method, seed=rec.seed, metric=rec.metric, detail=f"{rec.value:.4g} outside [{lo}, {hi}]"))
    if expected is not None:
        have = set(zip(metrics["task"], metrics["dataset"], metrics["method"], metrics["seed"].astype(int)))
        for task, dataset, method, seed in expected:
            if (task, dataset, method, int(seed)) not in have:
                rows.append(dict(check="no result", task=task, dataset=dataset, method=method, seed=seed, metric=None, detail="configured but no metrics record"))
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def quality_markdown(checks: pd.DataFrame) -> str:
    if checks.empty:
        return "All checks passed: every method at or above its control, every configured job reported, every bounded metric in range.\n"
    lines = ["| check | task | dataset | method | seed | metric | detail |", "|---|---|---|---|---|---|---|"]
    for r in checks.itertuples(index=False):
        lines.append("| " + " | ".join("" if pd.isna(v) else str(v) for v in r) + " |")
    return f"{len(checks)} problem(s) found:\n\n" + "\n".join(lines) + "\n"
