"""The perturbation task: synthetic truth, GEARS layout and DE rankings, the simulation split, GEARS'
metrics against hand-computed values, the predictor registry, the generator, bad-input errors."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench.perturbation.data import check_perturbation_data, condition_genes, gears_layout
from scfmbench.perturbation.split import SUBGROUPS, Split, make_split, pair_controls

SMALL = dict(
    n_genes=120,
    n_singles=16,
    n_combos=40,
    knockdown_fraction=0.2,
    cells_per_condition=20,
    n_control=120,
    n_truth_draws=50,
    seed=3,
)


@pytest.fixture(scope="module")
def small():
    from scfmbench.data.synthetic import simulate_perturbseq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gears_layout(simulate_perturbseq(**SMALL), cell_type="synthetic")


def _shift(adata, condition):
    i = list(np.asarray(adata.uns["true_shift_conditions"]).astype(str)).index(condition)
    return np.asarray(adata.uns["true_shift"])[i]


def _downstream(adata, gene):
    """Genes reachable from ``gene`` along the true network's edges (``gene`` excluded)."""
    grn = adata.uns["true_grn"]
    out, frontier = set(), {gene}
    while frontier:
        nxt = {t for s, t in zip(grn["source"], grn["target"]) if s in frontier} - out - {gene}
        out |= nxt
        frontier = nxt
    return out


# ---------------------------------------------------------------------------------------------
# synthetic truth


def test_null_perturbation_moves_only_its_own_gene(small):
    names = small.var_names.to_numpy()
    nulls = [
        c
        for c in small.uns["true_shift_conditions"]
        if c.endswith("+ctrl") and small.var.loc[condition_genes(c)[0], "n_targets"] == 0
    ]
    assert nulls, "the default simulation has null perturbations"
    for c in nulls:
        shift = _shift(small, c)
        own = names == condition_genes(c)[0]
        assert shift[own][0] < -0.01  # the gene itself goes down
        np.testing.assert_array_equal(shift[~own], 0.0)


def test_direct_targets_move_in_their_edge_sign(small):
    grn = pd.DataFrame({k: np.asarray(v) for k, v in small.uns["true_grn"].items()})
    knockouts = small.obs.loc[small.obs["perturbation_type"] == "knockout", "condition"].unique()
    checked = 0
    for c in knockouts:
        g = condition_genes(c)[0]
        down = _downstream(small, g)
        shift = pd.Series(_shift(small, c), index=small.var_names)
        for row in grn[grn["source"] == g].itertuples():
            others = set(grn.loc[grn["target"] == row.target, "source"]) - {g}
            if others & (down | {g}) or row.target in {g}:
                continue  # another path from g reaches the target: its sign is not the edge's alone
            assert np.sign(shift[row.target]) == -row.sign, (c, row.target)  # activity of g goes down
            checked += 1
    assert checked >= 5


def test_disjoint_perturbations_add_up(small):
    """A gene reached (through the network) by only one of a combo's two knockouts, or by neither,
    moves by exactly the sum of the two singles' shifts (the other's is 0 there); genes reached by
    both are where tanh saturation makes combos non-additive."""
    combos = [c for c in small.uns["true_shift_conditions"] if "ctrl" not in c]
    kinds = small.obs.drop_duplicates("condition").set_index("condition")["perturbation_type"]
    names = small.var_names.to_numpy()
    checked, gaps = 0, []
    for c in combos:
        a, b = condition_genes(c)
        if kinds.get(f"{a}+ctrl") != "knockout" or kinds.get(f"{b}+ctrl") != "knockout":
            continue
        da, db = _downstream(small, a) | {a}, _downstream(small, b) | {b}
        at_most_one = ~np.isin(names, list(da & db))
        total = _shift(small, f"{a}+ctrl") + _shift(small, f"{b}+ctrl")
        np.testing.assert_allclose(_shift(small, c)[at_most_one], total[at_most_one], atol=1e-12)
        checked += int(at_most_one.sum())
        gaps.append(np.abs(_shift(small, c) - total).max())
    assert checked >= 50
    assert max(gaps) > 0.05  # where both reach, combos are not additive


def test_simulation_is_seeded():
    from scfmbench.data.synthetic import simulate_perturbseq

    a, b = simulate_perturbseq(**SMALL), simulate_perturbseq(**SMALL)
    assert (a.X != b.X).nnz == 0 and (a.obs["condition"] == b.obs["condition"]).all()


# ---------------------------------------------------------------------------------------------
# GEARS layout and DE rankings


def test_gears_layout_fields(small):
    obs = small.obs
    assert set(obs.loc[obs["condition"] == "ctrl", "dose_val"]) == {"1"} and set(
        obs.loc[obs["condition"] != "ctrl", "dose_val"]
    ) == {"1+1"}
    assert (obs["control"] == (obs["condition"] == "ctrl").astype(int)).all()
    row = obs[obs["condition"] != "ctrl"].iloc[0]
    assert row["condition_name"] == f"synthetic_{row['condition']}_1+1"
    names = set(obs.loc[obs["condition"] != "ctrl", "condition_name"])
    for key in (
        "rank_genes_groups_cov_all",
        "top_non_dropout_de_20",
        "top_non_zero_de_20",
        "non_zeros_gene_idx",
        "non_dropout_gene_idx",
    ):
        assert set(small.uns[key]) == names
    check_perturbation_data(small)


