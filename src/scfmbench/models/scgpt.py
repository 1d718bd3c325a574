"""scGPT-style backbone, and the encoder layer all three backbones share.

Follows scGPT's ``TransformerModel`` (``scgpt/model/model.py``): ``GeneEncoder`` (embedding +
LayerNorm) plus a value encoder (``ContinuousValueEncoder`` or ``CategoryValueEncoder``), summed;
a stack of encoder layers (``FlashTransformerEncoderLayer``: packed ``Wqkv``, ``out_proj``,
``linear1``/``linear2``, ``norm1``/``norm2``, post-norm by default, ReLU); the cell embedding of the
<cls> token (``cell_emb_style="cls"``) into ``ClsDecoder`` (``n_layers_cls - 1`` x Linear-ReLU-
LayerNorm, then a Linear). Module names mirror the official ones so that a released checkpoint
maps 1:1 (:func:`scfmbench.models.pretrained.load_scgpt_checkpoint`); attention is any registered
kernel (``scfmbench.models.attention``), so ``scgpt-full`` and ``scgpt-genohoption-p`` share this
file. Graph kernels get their per-batch edge pattern from a :class:`TokenGraph` attached to the
encoder (:meth:`Encoder.set_graph`).

Shapes: B cells, L tokens, E = d_model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from scfmbench import InputError
from scfmbench.models.attention import KERNELS, EdgePattern, MultiHeadAttention
from scfmbench.models.tokenize import N_SPECIAL, PAD_ID, TokenGraph, TokenizedCells

NORM_SCHEMES = ("post", "pre")
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise InputError(f"{name} must be one of {sorted(allowed)}, not {value!r}")


# ---------------------------------------------------------------------------------------------
# the shared encoder layer and stack


class Block(nn.Module):
    """One encoder layer: attention and feed-forward, each with a residual and a LayerNorm.

    ``post`` (scGPT's default ``norm_scheme``, BERT): x = norm1(x + attn(x)); x = norm2(x + ffn(x)).
    ``pre`` (Performer/scBERT, GPT-2): x = x + attn(norm1(x)); x = x + ffn(norm2(x)), with a final
    LayerNorm after the stack (:class:`Encoder`). Parameter names follow scGPT's layer; BERT's map
    onto them (``attention.self.{query,key,value}`` -> ``self_attn.qkv``, ``attention.output.dense``
    -> ``self_attn.out``, ``attention.output.LayerNorm`` -> ``norm1``, ``intermediate.dense`` ->
    ``linear1``, ``output.dense`` -> ``linear2``, ``output.LayerNorm`` -> ``norm2``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_hidden: int,
        *,
        attention: str,
        attention_config: dict | None = None,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_scheme: str = "post",
        eps: float = 1e-5,
        head_dim: int | None = None,
        qkv_bias: bool = True,
    ):
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("norm_scheme", norm_scheme, NORM_SCHEMES)
        self.norm_scheme, self.activation = norm_scheme, ACTIVATIONS[activation]
        self.self_attn = MultiHeadAttention(
            d_model,
            n_heads,
            kernel=attention,
            kernel_config=attention_config,
            dropout=dropout,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
        )
        self.linear1, self.linear2 = nn.Linear(d_model, d_hidden), nn.Linear(d_hidden, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model, eps=eps), nn.LayerNorm(d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)  # after the feed-forward output (the attention's is in self_attn)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.activation(self.linear1(x))))

    def forward(
        self, x: torch.Tensor, padding: torch.Tensor | None = None, edges: EdgePattern | None = None
    ) -> torch.Tensor:
        if self.norm_scheme == "post":
            x = self.norm1(x + self.self_attn(x, key_padding_mask=padding, edges=edges))
            return self.norm2(x + self.ffn(x))
        x = x + self.self_attn(self.norm1(x), key_padding_mask=padding, edges=edges)
        return x + self.ffn(self.norm2(x))


class Encoder(nn.Module):
    """A stack of :class:`Block` s with one attention kernel (+ a final LayerNorm for ``pre``).

    For kernels with ``needs_edges`` (GenoHoption, one-hop) the edge pattern of each batch is built
    from the token ids and the attached gene graph (:meth:`set_graph`), once per forward and shared
    by every layer; window and random kernels build theirs from L.
    """

    def __init__(
        self,
        *,
        d_model: int,
        n_layers: int,
        n_heads: int,
        d_hidden: int,
        attention: str,
        attention_config: dict | None = None,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_scheme: str = "post",
        eps: float = 1e-5,
        head_dim: int | None = None,
        qkv_bias: bool = True,
    ):
        super().__init__()
        if attention not in KERNELS:
            raise InputError(f"unknown attention kernel {attention!r}; registered kernels are {sorted(KERNELS)}")
        self.attention, self.needs_edges = attention, KERNELS[attention].needs_edges
        self.layers = nn.ModuleList(
            Block(
                d_model,
                n_heads,
                d_hidden,
                attention=attention,
                attention_config=attention_config,
                dropout=dropout,
                activation=activation,
                norm_scheme=norm_scheme,
                eps=eps,
                head_dim=head_dim,
                qkv_bias=qkv_bias,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model, eps=eps) if norm_scheme == "pre" else nn.Identity()
        self.graph: TokenGraph | None = None

    def set_graph(self, graph: TokenGraph | None) -> None:
        """Attach the gene graph the graph kernels run on (not a parameter: not in the state dict)."""
        self.graph = graph

    def edges(self, gene_ids: torch.Tensor) -> EdgePattern | None:
        """The batch's edge pattern for graph kernels; None for the others."""
        if not self.needs_edges:
            return None
        if self.graph is None:
            raise InputError(
                f"attention {self.attention!r} runs on a gene graph, and none is attached: build one "
                "(scfmbench.graphs.build.build_gene_graph, or load_graph on "
                f"results/graphs/{{dataset}}/seed{{seed}}/full.npz) and pass it as graph=... to annotate_transformer "
                "(or call set_graph(TokenGraph.from_gene_graph(graph)))"
            )
        return self.graph.pattern(gene_ids)

    def forward(
        self, x: torch.Tensor, padding: torch.Tensor, gene_ids: torch.Tensor, edges: EdgePattern | None = None
    ) -> torch.Tensor:
        """(B, L, E) -> (B, L, E); ``padding`` (B, L) True = pad; ``gene_ids`` (B, L) token ids."""
        edges = edges if edges is not None else self.edges(gene_ids)
        for layer in self.layers:
            x = layer(x, padding, edges)
        return self.norm(x)


def attach_graph(model: nn.Module, graph: TokenGraph | None) -> None:
    """Attach ``graph`` to every :class:`Encoder` in ``model`` (the graph kernels' edge source)."""
    for module in model.modules():
        if isinstance(module, Encoder):
            module.set_graph(graph)


def masked_mean(x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """(B, L, E) -> (B, E): mean over real tokens (CLS counted as a token)."""
    real = (~padding).to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * real).sum(1) / real.sum(1).clamp_min(1.0)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# scGPT-style embeddings and head (official module names)


@dataclass(kw_only=True)
class ScGPTConfig:
    n_genes: int
    n_classes: int
    d_model: int = 32  # from-scratch CPU size (scGPT: 512); 2 heads of 16 run ~2x faster than 4 of 8 on CPU
    n_layers: int = 1  # (scGPT: 12)
    n_heads: int = 2  # (scGPT: 8)
    d_hidden: int = 64  # (scGPT: 512)
    n_bins: int = 51
    dropout: float = 0.1  # (scGPT fine-tuning: 0.2)
    # scGPT input_emb_style "category"; "continuous" (its tutorial default) stalled from scratch on pbmc68k
    # (F1 0.05 vs 0.45)
    value_encoding: str = "category"
    # scGPT's cell_emb_style: "cls" (its default; the loader's) or "avg-pool" (mean of real tokens).
    # avg-pool for the one-layer from-scratch models: with one layer the <cls> output of a kernel
    # where <cls> is a global token (longformer, bigbird) IS full attention's (identical predictions
    # measured), so only a readout over every token lets the attention pattern matter.
    cell_embedding: str = "avg-pool"
    norm_scheme: str = "post"  # scGPT's default (pre_norm=False)
    activation: str = "relu"  # FlashTransformerEncoderLayer's default
    # ClsDecoder depth (scGPT: 3; from scratch a linear head learns far faster: synthetic macro F1 0.71 vs 0.32
    # in 10 epochs)
    n_layers_cls: int = 1
    attention: str = "full"
    attention_config: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("value_encoding", self.value_encoding, ("continuous", "category"))
        check_choice("cell_embedding", self.cell_embedding, ("cls", "avg-pool"))
        if self.n_layers_cls < 1:
            raise InputError(f"n_layers_cls must be >= 1, not {self.n_layers_cls}")

    def to_dict(self) -> dict:
        return asdict(self)


class GeneEncoder(nn.Module):
    """scGPT's GeneEncoder: token embedding, then LayerNorm."""

    def __init__(self, n_tokens: int, d_model: int, padding_idx: int | None = PAD_ID):
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, d_model, padding_idx=padding_idx)
        self.enc_norm = nn.LayerNorm(d_model)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.enc_norm(self.embedding(ids))  # (B, L) -> (B, L, E)


class ContinuousValueEncoder(nn.Module):
    """scGPT's ContinuousValueEncoder: the bin index as a number through Linear-ReLU-Linear-LayerNorm.

    Keeps the bins' order (bin 40 is near bin 41), which a lookup table has to learn from data.
    """

    def __init__(self, d_model: int, *, dropout: float = 0.1, max_value: float = 512):
        super().__init__()
        self.max_value = max_value  # scGPT's clip (512)
        self.linear1, self.linear2 = nn.Linear(1, d_model), nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, value_ids: torch.Tensor) -> torch.Tensor:
        x = value_ids.float().clamp(max=self.max_value).unsqueeze(-1)  # (B, L, 1)
        return self.dropout(self.norm(self.linear2(F.relu(self.linear1(x)))))


