import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import make_raw

from scfmbench import InputError
from scfmbench._io import write_h5ad
from scfmbench.data.contract import check_counts, check_prepared, log_normalize, read_prepared, require_labels
from scfmbench.data.loaders import load_dataset, load_h5ad, load_pbmc68k
from scfmbench.data.prepare import prepare_dataset
from scfmbench.data.splits import assign_splits, stratified_holdout


def test_log_normalize_matches_hand_computation():
    counts = sp.csr_matrix(np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 2.0]]))
    out = log_normalize(counts).toarray()
    expected = np.array([[np.log1p(2500), np.log1p(7500), 0], [0, 0, 0], [np.log1p(5000), 0, np.log1p(5000)]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_log_normalize_matches_scanpy():
    import scanpy as sc

    raw = make_raw()
    ref = raw.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    np.testing.assert_allclose(log_normalize(raw.layers["counts"]).toarray(), ref.X.toarray(), rtol=1e-5)


@pytest.mark.parametrize(
    "values, message",
    [
        ([1.0, -2.0], "negative"),
        ([1.0, np.nan], "non-finite"),
        ([1.0, np.inf], "non-finite"),
        ([1.5, 2.0], "non-integer"),
    ],
)
def test_bad_counts_are_clear_errors(values, message):
    with pytest.raises(InputError, match=message):
        check_counts(np.array([values]))


def test_prepared_contract_holds(prepared):
    check_prepared(prepared)
    assert set(prepared.obs["split"]) == {"train", "valid", "test"}
    prov = prepared.uns["provenance"]
    assert prov["seed"] == 0 and "torch" in prov["versions"] and prov["split"]["valid_fraction"] == 0.25


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda a: a.layers.pop("counts"), "counts"),
        (lambda a: a.obs.__setitem__("split", "other"), "allowed are"),
        (lambda a: a.obs.__setitem__("split", "train"), "0 test cells"),
        (lambda a: setattr(a, "X", a.X * 2), "log1p"),
        (lambda a: a.uns.pop("provenance"), "provenance"),
    ],
)
def test_contract_violations_are_named(prepared, break_it, message):
    break_it(prepared)
    with pytest.raises(InputError, match=message):
        check_prepared(prepared, where="x.h5ad")


def test_labels_are_checked_by_the_task_that_uses_them(prepared):
    check_prepared(prepared.copy())  # labels are optional in the contract ...
    unlabelled = prepared.copy()
    del unlabelled.obs["cell_type"]
    check_prepared(unlabelled)
    with pytest.raises(
        InputError, match="no cell types .*but annotation needs them"
    ):  # ... a task that needs them says so
        require_labels(unlabelled, task="annotation", where="x.h5ad")
    prepared.obs["cell_type"] = "one"
    with pytest.raises(InputError, match="annotation needs at least two classes"):
        require_labels(prepared, task="annotation", where="x.h5ad")


def test_read_prepared_names_the_file(prepared, tmp_path):
    prepared.obs["split"] = "train"
    prepared.obs["cell_type"] = "a"
    path = tmp_path / "p.h5ad"
    write_h5ad(prepared, path)
    with pytest.raises(InputError, match=str(path)):
        read_prepared(path)


def test_splits_are_stratified_seeded_and_disjoint():
    labels = np.repeat(["a", "b", "c"], [100, 40, 20])
    s0 = assign_splits(labels, seed=0, test_fraction=0.2, valid_fraction=0.25)
    s0b = assign_splits(labels, seed=0, test_fraction=0.2, valid_fraction=0.25)
    s1 = assign_splits(labels, seed=1, test_fraction=0.2, valid_fraction=0.25)
    np.testing.assert_array_equal(s0, s0b)
    assert not np.array_equal(s0, s1)
    # The test split is fixed across repeat seeds; validation changes.
    np.testing.assert_array_equal(s0 == "test", s1 == "test")
    assert not np.array_equal(s0 == "valid", s1 == "valid")
    # Stratified: each class's test count is round(0.2 n), its validation count round(0.25 * rest).
    for cls, n in (("a", 100), ("b", 40), ("c", 20)):
        in_cls = labels == cls
        assert (s0[in_cls] == "test").sum() == round(0.2 * n)
        assert (s0[in_cls] == "valid").sum() == round(0.25 * (n - round(0.2 * n)))
    # Disjoint and complete: every cell in exactly one split.
    assert set(s0) == {"train", "valid", "test"}