def test_de_ranking_is_welch_t_test_against_control(small):
    """Independent reference: scipy's Welch t-test of one condition against the controls, ranked by |t|."""
    from scipy.stats import ttest_ind

    c = small.obs.loc[small.obs["condition"] != "ctrl", "condition"].iloc[0]
    X = small.X.toarray()
    t, _ = ttest_ind(
        X[(small.obs["condition"] == c).to_numpy()], X[(small.obs["condition"] == "ctrl").to_numpy()], equal_var=False
    )
    t = np.nan_to_num(t)
    expected = small.var_names.to_numpy()[np.argsort(-np.abs(t), kind="stable")][:10]
    name = f"synthetic_{c}_1+1"
    got = np.asarray(small.uns["rank_genes_groups_cov_all"][name])[:10]
    assert list(got) == list(expected)
    nd = set(small.uns["non_dropout_gene_idx"][name])
    idx = {g: i for i, g in enumerate(small.var_names)}
    top = [g for g in small.uns["rank_genes_groups_cov_all"][name] if idx[g] in nd][:20]
    assert list(small.uns["top_non_dropout_de_20"][name]) == top


# ---------------------------------------------------------------------------------------------
# split and pairing

HAND = [
    "ctrl",
    "A+ctrl",
    "B+ctrl",
    "C+ctrl",
    "D+ctrl",
    "E+ctrl",
    "F+ctrl",
    "G+ctrl",
    "H+ctrl",
    "A+B",
    "A+C",
    "B+C",
    "A+G",
    "G+H",
    "ctrl+B",
]


def test_split_disjoint_complete_and_ctrl_in_train():
    s = make_split(HAND, seed=1)
    assert set(s.split) == set(HAND)
    assert s.split["ctrl"] == "train"
    assert set(s.split.values()) <= {"train", "val", "test"}
    assert set(s.subgroup) == {c for c, v in s.split.items() if v != "train"}
    assert s.split["B+ctrl"] == s.split["ctrl+B"]  # both forms of a single go together


def test_split_deterministic_per_seed():
    assert make_split(HAND, seed=4).to_dict() == make_split(list(reversed(HAND)), seed=4).to_dict()
    assert len({tuple(sorted(make_split(HAND, seed=s).split.items())) for s in range(6)}) > 1


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_split_subgroups_by_hand(seed):
    """GEARS' draw redone by hand: 6 of the 8 genes by RandomState(seed), then the rules of get_simulation_split."""
    genes = np.array(list("ABCDEFGH"))
    train_genes = set(np.random.RandomState(seed).choice(genes, 6, replace=False))
    s = make_split(HAND, seed=seed)
    for c in HAND[1:]:
        gs = condition_genes(c)
        seen = sum(g in train_genes for g in gs)
        if len(gs) == 1:
            expected = "train/val" if seen else "unseen_single"
        else:
            expected = {0: "combo_seen0", 1: "combo_seen1", 2: "train/val/combo_seen2"}[seen]
        got = s.subgroup.get(c, "train") if s.split[c] == "test" else "train/val"
        if expected.startswith("train/val/"):
            assert got in ("train/val", "combo_seen2"), c
        else:
            assert got == expected, (c, seed, train_genes)
    seen2 = [c for c in HAND[1:] if len(condition_genes(c)) == 2 and set(condition_genes(c)) <= train_genes]
    assert sum(s.split[c] == "test" for c in seen2) == len(seen2) - int(len(seen2) * 0.75)


def test_split_roundtrip(tmp_path):
    s = make_split(HAND, seed=0)
    s.write(tmp_path / "split.json")
    assert Split.read(tmp_path / "split.json").to_dict() == s.to_dict()
    assert set(SUBGROUPS) >= set(s.subgroup.values())


def test_pairing_seeded_to_control_cells():
    cond = np.array(["ctrl", "A+ctrl", "ctrl", "A+B", "ctrl", "B+ctrl"] * 5)
    p = pair_controls(cond, seed=0)
    assert (cond[p] == "ctrl").all()
    assert (p[cond == "ctrl"] == np.flatnonzero(cond == "ctrl")).all()
    assert (p == pair_controls(cond, seed=0)).all() and not (p == pair_controls(cond, seed=1)).all()


# ---------------------------------------------------------------------------------------------
# bad input


def _tiny(conditions, genes=("A", "B", "C")):
    X = sp.csr_matrix(np.ones((len(conditions), len(genes))))
    return ad.AnnData(
        X=X,
        obs=pd.DataFrame({"condition": conditions}, index=[f"c{i}" for i in range(len(conditions))]),
        var=pd.DataFrame({"gene_name": list(genes)}, index=list(genes)),
    )


@pytest.mark.parametrize(
    "conditions, match",
    [
        (["ctrl", "A+ctrl", "A_B"], "'A_B' is not in GEARS form"),
        (["ctrl", "A+B+C"], "'A\\+B\\+C' is not in GEARS form"),
        (["A+ctrl", "B+ctrl"], "no control cells"),
        (["ctrl", "Z+ctrl"], "gene 'Z', which is not in var"),
    ],
)
def test_bad_input_names_the_condition_or_gene(conditions, match):
    with pytest.raises(InputError, match=match):
        check_perturbation_data(_tiny(conditions), uns=False)


# ---------------------------------------------------------------------------------------------
# metrics against hand-computed values


