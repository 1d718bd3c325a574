"""``random``: MAM's released baseline (``--masking_strategy random``; ``random_masking`` in
``model/mae_autobin.py``, run ``pretrain/expermiments/experiment_9``).

Per cell, floor(n x ratio) of the zero and floor(n x ratio) of the non-zero positions, each
uniformly without replacement: the ``stratified`` rule with one ratio for both, not ``uniform``
(scHyena's Bernoulli over the non-zero values, p drawn per batch: zeros never masked, a random
count). A registry entry of its own, rather than ``stratified`` with other defaults, because
``stratified``'s defaults are scFoundation's (0.3 / 0.03) and this is the entry named as upstream
names it, with upstream's defaults: ratio 0.024 (``--masking_ratio`` 0.3 x 0.08) and advanced
masking (experiment_9, the baseline run beside MAM's experiment_1; experiment_10 without it).

Not reproduced (docs/pretraining.md "Masked pretraining"): upstream leaves a cell unmasked when all its
visible positions would be zeros, and masks extra non-zero genes beyond 6,000 visible ones."""

from __future__ import annotations

from dataclasses import dataclass

from scfmbench.pretrain.masking.base import (
    RELEASED_RATIO,
    Draw,
    MaskingStrategy,
    advanced_masking,
    check_ratio,
    register_strategy,
)
from scfmbench.pretrain.masking.stratified import stratified_mask


@register_strategy("random")
@dataclass(frozen=True, kw_only=True)
class Random(MaskingStrategy):
    ratio: float = RELEASED_RATIO  # of the zero and of the non-zero positions
    advanced_masking: bool = True  # false: every masked position shows the mask token (experiment_10)

    def __post_init__(self):
        check_ratio("random.ratio", self.ratio)

    def draw(self, values, maskable, *, generator, scorer=None) -> Draw:
        mask = stratified_mask(values, maskable, self.ratio, self.ratio, generator=generator)
        return Draw(
            mask, shown=advanced_masking(values, mask, maskable, generator=generator) if self.advanced_masking else None
        )
