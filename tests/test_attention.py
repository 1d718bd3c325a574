"""Attention kernels: one contract over the registry, references for the sparse and diffusion paths.

Every registered kernel gets shape, padding, gradient and determinism tests for free; every
kernel built on :class:`GraphDiffusionAttention` is also checked against dense attention under
the equivalent boolean mask. Diffusion is checked against explicit matrix powers and, for many
steps, the closed forms. All on tiny float64 inputs.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from scfmbench import InputError
from scfmbench.models.attention import (
    KERNELS,
    EdgePattern,
    MultiHeadAttention,
    bigbird_pattern,
    build_kernel,
    graph_pattern,
    window_pattern,
)
from scfmbench.models.attention.genohoption import GraphDiffusionAttention, dense_reference, diffusion_coefficients

# small configs so that the built-in patterns are really sparse at L = 12
TINY_CONFIG = {
    "longformer": dict(window=4),
    "bigbird": dict(window=4, n_random=2),
    "diffuser": dict(window=4),
    "performer": dict(nb_features=64),
}
# performer's feature stabilisers are detached (as in performer-pytorch): exact gradients need eps = 0
GRADCHECK_CONFIG = {"performer": dict(eps=0.0)}
B, H, L, D, G = 3, 2, 12, 4, 30
LENGTHS = (12, 8, 5)  # real tokens per cell; the rest is padding


def make_kernel(name: str, **extra):
    return build_kernel(name, **{**TINY_CONFIG.get(name, {}), **extra})


def is_sparse(name: str) -> bool:
    return issubclass(KERNELS[name], GraphDiffusionAttention)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny problems: OpenMP threads only add spin-waiting on a shared machine (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def gene_graph():
    rng = np.random.default_rng(0)
    n = 120
    return sp.csr_matrix((np.ones(n), (rng.integers(0, G, n), rng.integers(0, G, n))), shape=(G, G))


@pytest.fixture(scope="module")
def batch(gene_graph):
    """q, k, v (B, H, L, D) float64, padding mask, and per-cell gene sets (token 0 is CLS)."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, L, D, generator=gen, dtype=torch.float64) for _ in range(3))
    kpm = torch.arange(L)[None] >= torch.tensor(LENGTHS)[:, None]  # (B, L) True = padding
    genes = torch.stack([torch.randperm(G, generator=gen)[:L] for _ in range(B)])  # different per cell
    genes = genes.masked_fill(kpm, -1)
    genes[:, 0] = -1  # CLS position: global token, gene index ignored
    edges = graph_pattern(gene_graph, genes, n_global=1)
    return dict(q=q, k=k, v=v, kpm=kpm, genes=genes, edges=edges)


def run(kernel, data, **overrides):
    d = {**data, **overrides}
    return kernel(d["q"], d["k"], d["v"], key_padding_mask=d["kpm"], edges=d["edges"] if kernel.needs_edges else None)


