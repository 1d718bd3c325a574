from scfmbench._smk import setup_job
from scfmbench.embedding.workflow import report_main

setup_job(snakemake)
datasets = snakemake.params.datasets
report_main(
    datasets,
    figures=dict(zip(datasets, snakemake.output.figures)),
    table_md=snakemake.output.table_md,
    table_csv=snakemake.output.table_csv,
    seed=int(snakemake.params.seed),
    n_neighbors=snakemake.params.n_neighbors,
)
