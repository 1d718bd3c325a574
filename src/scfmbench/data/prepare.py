"""Raw dataset -> prepared dataset (the contract in :mod:`scfmbench.data.contract`)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np

from scfmbench import InputError
from scfmbench.data.contract import check_counts, check_prepared, check_split_sizes, check_train_classes, log_normalize
from scfmbench.data.splits import assign_splits
from scfmbench.provenance import package_versions

log = logging.getLogger(__name__)


def unseen_test_types(cell_type, split) -> dict[str, int]:
    """Test cell types absent from the training split -> their number of test cells (sorted by type).

    No model trained on the training cells can predict them: each is an F1 of 0 in ``macro_f1``.
    """
    cell_type, split = np.asarray(cell_type).astype(str), np.asarray(split).astype(str)
    seen = set(cell_type[split == "train"].tolist())
    test = cell_type[split == "test"]
    types, n = np.unique(test[~np.isin(test, list(seen))], return_counts=True)
    return {str(t): int(k) for t, k in zip(types, n)}


def prepare_dataset(
    raw: ad.AnnData,
    *,
    seed: int,
    test_fraction: float = 0.2,
    test_seed: int = 0,
    valid_fraction: float = 0.25,
    train_fraction: float = 1.0,
    label_tasks: list[str] | tuple[str, ...] | None = None,
    where: str = "dataset",
) -> ad.AnnData:
    """Drop cells without counts, split (seeded, stratified by cell type when there are labels),
    log-normalize and record provenance.

    ``label_tasks``: the tasks that use this dataset's labels (the workflow passes them; default:
    annotation when the raw dataset has labels). Each needs at least two classes in train; a dataset
    without labels (``obs`` has no ``cell_type``) may serve only tasks that need none.

    Returns
    -------
    AnnData with ``layers["counts"]``, ``X`` = log1p(normalize_total(counts, 1e4)),
    ``obs["cell_type"]`` (when labelled), ``obs["split"]`` in {train, valid, test} (few-shot 'unused'
    cells dropped), ``uns["provenance"]`` (source, inputs_sha256, seed, split parameters, versions,
    ``zero_count_cells_dropped``, ``split_sizes`` and, when labelled, ``unseen_test_types``,
    ``unseen_test_cells`` (their test cells) and ``unseen_test_share``), and the raw dataset's optional
    ``layers["truth"]``, ``layers["rate"]`` / ``uns["true_grn"]``.
    """
    check_counts(raw.layers["counts"], where=f"{where}: counts")
    labelled = "cell_type" in raw.obs
    label_tasks = (["annotation"] if labelled else []) if label_tasks is None else list(label_tasks)
    if label_tasks and not labelled:
        raise InputError(
            f"{where}: the dataset has no cell types (datasets.<name>.label_column is null), but "
            f"{', '.join(label_tasks)} uses its labels. Set datasets.<name>.label_column, or remove the dataset "
            f"from {label_tasks[0]}.datasets."
        )
    # Cells with no counts carry nothing to learn or impute from (normalization divides by their total).
    lib = np.asarray(raw.layers["counts"].sum(axis=1)).ravel()
    n_zero = int((lib == 0).sum())
    if n_zero:
        log.warning(
            "%s: dropping %d of %d cells with zero counts (recorded in uns['provenance']['zero_count_cells_dropped'])",
            where,
            n_zero,
            raw.n_obs,
        )
        raw = raw[lib > 0].copy()
    prov = dict(raw.uns["provenance"])
    predefined = raw.obs["split"].to_numpy() if "split" in raw.obs else None
    labels = raw.obs["cell_type"].to_numpy() if labelled else np.zeros(raw.n_obs, dtype=str)  # no labels: one stratum
    split = assign_splits(
        labels,
        predefined=predefined,
        test_fraction=test_fraction,
        test_seed=test_seed,
        valid_fraction=valid_fraction,
        train_fraction=train_fraction,
        seed=seed,
    )
    if predefined is None:
        split_from = (
            f"the split drawn with split.test_fraction {test_fraction:g} and split.train_fraction {train_fraction:g}"
        )
    else:
        split_from = (
            f"the split column {prov['split_column']!r}"
            if prov.get("split_column")
            else "the predefined split (obs 'split' as the source distributes it)"
        )
    check_split_sizes(split[split != "unused"], where=where, split_from=split_from)
    for task in label_tasks:
        check_train_classes(labels, split, where=where, task=task)
    adata = raw[split != "unused"].copy()
    adata.obs["split"] = split[split != "unused"]
    adata.obs["split"] = adata.obs["split"].astype("category")
    if labelled:
        adata.obs["cell_type"] = adata.obs["cell_type"].astype(str).astype("category")
    adata.X = log_normalize(adata.layers["counts"])
    prov.update(
        seed=int(seed),
        split={
            "test_fraction": test_fraction,
            "test_seed": test_seed,
            "valid_fraction": valid_fraction,
            "train_fraction": train_fraction,
            "predefined": predefined is not None,
        },
        versions=package_versions(),
        zero_count_cells_dropped=n_zero,
        split_sizes={s: int((adata.obs["split"] == s).sum()) for s in ("train", "valid", "test")},
    )
    if labelled:
        unseen = unseen_test_types(adata.obs["cell_type"], adata.obs["split"])
        # Two lists, not a dict: a cell type may hold '/', which an h5ad group name cannot.
        prov.update(
            unseen_test_types=list(unseen),
            unseen_test_cells=list(unseen.values()),
            unseen_test_share=sum(unseen.values()) / max(1, prov["split_sizes"]["test"]),
        )
        if unseen:
            log.warning(
                "%s: test cell types absent from training: %s (%.1f%% of test cells); macro_f1 counts them as F1 0, "
                "macro_f1_seen leaves them out",
                where,
                unseen,
                100 * prov["unseen_test_share"],
            )
    adata.uns["provenance"] = prov
    check_prepared(adata, where=where)
    return adata
