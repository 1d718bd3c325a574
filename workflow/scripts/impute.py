from scfmbench._smk import setup_job
from scfmbench.impute.methods import impute_main

setup_job(snakemake)
impute_main(snakemake.wildcards.method, snakemake.input.data, snakemake.output.predictions, seed=int(snakemake.wildcards.seed), params=snakemake.params.method_params)
