"""The imputer registry and the imputers that need no extra environment.

Adding an imputer is one function and one decorator::

    @register_imputer("mymethod")
    def mymethod(adata, *, seed: int, alpha: float = 1.0) -> np.ndarray:
        ...  # adata.X: masked log-normalized (CSR); adata.layers["counts"]: masked counts
        return dense  # (n_cells, n_genes), on the X scale (log1p of counts per 1e4)

Parameters are keyword-only with defaults; the config passes them by name and an unknown name is an
:class:`~scfmbench.InputError`. An imputer that lives in its own module ``scfmbench/impute/<name>.py``
(heavy or optional dependencies, e.g. ``dca``) registers itself there with the same decorator;
:func:`get_imputer` imports that module on first use, so nothing heavy is imported up front.

The same function runs under both protocols (:func:`~scfmbench.impute.protocol.run_imputer`):
once per masked fold (masking) or once on the train part of the molecules (molecular
cross-validation, :mod:`scfmbench.impute.mcv`).

Controls: ``none`` returns its input X as it is: every hidden entry is predicted as 0 (masking) and
the train part is left undenoised (MCV), the floor (under MCV a smoothing method can lose to it
legitimately: :mod:`scfmbench.impute.controls`). The oracles ``perfect`` and ``true_rate`` read the
held-out truth or rate, so they are not imputers (imputers never see held-out values); they live in
:mod:`scfmbench.impute.controls`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench.impute.protocol import run_imputer

Imputer = Callable[..., np.ndarray]
IMPUTERS: dict[str, Imputer] = {}


def register_imputer(name: str) -> Callable[[Imputer], Imputer]:
    """Decorator: add ``fn`` to :data:`IMPUTERS` under ``name`` (a duplicate name is an error)."""

    def deco(fn: Imputer) -> Imputer:
        if name in IMPUTERS and IMPUTERS[name] is not fn:
            raise ValueError(
                f"imputer {name!r} is already registered ({IMPUTERS[name].__module__}.{IMPUTERS[name].__name__})"
            )
        IMPUTERS[name] = fn
        return fn

    return deco


def get_imputer(name: str) -> Imputer:
    """The imputer registered as ``name``, importing ``scfmbench.impute.<name>`` if it registers there."""
    if name not in IMPUTERS:
        try:
            importlib.import_module(f"scfmbench.impute.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"scfmbench.impute.{name}":
                raise  # the module exists but one of its own imports is missing: show that error
    if name not in IMPUTERS:
        raise InputError(f"unknown imputation method {name!r}; registered: {sorted(IMPUTERS)}.")
    return IMPUTERS[name]


def impute_main(
    method: str, input_path: str | Path, predictions_path: str | Path, *, seed: int, params: dict | None = None
) -> np.ndarray:
    """Run the registered imputer ``method`` on a protocol input (masked folds or MCV train part); the rule script's one
    call."""
    return run_imputer(get_imputer(method), input_path, predictions_path, seed=seed, params=params, name=method)


@register_imputer("none")
def no_imputation(adata, *, seed: int) -> np.ndarray:
    """Control: the masked X as is, so every hidden entry is predicted as 0."""
    del seed  # deterministic
    x = adata.X
    return x.toarray() if sp.issparse(x) else np.asarray(x)


@register_imputer("magic")
def magic_impute(
    adata, *, seed: int, knn: int = 5, t: int | str = 3, decay: float = 1, n_pca: int = 100, solver: str = "exact"
) -> np.ndarray:
    """MAGIC diffusion (van Dijk et al. 2018, ``magic-impute``) on the masked log-normalized X.

    MAGIC's authors recommend library-size normalization followed by a sqrt or log transform; X is
    ``log1p(counts per 1e4)``, so the output is already on the X scale. ``n_pca`` is capped at
    ``min(n_cells, n_genes) - 1`` (PCA cannot have more components); ``knn`` must be below
    ``n_cells``. ``solver="approximate"`` diffuses in PCA space (faster on ~20k genes). Parameters
    and defaults are MAGIC 3.0's; ``random_state=seed`` seeds its PCA.
    """
    import magic

    n_cells, n_genes = adata.shape
    if knn >= n_cells:
        raise InputError(f"magic: knn={knn} needs more than {knn} cells; the dataset has {n_cells}.")
    n_pca = min(int(n_pca), min(n_cells, n_genes) - 1)
    op = magic.MAGIC(knn=knn, t=t, decay=decay, n_pca=n_pca, solver=solver, random_state=seed, n_jobs=1, verbose=0)
    return np.asarray(op.fit_transform(sp.csr_matrix(adata.X), genes="all_genes"), dtype=np.float32)
