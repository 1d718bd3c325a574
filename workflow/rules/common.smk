# Config validation, method tables, wildcard constraints and input helpers: the only place for them.
from pathlib import Path

import re

from scfmbench.report.significance import check_config as check_significance
from scfmbench.config import (
    BUILTIN_ANNOTATION,
    BUILTIN_IMPUTATION,
    annotation_datasets,
    annotation_runs,
    check_methods,
    parse_dataset,
    parse_transformer,
    validate_config,
)

METHOD_RULE_DIR = Path(workflow.basedir) / "workflow" / "rules" / "methods"

validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
check_methods(config, METHOD_RULE_DIR)
check_significance(config["significance"])

SEEDS = config["seeds"]
# Every seed of a (dataset, transformer) in one job (one process: start-up and imports paid once).
GROUP_SEEDS = config["resources"]["group_seeds"]
ANNOTATION = config["annotation"]
IMPUTATION = config["imputation"]
# Every (dataset, method) annotation runs: the main grid, few-shot datasets '{dataset}-fs{fraction}'
# and sensitivity methods '{method}.{option}{value}' (scfmbench.config.annotation_runs).
ANNOTATION_RUNS = annotation_runs(config)
# Transformer ids ({backbone}-{attention}[-{ablation}][.{option}{value}]) run by annotate_transformer.
TRANSFORMERS = sorted(
    {
        m
        for _, m in ANNOTATION_RUNS
        if m not in BUILTIN_ANNOTATION and parse_transformer(m) and not (METHOD_RULE_DIR / f"{m}.smk").exists()
    }
)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+(-fs[0-9.]+)?",
    method=r"[a-z0-9][a-z0-9_]*(-[a-z0-9_]+)*(\.[a-z]+[0-9]+(\.[0-9]+)?)?",
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


def per_seed(pattern):
    """A path pattern with '{seed}' expanded over the configured seeds, other wildcards kept."""
    return expand(pattern, seed=SEEDS, allow_missing=True)


def transformer_seeds(pattern):
    """A per-seed path as annotate_transformer lists it: over every seed when resources.group_seeds
    puts them in one job, else with {seed} a wildcard."""
    return per_seed(pattern) if GROUP_SEEDS else pattern


def dataset_downloads(wildcards):
    """Files a dataset is read from: manifest downloads (resources/downloads/<entry>) and the user's
    own files (the h5ad or a local 'path', the label table); none for embedded data."""
    from scfmbench.data.sources import download_inputs, local_inputs

    cfg = config["datasets"][wildcards.dataset]
    labels = cfg.get("cell_labels", {}).get("file")
    # User files are tracked once they exist (editing one in place reruns the load and everything
    # downstream); a missing one is the loader's clear error, so that dry runs work before it is in place.
    return download_inputs(cfg) + local_inputs(cfg) + ([labels] if labels and Path(labels).is_file() else [])


def label_tasks(dataset):
    """The tasks that use a dataset's labels (prepare_dataset checks them; none: labels optional)."""
    return ["annotation"] if dataset in {parse_dataset(d)[0] for d, _ in ANNOTATION_RUNS} else []


def dataset_config(wildcards):
    """A dataset's config entry (a few-shot dataset '{name}-fs{fraction}' uses its base's)."""
    return config["datasets"][parse_dataset(wildcards.dataset)[0]]


def raw_dataset(wildcards):
    """The loaded cells a prepared dataset comes from (few-shot datasets share their base's)."""
    return f"results/data/{parse_dataset(wildcards.dataset)[0]}/raw.h5ad"


def split_config(wildcards):
    """The split options; a few-shot dataset keeps its fraction of the training cells."""
    base, fraction = parse_dataset(wildcards.dataset)
    split = config["split"] if fraction is None else {**config["split"], "train_fraction": fraction}
    return {**split, "label_tasks": label_tasks(base)}


def method_params(wildcards):
    """Parameters of a method from config 'params' (a transformer's come from its backbone's entry)."""
    method = wildcards.method
    key = parse_transformer(method).backbone if method in TRANSFORMERS else method
    return config["params"].get(key, {})


