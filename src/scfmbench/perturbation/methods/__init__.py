"""The perturbation predictor registry: one module per method, one decorator each.

A predictor maps the dataset and a split to predicted mean profiles of the conditions asked::

    @register_predictor("mymethod")
    def mymethod(adata, split, conditions, *, seed: int, alpha: float = 1.0) -> np.ndarray:
        ...  # adata: the dataset (GEARS layout; X log-normalized); split: scfmbench.perturbation.split.Split
        return means  # (len(conditions), n_genes), on the scale of X; or (means, record): the
                      # record (a JSON-able dict) goes into the run's run.json

A predictor may read only training conditions (``split.conditions("train")``, ``ctrl`` among them)
and validation conditions for model selection; the test cells' X is what it is scored on.
Controls (``no_change``, ``train_mean``, ``oracle``) and baselines (``additive``, ``linear``) live
here, one file each; the scGPT-style generator (``scgpt-<kernel>``) in :mod:`scfmbench.perturbation.generator`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from scfmbench import InputError

Predictor = Callable[..., np.ndarray]
PREDICTORS: dict[str, Predictor] = {}
BUILTIN_PREDICTORS = ("no_change", "train_mean", "additive", "linear", "oracle")


def register_predictor(name: str) -> Callable[[Predictor], Predictor]:
    def deco(fn: Predictor) -> Predictor:
        if name in PREDICTORS and PREDICTORS[name] is not fn:
            raise ValueError(f"perturbation predictor {name!r} is already registered")
        PREDICTORS[name] = fn
        return fn

    return deco


def get_predictor(name: str) -> Predictor:
    """The predictor ``name``, importing ``scfmbench.perturbation.methods.<name>`` on first use."""
    if name not in PREDICTORS and name.isidentifier():
        try:
            importlib.import_module(f"scfmbench.perturbation.methods.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"scfmbench.perturbation.methods.{name}":
                raise
    if name not in PREDICTORS:
        raise InputError(
            f"unknown perturbation method {name!r}; built in: {list(BUILTIN_PREDICTORS)} and scgpt-<attention kernel>"
        )
    return PREDICTORS[name]


def train_cells(adata, split) -> np.ndarray:
    """Boolean mask of the cells of training conditions (``ctrl`` included)."""
    train = set(split.conditions("train"))
    return adata.obs["condition"].astype(str).isin(train).to_numpy()


def mean_of(adata, mask) -> np.ndarray:
    x = adata.X[np.flatnonzero(mask)]
    return np.asarray(x.mean(0), dtype=np.float64).ravel()


def control_mean(adata) -> np.ndarray:
    """The float64 control mean, the very numbers the metrics subtract
    (:func:`scfmbench.perturbation.data.control_mean`)."""
    from scfmbench.perturbation.data import control_mean as _control_mean

    return _control_mean(adata)


def thin(method: str, split, seed: int, missing: str) -> InputError:
    """The error of a method with nothing to fit: names the method, the dataset (the split records
    it), the seed and what is missing."""
    dataset = split.params.get("dataset")
    train = [c for c in split.conditions("train") if c != "ctrl"]
    return InputError(
        f"{method} on perturbation dataset {dataset!r}, seed {seed}: {missing} (training conditions: "
        f"{train[:8]}{' ...' if len(train) > 8 else ''}); the screen is too thin for it: remove {method} from "
        "perturbation.methods or add conditions"
    )
