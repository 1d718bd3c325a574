"""The imputation protocols (masking; molecular cross-validation), the oracle controls, scoring, and
the registered imputers."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench.data.contract import log_normalize
from scfmbench.data.synthetic import simulate_grn_dataset
from scfmbench.impute import (
    IMPUTERS,
    fold_adata,
    get_imputer,
    make_masks,
    make_mcv,
    perfect_main,
    read_masked,
    run_imputer,
    score_imputation,
    score_main,
    score_mcv,
    split_molecules,
    true_rate_main,
    write_masks,
    write_mcv,
)
from scfmbench.impute.base import write_npz
from scfmbench.impute.mcv import (
    _renormalize_log,
    convert_exp_log1p,
    convert_exp_sqrt,
    expected_poisson,
    normalize_log,
    poisson_loss,
)
from scfmbench.report.quality import CONTROL_CHECKS, MCV_LOSSES
from scfmbench.report.tables import higher_is_better
from scfmbench.results import METRIC_COLUMNS

N_TYPES, CELLS_PER_TYPE, N_GENES = 3, 30, 40


def _build() -> ad.AnnData:
    """Three cell types with distinct expression profiles; counts are Poisson around them."""
    rng = np.random.default_rng(0)
    profiles = rng.gamma(0.5, 1.0, size=(N_TYPES, N_GENES)) + 0.05
    profiles /= profiles.sum(axis=1, keepdims=True)
    types = np.repeat(np.arange(N_TYPES), CELLS_PER_TYPE)
    lib = rng.integers(300, 3000, size=len(types))
    counts = rng.poisson(lib[:, None] * profiles[types]).astype(np.float32)
    counts = sp.csr_matrix(counts)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([f"t{t}" for t in types]),
            "split": pd.Categorical(rng.choice(["train", "valid", "test"], size=len(types))),
        },
        index=[f"c{i}" for i in range(len(types))],
    )
    adata = ad.AnnData(X=log_normalize(counts), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(N_GENES)]))
    adata.layers["counts"] = counts
    adata.layers["truth"] = np.log1p(1e4 * profiles[types]).astype(np.float32)
    adata.layers["rate"] = (lib[:, None] * profiles[types]).astype(np.float32)  # pure Poisson: the truth x library
    return adata


_ADATA = _build()


@pytest.fixture
def adata() -> ad.AnnData:
    return _ADATA.copy()


@pytest.fixture
def files(adata, tmp_path):
    masked, heldout = tmp_path / "masked.h5ad", tmp_path / "heldout.npz"
    write_masks(adata, masked, heldout, seed=0, n_folds=5)
    return masked, heldout


def _dense(m) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


# ----------------------------------------------------------------------------- masks


def test_folds_partition_each_cells_nonzeros(adata):
    masked, held = make_masks(adata, seed=3, n_folds=5)
    row, col, fold = held["row"], held["col"], held["fold"]
    assert np.all(np.diff(fold) >= 0)  # fold-major order
    assert len(set(zip(row.tolist(), col.tolist()))) == len(row)  # each entry hidden once: disjoint
    counts = _dense(adata.layers["counts"])
    for i in range(adata.n_obs):
        mine = row == i
        assert sorted(col[mine].tolist()) == np.flatnonzero(counts[i]).tolist()  # complete
        sizes = np.bincount(fold[mine], minlength=5)
        assert sizes.max() - sizes.min() <= 1  # interleaved perm[f::5]
    assert masked.uns["imputation"]["n_masked"] == len(row) == int((counts > 0).sum())


def test_min_library_size_filters_and_errors_clearly(adata):
    lib = _dense(adata.layers["counts"]).sum(axis=1)
    thr = float(np.median(lib))
    masked, held = make_masks(adata, seed=0, min_library_size=thr)
    assert list(masked.obs_names) == list(adata.obs_names[lib >= thr])
    assert masked.uns["imputation"]["n_cells"] == int((lib >= thr).sum()) < adata.n_obs
    np.testing.assert_allclose(held["observed"], _dense(adata.X)[lib >= thr][held["row"], held["col"]])
    with pytest.raises(InputError, match=rf"min_library_size=1e\+06.*largest library size is {lib.max():g}"):
        make_masks(adata, seed=0, min_library_size=1e6)


def test_masked_layers_hide_exactly_the_fold_entries(adata):
    masked, held = make_masks(adata, seed=1, n_folds=4)
    x, counts = _dense(adata.X), _dense(adata.layers["counts"])
    assert masked.X is None and "truth" not in masked.layers
    assert set(masked.obs.columns) == {"cell_type", "split"}
    for f in range(4):
        sel = held["fold"] == f
        ex, ec = x.copy(), counts.copy()
        ex[held["row"][sel], held["col"][sel]] = 0
        ec[held["row"][sel], held["col"][sel]] = 0
        xf, cf = masked.layers[f"X_fold{f}"], masked.layers[f"counts_fold{f}"]
        assert sp.isspmatrix_csr(xf) and xf.dtype == np.float32 and np.all(xf.data != 0)
        np.testing.assert_array_equal(xf.toarray(), ex)
        np.testing.assert_array_equal(cf.toarray(), ec)
    np.testing.assert_array_equal(held["observed"], x[held["row"], held["col"]])
    np.testing.assert_array_equal(held["truth"], adata.layers["truth"][held["row"], held["col"]])


def test_same_seed_same_masks_other_seed_other_masks(adata):
    _, a = make_masks(adata, seed=7)
    _, b = make_masks(adata, seed=7)
    _, c = make_masks(adata, seed=8)
    for k in ("row", "col", "fold"):
        np.testing.assert_array_equal(a[k], b[k])
    assert str(a["mask_sha256"]) == str(b["mask_sha256"]) != str(c["mask_sha256"])
    assert not (np.array_equal(a["row"], c["row"]) and np.array_equal(a["col"], c["col"]))


def test_bad_n_folds_is_an_input_error(adata):
    with pytest.raises(InputError, match="n_folds"):
        make_masks(adata, seed=0, n_folds=1)


def test_write_masks_round_trip_without_npz_suffix(adata, tmp_path):
    write_masks(adata, tmp_path / "m.h5ad", tmp_path / "heldout", seed=0)  # np.savez would append .npz
    assert (tmp_path / "heldout").exists() and not (tmp_path / "heldout.npz").exists()
    masked = read_masked(tmp_path / "m.h5ad")
    assert masked.shape == adata.shape and masked.uns["imputation"]["n_folds"] == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


# ----------------------------------------------------------------------------- running and scoring


def test_oracle_scores_perfectly(adata, files, tmp_path):
    masked, heldout = files
    x = _dense(adata.X)
    run_imputer(lambda a, *, seed: x, masked, tmp_path / "p.npz", seed=0, name="oracle")
    s = score_imputation(tmp_path / "p.npz", heldout)
    assert s["mse"] == pytest.approx(0, abs=1e-12) and s["pearson"] == pytest.approx(1)


def test_none_scores_mean_square_and_nan_pearson(files, tmp_path):
    masked, heldout = files
    run_imputer(get_imputer("none"), masked, tmp_path / "p.npz", seed=0, name="none")
    s = score_imputation(tmp_path / "p.npz", heldout)
    held = np.load(heldout)
    assert s["mse"] == pytest.approx(float(np.mean(held["observed"].astype(np.float64) ** 2)))
    assert s["mse_truth"] == pytest.approx(float(np.mean(held["truth"].astype(np.float64) ** 2)))
    assert np.isnan(s["pearson"]) and np.isnan(s["pearson_truth"])


def test_scores_match_numpy(files, tmp_path):
    masked, heldout = files
    rng = np.random.default_rng(0)

    def noisy(a, *, seed):
        return rng.uniform(0, 5, size=a.shape)

    run_imputer(noisy, masked, tmp_path / "p.npz", seed=0)
    v = np.load(tmp_path / "p.npz")["values"].astype(np.float64)
    held = np.load(heldout)
    for target, suffix in ((held["observed"], ""), (held["truth"], "_truth")):
        t = target.astype(np.float64)
        s = score_imputation(tmp_path / "p.npz", heldout)
        assert s["mse" + suffix] == pytest.approx(np.mean((v - t) ** 2))
        assert s["pearson" + suffix] == pytest.approx(np.corrcoef(v, t)[0, 1])


def test_imputer_sees_only_the_masked_fold(adata, files, tmp_path):
    masked, heldout = files
    held = np.load(heldout)
    seen = []

    def spy(a, *, seed):
        assert set(a.layers) == {"counts"} and not a.uns and not a.obsm
        f = len(seen)
        sel = held["fold"] == f
        assert np.all(_dense(a.X)[held["row"][sel], held["col"][sel]] == 0)
        assert np.all(_dense(a.layers["counts"])[held["row"][sel], held["col"][sel]] == 0)
        seen.append(seed)
        return np.zeros(a.shape)

    run_imputer(spy, masked, tmp_path / "p.npz", seed=11)
    assert seen == [11] * 5


def test_negatives_are_clipped(files, tmp_path):
    masked, _ = files
    v = run_imputer(lambda a, *, seed: -np.ones(a.shape), masked, tmp_path / "p.npz", seed=0)
    assert np.all(v == 0)


@pytest.mark.parametrize(
    ("out", "match"),
    [
        (lambda s: np.zeros((s[0], s[1] - 1)), "shape"),
        (lambda s: sp.csr_matrix(s), "sparse"),
        (lambda s: np.full(s, np.nan), "non-finite"),
    ],
)
def test_bad_imputer_output_is_an_input_error(files, tmp_path, out, match):
    masked, _ = files
    with pytest.raises(InputError, match=rf"'broken'.*{match}"):
        run_imputer(lambda a, *, seed: out(a.shape), masked, tmp_path / "p.npz", seed=0, name="broken")
    assert not (tmp_path / "p.npz").exists()


def test_unknown_method_and_bad_params_are_input_errors(files, tmp_path):
    masked, _ = files
    with pytest.raises(InputError, match="unknown imputation method 'nope'.*magic"):
        get_imputer("nope")
    with pytest.raises(InputError, match=r"'magic'.*knnn.*accepts \['knn'"):
        run_imputer(get_imputer("magic"), masked, tmp_path / "p.npz", seed=0, params={"knnn": 3}, name="magic")


def test_predictions_on_other_masks_are_refused(adata, files, tmp_path):
    masked, _ = files
    write_masks(adata, tmp_path / "m2.h5ad", tmp_path / "h2.npz", seed=1)
    run_imputer(get_imputer("none"), masked, tmp_path / "p.npz", seed=0)
    with pytest.raises(InputError, match="other masks"):
        score_imputation(tmp_path / "p.npz", tmp_path / "h2.npz")


def test_score_main_writes_a_metrics_record(files, tmp_path):
    masked, heldout = files
    run_imputer(get_imputer("none"), masked, tmp_path / "p.npz", seed=0)
    bench = tmp_path / "bench.tsv"
    bench.write_text("s\th:m:s\tmax_rss\n1.5\t0:00:01\t123.4\n")
    score_main(
        tmp_path / "p.npz", heldout, tmp_path / "metrics.csv", dataset="toy", method="none", seed=0, benchmark=bench
    )
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert list(df.columns) == METRIC_COLUMNS
    assert set(df.metric) == {"mse", "pearson", "mse_truth", "pearson_truth"}
    assert (df.task == "imputation").all() and (df.runtime_s == 1.5).all() and (df.peak_mem_mb == 123.4).all()


# ----------------------------------------------------------------------------- registered imputers


@pytest.mark.parametrize("name", sorted(IMPUTERS))
def test_every_registered_imputer_runs_on_tiny_data(adata, name):
    masked, _ = make_masks(adata, seed=0)
    out = get_imputer(name)(fold_adata(masked, 0), seed=0)
    assert isinstance(out, np.ndarray) and out.shape == masked.shape and np.isfinite(out).all()


def test_magic_beats_none_against_truth(files, tmp_path):
    masked, heldout = files
    scores = {}
    for name in ("none", "magic"):
        run_imputer(
            get_imputer(name),
            masked,
            tmp_path / f"{name}.npz",
            seed=0,
            params={"knn": 5} if name == "magic" else {},
            name=name,
        )
        scores[name] = score_imputation(tmp_path / f"{name}.npz", heldout)
    assert scores["magic"]["mse_truth"] < 0.5 * scores["none"]["mse_truth"]
    assert scores["magic"]["mse"] < scores["none"]["mse"]
    assert scores["magic"]["pearson_truth"] > 0.5


# ----------------------------------------------------------------------------- the perfect control


def test_perfect_masking_is_the_truth_at_the_hidden_entries(files, tmp_path):
    masked, heldout = files
    values = perfect_main(heldout, tmp_path / "p.npz", seed=3)
    held = np.load(heldout)
    np.testing.assert_array_equal(values, held["truth"])
    s = score_imputation(tmp_path / "p.npz", heldout)
    assert s["mse_truth"] == 0 and s["pearson_truth"] == pytest.approx(1)
    # observed hidden entries are non-zero by selection, so the truth is no ceiling on 'mse'
    assert s["mse"] == pytest.approx(float(np.mean((held["truth"].astype(np.float64) - held["observed"]) ** 2)))


def test_perfect_needs_a_truth(adata, tmp_path):
    del adata.layers["truth"]
    write_masks(adata, tmp_path / "m.h5ad", tmp_path / "h.npz", seed=0)
    write_mcv(adata, tmp_path / "t.h5ad", tmp_path / "t.npz", seed=0)
    for held in ("h.npz", "t.npz"):
        with pytest.raises(InputError, match="truth.*perfect|perfect.*truth"):
            perfect_main(tmp_path / held, tmp_path / "p.npz", seed=0)


# ----------------------------------------------------------------------------- molecular cross-validation


def test_split_molecules_is_binomial_thinning(adata):
    counts = adata.layers["counts"]
    train, test = split_molecules(counts, train_fraction=0.9, seed=0)
    np.testing.assert_array_equal((train + test).toarray(), counts.toarray())
    assert train.min() >= 0 and test.min() >= 0 and not (train.data == 0).any() and not (test.data == 0).any()
    n, k = counts.sum(), train.sum()
    assert abs(k - 0.9 * n) < 4 * np.sqrt(n * 0.9 * 0.1)  # Binomial(n, 0.9) total
    again, _ = split_molecules(counts, train_fraction=0.9, seed=0)
    other, _ = split_molecules(counts, train_fraction=0.9, seed=1)
    assert (again != train).nnz == 0 and (other != train).nnz > 0
    with pytest.raises(InputError, match="integers"):
        split_molecules(counts * 0.5, seed=0)


def test_make_mcv_contents(adata):
    adata.layers["counts"][:, 5] = 0  # a gene with no molecule cannot be in the train part
    adata.layers["counts"].eliminate_zeros()
    adata.X = log_normalize(adata.layers["counts"])
    lib = np.asarray(adata.layers["counts"].sum(axis=1)).ravel()
    threshold = float(np.median(lib))
    train, held = make_mcv(adata, seed=0, min_library_size=threshold)
    assert train.n_obs == int((lib >= threshold).sum()) and "g5" not in train.var_names
    np.testing.assert_allclose(train.X.toarray(), log_normalize(train.layers["counts"]).toarray())
    test = sp.csr_matrix((held["test_data"], held["test_indices"], held["test_indptr"]), shape=tuple(held["shape"]))
    kept = adata[lib >= threshold, train.var_names]
    np.testing.assert_array_equal((train.layers["counts"] + test).toarray(), kept.layers["counts"].toarray())
    assert float(held["train_sum"]) == train.layers["counts"].sum() and float(held["test_sum"]) == test.sum()
    np.testing.assert_allclose(held["train_totals"], np.asarray(train.layers["counts"].sum(axis=1)).ravel())
    # truth: re-normalized over the kept genes, so it is on the same scale as the scored predictions
    np.testing.assert_allclose(np.expm1(held["truth"].astype(np.float64)).sum(axis=1), 1e4, rtol=1e-4)
    np.testing.assert_array_equal(held["rate"], kept.layers["rate"])  # the rate in counts, not re-normalized
    assert float(held["train_fraction"]) == 0.9
    assert set(train.uns["mcv"]) >= {"seed", "train_fraction", "split_sha256", "n_cells", "n_genes"}


def _write_test(path, test, train_totals, train_sum, truth=None, sha="x", train_fraction=0.5):
    test = sp.csr_matrix(test, dtype=np.float32)
    arrays = dict(
        test_data=test.data,
        test_indices=test.indices,
        test_indptr=test.indptr,
        shape=np.array(test.shape),
        train_totals=np.asarray(train_totals, float),
        train_sum=np.array(float(train_sum)),
        test_sum=np.array(float(test.sum())),
        split_sha256=np.array(sha),
        train_fraction=np.array(float(train_fraction)),
    )
    if truth is not None:
        arrays["truth"] = np.asarray(truth, np.float32)
    write_npz(path, **arrays)


def test_score_mcv_hand_computed(tmp_path):
    # One cell, two genes: prediction proportions 0.3 / 0.7; train library 10 of train_sum 10; test
    # counts [2, 0] (test_sum 2). Split fraction 1/2, where Batson's conversion is the identity.
    _write_test(tmp_path / "t.npz", [[2, 0]], train_totals=[10], train_sum=10, train_fraction=0.5)
    write_npz(tmp_path / "p.npz", denoised=np.log1p(np.array([[3e3, 7e3]], np.float32)), split_sha256=np.array("x"))
    s = score_mcv(tmp_path / "p.npz", tmp_path / "t.npz")
    # Train-depth counts 3 and 7 against the test counts 2 and 0, on sqrt and log1p of the counts.
    assert s["mse_sqrt"] == pytest.approx(((np.sqrt(3) - np.sqrt(2)) ** 2 + 7) / 2, rel=1e-5)
    assert s["mse_log1p"] == pytest.approx(((np.log1p(3) - np.log1p(2)) ** 2 + np.log1p(7) ** 2) / 2, rel=1e-5)
    # openproblems' mse, on log1p(counts per 1e4): test -> [log1p(1e4), 0].
    assert s["mse_openproblems"] == pytest.approx(
        ((np.log1p(3e3) - np.log1p(1e4)) ** 2 + np.log1p(7e3) ** 2) / 2, rel=1e-5
    )
    # Poisson (Batson's poisson_nll_loss): scaled prediction 0.3 * 10 * 2/10 = 0.6 and 1.4
    assert s["poisson"] == pytest.approx(((0.6 - 2 * np.log(0.6 + 1e-6)) + 1.4) / 2, rel=1e-5)
    assert "mse_truth" not in s and s["pearson_sqrt"] == pytest.approx(
        -1.0
    )  # gene 2 up in the prediction, down in the test
    # At a 90/10 split the prediction is carried to the test depth first: smaller values.
    _write_test(tmp_path / "t9.npz", [[2, 0]], train_totals=[10], train_sum=10, train_fraction=0.9)
    s9 = score_mcv(tmp_path / "p.npz", tmp_path / "t9.npz")
    at_test = convert_exp_sqrt(np.sqrt([3.0, 7.0]), 0.9)
    assert at_test[1] < np.sqrt(7) / 2 and s9["mse_sqrt"] == pytest.approx(
        ((at_test[0] - np.sqrt(2)) ** 2 + at_test[1] ** 2) / 2, rel=1e-6
    )


def _expected(f, mean: float) -> float:
    """E[f(Y)], Y ~ Poisson(mean), summed by hand from the pmf (the definition Batson's series approximate)."""
    return sum(
        f(k) * math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1))
        for k in range(1, int(mean + 30 * math.sqrt(mean) + 60))
    )


