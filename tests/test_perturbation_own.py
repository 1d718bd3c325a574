"""Your own perturbation screen (``source: h5ad`` in ``perturbation.datasets``): the three label
conventions and log-normalized input give one GEARS layout, through the workflow too; genes outside
the panel, thin screens and absent subgroups give messages that name what is missing; every option a
perturbation method accepts is in the schema and back; GEARS' other screens dry-run."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from conftest import REPO

from scfmbench import InputError

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# A small screen: 60 genes, 8 singles, 6 combos; 1500 counts per cell, so that every cell has a
# count of 1 and the log-normalized copy inverts exactly (recover_counts' check).
SCREEN = dict(n_genes=60, n_singles=8, n_combos=6, cells_per_condition=10, n_control=40, seed=0, mean_library_size=1500)
# (convention, obs column, control label, how two genes are joined)
CONVENTIONS = [
    ("gears", "condition", "ctrl", "+"),
    ("scperturb", "perturbation", "control", "_"),
    ("perturbench", "condition", "control", "+"),
]


def relabel(condition: str, convention: str) -> str:
    """A GEARS condition in another convention's terms, written out by hand from each one's docs."""
    if condition == "ctrl":
        return "ctrl" if convention == "gears" else "control"
    genes = [g for g in condition.split("+") if g != "ctrl"]
    return condition if convention == "gears" else ("_" if convention == "scperturb" else "+").join(genes)


@pytest.fixture(scope="module")
def screen():
    from scfmbench.data.synthetic import simulate_perturbseq

    sim = simulate_perturbseq(**SCREEN)
    return (
        sp.csr_matrix(sim.layers["counts"]),
        sim.obs["condition"].astype(str).to_numpy(),
        sim.var_names.astype(str).to_numpy(),
    )


def log1p_per_1e4(counts) -> np.ndarray:
    """GEARS' preprocessing, by hand: each cell scaled to 1e4 counts, then natural log1p."""
    c = np.asarray(counts.toarray(), dtype=np.float64)
    return np.log1p(c / c.sum(1, keepdims=True) * 1e4)


def write_screen(path, screen, convention: str, *, log: bool = False, column: str | None = None) -> str:
    counts, conditions, genes = screen
    col = column or dict((c[0], c[1]) for c in CONVENTIONS)[convention]
    obs = pd.DataFrame(
        {col: [relabel(c, convention) for c in conditions], "cell_line": "K562"},
        index=[f"cell{i}" for i in range(len(conditions))],
    )
    X = sp.csr_matrix(log1p_per_1e4(counts).astype(np.float32)) if log else counts
    ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)
    return str(path)


def entry(path, convention: str | None, *, log: bool = False, **screen) -> dict:
    return {
        "source": "h5ad",
        "path": str(path),
        "recover_counts": log,
        "label_column": "cell_line",
        "screen": {"convention": convention, **screen},
    }


def layout_fingerprint(adata) -> dict:
    """What GEARS reads: X, conditions, and every uns ranking keyed by condition (not by name)."""
    from scfmbench.perturbation.data import UNS_KEYS

    to_cond = dict(zip(adata.obs["condition_name"].astype(str), adata.obs["condition"].astype(str)))
    return {
        "X": np.asarray(adata.X.toarray()),
        "obs": adata.obs[["condition", "cell_type", "condition_name", "dose_val", "control"]].astype(str).to_numpy(),
        **{k: {to_cond[n]: list(np.asarray(v).astype(str)) for n, v in adata.uns[k].items()} for k in UNS_KEYS},
    }


