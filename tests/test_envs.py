"""envs/*.yaml cannot be exercised with --use-conda here (no conda): check that they parse, that
every pin agrees with constraints.txt (what the tests run with), and that every rule's env exists."""

import re

import pytest
import yaml

from conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def constraints():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_parses_and_pins_agree(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["name"].startswith("scfmbench-") and "conda-forge" in spec["channels"]
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    pins = constraints()
    pinned = [p for p in pip if "==" in p]
    assert pinned, f"{env.name} pins nothing"
    for req in pinned:
        name, version = req.split("==")
        assert pins.get(name.lower().replace("_", "-")) == version, f"{env.name}: {req} but constraints.txt has {pins.get(name.lower())}"


def test_constraints_pin_torch_first_class():
    assert constraints()["torch"] == "2.13.0"


def test_every_rule_env_exists():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for rel in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / rel).resolve().exists(), f"{smk.name}: conda env {rel} missing"
