"""A GAT-style layer on an explicit K-hop edge list: GenoHoption's in-layer receptive field, paid
for with edges.

GenoHoption (``papers/002_4e9e4721eb21c4ce.txt``, Fig. 4c) compares its memory with a graph
attention network whose single layer sees as far as K diffusion steps do: every node reachable in
at most K hops of the cell graph. A GAT has no diffusion, so those K-hop edges must exist as an
edge list; :func:`khop_edges` materialises them and :class:`GATLayer` runs one hop of attention
over them. With the CLS token joined to every gene (as in GenoHoption's graphs) two hops already
reach the whole cell, and without it a mean degree of 30 does within three, so at K = 6 the edge
list holds ~L^2 edges per cell: that quadratic edge list is what the comparison is about.

Scores are GAT's additive attention (Velickovic et al. 2018, Eq. 3; PyG ``GATConv``):
``e_ij = LeakyReLU(a_dst . q_i + a_src . k_j)``, softmax over i's incoming edges, output
``sum_j alpha_ij v_j``. To share the kernels' (B, H, L, D) q/k/v interface the query side of the
score reads q and the key side k (GAT uses one projection W h for both and for the message).

Written here in plain torch (gather, scatter-max, ``index_add``) rather than with torch-geometric:
its pure-Python parts work on these machines, but ``GATConv`` adds projections, self-loop
handling and an optional C++ scatter backend that the measurement does not need, and the
message-passing form is a dozen lines. Like PyG's ``message()`` it materialises one (E, H, D)
message tensor; DGL's fused ``u_mul_e_sum`` avoids that but still keeps (E, H) scores, so either
way memory grows with the O(L^2) edge list.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from scfmbench import InputError
from scfmbench.models.attention.edges import EdgePattern


def khop_edges(pattern: EdgePattern, hops: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every edge j -> i such that i is reachable from j in 1..``hops`` steps of ``pattern``.

    Returns flat ``(src, dst)`` int64 node indices ``b * L + position`` over the batch, sorted by
    (dst, src), contiguous, on the pattern's device. Reachability per cell: R_1 = A,
    R_k = R_{k-1} | A R_{k-1} (A[i, j] = edge j -> i), stopping early once a hop adds nothing.

    Each row of R is a bitset (``numpy.packbits``), so A R is, per destination i, the bitwise OR
    of the rows of i's sources: one gather and one ``bitwise_or.reduceat`` per hop over
    E x L / 8 bytes, instead of a sparse x dense float product over E x L multiply-adds.
    """
    if hops < 1:
        raise InputError(f"hops must be >= 1, got {hops}")
    L, device, B = pattern.n_nodes, pattern.src.device, pattern.batch_size
    src_all, dst_all, valid_all = (t.detach().cpu().numpy() for t in (pattern.src, pattern.dst, pattern.valid))
    flat = []  # per cell: flat indices i * L + j of reach[i, j], ascending = sorted by (dst, src)
    for b in range(B):
        keep = valid_all[b]
        bits = _reach_bits(src_all[b][keep], dst_all[b][keep], L, hops)
        flat.append(np.flatnonzero(np.unpackbits(bits, axis=1, count=L)))  # int64, contiguous
        del bits
    n = sum(k.size for k in flat)
    if B == 1:  # no copy: the flat index array becomes src in place
        dst = flat[0] // L
        src = np.remainder(flat[0], L, out=flat[0])
    else:
        src, dst = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        offset = 0
        for b, k in enumerate(flat):
            part = slice(offset, offset + k.size)
            np.floor_divide(k, L, out=dst[part])
            np.remainder(k, L, out=src[part])
            dst[part] += b * L
            src[part] += b * L
            offset += k.size
            flat[b] = None
    return torch.from_numpy(src).to(device), torch.from_numpy(dst).to(device)