def test_three_conventions_counts_and_log_give_one_gears_layout(screen, tmp_path):
    from scfmbench.perturbation.data import check_perturbation_data
    from scfmbench.perturbation.sources import load_perturbation_dataset

    counts, conditions, genes = screen
    got = {}
    for convention, *_ in CONVENTIONS:
        for log in (False, True):
            path = write_screen(tmp_path / f"{convention}{log}.h5ad", screen, convention, log=log)
            adata = load_perturbation_dataset("mine", entry(path, convention, log=log))
            check_perturbation_data(adata, where="own screen")
            got[convention, log] = layout_fingerprint(adata)
            assert adata.uns["perturbation_source"]["counts"] == ("X (counts recovered from log1p)" if log else "X")
    ref = got["gears", False]
    # independent references: GEARS' normalization by hand, the simulator's own GEARS labels, the cell line
    np.testing.assert_allclose(ref["X"], log1p_per_1e4(counts), rtol=1e-5, atol=1e-5)
    assert list(ref["obs"][:, 0]) == list(conditions) and set(ref["obs"][:, 1]) == {"K562"}
    assert {c for c in conditions if c.count("+") and "ctrl" not in c} and set(ref["rank_genes_groups_cov_all"]) == set(
        conditions
    ) - {"ctrl"}
    for key, other in got.items():
        np.testing.assert_allclose(other["X"], ref["X"], rtol=1e-6, atol=1e-6, err_msg=str(key))
        assert (other["obs"] == ref["obs"]).all(), key
        for k in ref:
            if k not in ("X", "obs"):
                assert other[k] == ref[k], (key, k)


def test_user_named_column_control_and_separator(screen, tmp_path):
    """No convention: the user's own column, control label and separator ('|')."""
    from scfmbench.perturbation.sources import load_perturbation_dataset

    counts, conditions, genes = screen
    obs = pd.DataFrame(
        {
            "guide_target": [
                "NT" if c == "ctrl" else "|".join(g for g in c.split("+") if g != "ctrl") for c in conditions
            ]
        }
    )
    obs.index = [f"c{i}" for i in range(len(obs))]
    ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(tmp_path / "own.h5ad")
    cfg = {
        "source": "h5ad",
        "path": str(tmp_path / "own.h5ad"),
        "screen": {"condition_column": "guide_target", "control": "NT", "separator": "|"},
    }
    adata = load_perturbation_dataset("own", cfg)
    assert list(adata.obs["condition"]) == list(conditions) and set(adata.obs["cell_type"]) == {"cells"}
    assert adata.uns["perturbation_source"]["convention"] == "own"
    # a declared convention with its keys overridden: the user's terms win
    over = load_perturbation_dataset("own", {**cfg, "screen": {**cfg["screen"], "convention": "perturbench"}})
    assert list(over.obs["condition"]) == list(conditions) and over.uns["perturbation_source"]["separator"] == "|"
    with pytest.raises(InputError, match=r"declare the file's convention .* or name \['control', 'separator'\]"):
        load_perturbation_dataset("own", {**cfg, "screen": {"condition_column": "guide_target"}})


# --- thin data and bad labels: each message names what is missing ---------------------------------
MESSAGES: dict[str, str] = {}  # case -> the message, for the report (printed with -s)


def message(case: str, fn, match: str) -> str:
    with pytest.raises(InputError, match=match) as err:
        fn()
    MESSAGES[case] = str(err.value)
    print(f"\n[{case}] {err.value}")
    return str(err.value)


def panel_screen(tmp_path, screen, n_missing: int = 3):
    """The screen with its first ``n_missing`` perturbed genes removed from the panel."""
    counts, conditions, genes = screen
    perturbed = sorted({g for c in conditions for g in c.split("+") if g != "ctrl"})
    gone = perturbed[:n_missing]
    keep = ~np.isin(genes, gone)
    obs = pd.DataFrame(
        {"perturbation": [relabel(c, "scperturb") for c in conditions]}, index=[f"c{i}" for i in range(len(conditions))]
    )
    ad.AnnData(X=counts[:, np.flatnonzero(keep)], obs=obs, var=pd.DataFrame(index=genes[keep])).write_h5ad(
        tmp_path / "panel.h5ad"
    )
    # by hand: conditions and cells per missing gene
    expected = {
        g: (len({c for c in conditions if g in c.split("+")}), int(sum(g in c.split("+") for c in conditions)))
        for g in gone
    }
    return str(tmp_path / "panel.h5ad"), expected


