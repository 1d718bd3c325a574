"""DCA (scfmbench.impute.dca): likelihoods against closed forms and scipy (and the fast training
path against them), preprocessing against scanpy, training semantics, denoising on simulated data,
determinism, the imputer adapter, and DCA against the no-imputation control."""

from __future__ import annotations

import dataclasses
import math
import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import stats

from scfmbench import InputError
from scfmbench.bench.dca import simulate_counts
from scfmbench.data.contract import log_normalize
from scfmbench.impute.dca import (
    CenteredBatchNorm,
    DCAAutoencoder,
    DCAConfig,
    _Plateau,
    count_nll,
    dca_imputer,
    dca_normalize,
    digamma,
    fit_dca,
    nb_nll,
    to_log_normalized,
    zinb_nll,
)

T = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small batches run far faster on one thread (and the test machine's cores are shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- likelihoods


def test_nb_and_zinb_nll_hand_computed():
    # x=0, mean 2, theta 0.5: -log NB(0) = -theta log(theta / (theta + mean)) = 0.5 log 5.
    # x=3, mean 1.5, theta 4: lgamma(7) - 2 lgamma(4) = log 20; theta log(4/5.5) + x log(1.5/5.5).
    nb0 = 0.5 * math.log(5.0)
    nb3 = -(math.log(20.0) + 4 * math.log(4 / 5.5) + 3 * math.log(1.5 / 5.5))
    x, mean, disp, pi = T([0.0, 3.0]), T([2.0, 1.5]), T([0.5, 4.0]), T([0.2, 0.2])
    assert nb_nll(x, mean, disp, reduction="none").numpy() == pytest.approx([nb0, nb3], rel=1e-9)
    assert float(nb_nll(x, mean, disp)) == pytest.approx((nb0 + nb3) / 2, rel=1e-9)
    # ZINB: zero case -log(pi + (1 - pi) NB(0)); positive case NB nll - log(1 - pi).
    z0 = -math.log(0.2 + 0.8 * (0.5 / 2.5) ** 0.5)
    z3 = nb3 - math.log(0.8)
    assert zinb_nll(x, mean, disp, pi, reduction="none").numpy() == pytest.approx([z0, z3], rel=1e-8)
    assert float(zinb_nll(x, mean, disp, pi)) == pytest.approx((z0 + z3) / 2, rel=1e-8)


def test_nll_matches_scipy():
    rng = np.random.default_rng(0)
    mean = rng.gamma(1.0, 3.0, 500) + 1e-3
    disp = rng.gamma(1.0, 2.0, 500) + 1e-2
    pi = rng.uniform(0, 0.9, 500)
    x = rng.negative_binomial(disp, disp / (disp + mean)).astype(float)
    x[:50] = 0
    pmf = stats.nbinom.pmf(x, disp, disp / (disp + mean))
    ref_nb = -stats.nbinom.logpmf(x, disp, disp / (disp + mean))
    ref_zinb = -np.log(pi * (x == 0) + (1 - pi) * pmf)
    got_nb = nb_nll(T(x), T(mean), T(disp), reduction="none").numpy()
    got_zinb = zinb_nll(T(x), T(mean), T(disp), T(pi), reduction="none").numpy()
    np.testing.assert_allclose(got_nb, ref_nb, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_zinb, ref_zinb, rtol=1e-5, atol=1e-7)
    assert float(zinb_nll(T(x), T(mean), T(disp), T(pi))) == pytest.approx(ref_zinb.mean(), rel=1e-5)


def test_ridge_term_adds_lambda_pi_squared():
    x, mean, disp, pi = T([0.0, 2.0, 5.0]), T([1.0, 2.0, 3.0]), T([1.0, 1.0, 1.0]), T([0.1, 0.5, 0.9])
    diff = zinb_nll(x, mean, disp, pi, ridge_lambda=0.3) - zinb_nll(x, mean, disp, pi)
    assert float(diff) == pytest.approx(0.3 * float((pi**2).mean()), rel=1e-9)


def test_nll_nan_becomes_inf():
    out = nb_nll(T([1.0]), T([float("nan")]), T([1.0]), reduction="none")
    assert torch.isinf(out).all()


# ----------------------------------------------------------------------------- preprocessing


def test_normalize_matches_scanpy_pipeline():
    sc = pytest.importorskip("scanpy")
    counts, _ = simulate_counts(60, 40, seed=3)
    counts[:, 5] = 0  # a constant gene: scanpy's scale leaves it at 0 (std set to 1)
    adata = ad.AnnData(counts.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.normalize_per_cell(adata)  # dca/io.py normalize(): normalize_per_cell, log1p, scale
        sf_ref = adata.obs["n_counts"].to_numpy() / np.median(adata.obs["n_counts"])
        sc.pp.log1p(adata)
        sc.pp.scale(adata)
    x, sf = dca_normalize(counts)
    np.testing.assert_allclose(sf, sf_ref, rtol=1e-5)
    np.testing.assert_allclose(x, adata.X, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- training


def test_batchnorm_keras_update_hand_computed():
    """One training step of Keras BatchNormalization(center=True, scale=False), by hand: normalize with
    the batch mean and the biased variance (tf.nn.moments), then moving = 0.99 moving + 0.01 batch
    (moving mean starts at 0, moving variance at 1), epsilon 1e-3 inside the square root."""
    h = T([[1.0, -2.0], [3.0, 0.0], [5.0, 4.0], [7.0, 2.0]])  # column means 4, 1; biased variances 5, 5
    bn = CenteredBatchNorm(2).double().train()
    with torch.no_grad():
        bn.beta.copy_(T([0.5, -0.5]))
    out = bn(h)
    assert bn.running_mean.tolist() == pytest.approx([0.04, 0.01], abs=1e-12)
    assert bn.running_var.tolist() == pytest.approx(
        [0.99 + 0.05, 0.99 + 0.05], abs=1e-12
    )  # unbiased would be 0.99 + 0.01 * 20/3
    expected = (h - T([4.0, 1.0])) / math.sqrt(5.0 + 1e-3) + T([0.5, -0.5])
    assert torch.allclose(out, expected, atol=1e-12)
    # Inference uses the moving statistics.
    bn.eval()
    x = T([[2.0, 2.0]])
    assert torch.allclose(
        bn(x), (x - T([0.04, 0.01])) / torch.sqrt(T([1.04, 1.04]) + 1e-3) + T([0.5, -0.5]), atol=1e-12
    )
    # A one-cell batch: output is the shift; Keras still moves the statistics (variance towards 0).
    bn.train()
    assert torch.allclose(bn(x), T([[0.5, -0.5]]))
    assert bn.running_mean.tolist() == pytest.approx([0.99 * 0.04 + 0.02, 0.99 * 0.01 + 0.02], abs=1e-12)
    assert bn.running_var.tolist() == pytest.approx([0.99 * 1.04] * 2, abs=1e-12)


def test_plateau_keras_semantics():
    es = _Plateau(patience=2, min_delta=0.0)
    assert [es.step(v) for v in (3.0, 2.0, 2.0, 2.5)] == [False, False, False, True]
    lr = _Plateau(patience=1, min_delta=0.1)  # an improvement must beat best - min_delta
    assert [lr.step(v) for v in (1.0, 0.95)] == [False, True]


@pytest.fixture(scope="module")
def simulated_fit():
    counts, mean = simulate_counts(300, 100, rank=4, depth=500.0, dropout=0.2, seed=1)
    counts[:, 7] = 0  # an all-zero gene must come back with mean 0, not be dropped
    result = fit_dca(sp.csr_matrix(counts), config=DCAConfig(epochs=20), seed=0, device="cpu")
    return counts, mean, result


def test_fit_denoises_simulated_counts(simulated_fit):
    counts, mean, result = simulated_fit
    keep = np.arange(counts.shape[1]) != 7
    truth = np.log1p(mean[:, keep])
    mse_raw = np.mean((np.log1p(counts[:, keep]) - truth) ** 2)
    mse_dca = np.mean((np.log1p(result.mean[:, keep]) - truth) ** 2)
    assert mse_dca < 0.7 * mse_raw, (mse_dca, mse_raw)


def test_fit_result_fields(simulated_fit):
    counts, _, result = simulated_fit
    assert result.mean.shape == result.dispersion.shape == result.pi.shape == counts.shape
    assert result.mean.dtype == np.float32
    assert not result.gene_mask[7] and result.gene_mask.sum() == counts.shape[1] - 1
    assert np.all(result.mean[:, 7] == 0) and np.isnan(result.pi[:, 7]).all()
    keep = result.gene_mask
    assert np.isfinite(result.mean[:, keep]).all() and (result.mean[:, keep] > 0).all()
    assert ((result.pi[:, keep] >= 0) & (result.pi[:, keep] <= 1)).all()
    assert ((result.dispersion[:, keep] >= 1e-4) & (result.dispersion[:, keep] <= 1e4)).all()
    h = result.history
    assert h.epochs_run == len(h.loss) == len(h.val_loss) == len(h.lr) <= 20
    assert h.stop_reason in ("early_stopping", "max_epochs")
    assert h.loss[-1] < h.loss[0]
    # size factors: cell totals over their median (dca/io.py normalize)
    totals = counts.sum(axis=1)
    np.testing.assert_allclose(result.size_factors, totals / np.median(totals), rtol=1e-5)


def test_fit_is_deterministic_and_handles_one_cell_batches():
    counts, _ = simulate_counts(37, 20, seed=2)  # 33 training cells: the last batch of 32 has one cell
    config = DCAConfig(epochs=3, hidden_dropout=0.1)
    a = fit_dca(counts, config=config, seed=5, device="cpu")
    b = fit_dca(counts, config=config, seed=5, device="cpu")
    c = fit_dca(counts, config=config, seed=6, device="cpu")
    np.testing.assert_array_equal(a.mean, b.mean)
    assert a.history.loss == b.history.loss
    assert not np.array_equal(a.mean, c.mean)


def test_nb_type_and_zero_count_cell():
    counts, _ = simulate_counts(30, 15, seed=4)
    counts[3] = 0
    result = fit_dca(counts, config=DCAConfig(ae_type="nb-conddisp", epochs=2), seed=0, device="cpu")
    assert result.pi is None
    assert result.size_factors[3] == 0 and np.all(result.mean[3] == 0)
    assert np.isfinite(result.mean).all()


def test_bad_inputs_and_config():
    with pytest.raises(InputError, match="negative"):
        fit_dca(-np.ones((5, 3)))
    with pytest.raises(InputError, match="ae_type"):
        DCAConfig(ae_type="vae")
    with pytest.raises(InputError, match="hidden_dropout"):
        DCAConfig(hidden_dropout=(0.1, 0.2))


# ----------------------------------------------------------------------------- imputer adapter


def _masked_adata(n_cells=40, n_genes=25):
    counts, _ = simulate_counts(n_cells, n_genes, seed=7)
    counts = sp.csr_matrix(counts)
    return ad.AnnData(X=log_normalize(counts), layers={"counts": counts})


def test_imputer_output_shape_and_scale():
    adata = _masked_adata()
    out = dca_imputer(adata, seed=0, epochs=2, hidden_size=[16, 8, 16])
    assert out.shape == adata.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and (out >= 0).all()
    np.testing.assert_allclose(np.expm1(out.astype(np.float64)).sum(axis=1), 1e4, rtol=1e-3)


def test_imputer_rejects_unknown_params():
    with pytest.raises(InputError, match="valid parameters.*epochs"):
        dca_imputer(_masked_adata(), seed=0, epoch=3)


def test_imputer_is_registered():
    from scfmbench.impute.methods import get_imputer

    assert get_imputer("dca") is dca_imputer


def test_to_log_normalized_zero_rows():
    out = to_log_normalized(np.array([[1.0, 3.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(out, [[np.log1p(2500), np.log1p(7500)], [0, 0]], rtol=1e-6)


def test_config_from_params_replaces_fields():
    cfg = DCAConfig.from_params({"epochs": 7, "hidden_size": [8, 4, 8]})
    assert cfg == dataclasses.replace(DCAConfig(), epochs=7, hidden_size=(8, 4, 8))


# ----------------------------------------------------------------------------- fast likelihood path


@pytest.mark.parametrize("zero_inflated", [True, False], ids=["zinb", "nb"])
@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_count_nll_matches_reference_values_and_gradients(zero_inflated, ridge):
    """count_nll (hand-derived gradients, training path) against autograd through nb_nll/zinb_nll."""
    rng = np.random.default_rng(1)
    n = 3000
    mean_np = rng.gamma(1.0, 3.0, n) + 1e-3
    disp_np = np.exp(rng.uniform(np.log(1e-4), np.log(1e4), n))  # DispAct's whole range
    x = T(
        rng.negative_binomial(
            np.minimum(disp_np, 50), np.minimum(disp_np, 50) / (np.minimum(disp_np, 50) + mean_np)
        ).astype(float)
    )
    x[:900] = 0
    mean, disp = T(mean_np).requires_grad_(), T(disp_np).requires_grad_()
    pi = T(rng.uniform(0, 0.95, n)).requires_grad_() if zero_inflated else None
    leaves = [t for t in (mean, disp, pi) if t is not None]
    ref = zinb_nll(x, mean, disp, pi, ridge_lambda=ridge) if zero_inflated else nb_nll(x, mean, disp)
    got = count_nll(x, mean, disp, pi, ridge if zero_inflated else 0.0)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    for g_ref, g_got in zip(torch.autograd.grad(ref, leaves), torch.autograd.grad(got, leaves), strict=True):
        np.testing.assert_allclose(g_got.numpy(), g_ref.numpy(), rtol=1e-8, atol=1e-12)
    # the per-cell lgamma(x + 1) shortcut gives the same value
    short = count_nll(
        x,
        mean.detach(),
        disp.detach(),
        pi.detach() if pi is not None else None,
        ridge if zero_inflated else 0.0,
        lgamma_x1_sum=torch.lgamma(x + 1).sum(),
    )
    assert float(short) == pytest.approx(float(ref.detach()), rel=1e-12)


def test_count_nll_nan_becomes_inf():
    x, d = T([1.0, 0.0]), T([1.0, 1.0])
    assert torch.isinf(count_nll(x, T([float("nan"), 1.0]), d, T([0.1, 0.1])))


def test_fast_digamma_matches_torch():
    z = torch.logspace(-4, 6, 5000, dtype=torch.float64)  # DispAct's range and beyond
    np.testing.assert_allclose(digamma(z).numpy(), torch.digamma(z).numpy(), rtol=1e-10, atol=1e-10)
    z32 = z.float()
    np.testing.assert_allclose(digamma(z32).numpy(), torch.digamma(z).numpy(), rtol=2e-6, atol=2e-6)


def test_model_loss_equals_reference_likelihood():
    counts, _ = simulate_counts(50, 30, seed=5)
    x_in, sf = dca_normalize(counts)
    torch.manual_seed(0)
    model = DCAAutoencoder(30, DCAConfig(ridge=0.2)).eval()
    t_in, t_counts, t_sf = (torch.from_numpy(a) for a in (x_in, counts, sf))
    with torch.no_grad():
        mean, disp, pi = model(t_in)
        ref = zinb_nll(t_counts, mean * t_sf[:, None], disp, pi, ridge_lambda=0.2)
        got = model.loss(t_in, t_counts, t_sf)
    assert float(got) == pytest.approx(float(ref), rel=1e-5)


# ----------------------------------------------------------------------------- against the controls


def test_dca_beats_none_against_truth_on_synthetic(tmp_path):
    """The masking protocol on the synthetic dataset: DCA's predictions are far closer to the
    noise-free truth than the no-imputation control's zeros (and than the observed values)."""
    from scfmbench.data.loaders import load_dataset
    from scfmbench.data.prepare import prepare_dataset
    from scfmbench.impute import get_imputer, run_imputer, score_imputation, write_masks

    raw = load_dataset(
        "synthetic", {"source": "synthetic", "synthetic": {"n_cells": 300, "n_genes": 60, "n_cell_types": 3, "seed": 0}}
    )
    write_masks(prepare_dataset(raw, seed=0), tmp_path / "m.h5ad", tmp_path / "h.npz", seed=0, n_folds=3)
    scores = {}
    for name, params in (("none", {}), ("dca", {"epochs": 40})):
        run_imputer(get_imputer(name), tmp_path / "m.h5ad", tmp_path / f"{name}.npz", seed=0, params=params, name=name)
        scores[name] = score_imputation(tmp_path / f"{name}.npz", tmp_path / "h.npz")
    assert scores["dca"]["mse_truth"] < 0.2 * scores["none"]["mse_truth"], scores
    assert scores["dca"]["mse"] < scores["none"]["mse"] and scores["dca"]["pearson_truth"] > 0.5, scores
