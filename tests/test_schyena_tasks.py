"""scHyena tasks: pretraining, checkpoints, doublets, fine-tuning, the imputer and the rule functions.

Everything runs on tiny data on CPU with one thread (conftest.py).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import yaml
from conftest import REPO

from scfmbench import InputError
from scfmbench.data.contract import log_normalize
from scfmbench.models.schyena import SCHyena, SCHyenaConfig
from scfmbench.schyena.doublets import (
    doublet_metrics,
    n_doublets,
    score_doublets,
    simulate_doublets,
    write_doublet_predictions,
)
from scfmbench.schyena.params import DEFAULTS, SchyenaParams
from scfmbench.schyena.tasks import cls_embeddings, finetune_classifier, load_checkpoint, pretrain, save_checkpoint

TINY_MODEL = dict(d_model=16, n_layers=1, filter_order=16, mlp_ratio=2)


def tiny_config(adata, **overrides) -> SCHyenaConfig:
    return SCHyenaConfig(n_genes=adata.n_vars, **{**TINY_MODEL, **overrides})


@pytest.fixture(scope="module")
def synthetic_small():
    from scfmbench.data.loaders import load_dataset
    from scfmbench.data.prepare import prepare_dataset

    raw = load_dataset(
        "synthetic", {"source": "synthetic", "synthetic": {"n_cells": 200, "n_genes": 60, "n_cell_types": 3, "seed": 0}}
    )
    return prepare_dataset(raw, seed=0)


@pytest.fixture(scope="module")
def pretrained_tiny(_prepared_once):
    """(prepared, model) pretrained briefly on conftest's tiny dataset (120 cells x 40 genes, 3 types)."""
    adata = _prepared_once.copy()
    model, _ = pretrain(adata, config=tiny_config(adata), steps=20, batch_size=16, lr=1e-2, seed=0)
    return adata, model


# ------------------------------------------------------------------------------------------------
# pretraining


def test_pretraining_loss_falls_on_synthetic(synthetic_small):
    _, hist = pretrain(synthetic_small, config=tiny_config(synthetic_small), steps=20, batch_size=16, lr=1e-2, seed=0)
    assert hist.eval_step == [0, 20]
    assert hist.valid_loss[-1] < 0.25 * hist.valid_loss[0]  # fixed validation masks: a fair comparison
    assert np.mean(hist.train_loss[-5:]) < 0.5 * np.mean(hist.train_loss[:5])
    assert len(hist.mask_prob) == 20 and all(0.05 <= p <= 0.4 for p in hist.mask_prob)
    assert hist.n_train_cells == (synthetic_small.obs["split"] == "train").sum()
    assert hist.n_valid_cells == (synthetic_small.obs["split"] == "valid").sum()


def test_pretraining_never_reads_test_cells(_prepared_once):
    """Scrambling the test cells' expression leaves the pretrained weights bit-identical."""
    a = _prepared_once.copy()
    b = a.copy()
    test = (b.obs["split"] == "test").to_numpy()
    x = b.X.toarray()
    x[test] = np.random.default_rng(1).random((test.sum(), b.n_vars)) * 9
    b.X = sp.csr_matrix(x)
    ma, _ = pretrain(a, config=tiny_config(a), steps=3, batch_size=16, seed=0)
    mb, _ = pretrain(b, config=tiny_config(b), steps=3, batch_size=16, seed=0)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(va, vb), k


def test_pretraining_is_seeded_and_leaves_global_rng_alone(_prepared_once):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    m1, h1 = pretrain(_prepared_once, config=tiny_config(_prepared_once), steps=3, batch_size=16, seed=4)
    assert torch.equal(torch.rand(1), before)  # global RNG stream untouched
    m2, h2 = pretrain(_prepared_once, config=tiny_config(_prepared_once), steps=3, batch_size=16, seed=4)
    assert h1.train_loss == h2.train_loss
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_pretrain_rejects_a_config_of_another_length(_prepared_once):
    with pytest.raises(InputError, match="n_genes"):
        pretrain(_prepared_once, config=SCHyenaConfig(n_genes=_prepared_once.n_vars + 1, **TINY_MODEL), steps=1)


# ------------------------------------------------------------------------------------------------
# checkpoints