def test_genes_outside_the_panel_are_listed_every_one_and_can_be_dropped(screen, tmp_path):
    from scfmbench.perturbation.sources import load_perturbation_dataset

    path, expected = panel_screen(tmp_path, screen)
    cfg = {"source": "h5ad", "path": path, "screen": {"convention": "scperturb"}}
    text = message(
        "genes outside the panel",
        lambda: load_perturbation_dataset("crispra", cfg),
        r"3 perturbed gene\(s\) are not in the panel",
    )
    for g, (n_cond, n_cells) in expected.items():
        assert f"{g} ({n_cond} condition{'s' * (n_cond != 1)}, {n_cells} cells)" in text
    assert "drop_outside_panel: true" in text and "datasets.crispra" in text
    adata = load_perturbation_dataset(
        "crispra", {**cfg, "screen": {"convention": "scperturb", "drop_outside_panel": True}}
    )
    dropped = adata.uns["perturbation_source"]["dropped_outside_panel"]
    assert list(dropped["genes"]) == list(expected) and list(dropped["gene_cells"]) == [v[1] for v in expected.values()]
    assert list(dropped["gene_conditions"]) == [v[0] for v in expected.values()]
    gone_conditions = {c for c in screen[1] if set(c.split("+")) & set(expected)}
    assert int(dropped["cells"]) == sum(c in gone_conditions for c in screen[1])
    assert (
        not set(adata.obs["condition"]) & gone_conditions
        and set(adata.obs["condition"]) == set(screen[1]) - gone_conditions
    )
    adata.write_h5ad(tmp_path / "dropped.h5ad")  # the record survives the layout file
    again = ad.read_h5ad(tmp_path / "dropped.h5ad").uns["perturbation_source"]["dropped_outside_panel"]
    assert list(again["genes"]) == list(expected) and int(again["cells"]) == int(dropped["cells"])


def test_bad_labels_name_every_label(screen, tmp_path):
    from scfmbench.perturbation.own import CONVENTIONS as CONV
    from scfmbench.perturbation.own import to_gears

    labels = ["control", "A", "A_B", "A_B_C", "C_C", "control"]
    text = message("labels", lambda: to_gears(labels, CONV["scperturb"], where="datasets.x"), r"2 label\(s\)")
    assert "'A_B_C' (1 cell)" in text and "'C_C' (1 cell)" in text
    assert list(to_gears(labels[:3], CONV["scperturb"], where="x")) == ["ctrl", "A+ctrl", "A+B"]
    assert list(to_gears(["control", "A+control", "ctrl+B"], CONV["perturbench"], where="x")) == [
        "ctrl",
        "A+ctrl",
        "ctrl+B",
    ]
    message(
        "no control",
        lambda: to_gears(["A", "B"], CONV["perturbench"], where="datasets.x"),
        r"no control cells: no obs\['condition'\] label equals 'control'",
    )


def tiny_adata(conditions: dict[str, int], genes=("A", "B", "C", "D", "E"), seed: int = 0):
    rng = np.random.default_rng(seed)
    cond = [c for c, n in conditions.items() for _ in range(n)]
    X = rng.poisson(2.0, (len(cond), len(genes))).astype(np.float32)
    adata = ad.AnnData(
        X=np.log1p(X),
        obs=pd.DataFrame({"condition": cond}, index=[f"c{i}" for i in range(len(cond))]),
        var=pd.DataFrame(index=list(genes)),
    )
    adata.var["gene_name"] = list(genes)
    return adata


