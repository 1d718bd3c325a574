from scfmbench._smk import setup_job
from scfmbench.impute.controls import perfect_main, true_rate_main

setup_job(snakemake)
control = {"perfect": perfect_main, "true_rate": true_rate_main}[snakemake.params.control]
control(snakemake.input.heldout, snakemake.output.predictions, seed=int(snakemake.wildcards.seed))
