"""The prepared-dataset contract, written down once and checked by :func:`check_prepared`.

A *prepared dataset* (``results/data/{dataset}/seed{seed}/prepared.h5ad``) is an AnnData with

==========================  ========================================================================
``layers["counts"]``        raw counts: non-negative, finite, integer-valued (CSR, float32)
``X``                       ``log1p(normalize_total(counts, 1e4))`` (CSR, float32)
``obs["cell_type"]``        categorical label (string categories); absent for a dataset without cell
                            types (``label_column: null``: imputation only). A task that uses labels
                            checks them with :func:`require_labels` (train has >= 2 classes).
``obs["split"]``            categorical in {"train", "valid", "test"}; train and test are not empty
``var_names``               unique gene symbols
``layers["truth"]``         optional: noise-free expression on the scale of ``X`` (synthetic data)
``layers["rate"]``          optional: the Poisson rate the counts were drawn from, in counts (synthetic
                            data; what molecular cross-validation estimates)
``uns["provenance"]``       dict: ``source``, ``inputs_sha256`` (file name -> sha256), ``seed``,
                            ``versions`` (package -> version), ``created``
``uns["true_grn"]``         optional: dict of string arrays ``source``, ``target`` (synthetic data)
==========================  ========================================================================

Every rule that consumes a prepared dataset calls :func:`read_prepared`, which calls
:func:`check_prepared`; a violation raises :class:`scfmbench.InputError` naming the file and the
field.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scfmbench import InputError

SPLITS = ("train", "valid", "test")
TARGET_SUM = 1e4
REQUIRED_PROVENANCE = ("source", "inputs_sha256", "seed", "versions")


def _values(m) -> np.ndarray:
    return m.data if sp.issparse(m) else np.asarray(m).ravel()


def check_counts(counts, *, where: str = "counts", fix: str | None = None) -> None:
    """Raise :class:`InputError` unless ``counts`` is non-negative, finite and integer-valued
    (``fix``: what the non-integer message advises instead of the generic advice)."""
    v = _values(counts)
    if v.size == 0:
        return
    if not np.all(np.isfinite(v)):
        raise InputError(
            f"{where}: contains {int((~np.isfinite(v)).sum())} non-finite values (NaN or "
            "inf); raw counts must be finite."
        )
    if v.min() < 0:
        raise InputError(
            f"{where}: contains {int((v < 0).sum())} negative values (minimum {v.min():g}); raw counts must be >= 0. "
            "Provide raw counts, not scaled or centred data."
        )
    if not np.allclose(v, np.round(v)):
        raise InputError(
            (
                f"{where}: contains non-integer values (e.g. {v[~np.isclose(v, np.round(v))][0]:g}); "
                "raw counts must be integers. "
            )
            + (fix or "If this is normalized data, point the config at the raw counts (a layer or .raw).")
        )


def check_train_classes(cell_type, split, *, where: str, task: str = "annotation") -> None:
    train = np.asarray(cell_type)[np.asarray(split) == "train"]
    n = len(set(train.tolist()))
    if n < 2:
        raise InputError(
            f"{where}: the training split has {n} cell type(s) ({sorted(set(train.tolist()))}); {task} needs at "
            "least two classes in train. Check datasets.<name>.label_column and split.train_fraction, or remove the "
            f"dataset from {task}.datasets."
        )


def require_labels(adata, *, task: str, where: str) -> None:
    """Raise :class:`InputError` naming ``task`` unless the dataset has cell types with >= 2 classes in train."""
    if "cell_type" not in adata.obs:
        raise InputError(
            f"{where}: the dataset has no cell types (datasets.<name>.label_column is null), but {task} "
            "needs them. Set datasets.<name>.label_column to the obs column with the labels, or remove the "
            f"dataset from {task}.datasets."
        )
    check_train_classes(adata.obs["cell_type"].astype(str), adata.obs["split"].astype(str), where=where, task=task)


def check_split_sizes(split, *, where: str, split_from: str = "the drawn split") -> None:
    """Raise :class:`InputError` when the train or the test split is empty (names the counts per split)."""
    split = np.asarray(split).astype(str)
    sizes = {s: int((split == s).sum()) for s in SPLITS}
    empty = [s for s in ("train", "test") if sizes[s] == 0]
    if empty:
        raise InputError(
            f"{where}: {split_from} leaves {' and '.join(f'0 {s}' for s in empty)} cells (cells per split: {sizes}); "
            "train and test both need cells: in a split column mark some cells 'train' and some 'test' (or set "
            "datasets.<name>.split_column: null to draw a test split with split.test_fraction); a drawn split holds "
            "out cells only from classes of at least two cells."
        )


def check_prepared(adata, *, where: str = "prepared dataset") -> None:
    """Check every field of the prepared-dataset contract; raise :class:`InputError` on the first violation."""
    if "counts" not in adata.layers:
        raise InputError(f"{where}: layers['counts'] is missing (raw counts are required).")
    check_counts(adata.layers["counts"], where=f"{where}: layers['counts']")
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()][:5].tolist()
        raise InputError(f"{where}: var_names are not unique (e.g. {dup}).")
    if "split" not in adata.obs:
        raise InputError(f"{where}: obs['split'] is missing; obs has {list(adata.obs.columns)}.")
    bad = set(adata.obs["split"].astype(str)) - set(SPLITS)
    if bad:
        raise InputError(f"{where}: obs['split'] has values {sorted(bad)}; allowed are {list(SPLITS)}.")
    check_split_sizes(adata.obs["split"], where=where, split_from="obs['split']")
    expected = log_normalize(adata.layers["counts"])
    diff = abs(sp.csr_matrix(adata.X) - expected)
    if diff.nnz and diff.max() > 1e-3:
        raise InputError(
            f"{where}: X is not log1p(normalize_total(counts, {TARGET_SUM:g})) (max difference {diff.max():.3g})."
        )
    prov = adata.uns.get("provenance")
    if not isinstance(prov, dict) or any(k not in prov for k in REQUIRED_PROVENANCE):
        raise InputError(f"{where}: uns['provenance'] must be a dict with keys {list(REQUIRED_PROVENANCE)}.")


def log_normalize(counts) -> sp.csr_matrix:
    """``log1p(counts / library_size * 1e4)`` as float32 CSR (cells with no counts stay zero).

    Same as ``scanpy.pp.normalize_total(target_sum=1e4)`` followed by ``scanpy.pp.log1p``; written
    out because the contract check must recompute it on a matrix, not an AnnData.
    """
    counts = sp.csr_matrix(counts, dtype=np.float32)
    lib = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(TARGET_SUM, lib, out=np.zeros_like(lib), where=lib > 0)
    out = sp.diags(scale.astype(np.float32)) @ counts
    out = sp.csr_matrix(out, dtype=np.float32)
    out.data = np.log1p(out.data)
    return out


def read_prepared(path):
    """Read a prepared dataset and check the contract (error names ``path``)."""
    import anndata as ad

    adata = ad.read_h5ad(path)
    check_prepared(adata, where=str(path))
    return adata


def raw_anndata(counts, obs, var_names, *, source: str, inputs_sha256: dict[str, str]):
    """A loaded dataset before preparation, as every loader returns it: ``X`` and ``layers["counts"]``
    the counts (CSR, float32), ``obs["cell_type"]`` categorical when present, string obs and var
    names, ``uns["provenance"]`` with ``source`` and ``inputs_sha256``."""
    import anndata as ad
    import pandas as pd

    counts = sp.csr_matrix(counts, dtype=np.float32)
    adata = ad.AnnData(
        X=counts.copy(), obs=obs.copy(), var=pd.DataFrame(index=pd.Index(var_names, dtype=str).astype(str))
    )
    adata.layers["counts"] = counts
    if "cell_type" in adata.obs:  # absent for a dataset without labels (label_column: null)
        adata.obs["cell_type"] = adata.obs["cell_type"].astype(str).astype("category")
    adata.obs_names = adata.obs_names.astype(str)
    adata.uns["provenance"] = {"source": source, "inputs_sha256": inputs_sha256}
    return adata
