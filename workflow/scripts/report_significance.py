from scfmbench._smk import setup_job
from scfmbench.report.significance import write_significance

setup_job(snakemake)
write_significance(snakemake.input.metrics, snakemake.output, config=snakemake.params.significance)
