"""Annotation controls: every annotation metric is bracketed by these (openproblems' habit)."""

from __future__ import annotations

import numpy as np

from scfmbench.annotation.base import register_annotator, test_cells


def _train(adata):
    return (adata.obs["split"].astype(str) == "train").to_numpy()


@register_annotator("majority")
def majority(adata, *, seed: int) -> np.ndarray:
    """Predict the most frequent training label for every test cell (ties: alphabetical first)."""
    labels = adata.obs["cell_type"].astype(str).to_numpy()[_train(adata)]
    values, counts = np.unique(labels, return_counts=True)
    return np.repeat(values[np.argmax(counts)], test_cells(adata).sum())


@register_annotator("logreg")
def logreg(adata, *, seed: int, C: float = 1.0, max_iter: int = 1000) -> np.ndarray:
    """Multinomial logistic regression on the log-normalized expression of the training cells."""
    from sklearn.linear_model import (
        LogisticRegression,  # here: the transformer jobs that register this module need no sklearn
    )

    train = _train(adata)
    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    model.fit(adata.X[train], adata.obs["cell_type"].astype(str).to_numpy()[train])
    return model.predict(adata.X[test_cells(adata)])