def transformer_graph(wildcards):
    """The gene graph a transformer reads (its ablation's variant): graph kernels, and kernels sized
    by it (window: mean_degree); none otherwise. One per seed when resources.group_seeds."""
    from scfmbench.annotation.transformer import reads_graph

    spec = parse_transformer(wildcards.method)
    if not reads_graph(method_params(wildcards), spec.attention):
        return {}
    graph = lambda seed: GRAPH.format(dataset=wildcards.dataset, seed=seed, variant=spec.graph_variant)  # noqa: E731
    return {"graph": [graph(seed) for seed in SEEDS] if GROUP_SEEDS else graph(wildcards.seed)}


def min_library_size(wildcards):
    return dataset_config(wildcards)["min_library_size"]


def schyena_params(wildcards):
    """params.schyena (the doublet control simulates the doublets scHyena's job does)."""
    return config["params"]["schyena"]


def gpu_request(wildcards):
    return config["resources"]["gpu"]


def metrics_files():
    """Every metrics record the config asks for: task x dataset x method x seed."""
    files = [
        f"results/annotation/{dataset}/{method}/seed{seed}/metrics.csv"
        for dataset, method in ANNOTATION_RUNS
        for seed in SEEDS
    ]
    return (
        files
        + imputation_metrics_files()
        + [f for f in schyena_files() if f.endswith(".csv")]
        + perturbation_metrics_files()
        + embedding_metrics_files()
    )  # both imputation protocols: see "# imputation" below


def report_files():
    from scfmbench.report import report_paths

    return [str(p) for p in report_paths("results/report", REPORT_TASKS).values()]


REPORT_TASKS = ("annotation", "imputation", "denoising", "doublet", "embedding")


def significance_files():
    """Paired significance across seeds, average ranks and the critical-difference figure (report_significance)."""
    from scfmbench.report.significance import significance_paths

    return [str(p) for p in significance_paths("results/report").values()]


def significance_config(wildcards=None):
    """The 'significance' block: references, test, alpha, shown and main metrics (docs/statistics.md "Statistics")."""
    return config["significance"]


def schyena_files():
    """scHyena's doublet metrics (one per annotation dataset x seed) and UMAP figures."""
    if "schyena" not in ANNOTATION["methods"]:
        return []
    datasets = annotation_datasets(config, "schyena")
    doublets = [
        f"results/doublet/{d}/{m}/seed{s}/metrics.csv"
        for d in datasets
        for m in ("all_doublet", "schyena")
        for s in SEEDS
    ]  # all_doublet: the control
    return doublets + [f"results/report/figures/schyena_umap_{d}.png" for d in datasets]


def expected_records(wildcards=None):
    """(task, dataset, method, seed) of every configured metrics record, for the quality check."""
    out = []
    for path in metrics_files():
        _, task, dataset, method, seed, _ = path.split("/")
        out.append([task, dataset, method, int(seed.removeprefix("seed"))])
    return out


def annotation_run_files():
    """One annotation run record per dataset (first seed; built-in methods write one): its test cell
    types absent from training, for the quality check."""
    runs = {}
    for dataset, method in ANNOTATION_RUNS:
        if method in BUILTIN_ANNOTATION or method in TRANSFORMERS or method == "schyena":
            runs.setdefault(dataset, f"results/annotation/{dataset}/{method}/seed{SEEDS[0]}/run.json")
    return list(runs.values())