def _converted(f, value: float, a: float, b: float) -> float:
    """Batson's conversion by hand: the lambda with E[f(Poisson(a lambda))] = value (bisection), then
    E[f(Poisson(b lambda))]."""
    lo, hi = 0.0, 1.0
    while _expected(f, a * hi) < value:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _expected(f, a * mid) < value else (lo, mid)
    return _expected(f, b * (lo + hi) / 2)


def test_depth_conversion_hand_computed():
    # E[sqrt(Poisson(1))] = e^-1 (1 + sqrt(2)/2 + sqrt(3)/6 + 2/24 + ...)
    assert _expected(math.sqrt, 1.0) == pytest.approx(0.7731926564, rel=1e-9)
    for f, convert in ((math.sqrt, convert_exp_sqrt), (math.log1p, convert_exp_log1p)):
        # The expectation at a train depth of 1 molecule (lambda = 1/0.9) is carried to lambda = 1/9.
        assert convert(np.array([_expected(f, 1.0)]), 0.9)[0] == pytest.approx(_expected(f, 1 / 9), rel=1e-4)
        # One train molecule (f(1)), as `none` predicts, and a deep entry (f(400)).
        for value in (f(1), f(400)):
            assert convert(np.array([value]), 0.9)[0] == pytest.approx(_converted(f, value, 0.9, 0.1), rel=1e-4)
        assert convert(np.array([0.0, -1.0]), 0.9).tolist() == [0.0, 0.0]  # no molecule; negatives set to 0
        np.testing.assert_allclose(convert(np.array([0.3, 2.0]), 0.5), [0.3, 2.0])  # equal depths: the identity
    # Back and forth is the identity.
    v = np.array([0.05, 0.8, 3.0, 25.0])
    np.testing.assert_allclose(convert_exp_sqrt(convert_exp_sqrt(v, 0.9), 0.1, 0.9), v, rtol=1e-4)
    assert expected_poisson(np.sqrt, np.array([1.0, 0.0]))[0] == pytest.approx(0.7731926564, rel=1e-9)


