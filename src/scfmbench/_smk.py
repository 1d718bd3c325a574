"""What every workflow script does first: route logging, warnings and stderr to the job's log and
limit threads to what Snakemake granted. Scripts are shims: this, one package call, done."""

from __future__ import annotations

import logging
import os
import sys


def setup_job(snakemake) -> None:
    log_path = snakemake.log[0] if len(snakemake.log) else None
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        stream = open(log_path, "w", buffering=1)
        sys.stderr = stream  # library warnings and tracebacks land in the job's log
        logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    logging.captureWarnings(True)
    threads = max(1, int(getattr(snakemake, "threads", 1)))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
