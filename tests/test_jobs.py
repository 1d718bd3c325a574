"""What every job process does: seeding (deterministic torch without TorchDynamo's import cost),
log routing and thread limits, and the fast exit."""

import subprocess
import sys
import textwrap

import numpy as np


def _run(code: str, tmp_path) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
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
