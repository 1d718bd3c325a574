from scfmbench._smk import setup_job
from scfmbench.curves import curves_to
from scfmbench.impute.methods import impute_main

setup_job(snakemake)
with curves_to(getattr(snakemake.output, "curves", None)):  # dca: a curve per fit (fold)
    impute_main(
        snakemake.wildcards.method,
        snakemake.input.data,
        snakemake.output.predictions,
        seed=int(snakemake.wildcards.seed),
        params=snakemake.params.method_params,
    )
