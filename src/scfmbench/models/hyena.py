"""Bidirectional Hyena operator and block, as scHyena uses them (Oh et al., arXiv 2310.02713).

Re-implemented after HazyResearch ``safari`` ``src/models/sequence/hyena.py`` (Poli et al. 2023,
arXiv 2302.10866), with scHyena's change: the implicit long filter is two-sided, defined on lags
``-(L-1) .. (L-1)``, so every output mixes inputs before *and* after it. Two further departures
from a public re-implementation, both from ``REFERENCE.md`` section 2: the short depthwise
convolution is non-causal (padding 1 on each side), and the exponential decay uses ``|lag|`` (a
signed lag makes the filter grow without bound for negative lags).

Shapes: B batch, L tokens, D model width, C channels of a long convolution (``D * (order - 1)``),
K = 2L - 1 filter taps, lag ``j - (L - 1)`` at tap index ``j``.

Reads top to bottom: helpers (FFT size, the fast and the reference bidirectional convolution,
positional features), sub-blocks (sine activation, decay modulation, implicit filter), the
operator, the block.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from scfmbench import InputError

# ---------------------------------------------------------------------------------------------
# helpers


def next_fast_len(n: int) -> int:
    """Smallest ``2^a 3^b 5^c >= n``: a size pocketfft (CPU) and cuFFT both transform quickly.

    Up to ~2x smaller than the next power of two (65537 -> 65610 instead of 131072).
    """
    if n < 1:
        raise ValueError(f"FFT length must be >= 1, got {n}")
    best = 1 << (n - 1).bit_length()  # the next power of two always qualifies
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_size(length: int) -> int:
    """FFT size for a two-sided convolution of ``length`` inputs with ``2*length - 1`` taps.

    The full linear convolution has ``3L - 2`` terms, but only the centred L (indices ``L-1 ..
    2L-2``) are kept. A circular convolution of size N adds term ``n + N`` onto term ``n``; for
    every kept ``n >= L-1`` that term lies past the last one (``3L-3``) as soon as ``N >= 2L-1``.
    So ``2L - 1``, rounded up to a fast size, is alias-free for the outputs we keep and ~1.5x
    cheaper than ``3L - 2``; ``tests/test_hyena.py`` checks it against the direct sum.
    """
    return next_fast_len(2 * length - 1)


def bidirectional_fftconv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """``y[b, c, i] = sum_j k[c, i - j + L - 1] * u[b, c, j] + D[c] * u[b, c, i]`` by FFT, O(L log L).

    u: (B, C, L); k: (C, 2L-1), tap ``L - 1`` is lag 0; D: (C,). Returns (B, C, L) in u's dtype.
    The transform runs in at least float32 (cuFFT has no fast half-precision path for these sizes).
    """
    L = u.shape[-1]
    if k.shape[-1] != 2 * L - 1:
        raise InputError(f"two-sided filter needs 2L-1 = {2 * L - 1} taps for L = {L}, got {k.shape[-1]}")
    dtype = torch.promote_types(u.dtype, torch.float32)
    n = fft_size(L)
    k_f = torch.fft.rfft(k.to(dtype), n=n)  # (C, n//2+1)
    u_f = torch.fft.rfft(u.to(dtype), n=n)  # (B, C, n//2+1)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., L - 1 : 2 * L - 1]  # (B, C, L): the centred outputs
    return (y + u * D[:, None]).to(u.dtype)


def bidirectional_conv_ref(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """The same two-sided convolution as a direct O(L^2) sum through an explicit Toeplitz matrix.

    Slow and obviously correct: the reference :func:`bidirectional_fftconv` is tested against.
    """
    L = u.shape[-1]
    pos = torch.arange(L, device=u.device)
    lag = pos[:, None] - pos[None, :]  # (L_out, L_in): lag i - j
    T = k[:, lag + L - 1]  # (C, L_out, L_in)
    return torch.einsum("cij,bcj->bci", T, u) + u * D[:, None]


def positional_features(
    length: int, *, emb_dim: int, l_max: int, device=None, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of the lags ``-(L-1) .. (L-1)`` that the implicit filter MLP reads.

    Returns ``z`` (2L-1, emb_dim) = [t, cos(f w), -sin(f w)] (real and imaginary parts of
    ``exp(-i f w)`` as in safari's ``PositionalEmbedding``) and ``t`` (2L-1, 1), with
    ``t = lag / l_max`` in [-1, 1], ``w = 2 pi lag / l_max`` and ``(emb_dim - 1) / 2`` bands
    ``f = linspace(1e-4, bands - 1)``. Normalising by the fixed ``l_max`` (not the current L) keeps
    the filter at a given lag independent of the input length, so right-padding changes nothing.
    Cosines are even and sines odd in the lag, so the MLP can make the filter asymmetric.
    """
    bands = (emb_dim - 1) // 2
    lag = torch.arange(-(length - 1), length, device=device, dtype=dtype)[:, None]  # (K, 1)
    t = lag / l_max
    f = torch.linspace(1e-4, bands - 1, bands, device=device, dtype=dtype)[None, :]  # (1, bands)
    w = 2 * math.pi * lag / l_max
    z = torch.cat([t, torch.cos(f * w), -torch.sin(f * w)], dim=-1)  # (K, emb_dim)
    return z, t


