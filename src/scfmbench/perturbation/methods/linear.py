"""``linear``: Ahlmann-Eltze, Huber and Anders (2024), "Deep learning-based predictions of gene
perturbation effects do not yet outperform simple linear baselines": Y ~ G W P^T + b.

Y (genes x training perturbations) is the training pseudobulk (mean X per training condition),
b its row means; G (genes x K) are the top K principal components of Y - b (gene embeddings);
a perturbation's embedding is the sum of its genes' rows of G (P), so unseen genes have one too;
W (K x K) is the ridge solution ``(G'G + l I)^-1 G' (Y - b) P (P'P + l I)^-1`` with l = ``ridge``
(their 0.1, K 10). Prediction: b + G W p for each condition's embedding p.

A condition whose genes have no embedding (their rows of G are zero, up to float32 round-off: not
expressed, or at one level across the training pseudobulk) gets p = 0, i.e. b, the mean training profile: the run record
lists these fallbacks (``fallback_to_mean``), as the prediction then equals a mean baseline. Fewer than
two perturbed training conditions leave nothing to fit (Y - b = 0): an error."""

from __future__ import annotations

import logging

import numpy as np

from scfmbench.perturbation.data import CTRL, condition_genes, gene_names
from scfmbench.perturbation.methods import mean_of, register_predictor, thin

log = logging.getLogger(__name__)


@register_predictor("linear")
def linear(
    adata, split, conditions, *, seed: int, n_components: int = 10, ridge: float = 0.1
) -> tuple[np.ndarray, dict]:
    cond = adata.obs["condition"].astype(str).to_numpy()
    train = [c for c in split.conditions("train") if c != CTRL]
    if len(train) < 2:
        raise thin(
            "linear",
            split,
            seed,
            f"{len(train)} perturbed training condition(s); the linear model needs two or more "
            "to fit (with one, Y - b = 0)",
        )
    Y = np.stack([mean_of(adata, cond == c) for c in train], axis=1)  # (genes, perts)
    b = Y.mean(1, keepdims=True)
    U, S, _ = np.linalg.svd(Y - b, full_matrices=False)
    k = min(n_components, U.shape[1])
    G = U[:, :k] * S[:k]  # (genes, K): gene loadings scaled by the components' spread
    row = {g: i for i, g in enumerate(gene_names(adata))}

    def embed(c):
        return sum(G[row[g]] for g in condition_genes(c))

    P = np.stack([embed(c) for c in train])  # (perts, K)
    lhs = np.linalg.solve(G.T @ G + ridge * np.eye(k), G.T @ (Y - b))  # (K, perts)
    W = np.linalg.solve((P.T @ P + ridge * np.eye(k)).T, (lhs @ P).T).T  # (K, K)
    # float32 X leaves round-off (~1e-8 relative) in a constant gene's row of Y - b, so "no embedding" is relative
    tiny = 1e-6 * max(float(np.linalg.norm(G, axis=1).max()), 1e-300)
    fallback = [c for c in conditions if np.linalg.norm(embed(c)) <= tiny]
    if fallback:
        log.warning(
            "linear, seed %d: %d of %d conditions fall back to the mean training profile (their "
            "genes have no embedding): %s",
            seed,
            len(fallback),
            len(conditions),
            fallback[:10],
        )
    means = np.stack([(b[:, 0] + G @ W @ embed(c)) for c in conditions])
    return means, {"fallback_to_mean": fallback, "n_fallback_to_mean": len(fallback)}
