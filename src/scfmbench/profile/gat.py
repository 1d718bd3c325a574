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

import warnings

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from scfmbench import InputError
from scfmbench.models.attention.edges import EdgePattern


def khop_edges(pattern: EdgePattern, hops: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every edge j -> i such that i is reachable from j in 1..``hops`` steps of ``pattern``.

    Returns flat ``(src, dst)`` int64 node indices ``b * L + position`` over the batch, sorted by
    (dst, src). Reachability per cell: R_1 = A, R_k = R_{k-1} | A R_{k-1} (A[i, j] = edge j -> i),
    one sparse x dense product per hop, stopping early once a hop adds nothing.
    """
    if hops < 1:
        raise InputError(f"hops must be >= 1, got {hops}")
    L, device = pattern.n_nodes, pattern.src.device
    srcs, dsts = [], []
    src_all, dst_all, valid_all = pattern.src, pattern.dst, pattern.valid
    for b in range(pattern.batch_size):
        keep = valid_all[b]
        s, d = src_all[b][keep], dst_all[b][keep]
        A = torch.sparse_coo_tensor(torch.stack([d, s]), torch.ones(s.numel(), device=device), (L, L), check_invariants=True)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": sparse @ dense is stable
            warnings.simplefilter("ignore", UserWarning)
            A = A.coalesce().to_sparse_csr()
        reach = A.to_dense() > 0  # (L, L) bool, reach[i, j]: j reaches i
        for _ in range(hops - 1):
            grown = reach | (torch.sparse.mm(A, reach.float()) > 0)
            if torch.equal(grown, reach):
                break
            reach = grown
        i, j = reach.nonzero(as_tuple=True)  # row-major: sorted by (dst, src)
        del reach
        srcs.append(j + b * L)
        dsts.append(i + b * L)
    return torch.cat(srcs), torch.cat(dsts)


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

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, edges: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
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


def gat_dense_reference(layer: GATLayer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Slow reference: dense additive scores masked by ``allowed`` (B, L, L) [i, j] = edge j -> i."""
    score_dst = torch.einsum("bhld,hd->bhl", q, layer.att_dst)
    score_src = torch.einsum("bhld,hd->bhl", k, layer.att_src)
    e = F.leaky_relu(score_dst[..., :, None] + score_src[..., None, :], layer.negative_slope)  # (B, H, L, L)
    e = e.masked_fill(~allowed[:, None], float("-inf"))
    alpha = torch.nan_to_num(torch.softmax(e, dim=-1))  # rows without edges -> 0
    return alpha @ v