def test_thin_screens_name_dataset_seed_and_what_is_missing():
    from scfmbench.perturbation import predict
    from scfmbench.perturbation.split import Split, make_split

    # one in-panel condition: GEARS' split puts it in test, nothing perturbed in training
    message(
        "split without a perturbed training condition",
        lambda: make_split(["ctrl", "A+ctrl"], seed=3, dataset="crispra"),
        r"perturbation dataset 'crispra', seed 3: .* puts no perturbed condition in training \(1 perturbed "
        r"condition\(s\) on 1 gene\(s\)",
    )
    adata = tiny_adata({"ctrl": 20, "A+ctrl": 5, "B+ctrl": 5, "A+B": 5})
    controls_only = Split(
        {"ctrl": "train", "A+ctrl": "test", "B+ctrl": "test", "A+B": "test"}, {}, {"dataset": "crispra"}
    )
    message(
        "train_mean without perturbed training cells",
        lambda: predict("train_mean", adata, controls_only, seed=1),
        r"train_mean on perturbation dataset 'crispra', seed 1: no perturbed training cell to average",
    )
    combos_only = Split(
        {"ctrl": "train", "A+B": "train", "A+ctrl": "test", "B+ctrl": "test"}, {}, {"dataset": "crispra"}
    )
    message(
        "additive without training singles",
        lambda: predict("additive", adata, combos_only, seed=2),
        r"additive on perturbation dataset 'crispra', seed 2: no single-gene perturbation in training",
    )
    one = Split({"ctrl": "train", "A+ctrl": "train", "B+ctrl": "test", "A+B": "test"}, {}, {"dataset": "crispra"})
    message(
        "linear with one training condition",
        lambda: predict("linear", adata, one, seed=4),
        r"linear on perturbation dataset 'crispra', seed 4: 1 perturbed training condition\(s\); the "
        r"linear model needs two or more",
    )
    no_val = Split({"ctrl": "train", "A+ctrl": "train", "B+ctrl": "test", "A+B": "test"}, {}, {"dataset": "crispra"})
    message(
        "generator without a validation condition",
        lambda: predict("scgpt-full", adata, no_val, seed=5, params={"epochs": 1}),
        r"scgpt-full on perturbation dataset 'crispra', seed 5: no validation condition",
    )


def test_linear_records_its_fallback_to_the_mean():
    """A condition whose gene is not expressed, or at one level in every cell (float32 X: its row of
    Y - b is round-off, not zero), has no embedding: its prediction is b (the mean training
    pseudobulk, computed here by hand) and the run record lists it; others do not fall back."""
    from scfmbench.perturbation import predict
    from scfmbench.perturbation.split import Split

    for level in (0.0, 0.7):  # gene E never expressed; expressed at 0.7 in every cell
        adata = tiny_adata({"ctrl": 20, "A+ctrl": 6, "B+ctrl": 7, "C+ctrl": 5, "E+ctrl": 6, "D+ctrl": 6})
        adata.X[:, 4] = level
        split = Split(
            {
                "ctrl": "train",
                "A+ctrl": "train",
                "B+ctrl": "train",
                "C+ctrl": "train",
                "E+ctrl": "test",
                "D+ctrl": "test",
            },
            {},
            {"dataset": "d"},
        )
        conds, means, record = predict("linear", adata, split, seed=0)
        cond = adata.obs["condition"].to_numpy()
        b = np.mean([adata.X[cond == c].mean(0) for c in ("A+ctrl", "B+ctrl", "C+ctrl")], axis=0)
        assert (
            conds == ["D+ctrl", "E+ctrl"]
            and record["fallback_to_mean"] == ["E+ctrl"]
            and record["n_fallback_to_mean"] == 1
        ), level
        np.testing.assert_allclose(means[1], b, atol=1e-5)
        assert np.abs(means[0] - b).max() > 1e-3


