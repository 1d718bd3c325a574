from scfmbench._smk import setup_job
from scfmbench.report.perturbation import write_perturbation_report

setup_job(snakemake)
write_perturbation_report(
    snakemake.input.metrics,
    md=snakemake.output.md,
    csv=snakemake.output.csv,
    html=snakemake.output.html,
    png=snakemake.output.png,
)
