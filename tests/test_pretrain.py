"""The pretraining stage: masking strategies, the shared loop (scHyena's results unchanged), MAM,
the scFoundation-style backbone and its loader, fine-tuning from a pretraining checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_raw

from scfmbench import InputError
from scfmbench.pretrain.masking import STRATEGIES, build_strategy, gumbel_topk

FIXTURES = Path(__file__).parent / "fixtures" / "pretrain"


# ------------------------------------------------------------------------------------------------
# scHyena through the shared loop: the numbers of the code before the refactor


@pytest.fixture(scope="module")
def schyena_data():
    from scfmbench.data.prepare import prepare_dataset

    return prepare_dataset(make_raw(), seed=0)


def test_schyena_pretraining_unchanged_by_refactor(schyena_data):
    """tests/fixtures/pretrain/schyena_before_refactor.json was written by the pre-refactor
    scfmbench.schyena.tasks (make_schyena_before_refactor.py, commit before the shared stage)."""
    from scfmbench.models.schyena import SCHyena, SCHyenaConfig
    from scfmbench.schyena.tasks import dense_values, pretrain, train_masked

    old = json.loads((FIXTURES / "schyena_before_refactor.json").read_text())
    cfg = SCHyenaConfig(n_genes=schyena_data.n_vars, d_model=16, n_layers=1, filter_order=8, mlp_ratio=2)
    model, hist = pretrain(schyena_data, config=cfg, steps=6, batch_size=16, lr=0.01, seed=3, eval_every=3)
    assert hist.train_loss == pytest.approx(old["train_loss"], rel=1e-6)
    assert hist.mask_prob == pytest.approx(old["mask_prob"], rel=1e-12)
    assert hist.valid_loss == pytest.approx(old["valid_loss"], rel=1e-6) and hist.eval_step == old["eval_step"]
    sums = {k: float(v.double().sum()) for k, v in model.state_dict().items()}
    assert sums == pytest.approx(old["param_sums"], rel=1e-5, abs=1e-6)
    # the imputer's variant (every zero shown as the mask token)
    torch.manual_seed(5)
    m = SCHyena(cfg)
    h = train_masked(
        m,
        torch.from_numpy(dense_values(schyena_data)),
        steps=4,
        batch_size=8,
        lr=0.01,
        generator=torch.Generator().manual_seed(5),
        mask_zeros=True,
    )
    assert h.train_loss == pytest.approx(old["imputer_train_loss"], rel=1e-6)
    assert {k: float(v.double().sum()) for k, v in m.state_dict().items()} == pytest.approx(
        old["imputer_param_sums"], rel=1e-5, abs=1e-6
    )


# ------------------------------------------------------------------------------------------------
# masking strategies: counts, padding, seeds


def _batch(seed=0, B=6, L=40):
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(B, L, generator=g) * 5
    values[torch.rand(B, L, generator=g) < 0.5] = 0.0  # about half zeros
    maskable = torch.ones(B, L, dtype=torch.bool)
    maskable[:, -7:] = False  # padding at the end
    maskable[1, :3] = False  # and a special token or two
    values[~maskable] = 3.0  # padding with non-zero values must still never be masked
    return values, maskable


def _strategy(name):
    """The strategy with its defaults, but a ratio that masks something in a 40-position batch
    (the released 0.024 masks none of 33 positions)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(STRATEGIES[name])}
    return build_strategy(name, **({"ratio": 0.3} if "ratio" in fields else {}))