def test_score_mcv_matches_scanpy_and_sklearn(adata, tmp_path):
    """openproblems' mse metric: scanpy normalize_total(1e4) + log1p on both sides, sklearn MSE."""
    sc = pytest.importorskip("scanpy")
    from sklearn.metrics import mean_squared_error

    write_mcv(adata, tmp_path / "t.h5ad", tmp_path / "t.npz", seed=0)
    rng = np.random.default_rng(0)
    run_imputer(
        lambda a, *, seed: rng.uniform(0, 4, a.shape), tmp_path / "t.h5ad", tmp_path / "p.npz", seed=0, name="noise"
    )
    s = score_mcv(tmp_path / "p.npz", tmp_path / "t.npz")
    held = np.load(tmp_path / "t.npz")
    test = ad.AnnData(
        sp.csr_matrix(
            (held["test_data"], held["test_indices"], held["test_indptr"]), shape=tuple(held["shape"])
        ).toarray()
    )
    den = ad.AnnData(np.expm1(np.load(tmp_path / "p.npz")["denoised"].astype(np.float64)))
    for a in (test, den):
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
    assert s["mse_openproblems"] == pytest.approx(mean_squared_error(test.X, den.X), rel=1e-6)


def test_mcv_imputer_sees_only_the_train_part(adata, tmp_path):
    write_mcv(adata, tmp_path / "t.h5ad", tmp_path / "t.npz", seed=0)
    seen = []

    def spy(a, *, seed):
        assert set(a.layers) == {"counts"} and not a.uns and not a.obsm and seed == 4
        seen.append(a.layers["counts"].sum())
        np.testing.assert_allclose(a.X.toarray(), log_normalize(a.layers["counts"]).toarray())
        return a.X.toarray()

    out = run_imputer(spy, tmp_path / "t.h5ad", tmp_path / "p.npz", seed=4, name="spy")
    assert len(seen) == 1 and seen[0] == float(np.load(tmp_path / "t.npz")["train_sum"])  # one call, train part only
    assert out.shape == tuple(np.load(tmp_path / "t.npz")["shape"])


