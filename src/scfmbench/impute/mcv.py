"""Molecular cross-validation (MCV), the second imputation protocol (task ``denoising``).

Batson, Royer and Webber (2019), "Molecular cross-validation for single-cell RNA-seq"
(``czbiohub/molecular-cross-validation``), with the split of openproblems' denoising task
(``task_denoising``: ``process_dataset``, metrics ``mse`` and ``poisson``). Each cell's captured molecules are split at
random into a train part and a test part by binomial thinning: ``train ~ Binomial(counts, p)``,
``test = counts - train`` (``p = 0.9``, openproblems' ``train_frac``). The two parts are independent draws from the same
cells, so a denoiser that sees only the train part is scored by how well its output predicts the test part:
no ground truth is needed, and reproducing the train part's sampling noise is penalized. What the
parts share is each entry's Poisson rate (biological variation and technical dropout included), so
MCV scores an estimate of that rate: on ``synthetic`` the dataset's ``layers["rate"]``, not its
noise-free ``truth`` (the ``true_rate`` control, :mod:`scfmbench.impute.controls`).

Deviations from openproblems, all deliberate: cells below the dataset's ``min_library_size`` are
dropped (the same cells as in the masking protocol); the random generator is
``np.random.default_rng(seed)`` (openproblems: ``np.random.RandomState(seed)``), so splits are
seeded per repeat; on datasets with a noise-free truth (``synthetic``) the denoised output is also
compared with the truth (``mse_truth``, ``pearson_truth``); openproblems' ``mse`` is kept as
``mse_openproblems`` and the MCV MSE is Batson's (``mse_sqrt``, ``mse_log1p``, below).

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
                     train_totals (per cell), train_fraction, train_sum, test_sum, split_sha256;
                     truth (float32, kept cells x kept genes, the dataset's layers["truth"]
                     re-normalized over the kept genes) and rate (float32, the dataset's
                     layers["rate"] in counts), each only when the dataset has it
    predictions.npz  denoised (float32, kept cells x kept genes, on the X scale, negatives clipped),
                     split_sha256, method, seed, params_json, provenance_json; optional mcv_output
                     ("estimate", the default, or "poisson_mean": see the metrics)

A denoiser is the same function as a masking imputer (:mod:`scfmbench.impute.protocol`):
``fn(adata, *, seed, **params) -> np.ndarray`` on the X scale, here called once on the train part.

Metrics, on all entries of the kept cells and genes. The denoised output is first put in counts
at the train depth: the prediction's proportions (``expm1`` of it, per cell) times the cell's train
library size. ``p`` is the train fraction.

- ``mse_sqrt`` (Batson et al.'s MSE loss): the mean squared difference between ``sqrt(test
  counts)`` and the denoised ``sqrt(train-depth counts)`` carried to the test depth by Batson's
  expectation conversion (:func:`convert_exp_sqrt`: the value is read as ``E[sqrt(Poisson(p l))]``
  and replaced by ``E[sqrt(Poisson((1 - p) l))]``). Without the conversion the train part at 90%
  of the depth would be compared with a test part at 10%, and any estimate of the mean would lose.
- ``mse_log1p``: the same on ``log1p`` of the raw counts (:func:`convert_exp_log1p`).
- ``pearson_sqrt``: the pooled Pearson correlation on the ``mse_sqrt`` scale (both protocols
  report a Pearson r; the conditional mean maximizes it as it minimizes the MSE).
- ``poisson``: the train-depth counts scaled by ``test_sum / train_sum`` (about ``(1 - p) / p``),
  then ``mean(d - y * log(d + 1e-6))`` with ``y`` the test counts (openproblems ``poisson``, which
  copies ``poisson_nll_loss(y_pred, y_true)`` of Batson's ``mcv_sweep.py``). A proper loss for
  the mean, so the depth scaling is all it needs.
- ``mse_openproblems``: openproblems' ``mse``: both sides normalized to 1e4 per cell and log1p'd
  (``normalize_total(target_sum=1e4)``, ``log1p``), then the mean squared difference. **Not an MCV
  loss at unequal split fractions**: normalizing removes the depth but not the sampling noise of
  the 10% test part, so the best prediction under it is ``E[log1p]`` of a 10%-depth draw, far
  below log1p of the rate; any estimate of the mean is penalized and the zeros of the undenoised
  train part are rewarded (on pure-Poisson data at 200 counts per cell the exact rate loses to
  ``none``: the tests). Reported for comparison with openproblems, never a quality floor.
- ``mse_truth``, ``pearson_truth`` (datasets with a noise-free truth): the denoised values,
  normalized and log1p'd, against ``truth``.

``mcv_output`` of a predictions file says how its values enter the two MSE scales: ``estimate``
(every denoiser: the output transformed like the data, as Batson's denoisers output values on the
transformed scale) or ``poisson_mean`` (the ``true_rate`` control: expected counts, whose value on
each scale is ``E[f(Poisson(mean (1 - p) / p))]``, the best prediction of ``f(test)`` given the
rate).
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
from scfmbench.impute.base import OBS_COLUMNS, check_output, pearson, read_npz, run_record, write_npz

logger = logging.getLogger(__name__)

#: openproblems task_denoising process_dataset ``train_frac`` (and Batson's ``data_split``) default.
TRAIN_FRACTION = 0.9
#: Batson's ``poisson_nll_loss``: ``(y_pred - y_true * log(y_pred + 1e-6)).mean()``.
POISSON_EPS = 1e-6
TEST_KEYS = (
    "test_data",
    "test_indices",
    "test_indptr",
    "shape",
    "train_totals",
    "train_fraction",
    "train_sum",
    "test_sum",
    "split_sha256",
)


def split_molecules(
    counts, *, train_fraction: float = TRAIN_FRACTION, seed: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
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
        raise InputError(
            f"mcv: no cell has at least min_library_size={min_library_size:g} counts (largest: {library.max():g}); "
            "lower datasets.<name>.min_library_size."
        )
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
        "train_fraction": np.array(float(train_fraction)),
        "train_sum": np.array(info["train_sum"]),
        "test_sum": np.array(info["test_sum"]),
        "split_sha256": np.array(sha),
    }
    if "truth" in adata.layers:
        truth = np.asarray(
            adata.layers["truth"].toarray() if sp.issparse(adata.layers["truth"]) else adata.layers["truth"]
        )
        held["truth"] = _renormalize_log(truth[np.ix_(keep, genes)])
    if "rate" in adata.layers:  # the Poisson rate both parts were drawn from (synthetic), in counts
        rate = adata.layers["rate"]
        held["rate"] = np.asarray(rate.toarray() if sp.issparse(rate) else rate, dtype=np.float32)[np.ix_(keep, genes)]
    logger.info(
        "mcv: split %d/%d cells x %d/%d genes, train %.0f / test %.0f molecules (seed %d)",
        train.shape[0],
        adata.n_obs,
        train.shape[1],
        adata.n_vars,
        info["train_sum"],
        info["test_sum"],
        seed,
    )
    return out, held


def write_mcv(
    adata,
    train_path: str | Path,
    test_path: str | Path,
    *,
    seed: int,
    train_fraction: float = TRAIN_FRACTION,
    min_library_size: float = 0,
) -> None:
    """:func:`make_mcv` and write ``train.h5ad`` and ``test.npz`` (both atomically)."""
    train, held = make_mcv(adata, seed=seed, train_fraction=train_fraction, min_library_size=min_library_size)
    write_h5ad(train, train_path)
    write_npz(test_path, **held)


def check_train(train, path) -> None:
    """Raise :class:`InputError` unless ``train`` is an MCV train part (``uns["mcv"]``, X, counts)."""
    info = train.uns.get("mcv")
    if not isinstance(info, dict) or "split_sha256" not in info or "counts" not in train.layers or train.X is None:
        raise InputError(
            f"{path}: not an MCV train file (needs X, layers['counts'] and uns['mcv']); write it with write_mcv."
        )


def denoise(fn: Callable, train, predictions_path: str | Path, *, seed: int, params: dict, name: str) -> np.ndarray:
    """Run ``fn`` once on the train part and write its output (clipped at 0) as ``predictions.npz``.

    ``train`` is the AnnData read from ``train.h5ad``; the imputer sees X, ``layers["counts"]``,
    obs and var only. Returns the denoised matrix (float32, kept cells x kept genes).
    """
    import anndata as ad

    view = ad.AnnData(
        X=train.X.copy(), obs=train.obs.copy(), var=train.var.copy(), layers={"counts": train.layers["counts"].copy()}
    )
    out = check_output(fn(view, seed=seed, **params), train.shape, name=name, what="the MCV train part")
    denoised = np.maximum(out, 0).astype(np.float32)
    write_npz(
        predictions_path,
        denoised=denoised,
        split_sha256=np.array(train.uns["mcv"]["split_sha256"]),
        **run_record(name, seed, params),
    )
    logger.info("%s: denoised %d cells x %d genes", name, *train.shape)
    return denoised


def read_test(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a ``test.npz``, with ``counts`` (CSR) assembled from its parts."""
    held = read_npz(path, TEST_KEYS)
    held["counts"] = sp.csr_matrix(
        (held["test_data"], held["test_indices"], held["test_indptr"]), shape=tuple(int(s) for s in held["shape"])
    )
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


