"""``stratified``: non-zero and zero positions masked separately, exactly floor(n x ratio) of each,
uniformly without replacement. scFoundation masks 0.3 of the non-zero and 0.03 of the zero values
(REFERENCE.md section 8); MAM's uniform baseline (``random_masking`` in ``model/mae_autobin.py``)
uses one ratio for both."""

from __future__ import annotations

from dataclasses import dataclass

from scfmbench.pretrain.masking import Draw, MaskingStrategy, check_ratio, n_to_mask, rand, register_strategy, topk_per_row


@register_strategy("stratified")
@dataclass(frozen=True, kw_only=True)
class Stratified(MaskingStrategy):
    ratio: float = 0.3  # of the non-zero positions
    ratio_zero: float = 0.03  # of the zero positions

    def __post_init__(self):
        check_ratio("stratified.ratio", self.ratio)
        check_ratio("stratified.ratio_zero", self.ratio_zero)

    def draw(self, values, maskable, *, generator, scorer=None) -> Draw:
        keys = rand(values.shape, generator, values.device)  # one uniform key per position
        nonzero, zero = maskable & (values != 0), maskable & (values == 0)
        mask = topk_per_row(keys, nonzero, n_to_mask(nonzero, self.ratio)) | topk_per_row(keys, zero, n_to_mask(zero, self.ratio_zero))
        return Draw(mask)
