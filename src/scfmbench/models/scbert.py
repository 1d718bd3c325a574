"""scBERT-style backbone: every gene of the panel, expression bins + gene embedding, Performer.

scBERT (Yang et al., Nature Machine Intelligence 2022; ``TencentAILabHealthcare/scBERT``) reads the
whole gene panel (16,906 genes, zeros included) as tokens: a token embedding of the binned
expression (log2 of normalized counts truncated to an integer, 7 bins with the top bin saturating,
:func:`scfmbench.models.tokenize.scbert_bins`) plus a gene embedding, through a pre-LN Performer
(FAVOR+ attention, GELU feed-forward 4x wide, final LayerNorm; 6 layers, 200 wide, 10 heads of
64: ``dim_head``; q/k/v projections without bias: ``PerformerLM``'s ``qkv_bias=False``).
Differences, stated:

- **Gene embedding**: scBERT's is gene2vec (fixed 200-d vectors trained on co-expression); there is
  no gene2vec table for an arbitrary panel here, so it is a learned embedding.
- **<cls>**: scBERT appends one extra token with value 0 at the end of the sequence; here a <cls>
  token leads it (position 0), so window, BigBird and graph kernels treat it as the global token.
- **Head**: ``pooling="conv"`` (the default) is scBERT's fine-tuning head: a Conv2d(1, 1, (1, E))
  that reduces each token to one number, ReLU, then an MLP over all L tokens (L -> 512 -> h_dim ->
  classes in scBERT, L -> ``d_head`` -> ``d_head // 4`` -> classes here). Its first layer has a
  weight per gene, which is why it learns fast from scratch (pbmc68k, 8 epochs: macro F1 0.50;
  test data: 0.92 where mean pooling reached 0.49). ``pooling="mean"`` averages the tokens and
  applies a two-layer MLP (no tie to the panel length).

Attention is any registered kernel (Performer by default: ``scbert-performer``).
Shapes: B cells, L = G + 1 tokens, E = d_model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from scfmbench.models.attention import EdgePattern
from scfmbench.models.scgpt import Encoder, check_choice, masked_mean, num_params
from scfmbench.models.tokenize import N_SPECIAL, PAD_ID, TokenizedCells


@dataclass(kw_only=True)
class ScBERTConfig:
    n_genes: int
    n_classes: int
    d_model: int = 16  # from-scratch CPU size (scBERT: 200, 6 layers, 10 heads): L = G + 1 tokens per cell
    n_layers: int = 1
    n_heads: int = 2
    d_hidden: int = 32  # (Performer's FeedForward: 4 x d_model)
    n_bins: int = 7  # scBERT's bin_num: value ids 0..n_bins, n_bins + 1 = <mask>
    log_base: float = 2.0  # scBERT: log1p(base=2)
    dropout: float = 0.1
    pooling: str = "conv"  # "conv" (scBERT's fine-tuning head) or "mean"
    d_head: int = 64  # hidden width of the head's MLP (scBERT's conv head: 512, then h_dim 100/128)
    # Width of each attention head: scBERT's PerformerLM(dim=200, heads=10) keeps performer-pytorch's
    # dim_head=64 (performer_pytorch.py PerformerLM default), i.e. 640-wide attention and int(64 ln 64)
    # = 266 random features per head, not 200 / 10 = 20 (config/paper.yaml: 64). None (the CPU
    # default): d_model // n_heads; 64 at the default width would cost ~8x the training time.
    dim_head: int | None = None
    attention: str = "performer"
    attention_config: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("pooling", self.pooling, ("mean", "conv"))

    def to_dict(self) -> dict:
        return asdict(self)


class ConvHead(nn.Module):
    """scBERT's head: Conv2d(1, 1, (1, E)) per token (= a shared Linear(E, 1)), ReLU, MLP over L."""

    def __init__(self, n_tokens: int, d_model: int, n_classes: int, d_head: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Linear(d_model, 1)
        self.mlp = nn.Sequential(
            nn.Linear(n_tokens, d_head),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(d_head, max(d_head // 4, 1)),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(max(d_head // 4, 1), n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.relu(self.conv1(x)).squeeze(-1))  # (B, L, E) -> (B, L) -> (B, n_classes)


class ScBERTClassifier(nn.Module):
    """bin embedding + gene embedding -> pre-LN encoder (+ final LayerNorm) -> pooled head."""

    def __init__(self, cfg: ScBERTConfig):
        super().__init__()
        self.cfg = cfg
        self.value_emb = nn.Embedding(cfg.n_bins + 2, cfg.d_model)  # scBERT's token_emb: CLASS = bin_num + 2 rows
        self.gene_emb = nn.Embedding(cfg.n_genes + N_SPECIAL, cfg.d_model, padding_idx=PAD_ID)  # replaces gene2vec
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            d_hidden=cfg.d_hidden,
            attention=cfg.attention,
            attention_config=cfg.attention_config,
            dropout=cfg.dropout,
            activation="gelu",
            norm_scheme="pre",
            head_dim=cfg.dim_head,
            qkv_bias=False,  # performer-pytorch's PerformerLM (scBERT's model): no q/k/v bias; to_out keeps its bias
        )
        if cfg.pooling == "conv":
            self.head = ConvHead(cfg.n_genes + 1, cfg.d_model, cfg.n_classes, cfg.d_head, cfg.dropout)
        else:
            self.head = nn.Sequential(
                nn.Linear(cfg.d_model, cfg.d_head),
                nn.ReLU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(cfg.d_head, cfg.n_classes),
            )

    def hidden_states(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        """(B, L, E) encoder output."""
        x = self.emb_dropout(self.value_emb(cells.value_ids) + self.gene_emb(cells.gene_ids))  # (B, L, E)
        return self.encoder(x, cells.padding, cells.gene_ids, edges)

    def embed(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        """Mean of the token states (B, E)."""
        return masked_mean(self.hidden_states(cells, edges), cells.padding)

    # The benchmark's cell embedding (docs/embedding.md "Cell embeddings"): scBERT defines none (its conv head
    # reduces each token to one number); BioLLM offers <cls>, mean and sum of the encoder states.
    # Here the mean of the token states, the vector the pooling="mean" head reads.
    def cell_embedding(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        """(B, E): :meth:`embed`."""
        return self.embed(cells, edges)

    def embedding_pooling(self) -> str:
        return "mean of the token states (<cls> and every gene)"

    def forward(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        if self.cfg.pooling == "conv":
            return self.head(self.hidden_states(cells, edges))
        return self.head(self.embed(cells, edges))  # (B, n_classes)

    def num_params(self) -> int:
        return num_params(self)
