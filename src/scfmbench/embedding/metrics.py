"""Embedding metrics (task ``embedding``), scored on the test cells of a prepared dataset.

=======================  ===========================================================================
metric                   definition
=======================  ===========================================================================
``knn_accuracy``         accuracy of a k-nearest-neighbour classifier (scikit-learn, Euclidean, k =
``knn_macro_f1``         ``embedding.n_neighbors``, uniform votes) with the train cells as reference,
                         predicting the test cells; and its macro F1 (:func:`scfmbench.metrics.macro_f1`)
``probe_macro_f1``       linear probe: logistic regression (scikit-learn, L2, C = 1) on the frozen
                         embedding standardized with the train cells' mean and SD, fitted on the train
                         cells; macro F1 on the test cells
``kmeans_nmi``           k-means (k = number of cell types among the test cells, 10 seeded starts)
``kmeans_ari``           on the test cells: NMI (arithmetic mean) and ARI of its clusters against the
                         cell types, as scib-metrics' ``nmi_ari_cluster_labels_kmeans`` (Leiden, scib's
                         original, needs igraph/leidenalg and a resolution sweep: left out)
``asw_label``            cell-type silhouette of the test cells (scikit-learn ``silhouette_score``,
                         Euclidean), rescaled (s + 1) / 2 to [0, 1] as scib does
``batch_asw``            with a batch column: per cell type, 1 - |silhouette| of each cell with the
                         batches as labels, averaged per type, then over types (scib's
                         ``silhouette_batch``; types in one batch only, or with one cell per batch,
                         are skipped); 1 = batches mixed
``graph_connectivity``   with a batch column: per cell type, the share of its test cells in the
                         largest strongly connected component of the directed kNN graph (k
                         neighbours, self excluded) restricted to that type; mean over types (scib)
``ilisi``                with a batch column and the extra ``scib`` installed: scib-metrics'
                         ``ilisi_knn`` (scaled median iLISI over the test cells; k neighbours + self)
=======================  ===========================================================================

Every metric is in [0, 1] (ARI in [-1, 1], 0 = chance), higher is better. A constant embedding is the floor: every test
cell is at the same distance from every reference cell, so all get the same neighbours and the same
prediction, and the kNN accuracy is the test share of one class (at most the ``majority``
annotation control's); k-means finds nothing (NMI, ARI 0).
"""

from __future__ import annotations

import numpy as np

from scfmbench import InputError
from scfmbench.metrics import accuracy, macro_f1

#: Metrics computed without a batch column, in record order.
LABEL_METRICS = ("knn_accuracy", "knn_macro_f1", "probe_macro_f1", "kmeans_nmi", "kmeans_ari", "asw_label")
BATCH_METRICS = ("batch_asw", "graph_connectivity", "ilisi")


def knn_scores(emb: np.ndarray, labels, train: np.ndarray, test: np.ndarray, *, k: int = 15) -> dict[str, float]:
    """kNN accuracy and macro F1 of the test cells, the train cells as reference (k capped at their number)."""
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels).astype(str)
    clf = KNeighborsClassifier(n_neighbors=min(k, int(train.sum())), algorithm="brute").fit(emb[train], labels[train])
    pred = clf.predict(emb[test])
    return {"knn_accuracy": accuracy(labels[test], pred), "knn_macro_f1": macro_f1(labels[test], pred)}


def linear_probe(emb: np.ndarray, labels, train: np.ndarray, test: np.ndarray, *, seed: int = 0) -> float:
    """Macro F1 on the test cells of a logistic regression fitted on the standardized train cells."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels).astype(str)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed)).fit(
        emb[train], labels[train]
    )
    return macro_f1(labels[test], probe.predict(emb[test]))


def kmeans_nmi_ari(emb: np.ndarray, labels, *, seed: int = 0, n_init: int = 10) -> dict[str, float]:
    """NMI and ARI of k-means clusters (k = number of label values) against ``labels``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = np.asarray(labels).astype(str)
    clusters = KMeans(n_clusters=len(np.unique(labels)), n_init=n_init, random_state=seed).fit_predict(emb)
    return {
        "kmeans_nmi": float(normalized_mutual_info_score(labels, clusters, average_method="arithmetic")),
        "kmeans_ari": float(adjusted_rand_score(labels, clusters)),
    }


