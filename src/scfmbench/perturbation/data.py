"""Perturbation datasets in GEARS' layout: the contract, the checks, DE rankings (loading:
:mod:`scfmbench.perturbation.sources`).

The contract (what every perturbation dataset holds, real or synthetic; GEARS' ``perturb_processed.h5ad``,
``gears/data_utils.py`` ``get_DE_genes`` and ``get_dropout_non_zero_genes``):

``X``
    log1p-normalized expression **as distributed** (GEARS scores on it; it is never rebuilt here).
``var["gene_name"]``
    Gene symbols; conditions name genes by symbol. ``var_names`` stay as distributed because the
    ``uns`` rankings list ``var_names`` (GEARS' files use Ensembl-like ids there).
``obs["condition"]``
    ``ctrl``, ``A+ctrl`` (single), ``A+B`` (combo). Norman also has ``ctrl+A`` for some genes:
    kept as distributed, as its own condition, as GEARS does (GEARS scores ``A+ctrl`` and
    ``ctrl+A`` separately, so keeping them keeps our numbers comparable); both forms parse to the
    same gene (:func:`condition_genes`), so both always land on the same side of a split and both
    count as "seen" single perturbations for the additive baseline.
``obs["cell_type"], obs["dose_val"], obs["control"], obs["condition_name"]``
    ``condition_name = <cell_type>_<condition>_<dose_val>``; ``dose_val`` is ``1+1`` for every
    condition with two parts (singles included) and ``1`` for ``ctrl``; ``control`` 1 for ``ctrl``.
``uns``, keyed by ``condition_name`` (``ctrl`` excluded)
    ``rank_genes_groups_cov_all`` (every gene, scanpy t-test vs ``<cell_type>_ctrl_1``,
    ``rankby_abs``), ``non_zeros_gene_idx``, ``non_dropout_gene_idx``, ``top_non_dropout_de_20``,
    ``top_non_zero_de_20``.

:func:`gears_layout` writes obs and uns the GEARS way for data that lack them (the synthetic set);
:func:`check_perturbation_data` checks the contract with errors that name the condition or gene.
"""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scfmbench import InputError

log = logging.getLogger(__name__)

CTRL = "ctrl"
UNS_KEYS = (
    "rank_genes_groups_cov_all",
    "non_zeros_gene_idx",
    "non_dropout_gene_idx",
    "top_non_dropout_de_20",
    "top_non_zero_de_20",
)
N_DE = 20


def condition_genes(condition: str) -> tuple[str, ...]:
    """The perturbed genes of a GEARS condition: ``A+ctrl`` and ``ctrl+A`` -> (A,); ``A+B`` -> (A, B);
    ``ctrl`` -> (). Anything else is an :class:`InputError` naming the condition."""
    condition = str(condition)
    if condition == CTRL:
        return ()
    parts = condition.split("+")
    if len(parts) != 2 or any(not p or p != p.strip() for p in parts):
        raise InputError(
            f"condition {condition!r} is not in GEARS form: 'ctrl', 'A+ctrl' (single) or 'A+B' (combo) "
            "with gene symbols from var['gene_name']"
        )
    genes = tuple(p for p in parts if p != CTRL)
    if not genes or (len(genes) == 2 and genes[0] == genes[1]):
        raise InputError(f"condition {condition!r} is not in GEARS form: 'ctrl+ctrl' and 'A+A' are not perturbations")
    return genes


def is_combo(condition: str) -> bool:
    return len(condition_genes(condition)) == 2


def condition_name(cell_type: str, condition: str) -> str:
    """GEARS' ``condition_name``: ``<cell_type>_<condition>_<dose_val>`` (``1+1`` for two parts)."""
    return f"{cell_type}_{condition}_{'1' if condition == CTRL else '1+1'}"


def gene_names(adata: ad.AnnData) -> np.ndarray:
    """Gene symbols (``var['gene_name']``, else ``var_names``)."""
    return np.asarray(adata.var["gene_name"] if "gene_name" in adata.var else adata.var_names).astype(str)


