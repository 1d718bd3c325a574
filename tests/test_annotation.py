import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from scfmbench import InputError
from scfmbench._io import write_h5ad
from scfmbench.annotation import run_annotation, score_annotation, write_predictions
from scfmbench.annotation.controls import logreg, majority
from scfmbench.annotation.transformer import annotate_transformer
from scfmbench.metrics import macro_f1
from scfmbench.models.scgpt import ScGPTClassifier, ScGPTConfig
from scfmbench.models.tokenize import CLS_ID, N_SPECIAL, bin_values, tokenize_scgpt


def test_majority_predicts_most_frequent_train_label(prepared):
    prepared.obs["cell_type"] = np.where(np.arange(prepared.n_obs) % 4 == 0, "rare", "common")
    pred = majority(prepared, seed=0)
    assert set(pred) == {"common"} and len(pred) == (prepared.obs["split"] == "test").sum()


def test_logreg_beats_majority(prepared):
    test = (prepared.obs["split"] == "test").to_numpy()
    truth = prepared.obs["cell_type"].astype(str).to_numpy()[test]
    assert macro_f1(truth, logreg(prepared, seed=0)) > macro_f1(truth, majority(prepared, seed=0)) + 0.5


def test_bin_values_by_hand():
    # Non-zero values 1..5 with 5 bins: edges = quantiles at (0, 1/3, 2/3, 1) = (1, 7/3, 11/3, 5).
    # No value equals two edges, so the tie-breaking draw cannot move any of them.
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert bin_values(values, 5, rng=np.random.default_rng(0)).tolist() == [0, 1, 1, 2, 3, 4]


def _scgpt_digitize_both(x, bins, rands):
    """scGPT's ``_digitize(x, bins, side="both")`` (scgpt/preprocess.py) written out, with its
    ``np.random.rand(len(x))`` replaced by the given uniform numbers."""
    left = np.digitize(x, bins)
    right = np.digitize(x, bins, right=True)
    return np.ceil(rands * (right - left) + left).astype(np.int64)


def test_bin_values_spreads_ties_as_scgpt():
    # A typical cell: most non-zero genes share the smallest value (count 1), a few are higher.
    values = np.array([0.0] * 5 + [0.7] * 40 + [1.1] * 6 + [1.6, 2.0, 2.4, 3.1])
    x = values[values > 0]
    edges = np.quantile(x, np.linspace(0, 1, 50))
    expected = _scgpt_digitize_both(x, edges, np.random.default_rng(3).random(x.size))
    got = bin_values(values, 51, rng=np.random.default_rng(3))
    assert got[:5].tolist() == [0] * 5
    assert got[5:].tolist() == expected.tolist()
    tied = got[5:45]
    assert len(set(tied.tolist())) > 10  # one bin for all 40 under np.digitize alone (side="one")
    assert tied.min() >= 1 and got.max() <= 50
    # the same seed gives the same bins, and scGPT's rule keeps the order between distinct values
    assert bin_values(values, 51, rng=np.random.default_rng(3)).tolist() == got.tolist()
    assert tied.max() <= got[45:].min()


def test_tokenizer_and_graph_layer_bin_alike():
    # One function bins for the scGPT tokenizer and for the gene graph's binned layer.
    from scfmbench.graphs.coexpression import binned_layer

    X = sp.csr_matrix(np.random.default_rng(0).poisson(0.8, (6, 40)).astype(np.float64))
    cells = tokenize_scgpt(X, n_bins=11, max_len=50, rng=np.random.default_rng(5))
    layer = binned_layer(X, 11, rng=np.random.default_rng(5)).toarray()
    for i in range(6):
        real = ~cells.padding[i, 1:]
        genes = cells.gene_ids[i, 1:][real].numpy() - N_SPECIAL
        assert cells.value_ids[i, 1:][real].tolist() == layer[i, genes].astype(int).tolist()


