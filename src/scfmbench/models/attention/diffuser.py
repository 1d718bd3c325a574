"""Diffuser baseline (Feng et al. 2022, arXiv 2210.11794): sparse attention + PPR diffusion.

Two presets, chosen by the ``preset`` config key; any explicit key overrides the preset:

- ``"official"`` (GenoHoption's baseline code): window = the dataset's mean graph degree (block
  ``window``, stride ``window/2``; default 32 here; ``window: mean_degree`` in a backbone's
  ``kernel_config`` takes it from the dataset's gene graph), no random or global
  tokens, PPR with K = 6, alpha = 0.25.
- ``"paper"`` (Diffuser's own setting): window 64 + 64 random keys per query + 64 global tokens,
  PPR with alpha = 0.1 and 5 iterations.

Random edges are drawn from ``torch.Generator().manual_seed(seed)`` per length L, fixed for the
life of the kernel. A pattern passed as ``edges`` replaces the built one.
"""

from __future__ import annotations

from scfmbench import InputError
from scfmbench.models.attention.base import register_kernel
from scfmbench.models.attention.edges import EdgePattern, diffuser_pattern
from scfmbench.models.attention.genohoption import GraphDiffusionAttention

PRESETS = {
    "official": dict(window=32, n_random=0, n_global=0, alpha=0.25, k=6),
    "paper": dict(window=64, n_random=64, n_global=64, alpha=0.1, k=5),
}


@register_kernel("diffuser")
class DiffuserAttention(GraphDiffusionAttention):
    needs_edges = False

    def __init__(
        self,
        *,
        preset: str = "official",
        window: int | None = None,
        n_random: int | None = None,
        n_global: int | None = None,
        alpha: float | None = None,
        k: int | None = None,
        seed: int = 0,
        dropout: float = 0.0,
    ):
        if preset not in PRESETS:
            raise InputError(f"diffuser preset must be one of {sorted(PRESETS)}, got {preset!r}")
        given = dict(window=window, n_random=n_random, n_global=n_global, alpha=alpha, k=k)
        cfg = {key: PRESETS[preset][key] if val is None else val for key, val in given.items()}
        super().__init__(diffusion="ppr", alpha=cfg["alpha"], k=cfg["k"], dropout=dropout)
        self.preset, self.window, self.n_random, self.n_global, self.seed = (
            preset,
            cfg["window"],
            cfg["n_random"],
            cfg["n_global"],
            seed,
        )
        self._patterns: dict = {}

    def extra_repr(self) -> str:
        return (
            f"preset={self.preset!r}, window={self.window}, n_random={self.n_random}, n_global={self.n_global}, "
            f"alpha={self.alpha}, k={self.k}"
        )

    def default_pattern(self, L: int, device) -> EdgePattern:
        key = (L, str(device))
        if key not in self._patterns:
            self._patterns[key] = diffuser_pattern(
                L, window=self.window, n_random=self.n_random, n_global=self.n_global, seed=self.seed, device=device
            )
        return self._patterns[key]
