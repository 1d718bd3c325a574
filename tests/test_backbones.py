"""The three backbones (scGPT-, Geneformer-, scBERT-style) with swapped attention kernels.

Tokenizers against hand-computed examples; every backbone x kernel trains (forward + backward)
on a batch of cells with different gene sets; padding never changes a real cell's output; the gene
graph reaches the kernels with the right orientation; the annotator learns with a graph kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scfmbench import InputError
from scfmbench.annotation.transformer import BACKBONES, annotate_transformer
from scfmbench.graphs.build import GeneGraph, build_gene_graph, save_graph
from scfmbench.metrics import macro_f1
from scfmbench.models.geneformer import GeneformerClassifier, GeneformerConfig
from scfmbench.models.scbert import ScBERTClassifier, ScBERTConfig
from scfmbench.models.scgpt import ScGPTClassifier, ScGPTConfig, attach_graph
from scfmbench.models.tokenize import (
    CLS_ID,
    N_SPECIAL,
    PAD_ID,
    TokenGraph,
    gene_medians,
    scbert_bins,
    tokenize_geneformer,
    tokenize_scbert,
    tokenize_scgpt,
)

G = 12
KERNEL_CONFIG = {"full": {}, "genohoption-p": {}, "longformer": {"window": 4}, "performer": {"nb_features": 16}}


def ring_graph(n_genes: int = G) -> GeneGraph:
    """GeneGraph layout (node 0 = CLS, gene g = node g + 1, A[i, j] = 1 iff j -> i): g -> g+1 (directed
    ring) plus g -> g+3, self-loops, CLS joined both ways."""
    n = n_genes + 1
    tgt, src = [], []
    for g in range(n_genes):
        for d in (1, 3):
            src.append(g + 1)
            tgt.append((g + d) % n_genes + 1)
    loops = list(range(n))
    cls_t, cls_s = list(range(1, n)) + [0] * n_genes, [0] * n_genes + list(range(1, n))
    A = sp.csr_matrix(
        (np.ones(len(tgt) + n + 2 * n_genes, dtype=np.int8), (tgt + loops + cls_t, src + loops + cls_s)), shape=(n, n)
    )
    A.data[:] = 1
    return GeneGraph(adjacency=A, gene_names=np.array([f"G{i}" for i in range(n_genes)]), has_cls=True)


def counts_matrix(seed: int = 0) -> sp.csr_matrix:
    """4 cells with different numbers of expressed genes (3, 12, 7, 5)."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(3.0, (4, G)).astype(np.float32) + 1
    for i, k in enumerate((3, 12, 7, 5)):
        X[i, rng.permutation(G)[k:]] = 0
    return sp.csr_matrix(X)


def build(backbone: str, attention: str, **extra):
    common = dict(
        n_genes=G,
        n_classes=3,
        d_model=16,
        n_heads=2,
        d_hidden=32,
        n_layers=2,
        dropout=0.0,
        attention=attention,
        attention_config=KERNEL_CONFIG[attention],
        **extra,
    )
    model = {
        "scgpt": lambda: ScGPTClassifier(ScGPTConfig(**common, n_bins=11)),
        "geneformer": lambda: GeneformerClassifier(GeneformerConfig(**common, max_position=64)),
        "scbert": lambda: ScBERTClassifier(ScBERTConfig(**common)),
    }[backbone]()
    attach_graph(model, TokenGraph.from_gene_graph(ring_graph()))
    return model


def tokens(backbone: str, X: sp.csr_matrix):
    logX = sp.csr_matrix(np.log1p(X.toarray() / X.sum(1).A * 1e4))
    if backbone == "scgpt":
        return tokenize_scgpt(logX, n_bins=11, max_len=64, rng=np.random.default_rng(0))
    if backbone == "geneformer":
        return tokenize_geneformer(X, gene_medians(X), max_len=64)
    return tokenize_scbert(logX)


# ---------------------------------------------------------------------------------------------
# tokenizers


