import numpy as np
import pandas as pd
import pytest

from scfmbench.report.paper import PAPER_METHODS, load_reported, paper_markdown, paper_table
from scfmbench.report.quality import quality_checks, quality_markdown
from scfmbench.results import METRIC_COLUMNS


def records(rows):
    return pd.DataFrame(
        [
            dict(zip(["task", "dataset", "method", "seed", "metric", "value"], r), runtime_s=1.0, peak_mem_mb=1.0)
            for r in rows
        ],
        columns=METRIC_COLUMNS,
    )


def test_reported_numbers_are_shipped_and_mapped():
    rep = load_reported()
    assert len(rep) == 102
    assert rep["method_id"].notna().all(), rep.loc[rep["method_id"].isna(), "method"].unique()
    row = rep[(rep.method == "scBERT") & (rep.dataset == "myeloid") & (rep.metric == "accuracy")].iloc[0]
    assert (row.mean_percent, row.std_percent) == (61.55, 4.60)
    assert set(PAPER_METHODS.values()) >= set(rep["method_id"])


def test_paper_table_percent_ranks_and_difference():
    m = records(
        [
            ("annotation", "myeloid", "scbert-performer", 0, "accuracy", 0.60),
            ("annotation", "myeloid", "scbert-performer", 1, "accuracy", 0.62),
            ("annotation", "myeloid", "scgpt-full", 0, "accuracy", 0.70),
            ("annotation", "myeloid", "scgpt-full", 1, "accuracy", 0.70),
            ("annotation", "myeloid", "logreg", 0, "accuracy", 0.65),
            ("annotation", "myeloid", "logreg", 1, "accuracy", 0.65),
        ]
    )
    t = paper_table(m, load_reported(), metric_names=("accuracy",))
    sb = t[t.method == "scbert-performer"].iloc[0]
    assert sb["mean"] == pytest.approx(61.0) and sb["std"] == pytest.approx(np.std([60, 62], ddof=1))
    assert sb["reported_mean"] == 61.55 and sb["difference"] == pytest.approx(61.0 - 61.55)
    ranks = dict(zip(t.method, t["rank"]))
    assert ranks == {"scbert-performer": 0, "scgpt-full": 1, "logreg": 2}
    assert t.method.tolist()[:2] == ["scbert-performer", "scgpt-full"]  # paper order first
    md = paper_markdown(t)
    assert "**70.00 ± 0.00**" in md and "<u>65.00 ± 0.00</u>" in md and "-0.55" in md


def test_quality_checks_flag_each_problem():
    m = records(
        [
            ("annotation", "d", "majority", 0, "macro_f1", 0.3),
            ("annotation", "d", "bad", 0, "macro_f1", 0.1),
            ("annotation", "d", "good", 0, "macro_f1", 0.9),
            ("imputation", "d", "none", 0, "mse", 2.0),
            (
                "imputation",
                "d",
                "none",
                0,
                "pearson",
                np.nan,
            ),  # undefined for the constant control: nothing compared, no problem
            ("imputation", "d", "worse", 0, "mse", 3.0),
            ("imputation", "d", "magic", 0, "pearson", 1.5),
        ]
    )
    checks = quality_checks(m, expected=[("annotation", "d", "good", 0), ("annotation", "d", "missing", 0)])
    got = set(zip(checks["check"], checks["method"]))
    assert got == {
        ("below control", "bad"),
        ("below control", "worse"),
        ("out of range", "magic"),
        ("no result", "missing"),
    }
    assert "4 problem(s)" in quality_markdown(checks)
    assert quality_checks(m.iloc[[0, 2]], expected=[]).empty
