"""BigBird baseline: one hop on window + random + global edges.

As in GenoHoption's baseline (REFERENCE.md section 1): window blocks of ``window`` tokens every
``window/2`` (the official code sets the window to the dataset's mean graph degree, 14-34:
``window: mean_degree`` in a backbone's ``kernel_config`` does that per dataset),
``n_random`` random keys per query, and global token 0. The official code drew its random
entries once per run with ``np.random.choice`` over the whole (2048 x 2048) matrix; here they are
drawn per query from ``torch.Generator().manual_seed(seed)`` when the pattern for a length L is
first needed, so they are fixed for the life of the kernel, identical in training and evaluation,
and reproducible from (L, seed). A pattern passed as ``edges`` replaces the built one.
"""

from __future__ import annotations

from scfmbench.models.attention.base import register_kernel
from scfmbench.models.attention.edges import EdgePattern, bigbird_pattern
from scfmbench.models.attention.genohoption import GraphDiffusionAttention


@register_kernel("bigbird")
class BigBirdAttention(GraphDiffusionAttention):
    needs_edges = False

    def __init__(self, *, window: int = 32, n_random: int = 16, n_global: int = 1, seed: int = 0, dropout: float = 0.0):
        super().__init__(diffusion="none", k=1, dropout=dropout)
        self.window, self.n_random, self.n_global, self.seed = window, n_random, n_global, seed
        self._patterns: dict = {}

    def extra_repr(self) -> str:
        return f"window={self.window}, n_random={self.n_random}, n_global={self.n_global}, seed={self.seed}"

    def default_pattern(self, L: int, device) -> EdgePattern:
        key = (L, str(device))
        if key not in self._patterns:
            self._patterns[key] = bigbird_pattern(L, self.window, self.n_random, self.seed, n_global=self.n_global, device=device)
        return self._patterns[key]
