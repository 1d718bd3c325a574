"""Versions, device and seeds recorded next to every result."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import random

import numpy as np

_PACKAGES = ("scfmbench", "torch", "numpy", "scipy", "pandas", "anndata", "scanpy", "scikit-learn", "magic-impute", "snakemake")


def package_versions(packages=_PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_info() -> dict[str, str]:
    info = {"platform": platform.platform(), "machine": platform.machine()}
    try:
        import torch

        info["torch_threads"] = str(torch.get_num_threads())
        if torch.cuda.is_available():
            info["device"] = torch.cuda.get_device_name(0)
            info["cuda"] = str(torch.version.cuda)
        else:
            info["device"] = "cpu"
    except ImportError:  # torch is a dependency, but provenance must never be what fails
        info["device"] = "cpu"
    return info


def provenance(**extra) -> dict:
    """A provenance record: timestamp, versions, device, plus whatever the caller adds (seed, inputs)."""
    rec = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "versions": package_versions(), "device": device_info()}
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
