"""The ``perfect`` control: predictions read from the held-out noise-free truth.

Controls bracket every metric (openproblems ``control_methods``): ``none`` (registered in
:mod:`scfmbench.impute.methods`) leaves the hidden entries at 0 or the train part as it is, the
floor; ``perfect`` returns the true expression, the ceiling of the ``*_truth`` metrics. ``perfect``
is not an imputer: it legitimately reads the held-out file (``heldout.npz`` of the masking protocol,
``test.npz`` of molecular cross-validation) for its ``truth`` array, which exists only for datasets
simulated with a known truth (``synthetic``). The workflow runs it on those datasets only and skips
it elsewhere; called on a held-out file without truth it is an :class:`~scfmbench.InputError`.

Under masking the prediction is the truth at the hidden entries (so ``mse_truth`` is 0 and
``pearson_truth`` 1); under MCV it is the truth matrix (re-normalized over the kept genes when the
split was made). It is the ceiling of the ``*_truth`` metrics only. Against the *observed* values
(masking) a method can beat it because hidden entries are non-zero by selection, so they sit above
the truth. Against the *test* part (MCV) it is beaten whenever the data are deep enough: train and
test parts share each cell's actual expression rate, which varies around the truth (gamma-Poisson
noise in ``synthetic``, biological variation in real data), and its dropout, so the undenoised
train part predicts the test part well (on the 400-cell x 80-gene synthetic test data, ``none``
has the best MCV ``mse`` and ``poisson``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scfmbench import InputError
from scfmbench.impute.protocol import _read_npz, _write_npz


def perfect_main(heldout_path: str | Path, predictions_path: str | Path, *, seed: int) -> np.ndarray:
    """Write the ``perfect`` control's predictions for either protocol; returns what was written."""
    held = _read_npz(heldout_path, ())
    if "truth" not in held:
        raise InputError(f"{heldout_path}: has no 'truth' array, so the 'perfect' control cannot run; it needs a dataset with a noise-free truth (layers['truth'], e.g. source 'synthetic').")
    common = dict(method=np.array("perfect"), seed=np.array(int(seed)), params_json=np.array(json.dumps({})))
    if "observed" in held:  # masking: heldout.npz
        values = np.maximum(held["truth"].astype(np.float32), 0)
        _write_npz(predictions_path, values=values, mask_sha256=held["mask_sha256"], **common)
        return values
    if "split_sha256" in held:  # molecular cross-validation: test.npz
        denoised = np.maximum(held["truth"].astype(np.float32), 0)
        _write_npz(predictions_path, denoised=denoised, split_sha256=held["split_sha256"], **common)
        return denoised
    raise InputError(f"{heldout_path}: neither a masking heldout.npz (with 'observed') nor an MCV test.npz (with 'split_sha256'); found {sorted(held)}.")
