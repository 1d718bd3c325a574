"""The imputation protocol: mask held-out entries, run an imputer fold by fold, score it.

This is the first of two protocols (task ``imputation`` in metrics records); the second, molecular
cross-validation (task ``denoising``), lives in :mod:`scfmbench.impute.mcv`. One imputer function
serves both: :func:`run_imputer` and :func:`score_main` tell the protocols apart.

Follows the scHyena evaluation (arXiv 2310.02713; REFERENCE.md section 2): keep cells whose library
size is at least a threshold (the paper uses 4000), split each cell's non-zero entries into five
interleaved folds (``nonzero_idx[n::5]``), hide one fold at a time, ask the method for the hidden
values, clip negatives to 0, and score MSE and Pearson over all hidden entries. Here each cell's
non-zero indices are first permuted with a seeded RNG, so repeats with different seeds hide
different entries; with a fixed seed the masks are identical for every method.

Files (one mask per dataset and seed, one prediction per method and seed)::

    masked.h5ad      AnnData, kept cells x all genes, no held-out values anywhere in one fold's input
                     X                      None (each fold's input lives in its own layers)
                     layers["X_fold{f}"]    X with fold f's entries set to 0 (CSR float32)
                     layers["counts_fold{f}"] counts with fold f's entries set to 0 (CSR float32)
                     obs                    cell_type, split (obs_names kept)
                     var                    as in the prepared dataset
                     uns["mask"]            row, col, fold (int32): the hidden positions
                     uns["imputation"]      n_folds, seed, min_library_size, n_cells,
                                            n_cells_input, n_masked, mask_sha256
    heldout.npz      row, col, fold (int32), observed (float32: X there), truth (float32: the
                     dataset's layers["truth"] there; only when the dataset has one), mask_sha256
    predictions.npz  values (float32, on the X scale, negatives clipped), mask_sha256, method,
                     seed, params_json, provenance_json (run_record: versions, device, threads)

Every position array is in the same order: fold-major, then row, then column, so one fold is a
contiguous slice. ``mask_sha256`` fingerprints ``(row, col, fold)``; scoring refuses a prediction
made on other masks.

An imputer is ``fn(adata, *, seed, **params) -> np.ndarray``: ``adata`` holds one fold
(``X`` = masked log-normalized matrix, ``layers["counts"]`` = masked counts, obs/var as in the
masked file, nothing else) and the result is a dense (n_cells, n_genes) array on the X scale
(``log1p`` of counts per 1e4). See :mod:`scfmbench.impute.methods` for the registry.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench._io import write_h5ad
from scfmbench.impute.base import OBS_COLUMNS, check_output, pearson, read_npz, run_record, write_npz
from scfmbench.results import metrics_record, write_metrics

logger = logging.getLogger(__name__)

MASK_KEYS = ("row", "col", "fold")


# ----------------------------------------------------------------------------- helpers


def mask_fingerprint(row: np.ndarray, col: np.ndarray, fold: np.ndarray) -> str:
    """sha256 over the hidden positions, so a prediction can be matched to the masks it was made on."""
    h = hashlib.sha256()
    for a in (row, col, fold):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()


def _gather(m, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Values of a sparse or dense matrix at (row, col) pairs, as float32."""
    if sp.issparse(m):
        return np.asarray(sp.csr_matrix(m)[row, col], dtype=np.float32).ravel()
    return np.asarray(m)[row, col].astype(np.float32)


