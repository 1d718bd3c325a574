"""The README's "Results at a glance": headline tables copied from ``results/report``, never typed.

``python -m scfmbench.report.readme [--results results/report] [--readme README.md]`` replaces
everything between the README's ``<!-- results:begin -->`` and ``<!-- results:end -->`` markers
with: annotation macro F1 (mean ± sd over seeds, ``annotation_table.csv``), perturbation
``pearson_delta`` on all test conditions (``perturbation_table.csv``), the imputation and
denoising headline metrics (``imputation_table.csv``, ``denoising_table.csv``), the quality
report's summary line (``quality.md``) and the commit that produced them (``provenance.html``).
Text outside the markers is left as it is; a missing file is an error naming it and the command
that makes it.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

#: (task, metric) of the imputation/denoising headline (all lower is better): the masked-entry MSE of
#: the masking protocol and the two MCV losses docs/imputation.md quotes.
IMPUTATION_HEADLINE = (("imputation", "mse"), ("denoising", "mse_sqrt"), ("denoising", "poisson"))


class ReadmeError(ValueError):
    """A missing or malformed input, with what to run or fix."""


def _require(results: Path, name: str) -> Path:
    path = results / name
    if not path.is_file():
        raise ReadmeError(
            f"{path} not found: make it with `snakemake {path}` (the default `snakemake` run makes "
            f"every file of results/report), or point --results at the folder that holds it."
        )
    return path


def _read(results: Path, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
    path = _require(results, name)
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ReadmeError(
            f"{path}: columns {missing} missing (has {list(table.columns)}); regenerate it with `snakemake {path}`."
        )
    return table


def _fmt(mean: float, sd: float) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{mean:.3f} ± {sd:.3f}" if pd.notna(sd) else f"{mean:.3f}"


def _pivot(rows: pd.DataFrame, column: str, sd: str) -> str:
    """A Markdown table: a row per method (in the file's order), a column per value of ``column``."""
    columns = list(dict.fromkeys(rows[column]))
    methods = list(dict.fromkeys(rows["method"]))
    cells = {(r.method, r[column]): _fmt(r["mean"], r[sd]) for _, r in rows.iterrows()}
    lines = ["| method | " + " | ".join(columns) + " |", "|:---|" + "---:|" * len(columns)]
    lines += [f"| {m} | " + " | ".join(cells.get((m, c), "–") for c in columns) + " |" for m in methods]
    return "\n".join(lines)


def annotation_block(results: Path) -> str:
    table = _read(results, "annotation_table.csv", ("method", "dataset", "metric", "mean", "std"))
    rows = table[table.metric == "macro_f1"]
    if rows.empty:
        raise ReadmeError(f"{results / 'annotation_table.csv'} has no macro_f1 rows.")
    return (
        "**Cell-type annotation**, macro F1 on the test cells (mean ± sd over seeds; `annotation_table.md`):\n\n"
        + _pivot(rows, "dataset", "std")
    )


def perturbation_block(results: Path) -> str:
    table = _read(results, "perturbation_table.csv", ("dataset", "subgroup", "metric", "method", "mean", "sd"))
    rows = table[(table.metric == "pearson_delta") & (table.subgroup == "all")]
    if rows.empty:
        raise ReadmeError(f"{results / 'perturbation_table.csv'} has no pearson_delta rows of subgroup 'all'.")
    return (
        "**Perturbation prediction**, `pearson_delta` over all test conditions (mean ± sd over seeds; "
        "`perturbation_table.md`):\n\n" + _pivot(rows, "dataset", "sd")
    )


def imputation_block(results: Path) -> str:
    parts = []
    for task, metric in IMPUTATION_HEADLINE:
        table = _read(results, f"{task}_table.csv", ("method", "dataset", "metric", "mean", "std"))
        rows = table[table.metric == metric].assign(
            column=lambda t, task=task, metric=metric: f"{task} {metric} (" + t.dataset + ")"
        )
        if rows.empty:
            raise ReadmeError(f"{results / f'{task}_table.csv'} has no {metric} rows.")
        parts.append(rows)
    rows = pd.concat(parts, ignore_index=True)
    return (
        "**Imputation and denoising**, lower is better (mean ± sd over seeds; `imputation_table.md`, "
        "`denoising_table.md`):\n\n" + _pivot(rows, "column", "std")
    )


def quality_line(results: Path) -> str:
    path = _require(results, "quality.md")
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise ReadmeError(f"{path} has no summary line; regenerate it with `snakemake {path}`.")
    return f"**Quality check** (`quality.md`): {lines[0].rstrip(':')}."


def provenance_line(results: Path, command: str) -> str:
    path = _require(results, "provenance.html")
    text = html.unescape(path.read_text())
    commit = re.search(r"git commit: `([^`]+)`", text)
    if commit is None:
        raise ReadmeError(f"{path} names no git commit; regenerate it with `snakemake {path}`.")
    config = re.search(r"```yaml\n(.*?)```", text, re.S)
    seeds = (yaml.safe_load(config.group(1)) or {}).get("seeds") if config else None
    seeds_text = f", seeds {', '.join(map(str, seeds))}" if seeds else ""
    return (
        f"Produced by `{command}` at commit `{commit.group(1)}`{seeds_text} (`results/report/provenance.html`); "
        f"copied here by `python -m scfmbench.report.readme`."
    )


def results_block(results: Path, command: str) -> str:
    """The Markdown between the markers."""
    return "\n\n".join(
        [
            provenance_line(results, command),
            annotation_block(results),
            perturbation_block(results),
            imputation_block(results),
            quality_line(results),
        ]
    )


def replace_block(readme_text: str, block: str, readme: Path | str = "README.md") -> str:
    """``readme_text`` with everything between the markers replaced by ``block``; the rest untouched."""
    begin, end = readme_text.find(BEGIN), readme_text.find(END)
    if begin < 0 or end < 0 or end < begin or readme_text.count(BEGIN) != 1 or readme_text.count(END) != 1:
        raise ReadmeError(
            f'{readme} needs exactly one `{BEGIN}` followed by one `{END}` line (section "Results at a glance").'
        )
    return readme_text[: begin + len(BEGIN)] + "\n" + block.strip("\n") + "\n" + readme_text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--results", type=Path, default=Path("results/report"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument(
        "--command",
        default=".venv/bin/snakemake",
        help="the command that produced --results, quoted in the block (default: the README's run command)",
    )
    args = parser.parse_args(argv)
    try:
        if not args.readme.is_file():
            raise ReadmeError(f"{args.readme} not found: run from the repository root or pass --readme.")
        text = replace_block(args.readme.read_text(), results_block(args.results, args.command), args.readme)
    except ReadmeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    args.readme.write_text(text)
    print(f"wrote the results block of {args.readme} from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