def test_mcv_controls_bracket_magic(adata, tmp_path):
    """On pure-Poisson data (the truth is the rate): the rate ceiling beats every method on every MCV
    loss, perfect is exact on the truth, MAGIC beats the no-denoising control on the truth."""
    write_mcv(adata, tmp_path / "t.h5ad", tmp_path / "t.npz", seed=0)
    perfect_main(tmp_path / "t.npz", tmp_path / "perfect.npz", seed=0)
    true_rate_main(tmp_path / "t.npz", tmp_path / "true_rate.npz", seed=0)
    for name, params in (("none", {}), ("magic", {"knn": 5})):
        run_imputer(get_imputer(name), tmp_path / "t.h5ad", tmp_path / f"{name}.npz", seed=0, params=params, name=name)
    s = {n: score_mcv(tmp_path / f"{n}.npz", tmp_path / "t.npz") for n in ("none", "magic", "perfect", "true_rate")}
    assert s["perfect"]["mse_truth"] == pytest.approx(0, abs=1e-10) and s["perfect"]["pearson_truth"] == pytest.approx(
        1
    )
    for metric in MCV_LOSSES:
        assert _beats(metric, s["true_rate"][metric], s["none"][metric]) and _beats(
            metric, s["true_rate"][metric], s["magic"][metric]
        ), (metric, s)
    # The truth has the rate's proportions here: the same Poisson loss; on the MSE scales the truth is
    # read as an estimate (transformed like the data), the rate as a Poisson mean, the best there is.
    assert s["perfect"]["poisson"] == pytest.approx(s["true_rate"]["poisson"], rel=1e-6)
    assert all(_beats(m, s["true_rate"][m], s["perfect"][m]) for m in ("mse_sqrt", "mse_log1p", "pearson_sqrt")), s
    assert s["magic"]["mse_truth"] < s["none"]["mse_truth"]
    # none returns the train part as it is: Batson's identity denoiser, each train count k carried to
    # the test depth by hand (_converted); openproblems' MSE of the normalized train vs test parts.
    train = ad.read_h5ad(tmp_path / "t.h5ad")
    held = np.load(tmp_path / "t.npz")
    test = sp.csr_matrix(
        (held["test_data"], held["test_indices"], held["test_indptr"]), shape=tuple(held["shape"])
    ).toarray()
    k = train.layers["counts"].toarray()
    by_hand = {v: _converted(math.sqrt, math.sqrt(v), 0.9, 0.1) for v in np.unique(k)}
    assert s["none"]["mse_sqrt"] == pytest.approx(
        np.mean((np.vectorize(by_hand.get)(k) - np.sqrt(test)) ** 2), rel=1e-4
    )
    assert s["none"]["mse_openproblems"] == pytest.approx(
        np.mean((normalize_log(k) - normalize_log(test)) ** 2), rel=1e-5
    )
    scaled = k * float(held["test_sum"]) / float(held["train_sum"])
    assert s["none"]["poisson"] == pytest.approx(poisson_loss(scaled, test), rel=1e-5)