def test_tokenize_keeps_nonzero_genes_and_subsamples():
    X = sp.csr_matrix(np.array([[0, 1.0, 0, 2.0], [3.0, 1.0, 2.0, 4.0]]))
    cells = tokenize_scgpt(X, n_bins=5, max_len=3, rng=np.random.default_rng(0))
    assert cells.gene_ids[:, 0].tolist() == [CLS_ID, CLS_ID]
    assert cells.gene_ids[0, 1:3].tolist() == [1 + N_SPECIAL, 3 + N_SPECIAL]
    assert cells.padding[0].tolist() == [False, False, False, True]
    assert (~cells.padding[1]).sum() == 4  # CLS + max_len genes


def test_padding_does_not_change_a_cells_prediction():
    torch.manual_seed(0)
    model = ScGPTClassifier(ScGPTConfig(n_genes=20, n_classes=3, d_model=16, n_heads=2, n_layers=2, dropout=0.0)).eval()
    X = sp.csr_matrix(np.random.default_rng(0).poisson(1.0, (2, 20)).astype(np.float32))
    X[0, 10:] = 0
    X.eliminate_zeros()
    both = tokenize_scgpt(X, n_bins=11, max_len=50, rng=np.random.default_rng(0))
    alone = tokenize_scgpt(X[:1], n_bins=11, max_len=50, rng=np.random.default_rng(0))
    assert both.padding[0].any()
    with torch.no_grad():
        torch.testing.assert_close(model(both)[0], model(alone)[0], atol=1e-5, rtol=1e-5)
        # Garbage in the padded value slots changes nothing either.
        both.value_ids[0][both.padding[0]] = 3
        torch.testing.assert_close(model(both)[0], model(alone)[0], atol=1e-5, rtol=1e-5)


def test_transformer_learns_and_is_reproducible():
    from conftest import make_raw

    from scfmbench.data.prepare import prepare_dataset

    prepared = prepare_dataset(make_raw(n_cells=240, n_genes=24), seed=0)
    params = dict(epochs=10, patience=10)  # the backbone's defaults otherwise (d_model 32, 1 layer, lr 5e-3, batch 16)
    pred, record = annotate_transformer(prepared, backbone="scgpt", attention="full", seed=0, **params)
    pred2, _ = annotate_transformer(prepared, backbone="scgpt", attention="full", seed=0, **params)
    test = (prepared.obs["split"] == "test").to_numpy()
    truth = prepared.obs["cell_type"].astype(str).to_numpy()[test]
    assert macro_f1(truth, pred) > 0.8
    np.testing.assert_array_equal(pred, pred2)  # same seed, same numbers on CPU
    assert record["history"]["train_loss"][-1] < record["history"]["train_loss"][0]
    assert record["num_params"] > 0 and record["model"]["attention"] == "full"


@pytest.mark.parametrize("backbone,attention", [("scgpt", "bigbird"), ("scbert", "performer")])
def test_a_seeds_run_does_not_depend_on_what_ran_before_it(backbone, attention):
    """resources.group_seeds runs a transformer's seeds one after another in one process: seed 1
    after seed 0 must be seed 1 alone (random edges, random features, tokenizer and batch order all
    re-drawn from the seed), to the bit."""
    from conftest import make_raw

    from scfmbench.data.prepare import prepare_dataset

    prepared = prepare_dataset(make_raw(n_cells=120, n_genes=24), seed=0)
    params = dict(epochs=2, patience=2, d_model=16)
    first, rec_first = annotate_transformer(prepared, backbone=backbone, attention=attention, seed=1, **params)
    other, rec_other = annotate_transformer(prepared, backbone=backbone, attention=attention, seed=0, **params)
    again, rec_again = annotate_transformer(prepared, backbone=backbone, attention=attention, seed=1, **params)
    assert rec_first["history"]["train_loss"] == rec_again["history"]["train_loss"]
    assert rec_first["history"]["train_loss"] != rec_other["history"]["train_loss"]  # the seed matters
    np.testing.assert_array_equal(first, again)


