"""UMAP of scHyena [CLS] embeddings coloured by cell type (scanpy for the layout, matplotlib Agg).

The kNN graph is ``sc.pp.neighbors(method="gauss")`` on the embedding: scanpy's default
``method="umap"`` builds the graph with umap-learn's ``fuzzy_simplicial_set``, whose numba
compilation costs ~10 s in every fresh job, longer than everything else here; the Gaussian kernel
gives an equivalent graph for a figure. The layout is ``sc.tl.umap`` (umap-learn's optimiser).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scfmbench import InputError
from scfmbench._io import atomic_path


def umap_coordinates(embedding: np.ndarray, *, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """2-D UMAP coordinates (n_cells, 2) of ``embedding`` (n_cells, d): kNN graph, then ``sc.tl.umap``."""
    import anndata as ad
    import scanpy as sc

    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 2 or len(embedding) < 3:
        raise InputError(f"UMAP needs an (n_cells >= 3, d) embedding, got shape {embedding.shape}")
    adata = ad.AnnData(obsm={"X_cls": embedding}, shape=(len(embedding), 0))
    sc.pp.neighbors(
        adata, use_rep="X_cls", n_neighbors=min(n_neighbors, len(embedding) - 1), method="gauss", random_state=seed
    )
    sc.tl.umap(adata, random_state=seed)
    return np.asarray(adata.obsm["X_umap"])


def plot_umaps(
    panels: dict[str, np.ndarray], labels, path: str | Path, *, title: str = "", ncols: int | None = None
) -> None:
    """One scatter panel per entry of ``panels`` (title -> (n_cells, 2) coordinates), colour = ``labels``,
    in rows of ``ncols`` panels (None: one row).

    Colours come from matplotlib's ``tab10`` (``tab20`` beyond 10 classes; colours repeat beyond
    20), classes sorted, one legend for all panels. Written as PNG, atomically.
    """
    labels = np.asarray(labels).astype(str)
    classes = np.unique(labels)
    ncols = len(panels) if ncols is None else max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.2 * ncols + 1.8, 4.2 * nrows))
    FigureCanvasAgg(fig)
    palette = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    handles = None
    for i, (name, xy) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for c, cls in enumerate(classes):
            sel = labels == cls
            ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                s=max(2.0, 40.0 / math.sqrt(len(labels))),
                color=palette(c % palette.N),
                label=cls,
                linewidths=0,
                alpha=0.8,
            )
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        handles = ax.get_legend_handles_labels()
    if handles is not None:
        fig.legend(*handles, loc="center right", fontsize=7, markerscale=2, frameon=False, title="cell type")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 1.8 / (4.2 * ncols + 1.8), 1 - 0.05 / nrows))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