def _pure_poisson(mean_library_size: float):
    return simulate_grn_dataset(
        n_cells=400,
        n_genes=80,
        n_cell_types=4,
        seed=0,
        dispersion=0.0,
        dropout=0.0,
        mean_library_size=mean_library_size,
    )


def _mcv_scores(adata, tmp_path, methods=("none", "perfect", "true_rate")):
    write_mcv(adata, tmp_path / "t.h5ad", tmp_path / "t.npz", seed=0)
    runners = {"perfect": perfect_main, "true_rate": true_rate_main}
    for name in methods:
        if name in runners:
            runners[name](tmp_path / "t.npz", tmp_path / f"{name}.npz", seed=0)
        else:
            run_imputer(get_imputer(name), tmp_path / "t.h5ad", tmp_path / f"{name}.npz", seed=0, name=name)
    return {n: score_mcv(tmp_path / f"{n}.npz", tmp_path / "t.npz") for n in methods}


def _beats(metric: str, a: float, b: float) -> bool:
    return a > b if higher_is_better(metric) else a < b


@pytest.mark.parametrize("depth", [200.0, 2000.0])
def test_rate_ceiling_beats_none_on_pure_poisson_data(depth, tmp_path):
    """Truth = rate (no gamma noise, no dropout): the exact rate beats the undenoised train part on
    every MCV loss, at shallow and deep depth."""
    s = _mcv_scores(_pure_poisson(depth), tmp_path)
    for metric in MCV_LOSSES:
        assert _beats(metric, s["true_rate"][metric], s["none"][metric]), (depth, metric, s)


