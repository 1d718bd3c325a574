"""The style the project keeps, enforced by the test command: ruff (lint and format, settings in
pyproject.toml) over the package, the tests and the rule scripts; snakefmt over the Snakefile and
the rule files. Each failure prints what to run to fix it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BIN = Path(sys.executable).parent
PYTHON_PATHS = ["src", "tests", "workflow/scripts"]
SNAKE_PATHS = ["Snakefile", "workflow/rules"]


def tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: it comes with the test extra (pip install -c constraints.txt -e '.[test]')"
        )
    return found


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True)


def test_ruff_lint_is_clean():
    proc = run(tool("ruff"), "check", *PYTHON_PATHS)
    assert proc.returncode == 0, (
        "ruff check found problems (fix: ruff check --fix "
        f"{' '.join(PYTHON_PATHS)}):\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    )


def test_ruff_format_is_clean():
    proc = run(tool("ruff"), "format", "--check", *PYTHON_PATHS)
    assert proc.returncode == 0, (
        "files need formatting (fix: ruff format "
        f"{' '.join(PYTHON_PATHS)}):\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    )


def test_snakefmt_is_clean():
    proc = run(tool("snakefmt"), "--check", *SNAKE_PATHS)
    assert proc.returncode == 0, (
        "rule files need formatting (fix: snakefmt "
        f"{' '.join(SNAKE_PATHS)}):\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    )
