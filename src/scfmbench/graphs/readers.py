"""Readers for the regulatory-database formats in ``data/grn/`` (REFERENCE.md section 5).

Every reader returns ONE normalized edge table

=============  ==========================================================================
``source``     regulator (TF) symbol, Excel-date corruption repaired (``7-Sep`` -> ``SEPT7``)
``target``     target symbol, repaired the same way
``database``   the database label (the ``database=`` argument, else one derived from the file)
``sign``       int8: +1 activation, -1 repression, 0 unknown or conflicting
``undirected`` bool: True for edges of an undirected resource (STRING), stored in both directions
=============  ==========================================================================

with one row per distinct ``(source, target)``: duplicate rows are merged (the sign becomes the one
non-zero sign among them, or 0 when they disagree, e.g. TRRUST lists some pairs as both
Activation and Repression). What was dropped or repaired is counted in a :class:`ReadReport`,
attached as ``df.attrs["read_report"]`` (a plain dict, so it survives copies).

Bad input (a wrong header, a line with the wrong number of fields, an unknown sign word, an
unterminated quote) raises :class:`scfmbench.InputError` naming the file and the line number.
Rows with an empty field are dropped and counted, not errors: EVEX has 77 of them.

Add a format by writing ``read_<fmt>(path, *, database=None)`` and a row in :data:`READERS`.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scfmbench import InputError
from scfmbench.graphs.symbols import is_gene_symbol, is_motif_name, repair_excel_symbol

__all__ = [
    "EDGE_COLUMNS",
    "ReadReport",
    "READERS",
    "read_grn",
    "read_trrust",
    "read_collectri",
    "read_dorothea",
    "read_dorothea_source",
    "read_dgp_amio",
    "read_enrichr",
    "read_regnetwork_directions",
]

EDGE_COLUMNS = ("source", "target", "database", "sign", "undirected")

# DGP-AMIO quirks, keyed by the lower-cased <name> of edges_<name>.csv (REFERENCE.md section 5,
# checked against the files: JASPAR has 111 and MOTIFMAP 332 distinct values in 'target', all TFs).
_DGP_REVERSED = {"jaspar", "motifmap"}
_DGP_MOTIF_NAMES = {"motifmap"}
_DGP_UNDIRECTED = {"string"}

_TRRUST_SIGN = {"Activation": 1, "Repression": -1, "Unknown": 0}
# RegNetwork RegulatoryDirections: --> activation, --| repression, -/- unknown, -p phosphorylation
# (a modification, not a direction of expression change: unknown sign).
_REGNETWORK_SIGN = {"-->": 1, "--|": -1, "-/-": 0, "-p": 0}


@dataclass
class ReadReport:
    """What a reader kept, dropped and repaired (one file).

    ``rows`` counts data records (an Enrichr set counts once per listed gene); ``edges`` is the
    length of the returned table. ``empty`` rows had an empty source or target; ``non_symbol``
    rows had an endpoint that is not a gene symbol (motif names such as ``AP-1``); ``repaired``
    counts endpoint fields fixed from Excel dates (``repaired_names``: corrupted -> repaired, all
    of them); ``duplicates`` rows were merged into an earlier identical pair (after repair and
    swapping); ``reverse_added`` counts the reverse edges added to make an undirected resource
    symmetric. ``non_symbol_examples`` lists up to 20 dropped names.
    """

    path: str
    fmt: str
    database: str
    rows: int = 0
    empty: int = 0
    non_symbol: int = 0
    repaired: int = 0
    duplicates: int = 0
    reverse_added: int = 0
    edges: int = 0
    swapped: bool = False
    undirected: bool = False
    non_symbol_examples: list[str] = field(default_factory=list)
    repaired_names: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# line-level helpers


def _open_text(path: Path):
    # newline="" lets the csv module see \r\n itself (the DGP-AMIO files are CRLF).
    return open(path, newline="", encoding="utf-8-sig")


def _error(path: Path, line: int, what: str) -> InputError:
    return InputError(f"{path}: line {line}: {what}")


def _csv_table(
    path: Path, headers: list[tuple[str, ...]], *, delimiter: str = ","
) -> tuple[tuple[str, ...], list[list[str]]]:
    """The checked header and the non-empty data records of a CSV file.

    An empty file, a header not in ``headers``, a record whose width differs from the header's,
    or an unterminated quote raise :class:`InputError` naming the line. The records are read in
    one pass without line bookkeeping; only on an error is the file scanned again for the line.
    """
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            first = next(reader, None)
            if first is None:
                raise InputError(f"{path}: the file is empty (expected a header line {','.join(headers[0])!r}).")
            header = _check_header(path, first, headers)
            with _gc_paused():
                rows = [r for r in reader if r]
        except csv.Error as exc:
            raise _error(path, reader.line_num, f"malformed CSV ({exc})") from None
    width = len(header)
    for k, r in enumerate(rows):
        if len(r) != width:
            _check_width(path, _record_line(path, delimiter, k), r, width, ",".join(header))
    return header, rows


def _record_line(path: Path, delimiter: str, k: int) -> int:
    """Line number (1-based, header = 1) at which non-empty data record ``k`` ends."""
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)
        seen = -1
        for r in reader:
            seen += bool(r)
            if seen == k:
                return reader.line_num
    return -1


def _numeric_signs(path: Path, delimiter: str, values: Sequence[str], what: str) -> np.ndarray:
    """sign() of a column of numbers; a non-number raises InputError naming its line."""
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(np.isnan(numbers))
    if bad.size:
        k = int(bad[0])
        raise _error(path, _record_line(path, delimiter, k), f"{what} {values[k]!r} is not a number.")
    return np.sign(numbers).astype(np.int8)


def _columns(rows: list[list[str]], n: int) -> list[list[str]]:
    """Transpose records into ``n`` columns."""
    return [[r[i] for r in rows] for i in range(n)]


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while building millions of small lists: they hold no
    cycles, and collections triggered by the allocations alone double the parse time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_header(path: Path, fields: list[str], allowed: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    got = tuple(f.strip() for f in fields)
    for header in allowed:
        if got == header:
            return header
    want = " or ".join(repr(",".join(h)) for h in allowed)
    raise _error(path, 1, f"unexpected header {','.join(got)!r}; expected {want}.")


def _check_width(path: Path, line: int, fields: list[str], n: int, layout: str) -> None:
    if len(fields) != n:
        raise _error(
            path,
            line,
            f"expected {n} fields ({layout}), found {len(fields)}: {fields!r}. Is the file "
            "truncated or of another format?",
        )


# ---------------------------------------------------------------------------------------------
# normalization shared by all readers


def _normalize(
    source: Sequence[str],
    target: Sequence[str],
    sign,
    report: ReadReport,
    *,
    swap: bool = False,
    motif_column: str | None = None,
    undirected: bool = False,
) -> pd.DataFrame:
    """Columns source, target, sign -> the normalized edge table, filling ``report``.

    ``swap``: the file stores (target, TF); ``motif_column``: which endpoint (after swapping) holds
    motif names to drop; ``undirected``: add missing reverse edges and flag every edge.
    """
    report.rows = len(source)
    report.swapped = swap
    report.undirected = undirected
    df = pd.DataFrame(
        {
            "source": pd.Series(source, dtype=object),
            "target": pd.Series(target, dtype=object),
            "sign": np.asarray(sign, dtype=np.int8),
        }
    )
    if swap:
        df = df.rename(columns={"source": "target", "target": "source"})
    for col in ("source", "target"):
        df[col] = df[col].astype(str).str.strip()

    empty = (df["source"] == "") | (df["target"] == "")
    report.empty = int(empty.sum())
    df = df[~empty].copy()

    # Repair and validate each distinct name once.
    names = pd.unique(pd.concat([df["source"], df["target"]], ignore_index=True))
    repaired = {n: r for n in names if (r := repair_excel_symbol(n)) is not None}
    if repaired:
        n_fixed = 0
        for col in ("source", "target"):
            hit = df[col].isin(repaired.keys())
            n_fixed += int(hit.sum())
            df.loc[hit, col] = df.loc[hit, col].map(repaired)
        report.repaired = n_fixed
        report.repaired_names = dict(sorted(repaired.items()))

    names = pd.unique(pd.concat([df["source"], df["target"]], ignore_index=True))
    not_symbol = [n for n in names if not is_gene_symbol(n)]
    bad_symbol = df["source"].isin(not_symbol) | df["target"].isin(not_symbol)
    if motif_column:
        motifs = [n for n in pd.unique(df[motif_column]) if is_motif_name(n)]
        bad_motif = df[motif_column].isin(motifs)
    else:
        motifs, bad_motif = [], pd.Series(False, index=df.index)
    bad = bad_symbol | bad_motif
    report.non_symbol = int(bad.sum())
    if report.non_symbol:
        report.non_symbol_examples = [str(n) for n in list(dict.fromkeys(not_symbol + motifs))[:20]]
    df = df[~bad]

    df, report.duplicates = _merge_duplicates(df)
    if undirected:
        n = len(df)
        rev = df.rename(columns={"source": "target", "target": "source"})[df.columns]
        df, _ = _merge_duplicates(pd.concat([df, rev], ignore_index=True))
        report.reverse_added = len(df) - n
    df["undirected"] = undirected
    df.insert(2, "database", report.database)
    report.edges = len(df)
    df = df.reset_index(drop=True)[list(EDGE_COLUMNS)]
    df.attrs["read_report"] = report.as_dict()
    return df


def _merge_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per (source, target); returns the table and how many rows were merged away."""
    n = len(df)
    dup = df.duplicated(["source", "target"], keep=False).to_numpy()
    if not dup.any():
        out = df[["source", "target"]].reset_index(drop=True)
        out["sign"] = df["sign"].to_numpy().astype(np.int8)
        return out, 0
    if df["sign"].nunique() == 1:  # unsigned resources: nothing to reconcile
        out = df.drop_duplicates(["source", "target"]).reset_index(drop=True)
        return out, n - len(out)
    g = df[dup].groupby(["source", "target"], sort=False)["sign"]
    pos, neg = g.max(), g.min()
    # one non-zero sign among the duplicates wins; +1 and -1 together mean "conflicting" -> 0
    sign = np.where((pos > 0) & (neg < 0), 0, np.where(pos > 0, 1, np.where(neg < 0, -1, 0)))
    merged = pos.index.to_frame(index=False)
    merged["sign"] = sign
    out = pd.concat([df.loc[~dup, ["source", "target", "sign"]], merged], ignore_index=True)
    out["sign"] = out["sign"].astype(np.int8)
    return out, n - len(out)