def test_openproblems_mse_is_no_mcv_loss_on_shallow_data(tmp_path):
    """openproblems' mse compares the 90% train part with the 10% test part unconverted: on pure-Poisson
    data at 200 counts per cell the exact rate (and the truth, the same here) loses to doing nothing,
    while every MCV loss ranks it first. So it must not be a floor, nor called an MCV loss."""
    s = _mcv_scores(_pure_poisson(200.0), tmp_path)
    for oracle in ("true_rate", "perfect"):
        assert s[oracle]["mse_openproblems"] > s["none"]["mse_openproblems"], s
    assert s["true_rate"]["mse_sqrt"] < s["none"]["mse_sqrt"] and s["true_rate"]["mse_log1p"] < s["none"]["mse_log1p"]
    assert "mse_openproblems" not in {m for c in CONTROL_CHECKS["denoising"] for m in c.metrics}


def test_rate_ceiling_beats_none_on_the_default_simulation(tmp_path):
    """The default synthetic dataset (gamma-Poisson, dropout): MCV estimates the shared rate, which
    beats the undenoised train part on every MCV loss; the noise-free truth does not have to."""
    s = _mcv_scores(simulate_grn_dataset(seed=0), tmp_path)
    for metric in MCV_LOSSES:
        assert _beats(metric, s["true_rate"][metric], s["none"][metric]), (metric, s)
        assert _beats(metric, s["true_rate"][metric], s["perfect"][metric]), (metric, s)


