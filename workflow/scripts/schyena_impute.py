from scfmbench._smk import setup_job
from scfmbench.curves import curves_to
from scfmbench.schyena.workflow import impute_main

setup_job(snakemake)
with curves_to(snakemake.output.curves):  # a curve per fold
    impute_main(
        snakemake.input.data,
        snakemake.output.predictions,
        seed=int(snakemake.wildcards.seed),
        params=snakemake.params.method_params,
    )
