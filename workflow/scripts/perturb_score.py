from scfmbench._smk import setup_job
from scfmbench.perturbation import read_dataset, score_main

setup_job(snakemake)
adata = read_dataset(snakemake.input.data)
seeds = [int(s) for s in snakemake.params.seeds]
runs = [(m, s) for m in snakemake.params.methods for s in seeds]  # the order of the rule's lists
for i, (method, seed) in enumerate(runs):
    score_main(
        data=adata,
        split=snakemake.input.splits[seeds.index(seed)],
        predictions=snakemake.input.predictions[i],
        benchmark=snakemake.input.benchmarks[i],
        out=snakemake.output.metrics[i],
        conditions_out=snakemake.output.conditions[i],
        dataset=snakemake.params.dataset,
        method=method,
        seed=seed,
    )
