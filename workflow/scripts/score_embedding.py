from scfmbench._smk import setup_job
from scfmbench.embedding.workflow import score_main

setup_job(snakemake)
seeds = [int(s) for s in snakemake.params.seeds]
score_main(
    snakemake.params.runs,
    dict(zip(seeds, snakemake.input.prepared)),
    dataset=snakemake.params.dataset,
    n_neighbors=snakemake.params.n_neighbors,
    batch_column=snakemake.params.batch_column,
)