def _default_db(database: str | None, fallback: str) -> str:
    return database if database is not None else fallback


# ---------------------------------------------------------------------------------------------
# the readers


def read_trrust(path: str | os.PathLike, *, database: str | None = None) -> pd.DataFrame:
    """TRRUST v2 raw table: tab-separated, no header, ``TF, target, mode, PMIDs``.

    ``mode`` Activation/Repression/Unknown -> sign +1/-1/0.
    """
    path = Path(path)
    report = ReadReport(str(path), "trrust", _default_db(database, "TRRUST"))
    source, target, sign = [], [], []
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            _check_width(path, line_no, fields, 4, "TF, target, mode, PMIDs; tab-separated, no header")
            mode = fields[2].strip()
            if mode not in _TRRUST_SIGN:
                hint = " TRRUST raw files have no header line." if line_no == 1 else ""
                raise _error(path, line_no, f"mode {mode!r} is not one of {sorted(_TRRUST_SIGN)}.{hint}")
            source.append(fields[0])
            target.append(fields[1])
            sign.append(_TRRUST_SIGN[mode])
    return _normalize(source, target, sign, report)


def read_collectri(path: str | os.PathLike, *, database: str | None = None) -> pd.DataFrame:
    """CollecTRI export: CSV ``source,target,weight,PMID``; sign = sign(weight)."""
    path = Path(path)
    report = ReadReport(str(path), "collectri", _default_db(database, "CollecTRI"))
    _, rows = _csv_table(path, [("source", "target", "weight", "PMID")])
    source, target, weight, _ = _columns(rows, 4)
    return _normalize(source, target, _numeric_signs(path, ",", weight, "weight"), report)


