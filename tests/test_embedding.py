"""Cell embeddings (scfmbench.embedding): each metric against a hand-computed or scikit-learn value
on a tiny case, the floor of a constant embedding, the file contract, per-backbone pooling, the
zero-shot state, the controls, reproducibility per seed, and agreement with scib-metrics where the
extra 'scib' is installed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_raw

from scfmbench import InputError
from scfmbench.embedding import CellEmbeddings, read_embedding, write_embedding
from scfmbench.embedding import metrics as M

try:
    import scib_metrics  # noqa: F401

    HAVE_SCIB = True
except ImportError:  # the optional extra 'scib'
    HAVE_SCIB = False


@pytest.fixture(scope="module")
def tiny():
    from scfmbench.data.prepare import prepare_dataset

    return prepare_dataset(make_raw(n_cells=120, n_genes=24), seed=0)


# ------------------------------------------------------------------------------------------------
# metrics, each against a value computed by hand or by scikit-learn directly


def test_knn_scores_by_hand():
    # train: class a at 0, class b at 10; test: 1 (a), 9 (b), 2 (b: its 3 nearest are a's)
    emb = np.array([0, 0.1, 0.2, 10, 10.1, 10.2, 1, 9, 2], dtype=float)[:, None]
    labels = np.array(list("aaabbb") + list("abb"))
    train = np.arange(9) < 6
    got = M.knn_scores(emb, labels, train, ~train, k=3)
    # predicted a, b, a: accuracy 2/3; F1(a) = 2*1/(2*1+1+0) = 2/3, F1(b) = 2*1/(2*1+0+1) = 2/3
    assert got == pytest.approx({"knn_accuracy": 2 / 3, "knn_macro_f1": 2 / 3})


def test_linear_probe_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels = rng.choice(list("abc"), 90)
    emb = rng.normal(size=(90, 4))
    emb[:, 0] += (labels == "a") * 3.0
    emb[:, 1] += (labels == "b") * 2.0
    train = np.arange(90) < 60
    mu, sd = emb[train].mean(0), emb[train].std(0)  # standardization by hand, train cells only
    lr = LogisticRegression(max_iter=1000, random_state=0).fit((emb[train] - mu) / sd, labels[train])
    expected = f1_score(labels[~train], lr.predict((emb[~train] - mu) / sd), average="macro")
    assert M.linear_probe(emb, labels, train, ~train, seed=0) == pytest.approx(expected)


def test_kmeans_nmi_ari_by_hand():
    # three tight blobs; the labels put one cell of blob 0 in class 'b'
    emb = (
        np.concatenate([np.zeros((4, 2)), np.full((4, 2), 10.0), np.full((4, 2), [0.0, 20.0])])
        + np.linspace(0, 0.01, 12)[:, None]
    )
    labels = np.array(["a"] * 3 + ["b"] * 5 + ["c"] * 4)
    clusters = np.repeat([0, 1, 2], 4)  # what k-means must find
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    got = M.kmeans_nmi_ari(emb, labels, seed=0)
    assert got["kmeans_ari"] == pytest.approx(adjusted_rand_score(labels, clusters))
    assert got["kmeans_nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    assert M.kmeans_nmi_ari(emb, np.repeat(list("xyz"), 4), seed=0) == pytest.approx(
        {"kmeans_nmi": 1.0, "kmeans_ari": 1.0}
    )


def test_label_asw_by_hand():
    # 1-D, a: {0, 1}, b: {10, 11}: s(0) = 1 - 1/10.5, s(1) = 1 - 1/9.5 (and symmetric for b)
    emb = np.array([0.0, 1.0, 10.0, 11.0])[:, None]
    s = ((1 - 1 / 10.5) + (1 - 1 / 9.5)) / 2
    assert M.label_asw(emb, np.array(list("aabb"))) == pytest.approx((s + 1) / 2)


def test_batch_asw_by_hand():
    # one cell type; batches x: {0, 1}, y: {10, 11}: separated, so 1 - |s| is small
    emb = np.array([0.0, 1.0, 10.0, 11.0])[:, None]
    s = ((1 - 1 / 10.5) + (1 - 1 / 9.5)) / 2
    assert M.batch_asw(emb, np.array(list("tttt")), np.array(list("xxyy"))) == pytest.approx(1 - s)
    # a type seen in one batch only is skipped (scib); two types averaged per type, not per cell
    emb2 = np.concatenate([emb, np.array([[50.0], [51.0], [52.0]])])
    assert M.batch_asw(emb2, np.array(list("ttttuuu")), np.array(list("xxyyxxx"))) == pytest.approx(1 - s)


def test_graph_connectivity_by_hand():
    # type A: two far groups of 3 (k = 2 keeps each group to itself): largest component 3 of 6;
    # type B: one chain of 4, strongly connected with k = 2: 4 of 4. Mean (0.5 + 1) / 2.
    emb = np.array([0, 0.1, 0.2, 100, 100.1, 100.2, 1000, 1001, 1002, 1003], dtype=float)[:, None]
    labels = np.array(list("AAAAAABBBB"))
    assert M.graph_connectivity(emb, labels, k=2) == pytest.approx(0.75)


def test_batch_asw_averages_per_cell_type_not_per_cell():
    """scib's silhouette_batch: 1 - |s| averaged over each type's cells, then over types. Type t: 4 cells
    (the case above, batches apart); type u: 5 cells at 50..54, batches x y x y x (mixed)."""
    emb = np.array([0.0, 1.0, 10.0, 11.0, 50.0, 51.0, 52.0, 53.0, 54.0])[:, None]
    s_t = ((1 - 1 / 10.5) + (1 - 1 / 9.5)) / 2
    # u, s = (b - a) / max(a, b) per cell: 50 x (a 3, b 2): -1/3; 51 y (a 2, b 5/3): -1/6;
    # 52 x (a 2, b 1): -1/2; 53 y: -1/6; 54 x: -1/3. 1 - |s| averages 3.5 / 5 = 0.7
    u = (2 / 3 + 5 / 6 + 1 / 2 + 5 / 6 + 2 / 3) / 5
    got = M.batch_asw(emb, np.array(list("ttttuuuuu")), np.array(list("xxyyxyxyx")))
    assert got == pytest.approx(((1 - s_t) + u) / 2)  # per cell it would be (4 (1 - s_t) + 5 u) / 9
    assert abs(got - (4 * (1 - s_t) + 5 * u) / 9) > 0.02


def test_graph_connectivity_counts_strong_not_weak_components():
    """k = 1: type B = {0, 1, 5}: 0 <-> 1, and 5 -> 1 with no edge back, so the largest strongly
    connected component is {0, 1}: 2 of 3 (weakly: 3 of 3); type C = {100, 101}: 2 of 2. Mean 5/6."""
    emb = np.array([0.0, 1.0, 5.0, 100.0, 101.0])[:, None]
    assert M.graph_connectivity(emb, np.array(list("BBBCC")), k=1) == pytest.approx((2 / 3 + 1) / 2)


def test_cluster_and_silhouette_metrics_score_the_test_cells_only():
    """k-means, label ASW, batch ASW and graph connectivity see the test cells only. Test cells: type a
    at 0..3, b at 20..23, batches x y x y in each; train cells elsewhere (a at 40..43, b at 60..63, a
    type c at 100, 101 seen in train only) would change every value below if they were scored."""
    emb = np.array([0, 1, 2, 3, 20, 21, 22, 23, 40, 41, 42, 43, 60, 61, 62, 63, 100, 101], dtype=float)[:, None]
    labels = np.array(list("aaaabbbb") + list("aaaabbbbcc"))
    split = np.array(["test"] * 8 + ["train"] * 10)
    batch = np.array(list("xyxyxyxy") + list("xxxxyyyyxy"))
    got = M.embedding_metrics(emb, labels, split, k=3, batch=batch)
    # two separated types, k = 2 among the test cells: k-means finds them exactly
    assert got["kmeans_nmi"] == pytest.approx(1.0) and got["kmeans_ari"] == pytest.approx(1.0)
    # silhouette of type a's cells (b's mirror them): a = mean distance within a, b = to the other type
    s = (19.5 / 21.5 + (20.5 - 4 / 3) / 20.5 + (19.5 - 4 / 3) / 19.5 + 16.5 / 18.5) / 4
    assert got["asw_label"] == pytest.approx((s + 1) / 2)
    # batches within a type at 0, 1, 2, 3 = x, y, x, y: s = 0, -1/2, -1/2, 0, so 1 - |s| averages 3/4
    assert got["batch_asw"] == pytest.approx(0.75)
    # k = 3 within 4 cells of a type: each type one strongly connected component
    assert got["graph_connectivity"] == pytest.approx(1.0)


def test_constant_embedding_is_chance_level():
    """A model whose output is constant (every weight zero: the last LayerNorm returns its zero bias)
    gives one prediction for every test cell: the kNN accuracy is one class's test share, at most
    the majority's, and k-means finds nothing."""
    from scfmbench.data.prepare import prepare_dataset
    from scfmbench.models.scgpt import ScGPTClassifier, ScGPTConfig
    from scfmbench.models.tokenize import tokenize_scgpt
    from scfmbench.train import predict_logits

    adata = prepare_dataset(make_raw(n_cells=150, n_genes=24, n_types=3), seed=0)
    model = ScGPTClassifier(ScGPTConfig(n_genes=adata.n_vars, n_classes=3, d_model=8, n_heads=2, d_hidden=16))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    cells = tokenize_scgpt(adata.X, n_bins=51, max_len=64, rng=np.random.default_rng(0))
    emb = predict_logits(model, cells, batch_size=32, device="cpu", output="cell_embedding").numpy()
    assert np.ptp(emb, axis=0).max() == 0  # constant
    labels, split = adata.obs["cell_type"].astype(str).to_numpy(), adata.obs["split"].astype(str).to_numpy()
    got = M.embedding_metrics(emb, labels, split, seed=0)
    shares = pd.Series(labels[split == "test"]).value_counts(normalize=True)
    assert any(np.isclose(got["knn_accuracy"], shares.to_numpy())) and got["knn_accuracy"] <= shares.max() + 1e-12
    assert got["kmeans_nmi"] == pytest.approx(0.0) and got["kmeans_ari"] == pytest.approx(0.0)
    assert got["asw_label"] == pytest.approx(0.5)  # silhouette 0: nothing separates the types
    # an informative embedding (the expression itself) is far above that floor
    real = M.embedding_metrics(adata.X.toarray(), labels, split, seed=0)
    assert real["knn_accuracy"] > shares.max() + 0.2


