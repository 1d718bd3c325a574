"""GenoHoption: attention restricted to a graph, then graph diffusion by power iteration.

Paper: ``papers/002_4e9e4721eb21c4ce.txt`` section III-B (Eq. 4-11); official code
``Bunnybeibei/GenoHoption`` ``GenoHoption/gn_attn.py`` (DGL). Per edge j -> i the score is
q_i . k_j / sqrt(D), normalised by a softmax over i's incoming edges (Eq. 4), giving a sparse
row-stochastic A. Diffusion then spreads V over further hops without new parameters:

- PPR ("-p", Eq. 6 and 8):  V_0 = V;  V_k = (1 - alpha) A V_{k-1} + alpha V,  output V_K.
  Converges to alpha (I - (1 - alpha) A)^-1 V.
- heat ("-h", Eq. 7 and 10): V_0 = e^-t V;  V_k = (t / k) A V_{k-1},  output sum_{k<K} V_k
  (K terms, as the official loop ``for k in range(1, iter_num)``). Converges to e^-t exp(tA) V.
- none: one hop, A V (the paper's "w/o iter" ablation: alpha = 0, K = 1).

Defaults alpha = 0.25, t = 5, K = 6 (REFERENCE.md section 1). Attention dropout (``dropout``;
:class:`~scfmbench.models.attention.base.MultiHeadAttention` sets it to the model's dropout unless
the kernel config does) acts where the official code has it: on the edge weights, and on the node
states after every PPR step (then the recursion runs step by step in training) and after the heat
sum or the single hop. Sparse
machinery: ``sparse.py`` (first-order autograd only); the slow, obviously correct reference
(dense masked softmax and explicit matrix powers) is :func:`dense_reference`. Tokens with no
incoming edge (padding) get c_0 V, i.e. alpha V (PPR), e^-t V (heat) or 0 (one hop).

The same class, with a fixed pattern built from L, is the Longformer, BigBird and Diffuser
baseline (``longformer.py``, ``bigbird.py``, ``diffuser.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from scfmbench import InputError
from scfmbench.models.attention.base import AttentionKernel, register_kernel
from scfmbench.models.attention.edges import EdgePattern
from scfmbench.models.attention.sparse import flat_heads, head_scores, polynomial, row_softmax, unflat_heads

DIFFUSIONS = ("ppr", "heat", "none")


def diffuse(attend, v: torch.Tensor, *, diffusion: str, alpha: float, t: float, k: int) -> torch.Tensor:
    """The iterations as the paper writes them, given ``attend(x) = A x`` (used by the slow
    reference; the fast path applies the equal polynomial of :func:`diffusion_coefficients`)."""
    if diffusion == "none":
        return attend(v)
    if diffusion == "ppr":
        h = v
        for _ in range(k):
            h = (1.0 - alpha) * attend(h) + alpha * v
        return h
    if diffusion == "heat":
        h = math.exp(-t) * v
        out = h
        for step in range(1, k):
            h = (t / step) * attend(h)
            out = out + h
        return out
    raise InputError(f"diffusion must be one of {DIFFUSIONS}, got {diffusion!r}")


def diffusion_coefficients(diffusion: str, *, alpha: float, t: float, k: int) -> list[float]:
    """c_0 .. c_m with output = sum_j c_j A^j V, equal to the iterations above.

    PPR after K steps: sum_{j<K} alpha (1 - alpha)^j A^j V + (1 - alpha)^K A^K V (paper Eq. 9).
    Heat with K terms: sum_{j<K} e^-t t^j / j! A^j V (Eq. 11). One hop: A V. The fast path applies
    the polynomial to V through unscaled powers A^j V, which stay bounded (A is row-stochastic).
    """
    if diffusion == "none":
        return [0.0, 1.0]
    if diffusion == "ppr":
        return [alpha * (1.0 - alpha) ** j for j in range(k)] + [(1.0 - alpha) ** k]
    if diffusion == "heat":
        coeffs = [math.exp(-t)]
        for j in range(1, k):  # t^j / j! by recurrence: no overflow for large K
            coeffs.append(coeffs[-1] * t / j)
        return coeffs if k else [0.0]
    raise InputError(f"diffusion must be one of {DIFFUSIONS}, got {diffusion!r}")


def dense_reference(
    q, k, v, allowed: torch.Tensor, *, diffusion: str = "ppr", alpha: float = 0.25, t: float = 5.0, steps: int = 6
) -> torch.Tensor:
    """Slow reference: dense scores masked to ``allowed`` (B, L, L), softmax, explicit powers.

    Rows with no allowed key get an all-zero attention row (the sparse kernels have no edge there).
    """
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    attn = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # (B, H, L, L)
    return diffuse(lambda x: attn @ x, v, diffusion=diffusion, alpha=alpha, t=t, k=steps)


@register_kernel("genohoption")
class GraphDiffusionAttention(AttentionKernel):
    """Sparse attention on ``edges`` followed by PPR / heat diffusion (or one hop).

    Parameters
    ----------
    diffusion
        "ppr", "heat" or "none" (one hop).
    alpha
        PPR teleport probability.
    t
        Heat-kernel time.
    k
        Power-iteration steps (PPR) or number of series terms (heat).
    dropout
        Attention dropout (training only) on the edge weights and on the node states after
        every PPR step / after the heat sum or the hop, as GenoHoption's ``gn_attn.py``.
    """

    needs_edges = True

    def __init__(
        self, *, diffusion: str = "ppr", alpha: float = 0.25, t: float = 5.0, k: int = 6, dropout: float = 0.0
    ):
        super().__init__()
        if diffusion not in DIFFUSIONS:
            raise InputError(f"diffusion must be one of {DIFFUSIONS}, got {diffusion!r}")
        if not 0.0 <= alpha <= 1.0 or k < 0 or t < 0:
            raise InputError(f"need 0 <= alpha <= 1, k >= 0, t >= 0; got alpha={alpha}, k={k}, t={t}")
        self.diffusion, self.alpha, self.t, self.k, self.dropout = diffusion, alpha, t, k, dropout

    def extra_repr(self) -> str:
        return f"diffusion={self.diffusion!r}, alpha={self.alpha}, t={self.t}, k={self.k}"

    def default_pattern(self, L: int, device) -> EdgePattern | None:
        """The pattern used when ``edges`` is None; GenoHoption needs a gene graph, so None."""
        return None

    def pattern(self, L: int, edges: EdgePattern | None, device) -> EdgePattern:
        """The edge pattern a forward with these arguments runs on (tests compare against it)."""
        if edges is None:
            edges = self.default_pattern(L, device)
            if edges is None:
                raise InputError(
                    f"attention kernel {self.name!r} needs an edge pattern (edges=...), e.g. from graph_pattern()"
                )
        if edges.n_nodes != L:
            raise InputError(f"edge pattern is for L={edges.n_nodes}, inputs have L={L}")
        if edges.src.device != torch.device(device):
            edges = edges.to(device)
        return edges

    def forward(self, q, k, v, key_padding_mask=None, edges=None):
        with torch.autocast(q.device.type, enabled=False):  # under mixed precision: the sparse products stay float32
            return self._forward(q, k, v, key_padding_mask, edges)

    def _forward(self, q, k, v, key_padding_mask, edges):
        B, H, L, D = q.shape
        structure = self.pattern(L, edges, q.device).compile(key_padding_mask, H, batch_size=B)
        dtype = q.dtype if q.dtype in (torch.float32, torch.float64) else torch.float32  # sparse kernels: fp32/fp64
        # q, k, v are flattened head-major to (H B L, D) (see sparse.py); q and k inside head_scores
        attn = row_softmax(
            structure, head_scores(structure, q, k, scale=D**-0.5, dtype=dtype)
        )  # (H * nnz,), rows sum to 1
        # GenoHoption gn_attn.py: dropout on the edge weights, then on the node states after every
        # PPR step and after the heat sum (one hop: PPR with K 1, alpha 0, the window baselines)
        attn = F.dropout(attn, self.dropout, self.training)
        x = flat_heads(v, dtype)
        if self.training and self.dropout > 0 and self.diffusion == "ppr":  # dropout inside the recursion: step by step
            out = x
            for _ in range(self.k):
                out = F.dropout(
                    polynomial(structure, attn, out, [0.0, 1.0 - self.alpha]) + self.alpha * x, self.dropout, True
                )
        else:
            out = polynomial(
                structure, attn, x, diffusion_coefficients(self.diffusion, alpha=self.alpha, t=self.t, k=self.k)
            )
            if self.diffusion != "ppr":
                out = F.dropout(out, self.dropout, self.training)
        return unflat_heads(out, B, H).to(q.dtype)  # (B, H, L, D)


@register_kernel("genohoption-p")
class GenoHoptionP(GraphDiffusionAttention):
    """GenoHoption-p: PPR diffusion, alpha 0.25, K 6."""

    def __init__(self, *, alpha: float = 0.25, k: int = 6, dropout: float = 0.0):
        super().__init__(diffusion="ppr", alpha=alpha, k=k, dropout=dropout)


@register_kernel("genohoption-h")
class GenoHoptionH(GraphDiffusionAttention):
    """GenoHoption-h: heat-kernel diffusion, t 5, K 6 terms."""

    def __init__(self, *, t: float = 5.0, k: int = 6, dropout: float = 0.0):
        super().__init__(diffusion="heat", t=t, k=k, dropout=dropout)


@register_kernel("onehop")
class OneHop(GraphDiffusionAttention):
    """Attention masked to the graph, no diffusion (the paper's "w/o iter" ablation)."""

    def __init__(self, *, dropout: float = 0.0):
        super().__init__(diffusion="none", k=1, dropout=dropout)
