"""The report's significance stage: references resolved as configured, Holm per table, markers where
a method is shifted on every seed and not where it is identical, reasoned NaN for missing seeds,
ranks and the written files."""

import copy
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from scfmbench import InputError
from scfmbench.config import validate_config
from scfmbench.report import summary_table, to_markdown, write_report
from scfmbench.report.extras import write_extras
from scfmbench.report.significance import (
    SIG_COLUMNS,
    cell_markers,
    check_config,
    cliques,
    compare,
    complete_block,
    metric_higher_is_better,
    rank_table,
    references,
    significance_paths,
    write_significance,
)
from scfmbench.results import METRIC_COLUMNS
from scfmbench.stats import holm


@pytest.fixture(scope="module")
def cfg(schema_path_module):
    return validate_config({"datasets": {"pbmc68k": {"source": "pbmc68k"}}}, schema_path_module)["significance"]


@pytest.fixture(scope="module")
def schema_path_module():
    from conftest import REPO

    return REPO / "workflow" / "schemas" / "config.schema.yaml"


SEEDS = range(5)


def records(values: dict, task="annotation", metrics=("accuracy", "macro_f1")) -> pd.DataFrame:
    """values: (dataset, method) -> per-seed values (one array, used for every metric)."""
    rows = [
        dict(task=task, dataset=d, method=m, seed=s, metric=metric, value=float(v[i]), runtime_s=1.0, peak_mem_mb=1.0)
        for (d, m), v in values.items()
        for i, s in enumerate(SEEDS[: len(v)])
        for metric in metrics
    ]
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def grid() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    out = {}
    for d in ("d1", "d2"):
        full = rng.uniform(0.6, 0.8, 5)
        out[(d, "logreg")] = full - 0.2 + rng.normal(0, 0.02, 5)
        out[(d, "scgpt-full")] = full
        out[(d, "scgpt-genohoption-p")] = full + 0.05 + rng.normal(0, 1e-3, 5)  # shifted on every seed
        out[(d, "scgpt-genohoption-h")] = full.copy()  # identical to its backbone
        out[(d, "scgpt-longformer")] = full + rng.normal(0, 0.03, 5)
        out[(d, "scbert-performer")] = full - 0.01 + rng.normal(0, 0.03, 5)
    return records(out)


def test_references_resolved_as_configured(cfg):
    methods = [
        "logreg",
        "majority",
        "scgpt-full",
        "scgpt-genohoption-p",
        "scgpt-longformer",
        "scgpt-bigbird",
        "scbert-performer",
        "geneformer-genohoption-h",
        "geneformer-full",
        "scgpt-genohoption-p-nogrn",
        "scgpt-onehop",
    ]
    got = set(references(methods, "annotation", cfg))
    expected = {
        # backbone: every {backbone}-{attention} against {backbone}-full when both ran (scbert has no full run)
        ("backbone", "scgpt-genohoption-p", "scgpt-full"),
        ("backbone", "scgpt-longformer", "scgpt-full"),
        ("backbone", "scgpt-bigbird", "scgpt-full"),
        ("backbone", "geneformer-genohoption-h", "geneformer-full"),
        ("backbone", "scgpt-genohoption-p-nogrn", "scgpt-full"),
        ("backbone", "scgpt-onehop", "scgpt-full"),
        # paper (Table I): GenoHoption against the same backbone's efficient attentions and scBERT
        ("paper", "scgpt-genohoption-p", "scgpt-longformer"),
        ("paper", "scgpt-genohoption-p", "scgpt-bigbird"),
        ("paper", "scgpt-genohoption-p", "scbert-performer"),
        ("paper", "geneformer-genohoption-h", "scbert-performer"),
        # ablation (Table II): against GenoHoption-p
        ("ablation", "scgpt-genohoption-p-nogrn", "scgpt-genohoption-p"),
        ("ablation", "scgpt-onehop", "scgpt-genohoption-p"),
    } | {("control", m, "logreg") for m in methods if m != "logreg"}
    assert got == expected
    # Another task's control, and a custom rule.
    custom = {**cfg, "comparisons": [{"kind": "mine", "methods": ["magic"], "references": ["dca"]}]}
    assert set(references(["none", "magic", "dca"], "imputation", custom)) == {
        ("mine", "magic", "dca"),
        ("control", "magic", "none"),
        ("control", "dca", "none"),
    }
    assert references(["magic", "dca"], "imputation", cfg) == []  # no control ran: nothing to compare


