"""Attention kernels over already-split heads, one per file, registered by name.

Every kernel has the same signature (see :class:`~scfmbench.models.attention.base.AttentionKernel`)::

    kernel(q, k, v, key_padding_mask=None, edges=None) -> out     # q, k, v, out: (B, H, L, D)

Projections, the head split/merge, dropout and the residual live once, in
:class:`~scfmbench.models.attention.base.MultiHeadAttention`.
"""

from scfmbench.models.attention.base import KERNELS, AttentionKernel, MultiHeadAttention, build_kernel, register_kernel
from scfmbench.models.attention import full  # noqa: F401  (registers "full")

__all__ = ["KERNELS", "AttentionKernel", "MultiHeadAttention", "build_kernel", "register_kernel"]