def test_checkpoint_round_trip_restores_outputs_and_configs(tmp_path, pretrained_tiny):
    adata, model = pretrained_tiny
    model = SCHyena(model.config)  # fresh copy with a classifier, to round-trip every head
    model.load_state_dict(pretrained_tiny[1].state_dict())
    model.reset_classifier(3)
    run_config = {
        "dataset": "tiny",
        "seed": 0,
        "pretrain": {"steps": 20, "mask_range": [0.05, 0.4]},
        "history": {"loss": [1.5, float("nan")]},
    }
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, run_config)

    raw = torch.load(path, weights_only=True)  # plain data only: the safe loader reads it
    assert set(raw) == {"format", "model_config", "run_config", "state_dict"}
    loaded, rc = load_checkpoint(path)
    assert loaded.config == model.config and loaded.config.n_classes == 3
    assert rc["dataset"] == "tiny" and rc["pretrain"] == run_config["pretrain"] and math.isnan(rc["history"]["loss"][1])

    values = torch.from_numpy(adata.X[:5].toarray())
    genes = torch.arange(adata.n_vars).expand(5, -1)
    mask = values > 2
    model.eval()
    with torch.no_grad():
        assert torch.equal(
            loaded.predict_expression(values, genes, mask), model.predict_expression(values, genes, mask)
        )
        assert torch.equal(loaded.classify(values, genes), model.classify(values, genes))


def test_checkpoint_rejects_foreign_files_and_non_plain_run_configs(tmp_path, pretrained_tiny):
    _, model = pretrained_tiny
    with pytest.raises(InputError, match="JSON-able"):
        save_checkpoint(tmp_path / "a.pt", model, {"bad": object()})
    assert not (tmp_path / "a.pt").exists()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not a scHyena checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


# ------------------------------------------------------------------------------------------------
# doublets


def test_doublet_count_follows_the_rate():
    assert n_doublets(90, 0.1) == 10  # 10 of 100 cells after augmentation
    assert n_doublets(1000, 0.2) == 250
    assert n_doublets(1, 0.1) == 0
    with pytest.raises(InputError):
        n_doublets(10, 1.0)


def test_simulated_doublets_average_two_cells_of_the_same_split(prepared):
    out = simulate_doublets(prepared, rate=0.1, seed=3)
    n = prepared.n_obs
    assert out.X[:n].toarray() == pytest.approx(prepared.X.toarray())  # singlets untouched
    dbl = out.obs["is_doublet"].to_numpy()
    assert not dbl[:n].any() and dbl[n:].all()
    assert set(out.obs["cell_type"][dbl]) == {"doublet"}
    split = prepared.obs["split"].astype(str)
    for s in ("train", "valid", "test"):
        k = int((out.obs["split"][dbl] == s).sum())
        assert k == round(0.1 * (split == s).sum() / 0.9)
        assert k / (out.obs["split"] == s).sum() == pytest.approx(0.1, abs=0.02)
    counts = prepared.layers["counts"].toarray()
    row = {c: i for i, c in enumerate(prepared.obs_names)}
    dcounts = out.layers["counts"][n:].toarray()
    for j, (_name, obs) in enumerate(out.obs[dbl].iterrows()):
        a, b = row[obs["parent_a"]], row[obs["parent_b"]]
        assert a != b
        assert split.iloc[a] == split.iloc[b] == obs["split"]  # test doublets from test cells only
        assert dcounts[j] == pytest.approx((counts[a] + counts[b]) / 2)
    assert out.X[n:].toarray() == pytest.approx(log_normalize(dcounts).toarray(), rel=1e-6)
    again = simulate_doublets(prepared, rate=0.1, seed=3)
    assert (again.obs["parent_a"] == out.obs["parent_a"]).all() and (again.obs["parent_b"] == out.obs["parent_b"]).all()


def test_doublet_of_two_cells_by_hand():
    import anndata as ad

    counts = sp.csr_matrix(np.array([[2, 0, 4], [0, 6, 2], [5, 5, 0]], dtype=np.float32))
    obs = pd.DataFrame({"cell_type": ["a", "b", "a"], "split": ["train", "train", "test"]}, index=["c0", "c1", "c2"])
    adata = ad.AnnData(X=log_normalize(counts), obs=obs, layers={"counts": counts})
    out = simulate_doublets(adata, rate=0.5, seed=0)  # 2 train cells -> 2 doublets, 1 test cell -> none
    assert out.obs_names[3:].tolist() == ["doublet-train-0", "doublet-train-1"]
    expected = np.array([1.0, 3.0, 3.0])  # (c0 + c1) / 2, whichever order
    for j in (3, 4):
        assert out.layers["counts"][j].toarray().ravel() == pytest.approx(expected)
        assert out.X[j].toarray().ravel() == pytest.approx(np.log1p(expected / 7 * 1e4), rel=1e-6)
    with pytest.raises(InputError, match="already a cell type"):
        simulate_doublets(adata, rate=0.5, seed=0, label="a")


def test_doublet_metrics_by_hand(tmp_path):
    truth = ["a", "doublet", "doublet", "b"]
    pred = ["a", "doublet", "a", "doublet"]
    m = doublet_metrics(truth, pred)
    assert m["doublet_f1"] == pytest.approx(0.5)  # TP 1, FP 1, FN 1
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)  # a: P .5 R 1; doublet .5; b: 0
    write_doublet_predictions(["c0", "d0", "d1", "c1"], truth, pred, tmp_path / "p.csv")
    assert score_doublets(tmp_path / "p.csv") == pytest.approx(m)