def _graph_kernel_runs(monkeypatch=None, cache: bool = True) -> dict:
    """Tiny fine-tunings with graph kernels and attention dropout (geneformer-genohoption-p: dropout
    inside the PPR recursion; scgpt-genohoption-h), one torch thread: predictions and curves."""
    from conftest import make_raw

    from scfmbench.data.prepare import prepare_dataset
    from scfmbench.graphs.build import build_gene_graph
    from scfmbench.models.tokenize import TokenGraph

    if not cache:
        monkeypatch.setattr(TokenGraph, "CELL_CACHE_BYTES", 0)
    adata = prepare_dataset(make_raw(n_cells=120, n_genes=24), seed=0)
    train = (adata.obs["split"] == "train").to_numpy()
    graph = build_gene_graph(adata.var_names, adata.X[train], [], use_grn=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for backbone, attention in [("geneformer", "genohoption-p"), ("scgpt", "genohoption-h")]:
            pred, rec = annotate_transformer(
                adata,
                backbone=backbone,
                attention=attention,
                seed=3,
                graph=graph,
                epochs=3,
                patience=3,
                d_model=16,
                n_heads=2,
                dropout=0.2,
            )
            out[f"{backbone}-{attention}"] = dict(
                predictions=[str(p) for p in pred],
                train_loss=rec["history"]["train_loss"],
                valid=rec["history"]["valid_macro_f1"],
            )
        return out
    finally:
        torch.set_num_threads(threads)


def test_graph_kernel_training_is_unchanged_by_the_speed_ups(monkeypatch):
    """Same seed, same numbers: the graph kernels' training with the per-cell edge cache equals,
    to the bit, the same runs building every batch's pattern anew (the code before the cache), and
    matches the values recorded from the code before the CPU speed-ups (tests/fixtures/
    graph_kernel_runs.json, recorded on the 2-core dev machine: equal to the bit there; a
    tolerance of 1e-6 for other CPUs' float rounding)."""
    import json
    from pathlib import Path

    cached = _graph_kernel_runs()
    uncached = _graph_kernel_runs(monkeypatch, cache=False)
    assert cached == uncached  # exact: lists of floats compared with ==
    recorded = json.loads((Path(__file__).parent / "fixtures" / "graph_kernel_runs.json").read_text())
    assert cached.keys() == recorded.keys()
    for name, want in recorded.items():
        assert cached[name]["predictions"] == want["predictions"], name
        np.testing.assert_allclose(cached[name]["train_loss"], want["train_loss"], rtol=1e-6, atol=0)
        np.testing.assert_allclose(cached[name]["valid"], want["valid"], rtol=1e-6, atol=0)


def test_run_and_score_annotation(prepared, tmp_path):
    write_h5ad(prepared, tmp_path / "p.h5ad")
    run_annotation("logreg", tmp_path / "p.h5ad", tmp_path / "pred.csv", seed=0, record_path=tmp_path / "run.json")
    metrics = score_annotation(tmp_path / "p.h5ad", tmp_path / "pred.csv")
    assert set(metrics) == {"accuracy", "macro_f1", "macro_f1_seen", "rare_f1"} and metrics["accuracy"] > 0.8
    assert metrics["macro_f1_seen"] == metrics["macro_f1"]  # every test type is a training type here
    assert np.isnan(metrics["rare_f1"])  # three balanced types: none below 5% of the training cells
    with pytest.raises(InputError, match="unknown annotation method"):
        run_annotation("nosuch", tmp_path / "p.h5ad", tmp_path / "x.csv", seed=0)


def test_predictions_must_cover_test_cells(prepared, tmp_path):
    write_h5ad(prepared, tmp_path / "p.h5ad")
    test = prepared.obs_names[(prepared.obs["split"] == "test").to_numpy()]
    write_predictions(test[:-1], ["t0"] * (len(test) - 1), tmp_path / "pred.csv")
    with pytest.raises(InputError, match="1 missing"):
        score_annotation(tmp_path / "p.h5ad", tmp_path / "pred.csv")
    pd.DataFrame({"cell": test}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="column 'cell_id' missing"):
        score_annotation(tmp_path / "p.h5ad", tmp_path / "bad.csv")
