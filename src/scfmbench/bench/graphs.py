"""Wall time and memory of the gene-graph pipeline (Seq2Graph).

Usage::

    python -m scfmbench.bench.graphs [--n-genes 20000] [--n-cells 10000] [--density 0.1]
        [--top-h 20] [--delta 0.4] [--block-size 1024] [--dtype float32]
        [--panel-genes 3000] [--panel-cells 2000] [--grn-dir DIR] [--skip-coexpr] [--skip-graph]
        [--seed 0] [--json PATH]

(a) **Co-expression** on synthetic sparse log-normalized data (``--n-genes`` x ``--n-cells``,
``--density`` non-zero, genes in modules so that correlated partners exist):
:func:`~scfmbench.graphs.coexpression.coexpression_edges` timed once after a small warm-up call
(BLAS start-up). ``peak_rss_delta_mb`` is the process's peak resident set while the call runs
(psutil sampled every 10 ms) minus the resident set just before it, i.e. the standardized matrix,
slabs and candidates but not the input. Targets on a 2-core machine: <= 120 s, <= 4 GiB.

(b) **Graph** from all DGP-AMIO ``edges_*.csv`` files plus TRRUST and CollecTRI for a panel of
``--panel-genes`` symbols drawn (seeded) from the names in those files, with co-expression on
``--panel-cells`` synthetic training cells: reading time and build time
(:func:`~scfmbench.graphs.build.build_gene_graph`), plus the graph's statistics. Target <= 30 s.

``--grn-dir`` defaults to ``../shared/data/grn`` beside the repository root (the layout
``dgp-amio/``, ``trrust-v2/``, ``collectri-dorothea/``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

DEFAULT_GRN_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "grn"


def synthetic_lognormalized(
    n_cells: int, n_genes: int, *, density: float = 0.1, genes_per_module: int = 50, sigma: float = 1.5, seed: int = 0
) -> sp.csr_matrix:
    """Sparse cells x genes float32 matrix shaped like log-normalized expression.

    Genes fall into modules of about ``genes_per_module``; each cell has a log-normal activity
    (``sigma``, mean 1) per module, which sets both the chance that a gene of the module is
    detected (``density * activity``, capped at 1, so the non-zero fraction comes out a little
    under ``density``) and its value ``log1p(activity * gamma noise * 2)``. Genes of one module
    therefore correlate (|r| about 0.5-0.65), others do not. Built in chunks of 500 cells, so no
    dense cells x genes array is ever held.
    """
    rng = np.random.default_rng(seed)
    n_modules = max(1, n_genes // genes_per_module)
    module = rng.integers(0, n_modules, n_genes)
    blocks = []
    for s in range(0, n_cells, 500):
        n = min(500, n_cells - s)
        activity = (rng.lognormal(0.0, sigma, (n, n_modules)) / np.exp(sigma**2 / 2)).astype(np.float32)
        p = np.minimum(density * activity[:, module], 1.0)
        mask = rng.random((n, n_genes), dtype=np.float32) < p
        del p
        rows, cols = np.nonzero(mask)
        del mask
        values = np.log1p(activity[rows, module[cols]] * rng.gamma(4.0, 0.5, rows.size).astype(np.float32) * 2.0)
        blocks.append(sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=(n, n_genes)))
    return sp.vstack(blocks, format="csr")


class _PeakRSS:
    """Peak resident set (bytes) of this process while the block runs, sampled by a thread."""

    def __init__(self, interval: float = 0.01):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.baseline = self.peak = 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self):
        self.baseline = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


def bench_coexpression(
    *, n_genes: int, n_cells: int, density: float, top_h: int, delta: float, block_size: int, dtype: str, seed: int
) -> dict:
    from scfmbench.graphs.coexpression import coexpression_edges

    t0 = time.perf_counter()
    X = synthetic_lognormalized(n_cells, n_genes, density=density, seed=seed)
    gen_s = time.perf_counter() - t0
    coexpression_edges(X[:200, :256], top_h=top_h, delta=delta, block_size=64, dtype=dtype)  # warm-up
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        src, dst, _ = coexpression_edges(X, top_h=top_h, delta=delta, block_size=block_size, dtype=dtype)
        elapsed = time.perf_counter() - t0
    return {
        "n_genes": n_genes,
        "n_cells": n_cells,
        "nnz_fraction": X.nnz / (n_genes * n_cells),
        "generate_s": round(gen_s, 2),
        "time_s": round(elapsed, 2),
        "peak_rss_delta_mb": round(mem.delta_mb, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "edges": int(src.size),
        "mean_in_degree": src.size / n_genes,
        "genes_without_partner": int(n_genes - np.unique(dst).size),
    }


def grn_files(grn_dir: Path) -> list[tuple[Path, str]]:
    """(path, format) of every DGP-AMIO file plus TRRUST (human) and CollecTRI under ``grn_dir``."""
    files = [(p, "dgp_amio") for p in sorted((grn_dir / "dgp-amio").glob("edges_*.csv"))]
    files += [
        (grn_dir / "trrust-v2" / "trrust_rawdata.human.tsv", "trrust"),
        (grn_dir / "collectri-dorothea" / "collectri.csv", "collectri"),
    ]
    missing = [str(p) for p, _ in files if not p.is_file()]
    if missing or len(files) < 3:
        raise SystemExit(
            f"regulatory files missing under {grn_dir}: {missing or 'dgp-amio/edges_*.csv'} (use --grn-dir)"
        )
    return files


def bench_graph(
    *, grn_dir: Path, panel_genes: int, panel_cells: int, top_h: int, delta: float, block_size: int, seed: int
) -> dict:
    import pandas as pd

    from scfmbench.graphs.build import build_gene_graph, graph_stats
    from scfmbench.graphs.readers import read_grn
    from scfmbench.graphs.symbols import symbol_key

    t0 = time.perf_counter()
    tables = [read_grn(p, fmt) for p, fmt in grn_files(grn_dir)]
    read_s = time.perf_counter() - t0
    names = pd.Series(pd.unique(pd.concat([pd.concat([t["source"], t["target"]]) for t in tables])).astype(str))
    # one spelling per gene (databases disagree on case, e.g. C19orf10 / C19ORF10), sorted for the seed
    names = np.sort(names[~names.map(symbol_key).duplicated()].to_numpy())
    rng = np.random.default_rng(seed)
    panel = rng.choice(names, size=min(panel_genes, names.size), replace=False)
    X = synthetic_lognormalized(panel_cells, panel.size, seed=seed)
    t0 = time.perf_counter()
    graph = build_gene_graph(panel, X, tables, top_h=top_h, delta=delta, block_size=block_size)
    build_s = time.perf_counter() - t0
    stats = graph_stats(graph)
    return {
        "databases": [t.attrs["read_report"]["database"] for t in tables],
        "database_edges": int(sum(len(t) for t in tables)),
        "panel_genes": int(panel.size),
        "panel_cells": panel_cells,
        "read_s": round(read_s, 2),
        "build_s": round(build_s, 2),
        "total_s": round(read_s + build_s, 2),
        **stats,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scfmbench.bench.graphs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-genes", type=int, default=20000)
    ap.add_argument("--n-cells", type=int, default=10000)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--top-h", type=int, default=20)
    ap.add_argument("--delta", type=float, default=0.4)
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--panel-genes", type=int, default=3000)
    ap.add_argument("--panel-cells", type=int, default=2000)
    ap.add_argument("--grn-dir", type=Path, default=DEFAULT_GRN_DIR)
    ap.add_argument("--skip-coexpr", action="store_true")
    ap.add_argument("--skip-graph", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here (atomic)")
    args = ap.parse_args(argv)

    results = {}
    if not args.skip_coexpr:
        r = bench_coexpression(
            n_genes=args.n_genes,
            n_cells=args.n_cells,
            density=args.density,
            top_h=args.top_h,
            delta=args.delta,
            block_size=args.block_size,
            dtype=args.dtype,
            seed=args.seed,
        )
        results["coexpression"] = r
        print(
            f"(a) co-expression {r['n_genes']} genes x {r['n_cells']} cells ({r['nnz_fraction']:.1%} non-zero, "
            f"{args.dtype}, block {args.block_size}): {r['time_s']:.1f} s, peak RSS "
            f"+{r['peak_rss_delta_mb']:.0f} MiB (process ru_maxrss {r['ru_maxrss_mb']:.0f} MiB); {r['edges']} "
            f"edges, mean in-degree {r['mean_in_degree']:.1f}",
            flush=True,
        )
    if not args.skip_graph:
        r = bench_graph(
            grn_dir=args.grn_dir,
            panel_genes=args.panel_genes,
            panel_cells=args.panel_cells,
            top_h=args.top_h,
            delta=args.delta,
            block_size=args.block_size,
            seed=args.seed,
        )
        results["graph"] = r
        print(
            f"(b) graph for {r['panel_genes']} genes from {len(r['databases'])} databases ({r['database_edges']} "
            f"edges): read {r['read_s']:.1f} s + build {r['build_s']:.1f} s = {r['total_s']:.1f} s; {r['edges']} "
            f"adjacency entries, regulatory {r['regulatory_edges']}, co-expression {r['coexpression_edges']}, mean "
            f"in-degree {r['mean_in_degree']:.1f}, match rate {r['match_rate']:.2f}",
            flush=True,
        )
        print(
            "    edges per database: " + ", ".join(f"{k} {v}" for k, v in r["edges_per_database"].items()), flush=True
        )
    if args.json:
        from scfmbench._io import write_json

        write_json(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
