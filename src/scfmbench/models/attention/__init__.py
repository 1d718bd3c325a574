"""Attention kernels over already-split heads, one per file, registered by name.

Every kernel has the same signature (see :class:`~scfmbench.models.attention.base.AttentionKernel`)::

    kernel(q, k, v, key_padding_mask=None, edges=None) -> out     # q, k, v, out: (B, H, L, D)

Projections, the head split/merge, dropout and the residual live once, in
:class:`~scfmbench.models.attention.base.MultiHeadAttention`.

Registered kernels (config keys in each class docstring):

==================  =========================================================================
full                dense softmax attention (``scaled_dot_product_attention``)
genohoption         graph attention + diffusion; ``diffusion`` in {"ppr", "heat", "none"},
                    ``alpha`` 0.25, ``t`` 5.0, ``k`` 6; needs ``edges`` (``graph_pattern``)
genohoption-p       the same, PPR (alpha 0.25, K 6)
genohoption-h       the same, heat kernel (t 5, K 6 terms)
onehop              attention masked to the graph, no diffusion
longformer          one hop on overlapping windows (``window`` 64) + global token 0
bigbird             one hop on window + ``n_random`` random keys per query + global token 0
diffuser            window (+ random + global) + PPR; ``preset`` "official" or "paper"
performer           FAVOR+ random-feature attention (``nb_features``, ``seed``)
==================  =========================================================================

Edge patterns and their builders live in :mod:`scfmbench.models.attention.edges`.
"""

from scfmbench.models.attention import (  # noqa: F401
    bigbird,
    diffuser,
    full,  # noqa: F401  (registers "full")
    genohoption,  # noqa: F401  (genohoption, genohoption-p/-h, onehop)
    longformer,
    performer,
)
from scfmbench.models.attention.base import KERNELS, AttentionKernel, MultiHeadAttention, build_kernel, register_kernel
from scfmbench.models.attention.edges import (
    EdgePattern,
    bigbird_pattern,
    diffuser_pattern,
    graph_pattern,
    sparse_pattern,
    window_pattern,
)

__all__ = [
    "KERNELS",
    "AttentionKernel",
    "MultiHeadAttention",
    "build_kernel",
    "register_kernel",
    "EdgePattern",
    "bigbird_pattern",
    "diffuser_pattern",
    "graph_pattern",
    "sparse_pattern",
    "window_pattern",
]
