from scfmbench._smk import setup_job
from scfmbench.report.extras import write_extras

setup_job(snakemake)
write_extras(
    snakemake.input.metrics,
    snakemake.output,
    expected=snakemake.params.expected,
    config=snakemake.params.config,
    runs=snakemake.input.runs,
    curves=snakemake.params.curves,
)
