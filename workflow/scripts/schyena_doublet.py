from scfmbench._smk import setup_job
from scfmbench.schyena.workflow import doublet_main

setup_job(snakemake)
doublet_main(
    snakemake.input.prepared,
    snakemake.input.pretrained,
    snakemake.output.predictions,
    snakemake.output.run,
    seed=int(snakemake.wildcards.seed),
    params=snakemake.params.method_params,
)