def official_adjacency(n: int, w: int, *, n_global: int = 0, max_len: int = 2048) -> torch.Tensor:
    """(n, n) bool: GenoHoption's ``create_adj_mat`` (utils.py) written as there: a loop over
    blocks of w starting every w/2 on a max_len x max_len matrix, its global token
    (``adj[0, :] = adj[:, 0] = 1``) when ``n_global``, and each batch's top-left block. Independent
    of edges.py."""
    adj = np.zeros((max_len, max_len), dtype=bool)
    for m in range(max_len // (w // 2) - 1):
        start = m * w // 2
        end = min(start + w, max_len)
        adj[start:end, start:end] = True
    for g in range(n_global):
        adj[g, :] = adj[:, g] = True
    return torch.from_numpy(adj[:n, :n])


def induced_subgraph_mask(gene_graph, genes: torch.Tensor, kpm: torch.Tensor) -> torch.Tensor:
    """Slow reference with Python loops: edge j -> i iff graph edge gene_j -> gene_i, a self-loop,
    or one end is the CLS token (position 0); nothing touches padding."""
    adj = gene_graph.toarray() != 0
    out = torch.zeros(B, L, L, dtype=torch.bool)
    for b in range(B):
        for i in range(L):
            for j in range(L):
                if kpm[b, i] or kpm[b, j]:
                    continue
                out[b, i, j] = i == 0 or j == 0 or i == j or bool(adj[genes[b, j], genes[b, i]])
    return out


def allowed_mask(kernel, data, gene_graph) -> torch.Tensor:
    """(B, L, L) keys each query may attend to, built without the kernel's own ``pattern()``:
    the induced subgraph for graph kernels, the official window (+ global) adjacency otherwise
    (kernels with random edges are built without them here: see the BigBird tests)."""
    if kernel.needs_edges:
        return induced_subgraph_mask(gene_graph, data["genes"], data["kpm"])
    assert not getattr(kernel, "n_random", 0) and not getattr(kernel, "random_density", 0)
    real = ~data["kpm"]
    return official_adjacency(L, kernel.window, n_global=kernel.n_global)[None] & real[:, :, None] & real[:, None, :]


NO_RANDOM = {"bigbird": dict(n_random=0)}  # the dense references cover window + global; random edges are tested apart


# ---------------------------------------------------------------------------------------------
# contract over the registry


def test_registry_names():
    expected = {
        "full",
        "genohoption",
        "genohoption-p",
        "genohoption-h",
        "onehop",
        "longformer",
        "bigbird",
        "diffuser",
        "performer",
    }
    assert expected <= set(KERNELS)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_shape_and_finite(name, batch):
    out = run(make_kernel(name), batch)
    assert out.shape == (B, H, L, D)
    assert out.dtype == torch.float64
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_padded_inputs_do_not_leak(name, batch):
    kernel = make_kernel(name).eval()
    noise = {key: batch[key] + 5.0 * batch["kpm"][:, None, :, None] * torch.randn_like(batch[key]) for key in "qkv"}
    real = ~batch["kpm"][:, None, :, None].expand(B, H, L, D)
    a, b = run(kernel, batch), run(kernel, batch, **noise)
    assert not torch.equal(noise["k"], batch["k"])
    torch.testing.assert_close(a[real], b[real], rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_gradcheck(name, batch):
    kernel = make_kernel(name, **GRADCHECK_CONFIG.get(name, {}))
    small = {key: batch[key][:2, :1, :, :3].clone().requires_grad_(True) for key in "qkv"}
    data = {**batch, **small, "kpm": batch["kpm"][:2]}
    if kernel.needs_edges:
        data["edges"] = EdgePattern(*(t[:2] for t in (batch["edges"].src, batch["edges"].dst, batch["edges"].valid)), L)
    assert torch.autograd.gradcheck(
        lambda q, k, v: run(kernel, data, q=q, k=k, v=v), (small["q"], small["k"], small["v"])
    )


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_deterministic_in_eval(name, batch):
    a = run(make_kernel(name).eval(), batch)
    b = run(make_kernel(name).eval(), batch)  # a second instance from the same config
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_inside_multihead_module(name, batch):
    mha = MultiHeadAttention(H * D, H, kernel=name, kernel_config=TINY_CONFIG.get(name)).double()
    x = torch.randn(B, L, H * D, dtype=torch.float64)
    y = mha(x, key_padding_mask=batch["kpm"], edges=batch["edges"] if mha.kernel.needs_edges else None)
    y.sum().backward()
    assert y.shape == x.shape and mha.qkv.weight.grad is not None


# ---------------------------------------------------------------------------------------------
# sparse kernels against dense references


@pytest.mark.parametrize("name", sorted(n for n in KERNELS if is_sparse(n)))
def test_sparse_equals_dense_masked_attention(name, batch, gene_graph):
    kernel = make_kernel(name, **NO_RANDOM.get(name, {}))
    expected = dense_reference(
        batch["q"],
        batch["k"],
        batch["v"],
        allowed_mask(kernel, batch, gene_graph),
        diffusion=kernel.diffusion,
        alpha=kernel.alpha,
        t=kernel.t,
        steps=kernel.k,
    )
    torch.testing.assert_close(run(kernel, batch), expected, rtol=0, atol=1e-5)


def test_onehop_equals_sdpa_with_boolean_mask(batch, gene_graph):
    kernel = make_kernel("onehop")
    allowed = allowed_mask(kernel, batch, gene_graph)
    has_key = allowed.any(-1)[:, None, :, None].expand(B, H, L, D)
    sdpa = F.scaled_dot_product_attention(batch["q"], batch["k"], batch["v"], attn_mask=allowed[:, None])
    torch.testing.assert_close(run(kernel, batch)[has_key], sdpa[has_key], rtol=0, atol=1e-10)


def _dense_attention(batch, kernel, gene_graph):
    allowed = allowed_mask(kernel, batch, gene_graph)
    scores = (batch["q"] @ batch["k"].transpose(-1, -2) / math.sqrt(D)).masked_fill(~allowed[:, None], float("-inf"))
    return torch.softmax(scores, -1).nan_to_num(0.0)  # (B, H, L, L)


@pytest.mark.parametrize("diffusion", ["ppr", "heat"])
@pytest.mark.parametrize("steps", [1, 3, 6])
def test_diffusion_equals_explicit_matrix_powers(batch, gene_graph, diffusion, steps):
    kernel = make_kernel("genohoption", diffusion=diffusion, k=steps, alpha=0.3, t=2.0)
    A = _dense_attention(batch, kernel, gene_graph)
    if diffusion == "ppr":  # V_K = ((1-a)^K A^K + a sum_{j<K} (1-a)^j A^j) V  (paper Eq. 9)
        M = (0.7**steps) * torch.linalg.matrix_power(A, steps) + sum(
            0.3 * 0.7**j * torch.linalg.matrix_power(A, j) for j in range(steps)
        )
    else:  # sum_{j<K} e^-t t^j / j! A^j V  (Eq. 11, K terms)
        M = sum(math.exp(-2.0) * 2.0**j / math.factorial(j) * torch.linalg.matrix_power(A, j) for j in range(steps))
    torch.testing.assert_close(run(kernel, batch), M @ batch["v"], rtol=0, atol=1e-10)


def test_diffusion_converges_to_closed_forms(batch, gene_graph):
    eye = torch.eye(L, dtype=torch.float64)
    ppr = make_kernel("genohoption-p", alpha=0.25, k=200)
    A = _dense_attention(batch, ppr, gene_graph)
    closed = 0.25 * torch.linalg.solve(eye - 0.75 * A, batch["v"])  # alpha (I - (1 - alpha) A)^-1 V
    torch.testing.assert_close(run(ppr, batch), closed, rtol=0, atol=1e-10)
    heat = make_kernel("genohoption-h", t=5.0, k=200)
    closed = math.exp(-5.0) * torch.linalg.matrix_exp(5.0 * A) @ batch["v"]  # e^-t exp(tA) V
    torch.testing.assert_close(run(heat, batch), closed, rtol=0, atol=1e-10)


def test_diffusion_coefficients_sum_to_one():
    assert sum(diffusion_coefficients("ppr", alpha=0.25, t=0, k=6)) == pytest.approx(1.0)
    assert sum(diffusion_coefficients("heat", alpha=0, t=5.0, k=60)) == pytest.approx(1.0)
    assert diffusion_coefficients("none", alpha=0, t=0, k=1) == [0.0, 1.0]


def test_graph_kernel_needs_edges(batch):
    with pytest.raises(InputError, match="needs an edge pattern"):
        make_kernel("genohoption")(batch["q"], batch["k"], batch["v"])
    with pytest.raises(InputError):
        make_kernel("genohoption", diffusion="bogus")


# ---------------------------------------------------------------------------------------------
# edge patterns


def test_graph_pattern_is_each_cells_induced_subgraph(batch, gene_graph):
    """Cells carry different gene sets; the reference is :func:`induced_subgraph_mask`."""
    genes, kpm = batch["genes"], batch["kpm"]
    expected = induced_subgraph_mask(gene_graph, genes, kpm)
    assert torch.equal(batch["edges"].to_dense(), expected)
    assert torch.equal(batch["edges"].to_dense(kpm), expected)
    assert len({tuple(g[g >= 0].tolist()) for g in genes}) == B  # really different gene sets


def test_window_pattern_matches_official_adjacency():
    """``create_adj_mat`` of the official code, cropped to L (with and without the global token)."""
    for w in (4, 8, 14):
        for n in (20, 37, 64):
            for g in (0, 1):
                assert torch.equal(window_pattern(n, w, n_global=g).to_dense()[0], official_adjacency(n, w, n_global=g))


def test_bigbird_pattern_is_seeded():
    a, b, c = bigbird_pattern(50, 4, 3, seed=1), bigbird_pattern(50, 4, 3, seed=1), bigbird_pattern(50, 4, 3, seed=2)
    assert torch.equal(a.to_dense(), b.to_dense()) and not torch.equal(a.to_dense(), c.to_dense())
    kernel = make_kernel("bigbird")
    first = kernel.pattern(50, None, "cpu").to_dense()
    kernel.train()
    assert torch.equal(kernel.pattern(50, None, "cpu").to_dense(), first)


@pytest.mark.parametrize("seed", [0, 3])
def test_bigbird_official_random_density(seed):
    """GenoHoption's BigBird: window + global token 0 (official_adjacency) plus 200 x 2048 random
    entries of the 2048^2 matrix, i.e. each pair with probability 200/2048 (~0.098 L keys per query)."""
    n, w = 700, 14
    kernel = build_kernel("bigbird", window=w, random_density=200 / 2048, seed=seed)
    got = kernel.pattern(n, None, "cpu").to_dense()[0]
    base = official_adjacency(n, w, n_global=1)
    assert torch.equal(got & base, base)  # window and global edges all there
    extra = (got & ~base).sum().item()
    p = 200 / 2048
    expected = p * (~base).sum().item()  # each non-window pair drawn with probability p
    assert abs(extra - expected) < 5 * math.sqrt(expected * (1 - p))
    per_query = got.sum(1).float() - base.sum(1).float()
    assert abs(per_query.mean().item() - p * (n - base.sum(1).float().mean().item())) < 3.0  # about 0.098 L
    # a shorter sequence uses the top-left block (the official batches cut theirs from one matrix)
    assert torch.equal(kernel.pattern(300, None, "cpu").to_dense()[0], got[:300, :300])
    other = (
        build_kernel("bigbird", window=w, random_density=200 / 2048, seed=seed + 1)
        .pattern(n, None, "cpu")
        .to_dense()[0]
    )
    assert not torch.equal(other, got)  # the pattern changes with the seed, as the official set_seed(seed)
    assert kernel.n_random == 0 and build_kernel("bigbird").n_random == 16  # 16 per query when no density is given


@pytest.mark.parametrize("table", [True, False])
@pytest.mark.parametrize("dedup", [True, False])
def test_graph_pattern_rows_match_a_loop_reference(dedup, table, monkeypatch):
    """Every cell's row, slot by slot, against edges listed by Python loops over its token pairs:
    sorted by (dst, src), parallel edges of a repeated CSR column kept once per copy exactly when
    ``dedup`` is False, empty slots at the end, ``src_order`` the (src, dst) order of the valid
    slots; padding tokens and cells without genes included. Both ways of finding a neighbour
    gene's position (the (cell, gene) table, and the sorted search for large B x G)."""
    from scfmbench.models.attention import edges as edges_module

    if not table:
        monkeypatch.setattr(edges_module, "_POSITION_TABLE_MAX", 0)
    rng = np.random.default_rng(1)
    n_genes, Bq, Lq = 15, 4, 11
    a = sp.random(n_genes, n_genes, density=0.3, random_state=2, format="csr")
    indptr, indices = a.indptr, a.indices
    with warnings.catch_warnings():  # "CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        twice = torch.sparse_csr_tensor(
            torch.as_tensor(np.r_[0, np.cumsum(2 * np.diff(indptr))]),
            torch.as_tensor(np.repeat(indices, 2)),
            torch.ones(2 * len(indices)),
            size=a.shape,
            check_invariants=False,
        )  # each edge twice
    genes = np.full((Bq, Lq), -1)
    for b, n in enumerate((0, 4, 10, 7)):  # cell 0: CLS only
        genes[b, 1 + np.sort(rng.choice(Lq - 1, n, replace=False))] = rng.choice(n_genes, n, replace=False)
    p = graph_pattern(twice, torch.as_tensor(genes), n_global=1, dedup=dedup)
    dense = a.toarray() != 0
    for b in range(Bq):
        want = []
        for i in range(Lq):  # query i (dst)
            for j in range(Lq):  # key j (src)
                real_i, real_j = i == 0 or genes[b, i] >= 0, j == 0 or genes[b, j] >= 0
                if not (real_i and real_j):
                    continue
                if i == j:
                    want.append((i, j))  # self-loop
                    if i == 0 and not dedup:
                        want += [(0, 0)] * 2  # CLS: the global edges 0 -> 0 and 0 <- 0 as well
                elif i == 0 or j == 0:
                    want += [(i, j)]  # global CLS
                elif dense[genes[b, j], genes[b, i]]:
                    want += [(i, j)] * (1 if dedup else 2)
                if i == j and i > 0 and dense[genes[b, j], genes[b, i]]:
                    want += [] if dedup else [(i, j)] * 2  # the graph's own self-loop, twice
        want.sort()
        n = len(want)
        assert int(p.valid[b].sum()) == n and bool(p.valid[b, :n].all())
        assert list(zip(p.dst[b, :n].tolist(), p.src[b, :n].tolist())) == want
        order = p.src_order[b, :n].tolist()
        assert sorted(order) == list(range(n))
        assert [(p.src[b, s].item(), p.dst[b, s].item()) for s in order] == sorted((j, i) for i, j in want)


def test_patterns_are_canonical():
    p = bigbird_pattern(40, 4, 5, seed=0)
    key = p.dst * 40 + p.src
    assert (key[p.valid].diff() > 0).all()  # sorted by (dst, src), no duplicates
    ordered = (p.src * 40 + p.dst).gather(1, p.src_order)[p.valid.gather(1, p.src_order)]
    assert (ordered.diff() > 0).all()


def test_noncanonical_pattern_gives_the_same_result(batch):
    e = batch["edges"]
    perm = torch.randperm(e.src.shape[1])
    shuffled = EdgePattern(e.src[:, perm], e.dst[:, perm], e.valid[:, perm], L)  # no src_order, unsorted
    kernel = make_kernel("genohoption")
    torch.testing.assert_close(run(kernel, batch, edges=shuffled), run(kernel, batch), rtol=0, atol=1e-12)


def test_from_dense_roundtrip():
    allowed = torch.rand(2, 9, 9) < 0.3
    assert torch.equal(EdgePattern.from_dense(allowed).to_dense(), allowed)


def test_compiled_structure_is_cached_per_mask(batch):
    e = EdgePattern.from_dense(batch["edges"].to_dense())
    s1 = e.compile(batch["kpm"], H)
    assert e.compile(batch["kpm"], H) is s1
    assert e.compile(batch["kpm"].clone(), H) is not s1


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 5, 6, 7])
def test_polynomial_and_its_gradients_equal_explicit_powers(batch, steps):
    """The fast diffusion (states checkpointed, recomputed in segments, SDDMM per power) against
    autograd through explicit dense powers; with and without a gradient for the edge weights."""
    from scfmbench.models.attention.sparse import polynomial

    s = batch["edges"].compile(batch["kpm"], H)
    gen = torch.Generator().manual_seed(steps)
    values = torch.rand(H * s.nnz, generator=gen, dtype=torch.float64)
    x = torch.randn(s.size, D, generator=gen, dtype=torch.float64)
    coeffs = [0.5 ** (j + 1) for j in range(steps + 1)]
    w = torch.randn(s.size, D, generator=gen, dtype=torch.float64)

    v1, x1 = values.clone().requires_grad_(), x.clone().requires_grad_()
    out = polynomial(s, v1, x1, coeffs)
    (out * w).sum().backward()
    v2, x2 = values.clone().requires_grad_(), x.clone().requires_grad_()
    A = torch.sparse_csr_tensor(s.crow.long(), s.col.long(), v2, (s.size, s.size), check_invariants=True).to_dense()
    expected = sum(c * torch.linalg.matrix_power(A, j) @ x2 for j, c in enumerate(coeffs))
    (expected * w).sum().backward()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(v1.grad, v2.grad, rtol=0, atol=1e-12)
    with torch.no_grad():  # no states kept: buffers taken in turn
        torch.testing.assert_close(polynomial(s, values, x, coeffs), expected.detach(), rtol=0, atol=1e-12)
    x3 = x.clone().requires_grad_()  # gradient for x only
    (polynomial(s, values, x3, coeffs) * w).sum().backward()
    torch.testing.assert_close(x3.grad, x2.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("which", ["graph", "window", "noncanonical"])
@pytest.mark.parametrize("padded", [False, True])
def test_compiled_structure_is_the_dense_pattern(batch, which, padded):
    """The CSR arrays (all heads) and their transpose hold exactly the pattern's kept edges."""
    e = batch["edges"]
    if which == "window":
        e = window_pattern(L, 4)
    elif which == "noncanonical":
        perm = torch.randperm(e.src.shape[1], generator=torch.Generator().manual_seed(0))
        e = EdgePattern(e.src[:, perm], e.dst[:, perm], e.valid[:, perm], L)
    kpm = batch["kpm"] if padded else None
    s = e.compile(kpm, H, batch_size=B)
    allowed = e.to_dense(kpm).expand(B, L, L)  # (B, L, L), [b, i, j] = edge j -> i
    dense = torch.block_diag(*[allowed[b] for b in range(B)] * H).double()
    values = torch.arange(1, H * s.nnz + 1, dtype=torch.float64)
    m = s.matrix(values).to_dense()
    assert torch.equal(m != 0, dense != 0)
    torch.testing.assert_close(s.matrix_t(values).to_dense(), m.t(), rtol=0, atol=0)
    assert torch.equal(s.row, m.nonzero()[: s.nnz, 0])


def _official_ppr(q, k, v, allowed, *, alpha, steps, drop=lambda x: x):
    """GenoHoption's gn_attn.py PPR branch with dense tensors: edge softmax over allowed keys,
    dropout on the weights, then ``steps`` x (h = (1 - alpha) A h + alpha v, dropout(h))."""
    scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~allowed[:, None], float("-inf"))
    A = drop(torch.softmax(scores, -1).nan_to_num(0.0))
    h = v
    for _ in range(steps):
        h = drop((1.0 - alpha) * A @ h + alpha * v)
    return h


