"""The GPU check (scfmbench.bench.gpu): its refusal on CPU, its estimate's arithmetic by hand, and
one tiny training point measured on the CPU through the same code the GPU run uses."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from scfmbench.bench import gpu, steps


def test_refuses_clearly_without_cuda():
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False))
    with pytest.raises(gpu.NoCuda, match=r"CUDA device.*scfmbench\.bench\.attention"):
        gpu.require_cuda(fake)
    gpu.require_cuda(types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True)))  # no error


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CPU-only behaviour")
def test_main_refuses_on_this_cpu_machine():
    with pytest.raises(SystemExit, match="torch sees none"):
        gpu.main(["--config", "config/paper.yaml"])


def _config():
    return {
        "seeds": [0, 1, 2],
        "split": {"valid_fraction": 0.25, "train_fraction": 1.0},
        "datasets": {"a": {"source": "x"}, "b": {"source": "x"}},
        "annotation": {
            "datasets": ["a", "b"],
            "methods": ["logreg", "scgpt-full", "geneformer-genohoption-p"],
            "method_datasets": {},
        },
        "fewshot": {"datasets": ["a"], "methods": ["scgpt-full"], "fractions": [0.5]},
        "sensitivity": {"datasets": [], "methods": []},
        "params": {
            "scgpt": {"epochs": 10, "batch_size": 32},
            "geneformer": {"epochs": 3, "batch_size": 12, "max_steps": 100},
        },
    }


def test_estimate_by_hand():
    times = {("scgpt", "full", "fp32"): 0.5, ("geneformer", "genohoption-p", "fp32"): 0.2}
    est = gpu.estimate_grid(_config(), times, {"a": 1000}).set_index(["dataset", "method"])
    # a: 1000 reference cells, 750 train; scgpt: 3 seeds x 10 epochs x ceil(750 / 32) = 24 steps.
    assert est.loc[("a", "scgpt-full"), "steps"] == 3 * 10 * 24
    assert est.loc[("a", "scgpt-full"), "seconds"] == pytest.approx(720 * 0.5)
    # geneformer: 3 epochs x ceil(750 / 12) = 189 steps, capped at max_steps 100, per seed.
    assert est.loc[("a", "geneformer-genohoption-p"), "steps"] == 3 * 100
    assert est.loc[("a", "geneformer-genohoption-p"), "seconds"] == pytest.approx(300 * 0.2)
    # Few-shot 0.5: 500 reference cells, 375 train: ceil(375 / 32) = 12 steps an epoch.
    assert est.loc[("a-fs0.5", "scgpt-full"), "steps"] == 3 * 10 * 12
    # b has no size: a row that says so, not a number.
    assert est.loc[("b", "scgpt-full"), "missing"] == "cells" and math.isnan(est.loc[("b", "scgpt-full"), "seconds"])
    assert "logreg" not in est.index.get_level_values("method")
    # An unmeasured precision leaves the seconds unknown.
    assert gpu.estimate_grid(_config(), times, {"a": 1000}, precision="bf16")["seconds"].isna().all()


def test_random_gene_graph_has_the_asked_degree_and_cls():
    g = steps.random_gene_graph(500, degree=10, seed=0)
    assert g.has_cls and g.n_genes == 500
    adj = g.adjacency.toarray()
    assert adj[0, 1:].all() and adj[1:, 0].all() and np.diag(adj).all()
    assert 8 <= (adj[1:, 1:].sum() - 500) / 500 <= 10.5  # duplicates and self-draws collapse a few


def test_one_training_point_on_cpu_through_the_real_fine_tuning():
    row = steps.measure_training(
        "scgpt",
        "genohoption-p",
        {"d_model": 16, "n_layers": 1, "n_heads": 2, "batch_size": 4, "max_len": 24},
        steps=3,
        warmup=1,
        n_genes=40,
        device="cpu",
    )
    assert row["status"] == "ok" and row["steps"] == 3 and row["step_s"] > 0
    assert row["steps_per_s"] == pytest.approx(1 / row["step_s"])


def test_the_paper_grid_is_measured_and_sized():
    from conftest import REPO

    from scfmbench.config import load_config

    config = load_config(REPO / "config" / "paper.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    points = gpu.grid_points(config)
    assert (
        ("scgpt", "full") in points and ("geneformer", "genohoption-h") in points and ("scbert", "performer") in points
    )
    est = gpu.estimate_grid(config, {(b, k, "fp32"): 1.0 for b, k in points}, gpu.REFERENCE_CELLS)
    sized = est[est["missing"] == ""]
    assert set(sized["dataset"].str.split("-fs").str[0]) == {"ms", "myeloid", "pancreas"}
    assert (sized["seconds"] == sized["steps"]).all() and (sized["seeds"] == 5).all()


def test_steps_per_second_benchmark_runs_the_configured_grid_on_cpu(tmp_path):
    import yaml

    cfg = {
        "seeds": [0],
        "datasets": {
            "synthetic": {
                "source": "synthetic",
                "synthetic": {"n_cells": 100, "n_genes": 40, "n_cell_types": 3, "seed": 0},
            }
        },
        "annotation": {"datasets": ["synthetic"], "methods": ["majority", "scgpt-full", "scgpt-genohoption-p"]},
        "imputation": {"datasets": []},
        "graphs": {"datasets": ["synthetic"]},
        "embedding": {"datasets": []},
        "params": {"scgpt": {"d_model": 16, "n_layers": 1, "n_heads": 2, "batch_size": 4, "max_len": 24}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    frame = steps.main(
        ["--config", str(tmp_path / "c.yaml"), "--steps", "2", "--warmup", "1", "--csv", str(tmp_path / "s.csv")]
    )
    assert list(zip(frame["backbone"], frame["kernel"])) == [("scgpt", "full"), ("scgpt", "genohoption-p")]
    assert (frame["n_genes"] == 40).all() and (frame["steps"] == 2).all() and (frame["steps_per_s"] > 0).all()
