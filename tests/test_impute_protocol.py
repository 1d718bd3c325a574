"""The imputation protocol: masks, the fold loop, scoring, and the registered imputers."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench.data.contract import log_normalize
from scfmbench.impute import IMPUTERS, fold_adata, get_imputer, make_masks, read_masked, run_imputer, score_imputation, score_main, write_masks
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
    score_main(tmp_path / "p.npz", heldout, tmp_path / "metrics.csv", dataset="toy", method="none", seed=0, benchmark=bench)
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
        run_imputer(get_imputer(name), masked, tmp_path / f"{name}.npz", seed=0, params={"knn": 5} if name == "magic" else {}, name=name)
        scores[name] = score_imputation(tmp_path / f"{name}.npz", heldout)
    assert scores["magic"]["mse_truth"] < 0.5 * scores["none"]["mse_truth"]
    assert scores["magic"]["mse"] < scores["none"]["mse"]
    assert scores["magic"]["pearson_truth"] > 0.5
