"""Co-expression edges for Seq2Graph (GenoHoption; REFERENCE.md section 1) and scGPT's binned layer.

Rule: Pearson correlation between genes over the *training* cells, absolute value, and each gene
keeps its top ``H`` partners (itself excluded) with ``|r| > delta``; the edge points from the
partner to the gene (neighbour -> gene). The official code takes the top ``H + 1`` including the
gene itself; self-loops are added separately in :func:`scfmbench.graphs.build.build_gene_graph`,
so the two agree.

Ranking is made deterministic so that the fast path and the dense reference give the same edge
set: ``|r|`` is rounded to :data:`ROUND_DECIMALS` decimals before thresholding and ranking
(numerical noise of a different summation order then cannot split a real tie, such as two
identical genes), and among equal rounded values the lower gene index wins.

The fast path never holds a genes x genes matrix. It standardizes the columns once (a dense
cells x genes array of ``dtype``), then for each block of ``block_size`` genes computes the slab
``r[block, block_start:]`` with one matrix product (the upper triangle only: ``r`` is symmetric).
A slab yields candidates for its own rows and, transposed, for the later genes' columns; each
gene keeps at most ``H`` candidates per slab, and the final top ``H`` over the union of those
candidates is the exact top ``H`` (a top-``H`` of a union is a top-``H`` of the members' top-``H``s
under a strict total order). Memory: the standardized matrix plus a few slabs of
``block_size x n_genes``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scfmbench import InputError

__all__ = ["ROUND_DECIMALS", "coexpression_edges", "coexpression_edges_reference", "bin_values", "binned_layer"]

ROUND_DECIMALS = 6
_INVALID = -1.0  # below any |r|: marks self pairs, zero-variance genes and |r| <= delta


def _check_params(X, top_h: int, delta: float, block_size: int = 1) -> None:
    if X.ndim != 2:
        raise InputError(f"co-expression needs a 2-d cells x genes matrix, got shape {X.shape}.")
    if not (isinstance(top_h, (int, np.integer)) and top_h >= 1):
        raise InputError(f"top_h must be a positive integer, got {top_h!r}.")
    if not (0.0 <= float(delta) < 1.0):
        raise InputError(f"delta must be in [0, 1) (a threshold on |Pearson r|), got {delta!r}.")
    if not (isinstance(block_size, (int, np.integer)) and block_size >= 1):
        raise InputError(f"block_size must be a positive integer, got {block_size!r}.")


def _standardize(X, dtype, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Columns scaled so that ``Z.T @ Z`` is the Pearson correlation matrix; zero-variance mask.

    Means and variances are computed in float64 per column chunk (two-pass), so a sparse input is
    densified one chunk at a time. Constant columns (max == min) get a zero column.
    """
    n_cells, n_genes = X.shape
    if sp.issparse(X):
        X = sp.csc_matrix(X)
    Z = np.empty((n_cells, n_genes), dtype=dtype)
    constant = np.zeros(n_genes, dtype=bool)
    for s in range(0, n_genes, chunk):
        e = min(s + chunk, n_genes)
        block = X[:, s:e]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        block = block.astype(np.float64)
        if not np.all(np.isfinite(block)):
            raise InputError("the expression matrix for co-expression contains NaN or inf values.")
        constant[s:e] = block.max(axis=0) == block.min(axis=0)
        block -= block.mean(axis=0)
        norm = np.sqrt((block * block).sum(axis=0))
        norm[constant[s:e]] = 1.0
        block /= norm
        block[:, constant[s:e]] = 0.0
        Z[:, s:e] = block
    return Z, constant


def _quantize(r: np.ndarray) -> np.ndarray:
    q = np.abs(r)
    np.round(q, ROUND_DECIMALS, out=q)
    return q


def _top_h(q: np.ndarray, h: int, col_offset: int, delta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``q`` the (up to) ``h`` largest entries ``> delta``, ties to the lower column.

    Returns (row, column + col_offset, value) triplets.
    """
    n_rows, m = q.shape
    if m > h:
        kth = np.partition(q, m - h, axis=1)[:, m - h]
        mask = (q >= kth[:, None]) & (q > delta)
    else:
        mask = q > delta
    rows, cols = np.nonzero(mask)
    vals = q[rows, cols]
    # Ties at the h-th value can leave more than h candidates in a row: keep the first h by
    # (value descending, column ascending). np.nonzero already orders by row, then column.
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    return _first_per_group(rows, h, cols + col_offset, vals)


def _first_per_group(group: np.ndarray, h: int, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keep the first ``h`` entries of each run of equal values in the sorted ``group``."""
    if group.size == 0:
        return (group, *arrays)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, group.size]))
    keep = np.arange(group.size) - run_start < h
    return (group[keep], *(a[keep] for a in arrays))


def _select(gene: np.ndarray, partner: np.ndarray, value: np.ndarray, h: int):
    order = np.lexsort((partner, -value, gene))
    return _first_per_group(gene[order], h, partner[order], value[order])


