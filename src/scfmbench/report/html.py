"""The report's Markdown tables as standalone HTML pages, for Snakemake's HTML report.

Snakemake's report shows images, HTML and PDF files in place but offers a CSV or Markdown file only
as a download; so every table it lists is registered as an HTML page rendered from the same Markdown
the ``*_table.md`` file holds. Only the subset of Markdown the report modules write is understood:
``#``/``##`` headings, pipe tables (with an alignment row), paragraphs, ``**bold**``, ``_italic_``,
```code``` and the ``<u>underline</u>`` of the paper table; everything else is escaped.
"""

from __future__ import annotations

import html
import re

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 14px;
       color: #1e293b; margin: 16px 20px; }
h1 { font-size: 20px; margin: 0 0 12px; }
h2 { font-size: 16px; margin: 20px 0 8px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { border: 1px solid #cbd5e1; padding: 3px 8px; white-space: nowrap; }
th { background: #e2e8f0; }
tr:nth-child(even) td { background: #f8fafc; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td.l, th.l { text-align: left; }
code { background: #f1f5f9; padding: 0 3px; border-radius: 3px; }
p { max-width: 60em; line-height: 1.45; }
"""

_ALIGN_ROW = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_ITALIC = re.compile(r"(?<![\w\\])_(\S(?:.*?\S)?)_(?!\w)")


def _inline(text: str) -> str:
    out = html.escape(text.strip(), quote=False)
    out = out.replace("&lt;u&gt;", "<u>").replace("&lt;/u&gt;", "</u>")
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<b>\1</b>", out)
    out = _ITALIC.sub(r"<i>\1</i>", out)
    return out.replace("\\|", "|")


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c for c in re.split(r"(?<!\\)\|", body)]


def _table(lines: list[str]) -> str:
    header, align, *rows = lines
    aligns = ["r" if c.strip().endswith(":") and not c.strip().startswith(":") else "l" for c in _cells(align)]
    head = "".join(
        f'<th class="{aligns[i] if i < len(aligns) else "l"}">{_inline(c)}</th>' for i, c in enumerate(_cells(header))
    )
    body = []
    for row in rows:
        body.append(
            "<tr>"
            + "".join(
                f'<td class="{aligns[i] if i < len(aligns) else "l"}">{_inline(c)}</td>'
                for i, c in enumerate(_cells(row))
            )
            + "</tr>"
        )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def markdown_html(md: str, *, title: str) -> str:
    """A complete HTML page for ``md`` (see the module docstring for the Markdown understood)."""
    blocks: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            blocks.append(f"<h{level}>{_inline(line[level:])}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _ALIGN_ROW.match(lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            blocks.append(_table(lines[i:j]))
            i = j
        else:
            j = i + 1
            while (
                j < len(lines)
                and lines[j].strip()
                and not lines[j].startswith("#")
                and not lines[j].lstrip().startswith("|")
            ):
                j += 1
            blocks.append("<p>" + " ".join(_inline(x) for x in lines[i:j]) + "</p>")
            i = j
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(blocks)
        + "\n</body></html>\n"
    )


__all__ = ["markdown_html"]
