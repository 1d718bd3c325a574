"""Molecular cross-validation (MCV), the second imputation protocol (task ``denoising``).

Batson, Royer and Webber (2019), "Molecular cross-validation for single-cell RNA-seq", as run by
openproblems' denoising task (``task_denoising``: ``process_dataset``, metrics ``mse`` and
``poisson``). Each cell's captured molecules are split at random into a train part and a test part
by binomial thinning: ``train ~ Binomial(counts, p)``, ``test = counts - train`` (``p = 0.9``,
openproblems' ``train_frac``). The two parts are independent draws from the same cells, so a
denoiser that sees only the train part is scored by how well its output predicts the test part:
no ground truth is needed, and reproducing the train part's sampling noise is penalized.

Deviations from openproblems, all deliberate: cells below the dataset's ``min_library_size`` are
dropped (the same cells as in the masking protocol); the random generator is
``np.random.default_rng(seed)`` (openproblems: ``np.random.RandomState(seed)``), so splits are
seeded per repeat; on datasets with a noise-free truth (``synthetic``) the denoised output is also
compared with the truth (``mse_truth``, ``pearson_truth``).

Files (one split per dataset and seed, one prediction per method and seed)::

    train.h5ad       AnnData, kept cells x kept genes: what a denoiser sees
                     X                  log1p(normalize_total(train counts, 1e4)) (CSR float32)
                     layers["counts"]   train counts (CSR float32)
                     obs                cell_type, split (obs_names kept)
                     var                as in the prepared dataset, less the genes with no train
                                        count (openproblems drops them too)
                     uns["mcv"]         seed, train_fraction, min_library_size, n_cells, n_genes,
                                        n_cells_input, n_genes_input, train_sum, test_sum,
                                        split_sha256
    test.npz         test_data, test_indices, test_indptr, shape: the test counts (CSR);
                     train_totals (per cell), train_sum, test_sum, split_sha256; truth (float32,
                     kept cells x kept genes, the dataset's layers["truth"] re-normalized over the
                     kept genes; only when the dataset has one)
    predictions.npz  denoised (float32, kept cells x kept genes, on the X scale, negatives clipped),
                     split_sha256, method, seed, params_json, provenance_json

A denoiser is the same function as a masking imputer (:mod:`scfmbench.impute.protocol`):
``fn(adata, *, seed, **params) -> np.ndarray`` on the X scale, here called once on the train part.

Metrics (openproblems, on all entries of the kept cells and genes):

- ``mse``: both the test counts and the denoised values are normalized to 1e4 per cell and
  log1p'd (openproblems ``mse``: ``normalize_total(target_sum=1e4)``, ``log1p``), then the mean
  squared difference. The denoised values are ``expm1`` of the prediction, so any per-cell scale
  the method used cancels.
- ``pearson``: the pooled Pearson correlation on the same scale (not in openproblems; added so both
  protocols report MSE and Pearson).
- ``poisson``: the denoised expression as train-scale counts (the prediction's proportions times
  the cell's train library size), scaled by ``test_sum / train_sum``, then
  ``mean(d - y * log(d + 1e-6))`` with ``y`` the test counts (openproblems ``poisson``, which copies
  ``poisson_nll_loss(y_pred, y_true)`` of Batson's ``mcv_sweep.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench._io import write_h5ad
from scfmbench.data.contract import TARGET_SUM, log_normalize
from scfmbench.impute.protocol import OBS_COLUMNS, _pearson, _read_npz, _write_npz, check_output, run_record

logger = logging.getLogger(__name__)

#: openproblems task_denoising process_dataset ``train_frac`` (and Batson's ``data_split``) default.
TRAIN_FRACTION = 0.9
#: Batson's ``poisson_nll_loss``: ``(y_pred - y_true * log(y_pred + 1e-6)).mean()``.
POISSON_EPS = 1e-6
TEST_KEYS = ("test_data", "test_indices", "test_indptr", "shape", "train_totals", "train_sum", "test_sum", "split_sha256")


def split_molecules(counts, *, train_fraction: float = TRAIN_FRACTION, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Binomial thinning: ``train ~ Binomial(counts, train_fraction)``, ``test = counts - train``.

    Batson's ``split_molecules`` with ``overlap_factor=0`` (openproblems' call): each molecule goes
    to train with probability ``train_fraction``, independently. Returns two float32 CSR matrices
    (explicit zeros removed) that sum to ``counts``.
    """
    if not 0 < train_fraction < 1:
        raise InputError(f"mcv: train_fraction={train_fraction}; must be in (0, 1).")
    counts = sp.csr_matrix(counts, dtype=np.float32)
    values = np.rint(counts.data).astype(np.int64)
    if values.size and (values.min() < 0 or not np.allclose(values, counts.data)):
        raise InputError("mcv: counts must be non-negative integers (molecular cross-validation splits molecules).")
    train_values = np.random.default_rng(seed).binomial(values, train_fraction)
    parts = []
    for v in (train_values, values - train_values):
        m = sp.csr_matrix((v.astype(np.float32), counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)
        m.eliminate_zeros()
        parts.append(m)
    return parts[0], parts[1]


def split_fingerprint(train: sp.csr_matrix, test: sp.csr_matrix) -> str:
    """sha256 over both parts, so a prediction can be matched to the split it was made on."""
    h = hashlib.sha256()
    for m in (train, test):
        h.update(np.asarray(m.shape, dtype=np.int64).tobytes())
        for a in (m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.float32)):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _renormalize_log(x: np.ndarray) -> np.ndarray:
    """A dense X-scale matrix re-normalized to 1e4 per row: ``log1p(normalize_total(expm1(x)))`` (float32)."""
    lin = np.expm1(np.asarray(x, dtype=np.float64))
    totals = lin.sum(axis=1, keepdims=True)
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(lin * scale).astype(np.float32)


