from pathlib import Path

from scfmbench._smk import setup_job
from scfmbench.report import write_report

setup_job(snakemake)
write_report(snakemake.input.metrics, Path(snakemake.output.metrics).parent, significance=snakemake.params.significance)