def test_batch_metrics_only_with_a_batch(tiny):
    labels, split = tiny.obs["cell_type"].astype(str).to_numpy(), tiny.obs["split"].astype(str).to_numpy()
    emb = tiny.X.toarray()
    assert set(M.embedding_metrics(emb, labels, split)) == set(M.LABEL_METRICS)
    batch = np.where(np.arange(tiny.n_obs) % 2, "s1", "s2")
    got = M.embedding_metrics(emb, labels, split, batch=batch)
    assert {"batch_asw", "graph_connectivity"} <= set(got) and all(0 <= v <= 1 for v in got.values())
    assert ("ilisi" in got) == HAVE_SCIB


@pytest.mark.skipif(
    not HAVE_SCIB,
    reason="scib-metrics is not installed (optional extra 'scib': pip install -c constraints.txt -e '.[scib]')",
)
def test_metrics_agree_with_scib_metrics():
    """Our silhouette, batch ASW, graph connectivity and k-means NMI/ARI against scib-metrics 0.5
    (the field's reference implementation) on the same tiny case. kNN accuracy and the linear probe
    have no scib-metrics counterpart (their reference is scikit-learn, above)."""
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [8, 0], [0, 8]], dtype=float)
    blob = np.repeat([0, 1, 2], 20)
    emb = centers[blob] + rng.normal(scale=1.0, size=(60, 2))
    labels = np.array(list("abc"))[blob]
    labels[::7] = "c"  # labels that k-means cannot match exactly
    batch = np.where(rng.random(60) < 0.5, "x", "y")
    assert M.label_asw(emb, labels) == pytest.approx(float(scib_metrics.silhouette_label(emb, labels)), abs=1e-5)
    assert M.batch_asw(emb, labels, batch) == pytest.approx(
        float(scib_metrics.silhouette_batch(emb, labels, batch)), abs=1e-5
    )
    k = 5
    dist, idx = (
        NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb)
    )  # scib's neighbours include the cell itself
    assert M.graph_connectivity(emb, labels, k=k) == pytest.approx(
        float(scib_metrics.graph_connectivity(NeighborsResults(indices=idx, distances=dist), labels))
    )
    ours, theirs = M.kmeans_nmi_ari(emb, labels, seed=0), scib_metrics.nmi_ari_cluster_labels_kmeans(emb, labels)
    assert ours["kmeans_nmi"] == pytest.approx(float(theirs["nmi"]), abs=1e-6) and ours["kmeans_ari"] == pytest.approx(
        float(theirs["ari"]), abs=1e-6
    )
    assert M.ilisi(emb, batch, k=k) == pytest.approx(
        float(scib_metrics.ilisi_knn(NeighborsResults(indices=idx, distances=dist), batch))
    )


