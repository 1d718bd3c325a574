"""Gene graphs (GenoHoption's Seq2Graph): regulatory-database readers, symbol matching,
co-expression edges and the per-dataset graph.

- :mod:`~scfmbench.graphs.readers`: one reader per database format, one normalized edge table.
- :mod:`~scfmbench.graphs.symbols`: Excel-date repair and case/alias-insensitive gene matching.
- :mod:`~scfmbench.graphs.coexpression`: blockwise top-H |Pearson| partners, scGPT binning.
- :mod:`~scfmbench.graphs.build`: the union graph with self-loops and a CLS node; save/load/stats.
"""

from scfmbench.graphs.build import GeneGraph, build_gene_graph, graph_stats, load_graph, save_graph
from scfmbench.graphs.coexpression import binned_layer, coexpression_edges, coexpression_edges_reference
from scfmbench.graphs.readers import READERS, ReadReport, read_grn
from scfmbench.graphs.symbols import MatchResult, match_edges, repair_excel_symbol, symbol_key

__all__ = [
    "GeneGraph",
    "build_gene_graph",
    "graph_stats",
    "load_graph",
    "save_graph",
    "binned_layer",
    "coexpression_edges",
    "coexpression_edges_reference",
    "READERS",
    "ReadReport",
    "read_grn",
    "MatchResult",
    "match_edges",
    "repair_excel_symbol",
    "symbol_key",
]
