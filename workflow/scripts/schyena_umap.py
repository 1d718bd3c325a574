from scfmbench._smk import setup_job
from scfmbench.schyena.workflow import umap_main

setup_job(snakemake)
umap_main(
    snakemake.input.prepared,
    snakemake.input.embedding,
    snakemake.output.png,
    dataset=snakemake.wildcards.dataset,
    seed=int(snakemake.params.seed),
    params=snakemake.params.method_params,
)
