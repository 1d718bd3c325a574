from scfmbench._smk import per_seed, seed_benchmark, setup_job
from scfmbench.curves import curves_to
from scfmbench.pretrain.workflow import finetune_main

setup_job(snakemake)
method, run = (
    snakemake.wildcards.method,
    dict(params=snakemake.params.method_params, finetune=snakemake.params.finetune),
)
scratch = method.endswith("-scratch")  # no checkpoint input
if "seed" in snakemake.wildcards.keys():  # one seed per job
    checkpoint = None if scratch else snakemake.input.checkpoint
    with curves_to(snakemake.output.curves):
        finetune_main(
            method,
            snakemake.input.prepared,
            checkpoint,
            snakemake.output.predictions,
            snakemake.output.run,
            seed=int(snakemake.wildcards.seed),
            embedding_path=snakemake.output.embedding,
            **run,
        )
else:  # resources.group_seeds: every seed in this process, each with its own benchmark file
    for seed, files in per_seed(
        snakemake,
        inputs=("prepared",) if scratch else ("prepared", "checkpoint"),
        outputs=("predictions", "run", "curves", "embedding", "benchmark"),
    ):
        with seed_benchmark(files["benchmark"]), curves_to(files["curves"]):
            finetune_main(
                method,
                files["prepared"],
                files.get("checkpoint"),
                files["predictions"],
                files["run"],
                seed=seed,
                embedding_path=files["embedding"],
                **run,
            )