def test_rank_value_encoding_by_hand():
    counts = sp.csr_matrix(np.array([[4, 0, 1, 5, 0], [0, 2, 2, 0, 0], [1, 1, 0, 2, 0]], dtype=np.float32))
    # normalized (x 1e4 / total): [4000, 0, 1000, 5000], [0, 5000, 5000, 0], [2500, 2500, 0, 5000]
    medians = gene_medians(counts)
    np.testing.assert_allclose(medians[:4], [3250.0, 3750.0, 3000.0, 5000.0])
    assert np.isnan(medians[4])  # never expressed in the reference cells
    # scores: cell 0 g0 1.23, g3 1.0, g2 0.33; cell 1 g2 1.67, g1 1.33; cell 2 g3 1.0, g0 0.77, g1 0.67
    cells = tokenize_geneformer(counts, medians, max_len=10)
    expect = [
        [CLS_ID, 0 + 2, 3 + 2, 2 + 2],
        [CLS_ID, 2 + 2, 1 + 2, PAD_ID],
        [CLS_ID, 3 + 2, 0 + 2, 1 + 2],
    ]  # gene g -> token g + 2
    assert cells.gene_ids.tolist() == expect
    assert cells.padding.tolist() == [[False] * 4, [False] * 3 + [True], [False] * 4]
    top2 = tokenize_geneformer(counts, medians, max_len=2)  # truncation keeps the top ranks
    assert top2.gene_ids.tolist() == [r[:3] for r in expect]
    # a gene with no median is left out even where a new cell expresses it
    new = tokenize_geneformer(sp.csr_matrix(np.array([[0, 0, 0, 1, 50]], dtype=np.float32)), medians, max_len=10)
    assert new.gene_ids.tolist() == [[CLS_ID, 3 + N_SPECIAL]]


def test_scbert_bins_by_hand():
    x = np.array([[0.0, 0.5, 1.0, 3.0, 200.0, 1000.0]])  # normalized counts; log2(1 + x) = 0, .58, 1, 2, 7.65, 9.97
    bins = scbert_bins(sp.csr_matrix(np.log1p(x)), n_bins=7)
    assert bins.tolist() == [[0, 0, 1, 2, 7, 7]]
    cells = tokenize_scbert(sp.csr_matrix(np.log1p(x)))
    assert cells.gene_ids.tolist() == [[CLS_ID] + [g + N_SPECIAL for g in range(6)]]
    assert cells.value_ids.tolist() == [[0, 0, 0, 1, 2, 7, 7]] and not cells.padding.any()


def test_token_graph_orientation_and_cls():
    """Token of gene h attends to gene g's token iff the GeneGraph has g -> h (A[h+1, g+1] = 1)."""
    graph = ring_graph()
    tg = TokenGraph.from_gene_graph(graph)
    genes = [5, 2, 6, 3, 8]  # a cell's genes in token order (Geneformer's rank order, say)
    ids = torch.tensor([[CLS_ID] + [g + N_SPECIAL for g in genes] + [PAD_ID, PAD_ID]])
    allowed = tg.pattern(ids).to_dense()[0]  # allowed[i, j]: token i attends to token j
    A = graph.adjacency.toarray()
    nodes = [0] + [g + 1 for g in genes]
    n = len(nodes)
    for i in range(n):
        for j in range(n):
            assert bool(allowed[i, j]) == bool(A[nodes[i], nodes[j]]), (i, j)
    assert not allowed[:, n:].any() and not allowed[n:].any()  # padding has no edges
    assert allowed[0, :n].all() and allowed[:n, 0].all()  # CLS joined to every gene
    assert (
        allowed[1 + genes.index(6), 1 + genes.index(5)] and not allowed[1 + genes.index(5), 1 + genes.index(6)]
    )  # 5 -> 6 only
    # a graph without a CLS node: CLS becomes a global token
    no_cls = TokenGraph(graph.adjacency.T.tocsr()[1:, 1:], cls_node=False)
    allowed2 = no_cls.pattern(ids).to_dense()[0]
    assert torch.equal(allowed2[:n, :n], allowed[:n, :n])