def test_condition_metrics_by_hand():
    from scfmbench.perturbation.metrics import condition_metrics

    # values = control + delta, the control not constant (so deltas and values differ)
    ctrl = np.array([1.0, 3.0, 0.0, 2.0])
    true = ctrl + np.array([1.0, 0.0, -1.0, 0.0])
    pred = ctrl + np.array([0.5, 0.0, 0.0, 0.5])
    m = condition_metrics(
        pred, true, ctrl, de=np.array([0, 2]), non_dropout=np.array([0, 1, 2]), non_zero=np.array([0, 1])
    )
    # all genes: mse (0.25 + 0 + 1 + 0.25) / 4; pred (1.5, 3, 0, 2.5), true (2, 3, -1, 2): means 1.75, 1.5,
    # centred pred (-.25, 1.25, -1.75, .75), true (.5, 1.5, -2.5, .5): sum of products
    # -.125 + 1.875 + 4.375 + .375 = 6.5, sums of squares 5.25 and 9 -> r = 6.5 / sqrt(5.25 * 9)
    assert m["mse"] == pytest.approx(0.375)
    assert m["pearson"] == pytest.approx(6.5 / np.sqrt(5.25 * 9.0))
    # DE genes 0 and 2: pred (1.5, 0) vs true (2, -1): two points, r = 1; mse (0.25 + 1) / 2
    assert m["pearson_de"] == pytest.approx(1.0) and m["mse_de"] == pytest.approx(0.625)
    # deltas: pred (0.5, 0, 0, 0.5), true (1, 0, -1, 0): centred (.25, -.25, -.25, .25) and themselves:
    # r = (.25 + .25) / sqrt(0.25 * 2)
    assert m["pearson_delta"] == pytest.approx(0.5 / np.sqrt(0.25 * 2.0))
    assert m["pearson_delta_de"] == pytest.approx(1.0)
    # non-dropout genes 0, 1, 2: delta pred (0.5, 0, 0) vs true (1, 0, -1): r = 0.5 / sqrt(1/6 * 2)
    assert m["pearson_delta_top20_de_non_dropout"] == pytest.approx(0.5 / np.sqrt(2 / 6))
    assert m["mse_top20_de_non_dropout"] == pytest.approx((0.25 + 0 + 1) / 3)
    # non-zero genes 0, 1: delta pred (0.5, 0) vs true (1, 0): r = 1; values pred (1.5, 3) vs (2, 3): r = 1
    assert m["pearson_delta_top20_de_non_zero"] == pytest.approx(1.0) and m[
        "pearson_top20_de_non_zero"
    ] == pytest.approx(1.0)


def test_nan_pearson_counts_as_zero_and_summaries():
    from scfmbench.perturbation.metrics import condition_metrics, summarize

    ctrl = np.array([1.0, 2.0, 3.0])
    m = condition_metrics(
        ctrl.copy(), np.array([1.0, 3.0, 2.0]), ctrl, de=np.arange(3), non_dropout=np.arange(3), non_zero=np.arange(3)
    )
    assert (
        m["pearson_delta"] == 0.0 and m["pearson_delta_de"] == 0.0
    )  # constant (zero) predicted delta: GEARS' NaN -> 0
    per = pd.DataFrame(
        [
            {"condition": "a", "subgroup": "combo_seen1", "pearson_delta": 0.2},
            {"condition": "b", "subgroup": "combo_seen1", "pearson_delta": 0.4},
            {"condition": "c", "subgroup": "unseen_single", "pearson_delta": 1.0},
        ]
    )
    for col in (
        "pearson",
        "pearson_de",
        "mse",
        "mse_de",
        "pearson_delta_de",
        "pearson_delta_top20_de_non_dropout",
        "pearson_top20_de_non_dropout",
        "mse_top20_de_non_dropout",
        "pearson_delta_top20_de_non_zero",
        "pearson_top20_de_non_zero",
        "mse_top20_de_non_zero",
    ):
        per[col] = 0.0
    s = summarize(per, SUBGROUPS)
    assert s["pearson_delta:all"] == pytest.approx(1.6 / 3)
    assert s["pearson_delta:combo_seen1"] == pytest.approx(0.3) and s["pearson_delta:unseen_single"] == 1.0
    assert "pearson_delta:combo_seen0" not in s


# ---------------------------------------------------------------------------------------------
# predictors: one contract test over the registry, hand checks of the simple ones


@pytest.fixture(scope="module")
def small_split(small):
    return make_split(small.obs["condition"].unique(), seed=0)


@pytest.mark.parametrize("method", ["no_change", "train_mean", "additive", "linear", "oracle"])
def test_predictor_contract(small, small_split, method):
    from scfmbench.perturbation import predict

    conds, means, record = predict(method, small, small_split, seed=0)
    assert conds == small_split.conditions("test") and means.shape == (len(conds), small.n_vars)
    assert np.isfinite(means).all()
    again = predict(method, small, small_split, seed=0)[1]
    np.testing.assert_array_equal(means, again)


def _scores(adata, split, method):
    from scfmbench.perturbation import predict
    from scfmbench.perturbation.metrics import perturbation_scores, summarize

    conds, means, _ = predict(method, adata, split, seed=0)
    return summarize(perturbation_scores(adata, conds, means, split.subgroup), SUBGROUPS)