# ------------------------------------------------------------------------------------------------
# the models: pooling per backbone, zero-shot state, reproducibility, the file contract


@pytest.mark.parametrize(
    "backbone,attention,width",
    [("scgpt", "full", 16), ("geneformer", "full", 16), ("scbert", "performer", 16), ("scfoundation", "full", 4 * 16)],
)
def test_each_backbone_embeds_every_cell_without_changing_its_predictions(tiny, backbone, attention, width):
    from scfmbench.annotation.transformer import annotate_transformer

    # scGPT with max_len 8 subsamples each longer cell's genes from the run's generator: the
    # all-cell tokenization for the embedding draws from it too, and must give its state back
    opts = dict(epochs=2, patience=2, d_model=16, **({"max_len": 8} if backbone == "scgpt" else {}))
    plain, rec_plain = annotate_transformer(tiny, backbone=backbone, attention=attention, seed=0, **opts)
    pred, record = annotate_transformer(tiny, backbone=backbone, attention=attention, seed=0, embed=True, **opts)
    np.testing.assert_array_equal(plain, pred)  # the embedding passes move no random stream
    assert rec_plain["history"]["train_loss"] == record["history"]["train_loss"]
    emb = record["embedding"]
    assert emb.embedding.shape == (tiny.n_obs, width) and np.isfinite(emb.embedding).all()
    assert emb.zeroshot is None and "scratch" in emb.source  # from scratch: no pretrained-only state
    assert emb.pooling


