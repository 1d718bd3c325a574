from scfmbench._smk import setup_job
from scfmbench.curves import curves_to
from scfmbench.schyena.workflow import finetune_main

setup_job(snakemake)
with curves_to(snakemake.output.curves):
    finetune_main(
        snakemake.input.prepared,
        snakemake.input.pretrained,
        snakemake.output.predictions,
        snakemake.output.run,
        snakemake.output.finetuned,
        seed=int(snakemake.wildcards.seed),
        params=snakemake.params.method_params,
        embedding_path=snakemake.output.embedding,
    )
