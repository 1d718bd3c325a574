"""profiles/*/config.yaml: each parses, uses only options Snakemake (or its documented executor
plugin) knows, gives the GPU rules a GPU, and escalates resources on retries.

The SLURM and Kubernetes executor plugins are not installed here, so those profiles are dry-run
with their plugin-only keys removed, and the removed keys are checked against the plugins'
documented option names instead:
- snakemake-executor-plugin-slurm (docs/further.md, snakemake_executor_plugin_slurm/utils.py
  ``set_gres_string``): resources slurm_partition, slurm_account, runtime, mem_mb, mem,
  mem_mb_per_cpu, cpus_per_task, tasks, nodes, constraint, clusters, qos, gpu, gpu_model, gres,
  slurm_extra; 'gres' and 'gpu' are mutually exclusive.
- snakemake-executor-plugin-kubernetes (ExecutorSettings in its __init__.py): options
  kubernetes-namespace, -cpu-scalar, -service-account-name, -privileged, -persistent-volumes;
  resources mem_mb, disk_mb, gpu, gpu_manufacturer ('nvidia'/'amd', required with 'gpu'),
  machine_type, scale.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO
from test_workflow import copy_workflow

PROFILES = sorted(p.parent.name for p in (REPO / "profiles").glob("*/config.yaml"))
# Rules whose code moves to CUDA when it is present: each profile with a GPU must give them one, or
# they would share it unscheduled (the default config runs every one of them).
GPU_RULES = (
    "annotate_transformer",
    "profile_point",
    "pretrain",
    "annotate_schyena",
    "detect_doublets_schyena",
    "impute_schyena",
    "impute_dca",
    "schyena_umap",
    "perturb_predict",
    "annotate_pretrained",
)
# Core Snakemake resources (threads, tmpdir, disk, memory) that every executor understands.
CORE_RESOURCES = {"mem_mb", "mem", "disk_mb", "disk", "runtime", "tmpdir", "gpu"}
PLUGIN = {
    "slurm": {
        "options": set(),
        "resources": {
            "slurm_partition",
            "slurm_account",
            "runtime",
            "mem_mb",
            "mem",
            "mem_mb_per_cpu",
            "cpus_per_task",
            "tasks",
            "nodes",
            "constraint",
            "clusters",
            "qos",
            "gpu",
            "gpu_model",
            "gres",
            "slurm_extra",
        },
    },
    "kubernetes": {
        "options": {
            "kubernetes-namespace",
            "kubernetes-cpu-scalar",
            "kubernetes-service-account-name",
            "kubernetes-privileged",
            "kubernetes-persistent-volumes",
        },
        "resources": {"mem_mb", "disk_mb", "gpu", "gpu_manufacturer", "machine_type", "scale"},
    },
}
STORAGE_OPTIONS = {"default-storage-provider", "default-storage-prefix"}  # need a storage plugin (kubernetes: fs)


def load(name: str) -> dict:
    spec = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    assert isinstance(spec, dict) and spec
    return spec


def core_only(spec: dict) -> dict:
    """The profile without its executor and plugin-only options (what Snakemake alone can parse)."""
    return {
        k: v
        for k, v in spec.items()
        if k != "executor" and k not in STORAGE_OPTIONS and not re.match(r"(slurm|kubernetes)-", k)
    }


def test_expected_profiles_exist():
    assert {"default", "gpu", "slurm", "kubernetes"} <= set(PROFILES)


@pytest.mark.parametrize("name", ["slurm", "kubernetes"])
def test_cluster_profile_keys_are_the_plugins(name):
    spec = load(name)
    assert spec["executor"] == name and spec["retries"] >= 1
    removed = set(spec) - set(core_only(spec)) - {"executor"}
    assert removed - STORAGE_OPTIONS <= PLUGIN[name]["options"], removed
    resources = set(spec.get("default-resources", {}))
    for rule, res in spec.get("set-resources", {}).items():
        resources |= set(res)
        assert not {"gres", "gpu"} <= set(res), f"{rule}: the slurm plugin refuses gres and gpu together"
    assert resources <= PLUGIN[name]["resources"] | CORE_RESOURCES, resources - PLUGIN[name]["resources"]
    for rule in GPU_RULES:
        assert spec["set-resources"][rule]["gpu"] == 1
    if name == "kubernetes":  # the plugin refuses a job with a 'gpu' resource and no manufacturer
        assert spec["default-resources"]["gpu_manufacturer"].strip("'\"") in ("nvidia", "amd")


def test_local_gpu_profile_offers_one_gpu():
    spec = load("gpu")
    assert spec["resources"] == ["gpu=1"] and all(spec["set-resources"][r]["gpu"] == 1 for r in GPU_RULES)


@pytest.mark.slow
@pytest.mark.parametrize("name", PROFILES)
def test_profile_dry_runs_the_workflow(name, tmp_path):
    """Each profile as it is: the executor and storage plugins are installed (extra 'cluster').
    Over config/cpu.yaml, which runs every GPU rule (the 15-minute default leaves scHyena and the
    pretraining grid out)."""
    wd = copy_workflow(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--workflow-profile",
            f"profiles/{name}",
            "--configfile",
            "config/cpu.yaml",
            "-n",
        ],
        cwd=wd,
        capture_output=True,
        text=True,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # Every GPU rule's job gets the GPU the profile gives it (the default profile gives none).
    jobs = re.findall(r"rule (\w+):\n(?:    .*\n)*?    resources: (.*)", out)
    gpu_jobs = [res for rule, res in jobs if rule in GPU_RULES]
    assert {rule for rule, _ in jobs} >= set(GPU_RULES), "config/cpu.yaml runs every GPU rule"
    if name == "default":  # gpu=0
        assert not any("gpu=1" in res for res in gpu_jobs), gpu_jobs[:2]
    else:
        assert all("gpu=1" in res for res in gpu_jobs), gpu_jobs[:2]


def test_retries_escalate_the_profiles_resources(tmp_path):
    """A job failing twice is retried with the slurm profile's per-attempt memory and time."""
    spec = core_only(load("slurm"))
    (tmp_path / "Snakefile").write_text(
        "rule flaky:\n"
        "    output: 'done.txt'\n"
        '    shell: "echo {resources.mem_mb} {resources.runtime} >> attempts.txt; [ $(wc -l < attempts.txt) '
        '-ge 3 ] && touch {output}"\n'
    )
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.yaml").write_text(
        yaml.safe_dump({"retries": spec["retries"], "default-resources": spec["default-resources"], "cores": 1})
    )
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", "p"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "attempts.txt").read_text().split("\n")[:3] == ["4000 60", "8000 120", "12000 180"]
