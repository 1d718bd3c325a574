from scfmbench._smk import per_seed, seed_benchmark, setup_job
from scfmbench.curves import curves_to
from scfmbench.pretrain.workflow import pretrain_main

setup_job(snakemake)
w = snakemake.wildcards
run = dict(
    dataset=w.dataset,
    backbone=w.backbone,
    strategy=w.strategy,
    options=snakemake.params.options,
    params=snakemake.params.backbone_params,
)
if "seed" in w.keys():  # one seed per job
    with curves_to(snakemake.output.curves):
        pretrain_main(
            snakemake.input.prepared, snakemake.output.checkpoint, snakemake.output.masked_set, seed=int(w.seed), **run
        )
else:  # resources.group_seeds: every seed in this process, each with its own benchmark file
    for seed, files in per_seed(
        snakemake, inputs=("prepared",), outputs=("checkpoint", "masked_set", "curves", "benchmark")
    ):
        with seed_benchmark(files["benchmark"]), curves_to(files["curves"]):
            pretrain_main(files["prepared"], files["checkpoint"], files["masked_set"], seed=seed, **run)
