"""scFoundation-style backbone: an asymmetric masked autoencoder over the whole gene panel.

Follows scFoundation's ``MaeAutobin`` (GitHub ``biomap-research/scFoundation``,
``model/pretrainmodels/mae_autobin.py``, ``select_model.py``, ``model/load.py``,
``model/get_embedding.py``; ``REFERENCE.md`` section 8):

- **Inputs**: each cell's log-normalized values of every gene (``log1p(x / total x 1e4)``) plus two
  total-count tokens appended, T and S: S = log10 of the cell's total count, T per ``tgthighres``
  (``tN``: T = N; ``aN``: T = S + N; ``fN``: T = log10(total x N)). Gene g sits at position g, T at
  G, S at G + 1; position G + 2 is padding (``pos_emb`` has G + 3 rows: ``seq_len + 1``).
- **Auto-discretization value embedding** (``AutoDiscretizationEmbedding2``): Linear(1, B) ->
  LeakyReLU(0.1) -> Linear(B, B) with the ``bin_alpha`` residual -> softmax over the B bins ->
  weighted sum of B learned bin embeddings; masked and padded positions take learned vectors.
- **Encoder** over each cell's non-zero, unmasked genes plus T and S only (``gatherData``), with
  the gene position embedding; attention from the kernel registry (post-norm layers as
  ``nn.TransformerEncoderLayer``, then a LayerNorm). Cells with more such genes than
  ``max_encoder_len`` are subsampled at random (BioLLM caps at 5,000; scFoundation issues #33, #66).
- **Decoder** over every position: the value embeddings (mask vector where masked) with the encoder
  outputs scattered back to their positions, + position embedding, ``decoder_embed`` to the
  decoder width, a Performer (``performer-pytorch``; no padding in the decoder), LayerNorm,
  ``to_final`` -> one value per position.
- **Cell embedding** "all" (``get_embedding.py``, ``pool_type='all'``): concat(last token = S state,
  second-to-last = T state, max and mean over the gene states) from the encoder, nothing masked.
- **Head** ``head="all"`` (default): a Linear on that embedding. ``head="finetune"``: the released
  fine-tuning head (``finetune_model.py``, also MAM's ``CellAnnoClassifierCA``): the encoder over the
  cell's non-zero genes only (no T, S), max over the gene states, ``BatchNorm1d(D, affine=False,
  eps=1e-6)``, Linear(D, 256) -> ReLU -> Linear(256, classes). Upstream's max also reads padding
  positions of a batch; here it reads gene states only. ``freeze`` (applied at fine-tuning by
  :meth:`ScFoundation.freeze_for_finetuning`, not in pretraining): ``"encoder"`` freezes every encoder
  layer but the second-to-last and the encoder norm (MAM; ``finetune_model.py`` with
  ``frozenmore=False``), ``"encoder_embeddings"`` also the value and position embeddings
  (``finetune_model.py``'s default ``frozenmore=True``).
- **Dropout**: ``dropout`` is the encoder's (``nn.TransformerEncoderLayer``'s default 0.1 upstream;
  0 in the CPU default), ``decoder_dropout`` the Performer's (upstream ``ff_dropout`` and
  ``attn_dropout``, default 0).

A masked position is hidden twice: left out of the encoder and shown as the mask vector in the
decoder, so no path carries its value (``tests/test_pretrain.py``). ``offset`` (B, D), MAM's
injected summary, is added to every encoder token and every decoder token before
``decoder_embed`` (MAM's ``'both'``).

Token layout for the training code (:class:`~scfmbench.models.tokenize.TokenizedCells`):
``gene_ids`` = position + 2, ``value_ids`` = round(value x ``value_scale``) (integers, as that class
stores them; 1e-3 resolution), no padding. Loader for the released ``models.ckpt``:
:func:`load_scfoundation_checkpoint`.

Shapes: B cells, L = G + 2 positions, K encoder tokens per batch, D encoder width, Dd decoder width.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from scfmbench import InputError
from scfmbench.models.attention import EdgePattern
from scfmbench.models.scgpt import Encoder, check_choice, num_params
from scfmbench.models.tokenize import N_SPECIAL, TokenizedCells

HEADS = ("all", "finetune")
FREEZE = ("none", "encoder", "encoder_embeddings")
FINETUNE_WIDTH = 256  # finetune_model.py: Linear(D, 256) -> ReLU -> Linear(256, classes)


@dataclass(kw_only=True)
class ScFoundationConfig:
    n_genes: int
    n_classes: int
    d_model: int = 32  # from-scratch CPU size (scFoundation: encoder 768 x 12 layers x 12 heads)
    n_layers: int = 1
    n_heads: int = 2
    d_hidden: int = 128  # nn.TransformerEncoderLayer's dim_feedforward = 4 x dim upstream
    decoder_dim: int = 32  # (scFoundation: 512 x 6 layers x 8 heads)
    decoder_layers: int = 1
    decoder_heads: int = 2
    bin_num: int = 10  # (scFoundation: 100)
    bin_alpha: float = 1.0
    dropout: float = 0.0  # encoder (scFoundation: nn.TransformerEncoderLayer's default 0.1)
    decoder_dropout: float = 0.0  # Performer decoder (scFoundation: ff_dropout = attn_dropout = 0)
    head: str = "all"  # "all": Linear on the "all" embedding; "finetune": finetune_model.py's head
    freeze: str = "none"  # at fine-tuning: "none", "encoder" (MAM), "encoder_embeddings" (finetune_model.py)
    max_encoder_len: int = 5000  # non-zero genes + T, S; longer cells are subsampled (BioLLM)
    tgthighres: str = "t4"  # get_embedding.py's default
    value_scale: int = 1000  # value_ids = round(value x value_scale)
    attention: str = "full"
    attention_config: dict = field(default_factory=dict)

    def __post_init__(self):
        if not re.fullmatch(r"[taf]-?[0-9.]+", self.tgthighres):
            raise InputError(
                "scfoundation tgthighres must be t<N>, a<N> or f<N> (scFoundation's "
                f"get_embedding.py), not {self.tgthighres!r}"
            )
        check_choice("scfoundation head", self.head, HEADS)
        check_choice("scfoundation freeze", self.freeze, FREEZE)
        if self.freeze != "none" and self.n_layers < 2:
            raise InputError(
                f"scfoundation freeze={self.freeze!r} trains only the second-to-last encoder layer "
                f"(finetune_model.py): it needs n_layers >= 2, not {self.n_layers}"
            )
        if self.max_encoder_len < 3:
            raise InputError(f"scfoundation max_encoder_len must be >= 3 (T, S and a gene), not {self.max_encoder_len}")

    def to_dict(self) -> dict:
        return asdict(self)


def total_count_tokens(totals: np.ndarray, tgthighres: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, S) per cell from raw total counts (get_embedding.py): S = log10(total); T = N (``tN``),
    S + N (``aN``) or log10(total x N) (``fN``)."""
    s = np.log10(np.maximum(np.asarray(totals, dtype=np.float64), 1.0))
    kind, n = tgthighres[0], float(tgthighres[1:])
    t = {"t": np.full_like(s, n), "a": s + n, "f": np.log10(np.maximum(np.asarray(totals, dtype=np.float64) * n, 1.0))}[
        kind
    ]
    return t, s