def genes_outside_panel(conditions, symbols) -> dict[str, dict[str, int]]:
    """Every perturbed gene of the (per-cell) ``conditions`` that is not among ``symbols``, with how
    many conditions perturb it and how many cells those conditions hold (in gene order)."""
    counts = pd.Series(np.asarray(conditions).astype(str)).value_counts()
    symbols = set(np.asarray(symbols).astype(str))
    out: dict[str, dict[str, int]] = {}
    for c, n in counts.items():
        for g in condition_genes(c):
            if g not in symbols:
                entry = out.setdefault(g, {"conditions": 0, "cells": 0})
                entry["conditions"] += 1
                entry["cells"] += int(n)
    return dict(sorted(out.items()))


def describe_missing(missing: dict[str, dict[str, int]]) -> str:
    """``'A (2 conditions, 40 cells), B (1 condition, 12 cells)'``."""
    return ", ".join(
        f"{g} ({v['conditions']} condition{'s' * (v['conditions'] != 1)}, {v['cells']} cell{'s' * (v['cells'] != 1)})"
        for g, v in missing.items()
    )


def check_perturbation_data(adata: ad.AnnData, *, where: str = "perturbation data", uns: bool = True) -> None:
    """Raise :class:`InputError` naming what breaks the contract (module docstring): a condition not
    in GEARS form, no control cells, a perturbed gene missing from ``var``, missing uns rankings."""
    if "condition" not in adata.obs:
        raise InputError(
            f"{where}: obs has no 'condition' column (GEARS: 'ctrl', 'A+ctrl', 'A+B'); columns "
            f"are {list(adata.obs.columns)}"
        )
    conditions = pd.unique(adata.obs["condition"].astype(str))
    if CTRL not in conditions:
        raise InputError(
            f"{where}: no control cells (no obs['condition'] == 'ctrl'); GEARS pairs every "
            "perturbed cell with a control cell"
        )
    missing = genes_outside_panel(adata.obs["condition"], gene_names(adata))
    if missing:
        listed = "; ".join(
            (
                f"gene {g!r}, which is not in var['gene_name'], is perturbed in {v['conditions']} "
                f"condition(s), {v['cells']} cell(s)"
            )
            for g, v in missing.items()
        )
        raise InputError(
            f"{where}: {len(missing)} perturbed gene(s) outside the panel: {listed} (GEARS keeps every perturbed "
            "gene in the panel; drop those conditions or add the genes)"
        )
    if not uns:
        return
    for key in ("condition_name", "cell_type"):
        if key not in adata.obs:
            raise InputError(
                f"{where}: obs has no {key!r} column; build the GEARS layout with "
                "scfmbench.perturbation.data.gears_layout"
            )
    missing = [k for k in UNS_KEYS if k not in adata.uns]
    if missing:
        raise InputError(f"{where}: uns lacks {missing}; build them with scfmbench.perturbation.data.gears_layout")
    names = pd.unique(adata.obs.loc[adata.obs["condition"].astype(str) != CTRL, "condition_name"].astype(str))
    for n in names:
        for k in UNS_KEYS:
            if n not in adata.uns[k]:
                raise InputError(f"{where}: uns[{k!r}] has no entry for condition_name {n!r}")


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def condition_means(adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
    """(conditions, (C, G) mean of X per condition), conditions sorted."""
    cond = adata.obs["condition"].astype(str).to_numpy()
    names, codes = np.unique(cond, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(len(cond)), (codes, np.arange(len(cond)))), shape=(len(names), len(cond)))
    sums = onehot @ (adata.X if sp.issparse(adata.X) else np.asarray(adata.X))
    means = _dense(sums) / np.bincount(codes)[:, None]
    return names, means


