"""scGPT-style backbone: gene token embedding + binned value embedding, CLS, swappable attention.

Follows scGPT's model (``scgpt/model/model.py``: GeneEncoder + value encoder summed, transformer
encoder, ClsDecoder on the <cls> output) at a configurable size; attention is any registered kernel
(``scfmbench.models.attention``), so ``scgpt-full`` and ``scgpt-genohoption-p`` share this file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from scfmbench import InputError
from scfmbench.models.attention import MultiHeadAttention
from scfmbench.models.tokenize import N_SPECIAL, PAD_ID, TokenizedCells


@dataclass(kw_only=True)
class ScGPTConfig:
    n_genes: int
    n_classes: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_hidden: int = 128
    n_bins: int = 51
    dropout: float = 0.1
    value_encoding: str = "category"  # scGPT input_emb_style "category"; "continuous" (its tutorial default) stalled from scratch on pbmc68k (F1 0.05 vs 0.45)
    cell_embedding: str = "cls"  # scGPT's cell_emb_style: "cls" or "avg-pool" (mean of gene tokens)
    attention: str = "full"
    attention_config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, cfg: ScGPTConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, kernel=cfg.attention, kernel_config=cfg.attention_config, dropout=cfg.dropout)
        self.ffn = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.d_hidden, cfg.d_model), nn.Dropout(cfg.dropout))

    def forward(self, x, padding=None, edges=None):
        x = x + self.attn(self.norm1(x), key_padding_mask=padding, edges=edges)
        return x + self.ffn(self.norm2(x))


class ContinuousValueEncoder(nn.Module):
    """scGPT's ContinuousValueEncoder: the bin index as a number through Linear-ReLU-Linear-LayerNorm.

    Keeps the bins' order (bin 40 is near bin 41), which a lookup table has to learn from data; with
    a few hundred training cells that makes the difference between learning and memorising.
    """

    def __init__(self, d_model: int, max_value: float):
        super().__init__()
        self.max_value = max_value
        self.net = nn.Sequential(nn.Linear(1, d_model), nn.ReLU(), nn.Linear(d_model, d_model), nn.LayerNorm(d_model))

    def forward(self, value_ids):
        return self.net(value_ids.float().clamp(max=self.max_value).unsqueeze(-1))  # (B, L) -> (B, L, E)


class ScGPTClassifier(nn.Module):
    def __init__(self, cfg: ScGPTConfig):
        super().__init__()
        self.cfg = cfg
        self.gene_emb = nn.Embedding(cfg.n_genes + N_SPECIAL, cfg.d_model, padding_idx=PAD_ID)
        if cfg.value_encoding == "continuous":
            self.value_emb = ContinuousValueEncoder(cfg.d_model, max_value=cfg.n_bins)
        elif cfg.value_encoding == "category":
            self.value_emb = nn.Embedding(cfg.n_bins + 1, cfg.d_model)  # bins 0..n_bins-1 plus <pad>
        else:
            raise InputError(f"value_encoding must be 'continuous' or 'category', not {cfg.value_encoding!r}")
        self.emb_norm = nn.LayerNorm(cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.ReLU(), nn.Linear(cfg.d_model, cfg.n_classes))

    def embed(self, cells: TokenizedCells, edges=None) -> torch.Tensor:
        """CLS embedding (B, E)."""
        x = self.emb_norm(self.gene_emb(cells.gene_ids) + self.value_emb(cells.value_ids))  # (B, L, E)
        for block in self.blocks:
            x = block(x, padding=cells.padding, edges=edges)
        x = self.norm(x)
        if self.cfg.cell_embedding == "cls":
            return x[:, 0]
        real = (~cells.padding).float().unsqueeze(-1)  # (B, L, 1), CLS counted as a token
        return (x * real).sum(1) / real.sum(1)

    def forward(self, cells: TokenizedCells, edges=None) -> torch.Tensor:
        return self.head(self.embed(cells, edges))  # (B, n_classes)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
