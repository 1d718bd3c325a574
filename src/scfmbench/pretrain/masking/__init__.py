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

from typing import Any

from scfmbench import InputError
from scfmbench.pretrain.masking import expression, mam, random, stratified, uniform  # noqa: E402,F401  (register)
from scfmbench.pretrain.masking.base import (  # noqa: F401  (the registry's interface, re-exported)
    RELEASED_RATIO,
    STRATEGIES,
    Draw,
    MaskingStrategy,
    Shown,
    advanced_masking,
    build_strategy,
    check_ratio,
    gumbel_topk,
    n_to_mask,
    rand,
    register_strategy,
    topk_per_row,
)


def strategy_for(name: str, options: dict[str, Any]) -> MaskingStrategy:
    """A strategy id of the grid: a registered strategy with ``strategy_options[name]``, or a
    variant ``variants[name] = {strategy: <registered>, <option>: ...}`` (e.g. MAM's controls)."""
    variants = options.get("variants") or {}
    if name in variants:
        spec = dict(variants[name])
        base = spec.pop("strategy", None)
        if base not in STRATEGIES:
            raise InputError(
                f"config key 'pretraining.variants.{name}.strategy' must name a registered strategy "
                f"{sorted(STRATEGIES)}, got {base!r}"
            )
        return build_strategy(base, **{**(options.get("strategy_options") or {}).get(base, {}), **spec})
    if name not in STRATEGIES:
        raise InputError(
            f"config key 'pretraining.strategies': {name!r} is neither a registered strategy {sorted(STRATEGIES)} "
            f"nor a variant {sorted(variants)}"
        )
    return build_strategy(name, **(options.get("strategy_options") or {}).get(name, {}))
