"""Quality checks on the collected metrics: what a reader should look at before trusting a table.

- a method on the wrong side of one of its task's controls (:data:`CONTROL_CHECKS`), by its mean
  over seeds on a dataset and metric: below a *floor* (a negative control such as ``majority`` or
  ``none``: a method below it is a bug until shown otherwise) or above a *ceiling* (a positive
  control such as ``perfect`` or ``true_rate``, which no method can beat honestly);
- a task and dataset whose registered control has no record, so nothing was compared ("no control");
- test cell types absent from training (from the annotation run records): ``macro_f1`` counts each
  as an F1 of 0, ``macro_f1_seen`` leaves them out;
- perturbation models below ``train_mean`` on the delta metrics
  (:func:`scfmbench.report.perturbation.below_train_mean`: its subgroup metrics and its other
  controls need their own rule);
- a configured job (task, dataset, method, seed) that produced no record;
- a bounded metric out of range (accuracy and F1 in [0, 1], Pearson in [-1, 1], MSE >= 0; the
  Poisson loss ``mean(d - y log d)`` leaves out ``log y!`` and is negative on deep data);
- a trained run that stopped at its step or epoch cap while its validation criterion was still
  improving ("not converged", :func:`scfmbench.curves.convergence` on its ``curves.csv``): its
  numbers describe a model that had not finished learning.

A new task (or control) plugs in with one :func:`register_control` call (or one entry of
:data:`CONTROL_CHECKS`); which side of the control is better comes from the metric's direction
(:data:`scfmbench.report.tables.METRIC_DIRECTION`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scfmbench.report.tables import EMBEDDING_METRICS, higher_is_better


@dataclass(frozen=True)
class ControlCheck:
    """One control of a task: its method id, the metrics it brackets, whether it is a floor
    (methods should be at least as good) or a ceiling (methods should be at most as good), and
    whether it runs only on simulated data (``simulated_only``: its absence elsewhere is no "no
    control" row; ``true_rate`` has metrics every dataset reports)."""

    control: str
    metrics: tuple[str, ...]
    kind: str = "floor"  # or "ceiling"
    simulated_only: bool = False


#: The MCV losses of task ``denoising`` (:mod:`scfmbench.impute.mcv`): Batson et al.'s MSE on sqrt
#: and log1p counts after the expectation conversion, its Pearson r and the Poisson loss. Not
#: ``mse_openproblems``: at a 90/10 split it penalizes the exact rate, so it can bound nothing.
MCV_LOSSES = ("mse_sqrt", "mse_log1p", "pearson_sqrt", "poisson")

#: task -> its controls. Controls run on every dataset of their task, except the oracles ``perfect``
#: and ``true_rate``, which exist only where the simulation kept what they return (synthetic data):
#: ``perfect`` (the noise-free truth) bounds the ``*_truth`` metrics, ``true_rate`` (the Poisson
#: rate both MCV parts were drawn from) the MCV losses. ``none`` can legitimately come close to
#: ``true_rate``, never beat it in expectation; a denoiser below ``none`` on an MCV loss removed more
#: shared variation (biology, shared dropout) than sampling noise.
CONTROL_CHECKS: dict[str, tuple[ControlCheck, ...]] = {
    "annotation": (ControlCheck("majority", ("accuracy", "macro_f1", "macro_f1_seen")),),
    "imputation": (
        ControlCheck("none", ("mse", "pearson", "mse_truth", "pearson_truth")),
        ControlCheck("perfect", ("mse_truth", "pearson_truth"), "ceiling"),
    ),
    "denoising": (
        ControlCheck("none", (*MCV_LOSSES, "mse_truth", "pearson_truth")),
        ControlCheck("perfect", ("mse_truth", "pearson_truth"), "ceiling"),
        ControlCheck("true_rate", MCV_LOSSES, "ceiling", simulated_only=True),
    ),
    "doublet": (ControlCheck("all_doublet", ("doublet_f1",)),),
}
BOUNDS = {
    "accuracy": (0.0, 1.0),
    "macro_f1": (0.0, 1.0),
    "macro_f1_seen": (0.0, 1.0),
    "doublet_f1": (0.0, 1.0),
    "pearson": (-1.0, 1.0),
    "pearson_truth": (-1.0, 1.0),
    "mse": (0.0, float("inf")),
    "mse_truth": (0.0, float("inf")),
    "mse_sqrt": (0.0, float("inf")),
    "mse_log1p": (0.0, float("inf")),
    "pearson_sqrt": (-1.0, 1.0),
    "mse_openproblems": (0.0, float("inf")),
    **dict.fromkeys(EMBEDDING_METRICS, (0.0, 1.0)),
    "kmeans_ari": (-1.0, 1.0),
}
CHECK_COLUMNS = ["check", "task", "dataset", "method", "seed", "metric", "detail"]


def register_control(task: str, control: str, metrics, *, kind: str = "floor") -> None:
    """Add a control of ``task`` (a new task's controls: one call each)."""
    if kind not in ("floor", "ceiling"):
        raise ValueError(f"kind must be 'floor' or 'ceiling', got {kind!r}")
    CONTROL_CHECKS[task] = (*CONTROL_CHECKS.get(task, ()), ControlCheck(control, tuple(metrics), kind))


def _base_dataset(dataset: str) -> str:
    from scfmbench.config import parse_dataset

    return parse_dataset(dataset)[0]


def _control_rows(metrics: pd.DataFrame, checks: dict[str, tuple[ControlCheck, ...]]) -> list[dict]:
    rows = []
    means = metrics.groupby(["task", "dataset", "metric", "method"])["value"].mean()
    for (task, dataset), g in metrics.groupby(["task", "dataset"]):
        for check in checks.get(task, ()):
            for metric in check.metrics:
                sub = g[(g["metric"] == metric) & (g["method"] != check.control)]
                if sub.empty:
                    continue
                # A few-shot dataset '{d}-fs{f}' has the test cells of '{d}': its control run there is a fair bound.
                key = next(
                    (
                        k
                        for k in ((task, d, metric, check.control) for d in (dataset, _base_dataset(dataset)))
                        if k in means.index
                    ),
                    None,
                )
                if key is None:
                    if check.simulated_only:
                        continue
                    rows.append(
                        dict(
                            check="no control",
                            task=task,
                            dataset=dataset,
                            method=check.control,
                            seed=None,
                            metric=metric,
                            detail=(
                                f"{check.control} ({check.kind}) has no record here: "
                                f"{sub['method'].nunique()} method(s) not compared"
                            ),
                        )
                    )
                    continue
                ref = means[key]
                if pd.isna(ref):  # undefined for the control (the Pearson r of the constant 'none' prediction)
                    continue
                for method, value in sub.groupby("method")["value"].mean().items():
                    if pd.isna(value):
                        continue
                    better = value > ref if higher_is_better(metric) else value < ref
                    worse = value < ref if higher_is_better(metric) else value > ref
                    if (check.kind == "floor" and worse) or (check.kind == "ceiling" and better):
                        side = "below control" if check.kind == "floor" else "above ceiling"
                        rows.append(
                            dict(
                                check=side,
                                task=task,
                                dataset=dataset,
                                method=method,
                                seed=None,
                                metric=metric,
                                detail=f"{value:.4g} vs {check.control} {ref:.4g}",
                            )
                        )
    return rows


def _unseen_rows(runs) -> list[dict]:
    """One row per dataset whose test split has cell types absent from training (from run records)."""
    rows, seen = [], set()
    for run in runs:
        unseen, dataset = run.get("unseen_test_types") or {}, run.get("dataset")
        if not unseen or dataset in seen:
            continue
        seen.add(dataset)
        n = sum(unseen.values())
        rows.append(
            dict(
                check="unseen test types",
                task="annotation",
                dataset=dataset,
                method=None,
                seed=None,
                metric="macro_f1",
                detail=(
                    f"{sorted(unseen)}: {n} test cells ({100 * run.get('unseen_test_share', 0.0):.1f}%) of types "
                    "absent from training; macro_f1 counts each as F1 0, macro_f1_seen leaves them out"
                ),
            )
        )
    return rows


def convergence_rows(curves) -> list[dict]:
    """One "not converged" row per phase of a trained run whose curve stopped at its cap while still
    improving; ``curves``: ``(task, dataset, method, seed, path to curves.csv)``."""
    from scfmbench.curves import convergence, read_curves

    rows = []
    for task, dataset, method, seed, path in curves:
        for r in convergence(read_curves(path)).itertuples(index=False):
            if not r.converged:
                rows.append(
                    dict(
                        check="not converged",
                        task=task,
                        dataset=dataset,
                        method=method,
                        seed=int(seed),
                        metric=r.criterion,
                        detail=f"{r.phase}: {r.detail}",
                    )
                )
    return rows


def quality_checks(
    metrics: pd.DataFrame,
    expected: list[tuple[str, str, str, int]] | None = None,
    *,
    runs=(),
    checks: dict[str, tuple[ControlCheck, ...]] | None = None,
    curves=(),
) -> pd.DataFrame:
    """One row per problem found (empty frame when all is well).

    ``runs``: annotation run records (``run.json`` dicts) with ``unseen_test_types`` /
    ``unseen_test_share``; ``checks``: the control registry (default :data:`CONTROL_CHECKS`);
    ``curves``: ``(task, dataset, method, seed, curves.csv)`` of the trained runs (convergence).
    """
    rows = (
        _control_rows(metrics, CONTROL_CHECKS if checks is None else checks)
        + _unseen_rows(runs)
        + convergence_rows(curves)
    )
    from scfmbench.report.perturbation import below_train_mean

    rows += below_train_mean(metrics)  # perturbation: models below train_mean on the delta metrics
    for rec in metrics.itertuples(index=False):
        lo, hi = BOUNDS.get(rec.metric, (float("-inf"), float("inf")))
        if pd.notna(rec.value) and not (lo - 1e-9 <= rec.value <= hi + 1e-9):
            rows.append(
                dict(
                    check="out of range",
                    task=rec.task,
                    dataset=rec.dataset,
                    method=rec.method,
                    seed=rec.seed,
                    metric=rec.metric,
                    detail=f"{rec.value:.4g} outside [{lo}, {hi}]",
                )
            )
    if expected is not None:
        have = set(zip(metrics["task"], metrics["dataset"], metrics["method"], metrics["seed"].astype(int)))
        for task, dataset, method, seed in expected:
            if (task, dataset, method, int(seed)) not in have:
                rows.append(
                    dict(
                        check="no result",
                        task=task,
                        dataset=dataset,
                        method=method,
                        seed=seed,
                        metric=None,
                        detail="configured but no metrics record",
                    )
                )
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def quality_markdown(checks: pd.DataFrame) -> str:
    if checks.empty:
        tasks = ", ".join(f"{task} ({', '.join(c.control for c in cs)})" for task, cs in CONTROL_CHECKS.items())
        return (
            f"All checks passed: every method within its task's controls ({tasks}), every control present where its "
            "task ran, every test cell type seen in training, every configured job reported, every bounded metric "
            "in range, every trained run converged before its cap.\n"
        )
    lines = ["| check | task | dataset | method | seed | metric | detail |", "|---|---|---|---|---|---|---|"]
    for r in checks.itertuples(index=False):
        # a column with empty cells is float: seed 0 prints as 0, not 0.0
        lines.append(
            "| "
            + " | ".join(
                "" if pd.isna(v) else str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in r
            )
            + " |"
        )
    return f"{len(checks)} problem(s) found:\n\n" + "\n".join(lines) + "\n"