def test_multigraph_parallel_edges_count_twice_in_the_softmax():
    """graphs.multigraph: an edge of multiplicity m weighs m exp(s) in the softmax, as m parallel
    edges in DGL's edge_softmax (GenoHoption's graphs); the reference is dense PPR with counts."""
    from scfmbench.models.attention import build_kernel

    ring = ring_graph()
    A = ring.adjacency.toarray().astype(np.int8)
    A[A != 0] = 1 + (np.arange((A != 0).sum()) % 3 == 0)  # every third edge doubled
    graph = GeneGraph(adjacency=sp.csr_matrix(A), gene_names=ring.gene_names, has_cls=True, params={"multigraph": True})
    tg = TokenGraph.from_gene_graph(graph)
    genes = [5, 2, 6, 3, 8, 4]
    ids = torch.tensor([[CLS_ID] + [g + N_SPECIAL for g in genes]])
    nodes = [0] + [g + 1 for g in genes]
    m = torch.tensor(A[np.ix_(nodes, nodes)], dtype=torch.float64)  # m[i, j]: multiplicity of token j -> token i
    assert (m == 2).any()
    assert tg.mean_degree() == A.sum() / A.shape[0]
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, len(nodes), 4, generator=gen, dtype=torch.float64) for _ in range(3))
    w = m * torch.exp(q @ k.transpose(-1, -2) / 2.0)  # (1, H, L, L); sqrt(D) = 2
    a = w / w.sum(-1, keepdim=True)
    h = v
    for _ in range(6):
        h = 0.75 * a @ h + 0.25 * v
    kernel = build_kernel("genohoption-p")
    torch.testing.assert_close(kernel(q, k, v, edges=tg.pattern(ids)), h, rtol=0, atol=1e-10)
    plain = TokenGraph.from_gene_graph(
        GeneGraph(adjacency=sp.csr_matrix(A != 0).astype(np.int8), gene_names=ring.gene_names, has_cls=True)
    )
    assert not torch.allclose(kernel(q, k, v, edges=plain.pattern(ids)), h)  # deduplicated: a different result


# ---------------------------------------------------------------------------------------------
# backbones x kernels


@pytest.mark.parametrize("attention", list(KERNEL_CONFIG))
@pytest.mark.parametrize("backbone", ["scgpt", "geneformer", "scbert"])
def test_forward_backward(backbone, attention):
    torch.manual_seed(0)
    model = build(backbone, attention)
    cells = tokens(backbone, counts_matrix())
    batch = cells.batch(torch.arange(4))
    if backbone != "scbert":
        assert batch.padding.sum(1).tolist() == [9, 0, 5, 7]  # different gene sets, padded
    logits = model(batch)
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    qkv = [g for n, g in grads.items() if n.endswith("self_attn.qkv.weight")]
    assert len(qkv) == 2 and all(g.abs().sum() > 0 for g in qkv)


@pytest.mark.parametrize("attention", list(KERNEL_CONFIG))
@pytest.mark.parametrize("backbone", ["scgpt", "geneformer", "scbert"])
def test_bf16_autocast_step_matches_float32(backbone, attention):
    """amp 'bf16' (scGPT fine-tunes under AMP): the same loss as float32 to bf16's precision,
    finite gradients close to float32's, and autocast really on (bf16 activations)."""
    from scfmbench.train import autocast

    torch.manual_seed(0)
    model = build(backbone, attention)
    batch = tokens(backbone, counts_matrix()).batch(torch.arange(4))
    y = torch.tensor([0, 1, 2, 0])
    losses, grads = {}, {}
    for amp in (None, "bf16"):
        model.zero_grad()
        with autocast("cpu", amp):
            logits = model(batch)
        assert logits.dtype == (torch.bfloat16 if amp else torch.float32)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        losses[amp] = loss.item()
        grads[amp] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert torch.isfinite(grads["bf16"]).all()
    assert abs(losses["bf16"] - losses[None]) < 0.03 * abs(losses[None]) + 1e-3
    assert torch.nn.functional.cosine_similarity(grads["bf16"], grads[None], dim=0) > 0.98


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_annotator_trains_under_amp(tiny_prepared, amp):
    """fit_classifier's mixed precision (fp16 with a GradScaler) end to end; the option is recorded."""
    pred, record = annotate_transformer(
        tiny_prepared,
        backbone="scgpt",
        attention="genohoption-p",
        seed=0,
        epochs=2,
        amp=amp,
        graph=_graph_of(tiny_prepared),
    )
    assert record["train"]["amp"] == amp and np.isfinite(record["history"]["train_loss"]).all()
    with pytest.raises(InputError, match="amp must be one of"):
        annotate_transformer(tiny_prepared, backbone="scgpt", attention="full", seed=0, epochs=1, amp="fp8")