def label_asw(emb: np.ndarray, labels) -> float:
    """Cell-type silhouette rescaled to [0, 1]: (silhouette_score + 1) / 2 (scib's ``silhouette_label``)."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels).astype(str)
    n = len(np.unique(labels))
    if not 2 <= n < len(labels):
        return float("nan")  # the silhouette needs 2..n_cells-1 clusters
    return float((silhouette_score(emb, labels) + 1) / 2)


def batch_asw(emb: np.ndarray, labels, batch) -> float:
    """scib's batch ASW: per cell type, mean of 1 - |silhouette over batches|; mean over types.

    Hand-written as scib defines it (scikit-learn has the per-cell silhouette, not this
    aggregation); ``tests/test_embedding.py`` checks it against scib-metrics where installed."""
    from sklearn.metrics import silhouette_samples

    labels, batch = np.asarray(labels).astype(str), np.asarray(batch).astype(str)
    per_type = []
    for t in np.unique(labels):
        sel = labels == t
        n_batches = len(np.unique(batch[sel]))
        if n_batches == 1 or n_batches == sel.sum():
            continue
        per_type.append(float(np.mean(1 - np.abs(silhouette_samples(emb[sel], batch[sel])))))
    return float(np.mean(per_type)) if per_type else float("nan")


def knn_graph(emb: np.ndarray, *, k: int = 15):
    """Directed kNN graph (CSR, n x n, distances): each cell's k nearest other cells."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(emb) - 1)
    return NearestNeighbors(n_neighbors=k).fit(emb).kneighbors_graph(mode="distance")


def graph_connectivity(emb: np.ndarray, labels, *, k: int = 15) -> float:
    """scib's graph connectivity: per cell type, the share of its cells in the largest strongly
    connected component of the kNN graph restricted to that type; mean over types."""
    from scipy.sparse.csgraph import connected_components

    labels = np.asarray(labels).astype(str)
    graph = knn_graph(emb, k=k)
    shares = []
    for t in np.unique(labels):
        sel = np.flatnonzero(labels == t)
        _, comp = connected_components(graph[sel][:, sel], directed=True, connection="strong")
        shares.append(np.bincount(comp).max() / len(sel))
    return float(np.mean(shares))


def ilisi(emb: np.ndarray, batch, *, k: int = 15) -> float | None:
    """scib-metrics' scaled iLISI on the kNN graph (k neighbours + the cell itself); None when the
    extra ``scib`` (scib-metrics) is not installed."""
    try:
        from scib_metrics import ilisi_knn
        from scib_metrics.nearest_neighbors import NeighborsResults
    except ImportError:
        return None
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=min(k + 1, len(emb))).fit(emb).kneighbors(emb)
    return float(ilisi_knn(NeighborsResults(indices=idx, distances=dist), np.asarray(batch).astype(str)))


def embedding_metrics(emb: np.ndarray, labels, split, *, seed: int = 0, k: int = 15, batch=None) -> dict[str, float]:
    """Every metric of the module docstring for one embedding (n_cells x d) of a prepared dataset:
    kNN and the probe from the train to the test cells, the others on the test cells. ``batch``:
    the batch of every cell (None: no batch metrics)."""
    emb = np.asarray(emb, dtype=np.float64)
    labels, split = np.asarray(labels).astype(str), np.asarray(split).astype(str)
    if emb.ndim != 2 or len(emb) != len(labels):
        raise InputError(f"an embedding has one row per cell: shape {emb.shape} for {len(labels)} cells")
    train, test = split == "train", split == "test"
    if not train.any() or not test.any():
        raise InputError("embedding metrics need train cells (the reference) and test cells (scored)")
    out = {
        **knn_scores(emb, labels, train, test, k=k),
        "probe_macro_f1": linear_probe(emb, labels, train, test, seed=seed),
    }
    out.update(kmeans_nmi_ari(emb[test], labels[test], seed=seed))
    out["asw_label"] = label_asw(emb[test], labels[test])
    if batch is not None:
        batch = np.asarray(batch).astype(str)
        out["batch_asw"] = batch_asw(emb[test], labels[test], batch[test])
        out["graph_connectivity"] = graph_connectivity(emb[test], labels[test], k=k)
        value = ilisi(emb[test], batch[test], k=k)
        if value is not None:
            out["ilisi"] = value
    return out
