"""The report's paper tables, quality check and provenance section (rule ``report_extras``)."""

from __future__ import annotations

import html

import pandas as pd

from scfmbench._io import write_csv, write_text
from scfmbench.report.paper import load_reported, paper_markdown, paper_table, reported_markdown
from scfmbench.report.provenance import provenance_markdown
from scfmbench.report.quality import quality_checks, quality_markdown


def write_extras(metrics_path, out, *, expected, config) -> None:
    """``out`` has attributes paper_md, paper_csv, reported_md, quality_md, quality_csv, provenance."""
    metrics = pd.read_csv(metrics_path)
    reported = load_reported()
    table = paper_table(metrics, reported)
    write_text("# Annotation in the layout of GenoHoption Tables I-II\n\n" + paper_markdown(table), out.paper_md)
    write_csv(table, out.paper_csv)
    write_text("# Reported in GenoHoption Tables I-II (percent, 5 seeds)\n\n" + reported_markdown(reported), out.reported_md)
    checks = quality_checks(metrics, [tuple(e) for e in expected])
    write_text("# Quality check\n\n" + quality_markdown(checks), out.quality_md)
    write_csv(checks, out.quality_csv)
    write_text(f"<html><body><pre>{html.escape(provenance_markdown(config))}</pre></body></html>\n", out.provenance)
