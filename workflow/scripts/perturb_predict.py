from scfmbench._smk import per_seed, seed_benchmark, setup_job
from scfmbench.curves import curves_to
from scfmbench.perturbation import run_method

setup_job(snakemake)
method, params, graph = snakemake.wildcards.method, snakemake.params.method_params, snakemake.params.graph
if "seed" in snakemake.wildcards.keys():  # one seed per job
    with curves_to(snakemake.output.curves):
        run_method(
            method,
            snakemake.input.data,
            snakemake.input.split,
            snakemake.output.predictions,
            seed=int(snakemake.wildcards.seed),
            params=params,
            record_path=snakemake.output.run,
            graph_params=graph,
        )
else:  # resources.group_seeds: every seed in this process, each with its own benchmark file
    for seed, files in per_seed(snakemake, inputs=("split",), outputs=("predictions", "run", "curves", "benchmark")):
        with seed_benchmark(files["benchmark"]), curves_to(files["curves"]):
            run_method(
                method,
                snakemake.input.data,
                files["split"],
                files["predictions"],
                seed=seed,
                params=params,
                record_path=files["run"],
                graph_params=graph,
            )
