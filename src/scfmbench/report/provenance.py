"""The provenance section of the report: git commit, package versions, device, configuration."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from scfmbench.provenance import device_info, package_versions


def git_commit(repo: str | Path = ".") -> str:
    """The checked-out commit (with '-dirty' when the tree has changes), or 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance_markdown(config: dict, *, repo: str | Path = ".") -> str:
    lines = ["# Provenance", "", f"- git commit: `{git_commit(repo)}`"]
    lines += [f"- {k}: `{v}`" for k, v in device_info().items()]
    lines += ["", "## Package versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in package_versions().items()]
    lines += ["", "## Configuration", "", "```yaml", yaml.safe_dump(config, sort_keys=True).rstrip(), "```", ""]
    return "\n".join(lines)