def test_diffuser_official_preset_is_the_official_baseline(batch):
    """GenoHoption's Diffuser baseline (scGPT_run_all_celltype_window.py, mode 'window'): the window
    adjacency only, PPR with iter_num 6 and alpha 0.25."""
    kernel = build_kernel("diffuser", preset="official", window=4)
    real = ~batch["kpm"]
    allowed = official_adjacency(L, 4)[None] & real[:, :, None] & real[:, None, :]
    expected = _official_ppr(batch["q"], batch["k"], batch["v"], allowed, alpha=0.25, steps=6)
    torch.testing.assert_close(run(kernel, batch), expected, rtol=0, atol=1e-10)
    with pytest.raises(InputError):
        build_kernel("diffuser", preset="nope")


def test_diffuser_paper_preset_is_diffusers_setting():
    """Diffuser (Feng et al. 2022): window 64 + 64 random keys per query + 64 global tokens, PPR
    alpha 0.1 over 5 iterations; checked on the pattern and the output, not on the constants."""
    n = 1000
    kernel = build_kernel("diffuser", preset="paper")
    got = kernel.pattern(n, None, "cpu").to_dense()[0]
    base = official_adjacency(n, 64, n_global=64)
    assert torch.equal(got & base, base)
    extra = (got & ~base).sum(1)
    assert (
        extra.max() <= 64 and extra[64:].float().mean() > 45
    )  # 64 random keys per query (with replacement; ~84% off the window)
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, n, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    expected = _official_ppr(q, k, v, got[None], alpha=0.1, steps=5)
    torch.testing.assert_close(kernel(q, k, v), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["genohoption-p", "genohoption-h", "onehop", "longformer", "diffuser"])
