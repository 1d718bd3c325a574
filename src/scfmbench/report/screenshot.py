"""Screenshots of Snakemake's HTML report with headless Chromium: one PNG per figure and table.

Usage::

    python -m scfmbench.report.screenshot results/report.html results/report_screenshots
    python -m scfmbench.report.screenshot REPORT_HTML OUTDIR --only fewshot --only sensitivity

Snakemake 9's ``--report`` writes a single-page React app: every result is embedded as a data URI
in a ``var results = {...}`` script and shown only after a click (the app keeps its view in memory;
it reads no URL fragment or query parameter). So a plain ``chromium --screenshot`` of the file shows
the landing page (workflow description and rule graph) only. This tool writes one copy of the report
beside the screenshots with a small script appended that reads the result path from the URL
fragment and calls the app's own ``app.setView`` with what its "view" button does, in
``resultinfo`` mode (left: the result's caption, rule and size; right: the figure, or the table's
HTML page); then runs ``chromium --headless --screenshot`` once per result with a window sized to
the figure. Images, HTML and PDF results are shot; CSV and other files, which the report offers
only as downloads, are skipped. ``00-overview.png`` is the landing page.

Chromium: ``--chromium PATH``, else ``$CHROMIUM``, else the first of ``chromium``,
``chromium-browser``, ``google-chrome``, ``google-chrome-stable`` on ``PATH``. Runs without a
display; the virtual-time budget makes Chromium wait for the app's scripts (React, Tailwind's
in-page compiler) without a fixed sleep.
"""

from __future__ import annotations

import argparse
import base64
import html as html_lib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from scfmbench import InputError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEW_FILE = ".report-view.html"

# Appended before </body>: opens the result named in the URL fragment once the app exists.
_INJECT = """
<style id="scfmbench-screenshot-style">
  div.p-3:has(> img) { min-width: 0; max-width: 100%; }
  div.p-3 > img { max-width: 100%; height: auto; }
</style>
<script id="scfmbench-screenshot">
(function () {
  // New headless Chromium's screenshot is the --window-size, but its viewport (100vh) is shorter:
  // the height passed as ?h= stretches the app's full-height panels over the whole picture.
  var h = parseInt(new URLSearchParams(window.location.search).get("h") || "0", 10);
  if (h > 0) {
    var style = document.createElement("style");
    style.textContent = ".h-screen { height: " + h + "px !important; }";
    document.head.appendChild(style);
  }
  var tries = 0;
  function show() {
    var path = decodeURIComponent(window.location.hash.slice(1));
    if (!path) { return; }
    if (typeof app === "undefined" || !app || typeof results === "undefined") {
      if (tries++ < 400) { setTimeout(show, 25); }
      return;
    }
    var entry = results[path];
    if (!entry) { document.title = "scfmbench-screenshot: no result " + path; return; }
    var category, subcategory;
    Object.keys(categories).forEach(function (cat) {
      Object.keys(categories[cat]).forEach(function (sub) {
        if (categories[cat][sub].indexOf(path) >= 0) { category = cat; subcategory = sub; }
      });
    });
    var mime = entry.mime_type || "";
    var content = mime.indexOf("image/") === 0 ? "img" : (mime === "application/pdf" ? "pdf" : "html");
    app.setView({navbarMode: "resultinfo", category: category, subcategory: subcategory,
                 resultPath: path, content: content, contentPath: entry.data_uri});
  }
  window.addEventListener("load", function () { setTimeout(show, 0); });
})();
</script>
"""


@dataclass
class Result:
    """One result of the report: its path (the key in ``results``), category and what to show."""

    path: str
    category: str
    subcategory: str
    mime: str
    data_uri: str

    @property
    def viewable(self) -> bool:
        return self.mime.startswith("image/") or self.mime in ("text/html", "application/pdf")

    def payload(self) -> bytes:
        _, _, data = self.data_uri.partition(";base64,")
        return base64.b64decode(data) if data else b""