def _zero_at(m: sp.csr_matrix, row: np.ndarray, col: np.ndarray) -> sp.csr_matrix:
    """``m`` with the (row, col) entries set to 0 and dropped from the structure (CSR float32).

    ``m - m * indicator`` is exact: untouched entries are copied, hidden ones become exactly 0.
    """
    ind = sp.csr_matrix((np.ones(len(row), dtype=np.float32), (row, col)), shape=m.shape)
    out = sp.csr_matrix(m - m.multiply(ind), dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


# ----------------------------------------------------------------------------- masks


def make_masks(adata, *, seed: int, n_folds: int = 5, min_library_size: float = 0):
    """Hide each kept cell's non-zero entries in ``n_folds`` interleaved folds.

    Parameters
    ----------
    adata
        A prepared dataset (:mod:`scfmbench.data.contract`): ``layers["counts"]``, log-normalized
        ``X``, ``obs["cell_type"]``, ``obs["split"]``, optional ``layers["truth"]``.
    seed
        Seeds ``np.random.default_rng``; each cell's non-zero gene indices are permuted with it and
        fold ``f`` is ``perm[f::n_folds]`` (fold sizes within a cell differ by at most one).
    n_folds
        Number of folds (scHyena: 5); at least 2.
    min_library_size
        Keep cells whose total count is ``>= min_library_size`` (scHyena: 4000).

    Returns
    -------
    masked : AnnData
        Kept cells x all genes. ``layers["X_fold{f}"]`` and ``layers["counts_fold{f}"]`` (CSR
        float32): X and counts with fold ``f``'s entries set to 0. ``X`` is None, so nothing reads an
        unmasked or wrong-fold matrix by accident. ``obs``: cell_type, split. ``var``: copied.
        ``uns["mask"]``: ``row``, ``col``, ``fold`` (int32, positions only).
        ``uns["imputation"]``: ``n_folds``, ``seed``, ``min_library_size``, ``n_cells`` (kept),
        ``n_cells_input``, ``n_masked``, ``mask_sha256``.
    heldout : dict of np.ndarray
        ``row``, ``col``, ``fold`` in ``uns["mask"]`` order; ``observed`` (X there); ``truth``
        (``layers["truth"]`` there) when the dataset has one; ``mask_sha256`` (0-d string).
    """
    import anndata as ad

    if int(n_folds) != n_folds or n_folds < 2:
        raise InputError(f"n_folds must be an integer >= 2, got {n_folds!r}.")
    n_folds = int(n_folds)
    if not min_library_size >= 0:
        raise InputError(f"min_library_size must be >= 0, got {min_library_size!r}.")
    if "counts" not in adata.layers:
        raise InputError(
            "imputation masks need layers['counts'] (raw counts); the dataset has none. Prepare it with the data stage."
        )
    counts = sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    lib = np.asarray(counts.sum(axis=1)).ravel()
    keep = lib >= min_library_size
    if not keep.any():
        raise InputError(
            f"no cell has library size >= min_library_size={min_library_size:g}; the largest library "
            f"size is {lib.max() if lib.size else 0:g}. Lower datasets.<name>.min_library_size in the "
            "config (the dataset's entry)."
        )
    counts = counts[keep].copy()
    counts.eliminate_zeros()
    counts.sort_indices()
    x = sp.csr_matrix(adata.X[keep], dtype=np.float32)
    n_cells = counts.shape[0]
    if counts.nnz == 0:
        raise InputError(f"the {n_cells} kept cells have no non-zero counts; there is nothing to hide and score.")

    # Fold of every stored entry, in CSR (row, col) order: entry perm[j] of a cell goes to fold j % n.
    rng = np.random.default_rng(seed)
    indptr = counts.indptr
    fold = np.empty(counts.nnz, dtype=np.int32)
    for i in range(n_cells):
        k = indptr[i + 1] - indptr[i]
        fold[indptr[i] + rng.permutation(k)] = np.arange(k, dtype=np.int32) % n_folds
    row = np.repeat(np.arange(n_cells, dtype=np.int32), np.diff(indptr))
    col = counts.indices.astype(np.int32)
    order = np.argsort(fold, kind="stable")  # fold-major; within a fold CSR order (row, col) is kept
    row, col, fold = row[order], col[order], fold[order]
    sha = mask_fingerprint(row, col, fold)

    layers = {}
    for f in range(n_folds):
        sel = fold == f
        layers[f"X_fold{f}"] = _zero_at(x, row[sel], col[sel])
        layers[f"counts_fold{f}"] = _zero_at(counts, row[sel], col[sel])
    obs = adata.obs.loc[keep, [c for c in OBS_COLUMNS if c in adata.obs]].copy()
    masked = ad.AnnData(X=None, obs=obs, var=adata.var.copy(), layers=layers)
    masked.uns["mask"] = {"row": row, "col": col, "fold": fold}
    masked.uns["imputation"] = {
        "n_folds": n_folds,
        "seed": int(seed),
        "min_library_size": float(min_library_size),
        "n_cells": int(n_cells),
        "n_cells_input": int(adata.n_obs),
        "n_masked": int(len(row)),
        "mask_sha256": sha,
    }

    heldout = {"row": row, "col": col, "fold": fold, "observed": _gather(x, row, col), "mask_sha256": np.array(sha)}
    if "truth" in adata.layers:
        heldout["truth"] = _gather(adata.layers["truth"], np.flatnonzero(keep)[row], col)  # rows of the input
    logger.info("masked %d entries of %d/%d cells in %d folds (seed %d)", len(row), n_cells, adata.n_obs, n_folds, seed)
    return masked, heldout


def write_masks(
    adata,
    masked_path: str | Path,
    heldout_path: str | Path,
    *,
    seed: int,
    n_folds: int = 5,
    min_library_size: float = 0,
) -> None:
    """:func:`make_masks` and write ``masked.h5ad`` and ``heldout.npz`` (both atomically)."""
    masked, heldout = make_masks(adata, seed=seed, n_folds=n_folds, min_library_size=min_library_size)
    write_h5ad(masked, masked_path)
    write_npz(heldout_path, **heldout)


def read_masked(path: str | Path):
    """Read a ``masked.h5ad`` and check it has the mask and every fold's layers."""
    import anndata as ad

    return check_masked(ad.read_h5ad(path), path)


def check_masked(masked, path):
    """``masked`` (read from ``path``) if it is a masked imputation file; else :class:`InputError`."""
    info, mask = masked.uns.get("imputation"), masked.uns.get("mask")
    if not isinstance(info, dict) or not isinstance(mask, dict) or any(k not in mask for k in MASK_KEYS):
        raise InputError(
            f"{path}: not a masked imputation file (needs uns['imputation'] and uns['mask'] with "
            f"{list(MASK_KEYS)}); write it with write_masks."
        )
    missing = [
        f"{p}_fold{f}"
        for f in range(int(info["n_folds"]))
        for p in ("X", "counts")
        if f"{p}_fold{f}" not in masked.layers
    ]
    if missing:
        raise InputError(f"{path}: lacks layers {missing}.")
    return masked


def fold_adata(masked, fold: int):
    """The AnnData an imputer sees for one fold: X and layers['counts'] masked, obs/var, nothing else."""
    import anndata as ad

    return ad.AnnData(
        X=masked.layers[f"X_fold{fold}"].copy(),
        obs=masked.obs.copy(),
        var=masked.var.copy(),
        layers={"counts": masked.layers[f"counts_fold{fold}"].copy()},
    )


# ----------------------------------------------------------------------------- running an imputer


def check_params(fn: Callable, params: dict, *, name: str) -> None:
    """Raise :class:`InputError` if ``fn`` does not accept ``params`` (a typo must not pass silently)."""
    try:
        inspect.signature(fn).bind(None, seed=0, **params)
    except TypeError as e:
        accepted = [
            p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY and p.name != "seed"
        ]
        raise InputError(f"imputer {name!r}: bad parameters {sorted(params)} ({e}); it accepts {accepted}.") from None


def run_imputer(
    fn: Callable,
    input_path: str | Path,
    predictions_path: str | Path,
    *,
    seed: int,
    params: dict | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Run ``fn`` under the protocol of ``input_path`` and write its predictions.

    ``input_path`` is either protocol's input, told apart by its content: a ``masked.h5ad``
    (masking: ``fn`` runs on every fold, see below) or an MCV ``train.h5ad`` (molecular
    cross-validation: ``fn`` runs once on the train part, :func:`scfmbench.impute.mcv.denoise`).
    ``params`` are checked against ``fn``'s keyword arguments before anything runs.

    Masking: each fold's output is checked (shape, finite), clipped at 0 (protocol), gathered at
    that fold's hidden positions and dropped before the next fold, so at most one dense output is
    held.

    Returns
    -------
    values : np.ndarray
        Masking: float32, aligned with ``uns["mask"]``; also written to ``predictions_path``
        (``values``, ``mask_sha256`` and :func:`run_record`'s arrays). MCV: the denoised
        matrix (see :mod:`scfmbench.impute.mcv`).
    """
    import anndata as ad

    params = dict(params or {})
    name = name or getattr(fn, "__name__", "imputer")
    check_params(fn, params, name=name)
    data = ad.read_h5ad(input_path)
    if "mcv" in data.uns:
        from scfmbench.impute.mcv import check_train, denoise

        check_train(data, input_path)
        return denoise(fn, data, predictions_path, seed=seed, params=params, name=name)
    masked = check_masked(data, input_path)
    mask, info = masked.uns["mask"], masked.uns["imputation"]
    row, col, fold = (np.asarray(mask[k]) for k in MASK_KEYS)
    values = np.empty(len(row), dtype=np.float32)
    for f in range(int(info["n_folds"])):
        sel = np.flatnonzero(fold == f)
        out = check_output(fn(fold_adata(masked, f), seed=seed, **params), masked.shape, name=name, what=f"fold {f}")
        values[sel] = np.maximum(out[row[sel], col[sel]], 0)  # negatives clipped to 0 (scHyena protocol)
        del out
        logger.info("%s: fold %d done (%d hidden entries)", name, f, len(sel))
    write_npz(
        predictions_path, values=values, mask_sha256=np.array(info["mask_sha256"]), **run_record(name, seed, params)
    )
    return values


# ----------------------------------------------------------------------------- scoring


def _mse(pred: np.ndarray, obs: np.ndarray) -> float:
    return float(np.mean((pred - obs) ** 2))


def score_imputation(predictions_path: str | Path, heldout_path: str | Path) -> dict[str, float]:
    """MSE and Pearson over all hidden entries, pooled across cells and folds.

    Returns
    -------
    dict
        ``mse``, ``pearson`` against the observed (held-out) X values; ``mse_truth``,
        ``pearson_truth`` against ``truth`` at the same entries when the held-out file has it.
        Pearson is NaN, not an error, when the prediction (or the target) is constant.
    """
    pred = read_npz(predictions_path, ("values", "mask_sha256"))
    held = read_npz(heldout_path, ("row", "col", "fold", "observed"))
    sha = mask_fingerprint(held["row"], held["col"], held["fold"])
    if str(pred["mask_sha256"]) != sha:
        raise InputError(
            f"{predictions_path} was made on other masks than {heldout_path} (mask_sha256 differs); rerun "
            "the imputer on this mask file."
        )
    values = pred["values"].astype(np.float64)
    if values.shape != held["observed"].shape:
        raise InputError(f"{predictions_path}: {values.size} values for {held['observed'].size} hidden entries.")
    out = {
        "mse": _mse(values, held["observed"].astype(np.float64)),
        "pearson": pearson(values, held["observed"].astype(np.float64)),
    }
    if "truth" in held:
        truth = held["truth"].astype(np.float64)
        out.update(mse_truth=_mse(values, truth), pearson_truth=pearson(values, truth))
    return out


def score_main(
    predictions_path: str | Path,
    heldout_path: str | Path,
    metrics_path: str | Path,
    *,
    dataset: str,
    method: str,
    seed: int,
    benchmark: str | Path | None = None,
    task: str = "imputation",
):
    """Score one prediction and write its metrics record; returns the record.

    ``task``: ``"imputation"`` (masking protocol, :func:`score_imputation` against ``heldout.npz``)
    or ``"denoising"`` (molecular cross-validation, :func:`scfmbench.impute.mcv.score_mcv` against
    ``test.npz``). ``benchmark`` is the imputer job's Snakemake benchmark file (runtime and peak
    memory), or None.
    """
    if task == "imputation":
        metrics = score_imputation(predictions_path, heldout_path)
    elif task == "denoising":
        from scfmbench.impute.mcv import score_mcv

        metrics = score_mcv(predictions_path, heldout_path)
    else:
        raise InputError(
            f"score_main: task {task!r}; imputation tasks are 'imputation' (masking) and 'denoising' (MCV)."
        )
    record = metrics_record(task=task, dataset=dataset, method=method, seed=seed, metrics=metrics, benchmark=benchmark)
    write_metrics(record, metrics_path)
    return record