# ----------------------------------------------------------------------------- expectation conversion
#
# Batson et al.'s MSE loss compares a denoiser's output with the test part on a variance-stabilizing
# scale f (sqrt, or log1p) of the raw counts. What the denoiser estimates from the train part is
# E[f(X)], X ~ Poisson(p * lambda); the test part is Y ~ Poisson((1 - p) * lambda). Unless p = 1/2
# these differ, so the estimate is carried to the test depth first: find the lambda whose
# E[f(Poisson(p * lambda))] equals the estimate and return E[f(Poisson((1 - p) * lambda))]
# (molecular-cross-validation, util.py: convert_exp_sqrt / convert_exp_log1p, by interpolation on a
# grid of lambda). Written here, not imported: that package is not on PyPI (and pins numba), and
# its GridSearchMCV calls the conversion with an outdated signature. E[f(Poisson(m))] is summed
# exactly over the Poisson pmf (Batson: Taylor series around 0 or around the mean); the grid has
# 64 points per doubling of lambda above 1 and 256 on [0, 1] (Batson: about 50 per doubling).

#: Points of the lambda grid per doubling (and on [0, 1]).
_GRID_PER_OCTAVE = 64


def expected_poisson(f: Callable[[np.ndarray], np.ndarray], mean) -> np.ndarray:
    """``E[f(Y)]`` for ``Y ~ Poisson(mean)``, elementwise, summed over the pmf within 12 sd + 12 of
    the mean (the rest is below 1e-30). ``f`` maps counts to values with ``f(0) = 0`` (np.sqrt,
    np.log1p). One Python step per element: for grids, not for whole matrices
    (:func:`poisson_expectation` interpolates on a grid)."""
    from scipy.stats import poisson

    mean = np.asarray(mean, dtype=np.float64)
    if (mean < 0).any() or not np.isfinite(mean).all():
        raise InputError("expected_poisson: Poisson means must be finite and >= 0.")
    out = np.zeros(mean.shape)
    flat = out.reshape(-1)
    for i, m in enumerate(mean.reshape(-1)):
        if m > 0:
            half = 12.0 * np.sqrt(m) + 12.0
            k = np.arange(max(0.0, np.floor(m - half)), np.ceil(m + half) + 1)
            flat[i] = np.dot(poisson.pmf(k, m), f(k))
    return out


