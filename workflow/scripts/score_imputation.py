from scfmbench._smk import setup_job
from scfmbench.impute.protocol import score_main

setup_job(snakemake)
score_main(
    snakemake.input.predictions,
    snakemake.input.heldout,
    snakemake.output.metrics,
    task=snakemake.wildcards.task,
    dataset=snakemake.wildcards.dataset,
    method=snakemake.wildcards.method,
    seed=int(snakemake.wildcards.seed),
    benchmark=snakemake.input.benchmark,
)
