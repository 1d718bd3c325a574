"""config/paper.yaml: valid, and its dry run schedules exactly the papers' experiment grid.

The expected grid is written out here from the papers (GenoHoption Tables I-II, Fig. 4-6; scHyena's
cell types, doublets and imputation), by hand, independently of ``scfmbench.config.annotation_runs``
and of the config's own lists, so a method, dataset, seed or grid value lost from (or added to)
config/paper.yaml fails the job counts. Dry runs only (``-n --forceall``: the full DAG whatever
results/ already holds); each takes 10-30 s on two busy cores.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO
from test_profiles import GPU_RULES, PROFILES

PAPER = REPO / "config" / "paper.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# --- the grid, from the papers ------------------------------------------------------------------
SEEDS = 5  # both papers: five repeats (GenoHoption: seeds 0-4)
GENOHOPTION_DATASETS = ["ms", "myeloid", "pancreas"]  # Tables I-II
BRAIN_DATASETS = ["smajic2022", "lau2020"]  # scHyena (GEO GSE157783, GSE157827)
CONTROLS = ["majority", "logreg"]
ATTENTIONS = ["full", "genohoption-p", "genohoption-h", "longformer", "bigbird", "diffuser", "performer"]
TABLE_I = [f"{b}-{a}" for b in ("scgpt", "geneformer") for a in ATTENTIONS] + ["scbert-performer"]
TABLE_II = ["scgpt-onehop", "scgpt-genohoption-p-nogrn", "scgpt-genohoption-p-nocoexpr"]  # w/o iter, GRN, Co
FEWSHOT_METHODS = [f"{b}-{a}" for b in ("geneformer", "scgpt") for a in ("full", "genohoption-p", "genohoption-h")]
FEWSHOT_FRACTIONS = 4  # "four different fractions" on Pancreas
# Fig. 5 / 6c on Pancreas, both backbones: -p varies alpha (6 values) and K (5), -h varies t (4) and K (5);
# the paper's t = 5 and K = 6 are the main grid's own runs (report_studies adds them to the curves).
ALPHA, T, K = 6, 4, 5
SENSITIVITY_RUNS = 2 * ((ALPHA + K) + (T + K))
PROFILE_MECHANISMS = 16  # every registered mechanism (scfmbench.profile.mechanism_names())
PROFILE_LENGTHS = 7 + 4  # Fig. 4c's 100..3000 plus four full-transcriptome lengths
IMPUTERS = ["none", "magic", "dca", "schyena"]
PERTURB_DATASETS = ["adamson", "norman"]  # GenoHoption Fig. 3 (GEARS)
PERTURB_CONTROLS = ["no_change", "train_mean", "additive", "linear"]
PERTURB_GENERATORS = [
    f"scgpt-{a}{loss}" for loss in ("", "-paperloss") for a in ("full", "genohoption-p", "genohoption-h")
]
# MAM (REFERENCE 8): continued pretraining + fine-tuning on the scGPT sets for the backbones with
# per-gene values, MAM, its baselines and its two controls; a from-scratch run beside them
# ({backbone}-full-scratch, the same fine-tuning options).
MAM_BACKBONES = ["scgpt", "scbert", "scfoundation"]
MAM_STRATEGIES = ["stratified", "mam", "expression", "uniform", "mam_noinject", "mam_strat"]


def expected_jobs() -> dict[str, int]:
    """Jobs per rule, by hand: the GenoHoption grid on its three datasets, scHyena on the two brain
    datasets, the controls on all five (annotation.method_datasets)."""
    n_ann_datasets = len(GENOHOPTION_DATASETS) + len(BRAIN_DATASETS)  # 5: the controls run on all
    n_geno = len(GENOHOPTION_DATASETS)
    n_brain = len(BRAIN_DATASETS)
    n_transformers = len(TABLE_I) + len(TABLE_II)  # 15 + 3 = 18
    fewshot_runs = len(FEWSHOT_METHODS) * FEWSHOT_FRACTIONS  # 24
    fewshot_datasets = FEWSHOT_FRACTIONS  # pancreas-fs{fraction}
    n_graph_variants = 3  # full (genohoption-p/-h, onehop), no_grn, no_coexpr (the ablations)
    jobs = {
        # data: scGPT's one zip (3 datasets), GSE157827's tar, GSE157783's three tarballs
        "download_file": 1 + 1 + 3 + len(PERTURB_DATASETS),
        "load_dataset": n_ann_datasets,
        "prepare_dataset": (n_ann_datasets + fewshot_datasets) * SEEDS,
        # graphs: six DGP-AMIO edge lists + Enrichr ENCODE/ChEA, downloaded once each; the main grid
        # needs all three variants, the few-shot methods (genohoption-p/-h) the full graph
        "download_database": 6 + 1,
        "build_graph": (n_geno * n_graph_variants + fewshot_datasets * 1) * SEEDS,
        "graph_stats": 1,
        # annotation
        "annotate_control": len(CONTROLS) * n_ann_datasets * SEEDS,
        "annotate_transformer": (n_transformers * n_geno + fewshot_runs + SENSITIVITY_RUNS) * SEEDS,
        # pretraining: scHyena's (the stage's uniform case) and the MAM grid
        "pretrain": (n_brain + n_geno * len(MAM_BACKBONES) * len(MAM_STRATEGIES)) * SEEDS,
        "annotate_pretrained": n_geno * len(MAM_BACKBONES) * (len(MAM_STRATEGIES) + 1) * SEEDS,
        "report_pretraining": 1,
        "annotate_schyena": n_brain * SEEDS,
        "score_annotation": len(CONTROLS) * n_ann_datasets
        + n_transformers * n_geno
        + n_brain
        + fewshot_runs
        + SENSITIVITY_RUNS
        + n_geno * len(MAM_BACKBONES) * (len(MAM_STRATEGIES) + 1),
        "detect_doublets_schyena": n_brain * SEEDS,
        "detect_doublets_control": n_brain * SEEDS,  # the all_doublet control
        "score_doublets": 2 * n_brain,
        "schyena_umap": n_brain,
        # imputation: scHyena's masking protocol only, on the brain datasets
        "make_masks": n_brain * SEEDS,
        "impute_builtin": 2 * n_brain * SEEDS,  # none, magic
        "impute_dca": n_brain * SEEDS,
        "impute_schyena": n_brain * SEEDS,
        "score_imputation": len(IMPUTERS) * n_brain,
        # memory and speed profile: mechanism x length x batch (32) x pass (forward, backward)
        "profile_point": PROFILE_MECHANISMS * PROFILE_LENGTHS * 1 * 2,
        "profile_report": 1,
        # perturbation (Fig. 3): data, splits, controls and scoring per dataset, generators per seed
        "perturb_data": len(PERTURB_DATASETS),
        "perturb_split": len(PERTURB_DATASETS),
        **{f"perturb_controls_{d}": 1 for d in PERTURB_DATASETS},
        "perturb_predict": len(PERTURB_GENERATORS) * len(PERTURB_DATASETS) * SEEDS,
        **{f"perturb_score_{d}": 1 for d in PERTURB_DATASETS},
        "perturb_report": 1,
        # cell embeddings of every annotation dataset: the controls (all seeds, one job), one scoring
        # job per dataset, the UMAP grids
        "embed_control": n_ann_datasets,
        **{f"score_embedding_{d}": 1 for d in GENOHOPTION_DATASETS + BRAIN_DATASETS},
        "report_embedding": 1,
        # report: tables and figures, paper tables and quality, few-shot and sensitivity studies,
        # paired significance across seeds
        "report": 1,
        "report_extras": 1,
        "report_studies": 1,
        "report_significance": 1,
        # learning-curve figures, one per task with trained runs: annotation, doublet, imputation
        # (DCA), perturbation (the generators), pretraining
        "report_curves": 5,
        "all": 1,
    }
    jobs["total"] = sum(jobs.values())
    return jobs


# --- helpers ------------------------------------------------------------------------------------


def dry_run(*args: str) -> str:
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", "--forceall", "--nolock", "--configfile", "config/paper.yaml", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def job_stats(out: str) -> dict[str, int]:
    """The dry run's "Job stats" table as {rule: count} (with 'total')."""
    lines = out.split("Job stats:\n", 1)[1].splitlines()
    assert lines[0].split() == ["job", "count"] and set(lines[1]) <= {"-", " "}, lines[:2]
    stats = {}
    for line in lines[2:]:
        if not line.strip():
            break
        rule, count = line.split()
        stats[rule] = int(count)
    return stats