def test_attention_dropout_where_the_official_code_has_it(name, batch, gene_graph, monkeypatch):
    """gn_attn.py drops the edge weights, then the node states after every PPR step and after the
    heat sum (the window baselines are PPR with one step, alpha 0). A stand-in dropout that halves
    its input makes every placement visible in the output."""
    kernel = make_kernel(name, **NO_RANDOM.get(name, {}), dropout=0.3).train()
    monkeypatch.setattr(
        F, "dropout", lambda x, p=0.5, training=True, inplace=False: x * 0.5 if training and p > 0 else x
    )
    allowed = allowed_mask(kernel, batch, gene_graph)
    half = lambda x: 0.5 * x  # noqa: E731
    q, k, v = batch["q"], batch["k"], batch["v"]
    if kernel.diffusion == "heat":
        scores = (q @ k.transpose(-1, -2) / math.sqrt(D)).masked_fill(~allowed[:, None], float("-inf"))
        A = half(torch.softmax(scores, -1).nan_to_num(0.0))
        term, total = math.exp(-kernel.t) * v, math.exp(-kernel.t) * v
        for step in range(1, kernel.k):  # the official loop: h = A h, accumulate t^k / k! h
            term = A @ term
            total = total + math.prod(kernel.t / j for j in range(1, step + 1)) * term
        expected = half(total)
    elif kernel.diffusion == "none":
        expected = _official_ppr(q, k, v, allowed, alpha=0.0, steps=1, drop=half)
    else:
        expected = _official_ppr(q, k, v, allowed, alpha=kernel.alpha, steps=kernel.k, drop=half)
    torch.testing.assert_close(run(kernel, batch), expected, rtol=0, atol=1e-10)
    monkeypatch.undo()
    assert torch.equal(
        run(kernel.eval(), batch), run(make_kernel(name, **NO_RANDOM.get(name, {})), batch)
    )  # no dropout in eval


