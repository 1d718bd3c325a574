"""``mam``: Multinomial Attention Masking (Naziri et al., CHIL 2026; GitHub ``Amir79Naziri/MAM_code``,
``model/mae_autobin.py``: ``MaeAutobin.forward`` with ``masking_strategy="cross-attention"``,
``generate_multinomial_attention_mask``; ``pretrain/trainer.py`` for the loss).

The scorer (:class:`MAMScorer`): ``n_latents`` (128) trainable latents of width ``latent_dim`` (256)
cross-attend, with ``n_heads`` (8) heads, to per-position keys and values ``input_proj(value)``,
``input_proj = Linear(1, latent_dim)``: a position is seen through its value only, no gene identity.
A position's score is its attention weight summed over heads and over a random subset of
``floor(n_latents x latent_share)`` latents (upstream: the masking ratio; at least one here, where
upstream's ``int`` would give none and uniform scores); scores + 1e-8 are normalized over the
maskable positions, zeros included, and ``k = floor(N x ratio)`` positions are drawn without
replacement (Gumbel-top-k: the distribution of ``torch.multinomial(replacement=False)``, vectorized).
Released defaults (``pretrain/main.py``, ``experiment_1/run.sh``): ratio 0.024 (0.3 x 0.08, so 3 of
128 latents) and advanced masking (80% mask token, 10% random value, 10% true value at the masked
positions of the decoder input); ``ratio: 0.3, advanced_masking: false`` is this module's earlier
behaviour. The mean of the cross-attention outputs over the latents is projected (``output_proj``)
to the backbone's width and added to every encoder and decoder token (upstream ``'both'``); the
loss gains ``reg x ||cross-attention output||_2`` (1e-5).

**Where the scorer's gradient comes from.** The probabilities are detached and sampling is not
differentiable, so *nothing flows through the choice of masks*. The scorer's parameters get
gradient only (1) through the injected summary, which the reconstruction loss sees in every token,
and (2) through the L2 term. ``tests/test_pretrain.py`` checks both paths and that with
``inject=False`` and ``reg=0`` the scorer gets none.

Controls that separate the masks from the extra module: ``inject=False`` (MAM's masks, no summary)
and ``sample="stratified"`` (the summary injected, masks from MAM's uniform baseline, ``ratio`` of
zero and non-zero positions alike). ``summary_input="all"`` (released) computes the summary from
every value, the masked ones included, so a pooled trace of the hidden values reaches every token;
``"visible"`` recomputes it with the masked positions left out of the keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from scfmbench import InputError
from scfmbench.pretrain.masking.base import (
    RELEASED_RATIO,
    Draw,
    MaskingStrategy,
    advanced_masking,
    check_ratio,
    gumbel_topk,
    n_to_mask,
    register_strategy,
)
from scfmbench.pretrain.masking.stratified import stratified_mask


class MAMScorer(nn.Module):
    """Latents cross-attending to per-position values. Shapes: B cells, L positions, M latents,
    H heads, C = latent_dim, D = the backbone's width."""

    def __init__(self, d_out: int, *, n_latents: int = 128, latent_dim: int = 256, n_heads: int = 8):
        super().__init__()
        if latent_dim % n_heads:
            raise InputError(f"mam: latent_dim={latent_dim} must be divisible by n_heads={n_heads}")
        self.latents = nn.Parameter(torch.randn(n_latents, latent_dim) * 0.02)  # upstream initialize_new_parameters
        self.input_proj = nn.Linear(1, latent_dim)
        self.cross_attention = nn.MultiheadAttention(latent_dim, n_heads, batch_first=True)
        self.output_proj = nn.Linear(latent_dim, d_out)
        for lin in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, values: torch.Tensor, keys_shown: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention weights (B, H, M, L) (zero where not shown) and outputs (B, M, C)."""
        kv = self.input_proj(values.to(self.latents.dtype)[..., None])  # (B, L, C)
        hide = ~keys_shown
        hide = hide & ~hide.all(1, keepdim=True)  # a row with nothing shown attends to everything (no NaN)
        q = self.latents.expand(values.shape[0], -1, -1)  # (B, M, C)
        out, weights = self.cross_attention(
            q, kv, kv, key_padding_mask=hide, need_weights=True, average_attn_weights=False
        )
        return weights, out

    def summarize(self, out: torch.Tensor) -> torch.Tensor:
        """(B, M, C) -> (B, D): the mean over latents, projected."""
        return self.output_proj(out.mean(1))


@register_strategy("mam")
@dataclass(frozen=True, kw_only=True)
class MAM(MaskingStrategy):
    ratio: float = RELEASED_RATIO
    latent_share: float | None = None  # share of latents summed per batch; None = ratio (upstream)
    n_latents: int = 128
    latent_dim: int = 256
    n_heads: int = 8
    inject: bool = True
    reg: float = 1e-5
    sample: str = "scores"  # or "stratified": MAM's uniform baseline masks, with the summary injected
    summary_input: str = "all"  # or "visible"
    advanced_masking: bool = True  # false: every masked position shows the mask token

    needs_scorer = True

    def __post_init__(self):
        check_ratio("mam.ratio", self.ratio)
        if self.latent_share is not None:
            check_ratio("mam.latent_share", self.latent_share)
        if self.sample not in ("scores", "stratified"):
            raise InputError(f"masking option mam.sample must be 'scores' or 'stratified', got {self.sample!r}")
        if self.summary_input not in ("all", "visible"):
            raise InputError(f"masking option mam.summary_input must be 'all' or 'visible', got {self.summary_input!r}")

    def make_scorer(self, d_out: int) -> MAMScorer:
        return MAMScorer(d_out, n_latents=self.n_latents, latent_dim=self.latent_dim, n_heads=self.n_heads)

    def probs(self, weights: torch.Tensor, maskable: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Sampling probabilities (B, L) from attention weights (B, H, M, L), detached."""
        n_latents = weights.shape[2]
        share = self.ratio if self.latent_share is None else self.latent_share
        chosen = torch.randperm(n_latents, generator=generator, device=generator.device)[
            : max(1, int(n_latents * share))
        ].to(weights.device)
        score = (weights.detach().sum(1)[:, chosen].sum(1) + 1e-8) * maskable  # (B, L)
        return score / score.sum(1, keepdim=True).clamp_min(1e-30)

    def draw(self, values, maskable, *, generator, scorer=None) -> Draw:
        if scorer is None:
            raise InputError("masking strategy 'mam' needs its scorer (MaskedModel built with this strategy)")
        weights, out = scorer(values, maskable)
        if self.sample == "scores":
            mask = gumbel_topk(
                self.probs(weights, maskable, generator=generator), n_to_mask(maskable, self.ratio), generator=generator
            )
        else:
            mask = stratified_mask(values, maskable, self.ratio, self.ratio, generator=generator)
        if self.summary_input == "visible":
            _, out = scorer(values, maskable & ~mask)
        summary = scorer.summarize(out) if self.inject else None
        shown = advanced_masking(values, mask, maskable, generator=generator) if self.advanced_masking else None
        return Draw(mask, summary, self.reg * out.norm() if self.reg else None, shown=shown)

    def summary(self, values, maskable, scorer=None) -> torch.Tensor | None:
        if scorer is None or not self.inject:
            return None
        return scorer.summarize(scorer(values, maskable)[1])
