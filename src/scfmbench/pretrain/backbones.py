"""How each backbone is pretrained and fine-tuned from a pretraining checkpoint.

The masking strategies apply to every backbone whose input has per-gene values to mask:

==============  =====================================  ==========================================
backbone        values the strategies see               masked input
==============  =====================================  ==========================================
schyena         log-normalized value of every gene      the mask token (:mod:`scfmbench.schyena`)
scgpt           value bin (1..50) / 10 of each          value id ``n_bins + 1`` (scGPT's <mask>)
                non-zero gene (<cls> never masked)
scbert          log2 bin (0..7) / 10 of every gene      value id ``n_bins + 1`` (scBERT's <mask>)
scfoundation    log-normalized value of every gene      left out of the encoder, mask vector in
                (T and S never masked)                  the decoder
geneformer      none: rank-value encoding has no        not pretrained here (Geneformer's own
                values, only an order                   objective predicts masked gene ids)
==============  =====================================  ==========================================

The binned backbones predict the bin (MSE on the bin number) with a Linear(E, 1) head on the
encoder states, scFoundation the value with its decoder. MAM's summary (B, D) is added to every
token: scFoundation takes it as an argument; the others through a forward hook on their value
embedding (:func:`scfmbench.pretrain.loop.token_offset`), so no model file forks.

Checkpoints hold plain data (``torch.load(weights_only=True)``): format, backbone, model config,
strategy and its options, run config, and the state dict (``backbone.*``, ``expr_head.*``,
``scorer.*``). :func:`load_pretrained` builds the fine-tuning classifier from one: the backbone's
weights (the classifier head fresh), and for MAM with injection the scorer, whose summary the
classifier keeps adding (MAM's ``CellAnnoClassifierCA``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from scfmbench import InputError
from scfmbench._io import atomic_path
from scfmbench.models.tokenize import CLS_ID, TokenizedCells
from scfmbench.pretrain.loop import MaskedBatch, MaskedCells, MaskedModel, token_offset
from scfmbench.pretrain.masking import MaskingStrategy, build_strategy

FORMAT = "scfmbench.pretrain/1"
PRETRAINABLE = ("schyena", "scgpt", "scbert", "scfoundation")


BIN_SCALE = 10.0


def _bins(model, cells: TokenizedCells) -> torch.Tensor:
    """Value bins as numbers, divided by 10: scGPT's 1..50 and scBERT's 0..7 land on the scale of
    log-normalized values (0..~8), which MAM's ``input_proj`` and the loss were made for (raw bins
    up to 50 saturated the scorer's attention and its summary swamped the token embeddings)."""
    return cells.value_ids.float() / BIN_SCALE


def _not_special(model, cells: TokenizedCells) -> torch.Tensor:
    return ~cells.padding & (cells.gene_ids != CLS_ID).expand(cells.padding.shape)


@dataclass(frozen=True)
class Reader:
    """How a token backbone is read: ``values(model, cells)``, ``maskable(model, cells)`` (B, L),
    ``value_module(model)`` (where the summary is added; None = the model takes ``offset=``),
    ``mask_id(cfg)`` (the masked value id; None = the model masks natively)."""

    values: Callable
    maskable: Callable
    value_module: Callable | None
    mask_id: Callable | None
    width: Callable


READERS: dict[str, Reader] = {
    "scgpt": Reader(
        _bins, _not_special, lambda m: m.value_encoder, lambda cfg: cfg.n_bins + 1, lambda cfg: cfg.d_model
    ),
    "scbert": Reader(_bins, _not_special, lambda m: m.value_emb, lambda cfg: cfg.n_bins + 1, lambda cfg: cfg.d_model),
    "scfoundation": Reader(
        lambda m, c: m.values(c), lambda m, c: ~m.total_tokens(c) & ~c.padding, None, None, lambda cfg: cfg.d_model
    ),
}


def reader(backbone: str) -> Reader:
    if backbone not in READERS:
        why = (
            "geneformer's rank-value input has no per-gene values to mask"
            if backbone == "geneformer"
            else f"pretrainable token backbones are {sorted(READERS)}"
        )
        raise InputError(f"backbone {backbone!r} cannot be pretrained by masked-expression modelling: {why}")
    return READERS[backbone]


class TokenMasked(MaskedModel):
    """A token backbone (scGPT-, scBERT-, scFoundation-style) read through masks."""

    def __init__(self, name: str, backbone: nn.Module, scorer: nn.Module | None = None):
        super().__init__(backbone, scorer)
        self.name, self.read = name, reader(name)
        self.expr_head = nn.Linear(backbone.cfg.d_model, 1) if self.read.mask_id is not None else None

    def predict(
        self, batch: MaskedBatch, mask: torch.Tensor, offset: torch.Tensor | None = None, shown=None
    ) -> torch.Tensor:
        """Advanced masking (``shown``): scFoundation's decoder reads it (its encoder never sees a
        masked position); a binned backbone's input shows the bin of the shown value (BERT's
        80/10/10) where ``shown.token`` is False."""
        cells = batch.inputs
        if self.read.mask_id is None:
            return self.backbone.predict_masked(cells, mask, offset, shown)
        ids = cells.value_ids
        if shown is not None:
            ids, mask = torch.where(mask, (shown.values * BIN_SCALE).round().to(ids.dtype), ids), shown.token
        hidden = TokenizedCells(
            cells.gene_ids, ids.masked_fill(mask, self.read.mask_id(self.backbone.cfg)), cells.padding
        )
        with token_offset(self.read.value_module(self.backbone), offset):
            return self.expr_head(self.backbone.hidden_states(hidden)).squeeze(-1)


