"""Config validation: a JSON schema with a description and a default for every key.

Unknown keys are errors (``additionalProperties: false``), so a typo never becomes a silent no-op.
Written on top of ``jsonschema`` rather than ``snakemake.utils.validate`` because the messages must
name the key path and what is allowed there, and because tests import it without a workflow.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from scfmbench import InputError

BUILTIN_ANNOTATION = ("majority", "logreg")
# Imputers with a rule in workflow/rules/impute.smk: the controls none and perfect (perfect only on
# datasets with a truth layer), MAGIC, the DCA port, and the original dca package (its own conda env).
BUILTIN_IMPUTATION = ("none", "perfect", "magic", "dca", "dca_original")
# Methods with a stage of their own (a rule file shipped in workflow/rules/): task -> ids.
STAGE_METHODS = {"annotation": ("schyena",), "imputation": ("schyena",)}
BACKBONES = ("scgpt", "geneformer", "scbert")


def _with_defaults(validator_class):
    """Extend a validator so it fills ``default`` values in place (the jsonschema FAQ recipe)."""
    validate_props = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _explain(err: jsonschema.ValidationError) -> str:
    where = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        return f"config key {where!r}: unknown key(s) {extra}; allowed keys here are {allowed}"
    if err.validator == "enum":
        return f"config key {where!r}: {err.instance!r} is not allowed; choose one of {err.validator_value}"
    if err.validator == "pattern" or (err.validator == "propertyNames"):
        return f"config key {where!r}: {err.message} (names may use letters, digits and underscores; method ids lower-case words joined by '-')"
    desc = err.schema.get("description")
    return f"config key {where!r}: {err.message}" + (f" ({desc})" if desc else "")


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Validate ``config`` against the schema, fill defaults in place, run cross-key checks; return it."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise InputError("invalid config:\n  " + "\n  ".join(_explain(e) for e in errors))
    # Defaults of nested objects are filled only once the parent exists; a second pass fills them.
    list(_Validator(schema).iter_errors(config))
    _check_cross_references(config)
    return config


def _check_cross_references(config: dict[str, Any]) -> None:
    datasets = config["datasets"]
    for task in ("annotation", "imputation"):
        for name in config[task]["datasets"]:
            if name not in datasets:
                raise InputError(f"config key '{task}.datasets': dataset {name!r} is not defined under 'datasets' (defined: {sorted(datasets)})")
    for name, ds in datasets.items():
        if ds["source"] == "h5ad" and not ds.get("path"):
            raise InputError(f"config key 'datasets.{name}.path': source 'h5ad' needs a path to the .h5ad file")


def check_methods(config: dict[str, Any], rule_dir: str | Path) -> None:
    """Every configured method is built in or has a rule file ``rule_dir/<method>.smk``."""
    rule_dir = Path(rule_dir)
    plugged = {p.stem for p in rule_dir.glob("*.smk")}
    for task, builtin in (("annotation", BUILTIN_ANNOTATION), ("imputation", BUILTIN_IMPUTATION)):
        for method in config[task]["methods"]:
            if method in builtin or method in plugged or method in STAGE_METHODS.get(task, ()):
                continue
            if task == "annotation" and "-" in method:
                backbone, attention = split_method(method)
                if backbone in BACKBONES:
                    check_attention(attention, where=f"annotation.methods: {method!r}")
                    continue
            raise InputError(
                f"config key '{task}.methods': {method!r} is neither built in ({list(builtin)}"
                + (f", or '{{backbone}}-{{attention}}' with backbone in {list(BACKBONES)}" if task == "annotation" else "")
                + f") nor provided by a rule file {rule_dir / (method + '.smk')}"
            )


def split_method(method: str) -> tuple[str, str]:
    """``'scgpt-genohoption-p'`` -> ``('scgpt', 'genohoption-p')``."""
    backbone, _, attention = method.partition("-")
    return backbone, attention


def check_attention(attention: str, *, where: str) -> None:
    from scfmbench.models.attention import KERNELS

    if attention not in KERNELS:
        raise InputError(f"{where}: unknown attention {attention!r}; registered kernels are {sorted(KERNELS)}")


def load_config(path: str | Path, schema_path: str | Path) -> dict[str, Any]:
    """Read a YAML config (safe_load) and validate it."""
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    if not isinstance(config, dict):
        raise InputError(f"{path}: the config must be a mapping of keys to values")
    return validate_config(config, schema_path)