def _lambda_grid(max_lambda: float) -> np.ndarray:
    """0 to at least ``max_lambda``: linear on [0, 1] (4 x ``_GRID_PER_OCTAVE`` points: E[f] bends most
    there), then geometric (``_GRID_PER_OCTAVE`` per doubling)."""
    octaves = max(1, int(np.ceil(np.log2(max(max_lambda, 2.0)))))
    return np.concatenate(
        [
            np.linspace(0.0, 1.0, 4 * _GRID_PER_OCTAVE + 1)[:-1],
            np.logspace(0.0, octaves, octaves * _GRID_PER_OCTAVE + 1, base=2.0),
        ]
    )


def poisson_expectation(f: Callable[[np.ndarray], np.ndarray], mean) -> np.ndarray:
    """``E[f(Poisson(mean))]`` for an array of means, by linear interpolation on a grid (exact
    :func:`expected_poisson` at the grid points; relative error about 1e-5)."""
    mean = np.maximum(np.asarray(mean, dtype=np.float64), 0)
    grid = _lambda_grid(float(mean.max(initial=0.0)))
    return np.interp(mean, grid, expected_poisson(f, grid))


def convert_expectation(
    values, f: Callable[[np.ndarray], np.ndarray], max_lambda: float, a: float, b: float | None = None
) -> np.ndarray:
    """Carry estimates of ``E[f(Poisson(a * lambda))]`` to ``E[f(Poisson(b * lambda))]`` (Batson's
    ``convert_expectations``): interpolate ``values`` (negatives set to 0) on the curve
    ``(E[f(Poisson(a l))], E[f(Poisson(b l))])`` over a grid of ``l`` in ``[0, max_lambda]``.
    ``b`` defaults to ``1 - a``; ``a == b`` returns the values unchanged (clipped at 0)."""
    if not 0 < a < 1 or (b is not None and not 0 < b < 1):
        raise InputError(f"convert_expectation: depths a={a!r}, b={b!r} must be in (0, 1) (train and test fractions).")
    b = 1.0 - a if b is None else b
    values = np.maximum(np.asarray(values, dtype=np.float64), 0)
    if a == b:
        return values
    grid = _lambda_grid(max_lambda)
    return np.interp(values, expected_poisson(f, a * grid), expected_poisson(f, b * grid))


