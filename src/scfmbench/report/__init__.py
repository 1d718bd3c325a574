"""The report stage: every metrics record in, one CSV, per-task tables and figures out.

Outputs of :func:`write_report` (all written atomically)::

    {outdir}/metrics.csv              # every record, METRIC_COLUMNS, sorted
    {outdir}/{task}_table.md          # mean ± std over seeds, best per column in bold
    {outdir}/{task}_table.csv         # the same summary, tidy: method, dataset, metric, mean, std, n, best
    {outdir}/{task}_table.html        # the Markdown table as a page (Snakemake's report shows HTML, not CSV)
    {outdir}/figures/{task}.png       # one panel per metric (see workflow/report/{task}.rst)

Tables and figures show the main grid only (:func:`scfmbench.report.studies.main_grid`): few-shot
datasets and sensitivity methods have their own tables and figures (:mod:`scfmbench.report.studies`);
``metrics.csv`` keeps every record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from scfmbench._io import write_csv, write_text
from scfmbench.report.figures import plot_task
from scfmbench.report.html import markdown_html
from scfmbench.report.studies import main_grid, study_paths, write_studies
from scfmbench.report.tables import (
    METRIC_DIRECTION,
    ORACLES,
    TIDY_COLUMNS,
    higher_is_better,
    register_metric,
    summary_table,
    table_legend,
    to_markdown,
    to_tidy,
)
from scfmbench.results import METRIC_COLUMNS, TASKS, read_metrics, write_metrics

__all__ = [
    "METRIC_DIRECTION",
    "ORACLES",
    "TIDY_COLUMNS",
    "higher_is_better",
    "main_grid",
    "markdown_html",
    "plot_task",
    "register_metric",
    "report_paths",
    "study_paths",
    "summary_table",
    "to_markdown",
    "to_tidy",
    "write_report",
    "write_studies",
]

_SORT = ["task", "dataset", "method", "seed", "metric"]
# Tasks with the generic table and figure; perturbation has its own layout (scfmbench.report.perturbation).
GENERIC_TASKS = tuple(t for t in TASKS if t != "perturbation")


def report_paths(outdir: str | Path, tasks: Iterable[str] = GENERIC_TASKS) -> dict[str, Path]:
    """Every file :func:`write_report` writes, by name (``metrics``, ``{task}_md``, ``{task}_csv``,
    ``{task}_html``, ``{task}_png``)."""
    outdir = Path(outdir)
    paths = {"metrics": outdir / "metrics.csv"}
    for task in tasks:
        paths[f"{task}_md"] = outdir / f"{task}_table.md"
        paths[f"{task}_csv"] = outdir / f"{task}_table.csv"
        paths[f"{task}_html"] = outdir / f"{task}_table.html"
        paths[f"{task}_png"] = outdir / "figures" / f"{task}.png"
    return paths


def write_report(
    metrics_paths: Iterable[str | Path],
    outdir: str | Path,
    *,
    tasks: Iterable[str] = GENERIC_TASKS,
    significance: Mapping | None = None,
) -> None:
    """Gather metrics records and write the merged CSV, per-task tables and figures to ``outdir``.

    A task with no records still gets its files: an empty table and a figure saying
    "no results configured", so the workflow's report rule has fixed outputs. With ``significance``
    (the config's block) each cell carries the ↑ / ↓ of :mod:`scfmbench.report.significance`.
    """
    tasks = tuple(tasks)
    metrics = read_metrics(list(metrics_paths))
    metrics = metrics.sort_values(_SORT, kind="stable", ignore_index=True)
    paths = report_paths(outdir, tasks)
    write_metrics(metrics[METRIC_COLUMNS], paths["metrics"])
    grid = main_grid(metrics)
    sig = None
    if significance is not None:
        from scfmbench.report.significance import cell_markers, compare, marker_legend

        sig = compare(grid, significance, tasks=tasks)
    for task in tasks:
        table = summary_table(grid, task)
        marks = {} if sig is None else cell_markers(sig, significance, task)
        md = f"## {task}\n\n{to_markdown(table, markers=marks)}"
        if not table.empty:
            md += "\n" + table_legend(table)
            if sig is not None:
                md += "\n" + marker_legend(significance) + "\n"
        write_text(md, paths[f"{task}_md"])
        write_csv(to_tidy(table), paths[f"{task}_csv"])
        write_text(markdown_html(md, title=f"{task} summary table"), paths[f"{task}_html"])
        plot_task(grid, task, paths[f"{task}_png"])
