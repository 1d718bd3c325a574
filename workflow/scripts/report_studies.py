from scfmbench._smk import setup_job
from scfmbench.report.studies import write_studies

setup_job(snakemake)
write_studies(snakemake.input.metrics, snakemake.output, defaults=snakemake.params.defaults)