def _expected_count(name, strategy, values, maskable):
    nz, z = (maskable & (values != 0)).sum(1), (maskable & (values == 0)).sum(1)
    if name == "stratified":
        return torch.floor(nz * strategy.ratio).long(), torch.floor(z * strategy.ratio_zero).long()
    if name == "random":
        return torch.floor(nz * strategy.ratio).long(), torch.floor(z * strategy.ratio).long()
    if name in ("expression", "mam"):
        return torch.floor(maskable.sum(1) * strategy.ratio).long(), None
    return None, None


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_counts_and_never_padding(name):
    values, maskable = _batch()
    strategy = _strategy(name)
    scorer = strategy.make_scorer(8) if strategy.needs_scorer else None
    for seed in range(5):
        mask = strategy.draw(values, maskable, generator=torch.Generator().manual_seed(seed), scorer=scorer).mask
        assert mask.dtype == torch.bool and mask.shape == values.shape
        assert not (mask & ~maskable).any()  # never padding or special tokens
        first, second = _expected_count(name, strategy, values, maskable)
        if name in ("stratified", "random"):
            assert torch.equal((mask & (values != 0)).sum(1), first) and torch.equal(
                (mask & (values == 0) & maskable).sum(1), second
            )
        elif first is not None:
            assert torch.equal(mask.sum(1), first)
        else:  # uniform: non-zero values only, the drawn share
            assert not (mask & (values == 0)).any()
    if name == "uniform":
        full = (
            build_strategy("uniform", low=1.0, high=1.0)
            .draw(values, maskable, generator=torch.Generator().manual_seed(0))
            .mask
        )
        assert torch.equal(full, maskable & (values != 0))
        share = (
            build_strategy("uniform", low=0.3, high=0.3)
            .draw(
                torch.ones(200, 500), torch.ones(200, 500, dtype=torch.bool), generator=torch.Generator().manual_seed(0)
            )
            .mask.float()
            .mean()
        )
        assert share.item() == pytest.approx(0.3, abs=0.005)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_reproducible_per_seed(name):
    values, maskable = _batch(1)
    strategy = _strategy(name)
    torch.manual_seed(0)
    scorer = strategy.make_scorer(8) if strategy.needs_scorer else None
    draw = lambda s: strategy.draw(values, maskable, generator=torch.Generator().manual_seed(s), scorer=scorer).mask  # noqa: E731
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_unknown_strategy_and_option_are_errors():
    with pytest.raises(InputError, match="registered strategies"):
        build_strategy("nope")
    with pytest.raises(InputError, match="allowed options"):
        build_strategy("mam", ratoi=0.3)


def _pair_probs(p):
    """Exact probability of each unordered pair drawn by two draws without replacement."""
    out = {}
    for i in range(len(p)):
        for j in range(i + 1, len(p)):
            out[(i, j)] = p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])
    return out


@pytest.mark.parametrize("sampler", ["gumbel", "multinomial"])
def test_gumbel_topk_is_multinomial_without_replacement(sampler):
    """Chi-square goodness of fit of the drawn pairs (k = 2 of 4) against the exact Plackett-Luce
    probabilities, for Gumbel-top-k and for torch.multinomial(replacement=False) itself."""
    from scipy.stats import chisquare

    p = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64)
    n = 20000
    g = torch.Generator().manual_seed(0)
    if sampler == "gumbel":
        mask = gumbel_topk(p.expand(n, -1).clone(), torch.full((n,), 2), generator=g)
        idx = [tuple(np.flatnonzero(row)) for row in mask.numpy()]
    else:
        idx = [tuple(sorted(torch.multinomial(p, 2, replacement=False, generator=g).tolist())) for _ in range(n)]
    exact = _pair_probs(p.tolist())
    observed = np.array([sum(1 for x in idx if x == pair) for pair in exact])
    assert observed.sum() == n
    assert chisquare(observed, np.array(list(exact.values())) * n).pvalue > 1e-3
    # and a wrong distribution is rejected
    if sampler == "gumbel":
        wrong = _pair_probs([0.4, 0.3, 0.2, 0.1])
        assert chisquare(observed, np.array(list(wrong.values())) * n).pvalue < 1e-6


def test_mam_draws_follow_its_scores():
    """MAM's masks are multinomial draws from its normalized scores: on a fixed score vector the
    marginal inclusion frequencies match those of torch.multinomial(replacement=False)."""
    strategy = build_strategy("mam", ratio=0.25, n_latents=4, latent_dim=8, n_heads=2)
    weights = torch.rand(1, 2, 4, 8, generator=torch.Generator().manual_seed(0))
    maskable = torch.ones(1, 8, dtype=torch.bool)
    probs = strategy.probs(weights, maskable, generator=torch.Generator().manual_seed(1))[0]
    n = 4000
    mask = (
        gumbel_topk(probs.expand(n, -1).clone(), torch.full((n,), 2), generator=torch.Generator().manual_seed(2))
        .float()
        .mean(0)
    )
    g = torch.Generator().manual_seed(3)
    ref = torch.zeros(8)
    for _ in range(n):
        ref[torch.multinomial(probs, 2, replacement=False, generator=g)] += 1 / n
    assert torch.allclose(mask, ref, atol=0.03)


# ------------------------------------------------------------------------------------------------
# MAM's gradient paths