def read_dorothea(
    path: str | os.PathLike, *, database: str | None = None, levels: Iterable[str] | None = None
) -> pd.DataFrame:
    """DoRothEA export: CSV ``source,confidence,target,weight`` (both the confidence-weighted and the
    sign-only variant); sign = sign(weight). ``levels`` keeps only those confidence levels
    (e.g. ``("A", "B")``); rows of other levels are not counted as rows.
    """
    path = Path(path)
    report = ReadReport(str(path), "dorothea", _default_db(database, "DoRothEA"))
    keep = None if levels is None else set(levels)
    _, rows = _csv_table(path, [("source", "confidence", "target", "weight")])
    source, confidence, target, weight = _columns(rows, 4)
    sign = _numeric_signs(path, ",", weight, "weight")
    if keep is not None:
        sel = np.isin(np.char.strip(np.asarray(confidence, dtype=str)), list(keep)) if rows else np.zeros(0, bool)
        source, target, sign = np.asarray(source, dtype=object)[sel], np.asarray(target, dtype=object)[sel], sign[sel]
    return _normalize(source, target, sign, report)


def read_dorothea_source(path: str | os.PathLike, *, database: str | None = None) -> pd.DataFrame:
    """A DoRothEA per-resource file (``network.sif`` / ``network_with_pubmed.sif``).

    Despite the extension these are CSV with header ``tf,target[,mor][,pubmed_id]`` (one, TF-e,
    is tab-separated: the delimiter is taken from the header). ``mor`` (mode of regulation) gives
    the sign; without it the sign is 0. The default database label is the resource folder
    (``htri_db``, ``kegg``, ...).
    """
    path = Path(path)
    report = ReadReport(str(path), "dorothea_source", _default_db(database, path.parent.name))
    with _open_text(path) as fh:
        first = fh.readline()
    delimiter = "\t" if "\t" in first else ","
    allowed = [
        ("tf", "target"),
        ("tf", "target", "mor"),
        ("tf", "target", "pubmed_id"),
        ("tf", "target", "mor", "pubmed_id"),
    ]
    header, rows = _csv_table(path, allowed, delimiter=delimiter)
    columns = _columns(rows, len(header))
    sign = _numeric_signs(path, delimiter, columns[2], "mor") if "mor" in header else np.zeros(len(rows), np.int8)
    return _normalize(columns[0], columns[1], sign, report)