def test_oracle_is_the_ceiling_and_exact_without_noise(small, small_split):
    scores = {m: _scores(small, small_split, m) for m in ("no_change", "train_mean", "additive", "linear", "oracle")}
    for m in ("no_change", "train_mean", "additive", "linear"):
        assert scores["oracle"]["pearson_delta_de:all"] > scores[m]["pearson_delta_de:all"]
    assert scores["no_change"]["pearson_delta:all"] == 0.0
    # noise-free test cells (X = control mean + true shift): the oracle scores pearson_delta 1
    clean = small.copy()
    X = clean.X.toarray()
    ctrl = X[(clean.obs["condition"] == "ctrl").to_numpy()].mean(0)
    for c in small_split.conditions("test"):
        X[(clean.obs["condition"] == c).to_numpy()] = ctrl + _shift(clean, c)
    clean.X = sp.csr_matrix(X)
    assert _scores(clean, small_split, "oracle")["pearson_delta:all"] == pytest.approx(1.0, abs=1e-6)


def test_additive_and_train_mean_by_hand(small, small_split):
    from scfmbench.perturbation import predict

    cond = small.obs["condition"].astype(str).to_numpy()
    X = small.X.toarray().astype(np.float64)
    mean = lambda c: X[cond == c].mean(0)  # noqa: E731
    train = set(small_split.conditions("train"))
    conds, means, _ = predict("train_mean", small, small_split, seed=0)
    np.testing.assert_allclose(means[0], X[np.isin(cond, list(train - {"ctrl"}))].mean(0), rtol=1e-5, atol=1e-6)
    conds, means, _ = predict("additive", small, small_split, seed=0)
    for c, m in zip(conds, means):
        expected = mean("ctrl") + sum(
            mean(f"{g}+ctrl") - mean("ctrl") for g in condition_genes(c) if f"{g}+ctrl" in train
        )
        np.testing.assert_allclose(m, expected, rtol=1e-5, atol=1e-5)


def test_quality_flags_models_below_train_mean():
    from scfmbench.report.quality import quality_checks

    rows = [
        dict(
            task="perturbation",
            dataset="d",
            method=m,
            seed=s,
            metric="pearson_delta:all",
            value=v,
            runtime_s=1.0,
            peak_mem_mb=1.0,
        )
        for m, v in (("train_mean", 0.5), ("scgpt-full", 0.3), ("scgpt-genohoption-p", 0.6), ("no_change", 0.0))
        for s in (0, 1)
    ]
    checks = quality_checks(pd.DataFrame(rows))
    flagged = checks[checks["task"] == "perturbation"]
    assert list(flagged["method"]) == ["scgpt-full"] and flagged["check"].iloc[0] == "below control"


# ---------------------------------------------------------------------------------------------
# the generator


def test_gene_sampling_keeps_perturbed_genes():
    import torch

    from scfmbench.models.scgpt_generator import sample_genes

    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        genes = sample_genes(100, 10, {3, 97}, g)
        assert len(genes) == 10 and {3, 97} <= set(genes.tolist()) and (genes.diff() > 0).all()
    assert len(sample_genes(8, 10, {1}, g)) == 8


def test_genohoption_loss_by_hand():
    import torch

    from scfmbench.models.scgpt_generator import genohoption_loss

    pred = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, 3.0]])
    y = torch.tensor([[2.0, 2.0], [0.0, 3.0], [3.0, 1.0]])
    ctrl = torch.tensor([1.5, 1.5])
    # condition a (rows 0, 1): ((1)^4 + 0 + 0 + 2^4) / 4 = 4.25;
    # signs y-ctrl (+,+;-,+), pred-ctrl (-,+;-,-): (2^2 + 0 + 0 + 2^2) / 4 = 2
    # condition b (row 2): (0 + 2^4) / 2 = 8; signs (+,-) vs (+,+): (0 + 2^2) / 2 = 2
    expected = ((4.25 + 1e-3 * 2) + (8 + 1e-3 * 2)) / 2
    assert genohoption_loss(pred, y, ctrl, ["a", "a", "b"]).item() == pytest.approx(expected)


@pytest.mark.parametrize("method", ["scgpt-full", "scgpt-genohoption-p", "scgpt-longformer", "scgpt-full-paperloss"])
def test_generator_trains_and_predicts(small, small_split, method):
    from scfmbench.perturbation import predict

    params = dict(epochs=2, valid_cells=32, predict_cells=4, max_len=48, kernel_config={"longformer": {"window": 8}})
    conds, means, record = predict(method, small, small_split, seed=0, params=params)
    assert means.shape == (len(conds), small.n_vars) and np.isfinite(means).all()
    assert record["loss"] == ("genohoption" if method.endswith("paperloss") else "mse")
    assert (record["graph"] is not None) == ("genohoption" in method.split("-", 1)[1].removesuffix("-paperloss"))
    np.testing.assert_array_equal(means, predict(method, small, small_split, seed=0, params=params)[1])


def test_generator_epochs_are_passes_over_every_training_pair_and_the_lr_decays_per_epoch(small, small_split):
    """scGPT's units: an epoch is one pass over the training pairs (every cell of a training
    condition and every control), StepLR(1, gamma) steps once per such epoch."""
    import math

    from scfmbench.perturbation import predict

    params = dict(
        epochs=3, patience=5, lr=0.01, lr_gamma=0.5, batch_size=16, valid_cells=16, predict_cells=2, max_len=32
    )
    _, _, record = predict("scgpt-full", small, small_split, seed=0, params=params)
    curve = record["history"]["curve"]
    cond = small.obs["condition"].astype(str).to_numpy()
    n_pairs = int(np.isin(cond, small_split.conditions("train")).sum())  # ctrl is a training condition
    per_epoch = math.ceil(n_pairs / 16)
    assert curve["step"] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert curve["lr"] == pytest.approx([0.01, 0.005, 0.0025])
    assert curve["stop_reason"] == "epoch_cap" and curve["criterion"] == "valid -MSE"


