"""``no_change``: every perturbation predicted as the control mean (GEARS' ``No_Perturb``).

The prediction is the float64 control mean the metrics subtract (``control_mean``, kept float64 in
``predictions.npz``), so its delta is exactly 0, every ``pearson_delta*`` is undefined and counts as
0 (GEARS): the floor."""

from __future__ import annotations

import numpy as np

from scfmbench.perturbation.methods import control_mean, register_predictor


@register_predictor("no_change")
def no_change(adata, split, conditions, *, seed: int) -> np.ndarray:
    return np.tile(control_mean(adata), (len(conditions), 1))
