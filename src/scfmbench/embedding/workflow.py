"""One function per embedding rule (``workflow/rules/embed.smk``): read, call, write.

=======================  ===========================================================================
rule                     function and outputs
=======================  ===========================================================================
embed_control            :func:`control_main`: ``results/embedding/{dataset}/{pca,random}/seed{seed}/``
                         ``embedding.npz`` (every seed, both controls, one job per dataset)
score_embedding_<d>      :func:`score_main`: ``metrics.csv`` (task ``embedding``) of every method x
                         seed of dataset d, and of each ``{method}-zeroshot``
report_embedding         :func:`report_main`: ``results/report/figures/embedding_umap_{dataset}.png``
                         (:func:`umap_main`) and ``results/report/embedding_methods.{md,csv}``
                         (:func:`methods_table`: pooling, dimensions, zero-shot source)
=======================  ===========================================================================

The models' ``embedding.npz`` come from their own jobs (annotate_transformer, annotate_pretrained,
annotate_schyena): one inference pass over every cell after fine-tuning and, from a checkpoint,
before it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from scfmbench import InputError
from scfmbench.embedding import CellEmbeddings, read_embedding, write_embedding, zeroshot_method

if TYPE_CHECKING:  # pandas is imported where it runs
    import pandas as pd

log = logging.getLogger(__name__)


def control_main(
    prepared: dict[int, str],
    outputs: dict[str, dict[int, str]],
    benchmarks: dict[str, dict[int, str]],
    *,
    n_components: int = 50,
) -> None:
    """Every control x seed: ``outputs[control][seed]`` from the seed's prepared dataset, each
    (control, seed) timed into ``benchmarks[control][seed]`` (a Snakemake benchmark file's columns)."""
    from scfmbench._smk import seed_benchmark
    from scfmbench.data.contract import read_prepared
    from scfmbench.embedding.controls import CONTROL_EMBEDDINGS, POOLING

    unknown = sorted(set(outputs) - set(CONTROL_EMBEDDINGS))
    if unknown:
        raise InputError(f"unknown embedding controls {unknown}; registered: {sorted(CONTROL_EMBEDDINGS)}")
    for seed, path in prepared.items():
        adata = read_prepared(path)
        for control, files in outputs.items():
            with seed_benchmark(benchmarks[control][seed]):
                emb = CONTROL_EMBEDDINGS[control](adata, seed=seed, n_components=n_components)
                write_embedding(
                    files[seed], CellEmbeddings(emb, POOLING[control], source="none: a control"), adata.obs_names
                )


def batch_labels(adata, column: str | None, *, dataset: str):
    """The batch of every cell from ``obs[column]`` (None without a batch column)."""
    if column is None:
        return None
    if column not in adata.obs:
        raise InputError(
            f"config key 'embedding.batch_columns.{dataset}': obs column {column!r} is not in the prepared dataset; "
            f"its columns are {list(adata.obs.columns)}"
        )
    return adata.obs[column].astype(str).to_numpy()


def score_main(
    runs: list[dict], prepared: dict[int, str], *, dataset: str, n_neighbors: int = 15, batch_column: str | None = None
) -> None:
    """Score every run of a dataset: ``runs`` holds ``method``, ``seed``, ``embedding`` (its file),
    ``benchmark`` (the method job's, for runtime and memory), ``metrics`` (the record to write) and
    ``zeroshot_metrics`` (the pretrained-only state's record, or None when the method has none).
    Each embedding is checked against the seed's prepared cells; metrics on its test cells."""
    from scfmbench.data.contract import read_prepared, require_labels
    from scfmbench.embedding.metrics import embedding_metrics
    from scfmbench.results import metrics_record, write_metrics

    cells = {}
    for seed, path in prepared.items():
        adata = read_prepared(path)
        require_labels(adata, task="embedding", where=str(path))
        cells[int(seed)] = (
            adata.obs_names,
            adata.obs["cell_type"].astype(str).to_numpy(),
            adata.obs["split"].astype(str).to_numpy(),
            batch_labels(adata, batch_column, dataset=dataset),
        )
    for run in runs:
        seed = int(run["seed"])
        obs_names, labels, split, batch = cells[seed]
        emb = read_embedding(run["embedding"], obs_names)
        states = [(run["method"], emb.embedding, run["metrics"])]
        if run.get("zeroshot_metrics"):
            if emb.zeroshot is None:
                raise InputError(
                    f"{run['embedding']}: no zero-shot embedding ({emb.source}), but the config starts "
                    f"{run['method']} from a checkpoint; rerun its job"
                )
            states.append((zeroshot_method(run["method"]), emb.zeroshot, run["zeroshot_metrics"]))
        for method, values, out in states:
            metrics = embedding_metrics(values, labels, split, seed=seed, k=n_neighbors, batch=batch)
            write_metrics(
                metrics_record(
                    task="embedding",
                    dataset=dataset,
                    method=method,
                    seed=seed,
                    metrics=metrics,
                    benchmark=run["benchmark"],
                ),
                out,
            )
            log.info(
                "%s %s seed %d (%s): %s",
                dataset,
                method,
                seed,
                emb.pooling,
                {k: round(v, 4) for k, v in metrics.items()},
            )


def umap_main(
    prepared_path, panels: dict[str, str], png_path, *, dataset: str, seed: int, n_neighbors: int = 15
) -> None:
    """A UMAP panel per method (``panels``: method -> its ``embedding.npz`` of seed ``seed``),
    every cell coloured by cell type."""
    from scfmbench.data.contract import read_prepared
    from scfmbench.schyena.umap import plot_umaps, umap_coordinates

    adata = read_prepared(prepared_path)
    coords = {}
    for method, path in panels.items():
        emb = read_embedding(path, adata.obs_names)
        coords[f"{method} ({emb.embedding.shape[1]} dims)"] = umap_coordinates(
            emb.embedding, seed=seed, n_neighbors=n_neighbors
        )
    if not coords:
        raise InputError(f"config key 'embedding.umap_methods': none of them has an embedding on {dataset}")
    plot_umaps(
        coords,
        adata.obs["cell_type"].astype(str).to_numpy(),
        png_path,
        title=f"Cell embeddings on {dataset} (seed {seed}, every cell; fine-tuned models)",
        ncols=3,
    )


METHOD_COLUMNS = ["dataset", "method", "pooling", "dims", "zeroshot_dims", "zeroshot_source"]


def methods_table(files: dict[str, dict[str, str]]) -> pd.DataFrame:
    """How each method's embedding was read (``files``: dataset -> method -> an ``embedding.npz``):
    its pooling, dimensions and where its zero-shot state comes from (or why there is none)."""
    import pandas as pd

    rows = []
    for dataset, methods in files.items():
        for method, path in methods.items():
            emb = read_embedding(path)
            rows.append(
                dict(
                    dataset=dataset,
                    method=method,
                    pooling=emb.pooling,
                    dims=emb.embedding.shape[1],
                    zeroshot_dims=None if emb.zeroshot is None else emb.zeroshot.shape[1],
                    zeroshot_source=emb.source,
                )
            )
    return pd.DataFrame(rows, columns=METHOD_COLUMNS).astype({"zeroshot_dims": "Int64"})


def report_main(
    datasets: dict[str, dict], *, figures: dict[str, str], table_md, table_csv, seed: int, n_neighbors: int = 15
) -> None:
    """The embedding report: ``datasets[d]`` holds ``prepared`` (seed ``seed``'s file), ``panels``
    (method -> embedding file, the UMAP grid) and ``files`` (method -> embedding file, every method
    of d); ``figures[d]`` the UMAP grid's PNG."""
    import pandas as pd

    from scfmbench._io import markdown_cell, write_csv, write_text

    for dataset, spec in datasets.items():
        umap_main(
            spec["prepared"], spec["panels"], figures[dataset], dataset=dataset, seed=seed, n_neighbors=n_neighbors
        )
    table = methods_table({d: spec["files"] for d, spec in datasets.items()})
    write_csv(table, table_csv)
    lines = [
        "## Cell embeddings: how each method's was read",
        "",
        "| " + " | ".join(METHOD_COLUMNS) + " |",
        "|" + " --- |" * len(METHOD_COLUMNS),
    ]
    lines += [
        "| "
        + " | ".join(markdown_cell("" if pd.isna(v) else str(v)).replace("<", "&lt;").replace(">", "&gt;") for v in row)
        + " |"
        for row in table.itertuples(index=False)
    ]
    write_text("\n".join(lines) + "\n", table_md)