def _token_model(backbone, strategy=None, **cfg):
    from scfmbench.annotation.transformer import BACKBONES
    from scfmbench.pretrain.backbones import TokenMasked

    spec = BACKBONES[backbone]
    net = spec.model(spec.config(n_genes=12, n_classes=1, dropout=0.0, **cfg))
    scorer = strategy.make_scorer(net.cfg.d_model) if strategy is not None and strategy.needs_scorer else None
    return TokenMasked(backbone, net, scorer).eval()


def _cells(backbone, n=5, G=12, seed=0):
    import anndata as ad
    import scipy.sparse as sp

    from scfmbench.annotation.transformer import BACKBONES
    from scfmbench.pretrain.backbones import masked_cells

    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, size=(n, G)).astype(np.float32)
    counts[0, :] = 0
    counts[0, :3] = [5, 1, 2]  # a sparse cell
    x = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    adata = ad.AnnData(X=sp.csr_matrix(x.astype(np.float32)))
    adata.layers["counts"] = sp.csr_matrix(counts)
    model = _token_model(backbone)
    tok, _ = BACKBONES[backbone].tokenizer(adata, model.backbone.cfg, np.arange(n), 64, np.random.default_rng(0))
    return model, masked_cells(model, tok(np.arange(n)))


@pytest.mark.parametrize("inject,reg,expect", [(True, 0.0, True), (False, 1e-2, True), (False, 0.0, False)])
def test_mam_scorer_gradient_only_through_summary_and_l2(inject, reg, expect):
    from scfmbench.pretrain.loop import masked_mse

    strategy = build_strategy("mam", ratio=0.3, n_latents=8, latent_dim=16, n_heads=2, inject=inject, reg=reg)
    model, data = _cells("scfoundation")
    torch.manual_seed(0)
    model = _token_model("scfoundation", strategy)
    b = data.batch(torch.arange(len(data)))
    drawn = strategy.draw(b.values, b.eligible(), generator=torch.Generator().manual_seed(0), scorer=model.scorer)
    loss = masked_mse(model.predict(b, drawn.mask, drawn.summary), b.values, drawn.mask)
    if drawn.aux_loss is not None:
        loss = loss + drawn.aux_loss
    loss.backward()
    grads = {n: p.grad for n, p in model.scorer.named_parameters()}
    got = {n: g is not None and bool(g.abs().sum() > 0) for n, g in grads.items()}
    if expect:
        assert got["latents"] and got["input_proj.weight"], got
    else:  # masks alone: no gradient reaches the scorer (nothing flows through the sampling)
        assert not any(got.values()), got
    assert (drawn.summary is not None) == inject


# ------------------------------------------------------------------------------------------------
# scFoundation-style backbone


def test_scfoundation_encoder_sees_nonzero_genes_decoder_every_gene():
    model, data = _cells("scfoundation")
    net = model.backbone
    b = data.batch(torch.arange(len(data)))
    cells, values = b.inputs, b.values
    mask = torch.zeros_like(values, dtype=torch.bool)
    mask[1, 0] = True
    mask[1, 1] = True
    h, index, pad = net.encode(cells, mask)
    G = net.cfg.n_genes
    for row in range(len(values)):
        seen = set(index[row][~pad[row]].tolist())
        expected = {j for j in range(G) if values[row, j] > 0 and not mask[row, j]} | {G, G + 1}
        assert seen == expected
    shapes = []
    handle = net.decoder.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape)))
    out = net.predict_masked(cells, mask)
    handle.remove()
    assert out.shape == values.shape and shapes == [(len(values), G + 2, net.cfg.decoder_dim)]
    # a cap on the encoder: long cells subsampled, T and S kept
    net.cfg.max_encoder_len = 4
    _, index, pad = net.encode(cells)
    assert index.shape[1] <= 4 and all({G, G + 1} <= set(index[r][~pad[r]].tolist()) for r in range(len(values)))


def test_scfoundation_tokens_T_and_S():
    from scfmbench.models.scfoundation import total_count_tokens

    t, s = total_count_tokens(np.array([1000.0, 10.0]), "t4")
    assert s.tolist() == pytest.approx([3.0, 1.0]) and t.tolist() == [4.0, 4.0]
    assert total_count_tokens(np.array([1000.0]), "a1")[0][0] == pytest.approx(4.0)
    assert total_count_tokens(np.array([1000.0]), "f10")[0][0] == pytest.approx(4.0)


