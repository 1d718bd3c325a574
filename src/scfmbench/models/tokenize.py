"""Turning cells into token sequences, one tokenizer per backbone, and gene graphs into per-batch
edge patterns over those tokens.

Shapes: N cells, G genes, L tokens per cell (CLS first, then genes).
Token ids (every backbone): 0 = <pad>, 1 = <cls>, gene g -> g + 2.

- scGPT-style (:func:`tokenize_scgpt`): each cell's non-zero genes (a random ``max_len`` if more),
  values binned per cell. Value ids: 0 = zero / CLS, 1..n_bins-1 = bins, n_bins = <pad>
  (scGPT's category ``pad_value``).
- Geneformer-style (:func:`tokenize_geneformer`): rank-value encoding, genes ordered by their
  normalized expression over their non-zero median in the training cells (:func:`gene_medians`),
  truncated to ``max_len``; no value ids (all 0).
- scBERT-style (:func:`tokenize_scbert`): every gene of the panel, value = log2 expression bin,
  the top bin saturating.

:class:`TokenGraph` maps token ids to the nodes of a gene graph and builds the per-batch
:class:`~scfmbench.models.attention.EdgePattern` the graph kernels (GenoHoption, one-hop) run on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from scfmbench import InputError
from scfmbench.graphs.coexpression import bin_values, binned_layer  # noqa: F401  (bin_values: scGPT's per-cell binning, shared)
from scfmbench.models.attention import EdgePattern, graph_pattern
from scfmbench.models.attention.edges import pattern_from_rows, pattern_rows

PAD_ID, CLS_ID, N_SPECIAL = 0, 1, 2
_CELL_MAX_LEN = 2**15  # TokenGraph keeps cells' edge lists as int16 positions: for L <= 2^15


@dataclass
class TokenizedCells:
    gene_ids: torch.Tensor  # (N, L) long; may be an expanded (1, L) view when all cells share it
    value_ids: torch.Tensor  # (N, L) integer (stored narrow where possible, long per batch)
    padding: torch.Tensor  # (N, L) bool, True = pad

    def __len__(self) -> int:
        return self.gene_ids.shape[0]

    def batch(self, idx) -> TokenizedCells:
        """Rows ``idx``, trimmed to the longest cell in the batch; value ids as int64."""
        pad = self.padding[idx]
        length = int((~pad).sum(1).max())
        return TokenizedCells(self.gene_ids[idx, :length], self.value_ids[idx, :length].long(), pad[:, :length])

    def to(self, device) -> TokenizedCells:
        return TokenizedCells(self.gene_ids.to(device), self.value_ids.to(device), self.padding.to(device))


# ---------------------------------------------------------------------------------------------
# scGPT-style: non-zero genes, per-cell binned values


def tokenize_scgpt(X, *, n_bins: int, max_len: int, rng: np.random.Generator, bins=None) -> TokenizedCells:
    """Tokenize log-normalized cells: CLS, then each cell's non-zero genes (random ``max_len`` if more,
    kept in gene order), values binned per cell.

    ``bins``: the cells' bin ids (``binned_layer(X, n_bins, rng=...)``, CSR with X's non-zeros),
    binned once per dataset as scGPT's preprocessing does; None bins ``X`` here, ties drawn from
    ``rng`` (:func:`bin_values`, scGPT's ``side="both"``).
    """
    if bins is None:
        bins = binned_layer(sp.csr_matrix(X), n_bins, rng=rng)
    B = sp.csr_matrix(bins)
    B.eliminate_zeros()
    n = B.shape[0]
    lengths = np.minimum(np.diff(B.indptr), max_len)
    L = 1 + int(lengths.max(initial=0))
    gene_ids = np.full((n, L), PAD_ID, dtype=np.int64)
    value_ids = np.full((n, L), n_bins, dtype=np.int64)
    gene_ids[:, 0], value_ids[:, 0] = CLS_ID, 0
    for i in range(n):  # one cell at a time: cells have different gene sets (tokenization, not forward)
        cols, binned = B.indices[B.indptr[i] : B.indptr[i + 1]], B.data[B.indptr[i] : B.indptr[i + 1]]
        keep = np.argsort(cols, kind="stable")
        if len(keep) > max_len:
            keep = keep[np.sort(rng.choice(len(keep), max_len, replace=False))]
        gene_ids[i, 1 : 1 + len(keep)] = cols[keep] + N_SPECIAL
        value_ids[i, 1 : 1 + len(keep)] = binned[keep]
    gene_ids_t = torch.from_numpy(gene_ids)
    return TokenizedCells(gene_ids_t, torch.from_numpy(value_ids), gene_ids_t == PAD_ID)


# ---------------------------------------------------------------------------------------------
# Geneformer-style: rank-value encoding


def _normalize_rows(counts, target_sum: float) -> sp.csr_matrix:
    """counts / cell total * target_sum (Geneformer's ``n_counts`` normalization), float64 CSR."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    totals = np.asarray(counts.sum(1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    return sp.csr_matrix(sp.diags(scale) @ counts)


def gene_medians(counts, *, target_sum: float = 1e4) -> np.ndarray:
    """(G,) median of each gene's non-zero normalized values (counts / cell total * ``target_sum``)
    over the given cells, NaN for a gene that is zero in all of them.

    Geneformer computes these over its pretraining corpus (``gene_median_dictionary.pkl``); from
    scratch they come from the training cells only, so held-out cells cannot shape the encoding.
    """
    norm = _normalize_rows(counts, target_sum).tocsc()
    norm.eliminate_zeros()
    G = norm.shape[1]
    n_per_gene = np.diff(norm.indptr)
    col = np.repeat(np.arange(G), n_per_gene)
    data = norm.data[np.lexsort((norm.data, col))]  # values sorted within each column
    start = norm.indptr[:-1]
    out = np.full(G, np.nan)
    has = n_per_gene > 0
    lo = start[has] + (n_per_gene[has] - 1) // 2
    hi = start[has] + n_per_gene[has] // 2
    out[has] = (data[lo] + data[hi]) / 2.0
    return out


def tokenize_geneformer(
    counts, medians: np.ndarray, *, max_len: int, target_sum: float = 1e4, chunk: int = 512
) -> TokenizedCells:
    """Rank-value encoding (Geneformer, Theodoris et al. 2023): CLS, then the cell's non-zero genes
    by ``counts / cell total * target_sum / median`` in descending order, the top ``max_len`` kept.

    Genes whose median is NaN (never expressed in the cells the medians came from) are left out, as
    Geneformer leaves out genes missing from its median dictionary. Ties keep gene order (a stable
    sort; Geneformer's ``np.argsort`` does not specify one). Vectorised over chunks of cells.
    """
    norm = _normalize_rows(counts, target_sum)
    n, G = norm.shape
    if medians.shape != (G,):
        raise InputError(f"gene medians have shape {medians.shape}, the counts have {G} genes")
    inv = np.where(np.isfinite(medians) & (medians > 0), 1.0 / np.where(medians > 0, medians, 1.0), 0.0)
    lengths = np.zeros(n, dtype=np.int64)
    ranked = np.zeros((n, max_len), dtype=np.int64)
    for s in range(0, n, chunk):  # chunks bound the dense (chunk, G) block; no loop over cells
        score = norm[s : s + chunk].toarray() * inv  # (c, G)
        order = np.argsort(-score, axis=1, kind="stable")[:, :max_len]  # (c, <=max_len)
        ranked[s : s + chunk, : order.shape[1]] = order
        lengths[s : s + chunk] = np.minimum((score > 0).sum(1), max_len)
    L = 1 + int(lengths.max(initial=0))
    pos = np.arange(L - 1)[None, :]
    gene_ids = np.full((n, L), PAD_ID, dtype=np.int64)
    gene_ids[:, 0] = CLS_ID
    gene_ids[:, 1:] = np.where(pos < lengths[:, None], ranked[:, : L - 1] + N_SPECIAL, PAD_ID)
    gene_ids_t = torch.from_numpy(gene_ids)
    return TokenizedCells(gene_ids_t, torch.zeros_like(gene_ids_t, dtype=torch.uint8), gene_ids_t == PAD_ID)


# ---------------------------------------------------------------------------------------------
# scBERT-style: every gene, log2 expression bins


def scbert_bins(X, *, n_bins: int = 7, log_base: float = 2.0) -> np.ndarray:
    """(N, G) uint8 bins ``min(floor(log_base(1 + x)), n_bins)`` from X = ln(1 + normalized counts).

    scBERT (``preprocess.py`` and ``finetune.py``): normalize_total 1e4, ``log1p(base=2)``, values
    truncated to integers (``.long()``) and clipped at ``CLASS - 2 = bin_num`` (7), so ids 0..7 with
    the top bin saturating; id ``bin_num + 1`` is its <mask> token.
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    out = np.zeros(X.shape, dtype=np.uint8)
    for s in range(0, X.shape[0], 1024):  # chunks bound the dense float block
        out[s : s + 1024] = np.minimum(
            np.floor(np.maximum(X[s : s + 1024].toarray() / math.log(log_base), 0.0)), n_bins
        )
    return out


def tokenize_scbert(X, *, n_bins: int = 7, log_base: float = 2.0) -> TokenizedCells:
    """CLS, then all G genes in panel order (scBERT reads the whole panel, zeros included)."""
    bins = scbert_bins(X, n_bins=n_bins, log_base=log_base)
    n, G = bins.shape
    value_ids = np.zeros((n, G + 1), dtype=np.uint8)  # CLS value 0, as scGPT's <cls>
    value_ids[:, 1:] = bins
    genes = torch.cat([torch.tensor([CLS_ID]), torch.arange(G) + N_SPECIAL])[None].expand(
        n, G + 1
    )  # shared (1, L) view
    return TokenizedCells(genes, torch.from_numpy(value_ids), torch.zeros(1, G + 1, dtype=torch.bool).expand(n, G + 1))


# ---------------------------------------------------------------------------------------------
# gene graph -> per-batch edge patterns


class TokenGraph:
    """A gene graph seen from the token sequences: per batch, each cell's induced subgraph.

    Parameters
    ----------
    adjacency
        (n_nodes, n_nodes) scipy sparse, **rows = source**: a non-zero ``[u, v]`` is the edge
        u -> v (token of v attends to token of u), as :func:`graph_pattern` expects. A
        :class:`~scfmbench.graphs.build.GeneGraph` stores the transpose (rows = target); build
        from one with :meth:`from_gene_graph`.
    cls_node
        True when node 0 is a CLS node and gene g is node g + 1 (the GeneGraph layout with
        ``has_cls``): then token id t maps to node t - 1 (<pad> -> -1, <cls> -> 0) and the CLS
        token takes the graph's CLS edges. False: gene g is node g and the CLS token (position 0)
        is joined to every real token as a global token.
    cls_token
        False for sequences without a CLS token (the perturbation generator): then no position is
        global and every token takes only its gene's graph edges (needs ``cls_node=False``).
    """

    def __init__(self, adjacency, *, cls_node: bool, multigraph: bool = False, cls_token: bool = True):
        self.adjacency = sp.csr_matrix(adjacency)
        self.cls_node = bool(cls_node)
        self.multigraph = bool(multigraph)  # adjacency values are edge multiplicities (GeneGraph multigraph)
        self.cls_token = bool(cls_token)
        if self.cls_node and not self.cls_token:
            raise InputError("TokenGraph: a graph with a CLS node needs sequences with a CLS token (cls_token=True)")
        self.n_genes = self.adjacency.shape[0] - int(self.cls_node)
        self._torch: dict[str, torch.Tensor] = {}
        self._cells: dict[tuple[str, bytes], tuple] = {}  # per cell: its edges (see pattern)
        self._cell_bytes = 0

    @classmethod
    def from_gene_graph(cls, graph) -> TokenGraph:
        """From a :class:`~scfmbench.graphs.build.GeneGraph` (``A[i, j]`` = edge j -> i): A.T."""
        return cls(graph.adjacency.T.tocsr(), cls_node=graph.has_cls, multigraph=bool(graph.params.get("multigraph")))

    def node_index(self, gene_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) graph node of every token, -1 for padding (and for CLS without a CLS node)."""
        if self.cls_node:
            return gene_ids - 1  # <pad> 0 -> -1, <cls> 1 -> node 0, gene g (g + 2) -> node g + 1
        return torch.where(gene_ids >= N_SPECIAL, gene_ids - N_SPECIAL, torch.full_like(gene_ids, -1))

    # Cells' edge lists kept for reuse (see pattern), at most this many bytes per graph.
    CELL_CACHE_BYTES = 256 * 2**20

    def pattern(self, gene_ids: torch.Tensor) -> EdgePattern:
        """The (B, E) edge pattern of a batch of token sequences (CLS at position 0).

        A cell's induced subgraph depends only on its token sequence, so each cell's edge list
        is built once and kept (keyed by the sequence up to its last real token; at most
        :attr:`CELL_CACHE_BYTES`): a cell seen again (next epoch, evaluation) costs a lookup, and
        its batch's pattern is assembled from the kept lists, equal to :func:`graph_pattern` on the
        batch on every slot the kernels read (:func:`pattern_from_rows`). A cell whose tokens
        change (scGPT's per-epoch gene sampling) is built anew.
        """
        if gene_ids.numel() and int(gene_ids.max()) - N_SPECIAL >= self.n_genes:
            raise InputError(
                f"a token refers to gene {int(gene_ids.max()) - N_SPECIAL}, but the gene graph has {self.n_genes} genes"
            )
        nodes = self.node_index(gene_ids)
        B, L = nodes.shape
        if not self.CELL_CACHE_BYTES or not B or L > _CELL_MAX_LEN:
            return self._pattern(nodes)
        host = nodes.cpu().numpy()
        real = host >= 0
        n_global = self._n_global()
        # a cell's tokens up to its last real one (global positions always count): its cache key
        length = np.maximum(np.where(real.any(1), L - np.argmax(real[:, ::-1], axis=1), 0), min(n_global, L))
        device = str(gene_ids.device)
        keys = [(device, host[b, : length[b]].tobytes()) for b in range(B)]
        rows = [self._cells.get(key) for key in keys]
        missing = [b for b, row in enumerate(rows) if row is None]
        whole = None
        if missing:
            whole = self._pattern(nodes[missing] if len(missing) < B else nodes)
            for b, row in zip(missing, pattern_rows(whole, torch.int16)):  # positions < 2^15
                rows[b] = row
                size = sum(t.numel() * t.element_size() for t in row) + len(keys[b][1])
                if self._cell_bytes + size <= self.CELL_CACHE_BYTES and keys[b] not in self._cells:
                    self._cells[keys[b]] = row
                    self._cell_bytes += size
        if len(missing) == B:  # a batch of new cells: its pattern was just built
            return whole
        return pattern_from_rows(rows, L, unique=not self.multigraph)

    def _n_global(self) -> int:
        # Without a CLS token (the perturbation generator) no position is global.
        return 1 if self.cls_token and not self.cls_node else 0

    def _pattern(self, nodes: torch.Tensor) -> EdgePattern:
        """:func:`graph_pattern` of (B, L) graph nodes (no cache)."""
        key = str(nodes.device)
        if key not in self._torch:  # the graph as a torch CSR tensor, once per device
            a = self.adjacency
            indptr, indices = a.indptr.astype(np.int64), a.indices.astype(np.int64)
            if self.multigraph:  # each edge repeated by its multiplicity: parallel edges in the pattern
                counts = a.data.astype(np.int64)
                indices = np.repeat(indices, counts)
                rows = np.repeat(np.arange(a.shape[0]), np.diff(indptr))
                indptr = np.concatenate(
                    [[0], np.cumsum(np.bincount(rows, weights=counts, minlength=a.shape[0]).astype(np.int64))]
                )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
                self._torch[key] = torch.sparse_csr_tensor(
                    torch.as_tensor(indptr),
                    torch.as_tensor(indices),
                    torch.ones(len(indices)),
                    size=a.shape,
                    check_invariants=not self.multigraph,
                ).to(nodes.device)
        # A multigraph holds its self-loops with their multiplicities; the plain graph gets one each.
        return graph_pattern(
            self._torch[key],
            nodes,
            n_global=self._n_global(),
            self_loops=not self.multigraph or not self.cls_node,
            dedup=not self.multigraph,
        )

    def mean_degree(self) -> float:
        """Mean in-degree over all nodes (self-loops included; a multigraph's parallel edges each),
        for run records."""
        n_edges = int(self.adjacency.data.sum()) if self.multigraph else self.adjacency.nnz
        return n_edges / max(self.adjacency.shape[0], 1)
