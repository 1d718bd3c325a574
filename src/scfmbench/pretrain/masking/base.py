"""The masking strategies' registry and the pieces they share (draws, ratios, Gumbel-top-k,
advanced masking). The strategies themselves are one file each; :mod:`scfmbench.pretrain.masking`
registers them and documents the interface."""

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


def advanced_masking(
    values: torch.Tensor, mask: torch.Tensor, maskable: torch.Tensor, *, generator: torch.Generator
) -> Shown:
    """MAM's ``advanced_masking`` (``MaeAutobin.forward``): each masked position shows the mask
    token (u < 0.8), a uniform random value in [0, the batch's largest maskable value) (0.8 <= u <
    0.9) or its true value (u >= 0.9)."""
    u = rand(values.shape, generator, values.device)
    noise = rand(values.shape, generator, values.device) * values.masked_fill(~maskable, 0).max()
    randomized = mask & (u >= 0.8) & (u < 0.9)
    return Shown(mask & (u < 0.8), torch.where(randomized, noise.to(values.dtype), values))