def curve_records():
    """[task, dataset, method, seed, curves.csv] of every trained run the config asks for (the
    convergence check in report_extras reads them): the annotation transformers, their pretrained
    fine-tunings and scHyena; scHyena's doublets; the perturbation generators; DCA and the scHyena
    imputer (a curve per fold); the pretraining
    grid and scHyena's pretraining (task 'pretraining', method '{backbone}-{strategy}')."""
    out = []
    for path in metrics_files():
        parts = path.split("/")
        if len(parts) != 6:
            continue
        _, task, dataset, method, seed, _ = parts
        trained = {
            "annotation": method in TRANSFORMERS or method in PRETRAINED_METHODS or method == "schyena",
            "doublet": method == "schyena",
            "perturbation": _perturbation.is_generator(method),
            "imputation": method in ("dca", "schyena"),
            "denoising": method in ("dca", "schyena"),
        }.get(task, False)
        if trained:
            out.append(
                [task, dataset, method, int(seed.removeprefix("seed")), path.replace("metrics.csv", "curves.csv")]
            )
    pretrain = set(PRETRAIN_GRID)
    if "schyena" in ANNOTATION["methods"]:
        pretrain |= {(d, "schyena", "uniform") for d in annotation_datasets(config, "schyena")}
    for dataset, backbone, strategy in sorted(pretrain):
        for seed in SEEDS:
            out.append(
                [
                    "pretraining",
                    dataset,
                    f"{backbone}-{strategy}",
                    int(seed),
                    PRETRAIN_CURVES.format(dataset=dataset, backbone=backbone, strategy=strategy, seed=seed),
                ]
            )
    return out


def report_config(wildcards=None):
    return dict(config)


def report_extra_files():
    """The paper tables, quality check, provenance (report_extras) and the study figures (report_studies)."""
    from scfmbench.report import study_paths

    names = (
        "paper_table.md",
        "paper_table.csv",
        "paper_table.html",
        "reported_table.md",
        "quality.md",
        "quality.csv",
        "quality.html",
        "provenance.html",
    )
    return [f"results/report/{name}" for name in names] + [str(p) for p in study_paths("results/report").values()]


def curve_figures():
    """One learning-curve figure per task with trained runs (rule report_curves)."""
    return [f"results/report/figures/curves_{task}.png" for task in sorted({r[0] for r in curve_records()})]


def all_outputs():
    return (
        curve_figures()
        + report_extra_files()
        + metrics_files()
        + report_files()
        + significance_files()
        + schyena_files()
        + graph_files()
        + profile_files()
        + perturbation_report_files()
        + pretraining_files()
        + embedding_report_files()
    )


# graphs
# Gene graphs (workflow/rules/graphs.smk): the database registry (schema default + config), checks,
# and the paths and parameters of the download, build and statistics rules.
from scfmbench import InputError
from scfmbench.graphs.workflow import (
    VARIANTS,
    check_graph_config,
    database_file,
    database_registry,
    download_name,
    graph_build_spec,
)

