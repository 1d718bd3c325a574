"""The synthetic dataset: contract fields, determinism, and the properties the benchmark relies on.

Properties are checked on the default-sized dataset (simulated once per module, under a second):
cell types must be learnable but not given away, network edges must carry co-expression, and the
truth layer must be the signal behind X.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from scfmbench import InputError
from scfmbench.data.contract import check_counts, log_normalize
from scfmbench.data.synthetic import read_trrust, simulate_grn_dataset, vendored_grn_path

SMALL = dict(n_cells=200, n_genes=60, n_cell_types=4)


@pytest.fixture(scope="module")
def default():
    return simulate_grn_dataset(seed=0)


def test_vendored_files_match_source_md():
    from scfmbench._io import sha256_file

    source = (vendored_grn_path("trrust_human").parent / "SOURCE.md").read_text()
    for name in ("trrust_human", "trrust_mouse"):
        assert sha256_file(vendored_grn_path(name)) in source
    assert len(read_trrust(vendored_grn_path("trrust_human"))) == 9396


def test_contract_fields_and_h5ad_roundtrip(tmp_path):
    a = simulate_grn_dataset(seed=1, **SMALL)
    assert a.shape == (200, 60)
    assert a.var_names.is_unique
    counts = a.layers["counts"]
    assert sp.issparse(counts) and counts.format == "csr" and counts.dtype == np.float32
    check_counts(counts)  # integer, finite, >= 0
    assert abs(sp.csr_matrix(a.X) - log_normalize(counts)).max() < 1e-5
    assert isinstance(a.layers["truth"], np.ndarray) and a.layers["truth"].dtype == np.float32
    assert a.layers["truth"].shape == a.shape and np.isfinite(a.layers["truth"]).all()
    assert a.obs["cell_type"].dtype == "category"
    assert list(a.obs["cell_type"].cat.categories) == ["type_0", "type_1", "type_2", "type_3"]
    assert a.uns["synthetic_params"]["seed"] == 1 and a.uns["synthetic_params"]["n_genes"] == 60

    a.write_h5ad(tmp_path / "s.h5ad")
    b = ad.read_h5ad(tmp_path / "s.h5ad")
    assert (b.layers["counts"] != a.layers["counts"]).nnz == 0
    np.testing.assert_array_equal(b.uns["true_grn"]["source"].astype(str), a.uns["true_grn"]["source"])
    np.testing.assert_array_equal(b.uns["true_grn"]["sign"], a.uns["true_grn"]["sign"])


def test_seeded():
    a, b, c = (simulate_grn_dataset(seed=s, **SMALL) for s in (5, 5, 6))
    assert (a.layers["counts"] != b.layers["counts"]).nnz == 0
    assert list(a.var_names) == list(b.var_names)
    assert list(a.var_names) != list(c.var_names) or (a.layers["counts"] != c.layers["counts"]).nnz > 0


def test_edges_are_real_and_inside_the_genes(default):
    grn = default.uns["true_grn"]
    assert len(grn["source"]) >= default.n_vars  # a connected, co-regulated subnetwork, not a tree
    assert set(grn["source"]) | set(grn["target"]) <= set(default.var_names)
    assert set(np.unique(grn["sign"])) <= {-1, 1} and (grn["sign"] == -1).any() and (grn["sign"] == 1).any()
    table = read_trrust(vendored_grn_path("trrust_human"))
    real = set(zip(table["tf"], table["target"]))
    assert set(zip(grn["source"], grn["target"])) <= real
    # Every chosen gene touches an edge (connected subnetwork; no isolated genes).
    assert set(grn["source"]) | set(grn["target"]) == set(default.var_names)


def test_default_dataset_is_sparse_with_every_type(default):
    zeros = 1 - default.layers["counts"].nnz / np.prod(default.shape)
    assert 0.4 < zeros < 0.8
    sizes = default.obs["cell_type"].value_counts()
    assert len(sizes) == 6 and sizes.min() >= 0.5 * default.n_obs / 6 * 0.8
    assert (np.asarray((default.layers["counts"] > 0).sum(axis=0)).ravel() > 0).all()  # no empty gene


def test_connected_genes_are_coexpressed(default):
    r = np.abs(np.nan_to_num(np.corrcoef(default.layers["truth"].T)))
    genes = default.var_names
    src, dst = (
        genes.get_indexer(default.uns["true_grn"]["source"]),
        genes.get_indexer(default.uns["true_grn"]["target"]),
    )
    i, j = np.random.default_rng(0).integers(0, len(genes), (2, 5000))
    keep = i != j
    assert r[src, dst].mean() > 1.5 * r[i[keep], j[keep]].mean()


def test_cell_types_are_learnable_but_not_given_away(default):
    y = default.obs["cell_type"].cat.codes.to_numpy()
    Xtr, Xte, ytr, yte = train_test_split(default.X.toarray(), y, test_size=0.3, random_state=0, stratify=y)
    # One BLAS thread: on a small, shared machine multithreaded lbfgs is ~100x slower, not faster.
    with threadpool_limits(1):
        acc = LogisticRegression(max_iter=300).fit(Xtr, ytr).score(Xte, yte)
    majority = np.bincount(yte).max() / len(yte)
    assert acc > majority + 0.4
    assert acc < 0.99  # room for methods to differ


def test_truth_is_the_signal_behind_x(default):
    X, truth = default.X.toarray(), default.layers["truth"]
    shuffled = np.random.default_rng(0).permutation(truth, axis=0)  # same genes, wrong cells
    r_true = np.corrcoef(truth.ravel(), X.ravel())[0, 1]
    r_shuffled = np.corrcoef(shuffled.ravel(), X.ravel())[0, 1]
    assert r_true > 0.7 and r_true > r_shuffled + 0.05
    # Within genes (where the gene's mean level no longer helps) truth still tracks X across cells.
    per_gene = [
        np.corrcoef(truth[:, g], X[:, g])[0, 1]
        for g in range(X.shape[1])
        if X[:, g].std() > 0 and truth[:, g].std() > 0
    ]
    assert np.median(per_gene) > 0.2


def test_rate_is_the_poisson_rate_behind_the_counts(default):
    """layers["rate"] (gamma draw x not dropped) is what the counts were drawn from: what both halves
    of a molecular cross-validation split share."""
    counts, rate = default.layers["counts"].toarray().astype(np.float64), default.layers["rate"].astype(np.float64)
    assert default.layers["rate"].dtype == np.float32 and rate.shape == default.shape and (rate >= 0).all()
    assert (rate == 0).mean() > 0.1 and not counts[rate == 0].any()  # dropout: rate 0, so count 0
    # counts ~ Poisson(rate): E[c - r] = 0 and E[(c - r)^2] = r, pooled over entries. With the mean
    # before the gamma draw the second ratio is far above 1; ignoring dropout, the first is negative.
    assert abs((counts - rate).sum() / rate.sum()) < 0.005
    assert ((counts - rate) ** 2).sum() / rate.sum() == pytest.approx(1.0, abs=0.03)
    # Pure Poisson (no gamma noise, no dropout): the rate is the truth times the library size.
    pure = simulate_grn_dataset(seed=1, dispersion=0.0, dropout=0.0, **SMALL)
    r = pure.layers["rate"].astype(np.float64)
    np.testing.assert_allclose(
        1e4 * r / r.sum(axis=1, keepdims=True), np.expm1(pure.layers["truth"].astype(np.float64)), rtol=1e-4
    )


def test_mouse_network():
    a = simulate_grn_dataset(network="trrust_mouse", seed=0, **SMALL)
    assert a.var_names.str.match(r"^[A-Z][a-z0-9]").mean() > 0.9  # mouse symbols are capitalised


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_genes=5000), "largest connected component"),
        (dict(network="yeast"), "unknown network"),
        (dict(n_cell_types=1), "n_cell_types"),
        (dict(n_cells=0), "n_cells"),
        (dict(dispersion=-0.1), "dispersion"),
        (dict(dropout=float("nan")), "dropout"),
        (dict(n_genes=2, n_cell_types=6), "distinct programs"),
    ],
)
def test_invalid_parameters(kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate_grn_dataset(**kwargs)
