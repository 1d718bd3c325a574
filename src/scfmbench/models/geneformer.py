"""Geneformer-style backbone: rank-value encoded genes, a BERT encoder, the <cls> token.

Geneformer (Theodoris et al., Nature 2023; Hugging Face ``ctheodoris/Geneformer``) is a
``transformers.BertForMaskedLM``: token embedding + learned absolute position embedding (+ the
token-type-0 embedding), LayerNorm, dropout; post-LN BERT layers; ReLU; hidden 256, 4 heads,
intermediate 512, 6 layers, dropout 0.02, LayerNorm eps 1e-12, 2048 positions. The input is the
cell's genes ranked by expression normalized by each gene's non-zero median
(:func:`scfmbench.models.tokenize.tokenize_geneformer`); the rank is carried by the position
embedding only, there is no value embedding. Here a <cls> token leads the sequence, either as an
input token with position 0 (``cls_token="input"``, as Geneformer V2) or as the mean of the
embedded genes prepended after the embedding layer, the genes keeping the positions 0..n-1 they
were pretrained with (``"prepended"``, GenoHoption's Geneformer adaptor for the V1 model; the
loader's choice for a vocabulary without <cls>); with ``cell_embedding="cls"`` BERT's pooler (dense + tanh on <cls>)
feeds the classifier, as in ``BertForSequenceClassification``; with ``"avg-pool"`` (the from-scratch
default) the mean of the token states does, as Geneformer's cell embeddings.

Attention is any registered kernel through :class:`~scfmbench.models.attention.MultiHeadAttention`;
its packed ``qkv`` is BERT's ``query``/``key``/``value`` stacked, ``out`` is
``attention.output.dense`` (:func:`scfmbench.models.pretrained.load_geneformer_checkpoint`). With
``full`` attention the encoder reproduces ``transformers.BertModel`` (tested to 1e-5). The
defaults here are a small model for from-scratch CPU runs; :meth:`GeneformerConfig.paper` gives
Geneformer's own sizes. Weights start from PyTorch's default initialisation, not BERT's
normal(0, 0.02): at widths of 32-64 that scale starves the attention path (from scratch on the
test data the <cls> head stayed at macro F1 0.56 for 20 epochs; with the default it reached 0.96
in 5). Loaded checkpoints overwrite it anyway.

Shapes: B cells, L tokens (<= max_position), E = d_model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from scfmbench import InputError
from scfmbench.models.attention import EdgePattern
from scfmbench.models.scgpt import Encoder, check_choice, masked_mean, num_params
from scfmbench.models.tokenize import N_SPECIAL, PAD_ID, TokenizedCells

CLS_TOKENS = ("input", "prepended")


@dataclass(kw_only=True)
class GeneformerConfig:
    n_genes: int
    n_classes: int
    d_model: int = 32  # from-scratch CPU size; paper() gives Geneformer's
    n_layers: int = 1
    n_heads: int = 2
    d_hidden: int = 64
    max_position: int = 2048  # position embeddings (Geneformer: 2048; V2: 4096)
    dropout: float = 0.02
    activation: str = "relu"
    eps: float = 1e-12  # BERT's layer_norm_eps
    # "cls" (through BERT's pooler, as BertForSequenceClassification; the loader's default) or
    # "avg-pool" (mean of real tokens, Geneformer's cell embedding): avg-pool for the one-layer
    # from-scratch model, see ScGPTConfig.cell_embedding.
    cell_embedding: str = "avg-pool"
    # Where the <cls> state comes from. "input": a <cls> token at position 0 with its own position
    # embedding, genes at positions 1..n (Geneformer V2's layout, whose vocabulary has <cls>; the
    # from-scratch default, where positions are learned anyway). "prepended": genes at positions
    # 0..n-1, as Geneformer V1 was pretrained (no <cls>), and the <cls> state, the mean of the
    # embedded genes, prepended after the embedding layer, as GenoHoption's Geneformer adaptor
    # (GenoHoption/Geneformer_adaptor.py, whose mean also counts padded positions; here real genes only).
    cls_token: str = "input"
    attention: str = "full"
    attention_config: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("cell_embedding", self.cell_embedding, ("cls", "avg-pool"))
        check_choice("cls_token", self.cls_token, CLS_TOKENS)

    @classmethod
    def paper(cls, **overrides) -> GeneformerConfig:
        """Geneformer's published sizes (6 layers, 256 wide, 4 heads, intermediate 512)."""
        return cls(**{"d_model": 256, "n_layers": 6, "n_heads": 4, "d_hidden": 512, "dropout": 0.02, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


class GeneformerClassifier(nn.Module):
    """token + position embedding -> LayerNorm -> post-LN encoder -> pooler(<cls>) -> classifier."""

    def __init__(self, cfg: GeneformerConfig):
        super().__init__()
        self.cfg = cfg
        self.token_emb = nn.Embedding(cfg.n_genes + N_SPECIAL, cfg.d_model, padding_idx=PAD_ID)
        self.pos_emb = nn.Embedding(
            cfg.max_position, cfg.d_model
        )  # BERT's token-type-0 vector is folded in when loading
        self.emb_norm = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            d_hidden=cfg.d_hidden,
            attention=cfg.attention,
            attention_config=cfg.attention_config,
            dropout=cfg.dropout,
            activation=cfg.activation,
            norm_scheme="post",
            eps=cfg.eps,
        )
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model) if cfg.cell_embedding == "cls" else None  # BERT's pooler
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.d_model, cfg.n_classes)

    def hidden_states(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        """(B, L, E): BertModel's ``last_hidden_state`` for the same weights (full attention)."""
        prepend = self.cfg.cls_token == "prepended"
        ids = cells.gene_ids[:, 1:] if prepend else cells.gene_ids  # "prepended": genes only, from position 0
        L = ids.shape[1]
        if L > self.cfg.max_position:
            raise InputError(f"{L} tokens but the model has {self.cfg.max_position} position embeddings; lower max_len")
        pos = torch.arange(L, device=ids.device)
        x = self.emb_dropout(self.emb_norm(self.token_emb(ids) + self.pos_emb(pos)[None]))  # (B, L, E)
        if prepend:  # GenoHoption/Geneformer_adaptor.py: cat([mean(embedding_output), embedding_output])
            x = torch.cat([masked_mean(x, cells.padding[:, 1:])[:, None], x], dim=1)  # (B, 1 + L, E)
        return self.encoder(x, cells.padding, cells.gene_ids, edges)

    def embed(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        """Cell embedding (B, E): the pooled <cls> state (or the mean of real tokens)."""
        x = self.hidden_states(cells, edges)
        return torch.tanh(self.pooler(x[:, 0])) if self.cfg.cell_embedding == "cls" else masked_mean(x, cells.padding)

    def forward(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        return self.classifier(self.dropout(self.embed(cells, edges)))  # (B, n_classes)

    # The benchmark's cell embedding (docs/embedding.md "Cell embeddings"): Geneformer's released convention,
    # the mean of the gene states of the last layer, <cls> and padding left out (Geneformer's
    # EmbExtractor, emb_mode "cell"; BioLLM's mean_nonpadding_embs), whatever the classifier reads.
    def cell_embedding(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        """(B, E): mean over the gene positions (1..; position 0 is <cls> in both layouts)."""
        x = self.hidden_states(cells, edges)
        return masked_mean(x[:, 1:], cells.padding[:, 1:])

    def embedding_pooling(self) -> str:
        return "mean of the gene states (<cls> and padding excluded)"

    def num_params(self) -> int:
        return num_params(self)