def job_resources(out: str) -> list[tuple[str, str]]:
    """(rule, resources line) of every job the dry run lists."""
    return re.findall(r"rule (\w+):\n(?:    .*\n)*?    resources: (.*)", out)


@pytest.fixture(scope="module")
def default_dry_run() -> str:
    return dry_run()  # profiles/default is picked up automatically


# --- tests --------------------------------------------------------------------------------------


def test_paper_config_validates_and_lists_the_papers_methods():
    from scfmbench.config import load_config
    from scfmbench.report.paper import PAPER_METHODS, load_reported

    cfg = load_config(PAPER, SCHEMA)
    assert cfg["seeds"] == list(range(SEEDS))
    assert cfg["annotation"]["datasets"] == GENOHOPTION_DATASETS + BRAIN_DATASETS
    assert cfg["annotation"]["methods"] == CONTROLS + TABLE_I + TABLE_II + ["schyena"]
    assert cfg["annotation"]["method_datasets"] == {
        **{m: GENOHOPTION_DATASETS for m in TABLE_I + TABLE_II},
        "schyena": BRAIN_DATASETS,
    }
    assert set(PAPER_METHODS.values()) <= set(cfg["annotation"]["methods"])
    # every reported (method, dataset) of Tables I-II is in the grid, under the dataset names the report joins on
    reported = load_reported()
    assert set(reported["method_id"]) <= set(cfg["annotation"]["methods"])
    assert set(reported["dataset"]) == set(GENOHOPTION_DATASETS)
    assert {cfg["datasets"][d]["source"] for d in GENOHOPTION_DATASETS} == {
        "scgpt_ms",
        "scgpt_myeloid",
        "scgpt_pancreas",
    }
    assert all(cfg["datasets"][d]["recover_counts"] for d in GENOHOPTION_DATASETS)
    assert cfg["datasets"]["lau2020"]["cell_labels"]["file"]  # GEO has no labels for GSE157827
    assert cfg["fewshot"]["datasets"] == cfg["sensitivity"]["datasets"] == ["pancreas"]
    assert sorted(cfg["fewshot"]["methods"]) == sorted(FEWSHOT_METHODS)
    assert cfg["sensitivity"]["alpha"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert (len(cfg["sensitivity"]["t"]), len(cfg["sensitivity"]["k"])) == (T, K)
    assert 5 not in cfg["sensitivity"]["t"] and 6 not in cfg["sensitivity"]["k"]  # the main grid's runs
    assert cfg["graphs"]["variants"] == ["full", "no_grn", "no_coexpr"] and (
        cfg["graphs"]["top_h"],
        cfg["graphs"]["delta"],
    ) == (20, 0.4)
    assert cfg["imputation"]["methods"] == IMPUTERS and cfg["imputation"]["protocols"] == ["masking"]
    assert all(cfg["datasets"][d]["min_library_size"] == 4000 for d in cfg["imputation"]["datasets"])
    # paper settings that a typo would silently change
    scgpt, geneformer = cfg["params"]["scgpt"], cfg["params"]["geneformer"]
    assert (
        scgpt["d_model"],
        scgpt["n_layers"],
        scgpt["n_heads"],
        scgpt["lr"],
        scgpt["batch_size"],
        scgpt["max_len"],
    ) == (512, 12, 8, 1e-4, 32, 3001)
    assert (
        scgpt["max_steps"] is None and geneformer["max_steps"] is None and cfg["params"]["scbert"]["max_steps"] is None
    )
    # genes (+ an input <cls>) must fit the positions; GenoHoption's adaptor prepends <cls> after them
    assert (
        geneformer["cls_token"] == "prepended"
        and geneformer["max_len"] + (geneformer["cls_token"] == "input") <= geneformer["max_position"]
    )
    assert (
        scgpt["amp"] == "fp16" and geneformer["amp"] is None
    )  # GenoHoption's scGPT scripts: amp=True; Geneformer's Trainer: float32
    assert cfg["params"]["scbert"]["dim_head"] == 64  # scBERT: performer-pytorch's dim_head
    pert = cfg["perturbation"]
    assert pert["datasets"] == PERTURB_DATASETS and pert["methods"] == PERTURB_CONTROLS + PERTURB_GENERATORS
    assert {cfg["datasets"][d]["source"] for d in PERTURB_DATASETS} == {"gears_adamson", "gears_norman"}
    gen = pert["params"]["scgpt"]
    assert (gen["lr"], gen["batch_size"], gen["epochs"], gen["max_len"]) == (1e-4, 32, 15, 1536)
    assert (
        gen["predict_cells"] is None and gen["valid_cells"] is None
    )  # GEARS: every test cell (paired control) and validation cell
    assert (gen["batchnorm"], gen["decoder"], gen["cls_token"]) == (
        True,
        "expr",
        None,
    )  # GenoHoption's model: the defaults
    profile = cfg["profile"]
    assert (profile["heads"], profile["dim"], profile["batches"], profile["dtype"], profile["repeats"]) == (
        8,
        256,
        [32],
        "float16",
        10,
    )
    from scfmbench.profile import mechanism_names

    assert sorted(profile["mechanisms"]) == sorted(mechanism_names())  # every registered mechanism


def test_config_yaml_leaks_nothing_into_the_paper_config():
    """Snakemake merges --configfile over the Snakefile's config/config.yaml; the result must be
    config/paper.yaml itself (plus the unused dataset entries pbmc68k and synthetic)."""
    from snakemake.utils import update_config

    from scfmbench.config import validate_config

    paper = yaml.safe_load(PAPER.read_text())
    merged = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(merged, copy.deepcopy(paper))
    merged, paper = validate_config(merged, SCHEMA), validate_config(paper, SCHEMA)
    extra = set(merged["datasets"]) - set(paper["datasets"])
    for name in extra:
        del merged["datasets"][name]
    assert merged == paper
    used = (
        set(paper["annotation"]["datasets"])
        | set(paper["imputation"]["datasets"])
        | set(paper["graphs"]["datasets"])
        | set(paper["perturbation"]["datasets"])
    )
    assert not extra & used


def test_dry_run_schedules_the_papers_grid(default_dry_run):
    assert job_stats(default_dry_run) == expected_jobs()


def test_default_profile_gives_no_gpu(default_dry_run):
    jobs = job_resources(default_dry_run)
    assert {rule for rule, _ in jobs} >= set(GPU_RULES)
    assert not any("gpu=1" in res for rule, res in jobs if rule in GPU_RULES)  # gpu=0 or none declared


@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in PROFILES if p != "default"])
def test_paper_config_dry_runs_under_each_profile(name):
    """Each profile as it is, executor and storage plugins included (extra 'cluster')."""
    out = dry_run("--workflow-profile", str(REPO / "profiles" / name))
    assert job_stats(out) == expected_jobs()
    jobs = job_resources(out)
    assert all("gpu=1" in res for rule, res in jobs if rule in GPU_RULES), name