def test_tables_show_seeds_per_row_and_absent_subgroups():
    from scfmbench.report.perturbation import summary, to_markdown

    rows = []
    for seed in (0, 1, 2):
        for method in ("train_mean", "linear"):
            rows.append(("perturbation", "d", method, seed, "pearson_delta:all", 0.5 + seed / 10))
            if seed == 1:  # only seed 1 drew a combo_seen1 condition
                rows.append(("perturbation", "d", method, seed, "pearson_delta:combo_seen1", 0.3))
            rows.append(("perturbation", "d", method, seed, "pearson_delta:unseen_single", 0.4))
    df = pd.DataFrame(rows, columns=["task", "dataset", "method", "seed", "metric", "value"])
    text = to_markdown(summary(df))
    block = text.split("### d: combo_seen1")[1].split("###")[0]
    assert "| train_mean | 1/3 | 0.300 |" in block
    assert "| linear | 3/3 | 0.600 ± 0.100 |" in text.split("### d: all")[1].split("###")[0]
    for absent in ("combo_seen0", "combo_seen2"):
        assert re.search(rf"### d: {absent}\n\nabsent: no seed's split has a {absent} test condition", text)
    assert "### d: unseen_single" in text and "absent: no seed's split has a unseen_single" not in text


# --- item 4: every option a perturbation method accepts is in the schema, and back ------------------
def accepted_options() -> dict[str, dict]:
    """method -> {option: code default}, read from the code (signatures, dataclass fields)."""
    import dataclasses

    from scfmbench.models.scgpt_generator import GeneratorConfig
    from scfmbench.perturbation.generator import _TRAIN_KEYS, TRAIN_DEFAULTS
    from scfmbench.perturbation.methods import BUILTIN_PREDICTORS, get_predictor

    out = {}
    for name in BUILTIN_PREDICTORS:
        params = inspect.signature(get_predictor(name)).parameters.values()
        out[name] = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name != "seed"}
    model = {
        f.name: f.default
        for f in dataclasses.fields(GeneratorConfig)
        if f.name not in ("n_genes", "attention", "attention_config")
    }
    out["scgpt"] = {**model, **{k: TRAIN_DEFAULTS[k] for k in _TRAIN_KEYS}, "kernel_config": {}}
    return out


def test_schema_lists_every_option_each_perturbation_method_accepts_and_no_other():
    props = yaml.safe_load(SCHEMA.read_text())["properties"]["perturbation"]["properties"]["params"]["properties"]
    code = accepted_options()
    assert set(props) == set(code)
    for method, options in code.items():
        schema = props[method]
        assert schema["additionalProperties"] is False and schema["description"], method
        assert set(schema["properties"]) == set(options), (method, set(schema["properties"]) ^ set(options))
        for key, default in options.items():
            sub = schema["properties"][key]
            assert sub["description"], (method, key)
            # the schema's default is the code's (dropout: null = the code's own, or the checkpoint's)
            assert sub["default"] == default or (method, key, sub["default"]) == ("scgpt", "dropout", None), (
                method,
                key,
                sub["default"],
                default,
            )


def test_every_schema_option_is_accepted_by_its_method(tmp_path):
    """Each built-in run with every schema option at its schema default (the schema fills them)."""
    from scfmbench.config import validate_config
    from scfmbench.perturbation import method_params, predict
    from scfmbench.perturbation.split import make_split

    cfg = validate_config(
        {
            "datasets": {"pbmc68k": {"source": "pbmc68k"}, "p": {"source": "synthetic_perturb"}},
            "perturbation": {"datasets": ["p"]},
        },
        SCHEMA,
    )
    adata = tiny_adata({"ctrl": 12, **{f"{g}+ctrl": 4 for g in "ABCDE"}, "A+B": 4, "C+D": 4})
    split = make_split(adata.obs["condition"].unique(), seed=0, dataset="p")
    for method in ("no_change", "train_mean", "additive", "linear"):
        params = method_params(cfg, method)
        assert set(params) == set(accepted_options()[method])
        predict(method, adata, split, seed=0, params=params)
    params = method_params(cfg, "scgpt-full")
    assert set(params) == set(accepted_options()["scgpt"])
    assert split.conditions("val")  # 5 genes: 3 drawn for training, 1 of them to validation
    predict("scgpt-full", adata, split, seed=0, params={**params, "epochs": 1})
    with pytest.raises(InputError, match="max_steps"):
        validate_config(
            {
                "datasets": {"pbmc68k": {"source": "pbmc68k"}, "p": {"source": "synthetic_perturb"}},
                "perturbation": {"datasets": ["p"], "params": {"scgpt": {"max_steps": 5}}},
            },
            SCHEMA,
        )


