"""``additive``: control mean plus the sum of the perturbed genes' single-gene shifts measured in
training (the standard combo baseline; GEARS' and Ahlmann-Eltze et al.'s). A gene with no training
single (``A+ctrl`` or ``ctrl+A``, averaged when both exist) contributes no shift, so unseen singles
get ``no_change`` and ``combo_seen1`` the seen gene's shift alone."""

from __future__ import annotations

import numpy as np

from scfmbench.perturbation.data import condition_genes
from scfmbench.perturbation.methods import control_mean, mean_of, register_predictor, thin


@register_predictor("additive")
def additive(adata, split, conditions, *, seed: int) -> np.ndarray:
    ctrl = control_mean(adata)
    cond = adata.obs["condition"].astype(str).to_numpy()
    shifts: dict[str, list[np.ndarray]] = {}
    for c in split.conditions("train"):
        genes = condition_genes(c)
        if len(genes) == 1:
            shifts.setdefault(genes[0], []).append(mean_of(adata, cond == c) - ctrl)
    if not shifts:
        raise thin(
            "additive",
            split,
            seed,
            "no single-gene perturbation in training, so no shift to add (every prediction would be no_change)",
        )
    out = np.tile(ctrl, (len(conditions), 1))
    for i, c in enumerate(conditions):
        for g in condition_genes(c):
            if g in shifts:
                out[i] += np.mean(shifts[g], axis=0)
    return out