def test_geneformer_pools_the_gene_states_without_cls():
    """Geneformer's convention: the mean of the gene states, <cls> and padding left out."""
    from scfmbench.models.geneformer import GeneformerClassifier, GeneformerConfig
    from scfmbench.models.tokenize import tokenize_geneformer

    raw = make_raw(n_cells=6, n_genes=12)
    counts = raw.layers["counts"]
    cells = tokenize_geneformer(counts, np.ones(12), max_len=12)
    torch.manual_seed(0)
    model = GeneformerClassifier(GeneformerConfig(n_genes=12, n_classes=2, d_model=8, n_heads=2, d_hidden=16)).eval()
    with torch.no_grad():
        h, got = model.hidden_states(cells), model.cell_embedding(cells)
    for i in range(len(h)):
        genes = ~cells.padding[i]
        genes[0] = False  # <cls>
        torch.testing.assert_close(got[i], h[i][genes].mean(0))


@pytest.mark.parametrize("strategy", ["uniform", "mam"])
def test_zeroshot_is_the_checkpoint_before_finetuning(tmp_path, tiny, strategy):
    from scfmbench.annotation.transformer import BACKBONES, annotate_transformer
    from scfmbench.pretrain.backbones import load_pretrained, save_pretrained
    from scfmbench.pretrain.masking import strategy_for
    from scfmbench.pretrain.workflow import pretrain_backbone
    from scfmbench.train import predict_logits

    strat = strategy_for(strategy, {"strategy_options": {"mam": {"n_latents": 8, "latent_dim": 16, "n_heads": 2}}})
    model, _, _ = pretrain_backbone(tiny, backbone="scgpt", strategy=strat, seed=0, steps=3, batch_size=8)
    save_pretrained(tmp_path / "ckpt.pt", model, strategy=strat, run_config={"seed": 0})
    _, record = annotate_transformer(
        tiny, backbone="scgpt", attention="full", seed=0, pretrained=tmp_path / "ckpt.pt", epochs=2, embed=True
    )
    emb = record["embedding"]
    assert emb.zeroshot is not None and emb.zeroshot.shape == emb.embedding.shape
    assert "pretraining checkpoint" in emb.source and ("MAM" in emb.pooling) == (strategy == "mam")
    assert not np.allclose(emb.zeroshot, emb.embedding)  # fine-tuning moved it
    # the zero-shot state is the checkpoint's own embedding: load it afresh and embed the cells
    loaded, _ = load_pretrained(
        tmp_path / "ckpt.pt", backbone="scgpt", spec=BACKBONES["scgpt"], n_classes=2, attention="full", params={}
    )
    tok, _ = BACKBONES["scgpt"].tokenizer(
        tiny, loaded.cfg, np.flatnonzero(tiny.obs["split"] == "train"), 128, np.random.default_rng(0)
    )
    again = predict_logits(
        loaded, tok(np.arange(tiny.n_obs)), batch_size=64, device="cpu", output="cell_embedding"
    ).numpy()
    np.testing.assert_allclose(
        emb.zeroshot, again, atol=1e-5
    )  # no cell longer than max_len: tokens do not depend on the draw


