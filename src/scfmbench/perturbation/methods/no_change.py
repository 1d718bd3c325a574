"""``no_change``: every perturbation predicted as the control mean (GEARS' ``No_Perturb``).

Its delta is 0, so every ``pearson_delta*`` is undefined and counts as 0 (GEARS): the floor."""

from __future__ import annotations

import numpy as np

from scfmbench.perturbation.methods import control_mean, register_predictor


@register_predictor("no_change")
def no_change(adata, split, conditions, *, seed: int) -> np.ndarray:
    return np.tile(control_mean(adata), (len(conditions), 1))
