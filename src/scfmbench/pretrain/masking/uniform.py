"""``uniform``: scHyena's masking. Per batch p ~ U[low, high]; each non-zero, maskable value is
masked with probability p (REFERENCE.md section 2; paper range 0.05-0.4). If the draw masks nothing
while something could be masked, one eligible entry is masked so every batch has a loss term."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scfmbench import InputError
from scfmbench.pretrain.masking.base import Draw, MaskingStrategy, register_strategy


def sample_mask_prob(rng: torch.Generator, low: float = 0.05, high: float = 0.4) -> float:
    """Masking probability for one batch, uniform in [low, high] (the paper: [0.05, 0.4])."""
    if not 0.0 <= low <= high <= 1.0:
        raise InputError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    return low + (high - low) * torch.rand((), generator=rng).item()


def mask_nonzero(
    values: torch.Tensor, *, p: float, generator: torch.Generator, pad_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Bernoulli(p) mask over the non-zero, non-pad entries of ``values`` (B, L) -> bool (B, L).

    If the draw selects nothing while some eligible entry exists, one eligible entry, chosen
    uniformly with ``generator``, is masked, so every batch has a loss term. The draws happen on
    the generator's device.
    """
    eligible = values != 0
    if pad_mask is not None:
        eligible = eligible & ~pad_mask
    draw = torch.rand(values.shape, generator=generator, device=generator.device).to(values.device)
    mask = (draw < p) & eligible
    if not mask.any() and eligible.any():
        idx = eligible.flatten().nonzero().squeeze(1)
        pick = torch.randint(len(idx), (), generator=generator, device=generator.device).to(idx.device)
        mask.view(-1)[idx[pick]] = True
    return mask


@register_strategy("uniform")
@dataclass(frozen=True, kw_only=True)
class Uniform(MaskingStrategy):
    low: float = 0.05
    high: float = 0.4

    def __post_init__(self):
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise InputError(
                f"masking strategy 'uniform': need 0 <= low <= high <= 1, got low={self.low}, high={self.high}"
            )

    @property
    def monitor_ratio(self) -> float:
        return (self.low + self.high) / 2

    def draw(self, values, maskable, *, generator, scorer=None) -> Draw:
        p = sample_mask_prob(generator, self.low, self.high)
        return Draw(
            mask_nonzero(values, p=p, generator=generator, pad_mask=None if maskable is None else ~maskable), ratio=p
        )