def _reach_bits(src: np.ndarray, dst: np.ndarray, L: int, hops: int, *, chunk_bytes: int = 2**16) -> np.ndarray:
    """(L, ceil(L / 8)) uint8, row i = the bitset of the nodes j from which i is reachable in
    1..``hops`` steps over the edges src -> dst (bit order of ``numpy.packbits``, big-endian).

    The rows gathered per hop go through one reused buffer of about ``chunk_bytes``, so a hop
    costs memory bandwidth, not fresh pages."""
    width = (L + 7) // 8
    bits = np.zeros((L, width), dtype=np.uint8)
    np.bitwise_or.at(bits, (dst, src >> 3), (128 >> (src & 7)).astype(np.uint8))
    order = np.lexsort((src, dst))  # edges grouped by destination
    src, dst = src[order], dst[order]
    rows, starts = np.unique(dst, return_index=True)  # destinations with in-edges, first edge of each
    ends = np.append(starts[1:], dst.size)
    per_chunk = max(1, chunk_bytes // max(width, 1))  # gathered rows held at once
    gathered = np.empty((0, width), dtype=np.uint8)
    for _ in range(hops - 1):
        grown = bits.copy()
        r0 = 0
        while r0 < rows.size:  # destinations r0:r1, whose edges fit in one chunk (at least one row)
            r1 = max(r0 + 1, int(np.searchsorted(ends, starts[r0] + per_chunk, side="right")))
            e0, e1 = starts[r0], ends[r1 - 1]
            if gathered.shape[0] < e1 - e0:
                gathered = np.empty((e1 - e0, width), dtype=np.uint8)
            buf = gathered[: e1 - e0]
            np.take(bits, src[e0:e1], axis=0, out=buf)
            grown[rows[r0:r1]] |= np.bitwise_or.reduceat(buf, starts[r0:r1] - e0, axis=0)
            r0 = r1
        if np.array_equal(grown, bits):
            break
        bits = grown
    return bits


class GATLayer(nn.Module):
    """One hop of GAT attention over an explicit edge list; q, k, v, out: (B, H, L, D).

    ``edges`` = (src, dst) flat indices ``b * L + position`` (from :func:`khop_edges`). A node
    without incoming edges gets 0.
    """

    def __init__(self, n_heads: int, head_dim: int, *, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self.att_src = nn.Parameter(torch.empty(n_heads, head_dim))
        self.att_dst = nn.Parameter(torch.empty(n_heads, head_dim))
        nn.init.xavier_uniform_(self.att_src)  # as PyG GATConv's glorot init
        nn.init.xavier_uniform_(self.att_dst)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, edges: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        B, H, L, D = q.shape
        src, dst = edges
        score_dst = (rearrange(q, "b h l d -> (b l) h d") * self.att_dst).sum(-1)  # (N, H), N = B * L
        score_src = (rearrange(k, "b h l d -> (b l) h d") * self.att_src).sum(-1)
        e = F.leaky_relu(score_src[src] + score_dst[dst], self.negative_slope)  # (E, H)
        # softmax over each destination's incoming edges; the max only stabilises (no gradient)
        shift = e.new_full((B * L, H), float("-inf")).scatter_reduce_(0, dst[:, None].expand(-1, H), e.detach(), "amax")
        p = torch.exp(e - shift[dst])
        alpha = p / p.new_zeros(B * L, H).index_add_(0, dst, p)[dst]
        messages = alpha[..., None] * rearrange(v, "b h l d -> (b l) h d")[src]  # (E, H, D), as PyG
        out = v.new_zeros(B * L, H, D).index_add_(0, dst, messages)
        return rearrange(out, "(b l) h d -> b h l d", b=B)


def gat_dense_reference(
    layer: GATLayer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """Slow reference: dense additive scores masked by ``allowed`` (B, L, L) [i, j] = edge j -> i."""
    score_dst = torch.einsum("bhld,hd->bhl", q, layer.att_dst)
    score_src = torch.einsum("bhld,hd->bhl", k, layer.att_src)
    e = F.leaky_relu(score_dst[..., :, None] + score_src[..., None, :], layer.negative_slope)  # (B, H, L, L)
    e = e.masked_fill(~allowed[:, None], float("-inf"))
    alpha = torch.nan_to_num(torch.softmax(e, dim=-1))  # rows without edges -> 0
    return alpha @ v
