from scfmbench._smk import setup_job
from scfmbench.schyena.workflow import doublet_control_main

setup_job(snakemake)
doublet_control_main(
    snakemake.input.prepared,
    snakemake.output.predictions,
    seed=int(snakemake.wildcards.seed),
    params=snakemake.params.schyena_params,
)
