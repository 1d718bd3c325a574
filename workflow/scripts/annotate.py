from scfmbench._smk import per_seed, seed_benchmark, setup_job
from scfmbench.annotation import run_annotation
from scfmbench.curves import curves_to

setup_job(snakemake)
method, params = snakemake.wildcards.method, snakemake.params.method_params
if "seed" in snakemake.wildcards.keys():  # one seed per job
    with curves_to(getattr(snakemake.output, "curves", None)):  # controls train nothing: no curves
        run_annotation(
            method,
            snakemake.input.prepared,
            snakemake.output.predictions,
            seed=int(snakemake.wildcards.seed),
            params=params,
            record_path=snakemake.output.run,
            graph=getattr(snakemake.input, "graph", None),
            embedding_path=getattr(snakemake.output, "embedding", None),
        )  # controls: none
else:  # resources.group_seeds: every seed in this process, each with its own benchmark file
    for seed, files in per_seed(
        snakemake,
        inputs=("prepared",),
        optional=("graph",),
        outputs=("predictions", "run", "curves", "embedding", "benchmark"),
    ):
        with seed_benchmark(files["benchmark"]), curves_to(files["curves"]):
            run_annotation(
                method,
                files["prepared"],
                files["predictions"],
                seed=seed,
                params=params,
                record_path=files["run"],
                graph=files["graph"],
                embedding_path=files["embedding"],
            )
