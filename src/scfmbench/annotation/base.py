"""The annotator registry and what every annotator and the runner share: the test cells, the
predictions file, the unseen-type record. :mod:`scfmbench.annotation` re-exports these."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from scfmbench import InputError
from scfmbench._io import write_csv

ANNOTATORS: dict[str, Callable] = {}


def register_annotator(name: str):
    def deco(fn):
        ANNOTATORS[name] = fn
        return fn

    return deco


def test_cells(adata) -> np.ndarray:
    return (adata.obs["split"].astype(str) == "test").to_numpy()


def unseen_record(adata) -> dict:
    """Test cell types absent from training (type -> test cells) and their share of the test cells,
    for a run record: no model trained on the training cells can predict them."""
    from scfmbench.data.prepare import unseen_test_types

    unseen = unseen_test_types(adata.obs["cell_type"], adata.obs["split"])
    n_test = int(test_cells(adata).sum())
    return {"unseen_test_types": unseen, "unseen_test_share": sum(unseen.values()) / n_test if n_test else 0.0}


def write_predictions(cell_ids, predicted, path) -> None:
    """Predictions file: columns ``cell_id``, ``predicted`` (one row per test cell; never empty)."""
    if len(cell_ids) == 0:
        raise InputError(
            f"{path}: no test cell to predict; an empty predictions file is not a result (check the dataset's split: "
            "prepare_dataset counts the cells per split)"
        )
    write_csv(
        pd.DataFrame({"cell_id": np.asarray(cell_ids).astype(str), "predicted": np.asarray(predicted).astype(str)}),
        path,
    )