def tokenize_scfoundation(
    X,
    totals,
    *,
    tgthighres: str = "t4",
    value_scale: int = 1000,
    positions: np.ndarray | None = None,
    n_positions: int | None = None,
) -> TokenizedCells:
    """Every gene's value (X: log-normalized, N x G) then T and S, as fixed-point integers.

    ``positions``: the model position of each of the G genes (default 0..G-1; a released model's
    gene list puts them elsewhere) and ``n_positions`` the model's gene count (default G).
    """
    X = sp.csr_matrix(X)
    n, G = X.shape
    positions = np.arange(G) if positions is None else np.asarray(positions)
    n_positions = G if n_positions is None else n_positions
    t, s = total_count_tokens(totals, tgthighres)
    values = np.concatenate([X.toarray(), t[:, None], s[:, None]], axis=1)
    ids = np.concatenate([positions, [n_positions, n_positions + 1]]) + N_SPECIAL
    gene_ids = torch.from_numpy(ids).long()[None].expand(n, -1)  # shared (1, L) view
    return TokenizedCells(
        gene_ids,
        torch.from_numpy(np.rint(values * value_scale).astype(np.int32)),
        torch.zeros(1, G + 2, dtype=torch.bool).expand(n, -1),
    )


class AutoDiscretizationEmbedding(nn.Module):
    """Value (B, L) -> (B, L, D): soft assignment to ``bin_num`` learned bins; learned mask and pad
    vectors (scFoundation's ``AutoDiscretizationEmbedding2``; names as upstream)."""

    def __init__(self, dim: int, bin_num: int, bin_alpha: float):
        super().__init__()
        self.bin_alpha = bin_alpha
        self.mlp, self.mlp2 = nn.Linear(1, bin_num), nn.Linear(bin_num, bin_num)
        self.emb = nn.Embedding(bin_num, dim)
        self.emb_mask, self.emb_pad = nn.Embedding(1, dim), nn.Embedding(1, dim)

    def forward(
        self, values: torch.Tensor, mask: torch.Tensor | None = None, pad: torch.Tensor | None = None
    ) -> torch.Tensor:
        if mask is not None:
            values = values.masked_fill(mask, 0.0)  # the hidden value never enters the computation
        h = F.leaky_relu(self.mlp(values[..., None]), 0.1)  # (B, L, bins)
        weight = torch.softmax(self.bin_alpha * h + self.mlp2(h), dim=-1)
        x = weight @ self.emb.weight  # (B, L, D)
        if mask is not None:
            x = torch.where(mask[..., None], self.emb_mask.weight[0], x)
        if pad is not None:
            x = torch.where(pad[..., None], self.emb_pad.weight[0], x)
        return x