def test_a_validation_interval_is_no_option_of_the_generator():
    from scfmbench.perturbation.generator import TRAIN_DEFAULTS

    assert "steps_per_epoch" not in TRAIN_DEFAULTS


def test_unknown_generator_kernel_is_an_error(small, small_split):
    from scfmbench.perturbation import predict

    with pytest.raises(InputError, match="registered kernels"):
        predict("scgpt-nokernel", small, small_split, seed=0)


# ---------------------------------------------------------------------------------------------
# GEARS files as distributed


def _gears_like(small):
    """A GEARS-style file: Ensembl-like var_names with symbols in var['gene_name'], uns rankings
    listing var_names, X as is; Norman's quirk of one single given as 'ctrl+A'."""
    g = small.copy()
    g.var_names = [f"ENSG{i:011d}" for i in range(g.n_vars)]
    single = next(c for c in g.obs["condition"].unique() if c.endswith("+ctrl"))
    flipped = "ctrl+" + condition_genes(single)[0]
    cells = np.flatnonzero((g.obs["condition"] == single).to_numpy())[::2]
    cond = g.obs["condition"].astype(str).to_numpy()
    cond[cells] = flipped
    g.obs["condition"] = cond
    for key in list(g.uns):
        del g.uns[key]
    return gears_layout(g, cell_type="A549"), single, flipped


def test_gears_file_is_read_as_distributed(small, tmp_path):
    import zipfile

    from scfmbench.perturbation.sources import load_perturbation_dataset

    g, single, flipped = _gears_like(small)
    g.write_h5ad(tmp_path / "perturb_processed.h5ad")
    with zipfile.ZipFile(tmp_path / "adamson.zip", "w") as z:
        z.write(tmp_path / "perturb_processed.h5ad", "adamson/perturb_processed.h5ad")
    got = load_perturbation_dataset("adamson", {"source": "gears_adamson", "path": str(tmp_path / "adamson.zip")})
    assert (got.X != g.X).nnz == 0 and list(got.var_names) == list(g.var_names)
    assert list(got.uns["top_non_dropout_de_20"][f"A549_{flipped}_1+1"]) == list(
        g.uns["top_non_dropout_de_20"][f"A549_{flipped}_1+1"]
    )
    # both forms of the single are conditions of their own, scored with their own DE genes, split together
    s = make_split(got.obs["condition"].unique(), seed=2)
    assert s.split[single] == s.split[flipped]
    from scfmbench.perturbation.metrics import perturbation_scores

    per = perturbation_scores(got, [single, flipped], np.tile(np.asarray(got.X.mean(0)).ravel(), (2, 1)), s.subgroup)
    assert list(per["condition"]) == [single, flipped]


def test_gears_file_without_rankings_is_an_error(small, tmp_path):
    from scfmbench.perturbation.sources import load_perturbation_dataset

    g, _, _ = _gears_like(small)
    del g.uns["top_non_zero_de_20"]
    (tmp_path / "norman").mkdir()
    g.write_h5ad(tmp_path / "norman" / "perturb_processed.h5ad")
    with pytest.raises(InputError, match="uns lacks \\['top_non_zero_de_20'\\]"):
        load_perturbation_dataset("norman", {"source": "gears_norman", "path": str(tmp_path / "norman")})


# ---------------------------------------------------------------------------------------------
# constant predictions and NaN Pearson (issue 23 items 5 and 8)


def test_no_change_delta_is_exactly_zero_through_the_npz(small, small_split, tmp_path):
    """no_change predicts the float64 control mean the metrics subtract, stored as float64: its delta
    is exactly 0 on every gene (not float32 rounding noise), so every delta Pearson is GEARS' NaN -> 0."""
    from scfmbench.perturbation import read_predictions, score_main
    from scfmbench.perturbation.data import control_mean

    data, split = tmp_path / "data.h5ad", tmp_path / "split.json"
    small.write_h5ad(data)
    small_split.write(split)
    from scfmbench.perturbation import run_method

    run_method("no_change", data, split, tmp_path / "p.npz", seed=0)
    conds, means = read_predictions(tmp_path / "p.npz")
    assert means.dtype == np.float64
    X = np.asarray(small.X[(small.obs["condition"] == "ctrl").to_numpy()].toarray(), dtype=np.float64)
    np.testing.assert_allclose(control_mean(small), X.mean(0), rtol=1e-12)  # independent: dense float64 mean
    assert ((means - control_mean(small)[None]) == 0).all()
    score_main(
        data=data,
        split=split,
        predictions=tmp_path / "p.npz",
        benchmark=None,
        out=tmp_path / "m.csv",
        conditions_out=tmp_path / "c.csv",
        dataset="d",
        method="no_change",
        seed=0,
    )
    per = pd.read_csv(tmp_path / "c.csv")
    for m in (
        "pearson_delta",
        "pearson_delta_de",
        "pearson_delta_top20_de_non_dropout",
        "pearson_delta_top20_de_non_zero",
    ):
        assert (per[m] == 0.0).all(), m


