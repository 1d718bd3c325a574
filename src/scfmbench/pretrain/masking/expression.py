"""``expression``: k = floor(N x ratio) of the N maskable positions, drawn without replacement with
probability proportional to (x + eps)^gamma. MAM's scorer sees only each gene's value (its keys are
``input_proj(value)``, no gene identity), so its choice is a function of the expression level; this
strategy is that function's simplest form, without a learned module or an injected summary: the
control that says whether MAM's gain comes from masking highly expressed genes. Its ratio defaults
to MAM's released 0.024, so both mask the same number of positions."""

from __future__ import annotations

from dataclasses import dataclass

from scfmbench import InputError
from scfmbench.pretrain.masking.base import (
    RELEASED_RATIO,
    Draw,
    MaskingStrategy,
    check_ratio,
    gumbel_topk,
    n_to_mask,
    register_strategy,
)


@register_strategy("expression")
@dataclass(frozen=True, kw_only=True)
class Expression(MaskingStrategy):
    ratio: float = RELEASED_RATIO
    gamma: float = 1.0
    eps: float = 0.1

    def __post_init__(self):
        check_ratio("expression.ratio", self.ratio)
        if self.eps <= 0:
            raise InputError(f"masking option expression.eps must be > 0 (zeros need a chance), got {self.eps}")

    def draw(self, values, maskable, *, generator, scorer=None) -> Draw:
        weight = (values.clamp_min(0) + self.eps) ** self.gamma * maskable
        probs = weight / weight.sum(1, keepdim=True).clamp_min(1e-30)
        return Draw(gumbel_topk(probs, n_to_mask(maskable, self.ratio), generator=generator))
