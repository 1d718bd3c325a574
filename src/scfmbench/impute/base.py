"""What both imputation protocols (:mod:`.protocol`, :mod:`.mcv`) share: the ``.npz`` files they
write and read, the run record every prediction carries, the check of an imputer's output and the
pooled Pearson correlation they score with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench._io import atomic_path

#: The obs columns a masked or MCV input keeps from the prepared dataset.
OBS_COLUMNS = ("cell_type", "split")


def write_npz(path: str | Path, **arrays) -> None:
    """``np.savez`` atomically; writing to an open handle stops numpy appending ``.npz`` to the name."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def read_npz(path: str | Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    missing = [k for k in required if k not in out]
    if missing:
        raise InputError(f"{path}: lacks arrays {missing}; found {sorted(out)}.")
    return out


def run_record(name: str, seed: int, params: dict) -> dict[str, np.ndarray]:
    """The arrays every ``predictions.npz`` carries besides its values: ``method``, ``seed``,
    ``params_json`` and ``provenance_json`` (versions, device and the thread count, which decides
    whether a rerun gives the same numbers: docs/reproducibility.md, "Reproducibility")."""
    from scfmbench.provenance import provenance

    return {
        "method": np.array(name),
        "seed": np.array(int(seed)),
        "params_json": np.array(json.dumps(params, sort_keys=True, default=str)),
        "provenance_json": np.array(
            json.dumps(provenance(load_torch=False, seed=int(seed)), sort_keys=True, default=str)
        ),
    }


def check_output(out, shape: tuple[int, int], *, name: str, what: str) -> np.ndarray:
    """An imputer's output as a dense array, or :class:`InputError` (sparse, wrong shape, non-finite)."""
    if sp.issparse(out):
        raise InputError(f"imputer {name!r} returned a sparse matrix for {what}; imputers return a dense np.ndarray.")
    out = np.asarray(out)
    if out.shape != tuple(shape):
        raise InputError(
            f"imputer {name!r} returned shape {out.shape} for {what}; expected (n_cells, n_genes) = {tuple(shape)}."
        )
    if not np.issubdtype(out.dtype, np.number) or not np.isfinite(out).all():
        raise InputError(f"imputer {name!r} returned non-finite or non-numeric values for {what}.")
    return out


def pearson(pred: np.ndarray, obs: np.ndarray) -> float:
    """Pooled Pearson r; NaN when either side is constant (e.g. the no-imputation control, all 0)."""
    if pred.size < 2 or np.ptp(pred) == 0 or np.ptp(obs) == 0:
        return float("nan")
    a, b = pred - pred.mean(), obs - obs.mean()
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
