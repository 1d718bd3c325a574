"""Does a perturbation generator read the perturbation flag? Per method, from the run records.

Each ``scgpt-<kernel>`` run records ``flag_flip`` (:func:`scfmbench.perturbation.generator.flag_flip_share`:
one seeded cell per test condition, predicted with its perturbation flags set and cleared; the
share of the other genes whose prediction moves by more than ``tol``) and, for graph kernels, how
many perturbed genes have no edge to another gene and no path in the kernel's graph. This prints
them per method, mean over seeds::

    python -m scfmbench.bench.flagflip results/perturbation/perturb_synthetic
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def flag_flip_table(folder) -> pd.DataFrame:
    """One row per method: seeds, mean / min / max flag-flip share, perturbed genes without a gene
    edge and without a path (graph kernels), from ``<folder>/<method>/seed*/run.json``."""
    rows = []
    for path in sorted(Path(folder).glob("*/seed*/run.json")):
        rec = json.loads(path.read_text())
        flip = rec.get("flag_flip")
        if not flip or flip.get("changed_share") is None:
            continue
        graph = rec.get("graph") or {}
        rows.append(
            {
                "method": path.parent.parent.name,
                "seed": rec.get("seed"),
                "share": flip["changed_share"],
                "min": flip["min"],
                "max": flip["max"],
                "cells": flip["cells"],
                "cls_token": (rec.get("model") or {}).get("cls_token"),
                "perturbed": graph.get("perturbed_genes"),
                "without_gene_edge": graph.get("perturbed_without_gene_edge"),
                "without_path": graph.get("perturbed_without_path"),
            }
        )
    if not rows:
        return pd.DataFrame(
            columns=[
                "method",
                "seeds",
                "share",
                "min",
                "max",
                "cls_token",
                "perturbed",
                "without_gene_edge",
                "without_path",
            ]
        )
    df = pd.DataFrame(rows)
    agg = df.groupby("method").agg(
        seeds=("seed", "count"),
        share=("share", "mean"),
        min=("min", "min"),
        max=("max", "max"),
        cls_token=("cls_token", "first"),
        perturbed=("perturbed", "first"),
        without_gene_edge=("without_gene_edge", "mean"),
        without_path=("without_path", "mean"),
    )
    return agg.reset_index().replace({np.nan: None})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="results/perturbation/<dataset>")
    args = ap.parse_args(argv)
    print(flag_flip_table(args.folder).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
