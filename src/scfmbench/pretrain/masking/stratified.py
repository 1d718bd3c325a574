"""``stratified``: non-zero and zero positions masked separately, exactly floor(n x ratio) of each,
uniformly without replacement. scFoundation masks 0.3 of the non-zero and 0.03 of the zero values
(REFERENCE.md section 8). MAM's released baseline (``random_masking`` in ``model/mae_autobin.py``)
is this rule with one ratio for both: the ``random`` strategy (:mod:`.random`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scfmbench.pretrain.masking.base import (
    Draw,
    MaskingStrategy,
    check_ratio,
    n_to_mask,
    rand,
    register_strategy,
    topk_per_row,
)


def stratified_mask(
    values: torch.Tensor, maskable: torch.Tensor, ratio: float, ratio_zero: float, *, generator: torch.Generator
) -> torch.Tensor:
    """floor(n x ratio) of each row's maskable non-zero positions and floor(n x ratio_zero) of its
    maskable zero positions, uniformly without replacement."""
    keys = rand(values.shape, generator, values.device)  # one uniform key per position
    nonzero, zero = maskable & (values != 0), maskable & (values == 0)
    return topk_per_row(keys, nonzero, n_to_mask(nonzero, ratio)) | topk_per_row(
        keys, zero, n_to_mask(zero, ratio_zero)
    )


@register_strategy("stratified")
@dataclass(frozen=True, kw_only=True)
class Stratified(MaskingStrategy):
    ratio: float = 0.3  # of the non-zero positions
    ratio_zero: float = 0.03  # of the zero positions

    def __post_init__(self):
        check_ratio("stratified.ratio", self.ratio)
        check_ratio("stratified.ratio_zero", self.ratio_zero)

    def draw(self, values, maskable, *, generator, scorer=None) -> Draw:
        return Draw(stratified_mask(values, maskable, self.ratio, self.ratio_zero, generator=generator))