def control_mean(adata: ad.AnnData) -> np.ndarray:
    """The float64 mean of X over the control cells: the ``ctrl`` of every delta metric and the
    ``no_change`` prediction, computed once here so that both are the same numbers (``no_change``'s
    delta is then exactly 0, an exactly constant side: GEARS' NaN, scored 0)."""
    rows = np.flatnonzero(adata.obs["condition"].astype(str).to_numpy() == CTRL)
    if not len(rows):
        raise InputError("no control cells (obs['condition'] == 'ctrl') to average")
    x = adata.X[rows]
    x = (
        x.astype(np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    )  # float64 sums (scipy sums float32 data in float32)
    return np.asarray(x.sum(0), dtype=np.float64).ravel() / len(rows)


def rank_genes_vs_control(adata: ad.AnnData) -> dict[str, list[str]]:
    """GEARS' ``rank_genes_groups_by_cov``: per cell type, scanpy ``rank_genes_groups`` (t-test) of
    every ``condition_name`` against ``<cell_type>_ctrl_1``, ``rankby_abs=True``, all genes, on X.
    Returns ``condition_name -> var_names in rank order`` (controls excluded)."""
    import scanpy as sc

    out: dict[str, list[str]] = {}
    for cell_type in pd.unique(adata.obs["cell_type"].astype(str)):
        sub = adata[adata.obs["cell_type"].astype(str).to_numpy() == cell_type].copy()
        sub.obs["condition_name"] = sub.obs["condition_name"].astype(str).astype("category")
        reference = condition_name(cell_type, CTRL)
        with warnings.catch_warnings():  # scanpy fills its result frame column by column (pandas PerformanceWarning)
            warnings.simplefilter("ignore", category=pd.errors.PerformanceWarning)
            sc.tl.rank_genes_groups(
                sub,
                groupby="condition_name",
                reference=reference,
                rankby_abs=True,
                n_genes=sub.n_vars,
                use_raw=False,
                method="t-test",
            )
        names = pd.DataFrame(sub.uns["rank_genes_groups"]["names"])
        for group in names.columns:
            out[str(group)] = names[group].astype(str).tolist()
    return out


def gears_layout(adata: ad.AnnData, *, cell_type: str | None = None) -> ad.AnnData:
    """Write GEARS' obs columns and uns rankings onto ``adata`` (in place; returned).

    As ``gears/data_utils.py``: ``get_DE_genes`` (dose_val, control, condition_name, DE rankings)
    then ``get_dropout_non_zero_genes``: per condition, genes whose mean is non-zero
    (``non_zeros_gene_idx``), plus genes zero in both the condition and the control mean
    (``non_dropout_gene_idx``); the first 20 DE genes within each (``top_non_*_de_20``, as var_names).
    """
    check_perturbation_data(adata, where="gears_layout", uns=False)
    if "gene_name" not in adata.var:
        adata.var["gene_name"] = adata.var_names.astype(str)
    if cell_type is not None or "cell_type" not in adata.obs:
        adata.obs["cell_type"] = cell_type or "cells"
    cond = adata.obs["condition"].astype(str)
    adata.obs["dose_val"] = np.where(cond == CTRL, "1", "1+1")
    adata.obs["control"] = (cond == CTRL).astype(int).to_numpy()
    adata.obs["condition_name"] = [condition_name(t, c) for t, c in zip(adata.obs["cell_type"].astype(str), cond)]
    ranks = rank_genes_vs_control(adata)
    names, means = condition_means(adata)
    ctrl = means[list(names).index(CTRL)]
    index = {g: i for i, g in enumerate(adata.var_names.astype(str))}
    to_cond = dict(zip(adata.obs["condition_name"].astype(str), cond))
    uns = {k: {} for k in UNS_KEYS}
    for name, ranked in ranks.items():
        mean = means[list(names).index(to_cond[name])]
        non_zero = np.flatnonzero(mean != 0)
        non_dropout = np.sort(np.concatenate([non_zero, np.flatnonzero((mean == 0) & (ctrl == 0))]))
        order = np.array([index[g] for g in ranked])
        uns["rank_genes_groups_cov_all"][name] = np.asarray(ranked, dtype=object).astype(str)
        uns["non_zeros_gene_idx"][name] = non_zero
        uns["non_dropout_gene_idx"][name] = non_dropout
        uns["top_non_dropout_de_20"][name] = adata.var_names.to_numpy()[
            order[np.isin(order, non_dropout)][:N_DE]
        ].astype(str)
        uns["top_non_zero_de_20"][name] = adata.var_names.to_numpy()[order[np.isin(order, non_zero)][:N_DE]].astype(str)
    adata.uns.update(uns)
    return adata
