from scfmbench._smk import setup_job
from scfmbench.graphs.workflow import build_graph_file

setup_job(snakemake)
build_graph_file(
    snakemake.input.prepared,
    list(snakemake.input.databases),
    snakemake.output.graph,
    spec=snakemake.params.spec,
    seed=int(snakemake.wildcards.seed),
)
