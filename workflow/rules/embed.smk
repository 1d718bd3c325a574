# Cell embeddings as a benchmark of their own (docs/embedding.md "Cell embeddings"; scfmbench.embedding). The
# models' embeddings come from their own annotation jobs (EMBEDDING, written beside the predictions
# by annotate_transformer, annotate_pretrained and annotate_schyena); here the controls, the scoring
# (task 'embedding') and the UMAP grids. The table is the report rule's embedding_table.*.


# PCA and a random projection of the log-normalized expression: every seed and both controls in one
# job per dataset (each well under a second), timed per (control, seed) into its benchmark file.
rule embed_control:
    input:
        prepared=per_seed(PREPARED),
    output:
        embeddings=[
            EMBEDDING.replace("{method}", c).replace("{seed}", str(s)) for c in EMBEDDING_CONTROLS for s in SEEDS
        ],
        benchmarks=[embedding_benchmark(c).replace("{seed}", str(s)) for c in EMBEDDING_CONTROLS for s in SEEDS],
    log:
        "results/logs/embedding/{dataset}/controls.log",
    benchmark:
        "results/benchmarks/embedding/{dataset}/controls.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        controls=list(EMBEDDING_CONTROLS),
        seeds=SEEDS,
        n_components=EMBED["n_components"],
    script:
        "../scripts/embed_control.py"


# One job scores every method x seed (x zero-shot) of a dataset: a rule per dataset
# (score_embedding_<dataset>), since the methods it scores depend on the dataset.
for _dataset in EMBEDDING_DATASETS:
    _runs = embedding_runs(_dataset)

    rule:
        name:
            f"score_embedding_{_dataset}"
        input:
            prepared=expand(PREPARED, dataset=_dataset, seed=SEEDS),
            embeddings=[r["embedding"] for r in _runs],
            benchmarks=[r["benchmark"] for r in _runs],
        output:
            metrics=[f for r in _runs for f in (r["metrics"], r["zeroshot_metrics"]) if f],
        log:
            f"results/logs/embedding/{_dataset}/score.log",
        benchmark:
            f"results/benchmarks/embedding/{_dataset}/score.tsv"
        conda:
            "../../envs/torch.yaml"
        params:
            dataset=_dataset,
            runs=_runs,
            seeds=SEEDS,
            n_neighbors=EMBED["n_neighbors"],
            batch_column=EMBED["batch_columns"].get(_dataset),
        script:
            "../scripts/score_embedding.py"


# The UMAP grid of every scored dataset (first seed, fine-tuned) and how each method's embedding was
# read (pooling, dimensions, zero-shot source): one job, the UMAP optimiser's compilation paid once.
rule report_embedding:
    input:
        prepared=[spec["prepared"] for spec in embedding_report_spec().values()],
        embeddings=sorted({f for spec in embedding_report_spec().values() for f in spec["files"].values()}),
    output:
        table_md="results/report/embedding_methods.md",
        table_csv="results/report/embedding_methods.csv",
        figures=[
            report(
                f"results/report/figures/embedding_umap_{d}.png",
                caption="../report/embedding_umap.rst",
                category="Embedding",
            )
            for d in EMBEDDING_DATASETS
        ],
    log:
        "results/logs/report/embedding.log",
    benchmark:
        "results/benchmarks/report/embedding.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        datasets=embedding_report_spec(),
        seed=SEEDS[0],
        n_neighbors=EMBED["n_neighbors"],
    script:
        "../scripts/report_embedding.py"
