from scfmbench._smk import setup_job
from scfmbench.perturbation import write_dataset

setup_job(snakemake)
write_dataset(snakemake.wildcards.dataset, snakemake.params.dataset, snakemake.output.data)