def make_mcv(adata, *, seed: int, train_fraction: float = TRAIN_FRACTION, min_library_size: float = 0):
    """Split a prepared dataset's molecules into the train AnnData a denoiser sees and the held-out test part.

    Parameters
    ----------
    adata
        A prepared dataset (:mod:`scfmbench.data.contract`); ``layers["truth"]`` is optional.
    seed
        Seeds the binomial thinning.
    train_fraction
        Probability that a molecule goes to the train part (openproblems: 0.9).
    min_library_size
        Keep cells with at least this many counts (as the masking protocol does).

    Returns
    -------
    train : AnnData
        Kept cells x genes with a train count: ``X`` (log-normalized train counts),
        ``layers["counts"]`` (train counts), ``obs`` (cell_type, split), ``var``, ``uns["mcv"]``.
    test : dict
        The arrays of ``test.npz`` (see the module docstring).
    """
    import anndata as ad

    counts = sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    library = np.asarray(counts.sum(axis=1)).ravel()
    keep = library >= min_library_size
    if not keep.any():
        raise InputError(f"mcv: no cell has at least min_library_size={min_library_size:g} counts (largest: {library.max():g}); lower datasets.<name>.min_library_size.")
    train, test = split_molecules(counts[keep], train_fraction=train_fraction, seed=seed)
    genes = np.asarray(train.sum(axis=0)).ravel() > 0  # openproblems: drop genes absent from train
    train, test = sp.csr_matrix(train[:, genes]), sp.csr_matrix(test[:, genes])
    sha = split_fingerprint(train, test)
    train_totals = np.asarray(train.sum(axis=1), dtype=np.float64).ravel()
    info = {
        "seed": int(seed),
        "train_fraction": float(train_fraction),
        "min_library_size": float(min_library_size),
        "n_cells": int(train.shape[0]),
        "n_genes": int(train.shape[1]),
        "n_cells_input": int(adata.n_obs),
        "n_genes_input": int(adata.n_vars),
        "train_sum": float(train.sum()),
        "test_sum": float(test.sum()),
        "split_sha256": sha,
    }
    obs = adata.obs.loc[keep, [c for c in OBS_COLUMNS if c in adata.obs]].copy()
    out = ad.AnnData(X=log_normalize(train), obs=obs, var=adata.var.loc[genes].copy(), layers={"counts": train})
    out.uns["mcv"] = info
    held = {
        "test_data": test.data,
        "test_indices": test.indices.astype(np.int32),
        "test_indptr": test.indptr.astype(np.int64),
        "shape": np.asarray(test.shape, dtype=np.int64),
        "train_totals": train_totals,
        "train_sum": np.array(info["train_sum"]),
        "test_sum": np.array(info["test_sum"]),
        "split_sha256": np.array(sha),
    }
    if "truth" in adata.layers:
        truth = np.asarray(adata.layers["truth"].toarray() if sp.issparse(adata.layers["truth"]) else adata.layers["truth"])
        held["truth"] = _renormalize_log(truth[np.ix_(keep, genes)])
    logger.info("mcv: split %d/%d cells x %d/%d genes, train %.0f / test %.0f molecules (seed %d)", train.shape[0], adata.n_obs, train.shape[1], adata.n_vars, info["train_sum"], info["test_sum"], seed)
    return out, held