def test_attention_dropout_defaults_to_the_models():
    """scGPT's attention and GenoHoption's gn_attn drop attention at the model's dropout."""
    for name in ("full", "genohoption-p", "bigbird"):
        assert MultiHeadAttention(8, 2, kernel=name, dropout=0.2).kernel.dropout == 0.2
        assert MultiHeadAttention(8, 2, kernel=name, dropout=0.2, kernel_config={"dropout": 0.0}).kernel.dropout == 0.0
    MultiHeadAttention(8, 2, kernel="performer", dropout=0.2)  # no attention-weight dropout in FAVOR+: nothing to set


def test_head_dim_is_performer_pytorchs_geometry():
    """scBERT's PerformerLM(dim=200, heads=10) keeps performer-pytorch's dim_head=64: 640-wide q, k,
    v and int(64 ln 64) = 266 random features per head."""
    from performer_pytorch import SelfAttention

    theirs = SelfAttention(200, heads=10, dim_head=64)
    ours = MultiHeadAttention(200, 10, kernel="performer", head_dim=64)
    assert ours.qkv.weight.shape == (3 * theirs.to_q.weight.shape[0], 200)
    assert ours.out.weight.shape == theirs.to_out.weight.shape
    x = torch.randn(2, 30, 200)
    assert ours(x).shape == x.shape
    assert ours.kernel.projection(64, "cpu").shape == theirs.fast_attention.projection_matrix.shape


