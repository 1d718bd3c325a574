"""Longformer baseline as GenoHoption's official code builds it: one hop on overlapping windows.

Window blocks of ``window`` tokens every ``window/2`` tokens (``GenoHoption/Geneformer_window.py``,
``_create_adj_mat``; w = 64 in the paper's Table IV), plus ``n_global`` leading global tokens
(Longformer's global attention on CLS; the official baseline had none, set ``n_global=0`` for it).
Unlike the official code, padded tokens are really masked (its ``attention_mask >= 0`` test was
always true). A pattern passed as ``edges`` replaces the window pattern.
"""

from __future__ import annotations

from scfmbench.models.attention.base import register_kernel
from scfmbench.models.attention.edges import EdgePattern, window_pattern
from scfmbench.models.attention.genohoption import GraphDiffusionAttention


@register_kernel("longformer")
class LongformerAttention(GraphDiffusionAttention):
    needs_edges = False

    def __init__(self, *, window: int = 64, n_global: int = 1, dropout: float = 0.0):
        super().__init__(diffusion="none", k=1, dropout=dropout)
        self.window, self.n_global = window, n_global
        self._patterns: dict = {}

    def extra_repr(self) -> str:
        return f"window={self.window}, n_global={self.n_global}"

    def default_pattern(self, L: int, device) -> EdgePattern:
        key = (L, str(device))
        if key not in self._patterns:
            self._patterns[key] = window_pattern(L, self.window, n_global=self.n_global, device=device)
        return self._patterns[key]
