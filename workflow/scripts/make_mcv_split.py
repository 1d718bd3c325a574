from scfmbench._smk import setup_job
from scfmbench.data.contract import read_prepared
from scfmbench.impute.mcv import write_mcv

setup_job(snakemake)
write_mcv(
    read_prepared(snakemake.input.prepared),
    snakemake.output.train,
    snakemake.output.test,
    seed=int(snakemake.wildcards.seed),
    train_fraction=snakemake.params.train_fraction,
    min_library_size=snakemake.params.min_library_size,
)