def coexpression_edges(
    X,
    *,
    top_h: int = 20,
    delta: float = 0.4,
    block_size: int = 1024,
    dtype=np.float32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-expression edges of the training cells ``X`` (cells x genes, dense or sparse).

    Parameters
    ----------
    X
        The training cells' log-normalized expression (or :func:`binned_layer` of it). Only pass
        training rows: validation/test cells must not shape the graph.
    top_h
        Partners kept per gene (GenoHoption H = 20).
    delta
        Keep a partner only if ``|r| > delta`` (GenoHoption 0.4), after rounding to
        :data:`ROUND_DECIMALS` decimals.
    block_size
        Genes per slab; memory is about ``3 * block_size * n_genes * itemsize`` on top of the
        standardized ``cells x genes`` matrix.
    dtype
        Precision of the standardized matrix and the products (float32: half the time and memory
        of float64; |r| is then accurate to about 1e-6, so ranks within that of each other may
        differ from a float64 computation).

    Returns
    -------
    source, target, weight
        int64, int64 and float64 arrays: edge ``source -> target`` means ``source`` is one of
        ``target``'s top partners; ``weight`` is the rounded ``|r|``. Sorted by target, then
        weight descending, then source. Genes with zero variance have no edges.
    """
    _check_params(X, top_h, delta, block_size)
    n_genes = X.shape[1]
    Z, constant = _standardize(X, dtype)
    genes, partners, values = [], [], []
    for s in range(0, n_genes, block_size):
        e = min(s + block_size, n_genes)
        q = _quantize(Z[:, s:e].T @ Z[:, s:])  # (e - s, n_genes - s): r[s:e, s:]
        q[np.arange(e - s), np.arange(e - s)] = _INVALID  # self pairs
        q[:, constant[s:]] = _INVALID
        q[constant[s:e], :] = _INVALID
        # candidates for the block's own genes (partners s..n-1) ...
        rows, cols, vals = _top_h(q, top_h, s, delta)
        genes.append(rows + s)
        partners.append(cols)
        values.append(vals)
        # ... and, through symmetry, for the later genes (partners in this block)
        if e < n_genes:
            rows, cols, vals = _top_h(np.ascontiguousarray(q[:, e - s :].T), top_h, s, delta)
            genes.append(rows + e)
            partners.append(cols)
            values.append(vals)
        del q
    gene, partner, value = _select(np.concatenate(genes), np.concatenate(partners), np.concatenate(values), top_h)
    return partner.astype(np.int64), gene.astype(np.int64), value.astype(np.float64)


def coexpression_edges_reference(
    X, *, top_h: int = 20, delta: float = 0.4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow, obviously correct reference for :func:`coexpression_edges` (dense genes x genes, float64).

    Same rules: ``|np.corrcoef|`` rounded to :data:`ROUND_DECIMALS`, self excluded, zero-variance
    genes excluded, keep ``> delta``, rank by value then lower index, top ``top_h`` per gene.
    """
    _check_params(X, top_h, delta)
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    n = X.shape[1]
    constant = X.max(axis=0) == X.min(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(X, rowvar=False).reshape(n, n)
    q = _quantize(np.nan_to_num(r))
    source, target, weight = [], [], []
    for i in range(n):
        if constant[i]:
            continue
        cand = [(-q[i, j], j) for j in range(n) if j != i and not constant[j] and q[i, j] > delta]
        for negv, j in sorted(cand)[:top_h]:
            source.append(j)
            target.append(i)
            weight.append(-negv)
    return np.array(source, dtype=np.int64), np.array(target, dtype=np.int64), np.array(weight, dtype=np.float64)


def bin_values(values: np.ndarray, n_bins: int, *, rng: np.random.Generator) -> np.ndarray:
    """scGPT's binning of one cell: zeros stay 0, non-zeros go to quantile bins ``1 .. n_bins - 1``.

    Edges are the quantiles of the cell's non-zero values at ``linspace(0, 1, n_bins - 1)``. A value
    equal to several edges (ties: in a typical cell most non-zero genes share the count 1) falls in
    a bin drawn uniformly between ``np.digitize`` 's right and left bins, as scGPT's ``side="both"``
    (there from the global numpy RNG; here from ``rng``, so a seed fixes it).
    """
    # scGPT scgpt/preprocess.py, _digitize(x, bins, side="both") called by Preprocessor binning
    out = np.zeros(values.shape, dtype=np.int64)
    nz = values > 0
    if not nz.any():
        return out
    x = values[nz]
    edges = np.quantile(x, np.linspace(0, 1, n_bins - 1))
    left = np.digitize(x, edges)
    right = np.digitize(x, edges, right=True)
    out[nz] = np.ceil(rng.random(x.size) * (right - left) + left).astype(np.int64)
    return out


def binned_layer(X, n_bins: int = 51, *, rng: np.random.Generator):
    """scGPT's per-cell value binning (``scgpt.preprocess.binning``, REFERENCE.md section 3) of every
    cell: :func:`bin_values` row by row, tie-breaking numbers drawn from ``rng`` in row order and,
    within a row, in the order of the stored non-zeros (pass sorted CSR for order-free results).

    Returns an array of the same kind as ``X`` (CSR float32 for sparse input, float32 ndarray for
    dense input) holding the bin numbers.
    """
    if n_bins < 3:
        raise InputError(f"n_bins must be >= 3 (scGPT uses 51), got {n_bins}.")
    sparse = sp.issparse(X)
    M = sp.csr_matrix(X, dtype=np.float64) if sparse else np.array(X, dtype=np.float64)
    if (M.data if sparse else M).size and (M.data if sparse else M).min() < 0:
        raise InputError("binned_layer expects non-negative (log-normalized) expression.")
    if sparse:
        out = M.copy()
        out.eliminate_zeros()
        for i in range(out.shape[0]):
            lo, hi = out.indptr[i], out.indptr[i + 1]
            if hi > lo:
                out.data[lo:hi] = bin_values(out.data[lo:hi], n_bins, rng=rng)
        return out.astype(np.float32)
    out = np.zeros_like(M, dtype=np.float32)
    for i, row in enumerate(M):
        out[i] = bin_values(row, n_bins, rng=rng)
    return out
