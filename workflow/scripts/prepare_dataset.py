import anndata as ad

from scfmbench._io import write_h5ad
from scfmbench._smk import setup_job
from scfmbench.data.prepare import prepare_dataset

setup_job(snakemake)
raw = ad.read_h5ad(snakemake.input.raw)
prepared = prepare_dataset(
    raw, seed=int(snakemake.wildcards.seed), where=f"dataset {snakemake.wildcards.dataset!r}", **snakemake.params.split
)
write_h5ad(prepared, snakemake.output.prepared)
