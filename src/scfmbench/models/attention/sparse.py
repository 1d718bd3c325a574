"""Sparse attention primitives on a block-diagonal CSR matrix: SDDMM, row softmax, A-polynomials.

Layout. Queries, keys and values of all heads and cells are flattened head-major into one
(N, D) matrix, N = H * B * L, row ``(h * B + b) * L + i``. The attention matrix of all heads and
cells is then one (N, N) block-diagonal sparse matrix whose block (h, b) holds cell b's edges.
Its CSR form is the cell-level edge list (sorted by destination) repeated H times with offsets,
so it is built without a sort over E * H entries; the transpose (for the backward pass) comes
from the pattern's precomputed source order (one stable argsort over the E cell-level edges for
a pattern without one). Values of all heads lie head-major in one (H * nnz,) vector.

Why this layout (measured on 2 shared CPU cores, L = 4096, B = 8, H = 4, D = 32, degree 30,
3.9 M edge-heads): gathering one (E * H, D) row block per edge and reducing it took ~4.9 s per
SDDMM; ``torch.sparse.sampled_addmm`` on the CSR matrix takes ~0.1 s and ``torch.sparse.mm``
(CSR @ dense, int32 indices; int64 is ~2x slower) ~0.1 s per propagation step. Nothing of size
(E * H, D) is ever materialised: the largest per-edge tensors are (E * H,) values. A CSC view of
the same arrays would give the transpose for free, but CPU ``mm`` converts CSC to CSR on every
call (~15x slower), hence the explicit transposed arrays.

Autograd. The primitives are ``torch.autograd.Function`` s whose backward passes are the same
primitives on the transposed structure (SDDMM and SpMM are each other's adjoints):

- ``sddmm``:  s_e = a[dst_e] . b[src_e];  da = S b,  db = S^T a        (S = sparse(ds))
- ``polynomial``: y = sum_k c_k A^k x (the diffusion; one hop is c = [0, 1]);
  dx by the adjoint recursion with A^T, dA by one in-place SDDMM per power (see ``_Polynomial``)
- ``row_softmax``: softmax of the values of each CSR row; ds = a * (g - rowsum(a * g)).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class CsrStructure:
    """Sparsity structure of the (N, N) block-diagonal attention matrix, N = H * B * L.

    ``row``/``perm_t`` are cell-level (length ``nnz`` = kept edges over all cells); ``crow``,
    ``col``, ``crow_t``, ``col_t`` are the head-expanded CSR arrays of the matrix and of its
    transpose (int32 when they fit: ``torch.sparse.mm`` runs ~2x faster on CPU).
    """

    n_nodes: int  # L
    batch: int  # B
    n_heads: int  # H
    nnz: int  # kept edges over all cells, one head
    row: torch.Tensor  # (nnz,) int64 destination b * L + i of each edge, non-decreasing
    perm_t: torch.Tensor  # (nnz,) int64 edge order of the transpose (stable sort by source)
    crow: torch.Tensor  # (N + 1,)
    col: torch.Tensor  # (H * nnz,)
    crow_t: torch.Tensor
    col_t: torch.Tensor

    @property
    def size(self) -> int:
        return self.n_heads * self.batch * self.n_nodes

    @classmethod
    def from_edges(
        cls,
        src: torch.Tensor,
        dst: torch.Tensor,
        keep: torch.Tensor,
        *,
        n_nodes: int,
        n_heads: int,
        src_order: torch.Tensor | None = None,
    ) -> CsrStructure:
        """From (B, E) edge lists, a (B, E) keep mask and optionally the (B, E) slot order by source.

        Fast path (canonical patterns): no sort at all; rows dst-sorted per cell give the CSR order
        directly and ``src_order`` gives the transpose's order.
        """
        B, E = src.shape
        L, H = n_nodes, n_heads
        nb = B * L
        device = src.device
        # Every (nnz,) int64 array below is as large as the structure's own arrays, so the steps
        # are ordered to hold few at once (in place where possible, ``del`` when done).
        keep_flat = keep.reshape(-1)
        all_kept = bool(keep_flat.all())  # no padding, no empty slot: kept slot = slot
        counts = keep.sum(1)  # (B,) kept edges per cell
        nnz = int(counts.sum())
        base = torch.repeat_interleave(
            torch.arange(B, device=device) * L, counts, output_size=nnz
        )  # b * L per kept edge
        kept = None if all_kept else keep_flat.nonzero().squeeze(1)  # (nnz,) slots in order: sorted by (b, dst)
        shared = [t.stride(0) == 0 or B == 1 for t in (dst, src)]  # one row for every cell (window, BigBird patterns)
        in_row = kept.remainder(E) if any(shared) and kept is not None else None

        # (ruff reads the closure's names as undefined because of the ``del`` below; both calls
        # run before it.)
        def gather(t: torch.Tensor, shared: bool) -> torch.Tensor:  # t[b, slot] + b * L at the kept slots
            if kept is None:  # noqa: F821
                out = t[0].repeat(B) if shared else t.reshape(-1).clone()
            else:
                out = t[0].index_select(0, in_row) if shared else t.reshape(-1).index_select(0, kept)  # noqa: F821
            return out.add_(base)  # noqa: F821

        gdst, gsrc = gather(dst, shared[0]), gather(src, shared[1])
        del base, in_row
        if nnz > 1 and not bool((gdst[1:] >= gdst[:-1]).all()):  # non-canonical input
            order = torch.argsort(gdst, stable=True)
            gdst, gsrc, src_order = gdst[order], gsrc[order], None
            del order
        if src_order is not None:  # transpose order without a sort: kept slots, in source order
            by_src = (src_order + torch.arange(B, device=device)[:, None] * E).reshape(-1)  # slots in source order
            if all_kept:
                perm_t = by_src  # slot = index among kept edges
            else:
                by_src = by_src.index_select(0, keep_flat.index_select(0, by_src).nonzero().squeeze(1))
                compact = torch.cumsum(keep_flat, 0).sub_(1)  # slot -> index among kept edges
                perm_t = compact.index_select(0, by_src)
                del compact
            del by_src
        else:
            perm_t = torch.argsort(gsrc, stable=True)
        del kept
        idx = torch.int32 if max(H * nb, H * nnz) < 2**31 - 1 else torch.int64
        heads = torch.arange(H, device=device, dtype=idx)[:, None]
        bounds = torch.arange(nb + 1, device=device)

        def crow_of(sorted_rows: torch.Tensor) -> torch.Tensor:
            starts = torch.searchsorted(sorted_rows, bounds).to(idx)  # (nb + 1,) row starts
            return torch.cat([(starts[:-1][None] + heads * nnz).reshape(-1), starts.new_tensor([H * nnz])])

        def col_of(cols: torch.Tensor) -> torch.Tensor:
            return (cols.to(idx)[None] + heads * nb).reshape(-1)

        crow, col = crow_of(gdst), col_of(gsrc)
        gsrc = gsrc.index_select(0, perm_t)  # sources in transposed order
        crow_t = crow_of(gsrc)
        del gsrc
        col_t = col_of(gdst.index_select(0, perm_t))
        return cls(
            n_nodes=L,
            batch=B,
            n_heads=H,
            nnz=nnz,
            row=gdst,
            perm_t=perm_t,
            crow=crow,
            col=col,
            crow_t=crow_t,
            col_t=col_t,
        )

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """(N, N) sparse CSR with ``values`` (H * nnz,) in edge order."""
        return _csr(self.crow, self.col, values, self.size)

    def matrix_t(self, values: torch.Tensor) -> torch.Tensor:
        """The transpose of ``matrix(values)``, as CSR."""
        vt = values.view(self.n_heads, self.nnz).index_select(1, self.perm_t).reshape(-1)
        return _csr(self.crow_t, self.col_t, vt, self.size)


# ---------------------------------------------------------------------------------------------
# raw (no-autograd) kernels


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta": the ops used here are stable since torch 2.0
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)


def _sddmm_raw(s: CsrStructure, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """values_e = a[row_e] . b[col_e] over the edges of ``s`` (all heads).

    Written in place into a CSR matrix on the structure's own index arrays (``out=``, beta 0 on
    zeroed values): ``sampled_addmm`` without ``out`` clones the pattern, indices included, so it
    held 4 (H * nnz,) arrays at once instead of 1 (and ran ~2x slower).
    """
    values = a.new_zeros(s.n_heads * s.nnz)
    out = s.matrix(values)
    torch.sparse.sampled_addmm(out, a, b.t(), beta=0.0, out=out)
    return values


def _spmm_into(
    out: torch.Tensor, m: torch.Tensor, x: torch.Tensor, *, beta: float = 0.0, add: torch.Tensor | None = None
) -> torch.Tensor:
    """``out <- beta * add + m @ x`` in place (``out`` may be a strided slot of a larger buffer).

    ``torch.sparse.mm`` allocates its result and then copies it once more (2x the memory of the
    result, ~2x the time on CPU); ``addmm`` with ``out=`` writes straight into the destination.
    With beta 0, ``add`` defaults to ``out`` itself and its old contents are ignored.
    """
    return torch.addmm(out if add is None else add, m, x, beta=beta, out=out)


def _spmm_raw(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return _spmm_into(x.new_empty(m.shape[0], x.shape[1]), m, x.contiguous())


# ---------------------------------------------------------------------------------------------
# autograd functions


class _SDDMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, s):
        ctx.save_for_backward(a, b)
        ctx.s = s
        return _sddmm_raw(s, a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        s = ctx.s
        g = g.contiguous()
        ga = _spmm_raw(s.matrix(g), b) if ctx.needs_input_grad[0] else None
        gb = _spmm_raw(s.matrix_t(g), a) if ctx.needs_input_grad[1] else None
        return ga, gb, None


def flat_heads(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """(B, H, L, D) -> (H * B * L, D), head-major (the layout above), in ``dtype`` if given."""
    B, H, L, D = x.shape
    return (x if dtype is None else x.to(dtype)).transpose(0, 1).reshape(H * B * L, D)


def unflat_heads(x: torch.Tensor, B: int, H: int) -> torch.Tensor:
    """(H * B * L, D) -> a (B, H, L, D) view."""
    return x.view(H, B, -1, x.shape[-1]).transpose(0, 1)


class _HeadScores(torch.autograd.Function):
    """``sddmm(s, flat(q) * scale, flat(k))`` on (B, H, L, D) q and k.

    Equal to flattening outside and calling :func:`sddmm` (same operations, same gradients), but
    it saves q and k themselves (the caller holds them anyway) instead of their head-major
    copies, and flattens again in the backward pass: two (N, D) copies fewer held from the
    forward to the backward pass.
    """

    @staticmethod
    def forward(ctx, q, k, s, scale, dtype):
        ctx.save_for_backward(q, k)
        ctx.s, ctx.scale, ctx.dtype = s, scale, dtype
        return _sddmm_raw(s, flat_heads(q, dtype) * scale, flat_heads(k, dtype))

    @staticmethod
    def backward(ctx, g):
        q, k = ctx.saved_tensors
        s, scale, dtype = ctx.s, ctx.scale, ctx.dtype
        B, H = q.shape[:2]
        g = g.contiguous()
        gq = gk = None
        if ctx.needs_input_grad[0]:
            gq = unflat_heads(_spmm_raw(s.matrix(g), flat_heads(k, dtype)) * scale, B, H).to(q.dtype)
        if ctx.needs_input_grad[1]:
            gk = unflat_heads(_spmm_raw(s.matrix_t(g), flat_heads(q, dtype) * scale), B, H).to(k.dtype)
        return gq, gk, None, None, None


class _RowSoftmax(torch.autograd.Function):
    """Softmax of each CSR row's values, one head at a time: the temporaries (row maxima and sums,
    gathered back to the edges) are one head's (nnz,), not (H * nnz,), and the same two scratch
    arrays serve every head (one allocation each per call: mid-sized arrays allocated and freed
    per head fragment the heap, and the process then holds more memory than it uses)."""

    @staticmethod
    def forward(ctx, scores, s):
        H, nnz, nb = s.n_heads, s.nnz, s.batch * s.n_nodes
        x = scores.view(H, nnz)
        a = torch.empty_like(x)
        per_row = x.new_empty(nb)  # row max, then row sum
        gathered = x.new_empty(nnz)  # row sums at the edges
        for h in range(H):  # a Python loop over the H heads only
            xh, ah = x[h], a[h]
            per_row.fill_(float("-inf")).scatter_reduce_(0, s.row, xh, "amax")
            torch.index_select(per_row, 0, s.row, out=ah)
            torch.sub(xh, ah, out=ah).exp_()  # e = exp(x - max of the row)
            per_row.zero_().index_add_(0, s.row, ah)
            ah.div_(torch.index_select(per_row, 0, s.row, out=gathered))
        a = a.reshape(-1)
        ctx.save_for_backward(a)
        ctx.s = s
        return a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        s = ctx.s
        H, nnz, nb = s.n_heads, s.nnz, s.batch * s.n_nodes
        ds = (a * g).view(H, nnz)  # a * g, then minus a * rowsum(a * g), head by head
        av = a.view(H, nnz)
        rowsum = ds.new_empty(nb)
        gathered = ds.new_empty(nnz)
        for h in range(H):
            rowsum.zero_().index_add_(0, s.row, ds[h])
            torch.index_select(rowsum, 0, s.row, out=gathered)
            ds[h].sub_(gathered.mul_(av[h]))
        return ds.reshape(-1), None


def _checkpoint_stride(m: int) -> int:
    """Keep every ``stride``-th state p_k for the backward pass (``stride = ceil(sqrt(m))``).

    The backward pass needs p_{k-1} with r_k for k = m .. 1, i.e. in reverse order, while only
    the forward recursion makes them. Keeping every state holds m (N, D) arrays from the forward
    to the backward pass; keeping p_0, p_s, p_2s, ... and recomputing one segment at a time from
    its checkpoint holds ceil(m / s) of them, and during the backward pass at most
    ceil(m / s) + s of them together with the adjoint r, for m - ceil(m / s) extra products
    (m = 6: 2 kept, at most 5 live instead of 2m = 12, 4 extra SpMMs, ~2% of a GenoHoption
    forward + backward).
    """
    return max(1, math.ceil(math.sqrt(m)))


class _Polynomial(torch.autograd.Function):
    """out = sum_k c_k A^k x for a fixed coefficient list, A = s.matrix(values).

    Forward: p_k = A p_{k-1} (p_0 = x), each product written in place (``_spmm_into``), and
    out = sum_k c_k p_k. For the backward pass it keeps the checkpoints p_0, p_s, p_2s, ... (see
    :func:`_checkpoint_stride`). Backward: the adjoint recursion r_m = c_m g,
    r_{k-1} = c_{k-1} g + A^T r_k (one ``addmm`` each; dx = r_0) and the gradient of every edge
    weight, sum_k r_k[dst] . p_{k-1}[src], accumulated in place by one SDDMM per k (beta 1 into
    the same values: no (N, m * D) stacked buffers), segment by segment from the last, each
    segment's states recomputed from its checkpoint and dropped once used.
    """

    @staticmethod
    def forward(ctx, values, x, s, coeffs):
        m = len(coeffs) - 1
        A = s.matrix(values)
        x = x.contiguous()
        out = x * coeffs[0]
        keep = bool(ctx.needs_input_grad[0]) and m > 0
        stride = _checkpoint_stride(m)
        checkpoints = [x] if keep else []  # p_0, p_stride, p_2stride, ... (k < m)
        spare = [torch.empty_like(x) for _ in range(min(m, 2))]  # p_k not kept: two buffers in turn
        p = x
        for k in range(1, m + 1):
            kept = keep and k < m and k % stride == 0
            nxt = torch.empty_like(x) if kept else spare[k % 2] if m > 1 else spare[0]
            _spmm_into(nxt, A, p)
            out.add_(nxt, alpha=coeffs[k])
            if kept:
                checkpoints.append(nxt)
            p = nxt
        del spare, p
        ctx.save_for_backward(values, *checkpoints)
        ctx.s, ctx.coeffs, ctx.stride = s, coeffs, stride
        return out

    @staticmethod
    def backward(ctx, g):
        values, *checkpoints = ctx.saved_tensors
        s, coeffs, stride = ctx.s, ctx.coeffs, ctx.stride
        m = len(coeffs) - 1
        # g is only read (scaled, or added by addmm into its output): no contiguous copy of it
        if m == 0:
            return (torch.zeros_like(values) if ctx.needs_input_grad[0] else None), g * coeffs[0], None, None
        At = s.matrix_t(values)
        need_v = bool(checkpoints)
        gv = values.new_zeros(values.shape) if need_v else None
        gv_acc = s.matrix(gv) if need_v else None  # accumulates r_k[dst] . p_{k-1}[src] over k
        A = s.matrix(values) if need_v and stride > 1 else None
        r = (g * coeffs[m]).contiguous()
        k = m
        for start in reversed(range(0, m, stride) if need_v else [0]):
            # r_k in turn: r's buffer and a second one, made only once this segment's p_{k-1} is
            # dropped (so at most checkpoints + stride + 1 arrays of (N, D) live at once)
            spare = [r]
            states: list[torch.Tensor] = []  # p_start .. p_{k-1}, recomputed from the checkpoint
            if need_v:
                states.append(checkpoints[start // stride])
                for _ in range(start + 1, k):
                    states.append(_spmm_into(torch.empty_like(r), A, states[-1]))
            while k > start:  # r_k with p_{k-1}, then r_{k-1}
                if need_v:
                    torch.sparse.sampled_addmm(gv_acc, r, states.pop().t(), beta=1.0, out=gv_acc)
                if len(spare) < 2:
                    spare.append(torch.empty_like(r))
                nxt = spare[1] if spare[0] is r else spare[0]  # r_0 = dx is returned
                r = _spmm_into(nxt, At, r, beta=coeffs[k - 1], add=g)
                k -= 1
        return gv, (r if ctx.needs_input_grad[1] else None), None, None


def polynomial(s: CsrStructure, values: torch.Tensor, x: torch.Tensor, coeffs: list[float]) -> torch.Tensor:
    """(N, D) ``sum_k coeffs[k] A^k x`` with A the sparse matrix of ``values`` on ``s``."""
    return _Polynomial.apply(values, x, s, [float(c) for c in coeffs])


def sddmm(s: CsrStructure, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(H * nnz,) dot products ``a[dst] . b[src]`` per edge; a, b: (N, D)."""
    return _SDDMM.apply(a, b, s)


def head_scores(s: CsrStructure, q: torch.Tensor, k: torch.Tensor, *, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """(H * nnz,) edge scores ``scale * q_i . k_j`` of (B, H, L, D) q, k, computed in ``dtype``."""
    return _HeadScores.apply(q, k, s, scale, dtype)


def row_softmax(s: CsrStructure, scores: torch.Tensor) -> torch.Tensor:
    """Softmax of edge scores over each destination's incoming edges (rows without edges: none)."""
    return _RowSoftmax.apply(scores, s)