def test_near_constant_side_gets_its_pearson_as_gears():
    """GEARS scores 0 only where scipy's pearsonr returns NaN (an exactly constant side); a tiny but
    non-constant predicted delta keeps its correlation (here exactly proportional to the truth: 1)."""
    from scfmbench.perturbation.metrics import condition_metrics

    ctrl = np.array([1.0, 2.0, 3.0, 0.5])
    dt = np.array([0.5, -1.0, 0.0, 0.25])
    pred = ctrl + 1e-7 * dt  # range 1.5e-7, far below the old 1e-5 tolerance
    m = condition_metrics(pred, ctrl + dt, ctrl, de=np.arange(4), non_dropout=np.arange(4), non_zero=np.arange(4))
    assert m["pearson_delta"] == pytest.approx(1.0, abs=1e-6)
    assert m["pearson_delta_de"] == pytest.approx(1.0, abs=1e-6)


def test_pearson_matches_scipy_and_is_nan_only_for_exactly_constant():
    from scipy.stats import pearsonr

    from scfmbench.perturbation.metrics import _pearsonr

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert _pearsonr(a, b) == pytest.approx(pearsonr(a, b)[0], abs=1e-12)
    assert np.isnan(_pearsonr(np.full(5, 0.1), b[:5]))  # exactly constant (its float mean is not 0.1 exactly)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(pearsonr(np.full(5, 0.1), b[:5])[0])


