from scfmbench._smk import setup_job
from scfmbench.annotation import score_main

setup_job(snakemake)
score_main(
    prepared=snakemake.input.prepared,
    predictions=snakemake.input.predictions,
    benchmark=snakemake.input.benchmark,
    out=snakemake.output.metrics,
    dataset=snakemake.wildcards.dataset,
    method=snakemake.wildcards.method,
    seed=int(snakemake.wildcards.seed),
)
