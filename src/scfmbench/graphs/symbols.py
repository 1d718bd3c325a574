"""Gene-symbol hygiene: Excel-date repair, symbol validity, and matching edges to a dataset's genes.

Two things go wrong with gene symbols in regulatory databases:

* **Excel date corruption** (Ziemann et al. 2016, Genome Biol 17:177): opening a table in a
  spreadsheet turns ``SEPT7`` into ``7-Sep``, ``MARCH1`` into ``1-Mar``, ``DEC1`` into ``1-Dec``
  (the DGP-AMIO EVEX, MOTIFMAP, RegNetwork and TRRUST files carry this; another TRRUST copy has the
  ``Sep-07`` form). :func:`repair_excel_symbol` turns both forms back into the symbol of the day.
* **Renamed symbols**: HGNC renamed ``SEPTn`` to ``SEPTINn`` and ``MARCHn`` to ``MARCHFn`` (2019-20)
  and ``DEC1`` to ``DELEC1``. Databases and datasets of different ages use either name, so
  :func:`symbol_key` maps both to one matching key.

Matching is case-insensitive (``symbol_key`` upper-cases), which would also let mouse symbols
(``Sox17``) meet human ones (``SOX17``): :func:`scfmbench.data.species.detect_species` tells a
dataset's species from its symbols, the graph build refuses a database of another species, and :class:`MatchResult`
counts exact and case-folded matches apart.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "repair_excel_symbol",
    "is_gene_symbol",
    "is_motif_name",
    "symbol_key",
    "MatchResult",
    "match_edges",
]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# The symbol a month abbreviation came from: SEPTn and MARCHn were the HGNC names when the
# corrupted tables were made; all other months map to their upper-case abbreviation (DEC1, OCT1, FEB2).
_MONTH_SYMBOL = {m: m.upper() for m in _MONTHS} | {"Sep": "SEPT", "Mar": "MARCH"}
_MONTH_ALT = "|".join(_MONTHS)
# "7-Sep" (Excel's d-mmm display) and "Sep-07" (mmm-yy display); Excel writes the month capitalised.
_EXCEL_DAY_MONTH = re.compile(rf"^(\d{{1,2}})-({_MONTH_ALT})$")
_EXCEL_MONTH_YEAR = re.compile(rf"^({_MONTH_ALT})-(\d{{1,2}})$")

# HGNC renames: new name -> the old name used as the matching key (both sides go through this).
_RENAMES = (
    (re.compile(r"^SEPTIN(\d+)$"), r"SEPT\1"),
    (re.compile(r"^MARCHF(\d+)$"), r"MARCH\1"),
    (re.compile(r"^DELEC1$"), "DEC1"),
)

# A token that can be a gene symbol at all: no spaces, commas, slashes, colons, brackets. Real
# files hold Ensembl-style names with "_" and miRNA names with "*" (EVEX, ReMap), so those pass.
_SYMBOL_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@*\-]*$")
# Motif-database names that are protein or complex names, not symbols: "AP-1", "GATA-1", "Alx-4",
# "c-Myc", "HNF-1alpha". HGNC human symbols are upper case ("orf" aside) and never LETTERS-DIGITS
# apart from a few endogenous retrovirus loci (ERVW-1), which motif databases do not hold.
# Checked on upper-cased names, because MOTIFMAP writes real TFs in mouse style ("Meis1", "Sp3").
_HGNC_LIKE = re.compile(r"^[A-Z0-9]+(-[A-Z0-9]+)*$")
_PROTEIN_STYLE = re.compile(r"^([A-Z]+-\d+[A-Z]?|[A-Z]-.*|.*(ALPHA|BETA|GAMMA|DELTA|KAPPA).*)$")


def repair_excel_symbol(name: str) -> str | None:
    """The gene symbol behind an Excel-date-corrupted name, or ``None`` if ``name`` is not one.

    >>> repair_excel_symbol("7-Sep"), repair_excel_symbol("1-Mar"), repair_excel_symbol("1-Dec")
    ('SEPT7', 'MARCH1', 'DEC1')
    >>> repair_excel_symbol("Sep-07"), repair_excel_symbol("TP53")
    ('SEPT7', None)
    """
    m = _EXCEL_DAY_MONTH.match(name)
    if m:
        return f"{_MONTH_SYMBOL[m.group(2)]}{int(m.group(1))}"
    m = _EXCEL_MONTH_YEAR.match(name)
    if m:
        return f"{_MONTH_SYMBOL[m.group(1)]}{int(m.group(2))}"
    return None


def is_gene_symbol(name: str) -> bool:
    """Whether ``name`` can be a gene symbol at all (one token without spaces, commas, slashes...)."""
    return bool(_SYMBOL_CHARS.match(name))


def is_motif_name(name: str) -> bool:
    """Whether a transcription-factor name from a motif database is a motif/protein name, not a symbol.

    Used for MOTIFMAP, whose TF column holds names such as ``AP-1``, ``Tax/CREB``, ``c-Myc``,
    ``NF-kappaB (p50)``, ``HNF-1alpha``; mouse-style capitalisation of a symbol (``Meis1``) passes. Names that look like
    symbols but are protein names (``HEB``, ``FXR``) cannot be told apart without HGNC; they pass and simply match no
    dataset gene.
    """
    upper = name.upper()
    return not (is_gene_symbol(name) and _HGNC_LIKE.match(upper) and not _PROTEIN_STYLE.match(upper))


def symbol_key(name: str) -> str:
    """Matching key: upper case, Excel dates repaired, today's HGNC names mapped to the old ones.

    ``symbol_key("SEPTIN7") == symbol_key("Sept7") == symbol_key("7-Sep") == "SEPT7"``.
    """
    name = name.strip()
    name = repair_excel_symbol(name) or name
    key = name.upper()
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


@dataclass
class MatchResult:
    """Edges of one or more edge tables matched onto a dataset's genes.

    Attributes
    ----------
    source, target
        int64 arrays, indices into ``var_names`` (edge ``source -> target``), one row per matched
        input edge (so the same pair may occur once per database; self-pairs created by matching
        two names onto one gene are removed).
    database
        The database of each matched edge (object array, aligned with ``source``).
    counts
        One row per database: ``edges`` (input edges), ``matched`` (both endpoints found),
        ``unmatched``, ``genes`` (distinct endpoint names), ``genes_matched`` (of those, found in
        ``var_names``), ``genes_exact`` and ``genes_folded`` (of those, found as written or only
        after case-folding / date repair / renaming), ``match_rate`` (matched / edges).
    genes_matched
        Boolean mask over ``var_names``: the gene is an endpoint of at least one matched name in
        any database (whether or not its partner was found).
    ambiguous
        Dataset names that share a matching key with an earlier name (``TP53`` and ``tp53``); the
        first one receives the edges.
    """

    source: np.ndarray
    target: np.ndarray
    database: np.ndarray
    counts: pd.DataFrame
    genes_matched: np.ndarray
    ambiguous: list[str]


def _key_index(var_names) -> tuple[dict[str, int], list[str]]:
    index: dict[str, int] = {}
    ambiguous = []
    for i, name in enumerate(map(str, var_names)):
        key = symbol_key(name)
        if key in index:
            ambiguous.append(name)
        else:
            index[key] = i
    return index, ambiguous


def match_edges(edges: pd.DataFrame, var_names) -> MatchResult:
    """Map the endpoints of a normalized edge table (``source, target, database``) onto ``var_names``.

    Matching is case-insensitive and treats Excel-date and renamed forms as equal (:func:`symbol_key`).
    """
    for col in ("source", "target", "database"):
        if col not in edges.columns:
            raise KeyError(f"edge table lacks column {col!r}; got {list(edges.columns)}")
    index, ambiguous = _key_index(var_names)
    if ambiguous:
        warnings.warn(
            f"{len(ambiguous)} dataset gene names collide case-insensitively or as renamed symbols "
            f"(e.g. {ambiguous[:5]}); edges go to the first occurrence.",
            stacklevel=2,
        )
    # Map each distinct name once (the tables have far fewer names than edges).
    m = len(edges)
    codes, names = pd.factorize(pd.concat([edges["source"], edges["target"]], ignore_index=True))
    lookup = np.array([index.get(symbol_key(str(n)), -1) for n in names], dtype=np.int64)
    var = np.asarray([str(v) for v in var_names], dtype=object)
    exact = np.array([i >= 0 and var[i] == str(n) for i, n in zip(lookup, names)], dtype=bool)
    src, dst = lookup[codes[:m]], lookup[codes[m:]]
    ok = (src >= 0) & (dst >= 0)
    db_codes, db_names = pd.factorize(edges["database"].astype(str))

    rows = []
    for k, name in enumerate(db_names):
        sel = db_codes == k
        ends = np.unique(np.concatenate([codes[:m][sel], codes[m:][sel]]))
        n_edges, n_ok = int(sel.sum()), int((ok & sel).sum())
        rows.append(
            {
                "database": name,
                "edges": n_edges,
                "matched": n_ok,
                "unmatched": n_edges - n_ok,
                "genes": int(ends.size),
                "genes_matched": int((lookup[ends] >= 0).sum()),
                "genes_exact": int(exact[ends].sum()),
                "genes_folded": int((lookup[ends] >= 0).sum() - exact[ends].sum()),
                "match_rate": n_ok / n_edges if n_edges else 0.0,
            }
        )
    counts = pd.DataFrame(
        rows,
        columns=[
            "database",
            "edges",
            "matched",
            "unmatched",
            "genes",
            "genes_matched",
            "genes_exact",
            "genes_folded",
            "match_rate",
        ],
    )

    genes_matched = np.zeros(len(var_names), dtype=bool)
    hit = np.concatenate([src[src >= 0], dst[dst >= 0]])
    genes_matched[hit] = True
    keep = ok & (src != dst)
    return MatchResult(
        source=src[keep].astype(np.int64),
        target=dst[keep].astype(np.int64),
        database=np.asarray(db_names, dtype=object)[db_codes[keep]],
        counts=counts,
        genes_matched=genes_matched,
        ambiguous=ambiguous,
    )
