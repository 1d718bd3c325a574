from scfmbench._smk import setup_job
from scfmbench.graphs.workflow import write_graph_stats

setup_job(snakemake)
write_graph_stats(snakemake.input.graphs, snakemake.output.csv, snakemake.output.md)
