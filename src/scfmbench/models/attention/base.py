"""Kernel interface, registry and the shared multi-head module.

Shapes: B batch, H heads, L tokens, D head dim, E model dim (= H * D).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange
from torch import nn

from scfmbench import InputError

KERNELS: dict[str, type[AttentionKernel]] = {}


def register_kernel(name: str) -> Callable[[type], type]:
    """Class decorator: make a kernel buildable by ``name`` from config."""

    def deco(cls):
        if name in KERNELS:
            raise ValueError(f"attention kernel {name!r} registered twice")
        KERNELS[name] = cls
        cls.name = name
        return cls

    return deco


def kernel_option_names(name: str) -> list[str]:
    """The options a registered kernel's class takes (its constructor's keywords), sorted."""
    import inspect

    if name not in KERNELS:
        raise InputError(f"unknown attention kernel {name!r}; registered kernels are {sorted(KERNELS)}")
    return sorted(k for k in inspect.signature(KERNELS[name].__init__).parameters if k != "self")


def build_kernel(name: str, **config) -> AttentionKernel:
    if name not in KERNELS:
        raise InputError(f"unknown attention kernel {name!r}; registered kernels are {sorted(KERNELS)}")
    return KERNELS[name](**config)


class AttentionKernel(nn.Module):
    """Base class. ``forward(q, k, v, key_padding_mask=None, edges=None)``.

    q, k, v: (B, H, L, D). key_padding_mask: (B, L) bool, True marks padding; padded keys must not
    influence any real query, and padded query rows may hold anything finite. ``edges`` is the
    kernel-specific edge pattern (None for dense kernels).
    """

    name: str = "base"
    needs_edges: bool = False  # True: forward raises without an ``edges`` pattern (graph kernels)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        edges=None,
    ) -> torch.Tensor:
        raise NotImplementedError


class MultiHeadAttention(nn.Module):
    """Projections, head split/merge and output projection around any registered kernel.

    ``head_dim``: width of each head (default ``d_model // n_heads``); the heads together are
    ``n_heads * head_dim`` wide, as performer-pytorch's ``dim_head`` (scBERT: 10 heads of 64 on a
    200-wide model). ``dropout`` drops the output projection and is also the kernel's attention
    dropout unless ``kernel_config`` sets one (for kernels with a ``dropout`` option), as scGPT's
    attention (``attention_dropout=dropout``) and GenoHoption's (``attention_probs_dropout_prob``).
    ``bias``: biases of the projections; ``qkv_bias`` (None: ``bias``) of the q/k/v one alone
    (performer-pytorch's ``PerformerLM``, scBERT's model: ``qkv_bias=False``, output bias kept).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        kernel: str = "full",
        kernel_config: dict | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        head_dim: int | None = None,
        qkv_bias: bool | None = None,
    ):
        super().__init__()
        if head_dim is None and d_model % n_heads:
            raise InputError(f"d_model={d_model} must be divisible by n_heads={n_heads} (or give head_dim)")
        self.n_heads = n_heads
        inner = n_heads * (head_dim or d_model // n_heads)
        self.qkv = nn.Linear(
            d_model, 3 * inner, bias=bias if qkv_bias is None else qkv_bias
        )  # packed like scGPT's Wqkv
        self.out = nn.Linear(inner, d_model, bias=bias)
        options = dict(kernel_config or {})
        if "dropout" in kernel_option_names(kernel):
            options.setdefault("dropout", dropout)
        self.kernel = build_kernel(kernel, **options)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None, edges=None) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.n_heads)
        y = self.kernel(q, k, v, key_padding_mask=key_padding_mask, edges=edges)  # (B, H, L, D)
        return self.dropout(self.out(rearrange(y, "b h l d -> b l (h d)")))
