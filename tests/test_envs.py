"""envs/*.yaml cannot be exercised with --use-conda here (no conda): check that each parses, names
only packages that constraints.txt pins (what the tests run with) at the same versions, pins the
complete dependency closure of its packages (so nothing floats to a newer release), installs the
package through its post-deploy script, and that every rule's env exists.

Environments that cannot share the tested stack (the original DCA: tensorflow < 2.5, numpy < 2,
shared REFERENCE.md section 6) are listed in ISOLATED and only have to pin every package exactly."""

import re
import subprocess
from importlib.metadata import PackageNotFoundError, distribution

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement

ENVS = sorted((REPO / "envs").glob("*.yaml"))
ISOLATED = {"dca.yaml"}
BUILD_TOOLS = {"pip", "setuptools", "wheel"}  # provided by the env's python/pip


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canon(name)] = version.strip()
    return pins


def pip_pins(spec: dict) -> dict[str, str]:
    pip = next((d["pip"] for d in spec["dependencies"] if isinstance(d, dict)), [])
    out = {}
    for req in pip:
        assert "==" in req and not req.startswith("-"), (
            f"{req!r}: every pip entry is an exact pin (the package itself comes from the post-deploy script)"
        )
        name, version = req.split("==")
        out[canon(name)] = version
    return out


def closure(names) -> set[str]:
    """Installed distributions ``names`` need, recursively (markers evaluated here, extras excluded)."""
    seen, stack = set(), list(names)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # not installed here (e.g. CUDA libraries of the GPU torch wheel, pinned by torch)
        seen.add(name)
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(canon(req.name))
    return seen


def env_ids(p):
    return p.name


@pytest.mark.parametrize("env", ENVS, ids=env_ids)
def test_env_parses_and_pins_exactly(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["name"] == f"scfmbench-{env.stem}" and "conda-forge" in spec["channels"]
    conda = [d for d in spec["dependencies"] if isinstance(d, str)]
    assert any(re.fullmatch(r"python=3\.\d+", d) for d in conda), conda
    unpinned = [d for d in conda if d != "pip" and not re.fullmatch(r"[A-Za-z0-9_.-]+==?[0-9][A-Za-z0-9_.*+-]*", d)]
    assert not unpinned, f"{env.name}: conda packages without an exact version: {unpinned}"
    pins = pip_pins(spec)
    assert pins or env.name in ISOLATED, f"{env.name} pins no pip packages"


@pytest.mark.parametrize("env", [e for e in ENVS if e.name not in ISOLATED], ids=env_ids)
def test_env_pins_agree_with_constraints_and_close_over_dependencies(env):
    spec = yaml.safe_load(env.read_text())
    pins, tested = pip_pins(spec), constraints()
    unknown = sorted(set(pins) - set(tested))
    assert not unknown, f"{env.name} names packages constraints.txt does not pin: {unknown}"
    wrong = {n: (v, tested[n]) for n, v in pins.items() if tested[n] != v}
    assert not wrong, f"{env.name}: (env, constraints.txt) versions differ: {wrong}"
    assert "python=3.11" in spec["dependencies"], "the tests run on Python 3.11"
    floating = sorted(closure(pins) - set(pins) - BUILD_TOOLS)
    assert not floating, f"{env.name}: dependencies not pinned (pip would take the newest): {floating}"


@pytest.mark.parametrize("env", [e for e in ENVS if e.name not in ISOLATED], ids=env_ids)
def test_env_installs_the_package_from_the_repository(env, tmp_path):
    script = env.with_name(env.stem + ".post-deploy.sh")
    assert script.is_file(), f"{script.name} missing: nothing would install scfmbench into {env.name}"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "pip install --no-deps -e" in text
    # Outside the repository it stops with a clear message instead of installing something else.
    proc = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert proc.returncode == 1 and "is not the scfmbench repository" in proc.stderr


def test_constraints_pin_torch_first_class():
    assert constraints()["torch"] == "2.13.0"


def test_every_rule_env_exists():
    for smk in (REPO / "workflow" / "rules").rglob("*.smk"):
        for rel in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / rel).resolve().exists(), f"{smk.name}: conda env {rel} missing"
