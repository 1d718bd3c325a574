"""Imputation end to end: both protocols on a tiny config in a temporary copy of the workflow, the
controls bracketing the methods, a toy imputer added as one rule file plus one config entry, and the
original dca package's rule (dry run only: its conda env cannot be built here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from test_workflow import copy_workflow, run

SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# The worked example of docs/extending.md ("Adding an imputer"), verbatim.
GENE_MEAN_RULE = textwrap.dedent(
    '''
    rule impute_gene_mean:
        input:
            data=imputer_input,
        output:
            predictions=imputer_output("gene_mean"),
        log:
            imputer_log("gene_mean"),
        benchmark:
            imputer_benchmark("gene_mean")
        run:
            import numpy as np

            from scfmbench.impute.protocol import run_imputer

            def gene_mean(adata, *, seed):
                """Every cell gets each gene's mean over the cells where it was observed (non-zero)."""
                x = adata.X.tocsc()
                n_observed = np.diff(x.indptr)
                mean = np.divide(np.asarray(x.sum(axis=0)).ravel(), n_observed, out=np.zeros(x.shape[1]), where=n_observed > 0)
                return np.tile(mean, (adata.n_obs, 1))

            run_imputer(gene_mean, input.data, output.predictions, seed=int(wildcards.seed))
    '''  # noqa: E501 (verbatim copy of docs/extending.md's example, tested against it)
)

METHODS = ["none", "perfect", "true_rate", "magic", "dca", "gene_mean"]
TINY = {
    "seeds": [0],
    "datasets": {
        "pbmc68k": {"source": "pbmc68k", "min_library_size": 0},
        "synthetic": {
            "source": "synthetic",
            "synthetic": {"n_cells": 400, "n_genes": 80, "n_cell_types": 4, "seed": 0},
            "min_library_size": 0,
        },
    },
    "annotation": {"datasets": []},
    "graphs": {"datasets": []},
    "profile": {"mechanisms": []},
    # synthetic only in the run (pbmc68k's 765 genes would triple its time); the dry run below covers it.
    "imputation": {"datasets": ["synthetic"], "methods": METHODS, "protocols": ["masking", "mcv"]},
    # DCA's defaults except the epoch cap, so the test stays short (early stopping is not reached).
    "params": {"dca": {"epochs": 25}},
}
TASKS = {"masking": "imputation", "mcv": "denoising"}
# Where the noise-free truth is the ceiling: the metrics against the truth (metric -> higher is
# better). Against observed (masking) or test (MCV) values it is not, see scfmbench.impute.controls.
TRUTH_METRICS = {"mse_truth": False, "pearson_truth": True}
# Where the Poisson rate (true_rate, MCV only) is the ceiling: the MCV losses.
MCV_LOSSES = {"mse_sqrt": False, "mse_log1p": False, "pearson_sqrt": True, "poisson": False}


def _methods(task):
    return set(METHODS) - ({"true_rate"} if task == "imputation" else set())


@pytest.fixture(scope="module")
def imputation_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("impwf"))
    (wd / "workflow" / "rules" / "methods" / "gene_mean.smk").write_text(GENE_MEAN_RULE)
    (wd / "config" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run(wd, "--configfile", "config/tiny.yaml")
    metrics = pd.read_csv(wd / "results" / "report" / "metrics.csv")
    return wd, metrics.set_index(["task", "dataset", "method", "metric"])["value"]


@pytest.mark.slow
def test_every_protocol_and_method_reports(imputation_run):
    wd, m = imputation_run
    for task in TASKS.values():
        assert set(m.loc[task, "synthetic"].index.get_level_values("method")) == _methods(task), task
        table = (wd / "results" / "report" / f"{task}_table.md").read_text()
        for method in _methods(task):  # MAGIC, DCA, the controls and the toy imputer added as a rule file
            assert f"| {method} |" in table, (task, method)
        assert (wd / "results" / "report" / "figures" / f"{task}.png").stat().st_size > 0
    assert set(m.loc["imputation"].index.get_level_values("metric")) == {"mse", "pearson", "mse_truth", "pearson_truth"}
    assert set(m.loc["denoising"].index.get_level_values("metric")) == {
        *MCV_LOSSES,
        "mse_openproblems",
        "mse_truth",
        "pearson_truth",
    }


@pytest.mark.slow
def test_perfect_scores_best_and_none_is_beaten(imputation_run):
    _, m = imputation_run
    for task in TASKS.values():
        block = m.loc[task, "synthetic"]
        for metric, higher in TRUTH_METRICS.items():
            values = block.xs(metric, level="metric")
            assert values["perfect"] == (values.max() if higher else values.min()), (task, metric, values.to_dict())
        # none is beaten by at least one method: under MCV by the rate ceiling on every MCV loss (a
        # smoothing method may lose to none there: scfmbench.impute.controls).
        for metric in ("mse", "mse_truth") if task == "imputation" else ("mse_truth",):
            values = block.xs(metric, level="metric").drop(["perfect", "true_rate"], errors="ignore")
            assert (values.drop("none") < values["none"]).any(), (task, metric, values.to_dict())
    block = m.loc["denoising", "synthetic"]
    for metric, higher in MCV_LOSSES.items():
        values = block.xs(metric, level="metric")
        assert values["true_rate"] == (values.max() if higher else values.min()), (metric, values.to_dict())
        for method in ("magic", "dca"):  # and by both methods of the papers, on the truth
            assert m[task, "synthetic", method, "mse_truth"] < m[task, "synthetic", "none", "mse_truth"], (task, method)
    assert m["imputation", "synthetic", "perfect", "mse_truth"] == pytest.approx(0, abs=1e-10)
    assert m["denoising", "synthetic", "perfect", "pearson_truth"] == pytest.approx(1, abs=1e-6)


def _dry_run(wd, cfg, name):
    (wd / "config" / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", "-p", "--configfile", f"config/{name}.yaml"], cwd=wd, capture_output=True, text=True
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return out


def test_protocols_and_perfect_are_selected_by_the_config(tmp_path):
    wd = copy_workflow(tmp_path)
    both = _dry_run(
        wd,
        {**TINY, "imputation": {"datasets": ["pbmc68k", "synthetic"], "methods": ["none", "perfect", "true_rate"]}},
        "both",
    )
    for task in TASKS.values():
        assert (
            f"results/{task}/synthetic/perfect/seed0/metrics.csv" in both
            and f"results/{task}/pbmc68k/none/seed0/metrics.csv" in both
        )
        assert (
            f"results/{task}/pbmc68k/perfect/" not in both and f"results/{task}/pbmc68k/true_rate/" not in both
        )  # no truth on pbmc68k: skipped
    assert (
        "results/denoising/synthetic/true_rate/seed0/metrics.csv" in both
        and "results/imputation/synthetic/true_rate/" not in both
    )  # MCV only
    masking = _dry_run(
        wd,
        {**TINY, "imputation": {"datasets": ["synthetic"], "methods": ["none"], "protocols": ["masking"]}},
        "masking",
    )
    assert "results/imputation/synthetic/none/seed0/metrics.csv" in masking and "results/denoising/" not in masking


def test_dca_original_is_a_dry_run_job(tmp_path):
    wd = copy_workflow(tmp_path)
    out = _dry_run(wd, {**TINY, "imputation": {"datasets": ["synthetic"], "methods": ["dca_original"]}}, "orig")
    assert "rule impute_dca_original:" in out
    for task in TASKS.values():
        assert f"results/{task}/synthetic/dca_original/seed0/predictions.npz" in out
    assert '"ae_type": "zinb-conddisp"' in out  # params.dca_original reach the command line as JSON


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "impute_dca_original", REPO / "workflow" / "scripts" / "impute_dca_original.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dca_original_script_matches_the_protocol_runner(tmp_path, prepared):
    """The standalone script (h5py readers, fold loop, output arrays) against run_imputer / denoise,
    with a stand-in for dca.api.dca that returns counts + 0.5 as the denoised mean."""
    from scfmbench.impute import run_imputer, score_main, write_masks, write_mcv

    script = _load_script()

    def fake_dca(adata, *, mode, random_state, threads, copy, **params):
        assert mode == "denoise" and copy and params == {"epochs": 3} and random_state == 7
        assert (np.asarray(adata.X).sum(axis=0) > 0).all() and (
            np.asarray(adata.X).sum(axis=1) > 0
        ).all()  # dca asserts this
        out = adata.copy()
        out.X = np.asarray(adata.X) + 0.5
        return out

    def same_in_python(adata, *, seed, epochs):
        counts = adata.layers["counts"].toarray()
        return script.to_log_normalized(script.dca_denoise(counts, seed=7, params={"epochs": epochs}, dca_fn=fake_dca))

    write_masks(prepared, tmp_path / "masked.h5ad", tmp_path / "heldout.npz", seed=0)
    write_mcv(prepared, tmp_path / "train.h5ad", tmp_path / "test.npz", seed=0)
    for inp, held, task, key in (
        ("masked.h5ad", "heldout.npz", "imputation", "values"),
        ("train.h5ad", "test.npz", "denoising", "denoised"),
    ):
        got = script.run(tmp_path / inp, tmp_path / f"orig_{task}.npz", seed=7, params={"epochs": 3}, dca_fn=fake_dca)
        ref = run_imputer(
            same_in_python, tmp_path / inp, tmp_path / f"ref_{task}.npz", seed=7, params={"epochs": 3}, name="ref"
        )
        np.testing.assert_allclose(got, ref, rtol=1e-6)
        with np.load(tmp_path / f"orig_{task}.npz") as z:
            assert set(z.files) >= {key, "method", "seed", "params_json"} and str(z["method"]) == "dca_original"
        # and the shared scoring rule accepts it
        rec = score_main(
            tmp_path / f"orig_{task}.npz",
            tmp_path / held,
            tmp_path / f"{task}.csv",
            dataset="toy",
            method="dca_original",
            seed=7,
            task=task,
        )
        assert np.isfinite(rec.set_index("metric").loc["mse" if task == "imputation" else "mse_sqrt", "value"])