def test_scfoundation_encoder_layer_is_torch_transformer_layer():
    """With the official names renamed, our post-norm layer computes nn.TransformerEncoderLayer."""
    from scfmbench.models.scfoundation import released_name
    from scfmbench.models.scgpt import Encoder

    torch.manual_seed(0)
    ref = nn_layer = torch.nn.TransformerEncoderLayer(16, 2, dim_feedforward=64, dropout=0.0, batch_first=True)
    ours = Encoder(d_model=16, n_layers=1, n_heads=2, d_hidden=64, attention="full", dropout=0.0, norm_scheme="post")
    state = {
        released_name(f"encoder.transformer_encoder.0.{k}").removeprefix("encoder."): v
        for k, v in nn_layer.state_dict().items()
    }
    ours.load_state_dict(state)
    x = torch.randn(3, 7, 16)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    assert torch.allclose(ours(x, pad, torch.zeros(3, 7, dtype=torch.long)), ref.eval()(x), atol=1e-5)


# ------------------------------------------------------------------------------------------------
# every backbone: a masked position never sees its own value


@pytest.mark.parametrize("backbone", ["scgpt", "scbert", "scfoundation"])
def test_masked_value_never_seen_token_backbones(backbone):
    from scfmbench.models.tokenize import TokenizedCells
    from scfmbench.pretrain.loop import MaskedBatch

    model, data = _cells(backbone)
    b = data.batch(torch.arange(len(data)))
    strategy = build_strategy("stratified", ratio=0.4, ratio_zero=0.2)
    mask = strategy.draw(b.values, b.eligible(), generator=torch.Generator().manual_seed(0)).mask
    assert mask.any()
    with torch.no_grad():
        before = model.predict(b, mask)
        changed = b.inputs.value_ids.clone()
        changed[mask] = 1 + (changed[mask] + 3) % 5  # other values at the masked positions (zeros become non-zero)
        cells = TokenizedCells(b.inputs.gene_ids, changed, b.inputs.padding)
        after = model.predict(MaskedBatch(model.read.values(model.backbone, cells), b.maskable, cells), mask)
        assert torch.allclose(before, after, atol=1e-6)
        keep = ~mask & b.eligible()
        cells.value_ids[keep] = 1 + (cells.value_ids[keep] + 3) % 5  # an unmasked change must show
        moved = model.predict(MaskedBatch(model.read.values(model.backbone, cells), b.maskable, cells), mask)
        assert not torch.allclose(before, moved, atol=1e-4)


def test_masked_value_never_seen_schyena():
    from scfmbench.models.schyena import SCHyena, SCHyenaConfig
    from scfmbench.pretrain.loop import MaskedBatch
    from scfmbench.schyena.tasks import SchyenaMasked

    torch.manual_seed(0)
    model = SchyenaMasked(SCHyena(SCHyenaConfig(n_genes=12, d_model=8, n_layers=1, filter_order=8, mlp_ratio=2))).eval()
    values = torch.rand(3, 12) * 4
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[:, ::3] = True
    with torch.no_grad():
        before = model.predict(MaskedBatch(values), mask)
        other = values.clone()
        other[mask] += 5
        assert torch.allclose(before, model.predict(MaskedBatch(other), mask), atol=1e-6)


# ------------------------------------------------------------------------------------------------
# fine-tuning from a pretraining checkpoint


@pytest.mark.parametrize("strategy", ["uniform", "mam"])
def test_finetuning_starts_from_the_checkpoint(tmp_path, schyena_data, strategy):
    from scfmbench.annotation.transformer import annotate_transformer
    from scfmbench.pretrain.backbones import read_pretrained, save_pretrained
    from scfmbench.pretrain.masking import strategy_for
    from scfmbench.pretrain.workflow import pretrain_backbone

    strat = strategy_for(strategy, {"strategy_options": {"mam": {"n_latents": 8, "latent_dim": 16, "n_heads": 2}}})
    model, hist, _ = pretrain_backbone(schyena_data, backbone="scgpt", strategy=strat, seed=0, steps=3, batch_size=8)
    assert len(hist.train_loss) == 3 and len(hist.valid_loss) == 2
    save_pretrained(tmp_path / "ckpt.pt", model, strategy=strat, run_config={"seed": 0})
    payload = read_pretrained(tmp_path / "ckpt.pt")
    _, record = annotate_transformer(
        schyena_data, backbone="scgpt", attention="full", seed=0, pretrained=tmp_path / "ckpt.pt", epochs=1
    )
    assert record["checkpoint"]["missing"] == ["cls_decoder.out_layer.bias", "cls_decoder.out_layer.weight"]
    assert record["checkpoint"]["summary"] == (strategy == "mam")
    # with zero training epochs' worth of change impossible, check the loaded weights directly
    from scfmbench.annotation.transformer import BACKBONES
    from scfmbench.pretrain.backbones import load_pretrained

    clf, _ = load_pretrained(
        tmp_path / "ckpt.pt", backbone="scgpt", spec=BACKBONES["scgpt"], n_classes=3, attention="performer", params={}
    )
    own = clf.state_dict()
    prefix = "model." if strategy == "mam" else ""
    for k, v in payload["state_dict"].items():
        if k.startswith("backbone.") and "cls_decoder" not in k:
            assert torch.equal(own[prefix + k.removeprefix("backbone.")], v), k
    with pytest.raises(InputError, match="pretrained for backbone 'scgpt'"):
        load_pretrained(
            tmp_path / "ckpt.pt", backbone="scbert", spec=BACKBONES["scbert"], n_classes=3, attention="full", params={}
        )


