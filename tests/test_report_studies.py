"""Few-shot and sensitivity studies in the report: tables by hand, the main grid without them, files."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from test_report import PNG_MAGIC, _frame

from scfmbench.report import report_paths, study_paths, write_report, write_studies
from scfmbench.report.extras import write_extras
from scfmbench.report.html import markdown_html
from scfmbench.report.paper import load_reported, paper_table
from scfmbench.report.studies import (
    BASE_RUN,
    FEWSHOT_COLUMNS,
    FEWSHOT_RUN,
    MAIN_GRID_RUN,
    SENSITIVITY_COLUMNS,
    SENSITIVITY_RUN,
    fewshot_markdown,
    fewshot_table,
    kernel_defaults,
    main_grid,
    sensitivity_markdown,
    sensitivity_override,
    sensitivity_table,
)
from scfmbench.results import write_metrics


@pytest.fixture
def metrics() -> pd.DataFrame:
    annotation = _frame(
        {
            # main grid
            ("pancreas", "majority", "accuracy"): [0.30, 0.30, 0.30],
            ("pancreas", "logreg", "accuracy"): [0.90, 0.80, 1.00],
            ("pancreas", "logreg", "macro_f1"): [0.70, 0.80, 0.90],
            ("pancreas", "scgpt-genohoption-p", "accuracy"): [0.85, 0.87, 0.89],
            ("pancreas", "scgpt-genohoption-p", "macro_f1"): [0.60, 0.70, 0.80],
            ("pancreas", "geneformer-genohoption-h", "macro_f1"): [0.50, 0.50, 0.50],
            # few-shot: logreg on two fractions (0.5 with one NaN seed), majority at 0.25 only
            ("pancreas-fs0.25", "logreg", "accuracy"): [0.50, 0.60, 0.70],
            ("pancreas-fs0.25", "logreg", "macro_f1"): [0.20, 0.40, 0.60],
            ("pancreas-fs0.5", "logreg", "accuracy"): [0.70, np.nan, 0.80],
            ("pancreas-fs0.25", "majority", "accuracy"): [0.30, 0.30, 0.30],
            # sensitivity: alpha on scgpt (no run at the default 0.25), k on scgpt with a run at k=6
            ("pancreas", "scgpt-genohoption-p.alpha0.1", "macro_f1"): [0.40, 0.50, 0.60],
            ("pancreas", "scgpt-genohoption-p.alpha0.4", "macro_f1"): [0.55, 0.65, 0.75],
            ("pancreas", "scgpt-genohoption-p.k2", "macro_f1"): [0.30, 0.30, 0.30],
            ("pancreas", "scgpt-genohoption-p.k6", "macro_f1"): [0.61, 0.71, 0.81],
            # t on geneformer-h, whose base run is on pancreas
            ("pancreas", "geneformer-genohoption-h.t3", "macro_f1"): [0.45, 0.55, 0.65],
        }
    )
    other = _frame({("pancreas", "none", "mse"): [1.0, 1.0, 1.0]}, task="imputation")  # another task: ignored
    return pd.concat([annotation, other], ignore_index=True)


def _row(table: pd.DataFrame, **where) -> pd.Series:
    mask = np.ones(len(table), dtype=bool)
    for k, v in where.items():
        mask &= (table[k] == v).to_numpy()
    assert mask.sum() == 1, (where, table[mask])
    return table[mask].iloc[0]


def test_parse_derived_names():
    assert sensitivity_override("scgpt-genohoption-p.alpha0.1") == ("scgpt-genohoption-p", "alpha", 0.1)
    assert sensitivity_override("geneformer-genohoption-h.t3") == ("geneformer-genohoption-h", "t", 3.0)
    assert sensitivity_override("scgpt-genohoption-p-nogrn.k4") == ("scgpt-genohoption-p-nogrn", "k", 4.0)
    for method in ("scgpt-genohoption-p", "logreg", "majority", "nearest_centroid"):
        assert sensitivity_override(method) is None


def test_main_grid_drops_fewshot_datasets_and_sensitivity_methods(metrics):
    grid = main_grid(metrics)
    assert set(grid["dataset"]) == {"pancreas"}
    assert set(grid["method"]) == {"majority", "logreg", "scgpt-genohoption-p", "geneformer-genohoption-h", "none"}
    assert len(grid) == 3 * 7  # the six main-grid annotation rows and the imputation row, 3 seeds each


def test_fewshot_table_by_hand(metrics):
    t = fewshot_table(metrics)
    assert list(t.columns) == FEWSHOT_COLUMNS
    assert set(t["dataset"]) == {"pancreas"} and set(t["method"]) == {"logreg", "majority"}
    r = _row(t, method="logreg", fraction=0.25, metric="accuracy")
    assert (
        r["mean"] == pytest.approx(0.6)
        and r["std"] == pytest.approx(0.1)
        and r["n"] == 3
        and r["source"] == FEWSHOT_RUN
    )
    r = _row(t, method="logreg", fraction=0.25, metric="macro_f1")
    assert r["mean"] == pytest.approx(0.4) and r["std"] == pytest.approx(0.2)
    r = _row(t, method="logreg", fraction=0.5, metric="accuracy")  # the NaN seed counts in nothing
    assert r["mean"] == pytest.approx(0.75) and r["n"] == 2
    # fraction 1.0 is the main grid's run of the same method on the base dataset
    r = _row(t, method="logreg", fraction=1.0, metric="accuracy")
    assert r["mean"] == pytest.approx(0.9) and r["std"] == pytest.approx(0.1) and r["source"] == MAIN_GRID_RUN
    assert _row(t, method="majority", fraction=1.0, metric="accuracy")["mean"] == pytest.approx(0.3)
    # methods without few-shot runs get no fraction-1.0 point
    assert "scgpt-genohoption-p" not in set(t["method"])
    assert set(t.loc[t["method"] == "majority", "metric"]) == {"accuracy"}  # majority has no macro_f1 records here
    md = fewshot_markdown(t)
    assert "| logreg | accuracy | 0.600 ± 0.100 | 0.750 ± 0.071 (n=2) | 0.900 ± 0.100 |" in md
    assert "1 (main grid)" in md


def test_sensitivity_table_default_point(metrics):
    t = sensitivity_table(metrics)
    assert list(t.columns) == SENSITIVITY_COLUMNS
    assert set(t["method"]) == {"scgpt-genohoption-p", "geneformer-genohoption-h"}
    # alpha has no run at 0.25: the base method's own run is the default point
    r = _row(t, method="scgpt-genohoption-p", option="alpha", option_value=0.25, metric="macro_f1")
    assert r["mean"] == pytest.approx(0.7) and r["std"] == pytest.approx(0.1) and r["n"] == 3
    assert r["default"] and r["source"] == BASE_RUN
    r = _row(t, method="scgpt-genohoption-p", option="alpha", option_value=0.1, metric="macro_f1")
    assert r["mean"] == pytest.approx(0.5) and not r["default"] and r["source"] == SENSITIVITY_RUN
    # k has a run at 6 itself: that run is the point, the base run is not added (no double counting)
    r = _row(t, method="scgpt-genohoption-p", option="k", option_value=6.0, metric="macro_f1")
    assert r["mean"] == pytest.approx(0.71) and r["n"] == 3 and r["default"] and r["source"] == SENSITIVITY_RUN
    # only the metrics the option was varied with: the base run's accuracy is not a point
    assert set(t.loc[t["option"] == "alpha", "metric"]) == {"macro_f1"}
    r = _row(t, method="geneformer-genohoption-h", option="t", option_value=5.0, metric="macro_f1")
    assert r["mean"] == pytest.approx(0.5) and r["source"] == BASE_RUN
    assert list(t.loc[(t["option"] == "alpha") & (t["metric"] == "macro_f1"), "option_value"]) == [0.1, 0.25, 0.4]
    md = sensitivity_markdown(t)
    assert "0.25 (default)" in md and "0.700 ± 0.100 *" in md


def test_sensitivity_defaults_follow_kernel_config(metrics):
    assert kernel_defaults("scgpt-genohoption-p") == {"alpha": 0.25, "t": 5.0, "k": 6.0}
    config = {"params": {"scgpt": {"kernel_config": {"genohoption-p": {"alpha": 0.4}}}}}
    assert kernel_defaults("scgpt-genohoption-p", config)["alpha"] == 0.4
    t = sensitivity_table(metrics, defaults=lambda m: kernel_defaults(m, config))
    # the base run now sits at alpha 0.4, where the grid has a run: no base point, that run is the default
    alpha = t[(t["option"] == "alpha") & (t["method"] == "scgpt-genohoption-p")]
    assert BASE_RUN not in set(alpha["source"])
    assert list(alpha.loc[alpha["default"], "option_value"]) == [0.4]


def test_empty_studies_have_headers_and_say_so(tmp_path):
    empty = _frame({("pbmc", "logreg", "accuracy"): [0.9]})
    assert fewshot_table(empty).empty and list(fewshot_table(empty).columns) == FEWSHOT_COLUMNS
    assert sensitivity_table(empty).empty and list(sensitivity_table(empty).columns) == SENSITIVITY_COLUMNS
    paths = study_paths(tmp_path)
    write_studies(empty, paths)
    assert pd.read_csv(paths["fewshot_csv"]).columns.tolist() == FEWSHOT_COLUMNS
    assert pd.read_csv(paths["sensitivity_csv"]).columns.tolist() == SENSITIVITY_COLUMNS
    assert "no few-shot runs configured" in paths["fewshot_md"].read_text()
    assert "no sensitivity runs configured" in paths["sensitivity_html"].read_text()
    for key in ("fewshot_png", "sensitivity_png"):
        assert paths[key].read_bytes()[:8] == PNG_MAGIC


def test_write_studies_files(tmp_path, metrics):
    paths = study_paths(tmp_path / "report")
    write_studies(metrics, SimpleNamespace(**paths), config={})  # attribute access, as snakemake.output
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    fs = pd.read_csv(paths["fewshot_csv"])
    assert _row(fs, method="logreg", fraction=1.0, metric="accuracy")["source"] == MAIN_GRID_RUN
    sens = pd.read_csv(paths["sensitivity_csv"])
    assert _row(sens, method="scgpt-genohoption-p", option="alpha", option_value=0.25, metric="macro_f1")["default"]
    assert "<table>" in paths["sensitivity_html"].read_text()
    assert not list((tmp_path / "report").rglob(".*"))  # no temporary files left


def test_main_tables_exclude_derived_rows(tmp_path, metrics):
    files = []
    for i, (_, g) in enumerate(metrics.groupby(["task", "dataset", "method", "seed"])):  # one file per job
        files.append(tmp_path / "in" / f"{i}.csv")
        write_metrics(g, files[-1])
    out = tmp_path / "report"
    write_report(files, out, tasks=("annotation",))
    merged = pd.read_csv(out / "metrics.csv")
    assert "pancreas-fs0.25" in set(merged["dataset"])  # metrics.csv keeps every record
    tidy = pd.read_csv(report_paths(out, ("annotation",))["annotation_csv"])
    assert set(tidy["dataset"]) == {"pancreas"}
    assert not any("." in m for m in tidy["method"])
    md = (out / "annotation_table.md").read_text()
    assert "-fs" not in md and "alpha" not in md
    assert (out / "annotation_table.html").read_text().count(
        "<tr>"
    ) == 1 + 4  # header; majority, logreg, scgpt, geneformer

    paper = paper_table(main_grid(merged), load_reported())
    assert set(paper["dataset"]) == {"pancreas"} and not any("." in m for m in paper["method"])
    ex = {
        k: tmp_path / "ex" / n
        for k, n in [
            ("paper_md", "paper_table.md"),
            ("paper_csv", "paper_table.csv"),
            ("paper_html", "paper_table.html"),
            ("reported_md", "reported_table.md"),
            ("quality_md", "quality.md"),
            ("quality_csv", "quality.csv"),
            ("quality_html", "quality.html"),
            ("provenance", "provenance.html"),
        ]
    }
    expected = [("annotation", "pancreas-fs0.75", "logreg", 0)]  # configured, never reported
    write_extras(out / "metrics.csv", SimpleNamespace(**ex), expected=expected, config={})
    written = pd.read_csv(ex["paper_csv"])
    assert set(written["dataset"]) == {"pancreas"} and not any("." in m for m in written["method"])
    checks = pd.read_csv(ex["quality_csv"])
    # the quality check sees every record: the missing few-shot run is reported
    assert ((checks["check"] == "no result") & (checks["dataset"] == "pancreas-fs0.75")).any()
    assert "pancreas-fs0.75" in ex["quality_html"].read_text()


def test_markdown_html_renders_our_markdown():
    md = (
        "# Title\n\n| method | a / b |\n|:---|---:|\n| x\\|y | **0.9 ± 0.1** |\n| <u>z</u> | `n/a` |\n\n"
        "_no results configured_\n\nA note with <script>.\n"
    )
    page = markdown_html(md, title="t")
    assert "<h1>Title</h1>" in page
    assert '<td class="l">x|y</td><td class="r"><b>0.9 ± 0.1</b></td>' in page
    assert "<u>z</u>" in page and "<code>n/a</code>" in page and "<i>no results configured</i>" in page
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert page.count("<tr>") == 3  # header and two rows
