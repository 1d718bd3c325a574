"""The report's paper tables, quality check and provenance section (rule ``report_extras``)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from scfmbench._io import write_csv, write_text
from scfmbench.report.html import markdown_html
from scfmbench.report.paper import load_reported, paper_markdown, paper_table, reported_markdown
from scfmbench.report.provenance import provenance_markdown
from scfmbench.report.quality import quality_checks, quality_markdown
from scfmbench.report.studies import main_grid


def write_extras(metrics_path, out, *, expected, config, runs=(), curves=()) -> None:
    """``out`` has attributes paper_md, paper_csv, paper_html, reported_md, quality_md, quality_csv,
    quality_html, provenance (the ``*_html`` ones optional: written when present). ``runs``:
    annotation ``run.json`` files, whose unseen test cell types the quality check reports;
    ``curves``: ``[task, dataset, method, seed, curves.csv]`` of every trained run, for its
    convergence check.

    The paper table shows the main grid only (few-shot datasets and sensitivity methods have their own
    tables, :mod:`scfmbench.report.studies`); the quality check sees every record.
    """
    metrics = pd.read_csv(metrics_path)
    reported = load_reported()
    grid = main_grid(metrics)
    table = paper_table(grid, reported)
    markers, note = {}, ""
    if config.get("significance"):  # the ↑ / ↓ of scfmbench.report.significance
        from scfmbench.report.significance import cell_markers, compare, marker_legend

        cfg = config["significance"]
        markers, note = cell_markers(compare(grid, cfg, tasks=["annotation"]), cfg, "annotation"), marker_legend(cfg)
    md = "# Annotation in the layout of GenoHoption Tables I-II\n\n" + paper_markdown(
        table, markers=markers, marker_note=note
    )
    write_text(md, out.paper_md)
    write_csv(table, out.paper_csv)
    if getattr(out, "paper_html", None):
        write_text(markdown_html(md, title="GenoHoption Tables I-II layout"), out.paper_html)
    write_text(
        "# Reported in GenoHoption Tables I-II (percent, 5 seeds)\n\n" + reported_markdown(reported), out.reported_md
    )
    checks = quality_checks(
        metrics, [tuple(e) for e in expected], runs=[json.loads(Path(p).read_text()) for p in runs], curves=curves
    )
    md = "# Quality check\n\n" + quality_markdown(checks)
    write_text(md, out.quality_md)
    write_csv(checks, out.quality_csv)
    if getattr(out, "quality_html", None):
        write_text(markdown_html(md, title="Quality check"), out.quality_html)
    write_text(f"<html><body><pre>{html.escape(provenance_markdown(config))}</pre></body></html>\n", out.provenance)