def test_geneformer_cannot_be_pretrained():
    from scfmbench.pretrain.backbones import reader

    with pytest.raises(InputError, match="rank-value"):
        reader("geneformer")


# ------------------------------------------------------------------------------------------------
# metrics


def test_rare_f1_hand_computed():
    from scfmbench.metrics import rare_classes, rare_f1

    train = ["a"] * 50 + ["b"] * 47 + ["r"] * 3  # r: 3% of the training cells
    assert rare_classes(train, share=0.05).tolist() == ["r"]
    assert rare_classes(train, share=0.5).tolist() == ["b", "r"]
    truth = ["a", "a", "r", "r", "b"]
    pred = ["a", "r", "r", "a", "b"]
    # r: TP 1, FP 1, FN 1 -> 2/4
    assert rare_f1(truth, pred, ["r"]) == pytest.approx(0.5)
    # b: 1.0; mean with r
    assert rare_f1(truth, pred, ["b", "r"]) == pytest.approx(0.75)
    assert math.isnan(rare_f1(truth, pred, ["zzz"]))


def test_per_class_f1():
    from scfmbench.pretrain.analysis import per_class_f1

    assert per_class_f1(["a", "a", "r", "r", "b"], ["a", "r", "r", "a", "b"]) == pytest.approx(
        {"a": 0.5, "r": 0.5, "b": 1.0}
    )


@pytest.mark.parametrize("summary_input,leaks", [("visible", False), ("all", True)])
def test_mam_summary_input(summary_input, leaks):
    """As released ('all') the summary reads the masked values too; 'visible' leaves them out."""
    strategy = build_strategy("mam", ratio=0.3, n_latents=8, latent_dim=16, n_heads=2, summary_input=summary_input)
    torch.manual_seed(0)
    scorer = strategy.make_scorer(8)
    values, maskable = _batch(2)
    drawn = strategy.draw(values, maskable, generator=torch.Generator().manual_seed(0), scorer=scorer)
    other = values.clone()
    other[drawn.mask] += 2.0
    # same generator state: same scores are not guaranteed once values change, so recompute the
    # summary over the visible keys with the first draw's mask directly
    shown = maskable & ~drawn.mask if summary_input == "visible" else maskable
    again = scorer.summarize(scorer(other, shown)[1])
    assert torch.allclose(drawn.summary, again, atol=1e-6) != leaks


# ------------------------------------------------------------------------------------------------
# MAM as released (Amir79Naziri/MAM_code: pretrain/main.py, pretrain/trainer.py, model/mae_autobin.py,
# pretrain/expermiments/experiment_1 (MAM) and experiment_9 (the 'random' baseline))


def test_released_ratio_counts_hand_computed():
    """main.py: --masking_ratio defaults to 0.3 * 0.08 and no run script sets it. On a cell of
    pbmc68k's 765 genes MAM and expression mask int(765 x 0.024) = int(18.36) = 18 positions
    (0.3 gave 229); the random baseline int(200 x 0.024) + int(565 x 0.024) = 4 + 13 = 17 of a
    cell with 200 non-zero and 565 zero genes; MAM's latent subset int(128 x 0.024) = 3 of 128."""
    values = torch.zeros(1, 765)
    values[0, :200] = torch.linspace(0.5, 4.0, 200)
    maskable = torch.ones(1, 765, dtype=torch.bool)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    mam = build_strategy("mam")
    assert mam.ratio == pytest.approx(0.024) and mam.n_latents == 128 and mam.advanced_masking
    torch.manual_seed(0)
    assert int(mam.draw(values, maskable, generator=g(), scorer=mam.make_scorer(8)).mask.sum()) == 18
    assert int(build_strategy("expression").draw(values, maskable, generator=g()).mask.sum()) == 18
    rnd = build_strategy("random")
    assert rnd.advanced_masking
    m = rnd.draw(values, maskable, generator=g()).mask
    assert int((m & (values != 0)).sum()) == 4 and int((m & (values == 0)).sum()) == 13
    # 3 of 128 latents: latent j attends only to position j, so exactly 3 positions get weight
    weights = torch.zeros(1, 8, 128, 765)
    weights[0, :, torch.arange(128), torch.arange(128)] = 1.0
    probs = mam.probs(weights, maskable, generator=g())
    assert int((probs > 1e-3).sum()) == 3


