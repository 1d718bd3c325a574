from scfmbench._smk import setup_job
from scfmbench.data.contract import read_prepared
from scfmbench.impute.protocol import write_masks

setup_job(snakemake)
write_masks(
    read_prepared(snakemake.input.prepared),
    snakemake.output.masked,
    snakemake.output.heldout,
    seed=int(snakemake.wildcards.seed),
    n_folds=snakemake.params.n_folds,
    min_library_size=snakemake.params.min_library_size,
)
