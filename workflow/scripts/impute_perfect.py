from scfmbench._smk import setup_job
from scfmbench.impute.controls import perfect_main

setup_job(snakemake)
perfect_main(snakemake.input.heldout, snakemake.output.predictions, seed=int(snakemake.wildcards.seed))