class _HandScorer:
    """A scorer with hand-set attention: latent j (of 20) attends, in each of 2 heads, half to
    position j (a zero value) and half to position 20 + j (a non-zero value)."""

    def __call__(self, values, keys_shown):
        B, L = values.shape
        w = torch.zeros(B, 2, 20, L)
        j = torch.arange(20)
        w[:, :, j, j] = 0.5
        w[:, :, j, 20 + j] = 0.5
        return w, torch.zeros(B, 20, 4)

    def summarize(self, out):
        return out.mean(1)


def test_mam_draw_masks_the_chosen_latents_positions_zeros_included():
    """MAM's draw (generate_multinomial_attention_mask) on hand-set attention: int(20 x 0.05) = 1
    latent is chosen at random, its two positions carry all the score but 1e-8 each, and k =
    int(40 x 0.05) = 2: the mask is exactly one latent's pair {j, 20 + j}, and position j holds a
    zero. Masking the least-attended positions, sampling only non-zero positions, or summing every
    latent (uniform scores) each breaks this."""
    values = torch.cat([torch.zeros(20), torch.linspace(1.0, 3.0, 20)])[None].repeat(3, 1)
    maskable = torch.ones_like(values, dtype=torch.bool)
    strategy = build_strategy("mam", ratio=0.05, n_latents=20, latent_dim=4, n_heads=2)
    chosen = set()
    for seed in range(12):
        mask = strategy.draw(values, maskable, generator=torch.Generator().manual_seed(seed), scorer=_HandScorer()).mask
        for row in mask:
            idx = sorted(row.nonzero().flatten().tolist())
            assert len(idx) == 2 and idx[1] == idx[0] + 20, idx
            chosen.add(idx[0])
    assert len(chosen) > 3  # a random subset of latents per batch, not always the same one


@pytest.mark.parametrize("name", ["random", "mam"])
def test_advanced_masking_80_10_10(name):
    """experiment_1 / experiment_9 set advanced_masking=True: each masked position shows the mask
    token with probability 0.8, a uniform value in [0, the batch's maximum) with 0.1 and its true
    value with 0.1; unmasked positions show their value."""
    n, L = 400, 50
    values = torch.rand(n, L, generator=torch.Generator().manual_seed(0)) * 4 + 1  # all non-zero, max < 5
    maskable = torch.ones(n, L, dtype=torch.bool)
    options = {"ratio": 0.5} | ({"n_latents": 4, "latent_dim": 8, "n_heads": 2} if name == "mam" else {})
    strategy = build_strategy(name, **options)
    scorer = strategy.make_scorer(8) if strategy.needs_scorer else None
    drawn = strategy.draw(values, maskable, generator=torch.Generator().manual_seed(1), scorer=scorer)
    mask, shown = drawn.mask, drawn.shown
    assert shown is not None and not (shown.token & ~mask).any()
    assert torch.equal(shown.values[~mask], values[~mask])
    masked = int(mask.sum())
    token = shown.token[mask].float().mean().item()
    kept = (shown.values == values)[mask & ~shown.token].float().sum().item() / masked
    changed = mask & ~shown.token & (shown.values != values)
    assert token == pytest.approx(0.8, abs=0.02) and kept == pytest.approx(0.1, abs=0.015)
    assert int(changed.sum()) / masked == pytest.approx(0.1, abs=0.015)
    rv = shown.values[changed]
    assert rv.min() >= 0 and rv.max() < values.max() and rv.min() < 1.0  # drawn on [0, max), not the values
    assert (
        build_strategy(name, advanced_masking=False, **options)
        .draw(values, maskable, generator=torch.Generator().manual_seed(1), scorer=scorer)
        .shown
        is None
    )


def _decoder_inputs(net, cells, mask, offset=None, shown=None):
    seen = []
    handle = net.decoder_embed.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    net.predict_masked(cells, mask, offset, shown)
    handle.remove()
    return seen[0]