@pytest.mark.parametrize("cell_embedding", ["cls", "avg-pool"])
@pytest.mark.parametrize("attention", list(KERNEL_CONFIG))
@pytest.mark.parametrize("backbone", ["scgpt", "geneformer"])
def test_padding_never_changes_real_outputs(backbone, attention, cell_embedding):
    torch.manual_seed(0)
    model = build(backbone, attention, cell_embedding=cell_embedding).eval()
    cells = tokens(backbone, counts_matrix())
    with torch.no_grad():
        together = model(cells.batch(torch.arange(4)))
        alone = torch.cat([model(cells.batch(torch.tensor([i]))) for i in range(4)])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
        # garbage in padded slots changes nothing either
        batch = cells.batch(torch.arange(4))
        batch.value_ids[batch.padding] = 3
        batch.gene_ids[batch.padding] = PAD_ID
        torch.testing.assert_close(model(batch), alone, atol=1e-5, rtol=1e-5)


def test_graph_kernel_needs_a_graph():
    model = build("scgpt", "genohoption-p")
    attach_graph(model, None)
    with pytest.raises(InputError, match="gene graph"):
        model(tokens("scgpt", counts_matrix()).batch(torch.arange(2)))


def test_graph_changes_what_genohoption_sees():
    """With one-hop attention, dropping the ring's edges changes the output (the graph is used)."""
    torch.manual_seed(0)
    model = build("geneformer", "genohoption-p").eval()
    batch = tokens("geneformer", counts_matrix()).batch(torch.arange(4))
    real = ~batch.padding
    with torch.no_grad():
        ring = model.hidden_states(batch)[real]
        bare = ring_graph()
        loops_and_cls = sp.csr_matrix(
            bare.adjacency.toarray()
            * (np.eye(G + 1) + (np.arange(G + 1) == 0)[:, None] + (np.arange(G + 1) == 0)[None])
        )
        attach_graph(
            model,
            TokenGraph.from_gene_graph(GeneGraph(adjacency=loops_and_cls, gene_names=bare.gene_names, has_cls=True)),
        )
        assert not torch.allclose(model.hidden_states(batch)[real], ring, atol=1e-3)


