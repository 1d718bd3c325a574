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
                without replacement (scFoundation: 0.3 / 0.03)
``random``      MAM's released baseline (``--masking_strategy random``): ``stratified`` with one
                ratio for zero and non-zero positions, 0.024, and advanced masking
``expression``  k = floor(N x ratio) positions without replacement, p proportional to
                (x + eps)^gamma: the cheap control for MAM (whose choice depends on the value only)
``mam``         MAM (Naziri et al., CHIL 2026): a cross-attention scorer's probabilities, k =
                floor(N x ratio) without replacement; its summary is injected into the backbone
==============  ================================================================================

MAM's released ratio (``pretrain/main.py``: ``--masking_ratio`` defaults to 0.3 x 0.08 = 0.024
of all positions, zeros included; no run script overrides it) is :data:`RELEASED_RATIO`, the
default of ``random``, ``mam`` and ``expression``. *Advanced masking* (the MAM run's
``advanced_masking=True``; ``random`` and ``mam`` default): at the masked positions the decoder
input is the mask token with probability 0.8, a random value in [0, the batch's largest value)
with 0.1 and the true value with 0.1 (:func:`advanced_masking`); the encoder never sees them and
the loss covers all of them.

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


#: MAM's ``--masking_ratio`` default (``pretrain/main.py``): 0.3 x 0.08 of all positions.
RELEASED_RATIO = 0.3 * 0.08


class Shown(NamedTuple):
    """What the masked positions show the model (advanced masking): ``token`` (B, L) bool, the
    positions that show the mask token (a subset of the mask); ``values`` (B, L), the values read at
    every other position (at masked ones: the true value or a random one)."""

    token: torch.Tensor
    values: torch.Tensor


class Draw(NamedTuple):
    """One batch's masks: ``mask`` (B, L) bool; ``summary`` (B, D) to add to every token or None;
    ``aux_loss`` a scalar to add to the loss or None; ``ratio`` the batch's drawn masking probability
    (``uniform``) or None; ``shown``: what the masked positions show (None: the mask token)."""

    mask: torch.Tensor
    summary: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    ratio: float | None = None  # the masking probability drawn for this batch, where there is one
    shown: Shown | None = None


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


def advanced_masking(values: torch.Tensor, mask: torch.Tensor, maskable: torch.Tensor, *, generator: torch.Generator) -> Shown:
    """MAM's ``advanced_masking`` (``MaeAutobin.forward``): each masked position shows the mask
    token (u < 0.8), a uniform random value in [0, the batch's largest maskable value) (0.8 <= u <
    0.9) or its true value (u >= 0.9)."""
    u = rand(values.shape, generator, values.device)
    noise = rand(values.shape, generator, values.device) * values.masked_fill(~maskable, 0).max()
    randomized = mask & (u >= 0.8) & (u < 0.9)
    return Shown(mask & (u < 0.8), torch.where(randomized, noise.to(values.dtype), values))


from scfmbench.pretrain.masking import uniform, stratified, random, expression, mam  # noqa: E402,F401  (register)
