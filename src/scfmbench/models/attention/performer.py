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

Memory. The kernel is one autograd Function (:class:`_FavorAttention`): the forward pass runs
``softmax_kernel`` and ``linear_attention``'s operations (same output, bit for bit) but keeps
only ``exp(.)`` of each feature map for the backward pass, which recomputes the features from it;
at L = 16384 (B 8, H 4, D 32) a forward + backward peaks ~25% below ``FastAttention``'s.
"""

from __future__ import annotations

import math
import warnings

import torch

from scfmbench import InputError
from scfmbench.models.attention.base import AttentionKernel, register_kernel


def _orthogonal_matrix_chunk():
    """performer-pytorch's ``orthogonal_matrix_chunk``, imported when the kernel first needs it:
    importing the package (it pulls setuptools' distutils) costs ~0.2 s in every job process."""
    try:
        with warnings.catch_warnings():  # performer-pytorch 1.1.4 imports distutils' LooseVersion
            warnings.simplefilter("ignore", DeprecationWarning)
            from performer_pytorch.performer_pytorch import orthogonal_matrix_chunk
    except ImportError:  # pragma: no cover -- a declared dependency
        raise InputError("the performer kernel needs performer-pytorch (pip install performer-pytorch)") from None
    return orthogonal_matrix_chunk


def orthogonal_random_features(M: int, D: int, *, scaling: int = 0) -> torch.Tensor:
    """(M, D) blocks of random orthogonal rows with chi (or sqrt(D)) norms, from the global RNG.

    ``performer_pytorch.gaussian_orthogonal_random_matrix`` without its (M, M) ``torch.diag``.
    """
    orthogonal_matrix_chunk = _orthogonal_matrix_chunk()
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


def _favor_exp(
    x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``exp(dash - diag - stab)`` of ``performer_pytorch.softmax_kernel``: the features before
    ``ratio * (. + eps)``; (B, H, L, D) -> (B, H, L, M). The stabiliser (query: per position,
    key: over all real keys of the cell) is a constant, as performer-pytorch's detached one.

    The same operations in the same order as ``softmax_kernel`` (same values), but each step
    after ``dash - diag`` in place and ``dash`` dropped once used (at most two (B, H, L, M)
    arrays at once, where ``softmax_kernel`` holds four), and the key stabiliser is the masked
    maximum of the per-position maxima, without a masked copy of ``dash``.
    """
    D = x.shape[-1]
    normalizer = D**-0.25
    dash = torch.einsum("bhld,md->bhlm", normalizer * x, projection.to(x.dtype))
    diag = (x**2).sum(-1, keepdim=True) / 2.0 * normalizer**2
    stab = dash.detach().amax(dim=-1, keepdim=True)  # (B, H, L, 1)
    if not is_query:
        if key_padding_mask is not None:
            stab = stab.masked_fill_(key_padding_mask[:, None, :, None], float("-inf"))
        stab = stab.amax(dim=-2, keepdim=True)  # (B, H, 1, 1): the maximum over all (real) keys
        stab = torch.where(torch.isfinite(stab), stab, torch.zeros_like(stab))  # a cell with no real key
    dash = dash - diag
    return dash.sub_(stab).exp_()


def _features_of(e: torch.Tensor, M: int, eps: float, pad: torch.Tensor | None) -> torch.Tensor:
    """``ratio * (e + eps)``, zero at padded keys (``pad`` (B, 1, L, 1) or None)."""
    feats = (e + eps).mul_(M**-0.5)
    return feats if pad is None else feats.masked_fill_(pad, 0.0)


def favor_features(
    x: torch.Tensor,
    projection: torch.Tensor,
    *,
    is_query: bool,
    key_padding_mask: torch.Tensor | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Positive random features of ``performer_pytorch.softmax_kernel``; (B, H, L, D) -> (B, H, L, M).

    For keys, padded positions get zero features and are left out of the stabiliser.
    Differentiable (autograd through :func:`_favor_exp`; the kernel itself uses
    :class:`_FavorAttention`).
    """
    pad = None if is_query or key_padding_mask is None else key_padding_mask[:, None, :, None]
    e = _favor_exp(x, projection, is_query=is_query, key_padding_mask=key_padding_mask)
    return _features_of(e, projection.shape[0], eps, pad)


class _FavorAttention(torch.autograd.Function):
    """FAVOR+ attention (the features above, then ``performer_pytorch.linear_attention``) with a
    hand-written backward pass, to hold less memory than autograd through the same operations.

    Forward: the operations of ``softmax_kernel`` and ``linear_attention`` on the same inputs
    (the same output, bit for bit). Autograd would keep, per feature map, both ``exp(.)``
    (for its derivative) and the features (for the products that use them), plus the products'
    (B, H, L, M) intermediates: four to five (B, H, L, M) arrays from the forward to the backward
    pass. Here only the two ``exp(.)`` arrays and the small (B, H, M, D) / (B, H, M) / (B, H, L)
    context, key sum and normaliser are kept; the features are recomputed from them (the same
    operations, so the same values) one at a time in the backward pass, which then holds at most
    three (B, H, L, M) arrays. Gradients are those of autograd with the stabilisers as
    constants (performer-pytorch detaches them), equal up to floating-point rounding.
    """

    @staticmethod
    def forward(ctx, q, k, v, projection, key_padding_mask, eps):
        M = projection.shape[0]
        pad = None if key_padding_mask is None else key_padding_mask[:, None, :, None]  # (B, 1, L, 1)
        if pad is not None:  # zeroed first so that no inf can reach the backward pass
            k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)
        # keys first: their features give the key sum and the context and are then dropped
        e_k = _favor_exp(k, projection, is_query=False, key_padding_mask=key_padding_mask)
        kf = _features_of(e_k, M, eps, pad)
        k_sum = kf.sum(dim=-2)
        if pad is None:  # performer_pytorch.linear_attention, step by step
            context = torch.einsum("...nd,...ne->...de", kf, v)
        else:  # the same with a guarded normaliser (a cell with no real key)
            context = torch.einsum("bhld,bhle->bhde", kf, v)
        del kf
        e_q = _favor_exp(q, projection, is_query=True)
        qf = _features_of(e_q, M, eps, None)
        if pad is None:
            d_inv = 1.0 / torch.einsum("...nd,...d->...n", qf, k_sum.type_as(qf))
            out = torch.einsum("...de,...nd,...n->...ne", context, qf, d_inv)
        else:
            den = torch.einsum("bhld,bhd->bhl", qf, k_sum)
            d_inv = 1.0 / den.clamp_min(torch.finfo(qf.dtype).tiny)
            out = torch.einsum("bhde,bhld,bhl->bhle", context, qf, d_inv)
            ctx.clamped = den < torch.finfo(qf.dtype).tiny  # (B, H, L): the normaliser's gradient is 0 there
        ctx.save_for_backward(q, k, v, projection, e_q, e_k, context, k_sum, d_inv)
        ctx.pad, ctx.eps = pad, eps
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v, projection, e_q, e_k, context, k_sum, d_inv = ctx.saved_tensors  # k, v: masked
        pad, eps = ctx.pad, ctx.eps
        M, D = projection.shape
        normalizer = D**-0.25
        proj = projection.to(q.dtype)

        def through_features(grad_f, e, x):  # d/dx of ratio * (exp(n x.P - |x|^2 n^2 / 2 - stab) + eps)
            grad_dash = grad_f.mul_(M**-0.5).mul_(e)
            grad_x = torch.matmul(grad_dash, proj).mul_(normalizer)
            grad_diag = grad_dash.sum(-1, keepdim=True).neg_()  # (B, H, L, 1)
            return grad_x.add_(x * grad_diag * normalizer**2)

        # out = (qf @ context) * d_inv, d_inv = 1 / (qf . k_sum), context = kf^T v
        qf = _features_of(e_q, M, eps, None)
        g_y = g * d_inv[..., None]  # gradient of qf @ context
        g_den = (g * torch.matmul(qf, context)).sum(-1).mul_(d_inv).mul_(d_inv).neg_()  # (B, H, L)
        if pad is not None:
            g_den = g_den.masked_fill_(ctx.clamped, 0.0)
        g_context = torch.matmul(qf.transpose(-1, -2), g_y)  # (B, H, M, D)
        g_ksum = torch.einsum("bhl,bhlm->bhm", g_den, qf)
        del qf
        grad_q = grad_k = grad_v = None
        if ctx.needs_input_grad[0]:
            g_qf = torch.matmul(g_y, context.transpose(-1, -2))
            g_qf.addcmul_(g_den[..., None], k_sum[:, :, None, :])  # through the normaliser
            grad_q = through_features(g_qf, e_q, q)
            del g_qf
        kf = _features_of(e_k, M, eps, pad)
        if ctx.needs_input_grad[2]:
            grad_v = torch.matmul(kf, g_context)
            if pad is not None:
                grad_v = grad_v.masked_fill_(pad, 0.0)
        del kf
        if ctx.needs_input_grad[1]:
            g_kf = torch.matmul(v, g_context.transpose(-1, -2)).add_(g_ksum[:, :, None, :])
            if pad is not None:
                g_kf = g_kf.masked_fill_(pad, 0.0)
            grad_k = through_features(g_kf, e_k, k)
            if pad is not None:
                grad_k = grad_k.masked_fill_(pad, 0.0)
        return grad_q, grad_k, grad_v, None, None, None


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
        if torch.is_autocast_enabled(
            q.device.type
        ):  # mixed precision: the exp features in float32 (their range needs it)
            with torch.autocast(q.device.type, enabled=False):
                out = _FavorAttention.apply(
                    q.float(), k.float(), v.float(), self.projection(q.shape[-1], q.device), key_padding_mask, self.eps
                )
            return out.to(q.dtype)
        return _FavorAttention.apply(q, k, v, self.projection(q.shape[-1], q.device), key_padding_mask, self.eps)
