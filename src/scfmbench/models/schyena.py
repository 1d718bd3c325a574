"""scHyena: bidirectional Hyena over the full transcriptome (Oh et al., arXiv 2310.02713).

Input per cell: continuous log-normalised values (normalize_total 1e4 + log1p, all genes, no HVG
selection) in a fixed gene order, with their gene ids. Each value goes through a Linear(1, D)
adaptor (no binning); a gene-identity embedding is added instead of a positional encoding; masked
values are replaced by a learned mask token; a learned [CLS] token is prepended; stacked
bidirectional :class:`~scfmbench.models.hyena.HyenaBlock` s and a final norm follow. Heads: an
expression head (masked expression modelling, imputation) and a classifier on [CLS].

Pre-training is masked expression modelling: Bernoulli(p) over non-zero, non-pad entries, p drawn
per batch from [0.05, 0.4] (the paper's range), MSE on the masked entries (``REFERENCE.md`` s. 2);
the rule and the loss live with the shared training stage (:mod:`scfmbench.pretrain.masking.uniform`,
:func:`scfmbench.pretrain.loop.masked_expression_loss`): a model never imports its trainer.

Shapes: B cells, L genes (L + 1 tokens with [CLS] first), D model width.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scfmbench import InputError
from scfmbench.models.hyena import HyenaBlock


@dataclass(frozen=True, kw_only=True)
class SCHyenaConfig:
    """scHyena hyper-parameters. The paper does not state its sizes; the defaults are small.

    Attributes
    ----------
    n_genes
        Gene vocabulary size (rows of the gene embedding).
    d_model
        Model width D.
    n_layers
        Number of Hyena blocks.
    order
        Hyena order N (N + 1 projected streams, N - 1 long convolutions; safari's default 2).
    filter_order
        Width of the implicit filter's sine MLP (64, as in Hyena).
    filter_emb_dim
        Lag features fed to the filter MLP: t plus ``(filter_emb_dim - 1) / 2`` sin/cos bands; odd.
    mlp_ratio
        Hidden width of each block's MLP, in multiples of D.
    dropout
        Dropout after the gates and on each residual branch.
    max_len
        Longest input in genes (the filter's lags are normalised by ``max_len + 1``, the [CLS]
        token included); None = ``n_genes``.
    n_classes
        Classifier outputs; 0 = no classifier until :meth:`SCHyena.reset_classifier`.
    """

    n_genes: int
    d_model: int = 128
    n_layers: int = 4
    order: int = 2
    filter_order: int = 64
    filter_emb_dim: int = 5
    mlp_ratio: int = 4
    dropout: float = 0.0
    max_len: int | None = None
    n_classes: int = 0

    def __post_init__(self):
        for name in ("n_genes", "d_model", "n_layers", "filter_order", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise InputError(f"SCHyenaConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.order < 2:
            raise InputError(f"SCHyenaConfig.order must be >= 2, got {self.order}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"SCHyenaConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.max_len is not None and self.max_len < 1:
            raise InputError(f"SCHyenaConfig.max_len must be >= 1 or None, got {self.max_len}")
        if self.n_classes < 0:
            raise InputError(f"SCHyenaConfig.n_classes must be >= 0, got {self.n_classes}")

    @property
    def n_tokens(self) -> int:
        """Longest token sequence: ``max_len`` genes plus [CLS]."""
        return (self.max_len or self.n_genes) + 1


class SCHyena(nn.Module):
    """scHyena backbone with an expression head and a [CLS] classifier.

    ``values`` (B, L) float, ``gene_ids`` (B, L) long, ``mask`` (B, L) bool (True = masked:
    the value is hidden and must be predicted), ``pad_mask`` (B, L) bool (True = padding).
    """

    def __init__(self, config: SCHyenaConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.value_adaptor = nn.Linear(1, d)
        self.gene_embedding = nn.Embedding(config.n_genes, d)
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.cls_token = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(
            HyenaBlock(
                d,
                l_max=config.n_tokens,
                order=config.order,
                filter_order=config.filter_order,
                filter_emb_dim=config.filter_emb_dim,
                mlp_ratio=config.mlp_ratio,
                dropout=config.dropout,
            )
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.expression_head = nn.Linear(d, 1)
        self.classifier = nn.Linear(d, config.n_classes) if config.n_classes else None
        # Gene embeddings at unit scale (nn.Embedding's default): with std 0.02 next to the value
        # adaptor's O(1) outputs the model could barely tell genes apart at unmasked positions and
        # classification stalled near chance (synthetic accuracy 0.23 -> 0.37 after 300 steps).
        for p in (self.mask_token, self.cls_token):
            nn.init.normal_(p, std=0.02)

    def reset_classifier(self, n_classes: int) -> None:
        """Replace the classifier by a fresh Linear(D, n_classes) (fine-tuning on new labels)."""
        if n_classes < 1:
            raise InputError(f"n_classes must be >= 1, got {n_classes}")
        ref = self.expression_head.weight
        self.classifier = nn.Linear(self.config.d_model, n_classes).to(device=ref.device, dtype=ref.dtype)
        self.config = dataclasses.replace(self.config, n_classes=n_classes)

    # -- inputs -> hidden states ---------------------------------------------------------------

    def embed_tokens(
        self, values: torch.Tensor, gene_ids: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token embeddings before any mixing, (B, L + 1, D): [CLS], then adaptor(value) (or the
        mask token where masked) + gene embedding. No position enters here.
        """
        if values.shape != gene_ids.shape or values.dim() != 2:
            raise InputError(
                f"values and gene_ids must both be (B, L); got {tuple(values.shape)} and {tuple(gene_ids.shape)}"
            )
        if mask is not None:
            if mask.shape != values.shape:
                raise InputError(f"mask must be (B, L) = {tuple(values.shape)}, got {tuple(mask.shape)}")
            # Hide the true value before anything reads it: zero it (so even a NaN there cannot
            # reach a gradient) and put the mask token in its place. The bidirectional filters mix
            # every position into every other, so this must happen before the first block.
            values = values.masked_fill(mask, 0.0)
        x = self.value_adaptor(values.to(self.value_adaptor.weight.dtype)[..., None])  # (B, L, D)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_token, x)
        x = x + self.gene_embedding(gene_ids)
        cls = self.cls_token.expand(x.shape[0], 1, -1)  # (B, 1, D)
        return torch.cat([cls, x], dim=1)

    def forward(
        self,
        values: torch.Tensor,
        gene_ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        pad_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states (B, L + 1, D) after the final norm; position 0 is [CLS]."""
        x = self.embed_tokens(values, gene_ids, mask)
        pad = None if pad_mask is None else F.pad(pad_mask, (1, 0), value=False)  # [CLS] is real
        for block in self.blocks:
            x = block(x, pad)
        return self.norm(x)

    # -- heads -----------------------------------------------------------------------------------

    def predict_expression(
        self,
        values: torch.Tensor,
        gene_ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        pad_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted value per gene, (B, L)."""
        hidden = self(values, gene_ids, mask, pad_mask=pad_mask)
        return self.expression_head(hidden[:, 1:]).squeeze(-1)

    def embed(
        self,
        values: torch.Tensor,
        gene_ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        pad_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cell embedding: the [CLS] hidden state, (B, D)."""
        return self(values, gene_ids, mask, pad_mask=pad_mask)[:, 0]

    def embedding_pooling(self) -> str:
        """The benchmark's cell embedding (docs/embedding.md "Cell embeddings") is :meth:`embed`."""
        return "[CLS] state (scHyena's cell representation)"

    def classify(
        self,
        values: torch.Tensor,
        gene_ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        pad_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits from [CLS], (B, n_classes)."""
        if self.classifier is None:
            raise InputError("this SCHyena has no classifier (n_classes=0); call reset_classifier(n_classes) first")
        return self.classifier(self.embed(values, gene_ids, mask, pad_mask=pad_mask))

    # -- accounting ------------------------------------------------------------------------------

    def num_params(self, *, exclude_gene_embedding: bool = False) -> int:
        """Parameter count; the gene embedding (n_genes x D) can be left out, as nanoGPT leaves
        out position embeddings, since it scales with the vocabulary, not the compute."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.gene_embedding.weight.numel() if exclude_gene_embedding else n

    def flops_per_cell(self, length: int, *, batch: int = 1) -> float:
        """Estimated forward FLOPs for one cell of ``length`` genes (``n = length + 1`` tokens).

        ``2nD`` (adaptor) ``+ sum over blocks`` (:meth:`HyenaBlock.flops`: projections
        ``2nD(N+1)D + 2nD^2``, short conv ``2*3*n(N+1)D``, gates ``NnD``, per long filter and
        channel ``7.5 F log2 F + 3F + 2n`` with ``F = fft_size(n) ~ 2n``, MLP ``4nD(rD)``, the
        filter MLP over ``2n - 1`` lags divided by ``batch``) ``+ 2nD`` (expression head).
        Norms, activations and the classifier are ignored. A training step is ~3x this.
        The FFT term makes it grow as ``n log n``; everything else is linear in n.
        """
        n, d = length + 1, self.config.d_model
        return 2 * n * d + sum(block.flops(n, batch=batch) for block in self.blocks) + 2 * n * d
