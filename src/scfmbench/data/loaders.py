"""Loaders for the embedded datasets and for a user's own .h5ad.

Each loader returns a *raw dataset*: ``layers["counts"]`` (CSR float32 integer counts),
``obs["cell_type"]``, optionally ``obs["split"]`` (a predefined train/valid/test split), optionally
``layers["truth"]``, ``layers["rate"]`` and ``uns["true_grn"]`` (synthetic), and ``uns["provenance"]`` with ``source``
and ``inputs_sha256``. :func:`scfmbench.data.prepare.prepare_dataset` turns it into a prepared dataset.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench._io import sha256_file
from scfmbench.data.contract import check_counts, raw_anndata


def load_pbmc68k() -> ad.AnnData:
    """scanpy's bundled ``pbmc68k_reduced`` (700 cells x 765 genes), counts recovered from ``.raw``.

    ``.raw.X`` holds log1p(normalize_total 1e4) rounded to 3 decimals and ``obs.n_counts`` the library
    size, so counts = round(expm1(raw.X) * n_counts / 1e4) (shared REFERENCE.md section 6).
    Labels: ``obs.bulk_labels`` (10 types).
    """
    import scanpy as sc

    bundled = sc.datasets.pbmc68k_reduced()
    raw = bundled.raw.X
    raw = raw.toarray() if sp.issparse(raw) else np.asarray(raw)
    counts = np.round(np.expm1(raw) * bundled.obs["n_counts"].to_numpy()[:, None] / 1e4)
    obs = pd.DataFrame({"cell_type": bundled.obs["bulk_labels"].astype(str).to_numpy()}, index=bundled.obs_names)
    path = Path(sc.__file__).parent / "datasets" / "10x_pbmc68k_reduced.h5ad"
    sha = {path.name: sha256_file(path)} if path.exists() else {}
    return raw_anndata(counts, obs, bundled.raw.var_names, source="scanpy.datasets.pbmc68k_reduced", inputs_sha256=sha)


def load_synthetic(params: dict) -> ad.AnnData:
    """Cells simulated from the vendored TRRUST network (:mod:`scfmbench.data.synthetic`)."""
    from scfmbench.data.synthetic import simulate_grn_dataset, vendored_grn_path

    sim = simulate_grn_dataset(**params)
    obs = pd.DataFrame({"cell_type": sim.obs["cell_type"].astype(str).to_numpy()}, index=sim.obs_names)
    network = params.get("network", "trrust_human")
    adata = raw_anndata(
        sim.layers["counts"],
        obs,
        sim.var_names,
        source=f"synthetic ({network})",
        inputs_sha256={network: sha256_file(vendored_grn_path(network))},
    )
    adata.layers["truth"] = np.asarray(sim.layers["truth"], dtype=np.float32)
    adata.layers["rate"] = np.asarray(sim.layers["rate"], dtype=np.float32)
    adata.uns["true_grn"] = {k: np.asarray(v) for k, v in sim.uns["true_grn"].items()}
    adata.uns["synthetic_params"] = dict(sim.uns.get("synthetic_params", params))
    return adata


_LOG_NAMES = {"e": "log1p", "2": "log2(1 + x)", "10": "log10(1 + x)"}


def load_h5ad(
    path: str | Path,
    *,
    label_column: str | None = "cell_type",
    split_column: str | None = None,
    counts_layer: str = "X",
    gene_symbols_column: str | None = None,
    recover_counts: bool = False,
    log_base=None,
) -> ad.AnnData:
    """A user's own AnnData. Raw counts are taken from ``counts_layer`` ('X', 'raw' or a layer name);
    with ``recover_counts`` a layer holding log(1 + normalize_total) values instead is inverted per cell
    (:func:`scfmbench.data.sources.recover_counts`, checked to give integers; ``log_base`` e, 2 or
    10, None: natural log or log2, whichever inverts). ``label_column`` None:
    a dataset without cell types (no ``obs["cell_type"]``; imputation only)."""
    from scfmbench.data.sources import _is_counts, recover_counts_detect

    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset file {path} does not exist; set 'datasets.<name>.path' to an existing .h5ad")
    user = ad.read_h5ad(path)
    if label_column is not None and label_column not in user.obs:
        raise InputError(
            f"{path}: label column {label_column!r} not in obs; obs has columns {list(user.obs.columns)}. Set "
            "'datasets.<name>.label_column' (null for a dataset without cell types, used for imputation only)."
        )
    if counts_layer == "X":
        counts, var_names = user.X, user.var_names
    elif counts_layer == "raw":
        if user.raw is None:
            raise InputError(f"{path}: counts_layer 'raw' but the file has no .raw")
        counts, var_names = user.raw.X, user.raw.var_names
    elif counts_layer in user.layers:
        counts, var_names = user.layers[counts_layer], user.var_names
    else:
        raise InputError(
            f"{path}: counts layer {counts_layer!r} not found; layers are {list(user.layers)} (or use 'X' / 'raw')"
        )
    where = f"{path} ({counts_layer})"
    recovered = bool(recover_counts) and not _is_counts(counts)
    if recovered:
        counts, base = recover_counts_detect(
            counts, where=f"{where} with datasets.<name>.recover_counts: true", log_base=log_base
        )
    check_counts(
        counts,
        where=where,
        fix=(
            "If the file has raw counts elsewhere, set datasets.<name>.counts_layer to that layer or 'raw'; if it "
            "holds only log(1 + normalize_total) values at full precision, natural log or log2 (as R objects often "
            "store), set datasets.<name>.recover_counts: true to invert them per cell (the base is detected, or "
            "declare datasets.<name>.log_base; docs/own-data.md 'Your own data')."
        ),
    )
    if gene_symbols_column is not None:
        if gene_symbols_column not in user.var:
            raise InputError(
                f"{path}: gene symbol column {gene_symbols_column!r} not in var; var has {list(user.var.columns)}"
            )
        var_names = user.var[gene_symbols_column].astype(str)
    var_names = pd.Index(var_names).astype(str)
    if not var_names.is_unique:
        # Keep the first occurrence of a duplicated symbol rather than silently summing: tell the user.
        dup = var_names[var_names.duplicated()].unique()[:5].tolist()
        raise InputError(
            f"{path}: gene names are not unique (e.g. {dup}); make them unique "
            "(anndata.AnnData.var_names_make_unique) or pick another gene_symbols_column"
        )
    obs = pd.DataFrame(index=user.obs_names)
    if label_column is not None:
        labels = user.obs[label_column]
        if labels.isna().any():
            raise InputError(
                f"{path}: label column {label_column!r} has {int(labels.isna().sum())} missing "
                "values; drop those cells first"
            )
        obs["cell_type"] = labels.astype(str).to_numpy()
    if split_column is not None:
        if split_column not in user.obs:
            raise InputError(
                f"{path}: split column {split_column!r} not in obs; obs has columns {list(user.obs.columns)}"
            )
        split = user.obs[split_column].astype(str).str.lower().to_numpy()
        bad = sorted(set(split) - {"train", "valid", "test"})
        if bad:
            raise InputError(f"{path}: split column {split_column!r} has values {bad}; allowed are train, valid, test")
        obs["split"] = split
    adata = raw_anndata(counts, obs, var_names, source=f"h5ad:{path}", inputs_sha256={path.name: sha256_file(path)})
    adata.uns["provenance"].update(
        split_column=split_column,
        counts=f"{counts_layer} (counts recovered from {_LOG_NAMES[base]})" if recovered else counts_layer,
    )
    return adata


def load_dataset(name: str, cfg: dict) -> ad.AnnData:
    """Dispatch on ``cfg['source']`` (one entry of the config's ``datasets``)."""
    source = cfg["source"]
    if source == "pbmc68k":
        adata = load_pbmc68k()
    elif source == "synthetic":
        adata = load_synthetic(cfg.get("synthetic", {}))
    elif source == "h5ad":
        adata = load_h5ad(
            cfg["path"],
            label_column=cfg.get("label_column", "cell_type"),
            split_column=cfg.get("split_column"),
            counts_layer=cfg.get("counts_layer", "X"),
            gene_symbols_column=cfg.get("gene_symbols_column"),
            recover_counts=bool(cfg.get("recover_counts", False)),
            log_base=cfg.get("log_base"),
        )
    else:
        from scfmbench.data.sources import SOURCES, load_source  # the papers' datasets (scGPT, GEARS, GEO)

        if source not in SOURCES:
            raise InputError(f"datasets.{name}.source: unknown source {source!r}")
        adata = load_source(name, cfg)
    adata.uns["provenance"]["dataset"] = name
    # The species of the gene symbols: declared, or told by the symbols (checked against the
    # regulatory databases' species when gene graphs are built).
    from scfmbench.data.species import detect_species

    declared = cfg.get("species")
    adata.uns["provenance"].update(
        species=declared or detect_species(adata.var_names), species_from="config" if declared else "symbols"
    )
    return adata