def test_true_rate_needs_an_mcv_split_with_a_rate(adata, tmp_path):
    write_masks(adata, tmp_path / "m.h5ad", tmp_path / "h.npz", seed=0)
    with pytest.raises(InputError, match="molecular cross-validation"):
        true_rate_main(tmp_path / "h.npz", tmp_path / "p.npz", seed=0)
    del adata.layers["rate"]
    write_mcv(adata, tmp_path / "t.h5ad", tmp_path / "t.npz", seed=0)
    with pytest.raises(InputError, match="rate.*true_rate"):
        true_rate_main(tmp_path / "t.npz", tmp_path / "p.npz", seed=0)


def test_mcv_refuses_predictions_on_another_split(adata, tmp_path):
    write_mcv(adata, tmp_path / "a.h5ad", tmp_path / "a.npz", seed=0)
    write_mcv(adata, tmp_path / "b.h5ad", tmp_path / "b.npz", seed=1)
    run_imputer(get_imputer("none"), tmp_path / "a.h5ad", tmp_path / "p.npz", seed=0, name="none")
    with pytest.raises(InputError, match="another MCV split"):
        score_mcv(tmp_path / "p.npz", tmp_path / "b.npz")


def test_score_main_denoising_record(adata, tmp_path):
    write_mcv(adata, tmp_path / "t.h5ad", tmp_path / "t.npz", seed=0)
    run_imputer(get_imputer("none"), tmp_path / "t.h5ad", tmp_path / "p.npz", seed=0, name="none")
    rec = score_main(
        tmp_path / "p.npz",
        tmp_path / "t.npz",
        tmp_path / "m.csv",
        task="denoising",
        dataset="toy",
        method="none",
        seed=0,
    )
    df = pd.read_csv(tmp_path / "m.csv")
    assert list(df.columns) == METRIC_COLUMNS and (df.task == "denoising").all()
    assert set(rec.metric) == {
        "mse_sqrt",
        "mse_log1p",
        "pearson_sqrt",
        "poisson",
        "mse_openproblems",
        "mse_truth",
        "pearson_truth",
    }
    with pytest.raises(InputError, match="task"):
        score_main(
            tmp_path / "p.npz",
            tmp_path / "t.npz",
            tmp_path / "m.csv",
            task="denoise",
            dataset="toy",
            method="none",
            seed=0,
        )


