"""config/config.yaml (the 15-minute default) and config/cpu.yaml (its breadth, about an hour):
both valid, three seeds, cpu.yaml a superset of the default's methods plus GenoHoption Table I's
grid and scHyena, and every trainer in either one stopped by its validation criterion rather than
by a cap (the property behind their "no not converged row"; the runs themselves are measured in
docs/measured.md and the closing notes, not here)."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO

from scfmbench.config import validate_config

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
ATTENTIONS = ["full", "genohoption-p", "genohoption-h", "longformer", "bigbird", "diffuser", "performer"]
TABLE_I = [f"{b}-{a}" for b in ("scgpt", "geneformer") for a in ATTENTIONS] + [
    "scbert-performer"
]  # GenoHoption Table I


def load(name: str) -> dict:
    """config/config.yaml, with config/<name> layered over it as ``--configfile`` does."""
    from snakemake.utils import update_config

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if name != "config.yaml":
        update_config(cfg, yaml.safe_load((REPO / "config" / name).read_text()))
    return validate_config(cfg, SCHEMA)


@pytest.fixture(scope="module", params=["config.yaml", "cpu.yaml"])
def cfg(request):
    return request.param, load(request.param)


def test_three_seeds(cfg):
    assert cfg[1]["seeds"] == [0, 1, 2]


def test_cpu_yaml_is_the_defaults_breadth():
    default, cpu = load("config.yaml"), load("cpu.yaml")
    for task in ("annotation", "imputation", "perturbation"):
        assert set(default[task]["methods"]) <= set(cpu[task]["methods"]), task
        assert set(default[task]["datasets"]) <= set(cpu[task]["datasets"]), task
    assert set(TABLE_I) | {"schyena"} <= set(cpu["annotation"]["methods"])
    assert "schyena" in cpu["imputation"]["methods"]
    generators = {m for m in cpu["perturbation"]["methods"] if m.startswith("scgpt-")}
    assert generators == {f"scgpt-{a}" for a in ATTENTIONS}
    assert (
        set(cpu["pretraining"]["strategies"]) == {"uniform", "stratified", "random", "expression", "mam"}
        and cpu["pretraining"]["scratch"]
    )
    assert len(default["annotation"]["methods"]) < len(cpu["annotation"]["methods"])  # the default is the cut one


def test_every_trainer_stops_on_its_validation_criterion_not_a_cap(cfg):
    """Transformers: no step cap, an epoch cap at least 4 patiences beyond the run; the masked
    pretraining, scHyena's pretraining, fine-tuning and imputer: early stopping on validation."""
    name, c = cfg
    methods = set(c["annotation"]["methods"]) | {
        f"{b}-full" for b in c["pretraining"]["backbones"] if c["pretraining"]["datasets"]
    }
    backbones = {
        m.split("-")[0] for m in methods if m.split("-")[0] in ("scgpt", "geneformer", "scbert", "scfoundation")
    }
    assert backbones, name
    for b in backbones:
        p = c["params"][b]
        assert p["max_steps"] is None, (name, b)
        assert p["epochs"] >= 10 * p["patience"], (name, b)
    if c["pretraining"]["datasets"]:
        pt = c["pretraining"]
        assert pt["patience"] and pt["eval_every"] and pt["steps"] >= 20 * pt["eval_every"], name
        assert pt["finetune"].get("max_steps", "unset") is None, name
    if "schyena" in methods | set(c["imputation"]["methods"]):
        s = c["params"]["schyena"]
        assert (
            s["pretrain_patience"] and s["pretrain_eval_every"] and s["pretrain_steps"] >= 20 * s["pretrain_eval_every"]
        ), name
        assert s["epochs"] >= 10 * s["patience"], name
        if "schyena" in c["imputation"]["methods"]:
            assert (
                s["impute_patience"] and s["impute_eval_every"] and s["impute_steps"] >= 20 * s["impute_eval_every"]
            ), name
    gen = c["perturbation"]["params"]["scgpt"]
    assert gen["patience"] < gen["epochs"], name  # scGPT's 15 epochs, stopped by validation


def test_the_paper_grid_keeps_the_papers_fixed_budgets():
    """Early stopping of masked training is ours (config/cpu.yaml); the paper config keeps MAM's
    fixed number of steps and scHyena's fixed budgets."""
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert paper["pretraining"]["patience"] is None
    s = paper["params"]["schyena"]
    assert s["pretrain_patience"] is None and s["impute_patience"] is None


def test_unknown_key_in_cpu_yaml_is_an_error():
    from snakemake.utils import update_config

    from scfmbench import InputError

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    extra = copy.deepcopy(yaml.safe_load((REPO / "config" / "cpu.yaml").read_text()))
    extra["params"]["schyena"]["impute_patiense"] = 5
    update_config(cfg, extra)
    with pytest.raises(InputError, match="impute_patiense"):
        validate_config(cfg, SCHEMA)