# ---------------------------------------------------------------------------------------------
# performer


def test_performer_matches_performer_pytorch_without_padding(batch):
    from performer_pytorch import FastAttention

    ours = make_kernel("performer")
    theirs = FastAttention(dim_heads=D, nb_features=64).double()
    theirs.projection_matrix.copy_(ours.projection(D, "cpu"))
    torch.testing.assert_close(
        ours(batch["q"], batch["k"], batch["v"]), theirs(batch["q"], batch["k"], batch["v"]), rtol=1e-10, atol=1e-12
    )


def test_performer_padding_equals_truncation(batch):
    """A padded cell gives the same real outputs as the cell cut to its real tokens, whereas
    zeroing the padded keys and values alone (the naive recipe) does not."""
    from performer_pytorch import FastAttention

    kernel = make_kernel("performer")
    b, n = 2, LENGTHS[2]
    q, k, v = (batch[key][b : b + 1] for key in "qkv")
    cut = kernel(q[:, :, :n], k[:, :, :n], v[:, :, :n])
    padded = kernel(q, k, v, key_padding_mask=batch["kpm"][b : b + 1])
    torch.testing.assert_close(padded[:, :, :n], cut, rtol=1e-10, atol=1e-12)
    naive = FastAttention(dim_heads=D, nb_features=64).double()
    naive.projection_matrix.copy_(kernel.projection(D, "cpu"))
    zero = (~batch["kpm"][b : b + 1])[:, None, :, None]
    assert not torch.allclose(naive(q, k * zero, v * zero)[:, :, :n], cut, atol=1e-3)