# --- item 5: GEARS' other screens ------------------------------------------------------------------
def test_gears_screens_are_checksummed_manifest_entries_as_pertdata_names_them():
    from scfmbench.data.manifest import load_manifest
    from scfmbench.data.sources import SOURCES
    from scfmbench.perturbation.sources import GEARS_SCREENS

    manifest = load_manifest(REPO / "config" / "manifest.yaml")
    # gears/pertdata.py PertData.load: the Dataverse file of each name (read from GEARS' code)
    urls = {
        "dixit": "6154416",
        "replogle_k562_essential": "7458695",
        "replogle_rpe1_essential": "7458694",
        "adamson": "6154417",
        "norman": "6154020",
    }
    for source, name in GEARS_SCREENS.items():
        (file,) = SOURCES[source].entries
        assert manifest[file].url == f"https://dataverse.harvard.edu/api/access/datafile/{urls[name]}"
        assert (
            manifest[file].format == "zip"
        )  # sha256 recorded on first download (trust on first use), as Adamson's and Norman's


def test_extended_paper_grid_dry_runs():
    """config/paper_extended.yaml over config/paper.yaml: the five GEARS screens, each downloaded,
    laid out, split, run and scored once (the perturbation table's jobs only)."""
    from test_paper_config import dry_run, job_stats

    jobs = job_stats(
        dry_run("config/paper_extended.yaml", "--cores", "1", "--", "results/report/perturbation_table.md")
    )
    screens = ("adamson", "norman", "dixit", "replogle_k562", "replogle_rpe1")
    for screen in screens:
        assert jobs[f"perturb_score_{screen}"] == 1 and jobs[f"perturb_controls_{screen}"] == 1, jobs
    assert jobs["perturb_data"] == jobs["download_file"] == jobs["perturb_split"] == len(screens), jobs


# --- end to end: every convention, counts and log-normalized, and docs/perturbation.md's example ---
def readme_blocks() -> tuple[str, dict]:
    """The python and yaml blocks of docs/perturbation.md "Your own perturbation screen"."""
    text = (
        (REPO / "docs" / "perturbation.md")
        .read_text()
        .split("## Your own perturbation screen", 1)[1]
        .split("\n## ", 1)[0]
    )
    python = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    return python, config


