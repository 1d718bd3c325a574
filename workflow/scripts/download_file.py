from scfmbench._smk import setup_job
from scfmbench.data.manifest import fetch

setup_job(snakemake)
downloads = snakemake.params.downloads
fetch(
    snakemake.wildcards.entry,
    snakemake.output.file,
    manifest=downloads["manifest"],
    lock=downloads["lock"],
    strict=downloads["strict"],
)
