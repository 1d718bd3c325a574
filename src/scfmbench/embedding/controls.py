"""The embedding controls: what a learned cell embedding has to beat without any model.

- ``pca``: principal components of the log-normalized expression (the prepared dataset's ``X``,
  log1p(normalize_total(counts, 1e4)); genes not scaled), fitted on the train cells and applied to
  every cell (scikit-learn ``PCA``, ARPACK solver on the sparse matrix, seeded by the run seed):
  the usual first step of a scanpy analysis, and the baseline zero-shot embeddings are compared with.
- ``random``: a Gaussian random projection of the same matrix (scikit-learn
  ``GaussianRandomProjection``, entries N(0, 1 / n_components), seeded by the run seed): distances
  kept up to a small distortion (Johnson-Lindenstrauss) with nothing learned.

Both take ``n_components`` dimensions (``embedding.n_components``, 50 by default; PCA at most the
number of train cells or genes minus one).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scfmbench import InputError


def pca_embedding(adata, *, seed: int, n_components: int = 50) -> np.ndarray:
    """PCA of ``adata.X`` fitted on the train cells, every cell projected: (n_cells, k) float32."""
    from sklearn.decomposition import PCA

    X = sp.csr_matrix(adata.X, dtype=np.float64)
    train = (adata.obs["split"].astype(str) == "train").to_numpy()
    k = min(n_components, int(train.sum()) - 1, X.shape[1] - 1)
    if k < 1:
        raise InputError(f"pca control: {int(train.sum())} train cells and {X.shape[1]} genes leave no component")
    pca = PCA(n_components=k, svd_solver="arpack", random_state=seed).fit(X[train])
    return pca.transform(X).astype(np.float32)


def random_embedding(adata, *, seed: int, n_components: int = 50) -> np.ndarray:
    """Gaussian random projection of ``adata.X`` to ``n_components`` dimensions: (n_cells, k) float32."""
    from sklearn.random_projection import GaussianRandomProjection

    X = sp.csr_matrix(adata.X, dtype=np.float64)
    proj = GaussianRandomProjection(n_components=n_components, random_state=seed).fit(X)
    out = proj.transform(X)
    return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)


CONTROL_EMBEDDINGS = {"pca": pca_embedding, "random": random_embedding}
POOLING = {
    "pca": "PCA of the log-normalized expression, fitted on the train cells",
    "random": "Gaussian random projection of the log-normalized expression",
}
