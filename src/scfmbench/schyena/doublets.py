"""Doublet detection as scHyena frames it: simulated doublets are one extra class.

scHyena (arXiv 2310.02713; ``REFERENCE.md`` section 2) simulates doublets at 10% by averaging two
random cells and trains its classifier with "doublet" as an extra label. Here:

- each split gets its own doublets, made from two distinct random cells *of that split*: training
  doublets from training cells, validation doublets from validation cells, test doublets from test
  cells, so no cell's expression crosses a split boundary;
- ``rate`` is the fraction of doublets in each split *after* augmentation (a droplet doublet rate):
  ``round(rate * n / (1 - rate))`` doublets are added to a split of n cells;
- a doublet's counts are the mean of its two parents' counts (so its library size looks like a
  singlet's, the hard case), and its ``X`` is recomputed as ``log1p(normalize_total(counts, 1e4))``;
- parents are drawn uniformly, so some doublets are homotypic (two cells of one type), which no
  expression-based method can tell from singlets; that caps the attainable doublet F1.

Metrics on the augmented test split: ``accuracy`` and ``macro_f1`` over all classes (doublet
included) and ``doublet_f1``, the binary F1 of the doublet class. No torch here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench._io import write_csv
from scfmbench.data.contract import SPLITS, log_normalize
from scfmbench.metrics import annotation_metrics, binary_f1

DOUBLET = "doublet"
PREDICTION_COLUMNS = ("cell_id", "truth", "predicted")


def n_doublets(n_cells: int, rate: float) -> int:
    """Doublets to add to ``n_cells`` singlets so that they make up ``rate`` of the result (0 if < 2 cells)."""
    if not 0.0 < rate < 1.0:
        raise InputError(f"doublet rate must be in (0, 1), got {rate}")
    return int(round(rate * n_cells / (1.0 - rate))) if n_cells >= 2 else 0


def simulate_doublets(adata, *, rate: float = 0.1, seed: int, label: str = DOUBLET):
    """Append simulated doublets to every split of a prepared dataset.

    Parameters
    ----------
    adata
        Prepared dataset (:mod:`scfmbench.data.contract`): ``layers["counts"]``, ``X``,
        ``obs["cell_type"]``, ``obs["split"]``.
    rate
        Fraction of doublets in each split after augmentation (see :func:`n_doublets`).
    seed
        Seeds ``np.random.default_rng``; splits are drawn in the order train, valid, test.
    label
        Cell type given to doublets; must not already be a cell type.

    Returns
    -------
    AnnData
        The input cells (``X`` and counts unchanged) followed by the doublets, named
        ``{label}-{split}-{i}``. ``X`` (CSR float32), ``layers["counts"]`` (CSR float32; a doublet's
        counts are half-integers where its parents differ in parity), ``obs``: ``cell_type``
        (categorical, ``label`` added), ``split``, ``is_doublet`` (bool), ``parent_a``,
        ``parent_b`` (parent cell ids; empty for singlets). ``var`` copied. Other layers are
        dropped. ``uns["doublets"]``: ``rate``, ``seed``, ``label``, ``n_doublets`` (per split).
    """
    import anndata as ad

    cell_type = adata.obs["cell_type"].astype(str).to_numpy()
    if label in set(cell_type):
        raise InputError(f"doublet label {label!r} is already a cell type of this dataset; choose another label")
    split = adata.obs["split"].astype(str).to_numpy()
    counts = sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    rng = np.random.default_rng(seed)
    names, parents_a, parents_b, splits, blocks, made = [], [], [], [], [], {}
    for s in SPLITS:
        rows = np.flatnonzero(split == s)
        k = n_doublets(len(rows), rate)
        made[s] = k
        if k == 0:
            continue
        # Two distinct cells, uniformly: a, then b = a shifted by 1..n-1 (never a itself).
        a = rng.integers(len(rows), size=k)
        b = (a + rng.integers(1, len(rows), size=k)) % len(rows)
        a, b = rows[a], rows[b]
        blocks.append((counts[a] + counts[b]) * 0.5)
        names += [f"{label}-{s}-{i}" for i in range(k)]
        parents_a += adata.obs_names[a].tolist()
        parents_b += adata.obs_names[b].tolist()
        splits += [s] * k
    doublet_counts = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, adata.n_vars), dtype=np.float32)
    all_counts = sp.vstack([counts, doublet_counts], format="csr", dtype=np.float32)
    x = sp.vstack([sp.csr_matrix(adata.X, dtype=np.float32), log_normalize(doublet_counts)], format="csr")
    n = adata.n_obs
    obs = pd.DataFrame(
        {
            "cell_type": np.concatenate([cell_type, np.full(len(names), label)]),
            "split": np.concatenate([split, np.asarray(splits, dtype=str)]),
            "is_doublet": np.r_[np.zeros(n, bool), np.ones(len(names), bool)],
            "parent_a": [""] * n + parents_a,
            "parent_b": [""] * n + parents_b,
        },
        index=pd.Index(adata.obs_names.tolist() + names),
    )
    obs["cell_type"] = obs["cell_type"].astype("category")
    obs["split"] = obs["split"].astype("category")
    out = ad.AnnData(X=x, obs=obs, var=adata.var.copy(), layers={"counts": all_counts})
    out.uns["doublets"] = {"rate": float(rate), "seed": int(seed), "label": label, "n_doublets": made}
    return out


def doublet_metrics(truth, predicted, *, label: str = DOUBLET) -> dict[str, float]:
    """``accuracy`` and ``macro_f1`` over every class, and ``doublet_f1``: binary F1 of ``label``.

    ``doublet_f1`` is 0 when no doublet is predicted or present (scikit-learn ``zero_division=0``).
    """
    truth, predicted = np.asarray(truth).astype(str), np.asarray(predicted).astype(str)
    out = annotation_metrics(truth, predicted)
    out["doublet_f1"] = binary_f1(truth == label, predicted == label)
    return out


def write_doublet_predictions(cell_ids, truth, predicted, path) -> None:
    """Doublet predictions file: ``cell_id, truth, predicted`` for every cell of the augmented test split.

    The truth travels with the predictions because simulated doublets exist in no prepared file.
    """
    write_csv(
        pd.DataFrame(
            {
                "cell_id": np.asarray(cell_ids).astype(str),
                "truth": np.asarray(truth).astype(str),
                "predicted": np.asarray(predicted).astype(str),
            }
        ),
        path,
    )


def all_doublet_control(
    adata, *, seed: int, rate: float = 0.1, label: str = DOUBLET
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The doublet task's negative control ``all_doublet``: every cell of the augmented test split
    (the same doublets a method sees with this ``seed`` and ``rate``) called a doublet.

    Its ``doublet_f1`` is ``2 d / (n + d)`` for ``d`` doublets among ``n`` test cells (about
    ``2 rate / (1 + rate)``): the F1 any detector has to beat. Returns ``(cell_ids, truth, predicted)``.
    """
    augmented = simulate_doublets(adata, rate=rate, seed=seed, label=label)
    test = (augmented.obs["split"].astype(str) == "test").to_numpy()
    truth = augmented.obs["cell_type"].astype(str).to_numpy()[test]
    return augmented.obs_names[test].to_numpy(), truth, np.full(len(truth), label)


def score_doublets(predictions_path, *, label: str = DOUBLET) -> dict[str, float]:
    """:func:`doublet_metrics` of a doublet predictions file."""
    df = pd.read_csv(predictions_path, dtype=str, keep_default_na=False)
    missing = [c for c in PREDICTION_COLUMNS if c not in df]
    if missing:
        raise InputError(
            f"{predictions_path}: columns {missing} missing; a doublet predictions file has "
            f"columns {list(PREDICTION_COLUMNS)}"
        )
    if df.empty:
        raise InputError(f"{predictions_path}: no rows; it must hold every cell of the augmented test split")
    return doublet_metrics(df["truth"], df["predicted"], label=label)