def test_renormalize_log_sums_to_target():
    x = np.log1p(np.array([[1.0, 3.0], [0.0, 0.0]]))
    out = _renormalize_log(x)
    np.testing.assert_allclose(np.expm1(out.astype(np.float64)), [[2500, 7500], [0, 0]], rtol=1e-5)


@pytest.mark.parametrize("protocol", ["masking", "mcv"])
def test_predictions_record_the_thread_count(adata, files, tmp_path, protocol):
    """Same seed, same numbers only at one thread count: each predictions.npz records it (issue 18).
    The 'none' imputer never imports torch (a fresh process, as a MAGIC job's); its record takes the
    job's OMP_NUM_THREADS, and writing the provenance does not load torch."""
    import json
    import os
    import subprocess
    import sys

    if protocol == "masking":
        inp = files[0]
    else:
        inp = tmp_path / "t.h5ad"
        write_mcv(adata, inp, tmp_path / "t.npz", seed=0)
    code = (
        "import sys; from scfmbench.impute import get_imputer, run_imputer; "
        f"run_imputer(get_imputer('none'), {str(inp)!r}, {str(tmp_path / 'p.npz')!r}, seed=7, name='none'); "
        "assert 'torch' not in sys.modules, 'provenance loaded torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "3"})
    with np.load(tmp_path / "p.npz") as z:
        prov = json.loads(str(z["provenance_json"]))
    assert prov["device"]["torch_threads"] == "3" and prov["seed"] == 7 and "numpy" in prov["versions"]
    # A job that uses torch records torch's own count.
    import torch

    from scfmbench.impute.base import run_record

    assert json.loads(str(run_record("x", 0, {})["provenance_json"]))["device"]["torch_threads"] == str(
        torch.get_num_threads()
    )


def test_dca_comparison_with_the_package(files, tmp_path, capsys):
    """bench.dca --package-predictions scores both files the protocol's way, side by side."""
    from scfmbench.bench import dca as bench

    masked, heldout = files
    held = np.load(heldout)
    obs = held["observed"].astype(np.float64)
    # A stand-in for the package's predictions: the observed values shrunk by 10%.
    run_imputer(lambda a, *, seed: _dense(a.X), masked, tmp_path / "pkg.npz", seed=0, name="dca_original")
    with np.load(tmp_path / "pkg.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["values"] = (0.9 * obs).astype(np.float32)
    write_npz(tmp_path / "pkg.npz", **arrays)
    arrays["values"] = obs.astype(np.float32)
    write_npz(tmp_path / "port.npz", **arrays)
    rec = bench.main(
        [
            "--heldout",
            str(heldout),
            "--package-predictions",
            str(tmp_path / "pkg.npz"),
            "--port-predictions",
            str(tmp_path / "port.npz"),
        ]
    )
    assert rec["port"]["mse"] == pytest.approx(0, abs=1e-10)
    assert rec["package"]["mse"] == pytest.approx(np.mean((0.1 * obs) ** 2), rel=1e-5)
    assert rec["agreement"]["pearson"] == pytest.approx(1) and rec["agreement"]["n_entries"] == obs.size
    out = capsys.readouterr().out
    assert "port" in out and "package" in out and f"{rec['package']['mse']:.5f}" in out
    # Predictions made on other masks are refused.
    other_masked, other_held = tmp_path / "m2.h5ad", tmp_path / "h2.npz"
    write_masks(_ADATA, other_masked, other_held, seed=1, n_folds=5)
    with pytest.raises(InputError, match="other masks"):
        bench.main(
            [
                "--heldout",
                str(other_held),
                "--package-predictions",
                str(tmp_path / "pkg.npz"),
                "--port-predictions",
                str(tmp_path / "port.npz"),
            ]
        )
    with pytest.raises(SystemExit):
        bench.main(
            ["--heldout", str(heldout), "--package-predictions", str(tmp_path / "pkg.npz")]
        )  # neither --masked nor --port-predictions