@pytest.mark.parametrize("padded", [False, True])
def test_performer_gradients_equal_autograd(batch, padded):
    """The hand-written backward pass against autograd through the same features and
    ``performer_pytorch.linear_attention`` (stabilisers constant, eps as configured)."""
    from performer_pytorch.performer_pytorch import linear_attention

    from scfmbench.models.attention.performer import favor_features

    kernel = make_kernel("performer")
    kpm = batch["kpm"] if padded else None
    w = torch.randn(B, H, L, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = {key: batch[key].clone().requires_grad_() for key in "qkv"}
    out = kernel(ours["q"], ours["k"], ours["v"], key_padding_mask=kpm)
    (out * w).sum().backward()
    ref = {key: batch[key].clone().requires_grad_() for key in "qkv"}
    proj = kernel.projection(D, "cpu")
    k, v = ref["k"], ref["v"]
    if padded:
        pad = kpm[:, None, :, None]
        k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)
    qf = favor_features(ref["q"], proj, is_query=True, eps=kernel.eps)
    kf = favor_features(k, proj, is_query=False, key_padding_mask=kpm, eps=kernel.eps)
    if padded:
        den = torch.einsum("bhld,bhd->bhl", qf, kf.sum(dim=-2)).clamp_min(torch.finfo(qf.dtype).tiny)
        expected = torch.einsum("bhde,bhld,bhl->bhle", torch.einsum("bhld,bhle->bhde", kf, v), qf, 1.0 / den)
    else:
        expected = linear_attention(qf, kf, v)
    (expected * w).sum().backward()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    for key in "qkv":
        torch.testing.assert_close(ours[key].grad, ref[key].grad, rtol=1e-10, atol=1e-12)


