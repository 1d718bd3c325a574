"""Report stage: summary statistics, best marking, markdown rendering, files written, figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scfmbench import InputError
from scfmbench.report import (
    METRIC_DIRECTION,
    TIDY_COLUMNS,
    plot_task,
    register_metric,
    report_paths,
    summary_table,
    to_markdown,
    to_tidy,
    write_report,
)
from scfmbench.results import METRIC_COLUMNS, metrics_record, write_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _frame(values: dict[tuple[str, str, str], list[float]], task: str = "annotation") -> pd.DataFrame:
    """Records from {(dataset, method, metric): [value per seed]}."""
    rows = [
        dict(task=task, dataset=d, method=m, seed=s, metric=k, value=v, runtime_s=1.0, peak_mem_mb=10.0)
        for (d, m, k), vals in values.items()
        for s, v in enumerate(vals)
    ]
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


@pytest.fixture
def annotation() -> pd.DataFrame:
    return _frame(
        {
            ("pbmc", "majority", "accuracy"): [0.5, 0.7, 0.6],
            ("pbmc", "logreg", "accuracy"): [0.9, 0.8, 1.0],
            ("pbmc", "schyena", "accuracy"): [0.9, 0.9, 0.9],  # ties logreg's mean
            ("pbmc", "majority", "mse"): [0.1, 0.3, 0.2],  # a lower-is-better metric
            ("pbmc", "logreg", "mse"): [0.4, 0.5, 0.6],
            ("pbmc", "schyena", "mse"): [np.nan, np.nan, np.nan],  # undefined: never best
        }
    )


def _cell(table, method, dataset, metric, stat):
    return table.loc[method, (dataset, metric, stat)]


def test_summary_mean_std_n_by_hand(annotation):
    t = summary_table(annotation, "annotation")
    assert list(t.index) == ["logreg", "majority", "schyena"]
    assert _cell(t, "majority", "pbmc", "accuracy", "mean") == pytest.approx(0.6)
    # sample std (ddof=1) of 0.5, 0.7, 0.6: sqrt((0.01 + 0.01 + 0) / 2) = 0.1
    assert _cell(t, "majority", "pbmc", "accuracy", "std") == pytest.approx(0.1)
    assert _cell(t, "logreg", "pbmc", "mse", "mean") == pytest.approx(0.5)
    assert _cell(t, "logreg", "pbmc", "mse", "std") == pytest.approx(0.1)
    assert _cell(t, "majority", "pbmc", "accuracy", "n") == 3
    assert _cell(t, "schyena", "pbmc", "mse", "n") == 0
    assert math.isnan(_cell(t, "schyena", "pbmc", "mse", "mean"))
    assert summary_table(annotation, "imputation").empty


def test_best_respects_direction_ties_and_nan(annotation):
    t = summary_table(annotation, "annotation")
    best_acc = t[("pbmc", "accuracy", "best")]
    assert best_acc.to_dict() == {"logreg": True, "majority": False, "schyena": True}  # tie: both
    best_mse = t[("pbmc", "mse", "best")]
    assert best_mse.to_dict() == {"logreg": False, "majority": True, "schyena": False}  # lower wins, NaN ignored


def test_oracle_not_ranked_and_register_metric():
    df = _frame(
        {
            ("syn", "perfect", "mse"): [0.0, 0.0],
            ("syn", "magic", "mse"): [0.3, 0.5],
            ("syn", "magic", "my_loss"): [2.0, 2.0],
            ("syn", "perfect", "my_loss"): [1.0, 1.0],
        },
        task="imputation",
    )
    t = summary_table(df, "imputation")
    assert t[("syn", "mse", "best")].to_dict() == {"magic": True, "perfect": False}
    assert bool(summary_table(df, "imputation", unranked=())[("syn", "mse", "best")]["perfect"])
    try:
        register_metric("my_loss", higher_is_better=False)
        assert not METRIC_DIRECTION["my_loss"]
        assert bool(summary_table(df, "imputation", unranked=())[("syn", "my_loss", "best")]["perfect"])
    finally:
        METRIC_DIRECTION.pop("my_loss", None)


def test_duplicate_records_are_an_error(annotation):
    with pytest.raises(InputError, match="duplicate"):
        summary_table(pd.concat([annotation, annotation.iloc[:1]]), "annotation")


def test_markdown_bold_best_and_formatting(annotation):
    md = to_markdown(summary_table(annotation, "annotation"))
    lines = md.splitlines()
    assert lines[0] == "| method | pbmc / accuracy | pbmc / mse |"
    assert "| logreg | **0.900 ± 0.100** | 0.5000 ± 0.1000 |" in lines  # unit scale: 3 decimals
    assert "| majority | 0.600 ± 0.100 | **0.2000 ± 0.1000** |" in lines  # mse: 4 significant digits
    assert "| schyena | **0.900 ± 0.000** | n/a |" in lines
    assert to_markdown(summary_table(annotation, "imputation")) == "_no results configured_\n"


def test_markdown_not_run_and_fewer_seeds():
    df = _frame(
        {("a", "m1", "accuracy"): [0.5, 0.7], ("a", "m2", "accuracy"): [0.8], ("b", "m1", "accuracy"): [0.1, 0.2]}
    )
    md = to_markdown(summary_table(df, "annotation"))
    assert "| m2 | **0.800 (n=1)** | – |" in md  # one seed: no std; dataset b not run


def test_tidy_form(annotation):
    tidy = to_tidy(summary_table(annotation, "annotation"))
    assert list(tidy.columns) == TIDY_COLUMNS
    assert len(tidy) == 6 and tidy["best"].dtype == bool
    row = tidy[(tidy.method == "majority") & (tidy.metric == "mse")].iloc[0]
    assert row["mean"] == pytest.approx(0.2) and row["n"] == 3 and row["best"]


def _write_records(tmp_path) -> list:
    paths = []
    for task, dataset, method, metrics in [
        ("annotation", "pbmc", "majority", {"accuracy": 0.4, "macro_f1": 0.1}),
        ("annotation", "pbmc", "logreg", {"accuracy": 0.8, "macro_f1": 0.7}),
        ("imputation", "synthetic", "none", {"mse": 1.2, "pearson": float("nan")}),
        ("imputation", "synthetic", "perfect", {"mse": 0.0, "pearson": 1.0}),
    ]:
        for seed in (0, 1):
            rec = metrics_record(task=task, dataset=dataset, method=method, seed=seed, metrics=metrics)
            path = tmp_path / "in" / f"{task}_{method}_{seed}.csv"
            write_metrics(rec, path)
            paths.append(path)
    return paths


def test_write_report_files_and_round_trip(tmp_path):
    paths = _write_records(tmp_path)
    out = tmp_path / "report"
    write_report(paths[::-1], out)
    expected = report_paths(out)
    assert all(p.exists() for p in expected.values())
    assert sorted(p.name for p in out.rglob("*")) == sorted([p.name for p in expected.values()] + ["figures"])

    merged = pd.read_csv(out / "metrics.csv")
    assert list(merged.columns) == METRIC_COLUMNS and len(merged) == 16
    key = ["task", "dataset", "method", "seed", "metric"]
    assert merged[key].equals(merged[key].sort_values(key, ignore_index=True))
    original = pd.concat([pd.read_csv(p) for p in paths]).sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(merged, original)

    assert "| logreg | **0.800 ± 0.000** | **0.700 ± 0.000** |" in (out / "annotation_table.md").read_text()
    tidy = pd.read_csv(out / "imputation_table.csv")
    assert list(tidy.columns) == TIDY_COLUMNS
    for task in ("annotation", "imputation"):
        assert expected[f"{task}_png"].read_bytes()[:8] == PNG_MAGIC


def test_plot_task_one_method_one_dataset_and_empty(tmp_path, annotation):
    one = annotation[(annotation.method == "schyena")]
    plot_task(one, "annotation", tmp_path / "one.png")
    assert (tmp_path / "one.png").read_bytes()[:8] == PNG_MAGIC
    plot_task(annotation, "imputation", tmp_path / "empty.png")  # no rows for this task
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC
    plot_task(pd.DataFrame(columns=METRIC_COLUMNS), "annotation", tmp_path / "none.png")
    assert (tmp_path / "none.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "none.png", "one.png"]  # no temp files left
