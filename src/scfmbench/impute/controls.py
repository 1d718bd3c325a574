"""The oracle controls, which read the held-out file: ``perfect`` (the noise-free truth) and
``true_rate`` (the Poisson rate the counts were drawn from; molecular cross-validation only).

Controls bracket every metric (openproblems ``control_methods``): ``none`` (registered in
:mod:`scfmbench.impute.methods`) leaves the hidden entries at 0 or the train part as it is, the
floor; the oracles are ceilings, each of the metrics that measure what it returns. They are not
imputers: they legitimately read the held-out file (``heldout.npz`` of the masking protocol,
``test.npz`` of molecular cross-validation) for an array that exists only for datasets simulated
with it (``synthetic``). The workflow runs them on those datasets only and skips them elsewhere;
called on a held-out file without the array they are an :class:`~scfmbench.InputError`.

``perfect`` returns the true expression: under masking the truth at the hidden entries (so
``mse_truth`` is 0 and ``pearson_truth`` 1), under MCV the truth matrix (re-normalized over the kept
genes when the split was made). It is the ceiling of the ``*_truth`` metrics only. Against the
*observed* values (masking) a method can beat it because hidden entries are non-zero by selection,
so they sit above the truth. Against the *test* part (MCV) it is no ceiling either: the two parts
are Poisson draws of one rate, which varies around the truth (gamma-Poisson noise and dropout in
``synthetic``, biological variation in real data); MCV estimates that rate.

``true_rate`` returns that rate (``layers["rate"]`` of the simulation, kept in ``test.npz``) as
expected counts (``mcv_output = "poisson_mean"``): on each MCV scale its value is ``E[f(Poisson)]``
at the test depth, the conditional mean of the test part given the rate, which no method that sees
only the train part can beat in expectation. It is the ceiling of the MCV losses (``mse_sqrt``,
``mse_log1p``, ``pearson_sqrt``, ``poisson``), not of the ``*_truth`` metrics. ``none`` loses to it
on every MCV loss in expectation, at any depth (the train part is the rate plus its own Poisson
noise; the tests: pure Poisson at 200 and 2000 counts per cell, the default simulation). A smoothing
method falls below ``none`` when it removes more variation of the rate that the two parts share
(biological variation; in ``synthetic`` the per-entry gamma noise and dropout, drawn before the
split) than sampling noise: on the default simulation even ``perfect`` does on ``mse_sqrt`` (0.191
against 0.150, 3 seeds), while on pbmc68k (342-1654 counts on 765 genes) MAGIC and DCA beat
``none`` on every MCV loss.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scfmbench import InputError
from scfmbench.data.contract import log_normalize
from scfmbench.impute.base import read_npz, write_npz


def perfect_main(heldout_path: str | Path, predictions_path: str | Path, *, seed: int) -> np.ndarray:
    """Write the ``perfect`` control's predictions for either protocol; returns what was written."""
    held = read_npz(heldout_path, ())
    if "truth" not in held:
        raise InputError(
            f"{heldout_path}: has no 'truth' array, so the 'perfect' control cannot run; it needs a dataset with a "
            "noise-free truth (layers['truth'], e.g. source 'synthetic')."
        )
    common = dict(method=np.array("perfect"), seed=np.array(int(seed)), params_json=np.array(json.dumps({})))
    if "observed" in held:  # masking: heldout.npz
        values = np.maximum(held["truth"].astype(np.float32), 0)
        write_npz(predictions_path, values=values, mask_sha256=held["mask_sha256"], **common)
        return values
    if "split_sha256" in held:  # molecular cross-validation: test.npz
        denoised = np.maximum(held["truth"].astype(np.float32), 0)
        write_npz(predictions_path, denoised=denoised, split_sha256=held["split_sha256"], **common)
        return denoised
    raise InputError(
        f"{heldout_path}: neither a masking heldout.npz (with 'observed') nor an MCV test.npz (with "
        f"'split_sha256'); found {sorted(held)}."
    )


def true_rate_main(test_path: str | Path, predictions_path: str | Path, *, seed: int) -> np.ndarray:
    """Write the ``true_rate`` control's predictions on an MCV split (``test.npz`` with ``rate``):
    the rate on the X scale (``log1p(normalize_total(rate, 1e4))``), ``mcv_output =
    "poisson_mean"``; returns the denoised matrix."""
    held = read_npz(test_path, ())
    if "split_sha256" not in held:
        raise InputError(
            f"{test_path}: not an MCV test.npz (no 'split_sha256'; found {sorted(held)}); 'true_rate' is a control "
            "of molecular cross-validation (task denoising) only."
        )
    if "rate" not in held:
        raise InputError(
            f"{test_path}: has no 'rate' array, so the 'true_rate' control cannot run; it needs a dataset simulated "
            "with its Poisson rate (layers['rate'], source 'synthetic'). Remake the split if the dataset has one."
        )
    denoised = np.asarray(log_normalize(held["rate"].astype(np.float32)).toarray(), dtype=np.float32)
    common = dict(method=np.array("true_rate"), seed=np.array(int(seed)), params_json=np.array(json.dumps({})))
    write_npz(
        predictions_path,
        denoised=denoised,
        split_sha256=held["split_sha256"],
        mcv_output=np.array("poisson_mean"),
        **common,
    )
    return denoised