def find_chromium(explicit: str | None = None) -> str:
    """The Chromium executable to use, or :class:`InputError` saying how to provide one."""
    candidates = (
        [explicit] if explicit else ([os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else list(CHROMIUM_NAMES))
    )
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise InputError(
        f"no Chromium found (tried {candidates}); install one (Debian: apt-get install chromium) or pass "
        "--chromium PATH / set $CHROMIUM to a Chromium or Chrome executable"
    )


def _js_value(text: str, name: str):
    """The JSON literal of ``<script id="{name}"> var {name} = ...;`` (the bundled libraries have
    variables of the same names, so the script's id is part of the pattern)."""
    m = re.search(rf"<script\s+id=[\"']{name}[\"']\s*>\s*var\s+{name}\s*=\s*", text)
    if not m:
        raise InputError(
            f"this does not look like a Snakemake HTML report: no <script id=\"{name}\"> with 'var {name} = ...' in it"
        )
    value, _ = json.JSONDecoder().raw_decode(text, m.end())
    return value


def report_results(text: str) -> list[Result]:
    """Every result of a Snakemake report's HTML, in the report's category order."""
    results = _js_value(text, "results")
    categories = _js_value(text, "categories")
    out, seen = [], set()
    for cat, subcats in categories.items():
        for sub, paths in subcats.items():
            for path in paths:
                if path in results and path not in seen:
                    seen.add(path)
                    entry = results[path]
                    out.append(Result(path, cat, sub, entry.get("mime_type") or "", entry.get("data_uri") or ""))
    for path, entry in results.items():  # not listed in any category (should not happen)
        if path not in seen:
            out.append(Result(path, "", "", entry.get("mime_type") or "", entry.get("data_uri") or ""))
    return out


def view_page(text: str) -> str:
    """The report with the result-opening script appended before its last ``</body>``."""
    at = text.rfind("</body>")
    return text + _INJECT if at < 0 else text[:at] + _INJECT + text[at:]


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return None


def window_size(
    result: Result, *, min_width: int = 1400, max_width: int = 3600, min_height: int = 900, max_height: int = 4000
) -> tuple[int, int]:
    """A window in which the result shows whole: the result-info view gives the content half the width."""
    pad = 24  # the content's p-3 padding, both sides
    if result.mime == "image/png" and (size := _png_size(result.payload())):
        w, h = size
        width = min(max(2 * (w + pad) + 16, min_width), max_width)
        scale = min(1.0, (width / 2 - pad) / w)
        return width, min(max(int(h * scale) + pad + 8, min_height), max_height)
    if result.mime == "text/html":
        page = result.payload().decode("utf-8", errors="replace")
        rows = re.findall(r"<tr\b.*?</tr>", page, flags=re.S | re.I)
        widths: list[int] = []  # per column: the longest cell, ~8 px a character plus padding
        for row in rows:
            cells = [
                html_lib.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                for c in re.findall(r"<t[dh]\b.*?</t[dh]>", row, flags=re.S | re.I)
            ]
            for i, cell in enumerate(cells):
                w = 8 * len(cell) + 24
                widths[i : i + 1] = [max(widths[i], w)] if i < len(widths) else [w]
        blocks = len(re.findall(r"<(?:h\d|p|table)\b", page, flags=re.I))
        width = min(max(2 * (sum(widths) + 80), min_width), max_width)
        return width, min(max(30 * len(rows) + 70 * blocks + 80, min_height), max_height)
    return min_width, min_height


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "result"


def _shoot(
    chromium: str, url: str, png: Path, size: tuple[int, int], *, budget_ms: int, profile: Path, timeout_s: float
) -> None:
    url = f"{url.partition('#')[0]}?h={size[1]}" + (f"#{url.partition('#')[2]}" if "#" in url else "")
    args = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--mute-audio",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={png}",
        url,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    png.unlink(missing_ok=True)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium failed on {url[:200]} (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def screenshot(
    report_html: str | Path,
    outdir: str | Path,
    *,
    chromium: str | None = None,
    only: tuple[str, ...] = (),
    overview: bool = True,
    budget_ms: int = 8000,
    timeout_s: float = 120.0,
) -> list[tuple[Path, Result | None]]:
    """Shoot the report's landing page and every viewable result; return (png, result) pairs.

    ``only``: keep results whose path contains any of these substrings (all when empty).
    """
    report_html = Path(report_html)
    if not report_html.is_file():
        raise InputError(f"{report_html}: no such report (make one with: snakemake --report {report_html})")
    exe = find_chromium(chromium)
    text = report_html.read_text(encoding="utf-8", errors="replace")
    results = [r for r in report_results(text) if r.viewable and (not only or any(s in r.path for s in only))]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    view = outdir / VIEW_FILE
    view.write_text(view_page(text), encoding="utf-8")
    base = view.resolve().as_uri()
    shots: list[tuple[Path, Result | None]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="scfmbench-chromium-") as profile:
            if overview:
                png = outdir / "00-overview.png"
                _shoot(exe, base, png, (1600, 1000), budget_ms=budget_ms, profile=Path(profile), timeout_s=timeout_s)
                shots.append((png, None))
            for i, result in enumerate(results, start=1):
                png = outdir / f"{i:02d}-{_slug(result.category)}-{_slug(Path(result.path).name)}.png"
                url = f"{base}#{quote(result.path, safe='')}"
                _shoot(
                    exe, url, png, window_size(result), budget_ms=budget_ms, profile=Path(profile), timeout_s=timeout_s
                )
                shots.append((png, result))
    finally:
        view.unlink(missing_ok=True)
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scfmbench.report.screenshot",
        description="PNG screenshots of a Snakemake HTML report: the landing page and every figure and table.",
    )
    parser.add_argument("report_html", help="the report written by 'snakemake --report FILE.html'")
    parser.add_argument("outdir", help="folder for the PNGs (created)")
    parser.add_argument("--chromium", help="Chromium/Chrome executable (default: $CHROMIUM or chromium on PATH)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SUBSTRING",
        help="only results whose path contains this (repeatable)",
    )
    parser.add_argument("--no-overview", action="store_true", help="skip the landing page")
    parser.add_argument(
        "--budget-ms", type=int, default=8000, help="Chromium's virtual-time budget per page (default 8000)"
    )
    args = parser.parse_args(argv)
    try:
        shots = screenshot(
            args.report_html,
            args.outdir,
            chromium=args.chromium,
            only=tuple(args.only),
            overview=not args.no_overview,
            budget_ms=args.budget_ms,
        )
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for png, result in shots:
        print(f"{png}\t{result.category + ': ' + result.path if result else 'overview (landing page)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
