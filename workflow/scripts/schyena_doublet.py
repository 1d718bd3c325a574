from scfmbench._smk import setup_job
from scfmbench.curves import curves_to
from scfmbench.schyena.workflow import doublet_main

setup_job(snakemake)
with curves_to(snakemake.output.curves):
    doublet_main(
        snakemake.input.prepared,
        snakemake.input.pretrained,
        snakemake.output.predictions,
        snakemake.output.run,
        seed=int(snakemake.wildcards.seed),
        params=snakemake.params.method_params,
    )
