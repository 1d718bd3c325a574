"""Turning cells into token sequences (scGPT-style: non-zero genes, per-cell binned values).

Shapes: N cells, G genes, L tokens per cell (CLS + at most ``max_len`` genes).
Token ids: 0 = <pad>, 1 = <cls>, gene g -> g + 2. Value ids: 0 = zero / CLS, 1..n_bins-1 = bins,
n_bins = <pad> (scGPT keeps a separate pad value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

PAD_ID, CLS_ID, N_SPECIAL = 0, 1, 2


def bin_values(values: np.ndarray, n_bins: int) -> np.ndarray:
    """scGPT's per-cell binning of non-zero values into ``n_bins - 1`` quantile bins (1..n_bins-1).

    As scGPT's ``binning``: edges are the quantiles of the cell's non-zero values at
    ``linspace(0, 1, n_bins - 1)``, ids from ``np.digitize``; zeros stay 0.
    """
    out = np.zeros(values.shape, dtype=np.int64)
    nz = values > 0
    if not nz.any():
        return out
    edges = np.quantile(values[nz], np.linspace(0, 1, n_bins - 1))
    out[nz] = np.clip(np.digitize(values[nz], edges), 1, n_bins - 1)
    return out


@dataclass
class TokenizedCells:
    gene_ids: torch.Tensor  # (N, L) long
    value_ids: torch.Tensor  # (N, L) long
    padding: torch.Tensor  # (N, L) bool, True = pad

    def __len__(self) -> int:
        return self.gene_ids.shape[0]

    def batch(self, idx) -> "TokenizedCells":
        """Rows ``idx``, trimmed to the longest cell in the batch."""
        pad = self.padding[idx]
        length = int((~pad).sum(1).max())
        return TokenizedCells(self.gene_ids[idx, :length], self.value_ids[idx, :length], pad[:, :length])

    def to(self, device) -> "TokenizedCells":
        return TokenizedCells(self.gene_ids.to(device), self.value_ids.to(device), self.padding.to(device))


def tokenize_scgpt(X, *, n_bins: int, max_len: int, rng: np.random.Generator) -> TokenizedCells:
    """Tokenize log-normalized cells: CLS, then each cell's non-zero genes (random ``max_len`` if more,
    kept in gene order), values binned per cell."""
    X = sp.csr_matrix(X)
    n = X.shape[0]
    lengths = np.minimum(np.diff(X.indptr), max_len)
    L = 1 + int(lengths.max(initial=0))
    gene_ids = np.full((n, L), PAD_ID, dtype=np.int64)
    value_ids = np.full((n, L), n_bins, dtype=np.int64)
    gene_ids[:, 0], value_ids[:, 0] = CLS_ID, 0
    for i in range(n):  # one cell at a time: cells have different gene sets (not a hot path: once per epoch)
        cols, vals = X.indices[X.indptr[i] : X.indptr[i + 1]], X.data[X.indptr[i] : X.indptr[i + 1]]
        keep = np.flatnonzero(vals > 0)
        if len(keep) > max_len:
            keep = np.sort(rng.choice(keep, max_len, replace=False))
        binned = bin_values(vals, n_bins)
        gene_ids[i, 1 : 1 + len(keep)] = cols[keep] + N_SPECIAL
        value_ids[i, 1 : 1 + len(keep)] = binned[keep]
    gene_ids_t = torch.from_numpy(gene_ids)
    return TokenizedCells(gene_ids_t, torch.from_numpy(value_ids), gene_ids_t == PAD_ID)
