"""Screenshots of the HTML report: parsing the report's embedded results, and (with Chromium) PNGs
that show the figures, on a hand-made page and on a real `snakemake --report` of a tiny workflow."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread

from scfmbench import InputError
from scfmbench.report.screenshot import (
    VIEW_FILE,
    Result,
    find_chromium,
    main,
    report_results,
    screenshot,
    view_page,
    window_size,
)

try:
    CHROMIUM = find_chromium()
except InputError:
    CHROMIUM = None
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH")


def _red_png(width_in: float = 3.0, height_in: float = 2.0, dpi: int = 100) -> bytes:
    """A figure that is one solid red rectangle (easy to find in a screenshot)."""
    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    fig.patch.set_facecolor((1.0, 0.0, 0.0))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return buf.getvalue()


def _fake_report(png: bytes) -> str:
    """The parts of a Snakemake report the tool relies on: the results and categories scripts (after a
    bundled library's own 'var results', as in the real file) and a global ``app`` with ``setView``."""
    results = {
        "results/fig.png": {
            "mime_type": "image/png",
            "data_uri": "data:image/png;base64," + base64.b64encode(png).decode(),
        },
        "results/table.csv": {"mime_type": "text/csv", "data_uri": "data:text/csv;base64,YSxiCjEsMgo="},
    }
    categories = {"Figures": {"Other": ["results/fig.png"]}, "Data": {"Other": ["results/table.csv"]}}
    return textwrap.dedent(f"""\
        <!DOCTYPE html><html><head><style>body {{ margin: 0; background: white; }}</style></head><body>
        <div id="app"></div>
        <script>function lib(patch) {{ var results = new Array(patch.length); return results; }}</script>
        <script id="results">
        var results = {json.dumps(results)};
        </script>
        <script id="categories">
        var categories = {json.dumps(categories)};
        </script>
        <script>
        let app = {{ setView: function (view) {{
            var img = document.createElement("img");
            img.src = view.contentPath;
            document.getElementById("app").appendChild(img);
            document.title = view.navbarMode + " " + view.category;
        }} }};
        </script>
        </body></html>
        """)


def test_report_results_and_view_page():
    text = _fake_report(_red_png())
    results = report_results(text)
    assert [(r.path, r.category, r.viewable) for r in results] == [
        ("results/fig.png", "Figures", True),
        ("results/table.csv", "Data", False),
    ]
    assert results[0].payload()[:8] == b"\x89PNG\r\n\x1a\n"
    page = view_page(text)
    assert page.index("scfmbench-screenshot") < page.rindex("</body>")
    assert page.startswith(text[: text.rindex("</body>")])
    with pytest.raises(InputError, match="Snakemake HTML report"):
        report_results("<html><body>not a report</body></html>")


def test_window_fits_the_figure():
    res = Result(
        "f.png", "C", "Other", "image/png", "data:image/png;base64," + base64.b64encode(_red_png(12, 9)).decode()
    )
    w, h = window_size(res)  # 1200 x 900 pixels: the content half of the window is wide enough
    assert w >= 2 * 1200 and h >= 900


def test_missing_chromium_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no Chromium found"):
        find_chromium(str(tmp_path / "no-such-chromium"))
    report = tmp_path / "report.html"
    report.write_text(_fake_report(_red_png()))
    assert main([str(report), str(tmp_path / "out"), "--chromium", str(tmp_path / "no-such-chromium")]) == 2


def _red_fraction(png: Path) -> float:
    img = imread(png)[..., :3]
    red = (img[..., 0] > 0.9) & (img[..., 1] < 0.1) & (img[..., 2] < 0.1)
    return float(red.mean())


@needs_chromium
def test_screenshot_opens_each_figure(tmp_path):
    report = tmp_path / "report.html"
    report.write_text(_fake_report(_red_png()))
    shots = screenshot(report, tmp_path / "shots", overview=False, budget_ms=2000)
    assert [r.path for _, r in shots] == ["results/fig.png"]  # the CSV is a download, not shown
    png = shots[0][0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(png)
    assert img.std() > 0.05  # not blank
    assert _red_fraction(png) > 0.02  # the figure was opened and drawn
    assert not (tmp_path / "shots" / VIEW_FILE).exists()


@pytest.mark.slow
@needs_chromium
def test_screenshot_of_a_real_snakemake_report(tmp_path):
    """A one-rule workflow whose figure and HTML table carry captions; the PNGs show both."""
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent("""
        rule all:
            input: "fig.png", "table.html"

        rule make:
            output:
                png=report("fig.png", caption="caption.rst", category="Figures"),
                html=report("table.html", caption="caption.rst", category="Tables"),
            run:
                import base64
                open(output.png, "wb").write(base64.b64decode(config["png"]))
                open(output.html, "w").write("<html><body><table border=1><tr><th>method</th></tr>"
                                             "<tr><td style='background:#f00;width:300px;height:200px'>x</td></tr></table></body></html>")
        """)  # noqa: E501 (a Snakefile in a string: wrapping its line would change the file)
    )
    (tmp_path / "caption.rst").write_text("A solid red figure, with a caption.\n")
    snakemake = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "1",
        "--config",
        f"png={base64.b64encode(_red_png()).decode()}",
    ]
    for extra in ([], ["--report", "report.html"]):
        proc = subprocess.run(snakemake + extra, cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "shots"
    shots = screenshot(tmp_path / "report.html", out, budget_ms=5000)
    assert [png.name for png, _ in shots] == ["00-overview.png", "01-figures-fig-png.png", "02-tables-table-html.png"]
    for png, result in shots:
        assert imread(png).std() > 0.05, png
        if result is not None:
            assert _red_fraction(png) > 0.02, png  # the figure / the table's red cell is in the picture
