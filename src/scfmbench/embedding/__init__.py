"""Cell embeddings as a benchmark of their own (task ``embedding``; docs/embedding.md "Cell embeddings").

The contract, one file per (dataset, method, seed)::

    results/embedding/{dataset}/{method}/seed{seed}/embedding.npz   # written by the method's job
    results/embedding/{dataset}/{method}/seed{seed}/metrics.csv     # task 'embedding', state as written
    results/embedding/{dataset}/{method}-zeroshot/seed{seed}/metrics.csv  # the pretrained-only state

``embedding.npz`` (:func:`write_embedding`, :func:`read_embedding`) holds

==============  ===========================================================================
``embedding``   (n_cells, d) float32: every cell of the prepared dataset, in its order; the
                method's own output (a fine-tuned model's, or a control's)
``zeroshot``    optional (n_cells, d'): the same model before fine-tuning (a pretraining
                checkpoint, released weights); absent for a model trained from scratch, which
                has no pretrained-only state
``obs_names``   the prepared dataset's ``obs_names`` (the row order)
``pooling``     how a cell's vector is read from the model (each model's ``embedding_pooling``)
``source``      where ``zeroshot`` comes from, or why there is none
==============  ===========================================================================

Metrics records of the zero-shot state carry the method id ``{method}-zeroshot``
(:func:`zeroshot_method`), so the report, the quality check and paired statistics treat the two
states as two methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scfmbench import InputError
from scfmbench._io import atomic_path

ZEROSHOT_SUFFIX = "-zeroshot"
#: The controls (scfmbench.embedding.controls): PCA of the log-normalized expression, a random projection of it.
CONTROLS = ("pca", "random")
EMBEDDING_PATH = "results/embedding/{dataset}/{method}/seed{seed}/embedding.npz"
METRICS_PATH = "results/embedding/{dataset}/{method}/seed{seed}/metrics.csv"


def zeroshot_method(method: str) -> str:
    """The method id of a model's pretrained-only embedding in metrics records."""
    return method + ZEROSHOT_SUFFIX


@dataclass
class CellEmbeddings:
    """What a model job writes to ``embedding.npz`` (see the module docstring)."""

    embedding: np.ndarray
    pooling: str
    zeroshot: np.ndarray | None = None
    source: str = "none: trained from scratch (no pretrained-only state)"


def write_embedding(path: str | Path, emb: CellEmbeddings, obs_names) -> None:
    """Write ``embedding.npz`` atomically; every array has one row per cell of ``obs_names``."""
    obs_names = np.asarray(obs_names).astype(str)
    arrays = (
        {"embedding": emb.embedding} if emb.zeroshot is None else {"embedding": emb.embedding, "zeroshot": emb.zeroshot}
    )
    for key, value in arrays.items():
        if value.ndim != 2 or len(value) != len(obs_names):
            raise InputError(
                f"{path}: {key} has shape {value.shape}; an embedding has one row per cell "
                f"({len(obs_names)}) and is 2-D"
            )
        if not np.isfinite(value).all():
            raise InputError(f"{path}: {key} holds {int((~np.isfinite(value)).sum())} non-finite values")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append '.npz' to a name
            np.savez(
                fh,
                **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()},
                obs_names=obs_names,
                pooling=np.asarray(emb.pooling),
                source=np.asarray(emb.source),
            )


def embedding_record(path, emb: CellEmbeddings) -> dict:
    """What a run record says about the embedding file it wrote."""
    return {"path": str(path), "pooling": emb.pooling, "dims": int(emb.embedding.shape[1]), "zeroshot": emb.source}


def read_embedding(path: str | Path, obs_names=None) -> CellEmbeddings:
    """Read ``embedding.npz``; with ``obs_names``, check it holds exactly those cells in that order."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("embedding", "obs_names", "pooling") if k not in z]
        if missing:
            raise InputError(
                f"{path}: lacks {missing}; an embedding file holds embedding, obs_names, pooling (scfmbench.embedding)"
            )
        emb = CellEmbeddings(
            z["embedding"],
            str(z["pooling"]),
            z["zeroshot"] if "zeroshot" in z else None,
            str(z["source"]) if "source" in z else "",
        )
        names = z["obs_names"].astype(str)
    if obs_names is not None:
        expected = np.asarray(obs_names).astype(str)
        if names.shape != expected.shape or not (names == expected).all():
            raise InputError(
                f"{path}: its {len(names)} cells are not the prepared dataset's {len(expected)} cells in order; "
                "rerun the method on this prepared dataset"
            )
    return emb
