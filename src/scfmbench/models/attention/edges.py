"""Edge patterns for the sparse kernels: a batched, padded edge list and its builders.

An :class:`EdgePattern` holds one directed edge list per cell, padded to a common length E::

    src, dst: (B, E) int64      edge j -> i has src j, dst i: query i attends to key j
    valid:    (B, E) bool       False marks a padding slot (its src/dst are 0, never read)
    src_order: (B, E) int64     optional: slot order that sorts the valid edges by (src, dst)

A leading dimension of 1 broadcasts over the batch (window and BigBird patterns are the same for
every cell). Builders return *canonical* patterns: in every row the valid edges come first, sorted
by (dst, src), without duplicates, and ``src_order`` is set. The kernels rely on the dst order to
build CSR rows and on ``src_order`` to build the transpose without a sort per forward (they check
the order, and sort when handed a non-canonical pattern); a duplicated edge counts twice in the
softmax, as a parallel edge of a multigraph does in DGL (kept only by ``graph_pattern(dedup=False)``).

``key_padding_mask`` is not part of the pattern: the kernels drop every edge touching a padded
token when they compile the pattern (:meth:`EdgePattern.compile`), so one pattern can serve any
padding. Every builder is vectorised; the only Python loops run over a handful of structural
pieces (window, random, global).

Builders
--------
- :func:`window_pattern`: Longformer-style overlapping blocks (block ``w``, stride ``w/2``) as in
  the official GenoHoption code (``GenoHoption/Geneformer_window.py``, ``_create_adj_mat``), plus
  ``n_global`` leading global tokens (token 0 is the CLS token).
- :func:`bigbird_pattern`: window + ``n_random`` random keys per query + global tokens.
- :func:`diffuser_pattern`: the same three pieces with Diffuser's defaults.
- :func:`graph_pattern`: per cell, the subgraph of a gene graph induced by the cell's genes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from scfmbench import InputError


@dataclass(frozen=True, eq=False)
class EdgePattern:
    """Per-cell directed edge lists, padded to E slots (see the module docstring).

    Attributes
    ----------
    src, dst
        (B, E) or (1, E) int64 token positions in ``[0, n_nodes)``; edge ``src -> dst``.
    valid
        Same shape, bool; False marks an empty slot.
    n_nodes
        L, the sequence length the pattern is built for.
    src_order
        Optional, same shape: per row, the slot order that sorts valid edges by (src, dst).
    """

    src: torch.Tensor
    dst: torch.Tensor
    valid: torch.Tensor
    n_nodes: int
    src_order: torch.Tensor | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if not (self.src.shape == self.dst.shape == self.valid.shape) or self.src.dim() != 2:
            raise InputError(
                f"EdgePattern: src, dst, valid must share one (B, E) shape, got {tuple(self.src.shape)}, "
                f"{tuple(self.dst.shape)}, {tuple(self.valid.shape)}"
            )
        if self.src_order is not None and self.src_order.shape != self.src.shape:
            raise InputError(
                f"EdgePattern: src_order has shape {tuple(self.src_order.shape)}, expected {tuple(self.src.shape)}"
            )

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def from_edges(
        cls, src: torch.Tensor, dst: torch.Tensor, n_nodes: int, valid: torch.Tensor | None = None
    ) -> EdgePattern:
        """Canonical pattern (sorted by dst, deduplicated) from (B, E) or (E,) edge lists."""
        if src.dim() == 1:
            src, dst = src[None], dst[None]
            valid = None if valid is None else valid[None]
        if valid is None:
            valid = torch.ones_like(src, dtype=torch.bool)
        if src.numel() and (
            int(src.min()) < 0 or int(dst.min()) < 0 or int(src.max()) >= n_nodes or int(dst.max()) >= n_nodes
        ):
            raise InputError(f"edge endpoints must lie in [0, {n_nodes})")
        return cls(*_canonical(src.long(), dst.long(), valid.bool(), n_nodes))

    @classmethod
    def from_dense(cls, allowed: torch.Tensor) -> EdgePattern:
        """From a (B, L, L) or (L, L) bool matrix, ``allowed[b, i, j]`` = edge j -> i."""
        if allowed.dim() == 2:
            allowed = allowed[None]
        B, L, _ = allowed.shape
        b, i, j = allowed.nonzero(as_tuple=True)
        counts = torch.bincount(b, minlength=B)
        E = int(counts.max()) if b.numel() else 0
        slot = torch.arange(b.numel(), device=b.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        src = torch.zeros(B, E, dtype=torch.long, device=allowed.device)
        dst = torch.zeros_like(src)
        valid = torch.zeros(B, E, dtype=torch.bool, device=allowed.device)
        src[b, slot], dst[b, slot], valid[b, slot] = j, i, True
        return cls.from_edges(src, dst, L, valid)

    # --- views ------------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        return self.src.shape[0]

    def to(self, device) -> EdgePattern:
        order = None if self.src_order is None else self.src_order.to(device)
        return EdgePattern(self.src.to(device), self.dst.to(device), self.valid.to(device), self.n_nodes, order)

    def degrees(self, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) in-degree of every token after removing edges that touch padding."""
        src, dst, keep = self._kept(key_padding_mask)
        B, L = src.shape[0], self.n_nodes
        deg = torch.zeros(B, L, dtype=torch.long, device=src.device)
        return deg.scatter_add_(1, dst, keep.long())

    def mean_degree(self, key_padding_mask: torch.Tensor | None = None) -> float:
        """Mean in-degree over real (non-padded) tokens."""
        deg = self.degrees(key_padding_mask)
        real = torch.ones_like(deg, dtype=torch.bool) if key_padding_mask is None else ~key_padding_mask.expand_as(deg)
        return float(deg[real].float().mean()) if real.any() else 0.0

    def to_dense(self, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, L) bool, ``out[b, i, j]`` = query i may attend to key j (slow reference)."""
        src, dst, keep = self._kept(key_padding_mask)
        B, L = src.shape[0], self.n_nodes
        out = torch.zeros(B, L, L, dtype=torch.bool, device=src.device)
        b = torch.arange(B, device=src.device)[:, None].expand_as(src)
        out[b[keep], dst[keep], src[keep]] = True
        return out

    def _kept(self, key_padding_mask):
        """Edges broadcast to the batch, with edges touching padded tokens dropped from ``keep``."""
        src, dst, keep = self.src, self.dst, self.valid
        if key_padding_mask is not None:
            if key_padding_mask.shape[-1] != self.n_nodes:
                raise InputError(
                    f"key_padding_mask has length {key_padding_mask.shape[-1]}, pattern is for L={self.n_nodes}"
                )
            B = key_padding_mask.shape[0]
            if src.shape[0] not in (1, B):
                raise InputError(f"pattern batch {src.shape[0]} does not match the padding mask batch {B}")
            src, dst, keep = src.expand(B, -1), dst.expand(B, -1), keep.expand(B, -1)
            pad = key_padding_mask.bool()
            keep = keep & ~pad.gather(1, src) & ~pad.gather(1, dst)
        return src, dst, keep

    # --- compilation for the kernels ------------------------------------------------------------

    def compile(self, key_padding_mask: torch.Tensor | None, n_heads: int, batch_size: int | None = None):
        """The block-diagonal CSR structure the sparse kernels run on (see ``sparse.py``).

        Cached for the last (padding mask, heads) seen, so the layers of one model forward share
        one compilation. The cache holds a reference to the mask, so its ``id`` cannot be reused.
        """
        from scfmbench.models.attention.sparse import CsrStructure

        B = (
            batch_size
            if batch_size is not None
            else (key_padding_mask.shape[0] if key_padding_mask is not None else self.batch_size)
        )
        key = (
            id(key_padding_mask),
            None if key_padding_mask is None else key_padding_mask._version,
            n_heads,
            B,
            str(self.src.device),
        )
        hit = self._cache.get("csr")
        if hit is not None and hit[0] == key:
            return hit[2]
        if key_padding_mask is not None and key_padding_mask.shape[0] != B:
            raise InputError(f"key_padding_mask batch {key_padding_mask.shape[0]} != q batch {B}")
        if self.batch_size not in (1, B):
            raise InputError(f"pattern batch {self.batch_size} does not match q batch {B}")
        src, dst, keep = self._kept(key_padding_mask)
        src, dst, keep = src.expand(B, -1), dst.expand(B, -1), keep.expand(B, -1)
        order = None if self.src_order is None else self.src_order.expand(B, -1)
        structure = CsrStructure.from_edges(src, dst, keep, n_nodes=self.n_nodes, n_heads=n_heads, src_order=order)
        self._cache["csr"] = (key, key_padding_mask, structure)
        return structure

    def clear_cache(self) -> None:
        self._cache.clear()


# ---------------------------------------------------------------------------------------------
# canonical form


def _canonical(src: torch.Tensor, dst: torch.Tensor, valid: torch.Tensor, L: int, *, dedup: bool = True):
    """Per row: sort valid edges by (dst, src), drop duplicates (unless ``dedup`` is False: a
    multigraph's parallel edges each count in the softmax), move empty slots to the end, trim;
    also the slot order by (src, dst). Returns the fields of a canonical :class:`EdgePattern`."""
    sentinel = L * L
    key = torch.where(valid, dst * L + src, torch.full_like(src, sentinel))
    key, _ = torch.sort(key, dim=1)
    if dedup:
        dup = torch.zeros_like(valid)
        dup[:, 1:] = key[:, 1:] == key[:, :-1]
        key = torch.where(dup, torch.full_like(key, sentinel), key)
        key, _ = torch.sort(key, dim=1)  # duplicates -> sentinel -> end of the row
    return _canonical_from_sorted(key, L)


def _canonical_from_sorted(key: torch.Tensor, L: int):
    """The fields of a canonical :class:`EdgePattern` from (B, E') keys ``dst * L + src``, each row
    sorted ascending (duplicates kept only where meant), empty slots ``L * L`` at the end."""
    sentinel = L * L
    valid = key < sentinel
    E = int(valid.sum(1).max()) if valid.numel() else 0
    key, valid = key[:, :E], valid[:, :E]
    key = torch.where(valid, key, torch.zeros_like(key))
    src, dst = key % L, key // L
    src_order = torch.argsort(torch.where(valid, src * L + dst, torch.full_like(key, sentinel)), dim=1)
    return src, dst, valid, L, src_order


# ---------------------------------------------------------------------------------------------
# builders for text-style patterns (same for every cell: batch dimension 1)


def _window_edges(L: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping blocks of ``w`` tokens every ``w/2`` tokens (official GenoHoption code).

    Blocks start at ``m * h`` (h = w/2) and end at ``m * h + w``; token i lies in blocks
    ``c - 1`` and ``c`` (c = i // h), whose union is ``[(c - 1) h, (c + 2) h)`` clipped to
    ``[0, L)``: 1.5 w keys per query away from the ends.
    """
    if w < 2 or w % 2:
        raise InputError(f"window must be an even number >= 2 (block w, stride w/2), got {w}")
    h = w // 2
    i = torch.arange(L, device=device)
    j = (i // h - 1)[:, None] * h + torch.arange(3 * h, device=device)  # (L, 3h)
    ok = (j >= 0) & (j < L)
    return j[ok], i[:, None].expand_as(j)[ok]


def _global_edges(L: int, n_global: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``0 .. n_global-1`` attend to every token and every token attends to them."""
    g = torch.arange(min(n_global, L), device=device)
    i = torch.arange(L, device=device)
    gg, ii = torch.meshgrid(g, i, indexing="ij")
    return torch.cat([ii.reshape(-1), gg.reshape(-1)]), torch.cat([gg.reshape(-1), ii.reshape(-1)])


def _random_edges(L: int, n_random: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_random`` keys per query drawn uniformly (with replacement, then deduplicated).

    Drawn on the CPU from ``torch.Generator().manual_seed(seed)`` so the pattern depends only on
    (L, n_random, seed), not on the device or on the global RNG state.
    """
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, L, (L, n_random), generator=gen).to(device)
    dst = torch.arange(L, device=device)[:, None].expand(L, n_random)
    return src.reshape(-1), dst.reshape(-1)


# GenoHoption's BigBird baseline draws 200 x 2048 of the 2048^2 entries of one adjacency matrix at
# random (utils.py, create_adj_mat: num_rand 200, max_len 2048) and cuts each batch's block from it.
OFFICIAL_RANDOM_DENSITY = 200 / 2048
_TILE = 256


def _density_edges(L: int, density: float, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each (query i, key j) of the L x L matrix is a random edge with probability ``density``.

    As the official pattern, whose batches use the top-left block of one large matrix, the edges
    among the first L' < L tokens are the same for every L (the matrix is drawn in 256 x 256
    tiles, each from its own generator seeded by (seed, tile row, tile column)), so a cell keeps
    its random edges whatever the length its batch is padded to.
    """
    if not 0.0 <= density <= 1.0:
        raise InputError(f"random_density must lie in [0, 1], got {density}")
    n = -(-L // _TILE)
    rows, cols = [], []
    for ti in range(n):
        for tj in range(n):
            state = int(np.random.SeedSequence([seed, ti, tj]).generate_state(1, dtype=np.uint64)[0] >> 1)
            hit = torch.rand(_TILE, _TILE, generator=torch.Generator().manual_seed(state)) < density
            i, j = hit[: L - ti * _TILE, : L - tj * _TILE].nonzero(as_tuple=True)
            rows.append(i + ti * _TILE)
            cols.append(j + tj * _TILE)
    dst, src = torch.cat(rows).to(device), torch.cat(cols).to(device)
    return src, dst


def sparse_pattern(
    L: int,
    *,
    window: int = 0,
    n_random: int = 0,
    n_global: int = 0,
    seed: int = 0,
    random_density: float = 0.0,
    device=None,
) -> EdgePattern:
    """Union of window, random (``n_random`` per query, and/or each pair with probability
    ``random_density``) and global pieces; (1, E) canonical pattern."""
    pieces = []
    if window:
        pieces.append(_window_edges(L, window, device))
    if n_random:
        pieces.append(_random_edges(L, n_random, seed, device))
    if random_density:
        pieces.append(_density_edges(L, random_density, seed, device))
    if n_global:
        pieces.append(_global_edges(L, n_global, device))
    if not pieces:
        raise InputError("a sparse pattern needs at least one of window, n_random, random_density, n_global")
    src = torch.cat([p[0] for p in pieces])
    dst = torch.cat([p[1] for p in pieces])
    return EdgePattern.from_edges(src, dst, L)


def window_pattern(L: int, w: int = 64, *, n_global: int = 1, device=None) -> EdgePattern:
    """Longformer: overlapping windows (block ``w``, stride ``w/2``) + ``n_global`` global tokens."""
    return sparse_pattern(L, window=w, n_global=n_global, device=device)


def bigbird_pattern(
    L: int,
    w: int = 32,
    n_random: int = 16,
    seed: int = 0,
    *,
    n_global: int = 1,
    random_density: float = 0.0,
    device=None,
) -> EdgePattern:
    """BigBird: window ``w`` + ``n_random`` random keys per query (and/or random pairs at
    ``random_density``; GenoHoption's: :data:`OFFICIAL_RANDOM_DENSITY`) + global token(s) 0.."""
    return sparse_pattern(
        L, window=w, n_random=n_random, n_global=n_global, seed=seed, random_density=random_density, device=device
    )


def diffuser_pattern(
    L: int, *, window: int = 32, n_random: int = 0, n_global: int = 0, seed: int = 0, device=None
) -> EdgePattern:
    """Diffuser's attention graph: window (+ random + global). Defaults follow the GenoHoption
    baseline (window = mean graph degree, nothing else); Diffuser's own paper uses window 64,
    64 random and 64 global tokens (see ``diffuser.py`` presets)."""
    return sparse_pattern(L, window=window, n_random=n_random, n_global=n_global, seed=seed, device=device)


# ---------------------------------------------------------------------------------------------
# gene graph -> per-cell induced subgraph


def _csr_arrays(adjacency, device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(indptr, indices, n_genes) from a scipy sparse matrix or a torch sparse CSR/COO tensor."""
    if isinstance(adjacency, torch.Tensor):
        a = adjacency.to_sparse_csr() if adjacency.layout != torch.sparse_csr else adjacency
        return a.crow_indices().long().to(device), a.col_indices().long().to(device), a.shape[0]
    import scipy.sparse as sp

    a = sp.csr_matrix(adjacency)
    a.eliminate_zeros()
    a.sort_indices()
    return (
        torch.as_tensor(a.indptr.astype(np.int64), device=device),
        torch.as_tensor(a.indices.astype(np.int64), device=device),
        a.shape[0],
    )


_POSITION_TABLE_MAX = 2**24  # graph_pattern: a (cell, gene) -> position table up to this many entries


def graph_pattern(
    adjacency, gene_index: torch.Tensor, *, n_global: int = 0, self_loops: bool = True, dedup: bool = True
) -> EdgePattern:
    """Per cell, the subgraph of a gene graph induced by the genes the cell carries (Seq2Graph).

    Parameters
    ----------
    adjacency
        (G, G) gene graph, scipy sparse or torch sparse; a non-zero ``adjacency[g, h]`` is the
        edge g -> h (row = source, e.g. regulator -> target or neighbour -> gene), so token of
        gene h attends to the token of gene g. Weights are ignored (the official code never
        uses them).
    gene_index
        (B, L) int64 graph node of each token; -1 marks padding. Genes must be unique per cell.
    n_global
        The first ``n_global`` positions are global tokens (CLS): joined to every real token in
        both directions, whatever their ``gene_index``.
    self_loops
        Add i -> i for every real token (the GenoHoption graph has self-loops).
    dedup
        Drop repeated edges (default). False keeps them (a CSR ``adjacency`` may repeat a column
        in a row): parallel edges of a multigraph, each counted in the softmax as in DGL.

    Returns
    -------
    EdgePattern
        (B, E) canonical; padding tokens have no edges. Cells may carry different gene sets.
    """
    gene_index = gene_index.long()
    B, L = gene_index.shape
    device = gene_index.device
    indptr, indices, G = _csr_arrays(adjacency, device)
    pos = torch.arange(L, device=device)
    is_global = (pos < n_global)[None].expand(B, L)
    real = (gene_index >= 0) | is_global
    if gene_index.numel() and int(gene_index.max()) >= G:
        raise InputError(f"gene_index holds node {int(gene_index.max())} but the graph has {G} nodes")
    in_graph = (gene_index >= 0) & ~is_global  # tokens whose gene is looked up in the graph
    g = torch.where(in_graph, gene_index, torch.zeros_like(gene_index))

    # every out-edge of every token's gene: (cell, src position, neighbour gene)
    out_deg = torch.where(in_graph, indptr[g + 1] - indptr[g], torch.zeros_like(g))  # (B, L)
    cb, cj = in_graph.nonzero(as_tuple=True)
    deg = out_deg[cb, cj]
    start = indptr[g[cb, cj]]
    e_cell = torch.repeat_interleave(cb, deg)
    e_src = torch.repeat_interleave(cj, deg)
    offset = torch.arange(int(deg.sum()), device=device) - torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
    e_gene = indices[torch.repeat_interleave(start, deg) + offset]

    # position of the neighbour gene in the same cell (genes are unique per cell)
    if B * G <= _POSITION_TABLE_MAX:  # a (B, G) table of each cell's gene positions: one gather
        table = torch.full((B, G), -1, dtype=torch.long, device=device)
        table[cb, g[cb, cj]] = cj
        e_dst = table[e_cell, e_gene]
        found = e_dst >= 0
        e_cell, e_src, e_dst = e_cell[found], e_src[found], e_dst[found]
    else:  # search the cells' sorted (cell, gene) keys
        stride = G + 1
        keys = torch.where(
            in_graph, torch.arange(B, device=device)[:, None] * stride + g, torch.full_like(g, B * stride)
        )
        sorted_keys, order = torch.sort(keys.reshape(-1))
        query = e_cell * stride + e_gene
        hit = torch.searchsorted(sorted_keys, query).clamp_max(sorted_keys.numel() - 1)
        found = sorted_keys[hit] == query
        e_cell, e_src, e_dst = e_cell[found], e_src[found], order[hit[found]] % L

    cells, srcs, dsts = [e_cell], [e_src], [e_dst]
    if self_loops:
        rb, ri = real.nonzero(as_tuple=True)
        cells, srcs, dsts = cells + [rb], srcs + [ri], dsts + [ri]
    if n_global:
        gs, gd = _global_edges(L, n_global, device)
        gb = torch.arange(B, device=device)[:, None].expand(B, gs.numel())
        ok = real[gb, gs[None].expand(B, -1)] & real[gb, gd[None].expand(B, -1)]
        cells.append(gb[ok])
        srcs.append(gs[None].expand(B, -1)[ok])
        dsts.append(gd[None].expand(B, -1)[ok])
    e_cell, e_src, e_dst = torch.cat(cells), torch.cat(srcs), torch.cat(dsts)

    # canonical form in one pass: one sort of the (cell, dst, src) keys of all cells (unique: the
    # duplicates dropped too, unless ``dedup`` is False), each cell's sorted keys dst * L + src
    # into its row; the same rows as sorting every cell's slots (``_canonical``), without the
    # scatter into unsorted slots and the two row-wise sorts
    key = (e_cell * L + e_dst) * L + e_src
    key = torch.unique(key, sorted=True) if dedup else torch.sort(key).values
    cell = torch.div(key, L * L, rounding_mode="floor")
    counts = torch.bincount(cell, minlength=B)
    E = int(counts.max()) if key.numel() else 0
    slot = torch.arange(key.numel(), device=device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rows = torch.full((B, E), L * L, dtype=torch.long, device=device)
    rows[cell, slot] = key - cell * (L * L)
    return EdgePattern(*_canonical_from_sorted(rows, L))


def pattern_rows(
    pattern: EdgePattern, dtype: torch.dtype = torch.long
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per cell of a canonical ``pattern``: its valid edges' (src, dst) and their (src, dst) order
    (the valid part of ``src_order``); positions in ``dtype``, the order in int32 (int64 past
    2^31 slots). The inverse of :func:`pattern_from_rows`."""
    counts = pattern.valid.sum(1).tolist()
    src, dst = pattern.src.to(dtype), pattern.dst.to(dtype)
    order = pattern.src_order.to(torch.int32 if pattern.src.shape[1] < 2**31 else torch.long)
    return [(src[b, :n], dst[b, :n], order[b, :n]) for b, n in enumerate(counts)]


def pattern_from_rows(
    rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], L: int, *, unique: bool = True
) -> EdgePattern:
    """The canonical (B, E) pattern on L tokens whose cell b has the edges of ``rows[b]`` (as
    :func:`pattern_rows` gives them, from patterns of any length): the canonical form of those
    edges (``graph_pattern``'s): ``src``, ``dst``, ``valid`` equal tensor for tensor, ``src_order``
    equal on the valid slots (the only ones the kernels read; taken from the rows where the edges
    are ``unique``, argsorted again with parallel edges), the empty slots after them in increasing
    order (the canonical form's argsort leaves its equal sentinel keys in no fixed order)."""
    B = len(rows)
    device = rows[0][0].device if rows else None
    counts = torch.tensor([r[0].numel() for r in rows], dtype=torch.long, device=device)
    E = int(counts.max()) if B else 0
    valid = torch.arange(E, device=device)[None] < counts[:, None]
    src = torch.zeros(B, E, dtype=torch.long, device=device)
    dst = torch.zeros_like(src)
    if E:
        src[valid], dst[valid] = (
            torch.cat([r[0] for r in rows]).long(),
            torch.cat([r[1] for r in rows]).long(),
        )  # row by row, in order
        if int(src.max()) >= L or int(dst.max()) >= L:
            raise InputError(f"pattern_from_rows: an edge's endpoint lies outside [0, {L})")
    if unique:
        src_order = torch.arange(E, device=device).repeat(B, 1)
        if E:
            src_order[valid] = torch.cat([r[2] for r in rows]).long()
    else:
        src_order = torch.argsort(torch.where(valid, src * L + dst, torch.full_like(src, L * L)), dim=1)
    return EdgePattern(src, dst, valid, L, src_order)
