"""Seq2Graph gene graph: union, self-loops, CLS node, layout, ablations, save/load, train-only."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench.graphs.build import build_gene_graph, graph_stats, load_graph, save_graph
from scfmbench.graphs.coexpression import coexpression_edges

GENES = ["STAT3", "SEPTIN7", "MYC", "TP53", "CDKN1A", "GAPDH", "ACTB", "MARCHF1"]


def _edges(pairs, database):
    src, dst = zip(*pairs)
    return pd.DataFrame({"source": src, "target": dst, "database": database, "sign": np.int8(0), "undirected": False})


def _tables():
    return [
        _edges([("TP53", "CDKN1A"), ("STAT3", "7-Sep"), ("MYC", "NOT_IN_DATA")], "trrust"),
        _edges([("MYC", "TP53"), ("TP53", "CDKN1A"), ("MARCH1", "MYC")], "collectri"),
    ]


def _train(n_cells=40, seed=0):
    rng = np.random.default_rng(seed)
    X = np.log1p(rng.poisson(2.0, size=(n_cells, len(GENES))).astype(float))
    X[:, 6] = X[:, 5] + 0.1 * rng.random(n_cells)  # ACTB follows GAPDH
    return sp.csr_matrix(X)


def _has(g, src_gene, dst_gene):
    i, j = g.gene_node(GENES.index(dst_gene)), g.gene_node(GENES.index(src_gene))
    return g.adjacency[i, j] == 1


def test_union_self_loops_and_cls():
    g = build_gene_graph(GENES, _train(), _tables(), top_h=1, delta=0.5)
    A = g.adjacency
    n = len(GENES)
    assert A.shape == (n + 1, n + 1) and g.has_cls and A.dtype == np.int8
    assert np.all(A.diagonal() == 1)  # self-loops, CLS included
    assert np.all(A[0, :].toarray() == 1) and np.all(A[:, 0].toarray() == 1)  # CLS <-> every gene
    # regulatory edges, A[target, source]; "7-Sep", SEPTIN7, MARCH1 and MARCHF1 meet
    assert _has(g, "TP53", "CDKN1A") and not _has(g, "CDKN1A", "TP53")
    assert _has(g, "STAT3", "SEPTIN7") and _has(g, "MARCHF1", "MYC") and _has(g, "MYC", "TP53")
    # co-expression: GAPDH and ACTB are each other's top partner (neighbour -> gene, both ways)
    assert _has(g, "GAPDH", "ACTB") and _has(g, "ACTB", "GAPDH")
    c = g.edge_counts
    assert c["trrust"] == 2 and c["collectri"] == 3 and c["regulatory"] == 4
    assert c["gene_gene"] == c["regulatory"] + c["coexpression"] - c["overlap"]
    assert A.nnz == c["gene_gene"] + (n + 1) + 2 * n
    stats = graph_stats(g)
    assert stats["genes"] == n and stats["nodes"] == n + 1 and stats["edges"] == A.nnz
    assert stats["edges_per_database"] == {"trrust": 2, "collectri": 3}
    assert stats["match_rate"] == pytest.approx(g.genes_matched / n)
    assert stats["mean_in_degree"] == pytest.approx((A.nnz - A[0].nnz) / n)  # gene rows only


def test_multigraph_counts_parallel_edges_as_genohoption(tmp_path):
    """GenoHoption's generate_g (utils.py): the two edge tables outer-merged (an edge in both stays
    twice), co-expression's own self pairs, then dgl.add_self_loop, and the CLS edges whose self
    pair is deduplicated before add_self_loop: the multiplicities written out by hand."""
    X = _train()
    tables = _tables() + [_edges([("GAPDH", "ACTB")], "extra")]  # GAPDH -> ACTB is co-expressed too: in both parts
    plain = build_gene_graph(GENES, X, tables, top_h=1, delta=0.5)
    multi = build_gene_graph(GENES, X, tables, top_h=1, delta=0.5, multigraph=True)
    reg = build_gene_graph(GENES, None, tables, use_coexpr=False).adjacency.toarray()  # regulatory part alone
    n = len(GENES)
    src, dst, _ = coexpression_edges(X, top_h=1, delta=0.5)
    co = {(int(s) + 1, int(d) + 1) for s, d in zip(src, dst)}  # (source node, target node)
    expected = np.zeros((n + 1, n + 1), dtype=int)
    for i in range(n + 1):  # target
        for j in range(n + 1):  # source
            if i == j:
                expected[i, j] = 2  # dgl.add_self_loop + co-expression's self pair (CLS: its global self pair)
            elif i == 0 or j == 0:
                expected[i, j] = 1  # CLS edges, deduplicated by set() in generate_g
            else:
                expected[i, j] = int(bool(reg[i, j])) + int((j, i) in co)
    M = multi.adjacency.toarray()
    assert (expected == 2).sum() > n + 1  # the fixture has an edge in both parts
    assert np.array_equal(M, expected)
    assert np.array_equal(M != 0, plain.adjacency.toarray() != 0)  # the same edges, only the counts differ
    save_graph(multi, tmp_path / "m.npz")
    assert np.array_equal(load_graph(tmp_path / "m.npz").adjacency.toarray(), M)


def test_ablation_flags():
    X, tables = _train(), _tables()
    n = len(GENES)
    g = build_gene_graph(GENES, X, tables, top_h=1, delta=0.5, use_coexpr=False, add_cls=False)
    assert g.adjacency.shape == (n, n) and not g.has_cls and "coexpression" not in g.edge_counts
    assert g.adjacency.nnz == g.edge_counts["regulatory"] + n
    assert g.gene_node(3) == 3
    g = build_gene_graph(GENES, X, tables, top_h=1, delta=0.5, use_grn=False)
    assert "regulatory" not in g.edge_counts
    co = coexpression_edges(X, top_h=1, delta=0.5)
    assert g.edge_counts["gene_gene"] == g.edge_counts["coexpression"] == len(set(zip(*co[:2])))
    g = build_gene_graph(GENES, None, tables, use_coexpr=False, use_grn=False, add_cls=False)
    assert (g.adjacency != sp.identity(n, format="csr")).nnz == 0  # self-loops only


def test_no_overlap_errors_with_grn_and_warns_without():
    ensembl = [f"ENSG{i:011d}" for i in range(len(GENES))]
    with pytest.raises(InputError, match="none of the dataset"):
        build_gene_graph(ensembl, _train(), _tables())
    with pytest.warns(UserWarning, match="none of the dataset"):
        g = build_gene_graph(ensembl, _train(), _tables(), use_grn=False)
    assert g.genes_matched == 0
    with pytest.raises(InputError, match="no regulatory edge table"):
        build_gene_graph(GENES, _train(), [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_gene_graph(GENES, _train(), [], use_grn=False)  # nothing configured: no warning
    with pytest.raises(InputError, match="columns"):
        build_gene_graph(GENES[:-1], _train(), _tables())


def test_graph_depends_on_train_cells_only():
    """The API takes the training matrix: changing held-out cells cannot change the graph."""
    rng = np.random.default_rng(1)
    full = _train(60).toarray()
    split = np.array(["train"] * 40 + ["test"] * 20)
    g1 = build_gene_graph(GENES, full[split == "train"], _tables(), top_h=2, delta=0.1)
    full2 = full.copy()
    full2[split == "test"] = rng.random((20, len(GENES))) * 5  # scramble test cells
    g2 = build_gene_graph(GENES, full2[split == "train"], _tables(), top_h=2, delta=0.1)
    assert (g1.adjacency != g2.adjacency).nnz == 0
    g3 = build_gene_graph(GENES, full2, _tables(), top_h=2, delta=0.1)  # the mistake this guards
    assert (g1.adjacency != g3.adjacency).nnz > 0


def test_save_load_roundtrip(tmp_path):
    g = build_gene_graph(GENES, _train(), _tables(), top_h=2, delta=0.3)
    path = tmp_path / "graphs" / "graph.npz"
    save_graph(g, path)
    assert [p.name for p in path.parent.iterdir()] == ["graph.npz"]  # no temporary left behind
    h = load_graph(path)
    assert (h.adjacency != g.adjacency).nnz == 0 and h.adjacency.dtype == np.int8
    assert list(h.gene_names) == GENES and h.has_cls and h.edge_counts == g.edge_counts
    assert h.params == g.params and h.genes_matched == g.genes_matched
    pd.testing.assert_frame_equal(h.match_counts, g.match_counts, check_dtype=False)
    assert graph_stats(h) == graph_stats(g)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a gene-graph file"):
        load_graph(bad)