def test_train_mean_is_over_cells_not_condition_means():
    """train_mean averages the perturbed training *cells* (PerturBench average.py): conditions with
    more cells weigh more. Hand values: A+ctrl 1 cell of 4, B+ctrl 3 cells of 0 -> cell mean 1 (the
    mean of the condition means would be 2)."""
    from scfmbench.perturbation import predict

    conds = ["ctrl", "ctrl", "A+ctrl", "B+ctrl", "B+ctrl", "B+ctrl", "C+ctrl"]
    X = np.array([[0.0, 1.0], [0.0, 1.0], [4.0, 2.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [9.0, 9.0]])
    adata = ad.AnnData(
        X=sp.csr_matrix(X),
        obs=pd.DataFrame({"condition": conds}, index=[f"c{i}" for i in range(len(conds))]),
        var=pd.DataFrame({"gene_name": ["A", "B"]}, index=["A", "B"]),
    )
    split = Split(
        {"ctrl": "train", "A+ctrl": "train", "B+ctrl": "train", "C+ctrl": "test"}, {"C+ctrl": "unseen_single"}
    )
    _, means, _ = predict("train_mean", adata, split, seed=0)
    np.testing.assert_allclose(means, [[1.0, 0.5]])  # (4 + 0 + 0 + 0) / 4, (2 + 0 + 0 + 0) / 4


# ---------------------------------------------------------------------------------------------
# GEARS' GO filter on Norman's conditions (issue 23 item 3)


def _norman_conditions() -> list[str]:
    from pathlib import Path

    lines = (Path(__file__).parent / "fixtures" / "norman_conditions.txt").read_text().splitlines()
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _test_sizes(split) -> dict[str, int]:
    return {g: sum(1 for c, s in split.subgroup.items() if s == g and split.split[c] == "test") for g in SUBGROUPS}


def test_norman_fixture_is_gears_file():
    conds = _norman_conditions()
    assert len(conds) == len(set(conds)) == 284
    assert (
        sum(len(condition_genes(c)) == 1 for c in conds) == 152
        and sum(len(condition_genes(c)) == 2 for c in conds) == 131
    )
    # GEARS demo/data_tutorial.ipynb prints these as not in the GO graph
    assert {
        "RHOXF2BB+ctrl",
        "LYL1+IER5L",
        "ctrl+IER5L",
        "KIAA1804+ctrl",
        "IER5L+ctrl",
        "RHOXF2BB+ZBTB25",
        "RHOXF2BB+SET",
    } <= set(conds)


def test_norman_seed1_subgroups_match_gears_tutorials():
    """GEARS' demo/data_tutorial.ipynb (f374e43, GO filter): Norman seed 1 test composition
    combo_seen0 9, combo_seen1 43, combo_seen2 19, unseen_single 36 (277 conditions kept); the
    original tutorial (6235884, cell-gears 0.0.2, no filter): 9, 52, 18, 37."""
    from scfmbench.perturbation.split import go_missing_genes

    conds = _norman_conditions()
    genes = go_missing_genes("gears_norman")
    assert sorted(genes) == ["IER5L", "KIAA1804", "RHOXF2BB"]
    s = make_split(conds, seed=1, drop_genes=genes)
    assert _test_sizes(s) == {"combo_seen0": 9, "combo_seen1": 43, "combo_seen2": 19, "unseen_single": 36}
    assert len(s.split) == 277 and sorted(s.params["go_filter_dropped"]) == sorted(
        ["RHOXF2BB+ctrl", "LYL1+IER5L", "ctrl+IER5L", "KIAA1804+ctrl", "IER5L+ctrl", "RHOXF2BB+ZBTB25", "RHOXF2BB+SET"]
    )
    assert _test_sizes(make_split(conds, seed=1)) == {
        "combo_seen0": 9,
        "combo_seen1": 52,
        "combo_seen2": 18,
        "unseen_single": 37,
    }


def test_go_filter_reaches_the_workflow_split(tmp_path):
    """write_splits applies the configured genes; a dropped condition has no split, so no method
    trains on it or is scored on it."""
    from scfmbench.perturbation import write_splits

    conds = ["ctrl", "A+ctrl", "B+ctrl", "C+ctrl", "D+ctrl", "A+B", "ctrl+C", "C+D"]
    adata = _tiny(conds, genes=("A", "B", "C", "D"))
    adata.write_h5ad(tmp_path / "d.h5ad")
    write_splits(
        tmp_path / "d.h5ad",
        [tmp_path / "s.json"],
        seeds=[0],
        params={"train_gene_set_size": 0.75, "combo_seen2_train_frac": 0.75, "drop_genes": ["C"]},
    )
    s = Split.read(tmp_path / "s.json")
    assert set(s.split) == {"ctrl", "A+ctrl", "B+ctrl", "D+ctrl", "A+B"}
    assert s.params["go_filter_dropped"] == ["C+ctrl", "ctrl+C", "C+D"]


# ---------------------------------------------------------------------------------------------
# GenoHoption's perturbation model: BatchNorm, <cls> with global edges, decoders (issue 23 item 2)


def _generator(**kw):
    import torch

    from scfmbench.models.scgpt_generator import GeneratorConfig, ScGPTGenerator

    torch.manual_seed(0)
    return ScGPTGenerator(GeneratorConfig(n_genes=6, d_model=8, n_layers=1, n_heads=2, d_hidden=16, **kw))


def _encoder_input(model, batch):
    """What enters the transformer encoder (the hook's capture) and the model's output."""
    seen = {}
    h = model.transformer_encoder.register_forward_pre_hook(
        lambda mod, args: seen.update(x=args[0].detach(), ids=args[2].detach())
    )
    out = model(batch)
    h.remove()
    return seen, out


def test_generator_batchnorm_on_summed_embeddings():
    """generation_modle_gn.py: total_embs = bn(total_embs.permute(0, 2, 1)).permute(0, 2, 1) with
    BatchNorm1d(d_model, eps=6.1e-5): in training every channel has mean 0 and (biased) variance
    s2 / (s2 + eps) over all (cell, token) positions; without it the sum is not normalized."""
    import torch

    from scfmbench.models.scgpt_generator import make_batch

    g = torch.Generator().manual_seed(1)
    ctrl = torch.rand(5, 6, generator=g) * 3
    batch = make_batch(ctrl, None, [(1,), (2,), (), (0, 3), (5,)], torch.arange(6))
    model = _generator()
    assert model.bn.eps == pytest.approx(6.1e-5) and model.bn.num_features == 8
    model.train()
    seen, _ = _encoder_input(model, batch)
    raw = model.encoder(batch.gene_ids) + model.value_encoder(batch.values) + model.pert_encoder(batch.pert_flags)
    s2 = raw.detach().reshape(-1, 8).var(0, unbiased=False)
    x = seen["x"].reshape(-1, 8)
    np.testing.assert_allclose(x.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.var(0, unbiased=False).numpy(), (s2 / (s2 + 6.1e-5)).numpy(), rtol=1e-4)
    plain = _generator(batchnorm=False)
    plain.train()
    assert plain.bn is None
    seen, _ = _encoder_input(plain, batch)
    assert float(seen["x"].reshape(-1, 8).mean(0).abs().max()) > 1e-2


def test_generator_cls_token_carries_the_flag_to_every_gene():
    """scGPT_run_pert_gn.py appends <cls> (value 0, flag 0) with graph edges to and from every gene
    (generate_g, flag_global=True) and drops it from the output. On a gene graph without edges
    between genes, the perturbation flag of gene 2 moves no other gene's prediction without the
    token, and every gene's with it."""
    import torch

    from scfmbench.models.attention.edges import EdgePattern  # noqa: F401  (graph kernels' edges)
    from scfmbench.models.scgpt import attach_graph
    from scfmbench.models.scgpt_generator import make_batch
    from scfmbench.models.tokenize import CLS_ID, TokenGraph

    ctrl = torch.rand(1, 6, generator=torch.Generator().manual_seed(2)) + 0.5
    on, off = make_batch(ctrl, None, [(2,)], torch.arange(6)), make_batch(ctrl, None, [()], torch.arange(6))
    for cls in (False, True):
        model = _generator(attention="genohoption-p", cls_token=cls)
        attach_graph(model, TokenGraph(sp.csr_matrix((6, 6)), cls_node=False, cls_token=cls))  # no gene-gene edge
        model.eval()
        seen, a = _encoder_input(model, on)
        b = model(off)
        assert a.shape == (1, 6)
        moved = (a - b).abs()[0].detach().numpy() > 1e-6
        moved[2] = False
        if cls:
            inputs = {}
            hooks = [
                model.value_encoder.register_forward_pre_hook(
                    lambda mod, args, inputs=inputs: inputs.update(v=args[0])
                ),
                model.pert_encoder.register_forward_pre_hook(lambda mod, args, inputs=inputs: inputs.update(f=args[0])),
            ]
            model(on)
            [h.remove() for h in hooks]
            assert (
                float(inputs["v"][0, 0]) == 0.0 and int(inputs["f"][0, 0]) == 0 and int(inputs["f"][0, 3]) == 1
            )  # gene 2 one step right
            assert seen["x"].shape[1] == 7 and int(seen["ids"][0, 0]) == CLS_ID
            assert moved.sum() == 5  # every other gene, through <cls>
        else:
            assert seen["x"].shape[1] == 6 and moved.sum() == 0


def test_affine_decoder_has_scgpt_head_names_and_is_affine_in_the_value():
    """scGPT HEAD's AffineExprDecoder: coeff_decoder and bias_decoder (ExprDecoders, fc.0/.2/.4),
    pred = coeff(x) * value + bias(x): for fixed x, second differences in the value vanish."""
    import torch

    model = _generator(decoder="affine")
    names = {k for k in model.state_dict() if k.startswith("decoder.")}
    assert names == {
        f"decoder.{d}.fc.{i}.{w}"
        for d in ("coeff_decoder", "bias_decoder")
        for i in (0, 2, 4)
        for w in ("weight", "bias")
    }
    x = torch.randn(2, 3, 8)
    v = torch.rand(2, 3)
    f = lambda vals: model.decoder(x, vals)  # noqa: E731
    np.testing.assert_allclose((f(2 * v) - 2 * f(v) + f(0 * v)).detach().numpy(), 0.0, atol=1e-5)
    with pytest.raises(InputError, match="decoder must be one of"):
        _generator(decoder="mlp")


def test_perturbed_genes_without_edges_are_counted():
    from scfmbench.models.tokenize import TokenGraph
    from scfmbench.perturbation.generator import perturbed_without_edge

    # rows = source: 0 -> 1, 2 -> 2 (self-loop only), 3 -> 0; gene 4 has only an in-edge (1 -> 4)
    a = sp.csr_matrix((np.ones(4), ([0, 2, 3, 1], [1, 2, 0, 4])), shape=(5, 5))
    assert perturbed_without_edge(TokenGraph(a, cls_node=False, cls_token=False), [0, 2, 3, 4]) == [2, 4]


def test_generator_run_record_counts_isolated_perturbed_genes(small, small_split, caplog):
    """An (almost) empty gene graph: every perturbed gene lacks an edge; the record says so, the
    kernel's graph has no path for them without <cls> and all of them with it; flipping the flag
    moves no other gene without <cls>."""
    import logging

    from scfmbench.perturbation import predict

    params = dict(epochs=1, valid_cells=16, predict_cells=2, max_len=48)
    graph = {"top_h": 1, "delta": 0.999, "trrust": False}
    with caplog.at_level(logging.WARNING, logger="scfmbench.perturbation.generator"):
        _, _, rec = predict(
            "scgpt-genohoption-p", small, small_split, seed=0, params={**params, "cls_token": False}, graph_params=graph
        )
    n = rec["graph"]["perturbed_genes"]
    assert rec["graph"]["perturbed_without_gene_edge"] == rec["graph"]["perturbed_without_path"] == n > 0
    assert "have no edge to another gene" in caplog.text
    assert rec["flag_flip"]["changed_share"] == 0.0
    _, _, rec = predict("scgpt-genohoption-p", small, small_split, seed=0, params=params, graph_params=graph)
    assert rec["model"]["cls_token"] is True and rec["graph"]["perturbed_without_path"] == 0
    assert rec["flag_flip"]["changed_share"] > 0.5
    _, _, rec = predict("scgpt-full", small, small_split, seed=0, params=params)
    assert rec["model"]["cls_token"] is False and rec["model"]["batchnorm"] is True and rec["graph"] is None


def test_generator_predicts_every_test_cell_by_default(small, small_split, monkeypatch):
    """GEARS predicts every test cell (each from its paired control) and averages per condition:
    predict_cells null (config/paper.yaml) reaches every test cell; a number subsamples."""
    from scfmbench.perturbation import generator, predict

    seen = []
    original = generator._Pairs.__init__

    def spy(self, X, rows, *args, **kw):
        if kw.get("generator") is None:
            seen.extend(np.asarray(rows).tolist())
        original(self, X, rows, *args, **kw)

    monkeypatch.setattr(generator._Pairs, "__init__", spy)
    test_rows = set(np.flatnonzero(small.obs["condition"].isin(small_split.conditions("test")).to_numpy()).tolist())
    params = dict(epochs=1, valid_cells=8, max_len=32)
    predict("scgpt-full", small, small_split, seed=0, params={**params, "predict_cells": None})
    assert test_rows <= set(seen)
    seen.clear()
    predict("scgpt-full", small, small_split, seed=0, params={**params, "predict_cells": 2})
    assert len(test_rows & set(seen)) == 2 * len(small_split.conditions("test"))


def test_flag_flip_table_from_run_records(tmp_path):
    import json

    from scfmbench.bench.flagflip import flag_flip_table

    for seed, share in ((0, 0.2), (1, 0.4)):
        d = tmp_path / "scgpt-genohoption-p" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "run.json").write_text(
            json.dumps(
                {
                    "seed": seed,
                    "model": {"cls_token": True},
                    "flag_flip": {
                        "changed_share": share,
                        "min": share - 0.1,
                        "max": share + 0.1,
                        "cells": 3,
                        "tol": 1e-6,
                    },
                    "graph": {"perturbed_genes": 10, "perturbed_without_gene_edge": 4, "perturbed_without_path": 0},
                }
            )
        )
    (tmp_path / "no_change" / "seed0").mkdir(parents=True)
    (tmp_path / "no_change" / "seed0" / "run.json").write_text(json.dumps({"seed": 0}))
    t = flag_flip_table(tmp_path).set_index("method")
    assert list(t.index) == ["scgpt-genohoption-p"]
    row = t.loc["scgpt-genohoption-p"]
    assert (
        row["seeds"] == 2
        and row["share"] == pytest.approx(0.3)
        and row["min"] == pytest.approx(0.1)
        and row["max"] == pytest.approx(0.5)
    )
    assert row["without_gene_edge"] == 4 and row["without_path"] == 0
