"""Bidirectional Hyena operator and the scHyena model: reference agreement, two-sidedness,
permutation structure, masking and the pre-training loss. Everything is tiny and runs on CPU.
"""

from __future__ import annotations

import pytest
import torch

from scfmbench import InputError
from scfmbench.models.hyena import (
    ExponentialModulation,
    HyenaFilter,
    HyenaOperator,
    bidirectional_conv_ref,
    bidirectional_fftconv,
    fft_size,
    next_fast_len,
    positional_features,
)
from scfmbench.models.schyena import SCHyena, SCHyenaConfig
from scfmbench.pretrain.loop import masked_expression_loss, masked_mse
from scfmbench.pretrain.masking.uniform import mask_nonzero, sample_mask_prob

N_GENES = 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is many times faster than several on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_model(*, seed: int = 0, dtype=torch.float32, **overrides) -> SCHyena:
    torch.manual_seed(seed)
    kwargs = dict(n_genes=N_GENES, d_model=8, n_layers=2, filter_order=16, n_classes=3)
    kwargs.update(overrides)
    return SCHyena(SCHyenaConfig(**kwargs)).to(dtype).eval()


def tiny_cells(n_cells: int = 3, *, seed: int = 0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-normalised-looking values with ~40% zeros, all genes in a fixed order."""
    g = torch.Generator().manual_seed(seed)
    values = torch.log1p(torch.rand(n_cells, N_GENES, generator=g, dtype=dtype) * 5)
    values[torch.rand(n_cells, N_GENES, generator=g) < 0.4] = 0.0
    gene_ids = torch.arange(N_GENES).expand(n_cells, N_GENES).clone()
    return values, gene_ids


# -- the convolution ------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [1, 2, 7, 8, 33, 64])
@pytest.mark.parametrize("C", [1, 3, 16])
def test_fftconv_matches_direct_sum(L, C):
    g = torch.Generator().manual_seed(L * 100 + C)
    u = torch.randn(2, C, L, generator=g, dtype=torch.float64)
    k = torch.randn(C, 2 * L - 1, generator=g, dtype=torch.float64)
    D = torch.randn(C, generator=g, dtype=torch.float64)
    torch.testing.assert_close(bidirectional_fftconv(u, k, D), bidirectional_conv_ref(u, k, D), atol=1e-5, rtol=0)


def test_fftconv_lag_convention():
    """Tap L-1+s is lag s: a filter that is 1 at lag +2 only shifts the input two places later."""
    L = 6
    u = torch.arange(1.0, L + 1, dtype=torch.float64)[None, None]  # (1, 1, L)
    k = torch.zeros(1, 2 * L - 1, dtype=torch.float64)
    k[0, L - 1 + 2] = 1.0
    y = bidirectional_fftconv(u, k, torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(y[0, 0], torch.tensor([0, 0, 1, 2, 3, 4], dtype=torch.float64), atol=1e-12, rtol=0)


def test_fft_size_is_fast_and_alias_free():
    assert [next_fast_len(n) for n in (1, 7, 17, 65537)] == [1, 8, 18, 65610]
    for L in (1, 5, 100, 4097):
        n = fft_size(L)
        assert n >= 2 * L - 1
        assert set(_prime_factors(n)) <= {2, 3, 5}


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


# -- the filter -----------------------------------------------------------------------------------


def test_decay_uses_absolute_lag():
    """The decay envelope is the same at lag -s and +s and never grows away from lag 0, so the
    filter stays bounded by its MLP output on both sides (a signed lag would multiply the
    negative side by up to exp(|delta|) ~ e^15)."""
    L, C = 40, 6
    _, t = positional_features(L, emb_dim=5, l_max=L)
    env = ExponentialModulation(C).envelope(t)  # (2L-1, C)
    torch.testing.assert_close(env, env.flip(0))
    torch.testing.assert_close(env[L - 1], torch.ones(C))
    assert (env[L - 1 :].diff(dim=0) <= 0).all() and (env[:L].diff(dim=0) >= 0).all()

    torch.manual_seed(0)
    filt = HyenaFilter(C, l_max=L, filter_order=16)
    z, _ = positional_features(L, emb_dim=5, l_max=L)
    with torch.no_grad():
        k, h = filt(L), filt.mlp(z).T  # both (C, 2L-1)
    torch.testing.assert_close(k, h * env.T)
    far = slice(0, L // 2), slice(L + L // 2 - 1, 2 * L - 1)  # the outer quarter on each side
    assert k[:, far[0]].abs().max() <= h.abs().max() and k[:, far[1]].abs().max() <= h.abs().max()


def test_filter_length_limit():
    filt = HyenaFilter(2, l_max=10, filter_order=8)
    assert filt(10).shape == (2, 19)
    with pytest.raises(InputError, match="l_max"):
        filt(11)


# -- bidirectionality -----------------------------------------------------------------------------


def test_operator_output_depends_on_both_sides():
    """Position i reads i-3 and i+3: beyond the short conv's reach, so through the long filter."""
    torch.manual_seed(0)
    L, i = 16, 8
    op = HyenaOperator(4, l_max=L, filter_order=16)
    x = torch.randn(1, L, 4, requires_grad=True)
    op(x)[0, i].sum().backward()
    grad = x.grad[0].abs().sum(-1)  # (L,)
    assert grad[i - 3] > 0 and grad[i + 3] > 0
    assert grad[0] > 0 and grad[-1] > 0


def test_model_prediction_depends_on_both_sides():
    model = tiny_model()
    values, genes = tiny_cells(1)
    values.requires_grad_(True)
    i = 10
    model.predict_expression(values, genes)[0, i].backward()
    assert values.grad[0, i - 3] != 0 and values.grad[0, i + 3] != 0


# -- permutations ---------------------------------------------------------------------------------


def _permute(perm, *tensors):
    return [t[:, perm] for t in tensors]


def test_token_embeddings_carry_no_position():
    """The embedding layer adds gene identity, not position: permuting (value, gene_id, mask)
    triples permutes the token embeddings, and [CLS] is untouched."""
    model = tiny_model()
    values, genes = tiny_cells()
    mask = mask_nonzero(values, p=0.3, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(N_GENES, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model.embed_tokens(values, genes, mask)
        out = model.embed_tokens(*_permute(perm, values, genes, mask))
    torch.testing.assert_close(out[:, 0], ref[:, 0], atol=0, rtol=0)
    torch.testing.assert_close(out[:, 1:], ref[:, 1:][:, perm], atol=0, rtol=0)


def test_model_equivariant_when_filters_are_order_free():
    """What "no hidden positional dependence" can mean for a convolution over positions.

    A convolution is shift-equivariant, not permutation-equivariant: its Toeplitz matrix T
    commutes with every permutation only if T = a*I + b*11^T, i.e. the filter is a lag-0 tap plus
    one constant over *all* lags. The learned two-sided filter is not of that form, so scHyena
    depends on the (fixed, shared by all cells) gene order, and the gene embedding tells it which
    gene sits where. What must hold is that order enters *only* through the filters' lags: no
    positional encoding, no position-dependent normalisation, no hidden index. So with every long
    filter set to ``a*delta_0 + b`` (which still mixes all genes) and every short conv reduced
    to its centre tap, permuting the (value, gene_id, mask) triples must permute the gene outputs
    exactly and leave the [CLS] output unchanged. Run in float64 so the check is tight.
    """
    model = tiny_model(dtype=torch.float64)
    values, genes = tiny_cells(dtype=torch.float64)
    mask = mask_nonzero(values, p=0.3, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(N_GENES, generator=torch.Generator().manual_seed(2))

    # the learned filters do see order: permuting the inputs changes the outputs beyond roundoff
    with torch.no_grad():
        ref, out = model(values, genes, mask), model(*_permute(perm, values, genes, mask))
    assert (out[:, 1:] - ref[:, 1:][:, perm]).abs().max() > 1e-6

    g = torch.Generator().manual_seed(3)
    for block in model.blocks:
        op = block.mixer
        C = op.filter.channels
        a = torch.randn(C, 1, generator=g, dtype=torch.float64)
        b = 0.1 * torch.randn(C, 1, generator=g, dtype=torch.float64)

        def order_free(length, a=a, b=b):  # (C, 2L-1): a at lag 0, b at every lag
            k = b.expand(-1, 2 * length - 1).clone()
            k[:, length - 1] += a[:, 0]
            return k

        op.filter.forward = order_free
        with torch.no_grad():
            op.short_conv.weight[..., 0] = 0.0
            op.short_conv.weight[..., 2] = 0.0
    with torch.no_grad():
        ref, out = model(values, genes, mask), model(*_permute(perm, values, genes, mask))
    torch.testing.assert_close(out[:, 0], ref[:, 0], atol=1e-10, rtol=0)
    torch.testing.assert_close(out[:, 1:], ref[:, 1:][:, perm], atol=1e-10, rtol=0)
    # and the constant part really mixes: [CLS] changes when one gene's value does
    values2 = values.clone()
    values2[0, 5] += 1.0
    with torch.no_grad():
        assert (model(values2, genes, mask)[0, 0] - ref[0, 0]).abs().max() > 1e-6


def test_right_padding_changes_nothing():
    """Padded positions are zeroed before every mixing step and the filter's lag scale is fixed
    by max_len, so a right-padded batch gives the unpadded outputs at the real positions."""
    model = tiny_model(dtype=torch.float64)
    values, genes = tiny_cells(1, dtype=torch.float64)
    n = 17
    with torch.no_grad():
        short = model(values[:, :n], genes[:, :n])
        padded_values = values.clone()
        padded_values[:, n:] = 123.0  # garbage in the padding
        pad = torch.arange(N_GENES)[None] >= n
        full = model(padded_values, genes, pad_mask=pad)
    torch.testing.assert_close(full[:, : n + 1], short, atol=1e-10, rtol=0)


# -- masking --------------------------------------------------------------------------------------


def test_masked_position_never_sees_its_value():
    model = tiny_model()
    values, genes = tiny_cells()
    mask = mask_nonzero(values, p=0.3, generator=torch.Generator().manual_seed(1))
    assert mask.any()
    with torch.no_grad():
        ref = model.predict_expression(values, genes, mask)
        for fill in (100.0, float("nan")):
            changed = values.masked_fill(mask, fill)
            assert torch.equal(model.predict_expression(changed, genes, mask), ref)
    values = values.clone().requires_grad_(True)
    model.predict_expression(values, genes, mask)[mask].sum().backward()
    assert (values.grad[mask] == 0).all() and (values.grad[~mask] != 0).any()


def test_mask_nonzero_selects_only_nonzero_non_pad():
    values, _ = tiny_cells(4)
    pad = torch.zeros_like(values, dtype=torch.bool)
    pad[:, -5:] = True
    eligible = (values != 0) & ~pad
    g = torch.Generator().manual_seed(0)
    for p in (0.1, 0.5, 0.9):
        mask = mask_nonzero(values, p=p, generator=g, pad_mask=pad)
        assert mask.dtype == torch.bool and not (mask & ~eligible).any()
    assert torch.equal(mask_nonzero(values, p=1.0, generator=g, pad_mask=pad), eligible)
    assert mask_nonzero(values, p=0.0, generator=g, pad_mask=pad).sum() == 1  # at least one
    assert not mask_nonzero(torch.zeros(2, 5), p=0.5, generator=g).any()
    m1 = mask_nonzero(values, p=0.3, generator=torch.Generator().manual_seed(7))
    m2 = mask_nonzero(values, p=0.3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(m1, m2)


def test_sample_mask_prob_range_and_seed():
    ps = [sample_mask_prob(torch.Generator().manual_seed(s)) for s in range(50)]
    assert all(0.05 <= p <= 0.4 for p in ps) and max(ps) - min(ps) > 0.1
    assert sample_mask_prob(torch.Generator().manual_seed(3), 0.2, 0.2) == pytest.approx(0.2)
    with pytest.raises(InputError):
        sample_mask_prob(torch.Generator(), 0.5, 0.1)


def test_masked_mse():
    pred = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    target = torch.tensor([[0.0, 2.0, 5.0]])
    assert masked_mse(pred, target, torch.tensor([[True, False, True]])).item() == pytest.approx(2.5)
    empty = masked_mse(pred, target, torch.zeros(1, 3, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad


def test_pretraining_loss_falls():
    """Masked expression modelling on a seeded rank-2 dataset (64 cells): the loss on a fixed
    held-out mask falls within 20 Adam steps, and by 60 steps beats predicting each gene's mean
    non-zero value, i.e. the model reads the other genes of the cell."""
    g = torch.Generator().manual_seed(0)
    n_cells = 64
    factors = (torch.rand(n_cells, 2, generator=g) * torch.tensor([4.0, 1.0])) @ (
        torch.rand(2, N_GENES, generator=g) * 3
    )
    values = torch.log1p(factors * (torch.rand(n_cells, N_GENES, generator=g) > 0.2))
    genes = torch.arange(N_GENES).expand(n_cells, N_GENES)
    model = tiny_model(d_model=16, n_layers=2, filter_order=16).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def held_out_loss():
        model.eval()
        with torch.no_grad():
            loss, mask = masked_expression_loss(
                model, values, genes, p=0.25, generator=torch.Generator().manual_seed(99)
            )
        model.train()
        return loss.item(), mask

    before, mask = held_out_loss()
    gene_mean = torch.where(values > 0, values, torch.nan).nanmean(0).expand_as(values)
    gene_mean_mse = masked_mse(gene_mean, values, mask).item()
    losses = []
    for step in range(60):
        idx = torch.randint(n_cells, (16,), generator=g)
        loss, _ = masked_expression_loss(model, values[idx], genes[idx], p=sample_mask_prob(g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step + 1 in (20, 60):
            losses.append(held_out_loss()[0])
    assert losses[0] < 0.6 * before
    assert losses[1] < gene_mean_mse


# -- heads and accounting -------------------------------------------------------------------------


def test_heads_and_shapes():
    model = tiny_model()
    values, genes = tiny_cells(2)
    assert model(values, genes).shape == (2, N_GENES + 1, 8)
    assert model.predict_expression(values, genes).shape == (2, N_GENES)
    assert model.embed(values, genes).shape == (2, 8)
    assert model.classify(values, genes).shape == (2, 3)
    model.reset_classifier(5)
    assert model.classify(values, genes).shape == (2, 5) and model.config.n_classes == 5
    with pytest.raises(InputError, match="reset_classifier"):
        tiny_model(n_classes=0).classify(values, genes)
    with pytest.raises(InputError):
        SCHyenaConfig(n_genes=10, order=1)
    with pytest.raises(TypeError):
        SCHyenaConfig(10)  # keyword-only


def test_num_params():
    """Counted by hand from the architecture (d 8, order 2, filter MLP 5 -> 16 -> 16 -> 16 -> 8 with
    learned sine frequencies, MLP ratio 4, 2 layers, 3 classes), not from ``parameters()``."""
    d, f, r, emb = 8, 16, 4, 5
    filt = (emb * f + f) + f + 2 * (f * f + f + f) + f * d + d  # Linear+Sin, 2 x (Linear+Sin), Linear (no bias), bias D
    mixer = (
        (d * 3 * d + 3 * d) + (3 * d * 3 + 3 * d) + filt + (d * d + d)
    )  # in_proj, depthwise short conv (k 3), filter, out_proj
    block = 2 * d + mixer + 2 * d + (d * r * d + r * d + r * d * d + d)  # norm1, mixer, norm2, MLP
    top = (d + d) + N_GENES * d + d + d + 2 * d + (d + 1) + (d * 3 + 3)  # value adaptor, genes, mask, CLS, norm, heads
    model = tiny_model()
    assert model.num_params() == top + 2 * block
    assert model.num_params(exclude_gene_embedding=True) == top + 2 * block - N_GENES * d


def test_flops_grow_as_l_log_l():
    """Superlinear (the FFT term) but far from quadratic: f(4L)/f(L) in (4, 4.6)."""
    model = SCHyena(SCHyenaConfig(n_genes=10, d_model=128, n_layers=1, max_len=10**6))
    lengths = [2**10, 2**12, 2**14, 2**16, 2**18]
    f = [model.flops_per_cell(L) for L in lengths]
    per_gene = [fi / L for fi, L in zip(f, lengths)]
    assert all(b > a for a, b in zip(per_gene, per_gene[1:]))
    assert all(4.0 < b / a < 4.6 for a, b in zip(f, f[1:]))


def test_benchmark_point_runs_in_process():
    """The benchmark's measuring function on a tiny point (the CLI runs it in a fresh process)."""
    from scfmbench.bench.hyena import COLUMNS, measure_point

    for model in ("hyena", "full"):
        row = measure_point(model, length=16, d_model=8, batch=2, n_heads=2, warmup=1, repeats=2)
        assert list(row) == COLUMNS and row["status"] == "ok" and row["time_s"] > 0