def masked_cells(model: TokenMasked, cells: TokenizedCells) -> MaskedCells:
    """Tokenized cells as the loop reads them (values and maskable positions from the reader)."""
    return MaskedCells(model.read.values(model.backbone, cells), model.read.maskable(model.backbone, cells), cells)


class SummaryClassifier(nn.Module):
    """Fine-tuning classifier that keeps MAM's summary (``CellAnnoClassifierCA``): the scorer reads
    the cell's values (nothing masked) and its projected summary is added to every token."""

    def __init__(self, name: str, model: nn.Module, scorer: nn.Module, strategy: MaskingStrategy):
        super().__init__()
        self.name, self.read = name, reader(name)
        self.model, self.scorer, self.strategy = model, scorer, strategy
        self.cfg = model.cfg

    def _with_summary(self, method: str, cells: TokenizedCells, edges=None) -> torch.Tensor:
        fn = self.model if method == "forward" else getattr(self.model, method)
        offset = self.strategy.summary(
            self.read.values(self.model, cells), self.read.maskable(self.model, cells), self.scorer
        )
        if self.read.value_module is None:
            return fn(cells, edges, offset=offset)
        with token_offset(self.read.value_module(self.model), offset):
            return fn(cells, edges)

    def forward(self, cells: TokenizedCells, edges=None) -> torch.Tensor:
        return self._with_summary("forward", cells, edges)

    def cell_embedding(self, cells: TokenizedCells, edges=None) -> torch.Tensor:
        """The backbone's cell embedding with the summary added to every token, as in forward."""
        return self._with_summary("cell_embedding", cells, edges)

    def embedding_pooling(self) -> str:
        return f"{self.model.embedding_pooling()}, MAM's summary added to every token"

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ------------------------------------------------------------------------------------------------
# checkpoints


def save_pretrained(path, model: TokenMasked, *, strategy: MaskingStrategy, run_config: dict[str, Any]) -> None:
    """Write a pretraining checkpoint atomically (plain data + tensors)."""
    import json

    payload = {
        "format": FORMAT,
        "backbone": model.name,
        "model_config": json.loads(json.dumps(model.backbone.cfg.to_dict())),
        "strategy": {"name": strategy.name, "options": json.loads(json.dumps(strategy.options()))},
        "run_config": json.loads(json.dumps(run_config)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_pretrained(path) -> dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(
            f"{path}: not a pretraining checkpoint (format {found!r}, expected {FORMAT!r}); write it with rule "
            "pretrain (scfmbench.pretrain.workflow)"
        )
    return payload


@dataclass
class PretrainedLoad:
    """What loading a pretraining checkpoint for fine-tuning did."""

    path: str
    strategy: str
    missing: list[str]
    unexpected: list[str]
    summary: bool

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Options a fine-tuning run may change on a pretrained architecture (shapes unchanged).
FINETUNE_OPTIONS = ("dropout", "attention_config", "cell_embedding", "max_encoder_len", "tgthighres", "pooling")


def load_pretrained(
    path, *, backbone: str, spec, n_classes: int, attention: str, params: dict
) -> tuple[nn.Module, PretrainedLoad]:
    """The classifier for fine-tuning from a pretraining checkpoint: its architecture, the
    backbone's weights (classifier fresh; kernels add no parameters, so any ``attention``), and,
    for MAM with injection, the scorer inside a :class:`SummaryClassifier`."""
    payload = read_pretrained(path)
    if payload["backbone"] != backbone:
        raise InputError(f"{path}: pretrained for backbone {payload['backbone']!r}, not {backbone!r}")
    cfg_dict = {
        **payload["model_config"],
        "n_classes": n_classes,
        "attention": attention,
        **{k: params[k] for k in FINETUNE_OPTIONS if k in params},
    }
    cfg = spec.config(**cfg_dict)
    model = spec.model(cfg)
    state = {k.removeprefix("backbone."): v for k, v in payload["state_dict"].items() if k.startswith("backbone.")}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    strat = build_strategy(payload["strategy"]["name"], **payload["strategy"]["options"])
    scorer_state = {k.removeprefix("scorer."): v for k, v in payload["state_dict"].items() if k.startswith("scorer.")}
    summary = bool(strat.needs_scorer and getattr(strat, "inject", False) and scorer_state)
    if summary:
        scorer = strat.make_scorer(reader(backbone).width(cfg))
        scorer.load_state_dict(scorer_state)
        model = SummaryClassifier(backbone, model, scorer, strat)
    skipped = sorted(
        k for k in payload["state_dict"] if not k.startswith("backbone.") and not (summary and k.startswith("scorer."))
    )
    report = PretrainedLoad(
        str(path),
        strat.name,
        missing=sorted(set(own) - set(usable)),
        unexpected=sorted(set(state) - set(usable)) + skipped,
        summary=summary,
    )
    return model, report