def test_compare_markers_on_a_shift_not_on_identical(cfg):
    sig = compare(grid(), cfg)
    assert list(sig.columns) == SIG_COLUMNS
    row = sig.set_index(["dataset", "metric", "kind", "method", "reference"])
    shifted = row.loc[("d1", "accuracy", "backbone", "scgpt-genohoption-p", "scgpt-full")]
    assert shifted["n_pairs"] == 5 and shifted["mean_diff"] == pytest.approx(0.05, abs=2e-3)
    assert shifted["significant"] and shifted["direction"] == "better" and shifted["marker"] == "↑"
    same = row.loc[("d1", "accuracy", "backbone", "scgpt-genohoption-h", "scgpt-full")]
    assert same["t_p"] == 1.0 and same["wilcoxon_p"] == 1.0 and not same["significant"] and same["marker"] == ""
    # The five-seed exact Wilcoxon p is 0.0625 at best: never significant at 0.05, whatever Holm does.
    assert (sig["holm_wilcoxon_p"] >= 0.0625).all()
    # Holm within each (task, dataset, metric, kind) family, not across the whole table.
    for _, fam in sig.groupby(["task", "dataset", "metric", "kind"]):
        np.testing.assert_allclose(fam["holm_t_p"], holm(fam["t_p"]))
    fam = sig[(sig.dataset == "d1") & (sig.metric == "accuracy") & (sig.kind == "control")]
    assert len(fam) == 5 and fam["holm_t_p"].min() == pytest.approx(min(1.0, 5 * fam["t_p"].min()))
    # Markers in the summary table: the shifted row's cells only, against the backbone's full run.
    marks = cell_markers(sig, cfg, "annotation")
    assert marks[("d1", "scgpt-genohoption-p", "accuracy")] == "↑"
    assert ("d1", "scgpt-genohoption-h", "accuracy") not in marks
    md = to_markdown(summary_table(grid(), "annotation"), markers=marks)
    lines = {line.split("|")[1].strip(): line for line in md.splitlines()[2:]}
    assert lines["scgpt-genohoption-p"].count("↑") == 4  # 2 datasets x 2 metrics
    assert "↑" not in lines["scgpt-genohoption-h"] and "↓" not in lines["scgpt-genohoption-h"]


def test_lower_is_better_metric_marks_worse(cfg):
    y = np.array([0.10, 0.12, 0.11, 0.13, 0.09])
    m = records(
        {("d1", "none"): y, ("d1", "magic"): y + 0.05 + np.array([1, -1, 0, 1, -1]) * 1e-3},
        task="imputation",
        metrics=("mse",),
    )
    r = compare(m, cfg).iloc[0]
    assert (r["method"], r["reference"], r["kind"]) == ("magic", "none", "control")
    assert r["direction"] == "worse" and r["marker"] == "↓"
    assert not metric_higher_is_better("mse_de:combo_seen1") and metric_higher_is_better("pearson_delta:all")


def test_missing_seeds_give_a_reasoned_nan(cfg):
    m = records({("d1", "logreg"): [0.5, 0.6, 0.55], ("d1", "majority"): [0.3]}, metrics=("accuracy",))
    r = compare(m, cfg).iloc[0]
    assert r["n_pairs"] == 1 and np.isnan(r["t_p"]) and np.isnan(r["holm_t_p"]) and not r["significant"]
    assert "needs at least 2" in r["note"]
    # Pairs are by seed: two seeds in common of three and two.
    m = records({("d1", "logreg"): [0.5, 0.6, 0.55], ("d1", "majority"): [0.3, 0.35]}, metrics=("accuracy",))
    assert compare(m, cfg).iloc[0]["n_pairs"] == 2


def test_config_checks_name_their_key(cfg):
    bad = {**cfg, "markers": ["backbone", "nope"]}
    with pytest.raises(InputError, match=r"significance\.markers.*nope"):
        check_config(bad)
    twice = {**cfg, "comparisons": cfg["comparisons"] + [copy.deepcopy(cfg["comparisons"][0])]}
    with pytest.raises(InputError, match=r"significance\.comparisons"):
        check_config(twice)