# ------------------------------------------------------------------------------------------------
# fine-tuning


def test_finetuned_classifier_beats_majority(pretrained_tiny):
    adata, model = pretrained_tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune_classifier(model, adata, seed=0, epochs=8, batch_size=8, lr=3e-3, patience=8)
    train_labels = adata.obs["cell_type"][adata.obs["split"] == "train"].astype(str)
    majority = np.mean(result.truth == train_labels.value_counts().idxmax())
    accuracy = np.mean(result.truth == result.predicted)
    assert accuracy > majority + 0.2
    assert list(result.cell_ids) == adata.obs_names[adata.obs["split"] == "test"].tolist()
    assert result.classes.tolist() == ["t0", "t1", "t2"] and result.model.config.n_classes == 3
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the pretrained model is untouched
    emb = cls_embeddings(result.model, adata)
    assert emb.shape == (adata.n_obs, TINY_MODEL["d_model"]) and np.isfinite(emb).all()


# ------------------------------------------------------------------------------------------------
# the imputer


def test_schyena_imputer_changes_only_zeros_and_is_seeded(_prepared_once):
    from scfmbench.impute.methods import get_imputer
    from scfmbench.impute.protocol import fold_adata, make_masks

    masked, _ = make_masks(_prepared_once, seed=0)
    fold = fold_adata(masked, 0)
    impute = get_imputer("schyena")
    opts = dict(TINY_MODEL, steps=5, batch_size=16)
    out = impute(fold, seed=0, **opts)
    x = fold.X.toarray()
    assert out.shape == x.shape and out.dtype == np.float32
    nz = x != 0
    assert np.array_equal(out[nz], x[nz])  # observed values kept exactly
    assert (out[~nz] >= 0).all() and (out[~nz] > 0).any()  # zeros predicted (clipped at 0)
    assert np.array_equal(impute(fold, seed=0, **opts), out)
    assert not np.array_equal(impute(fold, seed=1, **opts), out)


def test_schyena_imputer_monitor_trains_without_the_validation_cells_and_stops_early(tmp_path, _prepared_once):
    """impute_eval_every / impute_patience: the curve ends in an early stop well before the step cap,
    every cell is still predicted, and the fold's validation cells are not trained on (with the
    monitor alone, a fixed number of steps: changing their values changes no other cell's
    prediction)."""
    from scfmbench.curves import curves_to, read_curves
    from scfmbench.impute.methods import get_imputer
    from scfmbench.impute.protocol import fold_adata, make_masks

    masked, _ = make_masks(_prepared_once, seed=0)
    fold = fold_adata(masked, 0)
    impute = get_imputer("schyena")
    opts = dict(TINY_MODEL, steps=2000, batch_size=16, lr=3e-3, eval_every=5, patience=2)
    with curves_to(tmp_path / "curves.csv"):
        out = impute(fold, seed=0, **opts)
    curve = read_curves(tmp_path / "curves.csv")
    assert set(curve["stop_reason"]) == {"early_stop"} and curve["step"].max() < 2000
    assert curve["valid"].notna().sum() >= 3
    valid = (fold.obs["split"] == "valid").to_numpy()
    assert valid.any() and (~valid).any()
    x = fold.X.toarray()
    assert out.shape == x.shape and (out[x == 0] > 0).any()
    changed = fold.copy()
    xv = changed.X.toarray()
    xv[valid] = xv[valid][::-1]  # other validation cells' values in their place
    changed.X = type(fold.X)(xv)
    fixed = dict(opts, steps=20, patience=None)
    again, base = impute(changed, seed=0, **fixed), impute(fold, seed=0, **fixed)
    assert not np.array_equal(again[valid], base[valid])
    assert np.array_equal(again[~valid], base[~valid])  # the training cells alone set the model
    no_valid = fold.copy()
    no_valid.obs["split"] = "train"
    with pytest.raises(InputError, match="validation cells"):
        impute(no_valid, seed=0, **opts)