GRAPHS = config["graphs"]
DATABASES = database_registry(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
check_graph_config(config, DATABASES)


wildcard_constraints:
    database=r"[A-Za-z0-9_]+",
    variant="|".join(VARIANTS),


GRAPH = "results/graphs/{dataset}/seed{seed}/{variant}.npz"


def graph_artifacts():
    """Every graph the config asks for: dataset x seed x variant."""
    return [
        GRAPH.format(dataset=d, seed=s, variant=v)
        for d in GRAPHS["datasets"]
        for s in SEEDS
        for v in GRAPHS["variants"]
    ]


def graph_report_files():
    return ["results/report/graph_stats.csv", "results/report/graph_stats.md"] if graph_artifacts() else []


def graph_files():
    return graph_artifacts() + graph_report_files()


def database_download(wildcards):
    """url and sha256 of a registry entry, for the download rule."""
    entry = DATABASES.get(wildcards.database)
    if not entry or not entry["url"] or download_name(wildcards.database, entry["url"]) != wildcards.filename:
        raise InputError(
            f"results/databases/{wildcards.database}/{wildcards.filename}: no database of the registry downloads "
            "to this path."
        )
    return {"url": entry["url"], "sha256": entry["sha256"]}


def graph_spec(wildcards):
    """What a build_graph job uses (only what its variant needs, so other changes do not rerun it)."""
    return graph_build_spec(GRAPHS, DATABASES, wildcards.variant)


def graph_database_files(wildcards):
    """Database files of a build_graph job: local paths as they are, others from the download rule.
    Files shipped in the package are local() so that a storage plugin (profiles/kubernetes) does
    not look for them in storage: every job's environment has the package."""
    files = []
    for d in graph_spec(wildcards).get("databases", []):
        path = database_file(d["name"], DATABASES[d["name"]])
        files.append(local(path) if str(DATABASES[d["name"]]["path"]).startswith("vendored:") else path)
    return files


# profiling
# Memory and speed profiles (workflow/rules/profile.smk): one point per (mechanism, length, batch,
# pass) of the config's 'profile' block; mechanisms are checked against scfmbench.profile's registry.
from scfmbench.profile import check_mechanisms

PROFILE = config["profile"]
check_mechanisms(PROFILE["mechanisms"])


wildcard_constraints:
    mechanism=r"[a-z0-9][a-z0-9_]*(-[a-z0-9_]+)*",
    length=r"[0-9]+",
    batch=r"[0-9]+",
    mode="forward|backward",


PROFILE_POINT = "results/profile/{mechanism}/L{length}_B{batch}_{mode}.csv"


def profile_points():
    """Every configured point: mechanism x length x batch x pass."""
    return [
        PROFILE_POINT.format(mechanism=m, length=L, batch=b, mode=p)
        for m in PROFILE["mechanisms"]
        for L in PROFILE["lengths"]
        for b in PROFILE["batches"]
        for p in PROFILE["passes"]
    ]


def profile_report_files():
    names = [
        "profile.csv",
        "profile_scaling.csv",
        "profile_scaling.md",
        "figures/profile_time.png",
        "figures/profile_memory.png",
    ]
    return [f"results/report/{name}" for name in names] if profile_points() else []


def profile_files():
    return profile_points() + profile_report_files()


def profile_settings(wildcards):
    """The measurement settings every point shares (the 'profile' block minus what the path says)."""
    return {k: v for k, v in PROFILE.items() if k not in ("mechanisms", "lengths", "batches", "passes")}


# imputation
# Two protocols (workflow/rules/impute.smk), each a task of the results: masking ("imputation":
# MASKED, HELDOUT above) and molecular cross-validation ("denoising": MCV_TRAIN, MCV_TEST). An
# imputer's rule, built in or a rule file workflow/rules/methods/<id>.smk, reads imputer_input and
# writes imputer_output("<id>") (with imputer_log, imputer_benchmark): the {task} wildcard in them
# makes one rule serve both protocols.
import json

PROTOCOL_TASKS = {"masking": "imputation", "mcv": "denoising"}
MCV_TRAIN = "results/denoising/{dataset}/seed{seed}/train.h5ad"
MCV_TEST = "results/denoising/{dataset}/seed{seed}/test.npz"


wildcard_constraints:
    task="|".join(PROTOCOL_TASKS.values()),


def imputer_input(wildcards):
    """What an imputer reads: the masked folds (task imputation) or the MCV train part (task denoising)."""
    return (MASKED if wildcards.task == "imputation" else MCV_TRAIN).format(
        dataset=wildcards.dataset, seed=wildcards.seed
    )


def heldout_input(wildcards, seed=None):
    """What the perfect control reads: heldout.npz (masking) or test.npz (MCV), of ``seed``
    (default: the job's own)."""
    pattern = HELDOUT if wildcards.task == "imputation" else MCV_TEST
    return pattern.format(dataset=wildcards.dataset, seed=wildcards.seed if seed is None else seed)


def heldout_inputs(wildcards):
    """What scoring reads: heldout_input of every configured seed."""
    return [heldout_input(wildcards, seed) for seed in SEEDS]


def imputer_output(method="{method}"):
    return f"results/{{task}}/{{dataset}}/{method}/seed{{seed}}/predictions.npz"


# Learning curves (scfmbench.curves): one curves.csv beside each trained run's record.
ANNOTATION_CURVES = "results/annotation/{dataset}/{method}/seed{seed}/curves.csv"
DOUBLET_CURVES = "results/doublet/{dataset}/{method}/seed{seed}/curves.csv"
PERTURB_CURVES = "results/perturbation/{dataset}/{method}/seed{seed}/curves.csv"
IMPUTER_CURVES = "results/{task}/{dataset}/{method}/seed{seed}/curves.csv"


def imputer_benchmark(method="{method}"):
    return f"results/benchmarks/{{task}}/{{dataset}}/{method}/seed{{seed}}.tsv"


def imputer_log(method="{method}"):
    return f"results/logs/{{task}}/{{dataset}}/{method}/seed{{seed}}.log"


def has_truth(dataset):
    """Whether a dataset's prepared file has the noise-free truth and the Poisson rate the oracle
    controls (perfect, true_rate) return."""
    return config["datasets"][dataset]["source"] == "synthetic"


def imputation_metrics_files():
    """Metrics records of every configured protocol x dataset x imputer x seed (the oracles perfect
    and true_rate: truth datasets only; true_rate: MCV only)."""
    files = []
    for task in (PROTOCOL_TASKS[p] for p in IMPUTATION["protocols"]):
        for dataset in IMPUTATION["datasets"]:
            for method in IMPUTATION["methods"]:
                if (
                    method in ("perfect", "true_rate")
                    and not has_truth(dataset)
                    or method == "true_rate"
                    and task != "denoising"
                ):
                    continue
                files += [f"results/{task}/{dataset}/{method}/seed{seed}/metrics.csv" for seed in SEEDS]
    return files


def mcv_train_fraction(wildcards):
    return IMPUTATION["mcv_train_fraction"]


def dca_original_params(wildcards):
    """params.dca_original as JSON, for the command line of impute_dca_original."""
    return json.dumps(config["params"]["dca_original"], sort_keys=True)


# perturbation
# Perturbation prediction (workflow/rules/perturb.smk, logic in scfmbench.perturbation): datasets in
# GEARS' layout, one simulation split per seed, one predictor job per (dataset, method) (every seed
# in it with resources.group_seeds), one scoring job per dataset. A method's rule file writes
# perturb_output("<id>") per seed (docs/perturbation.md "Perturbation prediction").
from scfmbench import perturbation as _perturbation

_perturbation.check_config(config, METHOD_RULE_DIR)
PERTURBATION = config["perturbation"]
PERTURB_RUNS = _perturbation.method_runs(config)
# Predictors run by rule perturb_predict (built-ins and generators; rule-file methods have their own rule).
PERTURB_BUILTIN = sorted({m for _, m in PERTURB_RUNS if not (METHOD_RULE_DIR / f"{m}.smk").exists()})
# Of those, the numpy controls and baselines, run together per dataset (perturb_controls_<dataset>).
PERTURB_CONTROLS = [m for m in PERTURB_BUILTIN if not _perturbation.is_generator(m)]
perturbation_method_params = _perturbation.method_params
PERTURB_DATA = "results/perturbation/{dataset}/data.h5ad"
PERTURB_SPLIT = "results/perturbation/{dataset}/seed{seed}/split.json"


def perturb_output(method="{method}"):
    return f"results/perturbation/{{dataset}}/{method}/seed{{seed}}/predictions.npz"


def perturb_benchmark(method="{method}"):
    return f"results/benchmarks/perturbation/{{dataset}}/{method}/seed{{seed}}.tsv"


def perturb_log(method="{method}"):
    return f"results/logs/perturbation/{{dataset}}/{method}/seed{{seed}}.log"


def perturb_method_params(wildcards):
    return _perturbation.method_params(config, wildcards.method)


def perturb_dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def perturb_split_params(wildcards):
    from scfmbench.perturbation.split import go_missing_genes

    source = config["datasets"][wildcards.dataset]["source"]
    drop = list(go_missing_genes(source)) if PERTURBATION["go_filter"] else []
    return {**{k: PERTURBATION[k] for k in ("train_gene_set_size", "combo_seen2_train_frac")}, "drop_genes": drop}


def perturb_graph_params(wildcards):
    return dict(PERTURBATION["graph"])


def perturb_methods(dataset):
    return [m for d, m in PERTURB_RUNS if d == dataset]


def perturb_scored(dataset, pattern):
    """Every (method, seed) file of a dataset's runs, in the scoring job's order (methods, then seeds)."""
    return [pattern.format(dataset=dataset, method=m, seed=s) for m in perturb_methods(dataset) for s in SEEDS]


def perturbation_metrics_files():
    return [f"results/perturbation/{d}/{m}/seed{s}/metrics.csv" for d, m in PERTURB_RUNS for s in SEEDS]


def perturbation_report_files():
    names = ("perturbation_table.md", "perturbation_table.csv", "perturbation_table.html", "figures/perturbation.png")
    return [f"results/report/{n}" for n in names] if PERTURB_RUNS else []


# pretraining
# Masked pretraining (workflow/rules/pretrain.smk, scfmbench.pretrain): the grid of the
# 'pretraining' block plus scHyena's own pretraining wherever schyena annotates.
from scfmbench.config import check_pretraining, pretraining_grid, ratio_options
from scfmbench.pretrain.workflow import parse_pretrained_method, pretrained_method, scratch_method

check_pretraining(config)
PRETRAIN = config["pretraining"]
PRETRAIN_GRID = pretraining_grid(config)
PRETRAIN_CKPT = "results/pretrain/{dataset}/{backbone}/{strategy}/seed{seed}/checkpoint.pt"
PRETRAIN_MASKED = "results/pretrain/{dataset}/{backbone}/{strategy}/seed{seed}/masked_set.csv"
PRETRAIN_CURVES = "results/pretrain/{dataset}/{backbone}/{strategy}/seed{seed}/curves.csv"
# Fine-tunings from the grid's checkpoints: annotation methods {backbone}-{attention}-pt{strategy}.
PRETRAINED_METHODS = sorted(
    {pretrained_method(b, PRETRAIN["attention"], s) for _, b, s in PRETRAIN_GRID}
    | ({scratch_method(b, PRETRAIN["attention"]) for _, b, _ in PRETRAIN_GRID} if PRETRAIN["scratch"] else set())
)


def schyena_pretrain_runs():
    return (
        [(d, "schyena", "uniform") for d in annotation_datasets(config, "schyena")]
        if "schyena" in ANNOTATION["methods"]
        else []
    )


def pretrain_options(wildcards):
    """What a pretraining job reads of the pretraining block (not the grid's lists, so a grid that
    grows reruns nothing), with pretraining.ratio resolved into the strategies' options."""
    grid = ("datasets", "backbones", "strategies", "scratch", "finetune", "ratio")
    return {**{k: v for k, v in PRETRAIN.items() if k not in grid}, "strategy_options": ratio_options(PRETRAIN)}


def pretrain_backbone_params(wildcards):
    """params.<backbone>: the model options every run of that backbone shares."""
    return config["params"].get(wildcards.backbone, {})


def pretrained_checkpoints(wildcards):
    """The checkpoint(s) a fine-tuning {backbone}-{attention}-pt{strategy} starts from."""
    base, strategy = parse_pretrained_method(wildcards.method)
    if strategy is None:  # {backbone}-{attention}-scratch: no checkpoint
        return []
    path = PRETRAIN_CKPT.replace("{backbone}", base.split("-")[0]).replace("{strategy}", strategy)
    return per_seed(path) if GROUP_SEEDS else path


def pretraining_runs():
    """[dataset, method, backbone, strategy] of every annotation run the pretraining report shows."""
    runs = []
    for d, b, s in PRETRAIN_GRID:
        if PRETRAIN["scratch"]:
            runs.append((d, scratch_method(b, PRETRAIN["attention"]), b, "scratch"))
        runs.append((d, pretrained_method(b, PRETRAIN["attention"], s), b, s))
    return list(dict.fromkeys(runs))


def pretraining_files():
    """The pretraining report (when there is a grid) and scHyena's checkpoints."""
    if not PRETRAIN_GRID:
        return []
    names = (
        "pretraining_table.md",
        "pretraining_table.csv",
        "masked_set_table.md",
        "masked_set_table.csv",
        "pretraining_per_class.csv",
        "figures/pretraining.png",
    )
    return [f"results/report/{n}" for n in names]


def pretrain_method_params(wildcards):
    """params.<backbone> of a fine-tuning from a pretraining checkpoint (or of its scratch run)."""
    return config["params"].get(wildcards.method.split("-")[0], {})


def pretrain_finetune(wildcards):
    """pretraining.finetune: training options over params.<backbone> for the grid's runs."""
    return PRETRAIN["finetune"]


# embedding
# Cell embeddings (workflow/rules/embed.smk, scfmbench.embedding): every model of the annotation runs
# writes EMBEDDING per seed in its own job (fine-tuned, and zero-shot where it starts from a
# checkpoint); embed_control writes the controls; one scoring job per dataset
# (score_embedding_<dataset>) writes a metrics record per method x seed x state.
from scfmbench.config import embedding_datasets
from scfmbench.embedding import (
    CONTROLS as EMBEDDING_CONTROLS,
    EMBEDDING_PATH as EMBEDDING,
    METRICS_PATH as EMBEDDING_METRICS,
    zeroshot_method,
)

EMBED = config["embedding"]
EMBEDDING_DATASETS = embedding_datasets(config)


def embedding_benchmark(method="{method}"):
    """The benchmark a control's embedding is timed into (a model's is its annotation job's)."""
    return f"results/benchmarks/embedding/{{dataset}}/{method}/seed{{seed}}.tsv"


def writes_embedding(method):
    """Whether an annotation method's job writes EMBEDDING: the transformers, the pretraining
    grid's fine-tunings (and scratch twins) and scHyena; controls and rule-file methods do not."""
    return method in TRANSFORMERS or method in PRETRAINED_METHODS or method == "schyena"


def has_zeroshot(method):
    """Whether a model starts from a checkpoint, so its file holds the zero-shot state as well."""
    if method == "schyena":
        return True
    if method in PRETRAINED_METHODS:
        return parse_pretrained_method(method)[1] is not None
    return method in TRANSFORMERS and bool(
        config["params"].get(parse_transformer(method).backbone, {}).get("checkpoint")
    )


def embedding_methods(dataset):
    """The controls, then every model with an embedding on ``dataset``."""
    return list(EMBEDDING_CONTROLS) + [m for d, m in ANNOTATION_RUNS if d == dataset and writes_embedding(m)]


def embedding_runs(dataset):
    """What score_embedding_<dataset> reads and writes, one entry per method x seed."""
    runs = []
    for m in embedding_methods(dataset):
        for s in SEEDS:
            bench = embedding_benchmark(m) if m in EMBEDDING_CONTROLS else annotation_benchmark(m)
            runs.append(
                dict(
                    method=m,
                    seed=s,
                    embedding=EMBEDDING.format(dataset=dataset, method=m, seed=s),
                    benchmark=bench.format(dataset=dataset, seed=s),
                    metrics=EMBEDDING_METRICS.format(dataset=dataset, method=m, seed=s),
                    zeroshot_metrics=(
                        EMBEDDING_METRICS.format(dataset=dataset, method=zeroshot_method(m), seed=s)
                        if has_zeroshot(m)
                        else None
                    ),
                )
            )
    return runs


def embedding_metrics_files():
    return [
        f
        for d in EMBEDDING_DATASETS
        for run in embedding_runs(d)
        for f in (run["metrics"], run["zeroshot_metrics"])
        if f
    ]


def embedding_umap_panels(dataset, seed):
    """The UMAP grid's panels of ``dataset``: embedding.umap_methods that have an embedding there (null: every one)."""
    have = embedding_methods(dataset)
    wanted = have if EMBED["umap_methods"] is None else EMBED["umap_methods"]
    return {m: EMBEDDING.format(dataset=dataset, method=m, seed=seed) for m in wanted if m in have}


def embedding_report_spec():
    """report_embedding's per-dataset inputs (first seed): prepared file, UMAP panels, every method's file."""
    seed = SEEDS[0]
    return {
        d: dict(
            prepared=PREPARED.format(dataset=d, seed=seed),
            panels=embedding_umap_panels(d, seed),
            files={m: EMBEDDING.format(dataset=d, method=m, seed=seed) for m in embedding_methods(d)},
        )
        for d in EMBEDDING_DATASETS
    }


def embedding_report_files():
    if not EMBEDDING_DATASETS:
        return []
    return ["results/report/embedding_methods.md", "results/report/embedding_methods.csv"] + [
        f"results/report/figures/embedding_umap_{d}.png" for d in EMBEDDING_DATASETS
    ]
