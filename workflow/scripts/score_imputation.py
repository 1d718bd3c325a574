from scfmbench._smk import per_seed, setup_job
from scfmbench.impute.protocol import score_main

setup_job(snakemake)
for seed, files in per_seed(snakemake, inputs=("predictions", "heldout", "benchmark"), outputs=("metrics",)):
    score_main(
        files["predictions"],
        files["heldout"],
        files["metrics"],
        task=snakemake.wildcards.task,
        dataset=snakemake.wildcards.dataset,
        method=snakemake.wildcards.method,
        seed=seed,
        benchmark=files["benchmark"],
    )
