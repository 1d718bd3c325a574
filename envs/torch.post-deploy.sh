#!/usr/bin/env bash
# Snakemake runs this once after creating the conda env beside it, inside that env, from the working
# directory. It installs the scfmbench package (its dependencies are pinned in the env file), so
# run the workflow from the repository root as the README does, or set SCFMBENCH_ROOT.
set -euo pipefail
root="${SCFMBENCH_ROOT:-$PWD}"
if ! grep -q '^name = "scfmbench"' "$root/pyproject.toml" 2>/dev/null; then
    echo "post-deploy: $root is not the scfmbench repository (no pyproject.toml naming scfmbench);" \
        "run snakemake from the repository root or set SCFMBENCH_ROOT to it." >&2
    exit 1
fi
python -m pip install --no-deps -e "$root"
