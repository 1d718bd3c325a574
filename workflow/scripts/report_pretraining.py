from scfmbench._smk import setup_job
from scfmbench.pretrain.analysis import report_main

setup_job(snakemake)
out = snakemake.output
report_main(
    metrics_files=snakemake.input.metrics,
    masked_set_files=snakemake.input.masked_set,
    runs=snakemake.params.runs,
    table_md=out.table_md,
    table_csv=out.table_csv,
    masked_md=out.masked_md,
    masked_csv=out.masked_csv,
    per_class_csv=out.per_class,
    figure=out.figure,
)