def test_schyena_writes_both_states(tmp_path, tiny):
    from scfmbench._io import write_h5ad
    from scfmbench.schyena.tasks import cls_embeddings, load_checkpoint
    from scfmbench.schyena.workflow import finetune_main, pretrain_main

    write_h5ad(tiny, tmp_path / "p.h5ad")
    params = dict(d_model=8, n_layers=1, filter_order=8, pretrain_steps=2, epochs=1, batch_size=16)
    pretrain_main(tmp_path / "p.h5ad", tmp_path / "pre.pt", dataset="tiny", seed=0, params=params)
    finetune_main(
        tmp_path / "p.h5ad",
        tmp_path / "pre.pt",
        tmp_path / "pred.csv",
        tmp_path / "run.json",
        tmp_path / "ft.pt",
        seed=0,
        params=params,
        embedding_path=tmp_path / "e.npz",
    )
    emb = read_embedding(tmp_path / "e.npz", tiny.obs_names)
    pre, _ = load_checkpoint(tmp_path / "pre.pt")
    np.testing.assert_allclose(emb.zeroshot, cls_embeddings(pre, tiny), atol=1e-6)
    assert emb.embedding.shape == (tiny.n_obs, 8) and "CLS" in emb.pooling


def test_embedding_file_is_reproducible_per_seed(tmp_path, tiny):
    """The contract: every cell in the prepared order; the same seed writes the same numbers."""
    from scfmbench._io import write_h5ad
    from scfmbench.annotation import run_annotation

    write_h5ad(tiny, tmp_path / "p.h5ad")
    params = dict(epochs=1, d_model=16)
    files = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run_annotation(
            "scgpt-full",
            tmp_path / "p.h5ad",
            tmp_path / f"{name}.csv",
            seed=seed,
            params=params,
            record_path=tmp_path / f"{name}.json",
            embedding_path=tmp_path / f"{name}.npz",
        )
        files[name] = read_embedding(tmp_path / f"{name}.npz", tiny.obs_names)  # checks every cell, in order
    np.testing.assert_array_equal(files["a"].embedding, files["b"].embedding)
    assert not np.allclose(files["a"].embedding, files["c"].embedding)
    with np.load(tmp_path / "a.npz") as z:
        assert list(z["obs_names"]) == list(tiny.obs_names) and "zeroshot" not in z
    with pytest.raises(InputError, match="not the prepared dataset's"):
        read_embedding(tmp_path / "a.npz", tiny.obs_names[::-1])
    with pytest.raises(InputError, match="no cell embedding"):
        run_annotation("majority", tmp_path / "p.h5ad", tmp_path / "m.csv", seed=0, embedding_path=tmp_path / "m.npz")


def test_write_embedding_checks_rows(tmp_path):
    with pytest.raises(InputError, match="one row per cell"):
        write_embedding(tmp_path / "x.npz", CellEmbeddings(np.zeros((3, 2)), "p"), ["a", "b"])
    with pytest.raises(InputError, match="non-finite"):
        write_embedding(tmp_path / "x.npz", CellEmbeddings(np.full((2, 2), np.nan), "p"), ["a", "b"])


# ------------------------------------------------------------------------------------------------
# controls and the workflow functions