def write_mcv(adata, train_path: str | Path, test_path: str | Path, *, seed: int, train_fraction: float = TRAIN_FRACTION, min_library_size: float = 0) -> None:
    """:func:`make_mcv` and write ``train.h5ad`` and ``test.npz`` (both atomically)."""
    train, held = make_mcv(adata, seed=seed, train_fraction=train_fraction, min_library_size=min_library_size)
    write_h5ad(train, train_path)
    _write_npz(test_path, **held)


def check_train(train, path) -> None:
    """Raise :class:`InputError` unless ``train`` is an MCV train part (``uns["mcv"]``, X, counts)."""
    info = train.uns.get("mcv")
    if not isinstance(info, dict) or "split_sha256" not in info or "counts" not in train.layers or train.X is None:
        raise InputError(f"{path}: not an MCV train file (needs X, layers['counts'] and uns['mcv']); write it with write_mcv.")


def denoise(fn: Callable, train, predictions_path: str | Path, *, seed: int, params: dict, name: str) -> np.ndarray:
    """Run ``fn`` once on the train part and write its output (clipped at 0) as ``predictions.npz``.

    ``train`` is the AnnData read from ``train.h5ad``; the imputer sees X, ``layers["counts"]``,
    obs and var only. Returns the denoised matrix (float32, kept cells x kept genes).
    """
    import anndata as ad

    view = ad.AnnData(X=train.X.copy(), obs=train.obs.copy(), var=train.var.copy(), layers={"counts": train.layers["counts"].copy()})
    out = check_output(fn(view, seed=seed, **params), train.shape, name=name, what="the MCV train part")
    denoised = np.maximum(out, 0).astype(np.float32)
    _write_npz(
        predictions_path,
        denoised=denoised,
        split_sha256=np.array(train.uns["mcv"]["split_sha256"]),
        **run_record(name, seed, params),
    )
    logger.info("%s: denoised %d cells x %d genes", name, *train.shape)
    return denoised


def read_test(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a ``test.npz``, with ``counts`` (CSR) assembled from its parts."""
    held = _read_npz(path, TEST_KEYS)
    held["counts"] = sp.csr_matrix((held["test_data"], held["test_indices"], held["test_indptr"]), shape=tuple(int(s) for s in held["shape"]))
    return held


def normalize_log(counts) -> np.ndarray:
    """``log1p(normalize_total(counts, 1e4))`` as a dense float64 array (rows summing to 0 stay 0)."""
    x = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    x = x.astype(np.float64)
    totals = x.sum(axis=1, keepdims=True)
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(x * scale)


def poisson_loss(denoised_counts: np.ndarray, test_counts: np.ndarray) -> float:
    """Batson's ``poisson_nll_loss(y_pred, y_true) = mean(y_pred - y_true * log(y_pred + 1e-6))``."""
    return float(np.mean(denoised_counts - test_counts * np.log(denoised_counts + POISSON_EPS)))


def score_mcv(predictions_path: str | Path, test_path: str | Path) -> dict[str, float]:
    """MSE, Pearson and Poisson loss of a denoised train part against the test part (module docstring).

    Returns
    -------
    dict
        ``mse``, ``pearson``, ``poisson``; ``mse_truth`` and ``pearson_truth`` against the noise-free
        truth when the test file has one.
    """
    pred = _read_npz(predictions_path, ("denoised", "split_sha256"))
    held = read_test(test_path)
    if str(pred["split_sha256"]) != str(held["split_sha256"]):
        raise InputError(f"{predictions_path} was made on another MCV split than {test_path} (split_sha256 differs); rerun the method on this split.")
    denoised = pred["denoised"].astype(np.float64)
    if denoised.shape != held["counts"].shape:
        raise InputError(f"{predictions_path}: denoised has shape {denoised.shape}; the split has {held['counts'].shape}.")
    lin = np.expm1(denoised)  # X scale -> values proportional to the counts within each cell
    pred_norm = normalize_log(lin)
    test = held["counts"].toarray().astype(np.float64)
    test_norm = normalize_log(test)
    out = {"mse": float(np.mean((pred_norm - test_norm) ** 2)), "pearson": _pearson(pred_norm.ravel(), test_norm.ravel())}
    # Train-scale denoised counts (proportions x the cell's train library), then openproblems'
    # scaling of the whole matrix by test_sum / train_sum.
    totals = lin.sum(axis=1, keepdims=True)
    proportions = np.divide(lin, totals, out=np.zeros_like(lin), where=totals > 0)
    scaled = proportions * held["train_totals"][:, None] * (float(held["test_sum"]) / float(held["train_sum"]))
    out["poisson"] = poisson_loss(scaled, test)
    if "truth" in held:
        truth = held["truth"].astype(np.float64)
        out.update(mse_truth=float(np.mean((pred_norm - truth) ** 2)), pearson_truth=_pearson(pred_norm.ravel(), truth.ravel()))
    return out
