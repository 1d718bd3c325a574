import copy

import pytest
import yaml
from conftest import REPO

from scfmbench import InputError
from scfmbench.config import check_methods, load_config, validate_config


def base():
    return {"datasets": {"pbmc68k": {"source": "pbmc68k"}}}


def test_defaults_are_filled(schema_path):
    cfg = validate_config(base(), schema_path)
    assert cfg["seeds"] == [0, 1, 2]
    assert cfg["split"]["valid_fraction"] == 0.25
    assert cfg["params"]["scgpt"]["n_bins"] == 51
    assert cfg["datasets"]["pbmc68k"]["min_library_size"] == 4000


def test_embedded_default_config_is_valid(schema_path):
    cfg = load_config(REPO / "config" / "config.yaml", schema_path)
    assert set(cfg["annotation"]["datasets"]) == {"pbmc68k", "synthetic"}
    check_methods(cfg, REPO / "workflow" / "rules" / "methods")


def test_every_schema_key_has_description_and_default(schema_path):
    schema = yaml.safe_load(schema_path.read_text())
    missing = []

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            if "description" not in sub:
                missing.append(f"{path}{key}: description")
            if "default" not in sub and key not in node.get("required", []):
                missing.append(f"{path}{key}: default")
            walk(sub, f"{path}{key}.")

    walk(schema, "")
    walk(schema["$defs"]["dataset"], "datasets.<name>.")
    assert not missing


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(sedes=[1]), "unknown key(s) ['sedes']"),
        (lambda c: c.update(params={"scgpt": {"lrr": 1}}), "'params.scgpt': unknown key(s) ['lrr']"),
        (
            lambda c: c["datasets"]["pbmc68k"].update(source="pbmc"),
            "choose one of ['pbmc68k', 'synthetic', 'h5ad', 'scgpt_ms'",
        ),
        (lambda c: c.update(seeds=[]), "'seeds'"),
        (lambda c: c.update(split={"valid_fraction": 1.5}), "'split.valid_fraction'"),
        (lambda c: c.update(annotation={"datasets": ["nope"]}), "dataset 'nope' is not defined"),
        (lambda c: c["datasets"].update({"bad name": {"source": "pbmc68k"}}), "letters, digits"),
    ],
)
def test_bad_config_is_a_clear_error(schema_path, mutate, expected):
    cfg = copy.deepcopy(base())
    mutate(cfg)
    with pytest.raises(InputError) as err:
        validate_config(cfg, schema_path)
    assert expected in str(err.value)


def test_unknown_method_names_the_rule_file(schema_path, tmp_path):
    cfg = validate_config({**base(), "annotation": {"methods": ["majority", "mymethod"]}}, schema_path)
    with pytest.raises(InputError, match="mymethod.smk"):
        check_methods(cfg, tmp_path)
    (tmp_path / "mymethod.smk").write_text("")
    check_methods(cfg, tmp_path)


def test_unknown_attention_is_an_error(schema_path, tmp_path):
    cfg = validate_config({**base(), "annotation": {"methods": ["scgpt-nosuchkernel"]}}, schema_path)
    with pytest.raises(InputError, match="unknown attention 'nosuchkernel'"):
        check_methods(cfg, tmp_path)


@pytest.mark.parametrize(
    "kernel_config, expected",
    [
        ({"bigbrid": {"window": 8}}, "'params.scgpt.kernel_config.bigbrid': unknown kernel"),
        (
            {"bigbird": {"windw": 8}},
            "unknown option(s) ['windw']; bigbird takes ['dropout', 'n_global', 'n_random', "
            "'random_density', 'seed', 'window']",
        ),
        ({"diffuser": {"window": "mean"}}, "window must be an even integer >= 2"),
        ({"longformer": {"window": 1}}, "window must be an even integer >= 2"),
        ({"bigbird": {"random_density": 2.0}}, "random_density must be a number in [0, 1]"),
        (
            {"bigbird": {"window": 13}},
            "or 'mean_degree' (the dataset graph's mean in-degree, rounded up to even), got 13",
        ),
    ],
)
def test_bad_kernel_config_is_a_clear_error(schema_path, tmp_path, kernel_config, expected):
    cfg = validate_config({**base(), "params": {"scgpt": {"kernel_config": kernel_config}}}, schema_path)
    with pytest.raises(InputError) as err:
        check_methods(cfg, tmp_path)
    assert expected in str(err.value)
    cfg["params"]["scgpt"]["kernel_config"] = {
        "bigbird": {"window": "mean_degree"},
        "diffuser": {"preset": "official", "window": 22},
    }
    check_methods(cfg, tmp_path)