def test_singleton_class_stays_in_train():
    labels = np.array(["a"] * 10 + ["rare"])
    held = stratified_holdout(labels, 0.5, np.random.default_rng(0))
    assert not held[-1] and held[:10].sum() == 5


def test_predefined_split_and_few_shot():
    labels = np.repeat(["a", "b"], 50)
    predefined = np.where(np.arange(100) % 5 == 0, "test", "train")
    split = assign_splits(labels, predefined=predefined, train_fraction=0.5, seed=3)
    np.testing.assert_array_equal(split == "test", predefined == "test")
    assert (split == "unused").sum() == 40  # half of the 80 non-test cells
    assert (split == "valid").sum() == 10  # 25% of the 40 kept


def test_prepare_drops_few_shot_cells_and_keeps_contract():
    prepared = prepare_dataset(make_raw(n_cells=120), seed=0, train_fraction=0.5)
    check_prepared(prepared)
    assert prepared.n_obs < 120


def test_fewer_than_two_classes_in_train_is_an_error():
    raw = make_raw(n_cells=60)
    raw.obs["cell_type"] = "only"
    with pytest.raises(InputError, match="at least two classes"):
        prepare_dataset(raw, seed=0)


def test_pbmc68k_counts_recovered():
    raw = load_pbmc68k()
    assert raw.shape == (700, 765)
    check_counts(raw.layers["counts"])
    assert raw.obs["cell_type"].nunique() == 10
    # The bundled .raw.X is log1p(counts / n_counts * 1e4) to 3 decimals, n_counts being the library
    # size before the panel was cut to 765 genes: the recovered counts reproduce it.
    import scanpy as sc

    bundled = sc.datasets.pbmc68k_reduced()
    raw_x = bundled.raw.X.toarray() if sp.issparse(bundled.raw.X) else bundled.raw.X
    again = np.log1p(raw.layers["counts"].toarray() / bundled.obs["n_counts"].to_numpy()[:, None] * 1e4)
    assert np.abs(again - raw_x).max() < 0.01


def _user_file(tmp_path, **obs):
    counts = sp.csr_matrix(np.random.default_rng(0).poisson(3, (30, 8)).astype(np.float32))
    a = ad.AnnData(
        X=counts,
        obs=pd.DataFrame({"celltype": np.repeat(["x", "y", "z"], 10), **obs}, index=[f"c{i}" for i in range(30)]),
        var=pd.DataFrame(index=[f"g{i}" for i in range(8)]),
    )
    path = tmp_path / "user.h5ad"
    a.write_h5ad(path)
    return path


def test_bring_your_own_h5ad(tmp_path):
    path = _user_file(tmp_path, part=np.where(np.arange(30) % 3 == 0, "test", "train"))
    raw = load_dataset(
        "mine",
        {"source": "h5ad", "path": str(path), "label_column": "celltype", "split_column": "part", "counts_layer": "X"},
    )
    assert raw.uns["provenance"]["inputs_sha256"]["user.h5ad"]
    prepared = prepare_dataset(raw, seed=0)
    assert ((prepared.obs["split"] == "test").to_numpy() == (np.arange(30) % 3 == 0)).all()


def test_missing_label_column_lists_columns(tmp_path):
    path = _user_file(tmp_path)
    with pytest.raises(InputError) as err:
        load_h5ad(path, label_column="cell_type")
    assert "'cell_type' not in obs" in str(err.value) and "['celltype']" in str(err.value)


def test_normalized_data_instead_of_counts_is_refused(tmp_path):
    path = _user_file(tmp_path)
    a = ad.read_h5ad(path)
    a.X = a.X * 0.37
    a.write_h5ad(path)
    with pytest.raises(InputError, match="non-integer"):
        load_h5ad(path, label_column="celltype")
