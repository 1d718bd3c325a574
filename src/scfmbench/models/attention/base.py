"""Kernel interface, registry and the shared multi-head module.

Shapes: B batch, H heads, L tokens, D head dim, E model dim (= H * D).
"""

from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange
from torch import nn

from scfmbench import InputError

KERNELS: dict[str, type["AttentionKernel"]] = {}


def register_kernel(name: str) -> Callable[[type], type]:
    """Class decorator: make a kernel buildable by ``name`` from config."""

    def deco(cls):
        if name in KERNELS:
            raise ValueError(f"attention kernel {name!r} registered twice")
        KERNELS[name] = cls
        cls.name = name
        return cls

    return deco


def build_kernel(name: str, **config) -> "AttentionKernel":
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

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None = None, edges=None) -> torch.Tensor:
        raise NotImplementedError


class MultiHeadAttention(nn.Module):
    """Projections, head split/merge and output projection around any registered kernel."""

    def __init__(self, d_model: int, n_heads: int, *, kernel: str = "full", kernel_config: dict | None = None, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise InputError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)  # packed like scGPT's Wqkv
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.kernel = build_kernel(kernel, **(kernel_config or {}))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None, edges=None) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.n_heads)
        y = self.kernel(q, k, v, key_padding_mask=key_padding_mask, edges=edges)  # (B, H, L, D)
        return self.dropout(self.out(rearrange(y, "b h l d -> b l (h d)")))
