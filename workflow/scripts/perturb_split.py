from scfmbench._smk import setup_job
from scfmbench.perturbation import write_splits

setup_job(snakemake)
write_splits(snakemake.input.data, snakemake.output.splits, seeds=snakemake.params.seeds, params=snakemake.params.split)