def read_dgp_amio(path: str | os.PathLike, *, database: str | None = None) -> pd.DataFrame:
    """A DGP-AMIO ``edges_<name>.csv`` (CSV ``source,target``, unsigned).

    Quirks by ``<name>`` (REFERENCE.md section 5): JASPAR and MOTIFMAP store (gene, TF), so the
    columns are swapped; MOTIFMAP's TFs are motif names, and those that are not gene symbols
    (``AP-1``, ``Tax/CREB``) are dropped and counted; STRING is an undirected PPI stored both ways,
    kept in both directions and flagged ``undirected``.
    """
    path = Path(path)
    m = re.match(r"^edges_(.+)\.csv$", path.name)
    if not m:
        raise InputError(
            f"{path}: DGP-AMIO files are named edges_<name>.csv; cannot tell the resource from {path.name!r}."
        )
    name = m.group(1)
    kind = name.lower()
    report = ReadReport(str(path), "dgp_amio", _default_db(database, name))
    _, rows = _csv_table(path, [("source", "target")])
    source, target = _columns(rows, 2)
    return _normalize(
        source,
        target,
        np.zeros(len(rows), np.int8),
        report,
        swap=kind in _DGP_REVERSED,
        motif_column="source" if kind in _DGP_MOTIF_NAMES else None,
        undirected=kind in _DGP_UNDIRECTED,
    )


def read_enrichr(path: str | os.PathLike, *, database: str | None = None) -> pd.DataFrame:
    """An Enrichr gene-set library: one line per set, ``NAME<TAB><TAB>gene<TAB>gene...``.

    The TF is the first word of the set name (``"NANOG CHEA"`` -> ``NANOG``); each listed gene
    is a target. Unsigned. A trailing tab at the end of a line (as in the Enrichr export) is not
    an empty field.
    """
    path = Path(path)
    report = ReadReport(str(path), "enrichr", _default_db(database, path.stem))
    source, target = [], []
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n").rstrip("\t")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 3 or fields[1].strip() != "" or not fields[0].strip():
                raise _error(path, line_no, "expected 'SET NAME<TAB><TAB>gene<TAB>gene...' (an Enrichr library line).")
            tf = fields[0].split()[0]
            source.extend([tf] * (len(fields) - 2))
            target.extend(fields[2:])
    return _normalize(source, target, np.zeros(len(source), np.int8), report)


def read_regnetwork_directions(path: str | os.PathLike, *, database: str | None = None) -> pd.DataFrame:
    """RegNetwork ``*.reg.direction.txt``: space separated ``TF TF_entrez target target_entrez sign``
    after a ``#TF ...`` header line; sign ``-->`` +1, ``--|`` -1, ``-/-`` and ``-p`` 0.
    """
    path = Path(path)
    report = ReadReport(str(path), "regnetwork", _default_db(database, "RegNetwork_" + path.name.split(".")[0]))
    source, target, sign = [], [], []
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            text = line.strip()
            if line_no == 1:
                if not text.startswith("#TF"):
                    raise _error(
                        path, 1, f"unexpected header {text[:60]!r}; expected '#TF ID Target ID Up or Down or Unknown'."
                    )
                continue
            if not text:
                continue
            fields = text.split()
            _check_width(path, line_no, fields, 5, "TF TF_entrez target target_entrez sign")
            if fields[4] not in _REGNETWORK_SIGN:
                raise _error(path, line_no, f"sign {fields[4]!r} is not one of {sorted(_REGNETWORK_SIGN)}.")
            source.append(fields[0])
            target.append(fields[2])
            sign.append(_REGNETWORK_SIGN[fields[4]])
    return _normalize(source, target, sign, report)


READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "trrust": read_trrust,
    "collectri": read_collectri,
    "dorothea": read_dorothea,
    "dorothea_source": read_dorothea_source,
    "dgp_amio": read_dgp_amio,
    "enrichr": read_enrichr,
    "regnetwork": read_regnetwork_directions,
}


def read_grn(path: str | os.PathLike, fmt: str, *, database: str | None = None) -> pd.DataFrame:
    """Read one regulatory-database file of format ``fmt`` (a key of :data:`READERS`).

    Returns the normalized edge table (module docstring); ``df.attrs["read_report"]`` holds the
    :class:`ReadReport` as a dict.
    """
    if fmt not in READERS:
        raise InputError(f"unknown regulatory-database format {fmt!r}; known formats: {sorted(READERS)}.")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: regulatory-database file not found.")
    return READERS[fmt](path, database=database)
