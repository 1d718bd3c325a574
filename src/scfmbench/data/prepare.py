"""Raw dataset -> prepared dataset (the contract in :mod:`scfmbench.data.contract`)."""

from __future__ import annotations

import anndata as ad

from scfmbench.data.contract import check_counts, check_prepared, log_normalize
from scfmbench.data.splits import assign_splits
from scfmbench.provenance import package_versions


def prepare_dataset(raw: ad.AnnData, *, seed: int, test_fraction: float = 0.2, test_seed: int = 0, valid_fraction: float = 0.25, train_fraction: float = 1.0, where: str = "dataset") -> ad.AnnData:
    """Split (seeded, stratified), log-normalize and record provenance.

    Returns
    -------
    AnnData with ``layers["counts"]``, ``X`` = log1p(normalize_total(counts, 1e4)),
    ``obs["cell_type"]``, ``obs["split"]`` in {train, valid, test} (few-shot 'unused' cells dropped),
    ``uns["provenance"]`` (source, inputs_sha256, seed, split parameters, versions), and the raw
    dataset's optional ``layers["truth"]`` / ``uns["true_grn"]``.
    """
    check_counts(raw.layers["counts"], where=f"{where}: counts")
    predefined = raw.obs["split"].to_numpy() if "split" in raw.obs else None
    split = assign_splits(raw.obs["cell_type"].to_numpy(), predefined=predefined, test_fraction=test_fraction, test_seed=test_seed, valid_fraction=valid_fraction, train_fraction=train_fraction, seed=seed)
    adata = raw[split != "unused"].copy()
    adata.obs["split"] = split[split != "unused"]
    adata.obs["split"] = adata.obs["split"].astype("category")
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str).astype("category")
    adata.X = log_normalize(adata.layers["counts"])
    prov = dict(raw.uns["provenance"])
    prov.update(seed=int(seed), split={"test_fraction": test_fraction, "test_seed": test_seed, "valid_fraction": valid_fraction, "train_fraction": train_fraction, "predefined": predefined is not None}, versions=package_versions())
    adata.uns["provenance"] = prov
    check_prepared(adata, where=where)
    return adata
