from scfmbench._smk import setup_job
from scfmbench.schyena.workflow import score_doublet_main

setup_job(snakemake)
score_doublet_main(
    snakemake.input.predictions,
    snakemake.output.metrics,
    dataset=snakemake.wildcards.dataset,
    method=snakemake.wildcards.method,
    seed=int(snakemake.wildcards.seed),
    benchmark=snakemake.input.benchmark,
)
