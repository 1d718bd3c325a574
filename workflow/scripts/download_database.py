from scfmbench._smk import setup_job
from scfmbench.graphs.workflow import download_database

setup_job(snakemake)
download_database(snakemake.params.source["url"], snakemake.output.database, sha256=snakemake.params.source["sha256"])