@pytest.mark.parametrize(
    "cls_node,multigraph,cls_token",
    [(True, False, True), (False, False, True), (True, True, True), (False, False, False)],
)
def test_token_graph_cell_cache_gives_graph_patterns_exactly(cls_node, multigraph, cls_token):
    """TokenGraph keeps each cell's edges and assembles later batches from them: every batch's
    pattern equals graph_pattern on the batch (called here directly, as before the cache), tensor
    for tensor, whatever the batch's padded length; a cell whose tokens change is not served the
    old edges; the cache holds one entry per distinct cell."""
    from scfmbench.models.attention import graph_pattern

    rng = np.random.default_rng(0)
    n_genes = 40
    a = sp.random(n_genes + int(cls_node), n_genes + int(cls_node), density=0.2, random_state=1, format="csr")
    a.data[:] = rng.integers(1, 3, a.nnz) if multigraph else 1  # multigraph: edge multiplicities
    graph = TokenGraph(a, cls_node=cls_node, multigraph=multigraph, cls_token=cls_token)
    genes = [np.array([], dtype=np.int64)] + [rng.permutation(n_genes)[: rng.integers(1, 15)] for _ in range(9)]
    other = np.setdiff1d(np.arange(n_genes), genes[3])[0]
    genes.append(np.r_[genes[3][:-1], other])  # cell 3 with its last gene changed
    cells = [np.r_[[CLS_ID] if cls_token else [], g + N_SPECIAL].astype(np.int64) for g in genes]
    seen = set()
    for _ in range(8):
        chosen = rng.choice(len(cells), 5, replace=False)
        L = max(1, max(len(cells[i]) for i in chosen) + int(rng.integers(0, 3)))  # extra padding at random
        ids = torch.full((5, L), PAD_ID, dtype=torch.long)
        for row, i in enumerate(chosen):
            ids[row, : len(cells[i])] = torch.as_tensor(cells[i])
        seen.update(int(i) for i in chosen)
        got = graph.pattern(ids)
        adjacency = (
            graph._torch["cpu"] if multigraph else graph.adjacency
        )  # a multigraph's edges repeated by multiplicity
        want = graph_pattern(
            adjacency,
            graph.node_index(ids),
            n_global=int(cls_token and not cls_node),
            self_loops=not multigraph or not cls_node,
            dedup=not multigraph,
        )
        assert got.n_nodes == want.n_nodes == L
        for name in ("src", "dst", "valid"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        # src_order: equal on the valid slots, the only ones the kernels read (an argsort orders
        # the empty slots' equal sentinel keys arbitrarily)
        assert torch.equal(
            got.src_order.sort(1).values, torch.arange(got.src.shape[1]).expand_as(got.src)
        )  # a permutation per row
        n = want.valid.sum(1)
        for b in range(len(n)):
            assert torch.equal(got.src_order[b, : n[b]], want.src_order[b, : n[b]])
    assert len(graph._cells) == len(seen)  # one entry per distinct cell, whatever its padding


# ---------------------------------------------------------------------------------------------
# the annotator


@pytest.fixture(scope="module")
def tiny_prepared():
    from conftest import make_raw

    from scfmbench.data.prepare import prepare_dataset

    return prepare_dataset(make_raw(n_cells=240, n_genes=24), seed=0)


def _f1(adata, pred):
    test = (adata.obs["split"] == "test").to_numpy()
    return macro_f1(adata.obs["cell_type"].astype(str).to_numpy()[test], pred)


def _majority_f1(adata):
    from scfmbench.annotation.controls import majority

    return _f1(adata, majority(adata, seed=0))


SMALL = dict(
    d_model=32,
    n_layers=1,
    n_heads=2,
    d_hidden=64,
    epochs=8,
    batch_size=16,
    lr=3e-3,
    patience=8,
    kernel_config={"longformer": {"window": 8}, "performer": {"nb_features": 32}},
)


@pytest.mark.parametrize("method", ["geneformer-full", "scgpt-genohoption-p", "scbert-performer"])
def test_annotator_learns(tiny_prepared, method, tmp_path):
    backbone, _, attention = method.partition("-")
    adata = tiny_prepared
    graph = None
    if attention == "genohoption-p":
        train = (adata.obs["split"] == "train").to_numpy()
        g = build_gene_graph(adata.var_names, adata.X[train], [], use_grn=False)
        save_graph(g, tmp_path / "full.npz")
        graph = str(tmp_path / "full.npz")  # as the workflow passes it
    pred, record = annotate_transformer(adata, backbone=backbone, attention=attention, seed=0, graph=graph, **SMALL)
    assert _f1(adata, pred) > _majority_f1(adata) + 0.4
    assert record["backbone"] == backbone and record["attention"] == attention
    assert (record["graph"] is not None) == (graph is not None)
    assert record["graph"] is None or record["graph"]["n_nodes"] == adata.n_vars + 1
    assert record["history"]["train_loss"][-1] < record["history"]["train_loss"][0]


def test_annotator_input_errors(tiny_prepared):
    with pytest.raises(InputError, match="runs on a gene graph"):
        annotate_transformer(tiny_prepared, backbone="geneformer", attention="onehop", seed=0, epochs=1)
    wrong = ring_graph()  # 12 genes named G0..G11, the dataset has 24
    with pytest.raises(InputError, match="var_names"):
        annotate_transformer(tiny_prepared, backbone="scgpt", attention="genohoption-p", seed=0, graph=wrong, epochs=1)
    with pytest.raises(InputError, match="unknown backbone"):
        annotate_transformer(tiny_prepared, backbone="hyena", attention="full", seed=0)
    with pytest.raises(InputError, match="unknown kernels"):
        annotate_transformer(
            tiny_prepared, backbone="scgpt", attention="full", seed=0, kernel_config={"longfromer": {"window": 8}}
        )
    with pytest.raises(InputError, match="allowed keys"):
        annotate_transformer(tiny_prepared, backbone="scbert", attention="performer", seed=0, d_modle=8)
    assert set(BACKBONES) == {"scgpt", "geneformer", "scbert", "scfoundation"}


def test_annotation_run_seed_reaches_random_kernels(tiny_prepared):
    """The run seed is the seed of every random pattern and projection, recorded in run.json's model."""
    for attention, extra in (("bigbird", {}), ("diffuser", {"n_random": 2}), ("performer", {"nb_features": 8})):
        seeds = []
        for seed in (0, 1):
            _, record = annotate_transformer(
                tiny_prepared,
                backbone="scgpt",
                attention=attention,
                seed=seed,
                epochs=1,
                d_model=8,
                n_heads=2,
                d_hidden=8,
                kernel_config={attention: {"window": 4, **extra} if attention != "performer" else extra},
            )
            seeds.append(record["model"]["attention_config"]["seed"])
        assert seeds == [0, 1], attention
    _, record = annotate_transformer(
        tiny_prepared,
        backbone="scgpt",
        attention="bigbird",
        seed=2,
        epochs=1,
        d_model=8,
        n_heads=2,
        d_hidden=8,
        kernel_config={"bigbird": {"window": 4, "seed": 10}},
    )
    assert record["model"]["attention_config"]["seed"] == 12  # a configured seed is an offset to the run seed


def _graph_of(adata) -> GeneGraph:
    train = (adata.obs["split"] == "train").to_numpy()
    return build_gene_graph(adata.var_names, adata.X[train], [], use_grn=False)


def test_geneformer_prepended_cls_from_scratch(tiny_prepared):
    """cls_token 'prepended' trains from scratch with genes at positions 0..n-1 (max_len may fill
    every position); null (the schema default) keeps the config's 'input'."""
    _, record = annotate_transformer(
        tiny_prepared,
        backbone="geneformer",
        attention="genohoption-p",
        seed=0,
        epochs=1,
        max_len=8,
        max_position=8,
        cls_token="prepended",
        graph=_graph_of(tiny_prepared),
    )
    assert record["model"]["cls_token"] == "prepended"
    _, record = annotate_transformer(
        tiny_prepared, backbone="geneformer", attention="full", seed=0, epochs=1, cls_token=None
    )
    assert record["model"]["cls_token"] == "input"
    with pytest.raises(InputError, match="exceeds max_position"):
        annotate_transformer(
            tiny_prepared, backbone="geneformer", attention="full", seed=0, epochs=1, max_len=8, max_position=8
        )


def test_kernel_config_sizes_each_kernel(tiny_prepared):
    """One backbone entry carries options for several kernels; each run takes its kernel's entry."""
    _, record = annotate_transformer(
        tiny_prepared,
        backbone="geneformer",
        attention="longformer",
        seed=0,
        epochs=1,
        kernel_config={"longformer": {"window": 8}, "bigbird": {"n_random": 2}},
    )
    assert record["model"]["attention_config"] == {"window": 8}
    _, record = annotate_transformer(
        tiny_prepared,
        backbone="geneformer",
        attention="full",
        seed=0,
        epochs=5,
        max_steps=3,
        kernel_config={"longformer": {"window": 8}},
    )
    assert record["model"]["attention_config"] == {} and record["train"]["epochs_limit"] == 1


@pytest.mark.parametrize("attention", ["bigbird", "diffuser"])
def test_window_mean_degree_comes_from_the_datasets_graph(tiny_prepared, tmp_path, attention):
    """GenoHoption's official BigBird/Diffuser: window = the gene graph's mean degree, per dataset."""
    from scfmbench.annotation.transformer import reads_graph
    from scfmbench.models.tokenize import TokenGraph

    adata = tiny_prepared
    train = (adata.obs["split"] == "train").to_numpy()
    g = build_gene_graph(adata.var_names, adata.X[train], [], use_grn=False, top_h=10, delta=0.0)
    save_graph(g, tmp_path / "full.npz")
    # in-degree by hand: every gene's top-10 partners + itself + <cls>; <cls> gets every gene + itself
    A = g.adjacency
    assert A.nnz == adata.n_vars * (10 + 1 + 1) + adata.n_vars + 1
    assert TokenGraph.from_gene_graph(g).mean_degree() == A.nnz / A.shape[0] == 313 / 25  # 12.52
    expected = 14  # rounded up to even (GenoHoption's code: mean degree 13 -> window 14)
    config = {attention: {"window": "mean_degree"}}
    assert reads_graph({"kernel_config": config}, attention) and not reads_graph(
        {"kernel_config": {attention: {"window": 8}}}, attention
    )
    _, record = annotate_transformer(
        adata,
        backbone="scgpt",
        attention=attention,
        seed=0,
        epochs=1,
        graph=str(tmp_path / "full.npz"),
        kernel_config=config,
    )
    assert record["model"]["attention_config"]["window"] == expected
    assert record["graph"]["mean_degree"] == pytest.approx(A.nnz / A.shape[0])
    with pytest.raises(InputError, match="has window: mean_degree"):
        annotate_transformer(adata, backbone="scgpt", attention=attention, seed=0, epochs=1, kernel_config=config)


# ---------------------------------------------------------------------------------------------
# fidelity to the released code: scBERT's Performer, scFoundation's embedding and fine-tuning head


def test_scbert_has_no_qkv_bias_as_performer_lm():
    """performer-pytorch's PerformerLM (scBERT's model, TencentAILabHealthcare/scBERT
    performer_pytorch.py) builds to_q/to_k/to_v with qkv_bias=False and to_out with a bias."""
    model = ScBERTClassifier(ScBERTConfig(n_genes=G, n_classes=3, d_model=8, n_heads=2, n_layers=2, dim_head=4))
    for layer in model.encoder.layers:
        assert layer.self_attn.qkv.bias is None
        assert layer.self_attn.out.bias is not None
    # per layer: q/k/v 8 -> 3 x 2 heads x 4 without bias, out 8 -> 8 with bias
    attn = sum(p.numel() for p in model.encoder.layers[0].self_attn.parameters())
    assert attn == 8 * 24 + (8 * 8 + 8)


def _scf_cells(n_cells=3, seed=0):
    from scfmbench.models.scfoundation import tokenize_scfoundation

    rng = np.random.default_rng(seed)
    X = rng.random((n_cells, G)) * (rng.random((n_cells, G)) < 0.5) * 3.0
    X[:, 0] = 1.0  # every cell expresses a gene
    return tokenize_scfoundation(X, np.full(n_cells, 2000.0) * np.arange(1, n_cells + 1))


def test_scfoundation_all_embedding_is_last_second_to_last_max_mean():
    """get_embedding.py (pool_type 'all', one cell at a time: no padding): concat(geneemb[:, -1],
    geneemb[:, -2], max and mean of geneemb[:, :-2]) over the encoder output, whose last token is
    S = log10(total) and second-to-last T."""
    from scfmbench.models.scfoundation import ScFoundation, ScFoundationConfig

    torch.manual_seed(0)
    model = ScFoundation(ScFoundationConfig(n_genes=G, n_classes=3, d_model=8, n_heads=2)).eval()
    cells = _scf_cells()
    with torch.no_grad():
        got = model.cell_embedding(cells)
        for i in range(len(cells.gene_ids)):
            one = type(cells)(cells.gene_ids[i : i + 1], cells.value_ids[i : i + 1], cells.padding[i : i + 1])
            h, index, pad = model.encode(one)
            assert not pad.any() and model.values(one)[0, index[0, -1]] == pytest.approx(
                np.log10(2000.0 * (i + 1)), abs=1e-3
            )  # S last
            geneemb = h[0]
            ref = torch.cat([geneemb[-1], geneemb[-2], geneemb[:-2].max(0).values, geneemb[:-2].mean(0)])
            assert torch.allclose(got[i], ref, atol=1e-5)


def test_scfoundation_finetune_head_as_finetune_model():
    """head='finetune' (finetune_model.py): encoder over the non-zero genes only (no T, S), max over
    its states, BatchNorm1d(affine=False, eps=1e-6), Linear(D, 256) -> ReLU -> Linear(256, classes)."""
    from scfmbench.models.scfoundation import ScFoundation, ScFoundationConfig

    torch.manual_seed(0)
    model = ScFoundation(ScFoundationConfig(n_genes=G, n_classes=3, d_model=8, n_heads=2, head="finetune")).eval()
    assert [type(m).__name__ for m in model.classifier] == ["Linear", "ReLU", "Linear"] and model.classifier[
        0
    ].out_features == 256
    assert not model.head_norm.affine and model.head_norm.eps == 1e-6
    cells = _scf_cells()
    model.head_norm.running_mean.fill_(0.5)  # eval BatchNorm reads its running statistics
    model.head_norm.running_var.fill_(4.0)
    with torch.no_grad():
        got = model(cells)
        for i in range(len(cells.gene_ids)):
            one = type(cells)(cells.gene_ids[i : i + 1], cells.value_ids[i : i + 1], cells.padding[i : i + 1])
            values = model.values(one)[0, :G]
            genes = torch.nonzero(values > 0).ravel()
            # the encoder by hand on the gene tokens alone
            x = model.token_emb(values[genes][None]) + model.pos_emb(genes[None])
            h = model.encoder_norm(
                model.encoder(x, torch.zeros(1, len(genes), dtype=torch.bool), genes[None] + N_SPECIAL)
            )
            pooled = (h[0].max(0).values - 0.5) / np.sqrt(4.0 + 1e-6)
            assert torch.allclose(got[i], model.classifier(pooled), atol=1e-5)


@pytest.mark.parametrize(
    "freeze,trained",
    [("encoder", {"token_emb", "pos_emb", "encoder.layers.1"}), ("encoder_embeddings", {"encoder.layers.1"})],
)
def test_scfoundation_freeze_keeps_the_second_to_last_encoder_layer(freeze, trained):
    """finetune_model.py (frozenmore=True: embeddings too) and MAM (embeddings trained): every encoder
    parameter frozen but transformer_encoder[-2]'s, the encoder norm included."""
    from scfmbench.models.scfoundation import ScFoundation, ScFoundationConfig

    model = ScFoundation(
        ScFoundationConfig(n_genes=G, n_classes=3, d_model=8, n_heads=2, n_layers=3, head="finetune", freeze=freeze)
    )
    assert all(p.requires_grad for p in model.parameters())  # pretraining: nothing frozen
    model.freeze_for_finetuning()
    encoder_side = ("token_emb.", "pos_emb.", "encoder.", "encoder_norm.")
    grads = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith(encoder_side)}
    assert {".".join(n.split(".")[:3]) if n.startswith("encoder.layers") else n.split(".")[0] for n in grads} == trained
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith(("classifier.", "head_norm.")))
    with pytest.raises(InputError, match="n_layers >= 2"):
        ScFoundationConfig(n_genes=G, n_classes=3, n_layers=1, freeze=freeze)


def test_annotation_applies_scfoundation_freeze(tiny_prepared, monkeypatch):
    from scfmbench.models.scfoundation import ScFoundation

    calls = []
    monkeypatch.setattr(ScFoundation, "freeze_for_finetuning", lambda self: calls.append(self.cfg.freeze))
    annotate_transformer(
        tiny_prepared,
        backbone="scfoundation",
        attention="full",
        seed=0,
        d_model=8,
        n_heads=2,
        n_layers=2,
        head="finetune",
        freeze="encoder",
        epochs=1,
        max_steps=2,
    )
    assert calls == ["encoder"]
