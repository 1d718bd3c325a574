from scfmbench._smk import setup_job
from scfmbench.report.figures import plot_curves

setup_job(snakemake)
plot_curves(snakemake.params.curves, snakemake.output.png)
