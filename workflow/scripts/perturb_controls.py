from scfmbench._smk import seed_benchmark, setup_job
from scfmbench.perturbation import run_method

setup_job(snakemake)
seeds = [int(s) for s in snakemake.params.seeds]
runs = [(m, s) for m in snakemake.params.methods for s in seeds]  # the order of the rule's lists
for i, (method, seed) in enumerate(runs):
    with seed_benchmark(snakemake.output.benchmark[i]):
        run_method(
            method,
            snakemake.input.data,
            snakemake.input.splits[seeds.index(seed)],
            snakemake.output.predictions[i],
            seed=seed,
            params=snakemake.params.method_params[method],
            record_path=snakemake.output.run[i],
        )
