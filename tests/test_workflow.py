"""End to end: the whole workflow on a tiny config in a temporary copy, plus a baseline added as one
rule file and one config entry, found in the report without any other edit."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TOY_RULE = textwrap.dedent(
    """
    rule annotate_nearest_centroid:
        input:
            prepared=PREPARED,
        output:
            predictions=annotation_output("nearest_centroid"),
        log:
            annotation_log("nearest_centroid"),
        benchmark:
            annotation_benchmark("nearest_centroid")
        run:
            from sklearn.neighbors import NearestCentroid

            from scfmbench.annotation import write_predictions
            from scfmbench.data.contract import read_prepared

            adata = read_prepared(input.prepared)
            train = (adata.obs["split"] == "train").to_numpy()
            test = (adata.obs["split"] == "test").to_numpy()
            model = NearestCentroid().fit(adata.X[train], adata.obs["cell_type"].astype(str)[train])
            write_predictions(adata.obs_names[test], model.predict(adata.X[test]), output.predictions)
    """
)

# The perturbation example of docs/extending.md ("Adding a perturbation method"): one rule file, one config entry.
PERTURB_RULE = textwrap.dedent(
    '''
    rule perturb_ctrl_plus_half:
        input:
            data=PERTURB_DATA,
            split=PERTURB_SPLIT,
        output:
            predictions=perturb_output("ctrl_plus_half"),
        log:
            perturb_log("ctrl_plus_half"),
        benchmark:
            perturb_benchmark("ctrl_plus_half")
        run:
            from scfmbench.perturbation import run_method
            from scfmbench.perturbation.methods import control_mean, register_predictor, train_cells, mean_of

            @register_predictor("ctrl_plus_half")
            def ctrl_plus_half(adata, split, conditions, *, seed):
                """Halfway between the control mean and the mean perturbed training cell."""
                ctrl = control_mean(adata)
                perturbed = mean_of(adata, train_cells(adata, split) & (adata.obs["condition"] != "ctrl").to_numpy())
                return [(ctrl + perturbed) / 2] * len(conditions)

            run_method("ctrl_plus_half", input.data, input.split, output.predictions, seed=int(wildcards.seed))
    '''
)

TINY = {
    "seeds": [0],
    "datasets": {
        "pbmc68k": {"source": "pbmc68k", "min_library_size": 0},
        "synthetic": {
            "source": "synthetic",
            "synthetic": {"n_cells": 400, "n_genes": 80, "n_cell_types": 4, "seed": 0},
            "min_library_size": 0,
        },
        "perturb_tiny": {
            "source": "synthetic_perturb",
            "perturbseq": {"n_genes": 60, "n_singles": 10, "n_combos": 8, "cells_per_condition": 12, "n_control": 60},
        },
    },
    "perturbation": {
        "datasets": ["perturb_tiny"],
        "methods": ["no_change", "train_mean", "oracle", "scgpt-genohoption-p", "ctrl_plus_half"],
        "params": {"scgpt": {"epochs": 1, "valid_cells": 16, "predict_cells": 4}},
    },
    "annotation": {
        "datasets": ["pbmc68k", "synthetic"],
        "methods": ["majority", "logreg", "scgpt-full", "scgpt-genohoption-p", "nearest_centroid"],
    },
    # One few-shot fraction and one value of each option GenoHoption-p takes: the study grids' plumbing.
    "fewshot": {"datasets": ["synthetic"], "methods": ["logreg"], "fractions": [0.5]},
    "sensitivity": {"datasets": ["synthetic"], "methods": ["scgpt-genohoption-p"], "alpha": [0.1], "k": [2]},
    "imputation": {"datasets": ["pbmc68k", "synthetic"], "methods": ["none", "magic"]},
    # The pretraining stage's plumbing: one backbone x MAM, a few steps, then a short fine-tuning.
    "pretraining": {
        "datasets": ["synthetic"],
        "backbones": ["scgpt"],
        "strategies": ["mam"],
        "steps": 3,
        "finetune": {"max_steps": 4},
        "scratch": False,  # config/cpu.yaml runs the scratch twins; the plumbing is the same
    },
    "params": {
        "scgpt": {
            "d_model": 32,
            "n_layers": 1,
            "n_heads": 2,
            "epochs": 6,
            "max_steps": 90,
            "batch_size": 8,
            "patience": 6,
        }
    },
    # The sweep has its own tests (test_profile.py); here two small points keep the report's inputs real.
    "profile": {"mechanisms": ["full", "genohoption-p"], "lengths": [64], "passes": ["forward"], "repeats": 2},
}


def copy_workflow(dest: Path) -> Path:
    for item in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    return dest


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SNAKEMAKE, "--cores", "2", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("wf"))
    (wd / "workflow" / "rules" / "methods" / "nearest_centroid.smk").write_text(TOY_RULE)
    (wd / "workflow" / "rules" / "methods" / "ctrl_plus_half.smk").write_text(PERTURB_RULE)
    (wd / "config" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run(wd, "--configfile", "config/tiny.yaml")
    return wd


@pytest.mark.slow
def test_every_job_reports(workflow_run):
    metrics = pd.read_csv(workflow_run / "results" / "report" / "metrics.csv")
    assert list(metrics.columns) == ["task", "dataset", "method", "seed", "metric", "value", "runtime_s", "peak_mem_mb"]
    for task, cfg in (("annotation", TINY["annotation"]), ("imputation", TINY["imputation"])):
        main = metrics[
            (metrics.task == task)
            & metrics.dataset.isin(cfg["datasets"])
            & ~metrics.method.str.contains(".", regex=False)
            & ~metrics.method.str.contains("-pt", regex=False)
        ]
        got = main.groupby(["dataset", "method"]).size()
        assert len(got) == len(cfg["datasets"]) * len(cfg["methods"]), got
    assert (metrics["runtime_s"] > 0).all()
    for name in ("annotation_table.md", "imputation_table.md", "figures/annotation.png", "figures/imputation.png"):
        assert (workflow_run / "results" / "report" / name).stat().st_size > 0
    # The toy baseline added as one rule file + one config entry is in the table.
    assert "nearest_centroid" in (workflow_run / "results" / "report" / "annotation_table.md").read_text()
    # The pretraining grid's fine-tuning from its checkpoint is scored beside them.
    assert set(metrics.loc[metrics.task == "annotation", "method"]) >= {"scgpt-full-ptmam"}
    assert (workflow_run / "results" / "report" / "pretraining_table.md").stat().st_size > 0
    # Paired significance: with one seed every comparison is there, its p-values NaN with the reason.
    sig = pd.read_csv(workflow_run / "results" / "report" / "significance.csv")
    assert len(sig) > 0 and {"annotation", "imputation", "perturbation"} <= set(sig["task"])
    assert (
        (sig["kind"] == "backbone") & (sig["method"] == "scgpt-genohoption-p") & (sig["reference"] == "scgpt-full")
    ).any()
    assert sig["t_p"].isna().all() and sig["note"].str.contains("at least 2").all()
    assert (workflow_run / "results" / "report" / "figures" / "critical_difference.png").stat().st_size > 0
    # Cell embeddings: every model and control of both annotation datasets scored, the pretrained
    # fine-tuning in both states; the table, the UMAP grids and the pooling table written.
    emb = metrics[metrics.task == "embedding"]
    for dataset in TINY["annotation"]["datasets"]:
        methods = set(emb.loc[emb.dataset == dataset, "method"])
        assert methods >= {"pca", "random", "scgpt-full", "scgpt-genohoption-p"}, methods
        assert (
            workflow_run / "results" / "embedding" / dataset / "scgpt-full" / "seed0" / "embedding.npz"
        ).stat().st_size > 0
        assert (workflow_run / "results" / "report" / "figures" / f"embedding_umap_{dataset}.png").stat().st_size > 0
    assert {"scgpt-full-ptmam", "scgpt-full-ptmam-zeroshot"} <= set(emb.loc[emb.dataset == "synthetic", "method"])
    assert set(emb["metric"]) >= {
        "knn_accuracy",
        "knn_macro_f1",
        "probe_macro_f1",
        "kmeans_nmi",
        "kmeans_ari",
        "asw_label",
    }
    ari = emb["metric"] == "kmeans_ari"  # ARI in [-1, 1] (0 = chance); the others in [0, 1]
    assert emb.loc[~ari, "value"].between(0, 1).all() and emb.loc[ari, "value"].between(-1, 1).all()
    assert "pca" in (workflow_run / "results" / "report" / "embedding_table.md").read_text()
    assert "scgpt-full-ptmam" in (workflow_run / "results" / "report" / "embedding_methods.md").read_text()


def test_perturbation_task_and_its_rule_file_method(workflow_run):
    """The perturbation stage end to end: every (method, seed) scored per subgroup, docs/extending.md's rule
    file method in the table, oracle above the controls."""
    metrics = pd.read_csv(workflow_run / "results" / "report" / "metrics.csv")
    pert = metrics[metrics.task == "perturbation"]
    assert set(pert["method"]) == set(TINY["perturbation"]["methods"]) and set(pert["dataset"]) == {"perturb_tiny"}
    m = pert.set_index(["method", "metric"])["value"]
    assert (
        m["oracle", "pearson_delta_de:all"] > m["train_mean", "pearson_delta_de:all"]
        and m["no_change", "pearson_delta:all"] == 0.0
    )
    table = (workflow_run / "results" / "report" / "perturbation_table.md").read_text()
    assert "ctrl_plus_half" in table and "pearson_delta" in table
    assert (workflow_run / "results" / "report" / "figures" / "perturbation.png").stat().st_size > 0


@pytest.mark.slow
def test_graph_kernels_fewshot_and_sensitivity_runs(workflow_run):
    import json

    import anndata as ad

    metrics = pd.read_csv(workflow_run / "results" / "report" / "metrics.csv")
    runs = set(zip(metrics["dataset"], metrics["method"]))
    assert {
        ("synthetic-fs0.5", "logreg"),
        ("synthetic", "scgpt-genohoption-p.alpha0.1"),
        ("synthetic", "scgpt-genohoption-p.k2"),
    } <= runs
    ann = workflow_run / "results" / "annotation" / "synthetic"
    main = json.loads((ann / "scgpt-genohoption-p" / "seed0" / "run.json").read_text())
    assert main["graph_variant"] == "full" and main["graph"]["n_nodes"] > 1 and main["model"]["attention_config"] == {}
    # The sensitivity suffix reaches the kernel; everything else is the base method's.
    alpha = json.loads((ann / "scgpt-genohoption-p.alpha0.1" / "seed0" / "run.json").read_text())
    k2 = json.loads((ann / "scgpt-genohoption-p.k2" / "seed0" / "run.json").read_text())
    assert alpha["model"]["attention_config"] == {"alpha": 0.1} and k2["model"]["attention_config"] == {"k": 2}
    assert {k: v for k, v in alpha["model"].items() if k != "attention_config"} == {
        k: v for k, v in main["model"].items() if k != "attention_config"
    }
    assert json.loads((ann / "scgpt-full" / "seed0" / "run.json").read_text())["graph"] is None
    # The few-shot dataset keeps half of the non-test cells (then splits train/valid) and every test cell.
    data = workflow_run / "results" / "data"
    full = ad.read_h5ad(data / "synthetic" / "seed0" / "prepared.h5ad").obs["split"].value_counts()
    half = ad.read_h5ad(data / "synthetic-fs0.5" / "seed0" / "prepared.h5ad").obs["split"].value_counts()
    assert half["test"] == full["test"]
    assert abs(half["train"] + half["valid"] - (full["train"] + full["valid"]) / 2) <= 4


@pytest.mark.slow
def test_methods_beat_their_controls(workflow_run):
    m = pd.read_csv(workflow_run / "results" / "report" / "metrics.csv").set_index(
        ["task", "dataset", "method", "metric"]
    )["value"]
    majority = m["annotation", "pbmc68k", "majority", "macro_f1"]
    assert m["annotation", "pbmc68k", "logreg", "macro_f1"] > majority
    assert m["annotation", "pbmc68k", "scgpt-full", "macro_f1"] > majority
    assert m["imputation", "synthetic", "magic", "mse_truth"] < m["imputation", "synthetic", "none", "mse_truth"]
    assert m["imputation", "synthetic", "magic", "mse"] < m["imputation", "synthetic", "none", "mse"]


@pytest.mark.slow
def test_rerun_rebuilds_nothing_and_report_renders(workflow_run):
    dry = run(workflow_run, "--configfile", "config/tiny.yaml", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    run(workflow_run, "--configfile", "config/tiny.yaml", "--report", "results/report.html")
    html = (workflow_run / "results" / "report.html").read_text(errors="replace")
    assert "annotation.png" in html and "imputation.png" in html


def test_lint_is_clean(tmp_path):
    wd = copy_workflow(tmp_path)
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=wd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for rule" not in out, out[-3000:]


def test_unknown_config_key_stops_the_workflow(tmp_path):
    wd = copy_workflow(tmp_path)
    (wd / "config" / "bad.yaml").write_text("annotaton: {}\n")
    proc = subprocess.run([*SNAKEMAKE, "-n", "--configfile", "config/bad.yaml"], cwd=wd, capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown key(s) ['annotaton']" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_seed_grouping_changes_no_number(workflow_run):
    """The tiny run groups each transformer's seeds (config.yaml's resources.group_seeds); one job
    per seed writes the same predictions, and Snakemake's own benchmark file per seed. Runs last:
    it rewrites the transformer outputs."""
    ann = workflow_run / "results" / "annotation"
    files = sorted(f for f in ann.glob("*/scgpt-*/seed0/predictions.csv") if "-pt" not in f.parent.parent.name)
    assert len(files) == 6  # scgpt-full and -genohoption-p on both datasets, 2 sensitivity runs
    grouped = {f: f.read_text() for f in files}
    bench = workflow_run / "results" / "benchmarks" / "annotation" / "pbmc68k" / "scgpt-full"
    assert (bench / "seeds.tsv").exists() and list(pd.read_csv(bench / "seed0.tsv", sep="\t").columns) == [
        "s",
        "h:m:s",
        "max_rss",
        "cpu_time",
    ]
    (workflow_run / "config" / "per_seed.yaml").write_text(yaml.safe_dump({"resources": {"group_seeds": False}}))
    run(
        workflow_run,
        "--configfile",
        "config/tiny.yaml",
        "config/per_seed.yaml",
        "--forcerun",
        "annotate_transformer",
        "--until",
        "annotate_transformer",
    )
    assert {f: f.read_text() for f in files} == grouped
    assert "max_vms" in pd.read_csv(bench / "seed0.tsv", sep="\t").columns  # now written by Snakemake


def test_trained_runs_write_curves_and_the_quality_report_checks_them(workflow_run):
    """Every trainer of the tiny run writes its curves.csv (fine-tunings, the pretraining stage, the
    perturbation generator); a figure per task; the tiny caps (pretraining 3 steps) are reported."""
    from scfmbench.curves import read_curves

    res = workflow_run / "results"
    files = {
        "annotation": res / "annotation" / "synthetic" / "scgpt-full" / "seed0" / "curves.csv",
        "finetune from pretraining": res / "annotation" / "synthetic" / "scgpt-full-ptmam" / "seed0" / "curves.csv",
        "pretraining": res / "pretrain" / "synthetic" / "scgpt" / "mam" / "seed0" / "curves.csv",
        "perturbation": res / "perturbation" / "perturb_tiny" / "scgpt-genohoption-p" / "seed0" / "curves.csv",
    }
    for name, path in files.items():
        frame = read_curves(path)
        assert len(frame) >= 1 and frame["stop_reason"].isin(["early_stop", "step_cap", "epoch_cap"]).all(), name
    assert read_curves(files["pretraining"])["phase"].unique().tolist() == ["pretrain"]
    assert not (res / "annotation" / "synthetic" / "logreg" / "seed0" / "curves.csv").exists()  # controls train nothing
    for task in ("annotation", "perturbation", "pretraining"):
        assert (res / "report" / "figures" / f"curves_{task}.png").stat().st_size > 1000
    quality = pd.read_csv(res / "report" / "quality.csv")
    flagged = quality[quality["check"] == "not converged"]
    # 3 pretraining steps and one 2-step perturbation epoch cannot show a plateau.
    assert {("pretraining", "scgpt-mam"), ("perturbation", "scgpt-genohoption-p")} <= set(
        zip(flagged["task"], flagged["method"])
    )