def test_pca_control_is_the_train_cells_principal_subspace(tiny):
    from scfmbench.embedding.controls import pca_embedding, random_embedding

    emb = pca_embedding(tiny, seed=0, n_components=5)
    X = tiny.X.toarray().astype(np.float64)
    train = (tiny.obs["split"] == "train").to_numpy()
    mu = X[train].mean(0)
    _, _, vt = np.linalg.svd(X[train] - mu, full_matrices=False)  # PCA by hand: SVD of the centred train cells
    expected = (X - mu) @ vt[:5].T
    np.testing.assert_allclose(np.abs(emb), np.abs(expected), atol=1e-4)  # each component up to its sign
    r0, r0b, r1 = (
        random_embedding(tiny, seed=0, n_components=7),
        random_embedding(tiny, seed=0, n_components=7),
        random_embedding(tiny, seed=1, n_components=7),
    )
    assert r0.shape == (tiny.n_obs, 7)
    np.testing.assert_array_equal(r0, r0b)
    assert not np.allclose(r0, r1)
    # a random projection keeps distances roughly (Johnson-Lindenstrauss): correlated with the originals
    from scipy.spatial.distance import pdist

    wide = random_embedding(tiny, seed=0, n_components=200)
    assert np.corrcoef(pdist(wide), pdist(X))[0, 1] > 0.9


def test_control_and_score_main_write_the_contract(tmp_path, tiny):
    from scfmbench._io import write_h5ad
    from scfmbench.embedding.workflow import control_main, methods_table, score_main
    from scfmbench.results import METRIC_COLUMNS

    write_h5ad(tiny, tmp_path / "p.h5ad")
    out = {c: {0: tmp_path / f"{c}.npz"} for c in ("pca", "random")}
    bench = {c: {0: tmp_path / f"{c}.tsv"} for c in ("pca", "random")}
    control_main({0: tmp_path / "p.h5ad"}, out, bench, n_components=6)
    assert read_embedding(out["pca"][0], tiny.obs_names).embedding.shape == (tiny.n_obs, 6)
    runs = [
        dict(
            method=c,
            seed=0,
            embedding=out[c][0],
            benchmark=bench[c][0],
            metrics=tmp_path / f"{c}.csv",
            zeroshot_metrics=None,
        )
        for c in out
    ]
    score_main(runs, {0: tmp_path / "p.h5ad"}, dataset="tiny")
    rec = pd.read_csv(tmp_path / "pca.csv")
    assert (
        list(rec.columns) == METRIC_COLUMNS
        and set(rec["task"]) == {"embedding"}
        and set(rec["metric"]) == set(M.LABEL_METRICS)
    )
    assert (rec["runtime_s"] > 0).all()
    table = methods_table({"tiny": {c: out[c][0] for c in out}})
    assert list(table["dims"]) == [6, 6] and table["zeroshot_dims"].isna().all()
    runs[0]["zeroshot_metrics"] = tmp_path / "z.csv"  # a zero-shot state the file does not have
    with pytest.raises(InputError, match="no zero-shot embedding"):
        score_main(runs[:1], {0: tmp_path / "p.h5ad"}, dataset="tiny")
    with pytest.raises(InputError, match="embedding.batch_columns.tiny"):
        score_main(runs[1:], {0: tmp_path / "p.h5ad"}, dataset="tiny", batch_column="donor")


def test_config_errors_name_the_embedding_keys(schema_path):
    import copy

    import yaml
    from conftest import REPO

    from scfmbench.config import embedding_datasets, validate_config

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = validate_config(copy.deepcopy(base), schema_path)
    assert embedding_datasets(cfg) == ["pbmc68k", "synthetic"]
    assert embedding_datasets(
        validate_config({**copy.deepcopy(base), "annotation": {"datasets": ["synthetic"]}}, schema_path)
    ) == ["synthetic"]
    bad = copy.deepcopy(base)
    bad["embedding"]["datasets"] = ["nosuch"]
    with pytest.raises(InputError, match="embedding.datasets"):
        validate_config(bad, schema_path)
    bad = copy.deepcopy(base)
    bad["embedding"]["batch_columns"] = {"perturb_synthetic": "sample"}
    with pytest.raises(InputError, match="embedding.batch_columns.perturb_synthetic"):
        validate_config(bad, schema_path)
    bad = copy.deepcopy(base)
    bad["embedding"]["knn"] = 5
    with pytest.raises(InputError, match="knn"):
        validate_config(bad, schema_path)