def test_default_config_groups_each_transformers_seeds():
    """config/config.yaml (resources.group_seeds): one annotate_transformer job per (dataset,
    method) listing every seed's files; the paper config above keeps one job per seed."""
    proc = subprocess.run([*SNAKEMAKE, "-n", "--forceall", "--nolock"], cwd=REPO, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    transformers = [m for m in default["annotation"]["methods"] if m.split("-")[0] in ("scgpt", "geneformer", "scbert")]
    assert transformers, "the default trains no transformer"
    stats = job_stats(out)
    assert stats["annotate_transformer"] == len(transformers) * len(default["annotation"]["datasets"])
    seeds = default["seeds"]
    assert stats["annotate_control"] == len(CONTROLS) * 2 * len(seeds)  # controls stay one job per seed
    job = re.search(
        r"rule annotate_transformer:\n(?:    .*\n)*?    output: (.*)\n(?:    .*\n)*?    wildcards: "
        r"dataset=(\w+), method=([\w-]+)\n",
        out,
    )
    dataset, method = job.group(2), job.group(3)
    assert sorted(job.group(1).split(", ")) == sorted(
        f"results/{kind}/{dataset}/{method}/seed{seed}{suffix}"
        for seed in seeds
        for kind, suffix in (
            ("annotation", "/predictions.csv"),
            ("annotation", "/run.json"),
            ("annotation", "/curves.csv"),
            ("embedding", "/embedding.npz"),
            ("benchmarks/annotation", ".tsv"),
        )
    )


def test_paper_bigbird_and_diffuser_read_their_datasets_graph(default_dry_run):
    """window: mean_degree (GenoHoption's code): the graph is an input of those jobs, not of Longformer's."""
    jobs = re.findall(
        r"rule annotate_transformer:\n    input: (.*)\n    output: results/annotation/(\w+)/([\w.-]+)/seed0/",
        default_dry_run,
    )
    inputs = {(dataset, method): line for line, dataset, method in jobs}
    for backbone in ("scgpt", "geneformer"):
        for attention, reads in (
            ("bigbird", True),
            ("diffuser", True),
            ("genohoption-p", True),
            ("longformer", False),
            ("full", False),
        ):
            assert ("results/graphs/pancreas/seed0/full.npz" in inputs["pancreas", f"{backbone}-{attention}"]) == reads
