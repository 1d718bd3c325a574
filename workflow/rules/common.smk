# Config validation, method tables, wildcard constraints and input helpers: the only place for them.
from pathlib import Path

from scfmbench.config import BACKBONES, BUILTIN_ANNOTATION, BUILTIN_IMPUTATION, check_methods, split_method, validate_config

METHOD_RULE_DIR = Path(workflow.basedir) / "workflow" / "rules" / "methods"

validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
check_methods(config, METHOD_RULE_DIR)

SEEDS = config["seeds"]
ANNOTATION = config["annotation"]
IMPUTATION = config["imputation"]
TRANSFORMERS = [m for m in ANNOTATION["methods"] if m not in BUILTIN_ANNOTATION and split_method(m)[0] in BACKBONES and not (METHOD_RULE_DIR / f"{m}.smk").exists()]


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    method=r"[a-z0-9][a-z0-9_]*(-[a-z0-9_]+)*",
    seed=r"[0-9]+",


# Paths of the result contract (src/scfmbench/results.py). A method's rule file uses these helpers
# with its own id, so its outputs land where scoring and the report look.
PREPARED = "results/data/{dataset}/seed{seed}/prepared.h5ad"
MASKED = "results/imputation/{dataset}/seed{seed}/masked.h5ad"
HELDOUT = "results/imputation/{dataset}/seed{seed}/heldout.npz"


def annotation_output(method="{method}"):
    return f"results/annotation/{{dataset}}/{method}/seed{{seed}}/predictions.csv"


def annotation_benchmark(method="{method}"):
    return f"results/benchmarks/annotation/{{dataset}}/{method}/seed{{seed}}.tsv"


def annotation_log(method="{method}"):
    return f"results/logs/annotation/{{dataset}}/{method}/seed{{seed}}.log"


def imputation_output(method="{method}"):
    return f"results/imputation/{{dataset}}/{method}/seed{{seed}}/predictions.npz"


def imputation_benchmark(method="{method}"):
    return f"results/benchmarks/imputation/{{dataset}}/{method}/seed{{seed}}.tsv"


def imputation_log(method="{method}"):
    return f"results/logs/imputation/{{dataset}}/{method}/seed{{seed}}.log"


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def split_config(wildcards):
    return config["split"]


def method_params(wildcards):
    """Parameters of a method from config 'params' (a transformer's come from its backbone's entry)."""
    method = wildcards.method
    key = split_method(method)[0] if method in TRANSFORMERS else method
    return config["params"].get(key, {})


def min_library_size(wildcards):
    return config["datasets"][wildcards.dataset]["min_library_size"]


def gpu_request(wildcards):
    return config["resources"]["gpu"]


def metrics_files():
    """Every metrics record the config asks for: task x dataset x method x seed."""
    files = []
    for task, cfg in (("annotation", ANNOTATION), ("imputation", IMPUTATION)):
        for dataset in cfg["datasets"]:
            for method in cfg["methods"]:
                files += [f"results/{task}/{dataset}/{method}/seed{seed}/metrics.csv" for seed in SEEDS]
    return files


def report_files():
    from scfmbench.report import report_paths

    return [str(p) for p in report_paths("results/report", ("annotation", "imputation")).values()]


def all_outputs():
    return metrics_files() + report_files()
