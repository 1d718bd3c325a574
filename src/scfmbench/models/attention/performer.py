"""Performer (FAVOR+) kernel attention, as scBERT uses it, on top of ``performer-pytorch`` 1.1.4.

Random features: the matrix of ``performer_pytorch.gaussian_orthogonal_random_matrix`` (same
draws in the same order, so the same matrix for a seed), drawn under ``torch.manual_seed(seed)``
inside ``torch.random.fork_rng`` (the global RNG is untouched), once per head dim and device.
It is rebuilt here because the original scales rows with ``torch.diag(multiplier) @ Q``, an
(M, M) matrix: 1 GiB at M = 16384. They are fixed for the life of the kernel, identical in training and
evaluation, and reproducible from the seed; unlike performer-pytorch's ``Performer`` there is no
periodic redraw.

Padding. ``performer_pytorch.softmax_kernel`` maps a key to ratio * (exp(w.k - |k|^2/2 - max) +
eps), which is not zero for a zeroed key, so zeroing padded keys and values alone would still
count padded keys in the normaliser (checked in ``tests/test_attention.py``). Here the padded
keys' *features* are set to zero, and the key stabiliser ``max`` runs over real keys only (in
performer-pytorch it runs over all keys, so padded keys would shift the eps term). Padded keys and
values are also zeroed first so that no inf can reach the backward pass. Without padding the
output equals ``performer_pytorch.FastAttention`` with the same projection matrix.
"""

from __future__ import annotations

import math
import warnings

import torch

from scfmbench import InputError
from scfmbench.models.attention.base import AttentionKernel, register_kernel

try:  # optional dependency: a clear error only when the kernel is built
    with warnings.catch_warnings():  # performer-pytorch 1.1.4 imports distutils' LooseVersion
        warnings.simplefilter("ignore", DeprecationWarning)
        from performer_pytorch.performer_pytorch import linear_attention, orthogonal_matrix_chunk
except ImportError:  # pragma: no cover
    linear_attention = orthogonal_matrix_chunk = None


def orthogonal_random_features(M: int, D: int, *, scaling: int = 0) -> torch.Tensor:
    """(M, D) blocks of random orthogonal rows with chi (or sqrt(D)) norms, from the global RNG.

    ``performer_pytorch.gaussian_orthogonal_random_matrix`` without its (M, M) ``torch.diag``.
    """
    n_full = M // D
    blocks = [orthogonal_matrix_chunk(D) for _ in range(n_full)]
    if M - n_full * D > 0:
        blocks.append(orthogonal_matrix_chunk(D)[: M - n_full * D])
    final = torch.cat(blocks)
    if scaling == 0:
        multiplier = torch.randn((M, D)).norm(dim=1)
    elif scaling == 1:
        multiplier = math.sqrt(float(D)) * torch.ones((M,))
    else:
        raise InputError(f"ortho_scaling must be 0 or 1, got {scaling}")
    return multiplier[:, None] * final


def favor_features(x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, key_padding_mask: torch.Tensor | None = None, eps: float = 1e-4) -> torch.Tensor:
    """Positive random features of ``performer_pytorch.softmax_kernel``; (B, H, L, D) -> (B, H, L, M).

    For keys, padded positions get zero features and are left out of the stabiliser.
    """
    D, M = x.shape[-1], projection.shape[0]
    normalizer, ratio = D**-0.25, M**-0.5
    dash = torch.einsum("bhld,md->bhlm", normalizer * x, projection.to(x.dtype))
    diag = (x**2).sum(-1, keepdim=True) / 2.0 * normalizer**2
    if is_query:
        stab = dash.amax(dim=-1, keepdim=True).detach()
        return ratio * (torch.exp(dash - diag - stab) + eps)
    pad = None if key_padding_mask is None else key_padding_mask[:, None, :, None]  # (B, 1, L, 1)
    stab = (dash if pad is None else dash.masked_fill(pad, float("-inf"))).amax(dim=(-1, -2), keepdim=True).detach()
    stab = torch.where(torch.isfinite(stab), stab, torch.zeros_like(stab))  # a cell with no real key
    feats = ratio * (torch.exp(dash - diag - stab) + eps)
    return feats if pad is None else feats.masked_fill(pad, 0.0)


@register_kernel("performer")
class PerformerAttention(AttentionKernel):
    """FAVOR+ with positive orthogonal random features.

    Parameters
    ----------
    nb_features
        Number of random features M; None = performer-pytorch's default int(D ln D).
    seed
        Seed of the random projection.
    ortho_scaling
        performer-pytorch's ``scaling`` (0: chi-distributed row norms, 1: sqrt(D)).
    eps
        Added to every feature (performer-pytorch's 1e-4). The stabilisers are detached, as in
        performer-pytorch, so gradients are exact only for eps = 0 (the stabilisers cancel then).
    """

    def __init__(self, *, nb_features: int | None = None, seed: int = 0, ortho_scaling: int = 0, eps: float = 1e-4):
        super().__init__()
        if linear_attention is None:
            raise InputError("the performer kernel needs performer-pytorch (pip install performer-pytorch)")
        self.nb_features, self.seed, self.ortho_scaling, self.eps = nb_features, seed, ortho_scaling, eps
        self._projections: dict = {}

    def extra_repr(self) -> str:
        return f"nb_features={self.nb_features}, seed={self.seed}"

    def projection(self, D: int, device) -> torch.Tensor:
        """(M, D) fixed random projection for head dim D (drawn once from ``seed``)."""
        key = (D, str(device))
        if key not in self._projections:
            M = self.nb_features or int(D * math.log(D))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self._projections[key] = orthogonal_random_features(M, D, scaling=self.ortho_scaling).to(device)
        return self._projections[key]

    def forward(self, q, k, v, key_padding_mask=None, edges=None):
        proj = self.projection(q.shape[-1], q.device)
        if key_padding_mask is not None:
            pad = key_padding_mask[:, None, :, None]  # (B, 1, L, 1)
            k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)
        qf = favor_features(q, proj, is_query=True, eps=self.eps)
        kf = favor_features(k, proj, is_query=False, key_padding_mask=key_padding_mask, eps=self.eps)
        if key_padding_mask is None:
            return linear_attention(qf, kf, v)
        # performer_pytorch.linear_attention with a guarded normaliser (a cell with no real key)
        den = torch.einsum("bhld,bhd->bhl", qf, kf.sum(dim=-2)).clamp_min(torch.finfo(qf.dtype).tiny)
        context = torch.einsum("bhld,bhle->bhde", kf, v)
        return torch.einsum("bhde,bhld,bhl->bhle", context, qf, 1.0 / den)
