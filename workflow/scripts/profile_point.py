# One profiling point. No setup_job here: it imports torch, and this job only launches the measured
# process (which imports torch itself and sets its threads); the log routing is all that is needed.
import logging
import sys

from scfmbench._smk import fast_exit

fast_exit()

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
)
logging.captureWarnings(True)

from scfmbench.profile import profile_point

profile_point(
    mechanism=snakemake.wildcards.mechanism,
    length=int(snakemake.wildcards.length),
    batch=int(snakemake.wildcards.batch),
    mode=snakemake.wildcards.mode,
    settings=snakemake.params.settings,
    threads=snakemake.threads,
    output=snakemake.output.csv,
)