def test_unknown_significance_key_is_a_schema_error(schema_path_module):
    with pytest.raises(InputError, match=r"'significance.controls': unknown key\(s\) \['embeding'\]"):
        validate_config(
            {"datasets": {"pbmc68k": {"source": "pbmc68k"}}, "significance": {"controls": {"embeding": "pca"}}},
            schema_path_module,
        )
    cfg = validate_config(
        {"datasets": {"pbmc68k": {"source": "pbmc68k"}}, "significance": {"controls": {"annotation": "majority"}}},
        schema_path_module,
    )
    assert cfg["significance"]["controls"] == {
        **cfg["significance"]["controls"],
        "annotation": "majority",
        "imputation": "none",
    }


def test_ranks_complete_block_and_cliques(cfg):
    scores = pd.DataFrame(
        {"a": [1, 2, 3, np.nan], "b": [1, 2, 3, 4], "c": [1, 2, np.nan, np.nan], "d": [np.nan, np.nan, np.nan, 1.0]},
        index=["d1", "d2", "d3", "d4"],
    )
    block, drop_d, drop_m = complete_block(scores)
    # d (3 of 4 missing) goes first, then d4 (2 of 3); then d3 and c tie at 1 of 3: the dataset goes.
    assert list(block.columns) == ["a", "b", "c"] and list(block.index) == ["d1", "d2"]
    assert drop_d == ["d4", "d3"] and drop_m == ["d"]
    avg = pd.Series({"w": 1.0, "x": 1.5, "y": 3.0, "z": 3.2})
    assert cliques(avg, 1.0) == [(0, 1), (2, 3)]
    assert cliques(avg, 2.1) == [(0, 2), (1, 3)]
    assert cliques(avg, 0.1) == []
    ranks = rank_table(grid(), cfg)
    main = ranks[ranks["main"]]
    assert set(main["metric"]) == {"macro_f1"} and set(ranks["metric"]) == {"accuracy", "macro_f1"}
    assert (main["n_datasets"] == 2).all() and (main["n_methods"] == 6).all()
    assert main["mean_rank"].sum() == pytest.approx(6 * 7 / 2)  # ranks 1..6 on each dataset
    assert main.set_index("method").loc["logreg", "mean_rank"] == 6.0  # 0.2 below everyone


def test_write_significance_and_table_markers(cfg, tmp_path):
    m = grid()
    paths = significance_paths(tmp_path)
    write_significance(m, {k: str(v) for k, v in paths.items()}, config=cfg)
    for p in paths.values():
        assert p.stat().st_size > 0
    sig = pd.read_csv(paths["csv"])
    assert len(sig) == len(compare(m, cfg)) and set(sig["kind"]) == {"backbone", "paper", "control"}
    assert "scgpt-genohoption-p" in paths["md"].read_text() and "<table>" in paths["html"].read_text()
    assert "Friedman" in paths["ranks_md"].read_text()
    # The summary table and the paper table carry the markers when the config block is given.
    f = tmp_path / "m.csv"
    m.to_csv(f, index=False)
    write_report([f], tmp_path / "rep", tasks=("annotation",), significance=cfg)
    table = (tmp_path / "rep" / "annotation_table.md").read_text()
    assert "↑" in table and "Holm" in table
    write_report([f], tmp_path / "plain", tasks=("annotation",))
    assert "↑" not in (tmp_path / "plain" / "annotation_table.md").read_text()
    names = ("paper_md", "paper_csv", "reported_md", "quality_md", "quality_csv", "provenance")
    out = SimpleNamespace(**{n: str(tmp_path / f"{n}.txt") for n in names})
    write_extras(tmp_path / "rep" / "metrics.csv", out, expected=[], config={"significance": cfg})
    paper = (tmp_path / "paper_md.txt").read_text()
    row = next(line for line in paper.splitlines() if line.startswith("| scgpt-genohoption-p "))
    assert row.count("↑") == 4 and "↑ / ↓" in paper


def test_empty_metrics_write_every_file(cfg, tmp_path):
    paths = significance_paths(tmp_path)
    write_significance(pd.DataFrame(columns=METRIC_COLUMNS), paths, config=cfg)
    assert "no results configured" in paths["md"].read_text()
    assert paths["cd_png"].stat().st_size > 0 and pd.read_csv(paths["csv"]).empty
