from scfmbench._smk import per_seed, setup_job
from scfmbench.schyena.workflow import score_doublet_main

setup_job(snakemake)
for seed, files in per_seed(snakemake, inputs=("predictions", "benchmark"), outputs=("metrics",)):
    score_doublet_main(
        files["predictions"],
        files["metrics"],
        dataset=snakemake.wildcards.dataset,
        method=snakemake.wildcards.method,
        seed=seed,
        benchmark=files["benchmark"],
    )
