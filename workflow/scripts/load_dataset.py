from scfmbench._io import write_h5ad
from scfmbench._smk import setup_job
from scfmbench.data.loaders import load_dataset

setup_job(snakemake)
write_h5ad(load_dataset(snakemake.wildcards.dataset, snakemake.params.dataset), snakemake.output.raw)
