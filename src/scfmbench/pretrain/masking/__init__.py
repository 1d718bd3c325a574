"""Masking strategies for masked-expression pretraining: a registry, one file per strategy.

A strategy decides which positions of a batch are hidden from the model and predicted::

    strategy.draw(values, maskable, *, generator, scorer=None) -> Draw(mask, summary, aux_loss)

``values`` (B, L) float are the per-position values the backbone reads (log-normalized expression,
or value bins for the binned backbones); ``maskable`` (B, L) bool marks the positions a strategy may
mask (False for padding and special tokens such as <cls>: they are never masked). ``mask`` (B, L)
bool, True = masked. Every draw uses ``generator`` only, so a seed fixes the masks.

==============  ================================================================================
``uniform``     Bernoulli(p) over the non-zero values, p drawn per batch from [low, high]
                (scHyena: 0.05-0.4)
``stratified``  exactly floor(n x ratio) of the non-zero and of the zero positions, each uniformly
                without replacement (scFoundation: 0.3 / 0.03; MAM's uniform baseline)
``expression``  k = floor(N x ratio) positions without replacement, p proportional to
                (x + eps)^gamma: the cheap control for MAM (whose choice depends on the value only)
``mam``         MAM (Naziri et al., CHIL 2026): a cross-attention scorer's probabilities, k =
                floor(N x ratio) without replacement; its summary is injected into the backbone
==============  ================================================================================

Sampling without replacement is vectorized as Gumbel-top-k (:func:`gumbel_topk`): the k largest of
``log p + Gumbel noise`` are distributed as k successive draws without replacement with
probabilities p (``torch.multinomial(p, k, replacement=False)``, Plackett-Luce), which
``tests/test_pretrain.py`` checks with a chi-square test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from scfmbench import InputError

STRATEGIES: dict[str, type] = {}


def register_strategy(name: str):
    """Class decorator: make a strategy buildable by ``name``."""

    def deco(cls):
        if name in STRATEGIES:
            raise ValueError(f"masking strategy {name!r} registered twice")
        STRATEGIES[name] = cls
        cls.name = name
        return cls

    return deco


class Draw(NamedTuple):
    """One batch's masks: ``mask`` (B, L) bool; ``summary`` (B, D) to add to every token or None;
    ``aux_loss`` a scalar to add to the loss or None; ``ratio`` the batch's drawn masking probability
    (``uniform``) or None."""

    mask: torch.Tensor
    summary: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    ratio: float | None = None  # the masking probability drawn for this batch, where there is one


@dataclass(frozen=True, kw_only=True)
class MaskingStrategy:
    """Base class. Subclasses are frozen dataclasses whose fields are their options."""

    name = "base"
    needs_scorer = False  # True: the strategy owns trainable parameters (a scorer module)

    def draw(self, values: torch.Tensor, maskable: torch.Tensor, *, generator: torch.Generator, scorer=None) -> Draw:
        raise NotImplementedError

    @property
    def monitor_ratio(self) -> float:
        """Share of the non-zero values masked on the monitoring cells (the same fixed Bernoulli
        masks for every strategy, so validation losses compare)."""
        return getattr(self, "ratio", 0.3)

    def summary(self, values: torch.Tensor, maskable: torch.Tensor, scorer=None) -> torch.Tensor | None:
        """The summary added to every token when nothing is sampled (monitoring, fine-tuning)."""
        return None

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_strategy(name: str, **options) -> MaskingStrategy:
    """A registered strategy with ``options``; unknown names or options are an InputError."""
    if name not in STRATEGIES:
        raise InputError(f"unknown masking strategy {name!r}; registered strategies are {sorted(STRATEGIES)}")
    cls = STRATEGIES[name]
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"masking strategy {name!r}: unknown option(s) {unknown}; allowed options are {allowed}")
    return cls(**options)


def check_ratio(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"masking option {name} must be in [0, 1], got {value}")


def rand(shape, generator: torch.Generator, device) -> torch.Tensor:
    """Uniform draws on the generator's device, moved to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def topk_per_row(keys: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Mask (B, L) of the ``k[b]`` largest ``keys`` among the ``eligible`` positions of each row."""
    keys = keys.masked_fill(~eligible, float("-inf"))
    order = keys.argsort(dim=1, descending=True)  # (B, L)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(keys.shape[1], device=keys.device).expand_as(order))
    return (rank < k[:, None]) & eligible


def gumbel_topk(probs: torch.Tensor, k: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """k[b] positions of row b without replacement, with probabilities ``probs`` (B, L) (zero =
    never): the top k of log p + Gumbel(0, 1), distributed as ``torch.multinomial(replacement=False)``."""
    u = rand(probs.shape, generator, probs.device).clamp(1e-12, 1.0 - 1e-7)
    keys = probs.clamp_min(0).log() - torch.log(-torch.log(u))
    return topk_per_row(keys, probs > 0, k.clamp(max=(probs > 0).sum(1)))


def n_to_mask(eligible: torch.Tensor, ratio: float) -> torch.Tensor:
    """floor(n_eligible x ratio) per row, (B,) long."""
    return torch.floor(eligible.sum(1).double() * ratio).long()


from scfmbench.pretrain.masking import uniform, stratified, expression, mam  # noqa: E402,F401  (register)
