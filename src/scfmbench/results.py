"""The result contract: what every method job writes and what a metrics record holds.

Paths (written out in full in the rule files)::

    results/annotation/{dataset}/{method}/seed{seed}/predictions.csv   # cell_id, predicted
    results/annotation/{dataset}/{method}/seed{seed}/metrics.csv       # METRIC_COLUMNS
    results/imputation/{dataset}/{method}/seed{seed}/predictions.npz   # values at the masked entries
    results/imputation/{dataset}/{method}/seed{seed}/metrics.csv       # METRIC_COLUMNS
    results/denoising/{dataset}/{method}/seed{seed}/predictions.npz    # denoised train part (MCV)
    results/denoising/{dataset}/{method}/seed{seed}/metrics.csv        # METRIC_COLUMNS
    results/embedding/{dataset}/{method}/seed{seed}/embedding.npz      # every cell's embedding (scfmbench.embedding)
    results/embedding/{dataset}/{method}/seed{seed}/metrics.csv        # METRIC_COLUMNS ({method}-zeroshot:
                                                                       # before fine-tuning)
    results/report/metrics.csv                                         # every record, same columns

A metrics record is tidy: one row per metric. ``runtime_s`` and ``peak_mem_mb`` are the method job's
wall time and peak resident memory, read from its Snakemake ``benchmark:`` file, so a method added as
a rule file gets them without writing any measuring code.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from scfmbench import InputError
from scfmbench._io import write_csv

METRIC_COLUMNS = ["task", "dataset", "method", "seed", "metric", "value", "runtime_s", "peak_mem_mb"]
# "imputation": the masking protocol; "denoising": molecular cross-validation (scfmbench.impute.mcv).
# "embedding": cell embeddings of the annotation models and controls (scfmbench.embedding).
TASKS = ("annotation", "imputation", "denoising", "doublet", "perturbation", "embedding")


def read_benchmark(path: str | Path | None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) from a Snakemake benchmark TSV; NaN when no file is given."""
    if path is None:
        return math.nan, math.nan
    df = pd.read_csv(path, sep="\t")
    if df.empty or "s" not in df or "max_rss" not in df:
        raise InputError(
            f"{path}: not a Snakemake benchmark file (expected columns 's' and 'max_rss', found {list(df.columns)})."
        )
    rss = pd.to_numeric(df["max_rss"], errors="coerce")  # '-' when the job was too short to sample
    return float(df["s"].iloc[-1]), float(rss.iloc[-1]) if pd.notna(rss.iloc[-1]) else math.nan


def metrics_record(
    *, task: str, dataset: str, method: str, seed: int, metrics: dict[str, float], benchmark: str | Path | None = None
) -> pd.DataFrame:
    """A tidy metrics record (one row per metric) in :data:`METRIC_COLUMNS` order."""
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; tasks are {list(TASKS)}")
    runtime, mem = read_benchmark(benchmark)
    rows = [
        dict(
            task=task,
            dataset=dataset,
            method=method,
            seed=int(seed),
            metric=k,
            value=float(v),
            runtime_s=runtime,
            peak_mem_mb=mem,
        )
        for k, v in metrics.items()
    ]
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def write_metrics(record: pd.DataFrame, path: str | Path) -> None:
    missing = [c for c in METRIC_COLUMNS if c not in record]
    if missing:
        raise InputError(f"metrics record for {path} lacks columns {missing}")
    write_csv(record[METRIC_COLUMNS], path)


def read_metrics(paths) -> pd.DataFrame:
    """Concatenate metrics records, checking each has the contract's columns."""
    frames = []
    for p in paths:
        df = pd.read_csv(p)
        missing = [c for c in METRIC_COLUMNS if c not in df]
        if missing:
            raise InputError(f"{p}: metrics record lacks columns {missing}; every record has {METRIC_COLUMNS}.")
        frames.append(df[METRIC_COLUMNS])
    if not frames:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    return pd.concat(frames, ignore_index=True)