# ---------------------------------------------------------------------------------------------
# sub-blocks


class Sin(nn.Module):
    """``sin(freq * x)`` with a learned frequency per unit (safari ``Sin``; one per layer here)."""

    def __init__(self, dim: int, *, w: float = 1.0):
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), float(w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ExponentialModulation(nn.Module):
    """Multiply a filter by ``exp(-|t| * |delta_c|) + shift``: channel c decays to ``target`` at
    ``|t| = pct_c`` with ``pct_c`` spread from ``fast_decay_pct`` to ``slow_decay_pct`` (safari
    defaults). ``|t|``, not t: the two-sided filter decays the same way to either side of lag 0.
    The rates are fixed (a buffer), as in safari (``modulation_lr=0``).
    """

    def __init__(
        self,
        channels: int,
        *,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
        shift: float = 0.0,
    ):
        super().__init__()
        max_decay = math.log(target) / fast_decay_pct
        min_decay = math.log(target) / slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, channels))  # (C,)
        self.shift = shift

    def envelope(self, t: torch.Tensor) -> torch.Tensor:
        """(K, 1) normalised lags -> (K, C) decay factors."""
        return torch.exp(-t.abs() * self.deltas.abs()) + self.shift

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return h * self.envelope(t)  # (K, C)


class HyenaFilter(nn.Module):
    """Implicit two-sided long filter: lag features -> sine MLP (width ``filter_order``) -> decay.

    ``forward(L)`` returns the taps ``k`` (C, 2L-1) for inputs of length ``L <= l_max``; ``bias``
    (C,) is the per-channel skip term D of the convolution.
    """

    def __init__(
        self,
        channels: int,
        *,
        l_max: int,
        filter_order: int = 64,
        emb_dim: int = 5,
        n_inner: int = 2,
        w: float = 1.0,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
    ):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise InputError(f"filter emb_dim must be odd and >= 3 (t, cos and sin bands), got {emb_dim}")
        self.channels, self.l_max, self.emb_dim = channels, l_max, emb_dim
        layers: list[nn.Module] = [nn.Linear(emb_dim, filter_order), Sin(filter_order, w=w)]
        for _ in range(n_inner):
            layers += [nn.Linear(filter_order, filter_order), Sin(filter_order, w=w)]
        layers.append(nn.Linear(filter_order, channels, bias=False))
        self.mlp = nn.Sequential(*layers)
        self.modulation = ExponentialModulation(
            channels, fast_decay_pct=fast_decay_pct, slow_decay_pct=slow_decay_pct, target=target
        )
        self.bias = nn.Parameter(torch.randn(channels))

    def forward(self, length: int) -> torch.Tensor:
        if length > self.l_max:
            raise InputError(
                f"input of length {length} is longer than the filter's l_max = {self.l_max}; raise max_len"
            )
        z, t = positional_features(
            length, emb_dim=self.emb_dim, l_max=self.l_max, device=self.bias.device, dtype=self.bias.dtype
        )
        h = self.mlp(z)  # (K, C)
        return rearrange(self.modulation(t, h), "k c -> c k")

    def flops(self, length: int) -> int:
        """Forward FLOPs to generate the taps for one length (independent of the batch)."""
        K = 2 * length - 1
        linears = [m for m in self.mlp if isinstance(m, nn.Linear)]
        mlp = sum(2 * m.in_features * m.out_features for m in linears)
        return K * (mlp + 2 * self.channels)  # + modulation (exp and multiply)


# ---------------------------------------------------------------------------------------------
# operator and block


