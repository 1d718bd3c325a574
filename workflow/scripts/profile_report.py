from scfmbench._smk import setup_job
from scfmbench.profile.analysis import write_profile_report

setup_job(snakemake)
write_profile_report(
    snakemake.input.points,
    csv=snakemake.output.csv,
    scaling_csv=snakemake.output.scaling_csv,
    scaling_md=snakemake.output.scaling_md,
    time_png=snakemake.output.time_png,
    memory_png=snakemake.output.memory_png,
)