def test_scfoundation_summary_reaches_every_decoder_token():
    """MaeAutobin with 'both': the projected summary is added to the encoder tokens and to every
    decoder token. At the positions the encoder does not see (masked, zeros) the decoder's token
    is the value or mask embedding + position embedding, so adding an offset o changes it by o."""
    from scfmbench.models.tokenize import N_SPECIAL

    model, data = _cells("scfoundation")
    net = model.backbone
    b = data.batch(torch.arange(len(data)))
    mask = torch.zeros_like(b.values, dtype=torch.bool)
    mask[:, 2] = True
    offset = torch.randn(len(b.values), net.cfg.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = _decoder_inputs(net, b.inputs, mask, offset) - _decoder_inputs(net, b.inputs, mask, None)
    pos = (b.inputs.gene_ids - N_SPECIAL).expand(b.values.shape)
    outside = (mask | (b.values == 0)) & (pos < net.cfg.n_genes)
    assert outside.sum() >= 5
    assert torch.allclose(diff[outside], offset[:, None, :].expand_as(diff)[outside], atol=1e-5)


def test_scfoundation_decoder_reads_advanced_masking():
    """With ``shown`` the decoder shows the mask vector only at shown.token and the shown value's
    embedding at the other masked positions; the encoder still sees no masked position."""
    from scfmbench.pretrain.masking import Shown

    model, data = _cells("scfoundation")
    net = model.backbone
    b = data.batch(torch.arange(len(data)))
    mask = torch.zeros_like(b.values, dtype=torch.bool)
    mask[1:, :4] = True
    token = mask.clone()
    token[1:, 0] = False  # shows a random value
    token[1:, 1] = False  # shows its true value
    shown_values = b.values.clone()
    shown_values[1:, 0] = 2.5
    shown = Shown(token, shown_values)
    with torch.no_grad():
        got = _decoder_inputs(net, b.inputs, mask, shown=shown)
        ref = net.token_emb(shown_values, mask=token) + net.pos_emb(net.positions(b.inputs))
        _, index, pad = net.encode(b.inputs, mask)
    for r in range(1, len(b.values)):
        assert not (set(index[r][~pad[r]].tolist()) & {0, 1, 2, 3})
        for j in range(4):
            assert torch.allclose(got[r, j], ref[r, j], atol=1e-5), (r, j)
    assert torch.allclose(got[1, 2], net.token_emb.emb_mask.weight[0] + net.pos_emb.weight[2], atol=1e-5)
    assert not torch.allclose(got[1, 0], got[1, 2], atol=1e-3)


def test_param_groups_released_new_layers():
    """main.py's new_layers for 'cross-attention' (names with DDP's 'module.' prefix; ours are the
    same under TokenMasked's 'backbone.' and 'scorer.'): at --nlr, every other parameter at --olr."""
    from scfmbench.pretrain.loop import param_groups

    released = [
        "latents",
        "cross_attention.in_proj_weight",
        "cross_attention.in_proj_bias",
        "cross_attention.out_proj.weight",
        "cross_attention.out_proj.bias",
        "input_proj.weight",
        "input_proj.bias",
        "output_proj.weight",
        "output_proj.bias",
        "token_emb.mlp.weight",
        "token_emb.mlp.bias",
        "token_emb.mlp2.weight",
        "token_emb.mlp2.bias",
        "token_emb.emb.weight",
        "token_emb.emb_mask.weight",
        "token_emb.emb_pad.weight",
        "pos_emb.weight",
        "decoder_embed.weight",
        "decoder_embed.bias",
        "norm.weight",
        "norm.bias",
        "to_final.weight",
        "to_final.bias",
        "decoder.norm.weight",
        "decoder.norm.bias",
    ]
    scorer_names = {"latents", "input_proj.weight", "input_proj.bias", "output_proj.weight", "output_proj.bias"} | {
        n for n in released if n.startswith("cross_attention.")
    }
    expect = {("scorer." if n in scorer_names else "backbone.") + n for n in released}
    model = _token_model("scfoundation", build_strategy("mam", n_latents=4, latent_dim=8, n_heads=2))
    named = dict(model.named_parameters())
    loaded = {n for n in named if n.startswith("backbone.") and not n.startswith("backbone.classifier.")}
    groups = param_groups(model, lr=1e-4, lr_pretrained=1e-5, pretrained=loaded, new_layers="released")
    ids = {id(p): n for n, p in named.items()}
    fast = {ids[id(p)] for p in groups[0]["params"]}
    assert groups[0]["lr"] == 1e-4 and groups[1]["lr"] == 1e-5
    assert (
        fast - {"backbone.classifier.weight", "backbone.classifier.bias"} == expect
    )  # the classifier never loads: new
    assert {ids[id(p)] for p in groups[1]["params"]} == set(named) - fast
    old = param_groups(model, lr=1e-4, lr_pretrained=1e-5, pretrained=loaded, new_layers="loaded")
    assert {ids[id(p)] for p in old[0]["params"]} == set(named) - loaded


def test_pretraining_optimizer_as_released(schyena_data, monkeypatch):
    """trainer.py / main.py: Adam(amsgrad=True, weight_decay=5e-4); clip_grad_norm_ is called once
    before training (no gradient yet), so no step is clipped. Our pretraining defaults do the same;
    grad_clip: 1.0 is the named option that clips every step."""
    from scfmbench.pretrain.workflow import pretrain_backbone

    made, clipped = [], []
    real_adam = torch.optim.Adam
    monkeypatch.setattr(torch.optim, "Adam", lambda *a, **k: made.append(k) or real_adam(*a, **k))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm, *a, **k: clipped.append(max_norm))
    strat = build_strategy("mam", n_latents=4, latent_dim=8, n_heads=2)
    small = {
        "d_model": 16,
        "n_layers": 1,
        "n_heads": 2,
        "d_hidden": 16,
        "decoder_dim": 16,
        "decoder_layers": 1,
        "decoder_heads": 2,
    }
    pretrain_backbone(
        schyena_data, backbone="scfoundation", strategy=strat, seed=0, steps=2, batch_size=4, params=small
    )
    assert made[-1]["amsgrad"] is True and made[-1]["weight_decay"] == 5e-4 and clipped == []
    pretrain_backbone(
        schyena_data,
        backbone="scfoundation",
        strategy=strat,
        seed=0,
        steps=2,
        batch_size=4,
        params=small,
        grad_clip=1.0,
        amsgrad=False,
    )
    assert made[-1]["amsgrad"] is False and clipped == [1.0, 1.0]


