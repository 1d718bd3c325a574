"""Seq2Graph: one gene graph per dataset (GenoHoption; REFERENCE.md section 1).

The graph is the union of

* regulatory edges (TF -> target) from the configured databases, matched onto the dataset's genes
  (:func:`scfmbench.graphs.symbols.match_edges`), and
* co-expression edges (neighbour -> gene) from the training cells
  (:func:`scfmbench.graphs.coexpression.coexpression_edges`),

plus a self-loop on every node and, with ``add_cls``, a CLS node joined to every gene in both
directions. Edges are unweighted, as in the official code.

**Layout** (the contract for everything downstream):

* node 0 is the CLS node when ``has_cls``; gene ``g`` (position in the dataset's ``var_names``) is
  node ``g + 1``. Without CLS, gene ``g`` is node ``g``. :meth:`GeneGraph.gene_node` does the shift.
* ``adjacency`` is a scipy CSR matrix of 0/1 ``int8``, rows = target, columns = source:
  ``A[i, j] = 1`` iff there is an edge ``j -> i``. Row ``i`` thus lists the nodes that node ``i``
  attends to (its incoming edges, over which attention is softmaxed), and diffusion is ``A @ V``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench._io import atomic_path
from scfmbench.graphs.coexpression import coexpression_edges
from scfmbench.graphs.symbols import match_edges

__all__ = ["GeneGraph", "build_gene_graph", "save_graph", "load_graph", "graph_stats"]

_FORMAT_VERSION = 1


@dataclass
class GeneGraph:
    """A dataset's gene graph (layout in the module docstring).

    Attributes
    ----------
    adjacency
        ``(n_nodes, n_nodes)`` CSR int8, ``A[i, j] = 1`` iff edge ``j -> i`` (with ``multigraph``:
        the edge's multiplicity).
    gene_names
        The dataset's ``var_names`` in order (str array).
    has_cls
        Whether node 0 is the CLS node.
    edge_counts
        Distinct gene-gene edges (no self-loops, no CLS) contributed by each source: one entry per
        database, ``"coexpression"``, ``"regulatory"`` (union of databases), ``"overlap"``
        (regulatory and co-expression), ``"gene_gene"`` (union of all).
    match_counts
        Per database: ``edges, matched, unmatched, genes, genes_matched, match_rate``
        (:class:`scfmbench.graphs.symbols.MatchResult`).
    genes_matched
        Number of dataset genes found in at least one database.
    params
        The build parameters (``top_h, delta, use_grn, use_coexpr, add_cls``).
    """

    adjacency: sp.csr_matrix
    gene_names: np.ndarray
    has_cls: bool
    edge_counts: dict[str, int] = field(default_factory=dict)
    match_counts: pd.DataFrame = field(default_factory=pd.DataFrame)
    genes_matched: int = 0
    params: dict = field(default_factory=dict)

    @property
    def n_genes(self) -> int:
        return len(self.gene_names)

    @property
    def n_nodes(self) -> int:
        return self.adjacency.shape[0]

    def gene_node(self, gene_index):
        """Node index of dataset gene ``gene_index`` (shifted by one when there is a CLS node)."""
        return np.asarray(gene_index) + int(self.has_cls)


def _pair_codes(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    return np.unique(dst.astype(np.int64) * n + src.astype(np.int64))


def build_gene_graph(
    var_names,
    train_X,
    edge_tables,
    *,
    top_h: int = 20,
    delta: float = 0.4,
    use_grn: bool = True,
    use_coexpr: bool = True,
    add_cls: bool = True,
    block_size: int = 1024,
    multigraph: bool = False,
) -> GeneGraph:
    """Build the Seq2Graph gene graph of one dataset.

    Parameters
    ----------
    var_names
        The dataset's gene symbols, in the order the model sees them.
    train_X
        Training cells x genes (log-normalized or binned), columns aligned with ``var_names``;
        only training rows, so held-out cells cannot shape the graph. May be ``None`` when
        ``use_coexpr`` is False.
    edge_tables
        Normalized edge tables (:mod:`scfmbench.graphs.readers`), one per database, or one
        concatenated table.
    top_h, delta, block_size
        Co-expression parameters (:func:`~scfmbench.graphs.coexpression.coexpression_edges`).
    use_grn, use_coexpr, add_cls
        Ablation switches: regulatory edges, co-expression edges, the CLS node.
    multigraph
        False (default): every edge once. True: the official code's DGL multigraph, whose
        parallel edges each count in the softmax: the adjacency holds multiplicities, an edge in
        both the regulatory and the co-expression part 2, a gene's self-loop 1 + 1 from the
        co-expression part (its top H + 1 partners include itself) + 1 for a regulatory self-edge,
        the CLS self-loop 2 (its global edges and ``dgl.add_self_loop``), CLS edges 1.

    Raises
    ------
    InputError
        ``use_grn`` and no dataset gene occurs in any of the databases (wrong species or gene-ID
        type, e.g. Ensembl IDs against symbols), or shapes that do not line up. With ``use_grn``
        False the same situation only warns (the match is still reported).
    """
    names = np.asarray([str(v) for v in var_names])
    n_genes = len(names)
    if n_genes == 0:
        raise InputError("build_gene_graph: the dataset has no genes.")
    if use_coexpr:
        if train_X is None:
            raise InputError("build_gene_graph: use_coexpr=True needs the training matrix train_X.")
        if train_X.shape[1] != n_genes:
            raise InputError(
                f"build_gene_graph: train_X has {train_X.shape[1]} columns but there are {n_genes} gene names."
            )
        if train_X.shape[0] < 2:
            raise InputError(
                f"build_gene_graph: co-expression needs at least 2 training cells, got {train_X.shape[0]}."
            )

    if isinstance(edge_tables, pd.DataFrame):
        edge_tables = [edge_tables]
    edge_tables = [t for t in edge_tables if t is not None]
    edges = (
        pd.concat([t[["source", "target", "database"]] for t in edge_tables], ignore_index=True)
        if edge_tables
        else pd.DataFrame({"source": [], "target": [], "database": []}, dtype=str)
    )

    if use_grn and not edge_tables:
        raise InputError(
            "build_gene_graph: use_grn=True but no regulatory edge table was given (configure at least one "
            "database, or set use_grn=False)."
        )
    counts: dict[str, int] = {}
    match = match_edges(edges, names)
    n_matched = int(match.genes_matched.sum())
    if n_matched == 0 and edge_tables:
        dbs = sorted(set(edges["database"])) or ["(none configured)"]
        msg = (
            f"none of the dataset's {n_genes} genes (e.g. {list(names[:3])}) occurs in the regulatory "
            f"databases {dbs}. Are the var_names gene symbols of the right species?"
        )
        if use_grn:
            raise InputError(f"build_gene_graph: {msg}")
        warnings.warn(f"build_gene_graph (use_grn=False): {msg}", stacklevel=2)

    codes = []
    if use_grn:
        for db in pd.unique(match.database):
            sel = match.database == db
            counts[str(db)] = len(_pair_codes(match.source[sel], match.target[sel], n_genes))
        reg = _pair_codes(match.source, match.target, n_genes)
        counts["regulatory"] = len(reg)
        codes.append(reg)
    if use_coexpr:
        src, dst, _ = coexpression_edges(train_X, top_h=top_h, delta=delta, block_size=block_size)
        co = _pair_codes(src, dst, n_genes)
        counts["coexpression"] = len(co)
        if use_grn:
            counts["overlap"] = len(np.intersect1d(co, codes[0], assume_unique=True))
        codes.append(co)
    all_codes = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    gene_codes = np.unique(all_codes)
    counts["gene_gene"] = len(gene_codes)

    off = int(add_cls)
    n_nodes = n_genes + off
    # GenoHoption utils.py generate_g: an outer merge of the two edge tables (an edge in both stays
    # twice), co-expression's own self pairs, then dgl.add_self_loop; the multigraph keeps each.
    dst, src = np.divmod(all_codes if multigraph else gene_codes, n_genes)
    loops = np.arange(n_nodes)
    parts_dst = [dst + off, loops]
    parts_src = [src + off, loops]
    if multigraph:
        extra = np.arange(off, n_nodes) if use_coexpr else np.zeros(0, dtype=np.int64)  # co-expression self pairs
        extra = np.concatenate([extra, [0]]) if add_cls else extra  # the CLS self-loop from its global edges
        parts_dst.append(extra)
        parts_src.append(extra)
    if add_cls:
        genes = np.arange(1, n_nodes)
        parts_dst += [genes, np.zeros(n_genes, dtype=np.int64)]  # CLS -> gene, gene -> CLS
        parts_src += [np.zeros(n_genes, dtype=np.int64), genes]
    rows = np.concatenate(parts_dst)
    cols = np.concatenate(parts_src)
    A = sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n_nodes, n_nodes))
    A.sum_duplicates()
    if not multigraph:
        A.data[:] = 1
    A.sort_indices()
    return GeneGraph(
        adjacency=A,
        gene_names=names,
        has_cls=bool(add_cls),
        edge_counts=counts,
        match_counts=match.counts,
        genes_matched=n_matched,
        params={
            "top_h": int(top_h),
            "delta": float(delta),
            "use_grn": bool(use_grn),
            "use_coexpr": bool(use_coexpr),
            "add_cls": bool(add_cls),
            "multigraph": bool(multigraph),
        },
    )


def save_graph(graph: GeneGraph, path: str | os.PathLike) -> None:
    """Write ``graph`` as a compressed ``.npz`` (atomic): CSR arrays, gene names, counts as JSON."""
    A = graph.adjacency.tocsr()
    meta = {
        "format_version": _FORMAT_VERSION,
        "has_cls": graph.has_cls,
        "edge_counts": graph.edge_counts,
        "match_counts": {"columns": list(graph.match_counts.columns), "data": graph.match_counts.to_numpy().tolist()},
        "genes_matched": graph.genes_matched,
        "params": graph.params,
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy would append ".npz" to a bare name
            np.savez_compressed(
                fh,
                indptr=A.indptr.astype(np.int64),
                indices=A.indices.astype(np.int32),
                shape=np.asarray(A.shape, dtype=np.int64),
                gene_names=np.asarray(graph.gene_names, dtype=str),
                meta_json=np.asarray(json.dumps(meta, sort_keys=True)),
                **({"multiplicity": A.data.astype(np.int8)} if graph.params.get("multigraph") else {}),
            )


def load_graph(path: str | os.PathLike) -> GeneGraph:
    """Read a graph written by :func:`save_graph`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            indptr, indices, shape = z["indptr"], z["indices"], tuple(int(s) for s in z["shape"])
            names = z["gene_names"].astype(str)
            meta = json.loads(str(z["meta_json"]))
            data = z["multiplicity"] if "multiplicity" in z.files else np.ones(indices.size, dtype=np.int8)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: not a gene-graph file written by save_graph ({exc}).") from None
    if meta.get("format_version") != _FORMAT_VERSION:
        raise InputError(
            f"{path}: gene-graph format version {meta.get('format_version')}; this code reads {_FORMAT_VERSION}."
        )
    A = sp.csr_matrix((data, indices, indptr), shape=shape)
    return GeneGraph(
        adjacency=A,
        gene_names=names,
        has_cls=bool(meta["has_cls"]),
        edge_counts={k: int(v) for k, v in meta["edge_counts"].items()},
        match_counts=pd.DataFrame(meta["match_counts"]["data"], columns=meta["match_counts"]["columns"]),
        genes_matched=int(meta["genes_matched"]),
        params=meta["params"],
    )


def graph_stats(graph: GeneGraph) -> dict:
    """Summary numbers of a graph (for logs and the report).

    ``genes``, ``nodes``, ``edges`` (all non-zeros, self-loops and CLS included),
    ``mean_in_degree`` (incoming edges per gene node, all included: what one attention row sees),
    ``mean_in_degree_gene_gene`` (gene-gene edges only, no self-loop or CLS: comparable to the
    paper's Table IV degrees), ``edges_per_database``, ``regulatory_edges``,
    ``coexpression_edges``, ``overlap_edges``, ``genes_matched`` and ``match_rate`` (fraction of
    the dataset's genes found in any database).
    """
    A = graph.adjacency
    off = int(graph.has_cls)
    indeg = np.diff(A.indptr)[off:]
    c = graph.edge_counts
    special = {"regulatory", "coexpression", "overlap", "gene_gene"}
    return {
        "genes": graph.n_genes,
        "nodes": graph.n_nodes,
        "has_cls": graph.has_cls,
        "edges": int(A.nnz),
        "mean_in_degree": float(indeg.mean()) if indeg.size else 0.0,
        "mean_in_degree_gene_gene": c.get("gene_gene", 0) / graph.n_genes,
        "edges_per_database": {k: v for k, v in c.items() if k not in special},
        "regulatory_edges": c.get("regulatory", 0),
        "coexpression_edges": c.get("coexpression", 0),
        "overlap_edges": c.get("overlap", 0),
        "genes_matched": graph.genes_matched,
        "match_rate": graph.genes_matched / graph.n_genes,
    }
