"""What every job process does: seeding (deterministic torch without TorchDynamo's import cost),
log routing and thread limits, and the fast exit."""

import subprocess
import sys
import textwrap

import numpy as np


def _run(code: str, tmp_path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_seed_everything_is_deterministic_without_importing_inductor(tmp_path):
    out = _run(
        """
        import sys, torch
        from scfmbench.provenance import seed_everything
        assert not torch.are_deterministic_algorithms_enabled()
        rng = seed_everything(7)
        print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        print("torch._inductor.config" in sys.modules, "torch._dynamo" in sys.modules)
        print(rng.integers(1000), torch.randint(1000, ()).item())
        """,
        tmp_path,
    )
    flags, imported, draws = out.splitlines()
    assert flags == "True True"
    assert imported == "False False"
    import torch

    torch.manual_seed(7)
    assert draws == f"{np.random.default_rng(7).integers(1000)} {torch.randint(1000, ()).item()}"


def test_setup_job_routes_logs_sets_threads_and_freezes_at_exit(tmp_path):
    out = _run(
        """
        import atexit, gc, logging, os, sys, warnings
        from types import SimpleNamespace
        from scfmbench._smk import setup_job
        setup_job(SimpleNamespace(log=["logs/job.log"], threads=3))
        logging.getLogger("scfmbench.test").info("hello from the job")
        warnings.warn("a library warning")
        print(os.environ["OMP_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"], gc.get_freeze_count() == 0)
        atexit._run_exitfuncs()
        print(gc.get_freeze_count() > 0)
        """,
        tmp_path,
    )
    assert out.split() == ["3", "3", "True", "True"]
    log = (tmp_path / "logs" / "job.log").read_text()
    assert "hello from the job" in log and "a library warning" in log


def test_seed_benchmark_writes_a_snakemake_benchmark_with_the_seeds_own_peak(tmp_path):
    import time

    import pytest

    from scfmbench import InputError
    from scfmbench._rss import peak_rss_mb
    from scfmbench._smk import seed_benchmark
    from scfmbench.results import read_benchmark

    earlier = np.ones(512 * 2**20 // 8)  # an earlier seed's peak: 512 MB, freed before this seed
    del earlier
    before = peak_rss_mb()
    with seed_benchmark(tmp_path / "seed0.tsv"):
        block = np.ones(64 * 2**20 // 8)  # 64 MB touched inside the seed
        time.sleep(0.2)
        del block
    seconds, rss = read_benchmark(tmp_path / "seed0.tsv")
    assert 0.2 <= seconds < 5
    assert rss >= 64  # the seed's own allocation is in its peak ...
    assert rss < before - 256  # ... the earlier, larger one is not
    header = (tmp_path / "seed0.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["s", "h:m:s", "max_rss", "cpu_time"]
    with pytest.raises(InputError):  # a failed seed leaves no benchmark behind
        with seed_benchmark(tmp_path / "seed1.tsv"):
            raise InputError("bad input")
    assert not (tmp_path / "seed1.tsv").exists()
