"""What every workflow script does first: route logging, warnings and stderr to the job's log and
limit threads to what Snakemake granted. Scripts are shims: this, one package call, done."""

from __future__ import annotations

import atexit
import contextlib
import datetime
import gc
import logging
import os
import sys
import time


def fast_exit() -> None:
    """Skip the interpreter's last garbage collections at exit: with torch, scipy and anndata
    loaded they walk millions of objects (~0.4 s of every job's process, hundreds of jobs per run).
    ``gc.freeze`` at exit moves everything into the permanent generation; atexit handlers, stream
    flushing and reference-counted finalization still run (every output is closed and renamed
    before a job returns)."""
    atexit.register(gc.freeze)


def setup_job(snakemake) -> None:
    fast_exit()
    log_path = snakemake.log[0] if len(snakemake.log) else None
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        stream = open(log_path, "w", buffering=1)
        sys.stderr = stream  # library warnings and tracebacks land in the job's log
        logging.basicConfig(
            stream=stream, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
        )
    logging.captureWarnings(True)
    threads = max(1, int(getattr(snakemake, "threads", 1)))
    # Before any numerical import: torch (intra-op threads), OpenBLAS/MKL and OpenMP read these when
    # they load, so a job that never imports torch (scoring) does not pay for importing it here.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:  # already loaded: its thread pool is sized by now
        sys.modules["torch"].set_num_threads(threads)


def per_seed(snakemake, *, inputs: tuple[str, ...], outputs: tuple[str, ...], optional: tuple[str, ...] = ()):
    """The per-seed files of a job whose inputs and outputs list one file per configured seed
    (``params.seeds``), in that order: yields ``(seed, {name: path})`` for each seed. Names in
    ``optional`` are inputs a job may lack (a graph kernel's gene graph): None when absent."""
    seeds = [int(s) for s in snakemake.params.seeds]
    for i, seed in enumerate(seeds):
        files = {name: snakemake.input[name][i] for name in inputs}
        files.update({name: snakemake.input[name][i] if hasattr(snakemake.input, name) else None for name in optional})
        files.update({name: snakemake.output[name][i] for name in outputs})
        yield seed, files


BENCHMARK_COLUMNS = ("s", "h:m:s", "max_rss", "cpu_time")


@contextlib.contextmanager
def seed_benchmark(path):
    """Measure one seed of a job that runs several (``resources.group_seeds``) and write what a
    Snakemake ``benchmark:`` file of a one-seed job holds (``s``, ``h:m:s``, ``max_rss`` in MB,
    ``cpu_time``) to ``path``, so scoring reads either the same way. Wall and CPU time are the
    seed's own; ``max_rss`` is the process's resident-set peak during the seed (the high-water
    mark reset at its start, so it includes what earlier seeds left resident, as the first seed's
    includes the imports). Written only when the seed succeeds."""
    from scfmbench._io import write_text
    from scfmbench._rss import peak_rss_mb, reset_peak_rss

    reset_peak_rss()
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    values = (f"{wall:.4f}", str(datetime.timedelta(seconds=round(wall))), f"{peak_rss_mb():.2f}", f"{cpu:.2f}")
    write_text("\t".join(BENCHMARK_COLUMNS) + "\n" + "\t".join(values) + "\n", path)
