"""``oracle`` (synthetic data only): the control mean plus each condition's true noise-free shift
(``uns['true_shift']`` of :func:`scfmbench.data.synthetic.simulate_perturbseq`), the ceiling of the
delta metrics; below 1 only by the sampling noise of the test cells' means."""

from __future__ import annotations

import numpy as np

from scfmbench import InputError
from scfmbench.perturbation.methods import control_mean, register_predictor


@register_predictor("oracle")
def oracle(adata, split, conditions, *, seed: int) -> np.ndarray:
    if "true_shift" not in adata.uns:
        raise InputError(
            "oracle: the dataset has no true shift (uns['true_shift']); it runs on the synthetic perturbation set only"
        )
    index = {c: i for i, c in enumerate(np.asarray(adata.uns["true_shift_conditions"]).astype(str))}
    missing = [c for c in conditions if c not in index]
    if missing:
        raise InputError(f"oracle: no true shift for conditions {missing[:5]}")
    return control_mean(adata)[None, :] + np.asarray(adata.uns["true_shift"])[[index[c] for c in conditions]]
