from scfmbench._smk import setup_job
from scfmbench.schyena.workflow import pretrain_main

setup_job(snakemake)
pretrain_main(
    snakemake.input.prepared,
    snakemake.output.checkpoint,
    dataset=snakemake.wildcards.dataset,
    seed=int(snakemake.wildcards.seed),
    params=snakemake.params.method_params,
)