@pytest.mark.slow
def test_workflow_gives_identical_layouts_and_metrics_in_every_convention(screen, tmp_path):
    """One screen in three conventions x counts / log-normalized (docs/perturbation.md's example is the
    scPerturb counts copy: the same simulation) through perturb_data, perturb_split, the controls and
    baselines, scoring and the table: one GEARS layout, one set of metrics."""
    from test_workflow import copy_workflow

    from scfmbench.perturbation.data import UNS_KEYS

    wd = copy_workflow(tmp_path)
    (wd / "data").mkdir()
    python, example = readme_blocks()
    subprocess.run([sys.executable, "-c", python], cwd=wd, check=True)
    datasets = {}
    for convention, *_ in CONVENTIONS:
        for log in (False, True):
            name = f"{convention}_{'log' if log else 'counts'}"
            if name == "scperturb_counts":  # docs/perturbation.md's my_screen
                continue
            datasets[name] = entry(
                write_screen(wd / "data" / f"{name}.h5ad", screen, convention, log=log), convention, log=log
            )
    cfg = {
        "seeds": [0, 1],
        "datasets": {**datasets, **example["datasets"]},
        "perturbation": {**example["perturbation"], "datasets": [*datasets, *example["perturbation"]["datasets"]]},
    }
    (wd / "config" / "own.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "2", "--configfile", "config/own.yaml", "--", "results/report/perturbation_table.md"],
        cwd=wd,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = list(cfg["perturbation"]["datasets"])
    layouts = {n: layout_fingerprint(ad.read_h5ad(wd / "results" / "perturbation" / n / "data.h5ad")) for n in names}
    ref = layouts["gears_counts"]
    assert len(names) == 6 and np.array_equal(
        ad.read_h5ad(wd / "data" / "my_screen.h5ad").X.toarray(), screen[0].toarray()
    )
    for n in names:
        np.testing.assert_allclose(layouts[n]["X"], ref["X"], rtol=1e-6, atol=1e-6, err_msg=n)
        assert (
            all(layouts[n][k] == ref[k] for k in UNS_KEYS)
            and (layouts[n]["obs"][:, [0, 2]] == ref["obs"][:, [0, 2]]).all()
        ), n
    metrics = pd.concat([pd.read_csv(p) for p in (wd / "results" / "perturbation").glob("*/*/seed*/metrics.csv")])
    assert set(metrics["dataset"]) == set(names) and set(metrics["method"]) == set(example["perturbation"]["methods"])
    wide = metrics.pivot_table(index=["method", "seed", "metric"], columns="dataset", values="value")
    assert wide.notna().all().all() and len(wide) > 50
    np.testing.assert_allclose(
        wide.to_numpy(), wide[["gears_counts"]].to_numpy().repeat(len(names), axis=1), rtol=1e-6, atol=1e-6
    )
    table = (wd / "results" / "report" / "perturbation_table.md").read_text()
    assert "### my_screen: all" in table and "| linear | 2/2 |" in table
    # the file is a rule input: editing it in place reruns its dataset's layout and what follows
    import os

    mine = wd / "data" / "my_screen.h5ad"
    edited = ad.read_h5ad(mine)
    edited.X = edited.X.copy()
    edited.X.data[0] += 1  # the user fixes a count
    edited.write_h5ad(mine)
    os.utime(mine, (mine.stat().st_atime + 5, mine.stat().st_mtime + 5))
    dry = subprocess.run(
        [
            *SNAKEMAKE,
            "-n",
            "--cores",
            "1",
            "--configfile",
            "config/own.yaml",
            "--",
            "results/report/perturbation_table.md",
        ],
        cwd=wd,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0 and "my_screen/data.h5ad" in dry.stdout and "gears_counts/data.h5ad" not in dry.stdout, (
        dry.stdout[-2000:]
    )


def test_config_accepts_an_h5ad_screen_only_with_its_terms(tmp_path):
    from scfmbench.config import validate_config
    from scfmbench.perturbation import check_config

    def config(screen):
        ds = {"pbmc68k": {"source": "pbmc68k"}, "mine": {"source": "h5ad", "path": "mine.h5ad", "screen": screen}}
        return validate_config({"datasets": ds, "perturbation": {"datasets": ["mine"]}}, SCHEMA)

    check_config(config({"convention": "perturbench"}), tmp_path)
    check_config(config({"condition_column": "guide", "control": "NT", "separator": "|"}), tmp_path)
    message(
        "screen without its terms",
        lambda: check_config(config({}), tmp_path),
        r"datasets.mine.screen': declare the file's convention .* or name "
        r"\['condition_column', 'control', 'separator'\]",
    )
    with pytest.raises(InputError, match="screen.convention"):
        validate_config(
            {
                "datasets": {
                    "pbmc68k": {"source": "pbmc68k"},
                    "m": {"source": "h5ad", "path": "m.h5ad", "screen": {"convention": "scanpy"}},
                }
            },
            SCHEMA,
        )
