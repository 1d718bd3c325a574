from scfmbench._smk import setup_job
from scfmbench.embedding.workflow import control_main

setup_job(snakemake)
seeds, controls = [int(s) for s in snakemake.params.seeds], snakemake.params.controls
# Outputs are listed control-major: controls x seeds.


def by_control(files):
    return {c: {s: files[i * len(seeds) + j] for j, s in enumerate(seeds)} for i, c in enumerate(controls)}


control_main(
    dict(zip(seeds, snakemake.input.prepared)),
    by_control(snakemake.output.embeddings),
    by_control(snakemake.output.benchmarks),
    n_components=snakemake.params.n_components,
)
