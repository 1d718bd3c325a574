"""BigBird baseline: one hop on window + random + global edges.

As in GenoHoption's baseline (REFERENCE.md section 1): window blocks of ``window`` tokens every
``window/2`` (the official code sets the window to the dataset's mean graph degree, 14-34:
``window: mean_degree`` in a backbone's ``kernel_config`` does that per dataset), random edges,
and global token 0.

Random edges, two forms (their union when both are given):

- ``random_density``: every (query, key) pair is a random edge with this probability, as the
  official code, which draws ``200 x 2048`` of the ``2048^2`` entries of one adjacency matrix
  (``utils.py`` ``create_adj_mat``: density 200/2048 = 0.098, about 0.098 x L random keys per
  query; :data:`~scfmbench.models.attention.edges.OFFICIAL_RANDOM_DENSITY`, ``config/paper.yaml``).
  The pattern of a shorter sequence is the top-left block of a longer one's, as there.
- ``n_random``: that many random keys per query (drawn with replacement, deduplicated); the
  default, 16, when neither is given: cheaper than the official density for L above ~160.

Seeds: the official pattern is drawn after ``set_seed(seed)``, so it changes with the run seed;
the annotation runs pass the run seed as ``seed``. Patterns are built from
(L, seed) when first needed and fixed for the life of the kernel, identical in training and
evaluation. A pattern passed as ``edges`` replaces the built one.
"""

from __future__ import annotations

from scfmbench.models.attention.base import register_kernel
from scfmbench.models.attention.edges import EdgePattern, bigbird_pattern
from scfmbench.models.attention.genohoption import GraphDiffusionAttention

DEFAULT_N_RANDOM = 16


@register_kernel("bigbird")
class BigBirdAttention(GraphDiffusionAttention):
    needs_edges = False

    def __init__(
        self,
        *,
        window: int = 32,
        n_random: int | None = None,
        random_density: float | None = None,
        n_global: int = 1,
        seed: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__(diffusion="none", k=1, dropout=dropout)
        if n_random is None:
            n_random = DEFAULT_N_RANDOM if random_density is None else 0
        self.window, self.n_random, self.random_density, self.n_global, self.seed = (
            window,
            n_random,
            random_density or 0.0,
            n_global,
            seed,
        )
        self._patterns: dict = {}

    def extra_repr(self) -> str:
        return (
            f"window={self.window}, n_random={self.n_random}, random_density={self.random_density}, "
            f"n_global={self.n_global}, seed={self.seed}"
        )

    def default_pattern(self, L: int, device) -> EdgePattern:
        key = (L, str(device))
        if key not in self._patterns:
            self._patterns[key] = bigbird_pattern(
                L,
                self.window,
                self.n_random,
                self.seed,
                n_global=self.n_global,
                random_density=self.random_density,
                device=device,
            )
        return self._patterns[key]
