"""Config validation: a JSON schema with a description and a default for every key.

Unknown keys are errors (``additionalProperties: false``), so a typo never becomes a silent no-op.
Written on top of ``jsonschema`` rather than ``snakemake.utils.validate`` because the messages must
name the key path and what is allowed there, and because tests import it without a workflow.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from scfmbench import InputError

BUILTIN_ANNOTATION = ("majority", "logreg")
# Imputers with a rule in workflow/rules/impute.smk: the controls none, perfect and true_rate (the
# oracles only on datasets with a truth layer; true_rate under MCV only), MAGIC, the DCA port, and
# the original dca package (its own conda env).
BUILTIN_IMPUTATION = ("none", "perfect", "true_rate", "magic", "dca", "dca_original")
# Methods with a stage of their own (a rule file shipped in workflow/rules/): task -> ids.
STAGE_METHODS = {"annotation": ("schyena",), "imputation": ("schyena",)}
BACKBONES = ("scgpt", "geneformer", "scbert", "scfoundation")


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
        return (
            f"config key {where!r}: {err.message} (names may use letters, digits and underscores; method ids "
            "lower-case words joined by '-')"
        )
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
    _check_cross_references(config, schema)
    return config


def _check_cross_references(config: dict[str, Any], schema: dict) -> None:
    datasets = config["datasets"]
    for task in ("annotation", "imputation"):
        for name in config[task]["datasets"]:
            if name not in datasets:
                raise InputError(
                    f"config key '{task}.datasets': dataset {name!r} is not defined under 'datasets' "
                    f"(defined: {sorted(datasets)})"
                )
    ann = config["annotation"]
    for method, names in ann["method_datasets"].items():
        if method not in ann["methods"]:
            raise InputError(
                f"config key 'annotation.method_datasets.{method}': {method!r} is not in "
                f"annotation.methods ({ann['methods']})"
            )
        for name in names:
            if name not in ann["datasets"]:
                raise InputError(
                    f"config key 'annotation.method_datasets.{method}': dataset {name!r} is not in "
                    f"annotation.datasets ({ann['datasets']})"
                )
    for block in ("fewshot", "sensitivity"):
        for name in config[block]["datasets"]:
            if name not in datasets:
                raise InputError(
                    f"config key '{block}.datasets': dataset {name!r} is not defined under 'datasets' "
                    f"(defined: {sorted(datasets)})"
                )
    for name, ds in datasets.items():
        if ds["source"] == "h5ad" and not ds.get("path"):
            raise InputError(f"config key 'datasets.{name}.path': source 'h5ad' needs a path to the .h5ad file")
        _check_source_keys(name, ds, schema)
    _check_label_tasks(config)
    check_embedding(config)


# The dataset keys each source reads (besides 'source'); any other key set to a value other than its
# default would be silently ignored, so it is an error.
_PAPER_KEYS = ("path", "recover_counts", "min_library_size", "species")
SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "pbmc68k": ("min_library_size", "species"),
    "synthetic": ("synthetic", "min_library_size"),
    "h5ad": (
        "path",
        "label_column",
        "split_column",
        "counts_layer",
        "gene_symbols_column",
        "recover_counts",
        "log_base",
        "screen",
        "min_library_size",
        "species",
    ),
    **{s: _PAPER_KEYS for s in ("scgpt_ms", "scgpt_myeloid", "scgpt_pancreas")},
    **{
        s: (*_PAPER_KEYS, "label_column")
        for s in ("gears_adamson", "gears_norman", "gears_dixit", "gears_replogle_k562", "gears_replogle_rpe1")
    },
    **{s: ("path", "cell_labels", "min_library_size", "species") for s in ("geo_lau2020", "geo_smajic2022")},
}


def _check_source_keys(name: str, ds: dict[str, Any], schema: dict) -> None:
    used = SOURCE_KEYS.get(ds["source"])
    if used is None:
        return
    props = schema["$defs"]["dataset"]["properties"]
    ignored = sorted(
        k for k, v in ds.items() if k != "source" and k not in used and k in props and not _is_default(v, props[k])
    )
    if ignored:
        raise InputError(
            f"config key 'datasets.{name}.{ignored[0]}': source {ds['source']!r} does not read {ignored} (it reads "
            f"{sorted(used)}); remove the key, or use a source that reads it (e.g. 'h5ad' for your own file)"
        )


def _is_default(value: Any, prop: dict) -> bool:
    """``value`` is the schema default of ``prop`` (an object also when filled with its keys' defaults)."""
    if value == prop.get("default"):
        return True
    sub = prop.get("properties")
    return (
        isinstance(value, dict)
        and sub is not None
        and all(k in sub and v == sub[k].get("default") for k, v in value.items())
    )


def _check_label_tasks(config: dict[str, Any]) -> None:
    """A dataset without labels (label_column: null) in a task that needs them: name the task."""
    for task, names in (
        ("annotation", config["annotation"]["datasets"]),
        ("fewshot", config["fewshot"]["datasets"]),
        ("sensitivity", config["sensitivity"]["datasets"]),
    ):
        for name in names:
            ds = config["datasets"][name]
            if ds["source"] == "h5ad" and ds.get("label_column", "") is None:
                raise InputError(
                    f"config key '{task}.datasets': dataset {name!r} has no cell types (datasets.{name}.label_column "
                    f"is null), but {task} needs them. Remove {name!r} from {task}.datasets, or set "
                    f"datasets.{name}.label_column to its obs label column."
                )


def check_methods(config: dict[str, Any], rule_dir: str | Path) -> None:
    """Every configured method is built in or has a rule file ``rule_dir/<method>.smk``."""
    rule_dir = Path(rule_dir)
    plugged = {p.stem for p in rule_dir.glob("*.smk")}
    for task, builtin in (("annotation", BUILTIN_ANNOTATION), ("imputation", BUILTIN_IMPUTATION)):
        for method in config[task]["methods"]:
            if method in builtin or method in plugged or method in STAGE_METHODS.get(task, ()):
                continue
            if (
                task == "annotation"
                and parse_transformer(method, where=f"config key 'annotation.methods': {method!r}") is not None
            ):
                continue
            raise InputError(
                f"config key '{task}.methods': {method!r} is neither built in ({list(builtin)}"
                + (
                    f", or '{{backbone}}-{{attention}}' with backbone in {list(BACKBONES)}"
                    if task == "annotation"
                    else ""
                )
                + f") nor provided by a rule file {rule_dir / (method + '.smk')}"
            )
    for method in config["fewshot"]["methods"]:
        where = f"config key 'fewshot.methods': {method!r}"
        if (
            method in BUILTIN_ANNOTATION
            or method in plugged
            or method in STAGE_METHODS["annotation"]
            or parse_transformer(method, where=where)
        ):
            continue
        raise InputError(
            f"{where} is not an annotation method (built in {list(BUILTIN_ANNOTATION)}, 'schyena', "
            f"'{{backbone}}-{{attention}}' or a rule file {rule_dir / (method + '.smk')})"
        )
    for method in config["sensitivity"]["methods"]:
        where = f"config key 'sensitivity.methods': {method!r}"
        spec = parse_transformer(method, where=where)
        if spec is None or spec.override is not None or not sensitivity_keys(spec.attention):
            raise InputError(
                f"{where}: the sensitivity runs vary {list(SENSITIVITY_KEYS)} of a "
                f"'{{backbone}}-{{attention}}' method whose attention takes them (e.g. genohoption-p: alpha, "
                "k; genohoption-h: t, k), given without a '.' suffix"
            )
    check_kernel_config(config)


def check_kernel_config(config: dict[str, Any]) -> None:
    """``params.<backbone>.kernel_config``: registered kernels, options their classes take, and a
    ``window`` that is a number or ``mean_degree`` (the dataset's gene graph decides it)."""
    from scfmbench.models.attention import KERNELS

    for backbone in BACKBONES:
        for kernel, options in (config["params"].get(backbone) or {}).get("kernel_config", {}).items():
            where = f"config key 'params.{backbone}.kernel_config.{kernel}'"
            if kernel not in KERNELS:
                raise InputError(f"{where}: unknown kernel; registered kernels are {sorted(KERNELS)}")
            takes = kernel_option_names(kernel)
            unknown = sorted(set(options) - set(takes))
            if unknown:
                raise InputError(f"{where}: unknown option(s) {unknown}; {kernel} takes {takes}")
            density = options.get("random_density")
            if density is not None and (
                isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 <= density <= 1
            ):
                raise InputError(
                    f"{where}: random_density must be a number in [0, 1] (GenoHoption's BigBird: 0.09765625 "
                    f"= 200/2048), got {density!r}"
                )
            window = options.get("window")
            if (
                window is not None
                and window != MEAN_DEGREE
                and (isinstance(window, bool) or not isinstance(window, int) or window < 2 or window % 2)
            ):
                raise InputError(
                    f"{where}: window must be an even integer >= 2 (blocks of w tokens every w/2) or 'mean_degree' "
                    f"(the dataset graph's mean in-degree, rounded up to even), got {window!r}"
                )


# Transformer method ids: ``{backbone}-{attention}[-{ablation}][.{key}{value}]``.
# Ablations (GenoHoption Table II) swap the gene graph the kernel runs on for a variant built
# without one of its parts; the sensitivity suffix (Fig. 5) overrides one kernel option.
ABLATIONS = {"nogrn": "no_grn", "nocoexpr": "no_coexpr"}
SENSITIVITY_KEYS = ("alpha", "t", "k")
# A kernel option ``window: mean_degree``: the window is the dataset gene graph's mean in-degree
# (scfmbench.annotation.transformer.mean_degree_window; GenoHoption's BigBird and Diffuser).
MEAN_DEGREE = "mean_degree"


@dataclass(frozen=True)
class TransformerMethod:
    """A parsed transformer method id."""

    backbone: str
    attention: str
    graph_variant: str = "full"  # the gene-graph variant (results/graphs/.../{variant}.npz)
    override: tuple[str, float] | None = None  # (kernel option, value) of a sensitivity run

    @property
    def base(self) -> str:
        """The id without the sensitivity suffix."""
        suffix = next((k for k, v in ABLATIONS.items() if v == self.graph_variant), None)
        return f"{self.backbone}-{self.attention}" + (f"-{suffix}" if suffix else "")

    def kernel_options(self) -> dict:
        if self.override is None:
            return {}
        key, value = self.override
        return {key: int(value) if key == "k" else float(value)}


def kernel_option_names(attention: str) -> list[str]:
    """The options a registered kernel's class takes (its constructor's keywords), sorted."""
    from scfmbench.models.attention.base import kernel_option_names

    return kernel_option_names(attention)


def sensitivity_keys(attention: str) -> list[str]:
    """The sensitivity options (alpha, t, k) a kernel takes."""
    takes = kernel_option_names(attention)
    return [k for k in SENSITIVITY_KEYS if k in takes]


def sensitivity_method(base: str, key: str, value: float) -> str:
    """``('scgpt-genohoption-p', 'alpha', 0.1)`` -> ``'scgpt-genohoption-p.alpha0.1'``."""
    return f"{base}.{key}{value:g}"


_SUFFIX = re.compile(r"^(?P<key>[a-z]+)(?P<value>[0-9]+(\.[0-9]+)?)$")


def parse_transformer(method: str, *, where: str | None = None) -> TransformerMethod | None:
    """Parse ``{backbone}-{attention}[-{ablation}][.{key}{value}]``; None if not a transformer id.

    With ``where`` (a config location for the message), an id whose backbone is known but whose
    attention, ablation or suffix is not raises :class:`InputError`; without it such ids give None.
    """
    from scfmbench.models.attention import KERNELS

    base, dot, suffix = method.partition(".")
    backbone, _, rest = base.partition("-")
    if backbone not in BACKBONES or not rest:
        return None

    def fail(msg):
        if where is None:
            return None
        raise InputError(f"{where}: {msg}")

    variant = "full"
    for name, graph_variant in ABLATIONS.items():
        if rest.endswith("-" + name):
            rest, variant = rest[: -len(name) - 1], graph_variant
            break
    if rest not in KERNELS:
        return fail(
            f"unknown attention {rest!r}; registered kernels are {sorted(KERNELS)} (ablation "
            f"suffixes: {sorted(ABLATIONS)})"
        )
    if variant != "full" and not KERNELS[rest].needs_edges:
        return fail(
            f"the ablation '-{method.split('-')[-1].split('.')[0]}' changes the gene graph, but "
            f"{rest!r} does not run on one"
        )
    override = None
    if dot:
        m = _SUFFIX.match(suffix)
        if not m or m["key"] not in SENSITIVITY_KEYS:
            return fail(
                f"the suffix '.{suffix}' must be one of {list(SENSITIVITY_KEYS)} followed by a "
                "number, e.g. '.alpha0.1', '.k4'"
            )
        if m["key"] not in sensitivity_keys(rest):
            return fail(f"attention {rest!r} takes no option {m['key']!r} (it takes {sensitivity_keys(rest)})")
        override = (m["key"], float(m["value"]))
    return TransformerMethod(backbone, rest, variant, override)


# Few-shot runs (GenoHoption Fig. 4a,b) use derived datasets ``{dataset}-fs{fraction}``: the same
# cells, prepared with ``split.train_fraction`` = fraction, so that every annotation rule, graph
# and score works on them unchanged.
FEWSHOT = "-fs"


def fewshot_dataset(dataset: str, fraction: float) -> str:
    """``('pancreas', 0.25)`` -> ``'pancreas-fs0.25'``."""
    return f"{dataset}{FEWSHOT}{fraction:g}"


def parse_dataset(name: str) -> tuple[str, float | None]:
    """``'pancreas-fs0.25'`` -> ``('pancreas', 0.25)``; a configured dataset -> ``(name, None)``."""
    base, sep, fraction = name.partition(FEWSHOT)
    return (base, float(fraction)) if sep else (name, None)


def annotation_datasets(config: dict[str, Any], method: str) -> list[str]:
    """The main-grid datasets a method runs on ('annotation.method_datasets' narrows the list)."""
    datasets = config["annotation"]["datasets"]
    only = config["annotation"]["method_datasets"].get(method)
    return datasets if only is None else [d for d in datasets if d in only]


def annotation_runs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (dataset, method) the annotation rules run: the main grid, the few-shot grid
    (derived datasets) and the sensitivity grid (suffixed method ids), without repeats."""
    runs = [(d, m) for m in config["annotation"]["methods"] for d in annotation_datasets(config, m)]
    fs = config["fewshot"]
    runs += [(fewshot_dataset(d, f), m) for d in fs["datasets"] for f in fs["fractions"] for m in fs["methods"]]
    runs += [run for run in pretraining_annotation_runs(config)]
    sens = config["sensitivity"]
    for method in sens["methods"]:
        spec = parse_transformer(method)
        for key in sensitivity_keys(spec.attention):
            runs += [(d, sensitivity_method(method, key, v)) for d in sens["datasets"] for v in sens[key]]
    return list(dict.fromkeys(runs))


# Masked pretraining (scfmbench.pretrain; workflow/rules/pretrain.smk): every (dataset, backbone,
# strategy) of the ``pretraining`` block is pretrained per seed, then fine-tuned for cell types as
# annotation method ``{backbone}-{attention}-pt{strategy}``, beside ``{backbone}-{attention}-scratch``
# (no pretraining, ``pretraining.scratch``); both with the ``pretraining.finetune`` training options.
def pretraining_grid(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(dataset, backbone, strategy) of every pretraining run of the grid (scHyena's own
    pretraining is added by the workflow where schyena annotates)."""
    pre = config.get("pretraining") or {}
    return [
        (d, b, s) for d in pre.get("datasets", []) for b in pre.get("backbones", []) for s in pre.get("strategies", [])
    ]


def pretraining_annotation_runs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(dataset, method) of the fine-tunings from the grid's checkpoints, and of the from-scratch
    baselines beside them."""
    pre = config.get("pretraining") or {}
    att = pre.get("attention", "full")
    runs = []
    for d, b, s in pretraining_grid(config):
        if pre.get("scratch", True):
            runs.append((d, f"{b}-{att}-scratch"))
        runs.append((d, f"{b}-{att}-pt{s}"))
    return list(dict.fromkeys(runs))


def check_pretraining(config: dict[str, Any]) -> None:
    """The ``pretraining`` block: pretrainable backbones, strategies or variants that build,
    datasets that exist, a kernel that needs no gene graph."""
    from scfmbench.models.attention import KERNELS
    from scfmbench.pretrain.backbones import READERS
    from scfmbench.pretrain.masking import strategy_for
    from scfmbench.train import TRAIN_KEYS

    pre = config.get("pretraining") or {}
    for b in pre.get("backbones", []):
        if b not in READERS:
            raise InputError(
                f"config key 'pretraining.backbones': {b!r} cannot be pretrained here; pretrainable backbones are "
                f"{sorted(READERS)} (geneformer's rank-value input has no values to mask; schyena pretrains through "
                "params.schyena wherever it annotates)"
            )
    for d in pre.get("datasets", []):
        if d not in config["datasets"]:
            raise InputError(
                f"config key 'pretraining.datasets': {d!r} is not a configured dataset; datasets are "
                f"{sorted(config['datasets'])}"
            )
    for s in pre.get("strategies", []):
        if not re.fullmatch(r"[a-z0-9_]+", s):
            raise InputError(
                f"config key 'pretraining.strategies': {s!r} must be lower-case letters, digits and '_' (it "
                "becomes part of a method id)"
            )
        strategy_for(s, {**pre, "strategy_options": ratio_options(pre)})
    unknown = sorted(set(pre.get("finetune") or {}) - set(TRAIN_KEYS))
    if unknown:
        raise InputError(
            f"config key 'pretraining.finetune': unknown training option(s) {unknown}; allowed are {list(TRAIN_KEYS)}"
        )
    att = pre.get("attention", "full")
    if att not in KERNELS or KERNELS[att].needs_edges:
        raise InputError(
            f"config key 'pretraining.attention': {att!r} must be a registered kernel that needs no gene graph: "
            f"{sorted(k for k, v in KERNELS.items() if not v.needs_edges)}"
        )


def ratio_options(pre: dict[str, Any]) -> dict[str, dict]:
    """``strategy_options`` with ``pretraining.ratio`` (when set) as every ratio-taking strategy's ratio."""
    out = {k: dict(v) for k, v in (pre.get("strategy_options") or {}).items()}
    if pre.get("ratio") is not None:
        for name in ("stratified", "random", "expression", "mam"):
            out[name] = {"ratio": pre["ratio"], **out.get(name, {})}
    return out


# Cell embeddings (scfmbench.embedding; workflow/rules/embed.smk): the annotation runs' models write
# every cell's embedding; the 'embedding' block says which datasets are scored.
def embedding_datasets(config: dict[str, Any]) -> list[str]:
    """The datasets whose embeddings are scored: ``embedding.datasets``, null = ``annotation.datasets``."""
    names = config["embedding"]["datasets"]
    return list(config["annotation"]["datasets"] if names is None else names)


def check_embedding(config: dict[str, Any]) -> None:
    """The ``embedding`` block: scored datasets are annotation datasets (their models write the
    embeddings, their labels score them); batch columns name scored datasets."""
    emb = config["embedding"]
    for name in embedding_datasets(config):
        if name not in config["annotation"]["datasets"]:
            raise InputError(
                f"config key 'embedding.datasets': {name!r} is not in annotation.datasets "
                f"({config['annotation']['datasets']}); embeddings come from the annotation runs and are "
                "scored against their cell types"
            )
    for name in emb["batch_columns"]:
        if name not in embedding_datasets(config):
            raise InputError(
                f"config key 'embedding.batch_columns.{name}': {name!r} is not a dataset whose embeddings are scored "
                f"({embedding_datasets(config)})"
            )


def load_config(path: str | Path, schema_path: str | Path) -> dict[str, Any]:
    """Read a YAML config (safe_load) and validate it."""
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    if not isinstance(config, dict):
        raise InputError(f"{path}: the config must be a mapping of keys to values")
    return validate_config(config, schema_path)
