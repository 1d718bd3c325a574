"""``train_mean``: every perturbation predicted as the mean of the perturbed training cells
(PerturBench ``average.py``, systema's perturbed mean). It carries the shift that all perturbations
share (systematic variation), so its delta correlates with most conditions' deltas: a model below
it on the delta metrics has learned nothing perturbation-specific (the quality report flags it)."""

from __future__ import annotations

import numpy as np

from scfmbench.perturbation.methods import mean_of, register_predictor, thin, train_cells


@register_predictor("train_mean")
def train_mean(adata, split, conditions, *, seed: int) -> np.ndarray:
    perturbed = train_cells(adata, split) & (adata.obs["condition"].astype(str).to_numpy() != "ctrl")
    if not perturbed.any():
        raise thin("train_mean", split, seed, "no perturbed training cell to average")
    return np.tile(mean_of(adata, perturbed), (len(conditions), 1))