class CategoryValueEncoder(GeneEncoder):
    """scGPT's CategoryValueEncoder: ``n_bins + 2`` rows (bins, <pad> = n_bins, <mask> = n_bins + 1)."""


class ClsDecoder(nn.Module):
    """scGPT's ClsDecoder: ``n_layers - 1`` x (Linear, ReLU, LayerNorm), then ``out_layer``."""

    def __init__(self, d_model: int, n_classes: int, n_layers: int = 3):
        super().__init__()
        self._decoder = nn.ModuleList()
        for _ in range(n_layers - 1):
            self._decoder.extend([nn.Linear(d_model, d_model), nn.ReLU(), nn.LayerNorm(d_model)])
        self.out_layer = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self._decoder:
            x = layer(x)
        return self.out_layer(x)


class ScGPTClassifier(nn.Module):
    """gene + value embedding -> encoder -> <cls> (or mean) -> ClsDecoder."""

    def __init__(self, cfg: ScGPTConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = GeneEncoder(cfg.n_genes + N_SPECIAL, cfg.d_model)
        if cfg.value_encoding == "continuous":
            self.value_encoder = ContinuousValueEncoder(cfg.d_model, dropout=cfg.dropout)
        else:
            self.value_encoder = CategoryValueEncoder(cfg.n_bins + 2, cfg.d_model, padding_idx=cfg.n_bins)
        self.transformer_encoder = Encoder(
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            d_hidden=cfg.d_hidden,
            attention=cfg.attention,
            attention_config=cfg.attention_config,
            dropout=cfg.dropout,
            activation=cfg.activation,
            norm_scheme=cfg.norm_scheme,
        )
        self.cls_decoder = ClsDecoder(cfg.d_model, cfg.n_classes, cfg.n_layers_cls)

    def hidden_states(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        """(B, L, E) encoder output."""
        x = self.encoder(cells.gene_ids) + self.value_encoder(cells.value_ids)  # (B, L, E)
        return self.transformer_encoder(x, cells.padding, cells.gene_ids, edges)

    def embed(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        """Cell embedding (B, E)."""
        x = self.hidden_states(cells, edges)
        return x[:, 0] if self.cfg.cell_embedding == "cls" else masked_mean(x, cells.padding)

    def forward(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        return self.cls_decoder(self.embed(cells, edges))  # (B, n_classes)

    # The benchmark's cell embedding (docs/embedding.md "Cell embeddings"): scGPT's own readout, the
    # cell_emb_style the model runs with (scgpt/model/model.py _get_cell_emb_from_layer): the
    # <cls> state for "cls" (scGPT's default, a loaded checkpoint's), the mean of the real tokens
    # for "avg-pool" (the from-scratch default here, see ScGPTConfig.cell_embedding): the vector
    # the classifier reads.
    def cell_embedding(self, cells: TokenizedCells, edges: EdgePattern | None = None) -> torch.Tensor:
        """(B, E): :meth:`embed`."""
        return self.embed(cells, edges)

    def embedding_pooling(self) -> str:
        return (
            "<cls> token state"
            if self.cfg.cell_embedding == "cls"
            else "mean of the token states (<cls> and genes, padding excluded)"
        )

    def num_params(self) -> int:
        return num_params(self)
