from scfmbench._smk import per_seed, seed_benchmark, setup_job
from scfmbench.pretrain.workflow import finetune_main

setup_job(snakemake)
method, params = snakemake.wildcards.method, snakemake.params.method_params
if "seed" in snakemake.wildcards.keys():  # one seed per job
    finetune_main(method, snakemake.input.prepared, snakemake.input.checkpoint, snakemake.output.predictions, snakemake.output.run, seed=int(snakemake.wildcards.seed), params=params)
else:  # resources.group_seeds: every seed in this process, each with its own benchmark file
    for seed, files in per_seed(snakemake, inputs=("prepared", "checkpoint"), outputs=("predictions", "run", "benchmark")):
        with seed_benchmark(files["benchmark"]):
            finetune_main(method, files["prepared"], files["checkpoint"], files["predictions"], files["run"], seed=seed, params=params)