def test_performer_projection_is_performer_pytorchs():
    from performer_pytorch.performer_pytorch import gaussian_orthogonal_random_matrix

    ours = make_kernel("performer", seed=3).projection(D, "cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        theirs = gaussian_orthogonal_random_matrix(64, D)
    torch.testing.assert_close(ours, theirs)


def test_performer_approximates_full_attention():
    """Relative error well under that of uniform averaging (the no-information baseline)."""
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 64, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    q, k = 0.5 * q, 0.5 * k
    exact = F.scaled_dot_product_attention(q, k, v)
    approx = build_kernel("performer", nb_features=2048)(q, k, v)
    error = (approx - exact).norm() / exact.norm()
    uniform = (v.mean(-2, keepdim=True) - exact).norm() / exact.norm()
    assert error < 0.15 and error < 0.5 * uniform


# ---------------------------------------------------------------------------------------------
# devices and the benchmark


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_cuda_matches_cpu(name, batch):
    kernel = make_kernel(name).eval()
    cuda = {key: batch[key].float().cuda() for key in "qkv"}
    data = {**batch, **cuda, "kpm": batch["kpm"].cuda(), "edges": batch["edges"].to("cuda")}
    out = run(kernel.cuda(), data)
    real = ~batch["kpm"][:, None, :, None].expand(B, H, L, D)
    torch.testing.assert_close(out.double().cpu()[real], run(kernel.cpu(), batch)[real], rtol=1e-4, atol=1e-4)


def test_graph_pattern_accepts_torch_sparse(batch, gene_graph):
    adjacency = torch.sparse_coo_tensor(
        np.vstack(gene_graph.nonzero()), torch.ones(gene_graph.nnz), gene_graph.shape, check_invariants=True
    )
    again = graph_pattern(adjacency, batch["genes"], n_global=1)
    assert torch.equal(again.to_dense(), batch["edges"].to_dense())


def test_benchmark_point_and_csv(tmp_path):
    from scfmbench.bench.attention import COLUMNS, measure_point, write_csv

    opts = dict(batch=1, heads=2, dim=8, degree=4, repeats=1, warmup=1, device="cpu")
    rows = [
        measure_point(name, 64, **opts)
        for name in ("genohoption", "full", "hf-longformer", "performer-pytorch", "hf-bigbird")
    ]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "ok", "error"]  # BigBird block-sparse needs L >= 704
    assert all(r["time_s"] > 0 and r["peak_mem_mb"] >= 0 for r in rows[:4])
    write_csv(rows, str(tmp_path / "bench.csv"))
    lines = (tmp_path / "bench.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 6
