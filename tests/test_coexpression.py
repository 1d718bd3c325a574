"""Blockwise co-expression edges equal the dense reference; scGPT binning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench.graphs.coexpression import binned_layer, coexpression_edges, coexpression_edges_reference


def _data(n_cells=60, n_genes=45, seed=0):
    """Correlated non-negative data with exact ties (duplicated genes) and constant genes."""
    rng = np.random.default_rng(seed)
    X = np.maximum(
        rng.normal(size=(n_cells, 4)) @ rng.normal(size=(4, n_genes)) + rng.normal(size=(n_cells, n_genes)), 0
    )
    X[:, 3] = X[:, 7]  # identical genes: equal |r| to everyone -> ties broken by lower index
    X[:, 11] = X[:, 5]
    X[:, 10] = 2.0  # constant (zero variance)
    X[:, 12] = 0.0
    return X


def _edges(result):
    return list(zip(result[0].tolist(), result[1].tolist()))


@pytest.mark.parametrize("top_h, delta", [(3, 0.2), (5, 0.0), (20, 0.4), (50, 0.1)])
@pytest.mark.parametrize("block_size", [1, 7, 16, 45, 100])
def test_blockwise_equals_dense_reference(top_h, delta, block_size):
    X = _data()
    ref = coexpression_edges_reference(X, top_h=top_h, delta=delta)
    got = coexpression_edges(sp.csr_matrix(X), top_h=top_h, delta=delta, block_size=block_size, dtype=np.float64)
    assert _edges(got) == _edges(ref)  # same edges, same order
    np.testing.assert_allclose(got[2], ref[2])


@pytest.mark.parametrize("seed", [1, 2])
def test_float32_dense_input_matches_reference(seed):
    X = _data(80, 64, seed)
    ref = coexpression_edges_reference(X, top_h=10, delta=0.3)
    got = coexpression_edges(X.astype(np.float32), top_h=10, delta=0.3, block_size=24)
    assert set(_edges(got)) == set(_edges(ref))


def test_rules_direction_self_ties_and_zero_variance():
    X = _data()
    src, dst, w = coexpression_edges(X, top_h=5, delta=0.2, block_size=8, dtype=np.float64)
    assert not np.any(src == dst)  # no self pairs
    assert np.all(w > 0.2)
    assert np.bincount(dst, minlength=X.shape[1]).max() <= 5
    for g in (10, 12):  # zero variance: neither end of any edge
        assert g not in src and g not in dst
    # direction: neighbour -> gene, i.e. each target's sources are its top partners by |r|
    with np.errstate(invalid="ignore", divide="ignore"):  # constant genes give NaN here
        r = np.abs(np.corrcoef(X[:, [0, 1, 2]], X, rowvar=False)[:3, 3:])
    for g in (0, 1, 2):
        partners = src[dst == g]
        ranked = [j for j in np.argsort(-r[g], kind="stable") if j != g and j not in (10, 12)][: len(partners)]
        assert set(partners) == set(ranked)
    # gene 7 duplicates gene 3: for a third gene both tie, and the lower index (3) comes first
    pos = {(s, d): k for k, (s, d) in enumerate(zip(src.tolist(), dst.tolist()))}
    for d in set(dst.tolist()):
        if (3, d) in pos and (7, d) in pos:
            assert pos[(3, d)] < pos[(7, d)]
    ties = [d for d in set(dst.tolist()) if (7, d) in pos]
    assert all((3, d) in pos for d in ties if d != 3)


def test_top_h_larger_than_genes_and_single_gene():
    X = _data(30, 16)[:, :6]
    got = coexpression_edges(X, top_h=100, delta=0.0, dtype=np.float64)
    assert _edges(got) == _edges(coexpression_edges_reference(X, top_h=100, delta=0.0))
    src, dst, _ = coexpression_edges(X[:, :1], top_h=3, delta=0.0)
    assert src.size == 0 and dst.size == 0


def test_bad_parameters():
    X = _data(10, 16)
    for kwargs in ({"top_h": 0}, {"delta": 1.0}, {"delta": -0.1}, {"block_size": 0}):
        with pytest.raises(InputError):
            coexpression_edges(X, **kwargs)
    with pytest.raises(InputError, match="NaN"):
        coexpression_edges(np.full((4, 3), np.nan))


def test_binned_layer_matches_scgpt_rule():
    rng = np.random.default_rng(0)
    X = np.where(rng.random((20, 200)) < 0.3, rng.gamma(2.0, 1.0, (20, 200)), 0.0)
    X[5] = 0.0  # an empty cell stays all zero
    B = binned_layer(X, n_bins=51, rng=np.random.default_rng(1))
    assert B.shape == X.shape and B.dtype == np.float32
    assert np.array_equal(B == 0, X == 0)
    assert B.max() <= 50 and B[X > 0].min() >= 1
    row = X[0][X[0] > 0]  # no ties in continuous values: scgpt.preprocess.binning's left bins
    expected = np.digitize(row, np.quantile(row, np.linspace(0, 1, 50)))
    assert np.array_equal(B[0][X[0] > 0], expected)
    # ranks within a cell are preserved
    i, j = np.flatnonzero(X[1])[:2]
    assert (X[1, i] < X[1, j]) <= (B[1, i] <= B[1, j])
    Bs = binned_layer(sp.csr_matrix(X), n_bins=51, rng=np.random.default_rng(1))
    assert sp.issparse(Bs) and np.array_equal(Bs.toarray(), B)
