from scfmbench._smk import setup_job
from scfmbench.annotation import run_annotation

setup_job(snakemake)
run_annotation(
    snakemake.wildcards.method,
    snakemake.input.prepared,
    snakemake.output.predictions,
    seed=int(snakemake.wildcards.seed),
    params=snakemake.params.method_params,
    record_path=snakemake.output.run,
    graph=getattr(snakemake.input, "graph", None),
)