def convert_exp_sqrt(values, a: float, b: float | None = None) -> np.ndarray:
    """Estimates of ``E[sqrt(X)]`` at depth ``a`` carried to depth ``b`` (Batson's ``convert_exp_sqrt``).
    The grid reaches ``((max + 1)^2 + 1) / a``, where ``E[sqrt]`` exceeds every value (``E[sqrt(Poisson(m))]
    > sqrt(m) - 1 / sqrt(m)``), so no value falls off its end."""
    v = np.maximum(np.asarray(values, dtype=np.float64), 0)
    return convert_expectation(v, np.sqrt, ((v.max(initial=0.0) + 1) ** 2 + 1) / a, a, b)


def convert_exp_log1p(values, a: float, b: float | None = None) -> np.ndarray:
    """Estimates of ``E[log1p(X)]`` at depth ``a`` carried to depth ``b`` (Batson's
    ``convert_exp_log1p``); the grid reaches ``exp(max + 1) / a``."""
    v = np.maximum(np.asarray(values, dtype=np.float64), 0)
    return convert_expectation(v, np.log1p, np.exp(v.max(initial=0.0) + 1) / a, a, b)


#: The MCV MSE scales: name -> (transform of the raw counts, its expectation conversion).
MCV_SCALES: dict[str, tuple[Callable, Callable]] = {
    "sqrt": (np.sqrt, convert_exp_sqrt),
    "log1p": (np.log1p, convert_exp_log1p),
}
#: ``mcv_output`` of a predictions file: ``estimate`` (default: a denoiser's output, transformed like
#: the data, as Batson's denoisers work on the transformed counts) or ``poisson_mean`` (expected
#: counts, whose value on each scale is E[f(Poisson)]: the ``true_rate`` control).
MCV_OUTPUTS = ("estimate", "poisson_mean")


def score_mcv(predictions_path: str | Path, test_path: str | Path) -> dict[str, float]:
    """The MCV losses of a denoised train part against the test part (module docstring, "Metrics").

    Returns
    -------
    dict
        ``mse_sqrt``, ``mse_log1p``, ``pearson_sqrt``, ``poisson`` (MCV losses), ``mse_openproblems``
        (not an MCV loss at unequal split fractions); ``mse_truth`` and ``pearson_truth`` against
        the noise-free truth when the test file has one.
    """
    pred = read_npz(predictions_path, ("denoised", "split_sha256"))
    held = read_test(test_path)
    if str(pred["split_sha256"]) != str(held["split_sha256"]):
        raise InputError(
            f"{predictions_path} was made on another MCV split than {test_path} (split_sha256 differs); "
            "rerun the method on this split."
        )
    denoised = pred["denoised"].astype(np.float64)
    if denoised.shape != held["counts"].shape:
        raise InputError(
            f"{predictions_path}: denoised has shape {denoised.shape}; the split has {held['counts'].shape}."
        )
    kind = str(pred.get("mcv_output", "estimate"))
    if kind not in MCV_OUTPUTS:
        raise InputError(f"{predictions_path}: mcv_output {kind!r}; must be one of {list(MCV_OUTPUTS)}.")
    p = float(held["train_fraction"])
    lin = np.expm1(denoised)  # X scale -> values proportional to the counts within each cell
    test = held["counts"].toarray().astype(np.float64)
    # The denoised train part in counts: the prediction's proportions times the cell's train library.
    totals = lin.sum(axis=1, keepdims=True)
    proportions = np.divide(lin, totals, out=np.zeros_like(lin), where=totals > 0)
    train_counts = proportions * held["train_totals"][:, None]
    out = {}
    for name, (f, convert) in MCV_SCALES.items():
        if kind == "estimate":  # Batson: the estimate of E[f(train)], carried to the test depth
            at_test = convert(f(train_counts), p, 1.0 - p)
        else:  # a Poisson mean at the train depth: E[f(Poisson(mean * (1 - p) / p))]
            at_test = poisson_expectation(f, train_counts * (1.0 - p) / p)
        target = f(test)
        out[f"mse_{name}"] = float(np.mean((at_test - target) ** 2))
        if name == "sqrt":
            out["pearson_sqrt"] = pearson(at_test.ravel(), target.ravel())
    # openproblems' poisson: the train-depth counts scaled by test_sum / train_sum (about (1 - p) / p).
    out["poisson"] = poisson_loss(train_counts * (float(held["test_sum"]) / float(held["train_sum"])), test)
    pred_norm = normalize_log(lin)
    out["mse_openproblems"] = float(np.mean((pred_norm - normalize_log(test)) ** 2))
    if "truth" in held:
        truth = held["truth"].astype(np.float64)
        out.update(
            mse_truth=float(np.mean((pred_norm - truth) ** 2)), pearson_truth=pearson(pred_norm.ravel(), truth.ravel())
        )
    return out
