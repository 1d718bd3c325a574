"""Shared fixtures: a tiny prepared dataset built once and copied per test.

Thread pools are limited to one thread: on a 2-core machine BLAS/OpenMP/torch oversubscription makes
small fits 10-100x slower, and tests never need more.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


def make_raw(n_cells: int = 120, n_genes: int = 40, n_types: int = 3, seed: int = 0):
    """A raw dataset (loaders' output) whose cell types differ in a block of genes each."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    types = np.array([f"t{i}" for i in range(n_types)])[np.arange(n_cells) % n_types]
    mu = np.full((n_cells, n_genes), 2.0)
    for i in range(n_types):
        mu[types == f"t{i}", i * (n_genes // n_types) : (i + 1) * (n_genes // n_types)] = 12.0
    counts = sp.csr_matrix(rng.poisson(mu).astype(np.float32))
    adata = ad.AnnData(
        X=counts.copy(),
        obs=pd.DataFrame({"cell_type": pd.Categorical(types)}, index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)]),
    )
    adata.layers["counts"] = counts
    adata.uns["provenance"] = {"source": "test", "inputs_sha256": {}}
    return adata


@pytest.fixture(scope="session")
def _prepared_once():
    from scfmbench.data.prepare import prepare_dataset

    return prepare_dataset(make_raw(), seed=0)


@pytest.fixture
def prepared(_prepared_once):
    return _prepared_once.copy()


@pytest.fixture
def schema_path():
    return REPO / "workflow" / "schemas" / "config.schema.yaml"
