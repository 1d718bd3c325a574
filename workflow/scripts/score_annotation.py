from scfmbench._smk import per_seed, setup_job
from scfmbench.annotation import score_main

setup_job(snakemake)
for seed, files in per_seed(snakemake, inputs=("prepared", "predictions", "benchmark"), outputs=("metrics",)):
    score_main(
        prepared=files["prepared"],
        predictions=files["predictions"],
        benchmark=files["benchmark"],
        out=files["metrics"],
        dataset=snakemake.wildcards.dataset,
        method=snakemake.wildcards.method,
        seed=seed,
        rare_share=snakemake.params.rare_share,
    )
