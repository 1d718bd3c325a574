"""Seeded, stratified splits.

Written by hand rather than with ``sklearn.model_selection.train_test_split(stratify=...)`` because
that refuses classes with a single cell, which real annotation sets have (pbmc68k's rarest class has
8 cells; user data may have singletons): here a class too small to split stays in train.
"""

from __future__ import annotations

import numpy as np


def stratified_holdout(labels, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of held-out cells: ``round(fraction * n)`` cells of each class of size n >= 2,
    at least one and never the whole class; classes with one cell are never held out."""
    labels = np.asarray(labels).astype(str)
    held = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):  # sorted: the draw order does not depend on label order
        idx = np.flatnonzero(labels == cls)
        if len(idx) < 2:
            continue
        n_out = int(np.clip(round(fraction * len(idx)), 1, len(idx) - 1))
        held[rng.permutation(idx)[:n_out]] = True
    return held


def stratified_subsample(labels, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask keeping ``fraction`` of each class (at least one cell per class)."""
    labels = np.asarray(labels).astype(str)
    keep = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n_keep = max(1, int(round(fraction * len(idx))))
        keep[rng.permutation(idx)[:n_keep]] = True
    return keep


def assign_splits(
    labels,
    *,
    predefined=None,
    test_fraction: float = 0.2,
    test_seed: int = 0,
    valid_fraction: float = 0.25,
    train_fraction: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Split labels into 'train' / 'valid' / 'test' / 'unused'.

    The test split is fixed across repeats: the predefined one when given, else drawn with
    ``test_seed``. With the repeat ``seed``: ``train_fraction`` of the non-test cells is kept (few-shot;
    the rest is 'unused'), then ``valid_fraction`` of those is held out for validation (GenoHoption:
    25% of the training set). A predefined 'valid' split is kept as it is.
    """
    labels = np.asarray(labels).astype(str)
    if predefined is not None:
        split = np.asarray(predefined).astype(str).astype(object)
    else:
        split = np.where(
            stratified_holdout(labels, test_fraction, np.random.default_rng(test_seed)), "test", "train"
        ).astype(object)
    rng = np.random.default_rng(seed)
    train = np.flatnonzero(split == "train")
    if train_fraction < 1.0:
        keep = stratified_subsample(labels[train], train_fraction, rng)
        split[train[~keep]] = "unused"
        train = train[keep]
    if not np.any(split == "valid"):
        split[train[stratified_holdout(labels[train], valid_fraction, rng)]] = "valid"
    return split.astype(str)  # object while assigning: a fixed-width '<U5' array would cut 'unused'
