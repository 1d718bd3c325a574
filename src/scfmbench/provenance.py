"""Versions, device and seeds recorded next to every result."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import os
import platform
import random
import sys

import numpy as np

_PACKAGES = (
    "scfmbench",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "scanpy",
    "scikit-learn",
    "magic-impute",
    "snakemake",
)


def package_versions(packages=_PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_info(*, load_torch: bool = True) -> dict[str, str]:
    """Platform, device and thread count. ``threads`` is torch's intra-op thread count when torch is
    (or, with ``load_torch``, can be) loaded, else the ``OMP_NUM_THREADS`` a job was granted: results
    of training with small batches depend on it (a rerun with another thread count can stop early at
    another epoch), so it is recorded with every run. ``load_torch=False`` keeps a job that never
    uses torch (MAGIC, scoring) from importing it just to write its provenance."""
    info = {"platform": platform.platform(), "machine": platform.machine()}
    torch = sys.modules.get("torch")
    if torch is None and load_torch:
        try:
            import torch
        except ImportError:  # torch is a dependency, but provenance must never be what fails
            torch = None
    if torch is None:
        info["torch_threads"] = os.environ.get("OMP_NUM_THREADS", "unset")
        info["device"] = "cpu"
        return info
    info["torch_threads"] = str(torch.get_num_threads())
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["cuda"] = str(torch.version.cuda)
    else:
        info["device"] = "cpu"
    return info


def provenance(*, load_torch: bool = True, **extra) -> dict:
    """A provenance record: timestamp, versions, device (with the thread count), plus whatever the
    caller adds (seed, inputs). ``load_torch`` as in :func:`device_info`."""
    rec = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "device": device_info(load_torch=load_torch),
    }
    rec.update(extra)
    return rec


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; make torch deterministic on CPU. Returns a numpy Generator."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
        if hasattr(torch._C, "_set_deterministic_algorithms"):
            # What torch.use_deterministic_algorithms does, less its first line: importing
            # torch._inductor.config (TorchDynamo's stack, ~1.3 s per job process) to set a flag
            # that only torch.compile reads, and nothing here compiles.
            torch._C._set_deterministic_algorithms(True, warn_only=True)
        else:  # pragma: no cover -- a torch without the private setter
            torch.use_deterministic_algorithms(True, warn_only=True)
    except ImportError:
        pass
    return np.random.default_rng(seed)


@contextlib.contextmanager
def preserved_rng(rng: np.random.Generator | None = None, device=None):
    """Run a block without moving any random stream the rest of the run reads: ``rng``'s state,
    torch's CPU generator (and ``device``'s, when CUDA), numpy's and python's global ones are
    restored on exit. For work beside a seeded run (an extra inference pass) that must not change
    its results."""
    import torch

    state = None if rng is None else rng.bit_generator.state
    np_state, py_state = np.random.get_state(), random.getstate()
    cuda = [torch.device(device).index or 0] if device is not None and torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        yield
    if rng is not None:
        rng.bit_generator.state = state
    np.random.set_state(np_state)
    random.setstate(py_state)