def test_loop_passes_what_masked_positions_show():
    """The loop hands the draw's advanced masking to the model at every step."""
    from scfmbench.pretrain.loop import train_masked

    model, data = _cells("scfoundation")
    seen, real = [], model.predict
    model.predict = lambda b, mask, offset=None, shown=None: seen.append((mask, shown)) or real(b, mask, offset, shown)
    train_masked(
        model,
        data,
        strategy=build_strategy("random", ratio=0.5),
        steps=2,
        batch_size=5,
        lr=1e-3,
        generator=torch.Generator().manual_seed(0),
    )
    assert len(seen) == 2 and all(s is not None and s.token.any() and (m & ~s.token).any() for m, s in seen)


@pytest.mark.parametrize("backbone", ["scgpt", "scbert"])
def test_binned_input_shows_advanced_masking(backbone):
    """A binned backbone's input (its only one) shows the mask id at shown.token and the bin of the
    shown value (value x 10, the reader's scale) at the other masked positions."""
    from scfmbench.pretrain.masking import Shown

    model, data = _cells(backbone)
    b = data.batch(torch.arange(len(data)))
    ids = b.inputs.value_ids.expand(b.values.shape)
    maskable = b.eligible()
    mask = torch.zeros_like(maskable)
    rows = maskable.nonzero()[::3]  # every third maskable position
    mask[rows[:, 0], rows[:, 1]] = True
    token = mask.clone()
    token[rows[::2, 0], rows[::2, 1]] = False
    shown_values = b.values.clone()
    shown_values[rows[::4, 0], rows[::4, 1]] = 0.3  # some show a random value: bin 3
    seen = []
    real = model.backbone.hidden_states
    model.backbone.hidden_states = lambda cells, *a, **k: seen.append(cells.value_ids.clone()) or real(cells, *a, **k)
    with torch.no_grad():
        model.predict(b, mask, None, Shown(token, shown_values))
    got = seen[0].expand(b.values.shape)
    mask_id = model.read.mask_id(model.backbone.cfg)
    assert (got[token] == mask_id).all()
    revealed = mask & ~token
    assert revealed.sum() > 2 and torch.equal(
        got[revealed], torch.round(shown_values[revealed] * 10).long().to(got.dtype)
    )
    assert torch.equal(got[~mask], ids[~mask])