def test_schyena_imputer_beats_no_imputation(tmp_path, _prepared_once):
    from scfmbench.impute.methods import impute_main
    from scfmbench.impute.protocol import score_imputation, write_masks

    write_masks(_prepared_once, tmp_path / "m.h5ad", tmp_path / "h.npz", seed=0)
    impute_main("none", tmp_path / "m.h5ad", tmp_path / "none.npz", seed=0)
    impute_main(
        "schyena",
        tmp_path / "m.h5ad",
        tmp_path / "s.npz",
        seed=0,
        params=dict(TINY_MODEL, steps=150, batch_size=16, lr=3e-3),
    )
    none, ours = (
        score_imputation(tmp_path / "none.npz", tmp_path / "h.npz"),
        score_imputation(tmp_path / "s.npz", tmp_path / "h.npz"),
    )
    assert ours["mse"] < none["mse"]  # none predicts 0; the held-out values are all > 0
    # A bar no constant passes: the best constant (the held-out values' own mean) has MSE = their
    # variance and Pearson 0; the imputer must predict which hidden entries are high.
    observed = np.load(tmp_path / "h.npz")["observed"].astype(np.float64)
    assert ours["mse"] < observed.var() and ours["pearson"] > 0.2


# ------------------------------------------------------------------------------------------------
# params and the rule functions


def test_params_reject_unknown_keys_and_split_by_consumer():
    with pytest.raises(InputError, match="unknown key.*'epoch'.*allowed"):
        SchyenaParams.from_dict({"epoch": 3})
    with pytest.raises(InputError, match="mask_low"):
        SchyenaParams.from_dict({"mask_low": 0.5, "mask_high": 0.1})
    p = SchyenaParams.from_dict({"d_model": 8, "impute_steps": 7})
    assert p.imputer()["d_model"] == 8 and p.imputer()["steps"] == 7
    assert p.pretrain()["mask_range"] == (0.05, 0.4)
    assert set(p.model()) <= {f.name for f in dataclasses.fields(SCHyenaConfig)}


def test_imputer_defaults_match_params():
    import inspect

    from scfmbench.impute.schyena import schyena_imputer

    # Not the values (the signature's defaults are DEFAULTS' fields by construction): the names.
    # Every key the params hand the imputer must be one of its keywords, and every keyword must
    # be settable from params.schyena, or a config value would be an error or silently unused.
    sig = {k for k in inspect.signature(schyena_imputer).parameters if k not in ("adata", "seed")}
    assert sig == set(SchyenaParams.from_dict({"impute_steps": 3}).imputer())


def test_schema_defaults_match_params():
    """Once the config schema describes params.schyena, its keys and defaults are SchyenaParams'."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    entry = schema["properties"]["params"].get("properties", {}).get("schyena")
    if entry is None:
        pytest.skip("params.schyena is not in the config schema yet")
    props = entry["properties"]
    assert entry.get("additionalProperties") is False
    assert {k: v["default"] for k, v in props.items()} == dataclasses.asdict(DEFAULTS)
    assert all(v.get("description") for v in props.values())


def test_rule_functions_end_to_end(tmp_path, _prepared_once):
    from scfmbench.results import TASKS
    from scfmbench.schyena.workflow import doublet_main, finetune_main, pretrain_main, score_doublet_main, umap_main

    prepared = tmp_path / "prepared.h5ad"
    _prepared_once.write_h5ad(prepared)
    params = dict(TINY_MODEL, pretrain_steps=10, pretrain_batch_size=16, epochs=2, batch_size=16, umap_neighbors=5)
    pretrain_main(prepared, tmp_path / "pre.pt", dataset="tiny", seed=0, params=params)
    _, rc = load_checkpoint(tmp_path / "pre.pt")
    assert (
        rc["dataset"] == "tiny"
        and rc["genes"] == _prepared_once.var_names.tolist()
        and len(rc["history"]["train_loss"]) == 10
    )
    finetune_main(
        prepared,
        tmp_path / "pre.pt",
        tmp_path / "pred.csv",
        tmp_path / "run.json",
        tmp_path / "ft.pt",
        seed=0,
        params=params,
        embedding_path=tmp_path / "emb.npz",
    )
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["cell_id", "predicted"] and len(pred) == (_prepared_once.obs["split"] == "test").sum()
    doublet_main(prepared, tmp_path / "pre.pt", tmp_path / "dpred.csv", tmp_path / "drun.json", seed=0, params=params)
    dpred = pd.read_csv(tmp_path / "dpred.csv")
    assert (dpred["truth"] == "doublet").sum() == n_doublets(int((_prepared_once.obs["split"] == "test").sum()), 0.1)
    if "doublet" in TASKS:
        score_doublet_main(tmp_path / "dpred.csv", tmp_path / "metrics.csv", dataset="tiny", method="schyena", seed=0)
        rec = pd.read_csv(tmp_path / "metrics.csv")
        assert set(rec["metric"]) == {"accuracy", "macro_f1", "doublet_f1"} and set(rec["task"]) == {"doublet"}
    umap_main(prepared, tmp_path / "emb.npz", tmp_path / "umap.png", dataset="tiny", seed=0, params=params)
    assert (tmp_path / "umap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(Path(tmp_path).glob(".*"))  # no temporary files left behind