class HyenaOperator(nn.Module):
    """Bidirectional Hyena operator of ``order`` N, in safari's arrangement.

    Input projection to (N+1) streams of width D, a non-causal depthwise short convolution (kernel
    3, padding 1), then ``v <- h_i * (x_i . v)`` for the N-1 long filters, and ``y = x_0 . v``,
    output projection. Order 2 (the default): ``y = x_0 . (h * (x_1 . v))`` -- two gates around
    one long convolution, as safari implements it (N+1 projections, N-1 filters).

    ``pad_mask`` (B, L), True = padding: padded positions are zeroed before the short and the long
    convolutions, so with right-padding the real positions see exactly what they would unpadded.
    """

    def __init__(
        self,
        d_model: int,
        *,
        l_max: int,
        order: int = 2,
        filter_order: int = 64,
        filter_emb_dim: int = 5,
        short_filter_size: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if order < 2:
            raise InputError(f"Hyena order must be >= 2, got {order}")
        if short_filter_size % 2 == 0:
            raise InputError(f"short_filter_size must be odd to be centred (non-causal), got {short_filter_size}")
        self.d_model, self.order = d_model, order
        width = (order + 1) * d_model
        self.in_proj = nn.Linear(d_model, width)
        self.short_conv = nn.Conv1d(width, width, short_filter_size, padding=short_filter_size // 2, groups=width)
        self.filter = HyenaFilter(d_model * (order - 1), l_max=l_max, filter_order=filter_order, emb_dim=filter_emb_dim)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        L = x.shape[1]
        keep = None if pad_mask is None else (~pad_mask)[:, None, :].to(x.dtype)  # (B, 1, L)
        u = rearrange(self.in_proj(x), "b l w -> b w l")  # (B, (N+1)D, L)
        if keep is not None:
            u = u * keep
        u = self.short_conv(u)
        if keep is not None:
            u = u * keep  # the conv's bias and neighbours must not leak into padded positions
        *gates, v = u.split(self.d_model, dim=1)  # N gates and v, each (B, D, L)
        k = rearrange(self.filter(L), "(o d) k -> o d k", o=self.order - 1)  # (N-1, D, 2L-1)
        D = rearrange(self.filter.bias, "(o d) -> o d", o=self.order - 1)
        for i, gate in enumerate(reversed(gates[1:])):
            v = bidirectional_fftconv(self.dropout(v * gate), k[i], D[i])
        return self.out_proj(rearrange(v * gates[0], "b d l -> b l d"))

    def flops(self, length: int, *, batch: int = 1) -> float:
        """Forward FLOPs per sequence; the filter generation is shared by the batch.

        projections ``2 L D (N+1) D + 2 L D^2``; short conv ``2 s L (N+1) D``; gates ``N L D``;
        per long filter and channel ``3 * 2.5 F log2 F`` (rfft of input and taps, irfft; a real
        FFT of size F is ~2.5 F log2 F) ``+ 3F`` (complex product) ``+ 2L`` (D*u skip), with
        ``F = fft_size(L)``; plus the filter MLP (:meth:`HyenaFilter.flops`) divided by ``batch``.
        The taps' FFT is counted per sequence, a slight overcount for batches.
        """
        L, d, N = length, self.d_model, self.order
        s = self.short_conv.kernel_size[0]
        F = fft_size(L)
        proj = 2 * L * d * (N + 1) * d + 2 * L * d * d
        short = 2 * s * L * (N + 1) * d
        gates = N * L * d
        long = (N - 1) * d * (3 * 2.5 * F * math.log2(F) + 3 * F + 2 * L)
        return proj + short + gates + long + self.filter.flops(L) / batch


class HyenaBlock(nn.Module):
    """Pre-norm residual block: ``x + mixer(norm(x))``, then ``x + mlp(norm(x))``.

    The mixer is a :class:`HyenaOperator` unless ``mixer`` is given: the benchmark puts a full
    attention module there, so that only the token mixer differs between the two blocks. A given
    mixer is called as ``mixer(x, pad_mask)`` (``MultiHeadAttention`` takes ``key_padding_mask``
    second, with the same meaning: True = padding).
    """

    def __init__(
        self,
        d_model: int,
        *,
        l_max: int | None = None,
        order: int = 2,
        filter_order: int = 64,
        filter_emb_dim: int = 5,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        mixer: nn.Module | None = None,
    ):
        super().__init__()
        if mixer is None:
            if l_max is None:
                raise InputError("HyenaBlock needs l_max (the longest input) to build its Hyena operator")
            mixer = HyenaOperator(
                d_model,
                l_max=l_max,
                order=order,
                filter_order=filter_order,
                filter_emb_dim=filter_emb_dim,
                dropout=dropout,
            )
        self.norm1 = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(), nn.Linear(mlp_ratio * d_model, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.mixer(self.norm1(x), pad_mask))
        x = x + self.dropout(self.mlp(self.norm2(x)))
        return x

    def flops(self, length: int, *, batch: int = 1) -> float:
        """Forward FLOPs per sequence: the mixer's plus the MLP's ``4 L D (r D)`` (norms ignored)."""
        hidden = self.mlp[0].out_features
        return self.mixer.flops(length, batch=batch) + 4 * length * self.mlp[0].in_features * hidden