class PerformerDecoder(nn.Module):
    """scFoundation's ``PerformerModule`` (scBERT's Performer): performer-pytorch, then LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, dropout: float):
        super().__init__()
        from performer_pytorch import Performer  # guarded import: only the decoder needs it

        if dim % heads:
            raise InputError(f"scfoundation decoder_dim={dim} must be divisible by decoder_heads={heads}")
        self.performer = Performer(
            dim=dim, depth=depth, heads=heads, dim_head=dim // heads, ff_dropout=dropout, attn_dropout=dropout
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.performer(x))


class ScFoundation(nn.Module):
    """Encoder over non-zero genes + T, S; Performer decoder over every position; classifier on
    the "all" cell embedding. ``forward(cells) -> logits``; :meth:`predict_masked` for pretraining."""

    def __init__(self, cfg: ScFoundationConfig):
        super().__init__()
        self.cfg = cfg
        d, L = cfg.d_model, cfg.n_genes + 2
        self.token_emb = AutoDiscretizationEmbedding(d, cfg.bin_num, cfg.bin_alpha)
        self.pos_emb = nn.Embedding(L + 1, d)  # row L = padding
        self.encoder = Encoder(
            d_model=d,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            d_hidden=cfg.d_hidden,
            attention=cfg.attention,
            attention_config=cfg.attention_config,
            dropout=cfg.dropout,
            activation="relu",
            norm_scheme="post",
        )
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder_embed = nn.Linear(d, cfg.decoder_dim)
        self.decoder = PerformerDecoder(cfg.decoder_dim, cfg.decoder_layers, cfg.decoder_heads, cfg.decoder_dropout)
        self.norm = nn.LayerNorm(cfg.decoder_dim)
        self.to_final = nn.Linear(cfg.decoder_dim, 1)
        if cfg.head == "all":
            self.classifier = nn.Linear(4 * d, cfg.n_classes)
        else:  # finetune_model.py: self.norm (BatchNorm1d, no affine) then self.fc1
            self.head_norm = nn.BatchNorm1d(d, affine=False, eps=1e-6)
            self.classifier = nn.Sequential(
                nn.Linear(d, FINETUNE_WIDTH), nn.ReLU(), nn.Linear(FINETUNE_WIDTH, cfg.n_classes)
            )

    # -- inputs -------------------------------------------------------------------------------------

    def values(self, cells: TokenizedCells) -> torch.Tensor:
        """(B, L) float values from the fixed-point value ids."""
        return cells.value_ids.float() / self.cfg.value_scale

    def positions(self, cells: TokenizedCells) -> torch.Tensor:
        return (cells.gene_ids - N_SPECIAL).expand(cells.value_ids.shape)

    def total_tokens(self, cells: TokenizedCells) -> torch.Tensor:
        """(B, L) bool: the T and S positions (always in the encoder, never masked)."""
        return self.positions(cells) >= self.cfg.n_genes

    def encode(
        self,
        cells: TokenizedCells,
        mask: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
        edges: EdgePattern | None = None,
        totals: bool = True,
    ):
        """Encoder states over each cell's non-zero unmasked genes + T, S (``totals=False``: genes only,
        as ``finetune_model.py``).

        Returns (h (B, K, D), index (B, K) into L, pad (B, K) bool)."""
        values, pos = self.values(cells), self.positions(cells)
        keep = (
            (values > 0) | self.total_tokens(cells) if totals else (values > 0) & ~self.total_tokens(cells)
        ) & ~cells.padding
        if mask is not None:
            keep = keep & ~mask
        cap = self.cfg.max_encoder_len
        if int(keep.sum(1).max()) > cap:  # subsample long cells (T and S kept); torch's seeded RNG
            score = torch.rand(keep.shape, device=keep.device) + 2.0 * self.total_tokens(cells)
            rank = score.masked_fill(~keep, -1.0).argsort(1, descending=True).argsort(1)
            keep = keep & (rank < cap)
        k = int(keep.sum(1).max())
        index = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]  # kept positions first, in order
        pad = ~keep.gather(1, index)
        x = self.token_emb(values.gather(1, index), pad=pad) + self.pos_emb(
            pos.gather(1, index).masked_fill(pad, self.cfg.n_genes + 2)
        )
        if offset is not None:
            x = x + offset[:, None, :]
        h = self.encoder(x, pad, cells.gene_ids.expand(values.shape).gather(1, index), edges)
        return self.encoder_norm(h), index, pad

    # -- heads --------------------------------------------------------------------------------------

    def predict_masked(
        self, cells: TokenizedCells, mask: torch.Tensor, offset: torch.Tensor | None = None, shown=None
    ) -> torch.Tensor:
        """Predicted value at every position (B, L); ``mask`` (B, L) True = hidden from the encoder;
        the decoder shows the mask vector there, or with ``shown`` (MAM's advanced masking) the
        mask vector at ``shown.token`` and ``shown.values`` elsewhere."""
        h, index, pad = self.encode(cells, mask, offset)
        values, pos = self.values(cells), self.positions(cells)
        x = (
            self.token_emb(values, mask=mask) if shown is None else self.token_emb(shown.values, mask=shown.token)
        )  # (B, L, D)
        scattered = torch.zeros_like(x).scatter(1, index[..., None].expand_as(h), h)
        at_encoder = torch.zeros_like(mask).scatter(1, index, ~pad)
        x = torch.where(at_encoder[..., None], scattered, x) + self.pos_emb(pos)
        if offset is not None:
            x = x + offset[:, None, :]
        out = self.norm(self.decoder(self.decoder_embed(x)))
        return self.to_final(out).squeeze(-1)

    def _gene_max(self, h: torch.Tensor, gene: torch.Tensor) -> torch.Tensor:
        """Max over the gene states (B, D); zeros for a cell with no expressed gene."""
        mx = h.masked_fill(~gene, float("-inf")).amax(1)
        return torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))

    def embed(
        self, cells: TokenizedCells, edges: EdgePattern | None = None, offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cell embedding "all" (B, 4D) as get_embedding.py: the last token's state (S), the
        second-to-last's (T), max and mean over the gene states."""
        h, index, pad = self.encode(cells, None, offset, edges)
        pos = self.positions(cells).gather(1, index)
        s = (h * (pos == self.cfg.n_genes + 1)[..., None]).sum(1)
        t = (h * (pos == self.cfg.n_genes)[..., None]).sum(1)
        gene = (~pad & (pos < self.cfg.n_genes))[..., None]
        mean = (h * gene).sum(1) / gene.sum(1).clamp_min(1)
        return torch.cat([s, t, self._gene_max(h, gene), mean], dim=-1)

    def forward(
        self, cells: TokenizedCells, edges: EdgePattern | None = None, offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.cfg.head == "all":
            return self.classifier(self.embed(cells, edges, offset))
        h, _, pad = self.encode(cells, None, offset, edges, totals=False)
        x = self._gene_max(h, ~pad[..., None])
        if not (self.training and x.shape[0] == 1):  # BatchNorm needs 2 cells in training (MAM skips it for 1)
            x = self.head_norm(x)
        return self.classifier(x)

    def freeze_for_finetuning(self) -> None:
        """``cfg.freeze`` (finetune_model.py / MAM): no gradient to the encoder but its second-to-last
        layer, nor (``encoder_embeddings``) to the value and position embeddings. Called by the
        annotation run before fine-tuning; pretraining never calls it."""
        if self.cfg.freeze == "none":
            return
        frozen = [self.encoder, self.encoder_norm] + (
            [self.token_emb, self.pos_emb] if self.cfg.freeze == "encoder_embeddings" else []
        )
        for module in frozen:
            module.requires_grad_(False)
        self.encoder.layers[-2].requires_grad_(True)

    # The benchmark's cell embedding (docs/embedding.md "Cell embeddings"): get_embedding.py's pool_type "all",
    # the classifier's input.
    def cell_embedding(
        self, cells: TokenizedCells, edges: EdgePattern | None = None, offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 4D): :meth:`embed`."""
        return self.embed(cells, edges, offset)

    def embedding_pooling(self) -> str:
        return (
            "concat(S state (last token), T state, max and mean over the gene states) (scFoundation's pool_type 'all')"
        )

    def num_params(self) -> int:
        return num_params(self)


# ---------------------------------------------------------------------------------------------
# the released checkpoint layout


@dataclass
class ScFoundationLoad:
    """What loading a released checkpoint did: state-dict keys the model lacks (``unexpected``),
    model parameters the checkpoint lacks (``missing``), and renamed keys."""

    path: str
    key: str
    missing: list[str]
    unexpected: list[str]
    renamed: int

    def to_dict(self) -> dict:
        return asdict(self)


_RENAMES = (
    (r"^encoder\.transformer_encoder\.(\d+)\.self_attn\.in_proj_(weight|bias)$", r"encoder.layers.\1.self_attn.qkv.\2"),
    (r"^encoder\.transformer_encoder\.(\d+)\.self_attn\.out_proj\.", r"encoder.layers.\1.self_attn.out."),
    (r"^encoder\.transformer_encoder\.(\d+)\.", r"encoder.layers.\1."),
    (r"^encoder\.norm\.", "encoder_norm."),
    # performer-pytorch 1.x keeps the redraw counter in its ProjectionUpdater (scFoundation's copy: on Performer)
    (r"^decoder\.performer\.calls_since_last_redraw$", "decoder.performer.proj_updater.calls_since_last_redraw"),
)


def state_names(model: nn.Module) -> list[str]:
    """The model's state-dict names, each tensor once: performer-pytorch's ``ProjectionUpdater``
    registers the decoder again under ``proj_updater.instance``, names a checkpoint never has."""
    seen, names = set(), []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            names.append(name)
    return names


def released_name(name: str) -> str:
    """A released state-dict key (``model.`` prefix dropped by the caller) as this file names it."""
    for pattern, repl in _RENAMES:
        new = re.sub(pattern, repl, name)
        if new != name:
            return new
    return name


def config_from_released(config: dict, *, n_classes: int, **overrides) -> ScFoundationConfig:
    """Our config from a released ``config`` (``{'model': 'mae_autobin', 'model_config':
    {'mae_autobin': {encoder, decoder, seq_len, bin_num, bin_alpha, ...}}, ...}``)."""
    try:
        mc = config["model_config"][config.get("model", "mae_autobin")]
        enc, dec = mc["encoder"], mc["decoder"]
        if int(dec.get("dim_head", int(dec["hidden_dim"]) // int(dec["heads"]))) * int(dec["heads"]) != int(
            dec["hidden_dim"]
        ):
            raise InputError(
                "scFoundation checkpoint config: decoder dim_head x heads must equal hidden_dim here (got "
                f"{dec.get('dim_head')} x {dec['heads']} vs {dec['hidden_dim']})"
            )
        cfg = dict(
            n_genes=int(mc["seq_len"]) - 2,
            n_classes=n_classes,
            d_model=int(enc["hidden_dim"]),
            n_layers=int(enc["depth"]),
            n_heads=int(enc["heads"]),
            d_hidden=4 * int(enc["hidden_dim"]),
            decoder_dim=int(dec["hidden_dim"]),
            decoder_layers=int(dec["depth"]),
            decoder_heads=int(dec["heads"]),
            bin_num=int(mc["bin_num"]),
            bin_alpha=float(mc["bin_alpha"]),
        )
    except (KeyError, TypeError) as exc:
        raise InputError(
            f"scFoundation checkpoint config lacks {exc}; expected config.model_config.mae_autobin.{{encoder, "
            f"decoder, seq_len, bin_num, bin_alpha}}"
        ) from None
    return ScFoundationConfig(**{**cfg, **overrides})


def load_scfoundation_checkpoint(
    path: str | Path, *, key: str = "gene", n_classes: int, **overrides
) -> tuple[ScFoundation, ScFoundationLoad]:
    """A released ``models.ckpt`` (``{'gene'|'cell'|'rde': {'config', 'state_dict': {'model.<name>'}}}``)
    on the CPU with ``torch.load(weights_only=True)`` (upstream's ``load_model_frommmf`` hard-codes
    ``.cuda()``). Keys are renamed to this file's modules; missing and unexpected keys are listed,
    the classifier is fresh. ``overrides``: options that do not change shapes (dropout,
    max_encoder_len, tgthighres, attention, attention_config)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickle errors of many kinds: name the file and the blocked global)
        from scfmbench.models.pretrained import safe_load_refusal

        raise InputError(safe_load_refusal(path, exc)) from None
    if not isinstance(payload, dict) or key not in payload:
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise InputError(
            f"{path}: no {key!r} entry (found {found}); scFoundation's models.ckpt has 'gene', 'cell' and 'rde'"
        )
    entry = payload[key]
    if not isinstance(entry, dict) or "config" not in entry or "state_dict" not in entry:
        raise InputError(f"{path}[{key!r}] must hold 'config' and 'state_dict' (scFoundation's models.ckpt layout)")
    model = ScFoundation(config_from_released(entry["config"], n_classes=n_classes, **overrides))
    state, renamed = {}, 0
    for name, value in entry["state_dict"].items():
        bare = name.split("model.", 1)[1] if name.startswith("model.") else name
        new = released_name(bare)
        renamed += new != bare
        state[new] = value
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)  # aliases share their tensors: loaded with them
    report = ScFoundationLoad(
        str(path),
        key,
        missing=sorted(set(state_names(model)) - set(usable)),
        unexpected=sorted(set(state) - set(usable)),
        renamed=renamed,
    )
    return model, report
