"""Regulatory-database readers: small fixtures for every format (quirks, bad headers, truncated
lines) and the real files in ../shared/data/grn (counts, quirk repairs, dropped motif names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scfmbench import InputError
from scfmbench.graphs.readers import EDGE_COLUMNS, READERS, read_grn
from scfmbench.graphs.symbols import is_motif_name, match_edges, repair_excel_symbol, symbol_key

FIX = Path(__file__).parent / "fixtures" / "grn"
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "grn"
needs_real = pytest.mark.skipif(
    not REAL.is_dir(),
    reason=f"real regulatory-database copies not found at {REAL} (shared data folder beside the repository)",
)


def _pairs(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df["source"], df["target"]))


def _report(df: pd.DataFrame) -> dict:
    return df.attrs["read_report"]


def _check_table(df: pd.DataFrame) -> None:
    assert tuple(df.columns) == EDGE_COLUMNS
    assert df["sign"].dtype == np.int8
    assert df["undirected"].dtype == bool
    assert set(np.unique(df["sign"])) <= {-1, 0, 1}
    assert not df.duplicated(["source", "target"]).any()
    assert (df["source"] != "").all() and (df["target"] != "").all()


# --------------------------------------------------------------------------- symbols


def test_excel_repair_and_symbol_key():
    assert repair_excel_symbol("7-Sep") == "SEPT7"
    assert repair_excel_symbol("1-Dec") == "DEC1"
    assert repair_excel_symbol("1-Mar") == "MARCH1"
    assert repair_excel_symbol("Sep-07") == "SEPT7"
    assert repair_excel_symbol("1-Oct") == "OCT1"
    assert repair_excel_symbol("TP53") is None and repair_excel_symbol("NKX2-1") is None
    # old, new and corrupted names all meet; matching is case-insensitive
    assert symbol_key("SEPTIN7") == symbol_key("Sept7") == symbol_key("7-Sep") == "SEPT7"
    assert symbol_key("MARCHF1") == symbol_key("1-Mar") == "MARCH1"
    assert symbol_key("DELEC1") == symbol_key("1-Dec") == "DEC1"


@pytest.mark.parametrize(
    "name", ["AP-1", "Tax/CREB", "LEF1, TCF1", "c-Myc", "NF-kappaB (p50)", "GATA-1", "HNF-1alpha", "Hand1:E47"]
)
def test_motif_names_are_not_symbols(name):
    assert is_motif_name(name)


@pytest.mark.parametrize("name", ["YY1", "Meis1", "NKX2-1", "OCT1", "ATP6V1G2-DDX39B", "SOX10"])
def test_symbols_are_not_motif_names(name):
    assert not is_motif_name(name)


def test_match_edges_counts_and_aliases():
    edges = pd.DataFrame(
        {
            "source": ["STAT3", "SEPT7", "MARCH1", "NOPE", "tp53"],
            "target": ["SEPTIN7", "DEC1", "STAT3", "STAT3", "STAT3"],
            "database": ["a", "a", "b", "b", "b"],
        }
    )
    var = ["stat3", "SEPTIN7", "MARCHF1", "DELEC1", "TP53"]
    m = match_edges(edges, var)
    got = set(zip(m.source.tolist(), m.target.tolist()))
    assert got == {(0, 1), (1, 3), (2, 0), (4, 0)}
    c = m.counts.set_index("database")
    assert c.loc["a", "matched"] == 2 and c.loc["a", "unmatched"] == 0
    assert c.loc["b", "matched"] == 2 and c.loc["b", "unmatched"] == 1
    assert m.genes_matched.all()


# --------------------------------------------------------------------------- fixtures per format


def test_trrust_fixture():
    df = read_grn(FIX / "trrust_ok.tsv", "trrust")
    _check_table(df)
    r = _report(df)
    assert r["rows"] == 6 and r["empty"] == 1 and r["repaired"] == 1 and r["duplicates"] == 2
    signs = {(s, t): v for s, t, v in zip(df.source, df.target, df.sign)}
    assert signs == {("AATF", "BAX"): 0, ("STAT3", "SEPT7"): 1, ("MYC", "TERT"): 0}  # +1 and -1 conflict -> 0
    assert set(df["database"]) == {"TRRUST"}


def test_collectri_and_dorothea_fixtures():
    df = read_grn(FIX / "collectri_ok.csv", "collectri")
    _check_table(df)
    assert dict(zip(df.target, df.sign)) == {"TERT": 1, "BGLAP": 1, "SCN2A": -1}
    df = read_grn(FIX / "dorothea_ok.csv", "dorothea", database="dorothea_abc")
    _check_table(df)
    assert dict(zip(df.target, df.sign)) == {"TERT": 1, "NTS": 1, "SCN2A": -1}
    assert set(df["database"]) == {"dorothea_abc"}
    ab = READERS["dorothea"](FIX / "dorothea_ok.csv", levels=("A", "B"))
    assert set(ab.target) == {"TERT", "NTS"}


def test_dorothea_source_fixtures():
    df = read_grn(FIX / "sif_mor" / "network_with_pubmed.sif", "dorothea_source")
    _check_table(df)
    assert dict(zip(df.source, df.sign)) == {"AHR": 0, "TCF7L2": 1, "AR": -1}  # quoted pubmed field with a comma
    r = _report(df)
    assert r["non_symbol"] == 1 and r["non_symbol_examples"] == ["APOA4/APOC3"]
    assert set(df.database) == {"sif_mor"}
    df = read_grn(FIX / "sif_tab" / "network.sif", "dorothea_source")  # TF-e is tab separated
    assert _pairs(df) == {("ARID3A", "IGHV1-69"), ("E2F1", "MYC")}


def test_dgp_amio_evex_empty_and_excel_dates():
    df = read_grn(FIX / "edges_EVEX.csv", "dgp_amio")
    _check_table(df)
    r = _report(df)
    assert r["rows"] == 4 and r["empty"] == 1 and r["repaired"] == 2 and r["duplicates"] == 1
    assert _pairs(df) == {("ABCF1", "A1BG"), ("SEPT7", "MARCH1")}
    assert set(df.database) == {"EVEX"}


def test_dgp_amio_reversed_files_are_swapped():
    df = read_grn(FIX / "edges_JASPAR.csv", "dgp_amio")
    assert _pairs(df) == {("REST", "BAX"), ("REST", "VARS"), ("SP1", "MYC")}
    assert _report(df)["swapped"]


def test_dgp_amio_motifmap_drops_motif_names():
    df = read_grn(FIX / "edges_MOTIFMAP.csv", "dgp_amio")
    _check_table(df)
    r = _report(df)
    assert r["non_symbol"] == 3
    assert set(r["non_symbol_examples"]) == {"Tax/CREB", "AP-1", "LEF1, TCF1"}
    assert _pairs(df) == {("OTX2", "HECW1"), ("YY1", "DEC1"), ("Meis1", "GENE1")}


def test_dgp_amio_string_is_undirected_both_ways():
    df = read_grn(FIX / "edges_string.csv", "dgp_amio")
    _check_table(df)
    assert df["undirected"].all()
    assert _pairs(df) == {("ARF5", "ARFGAP3"), ("ARFGAP3", "ARF5"), ("CLTA", "ARFGAP3"), ("ARFGAP3", "CLTA")}
    assert _report(df)["reverse_added"] == 1


def test_enrichr_fixture():
    df = read_grn(FIX / "enrichr_ok.txt", "enrichr")
    _check_table(df)
    assert _pairs(df) == {("NANOG", "RBFOX2"), ("NANOG", "WSB2"), ("NANOG", "VIM"), ("AR", "KLK3"), ("AR", "TMPRSS2")}
    r = _report(df)
    assert r["empty"] == 1 and r["duplicates"] == 1


def test_regnetwork_fixture():
    df = read_grn(FIX / "regnetwork_ok.txt", "regnetwork")
    _check_table(df)
    assert dict(zip(df.source, df.sign)) == {"AHR": 1, "APLNR": -1, "AR": 0, "AKT1": 0}


@pytest.mark.parametrize(
    "name, fmt, line",
    [
        ("trrust_bad_header.tsv", "trrust", 1),
        ("trrust_truncated.tsv", "trrust", 3),
        ("collectri_bad_header.csv", "collectri", 1),
        ("collectri_truncated.csv", "collectri", 3),
        ("dorothea_bad_header.csv", "dorothea", 1),
        ("dorothea_truncated.csv", "dorothea", 3),
        ("sif_bad_header.sif", "dorothea_source", 1),
        ("sif_truncated.sif", "dorothea_source", 3),
        ("edges_bad_header.csv", "dgp_amio", 1),
        ("edges_truncated.csv", "dgp_amio", 3),
        ("edges_unterminated.csv", "dgp_amio", 3),
        ("enrichr_truncated.txt", "enrichr", 2),
        ("regnetwork_bad_header.txt", "regnetwork", 1),
        ("regnetwork_truncated.txt", "regnetwork", 3),
    ],
)
def test_bad_files_name_file_and_line(name, fmt, line):
    with pytest.raises(InputError) as exc:
        read_grn(FIX / name, fmt)
    msg = str(exc.value)
    assert name in msg and f"line {line}:" in msg


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="unknown regulatory-database format"):
        read_grn(FIX / "trrust_ok.tsv", "gmt")
    with pytest.raises(InputError, match="not found"):
        read_grn(tmp_path / "nope.tsv", "trrust")
    empty = tmp_path / "edges_x.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        read_grn(empty, "dgp_amio")


# --------------------------------------------------------------------------- the real files


@needs_real
def test_real_trrust_and_collectri():
    df = read_grn(REAL / "trrust-v2" / "trrust_rawdata.human.tsv", "trrust")
    _check_table(df)
    r = _report(df)
    assert r["rows"] == 9396 and r["edges"] == 8427 and r["duplicates"] == 969  # SOURCE.txt: 8,427 unique pairs
    df = read_grn(REAL / "collectri-dorothea" / "collectri.csv", "collectri")
    assert len(df) == 43178 and df["source"].nunique() == 1186 and df["target"].nunique() == 6692
    df = read_grn(REAL / "collectri-dorothea" / "dorothea.csv", "dorothea")
    assert len(df) == 32275 and df["source"].nunique() == 429
    assert read_grn(REAL / "collectri-dorothea" / "dorothea_sign.csv", "dorothea")["sign"].equals(df["sign"])


@needs_real
def test_real_dgp_amio_quirks():
    d = REAL / "dgp-amio"
    evex = read_grn(d / "edges_EVEX.csv", "dgp_amio")
    r = _report(evex)
    assert r["rows"] == 236242 and r["empty"] == 77 and r["repaired"] > 0
    assert "7-Sep" in r["repaired_names"] and r["repaired_names"]["7-Sep"] == "SEPT7"
    names = set(evex.source) | set(evex.target)
    assert "SEPT7" in names and not any(repair_excel_symbol(n) for n in names)

    trrust = read_grn(d / "edges_trrust.csv", "dgp_amio")
    assert len(trrust) == 8427
    sept7 = trrust[(trrust.source == "SEPT7") | (trrust.target == "SEPT7")]
    assert len(sept7) >= 1  # "7-Sep" in the corrupted file, an edge with SEPT7 after repair

    motif = read_grn(d / "edges_MOTIFMAP.csv", "dgp_amio")
    r = _report(motif)
    assert r["swapped"] and r["rows"] == 158860
    assert r["non_symbol"] > 10000 and "Tax/CREB" in r["non_symbol_examples"]
    assert r["edges"] == r["rows"] - r["non_symbol"] - r["duplicates"] - r["empty"]
    assert not any(is_motif_name(n) for n in motif["source"].unique())
    assert "OCT1" in set(motif["source"])  # "1-Oct" repaired

    jaspar = read_grn(d / "edges_JASPAR.csv", "dgp_amio")
    assert jaspar["source"].nunique() == 111 and len(jaspar) == 148069  # TFs moved to 'source'

    string = read_grn(d / "edges_string.csv", "dgp_amio")
    assert string["undirected"].all() and len(string) == 279011
    rev = set(zip(string.target, string.source))
    assert rev == _pairs(string)


@needs_real
def test_real_other_formats():
    df = read_grn(REAL / "enrichr-encode-chea" / "ENCODE_and_ChEA_Consensus_TFs_from_ChIP-X.txt", "enrichr")
    _check_table(df)
    assert df["source"].nunique() <= 104 and len(df) > 80000
    df = read_grn(REAL / "regnetwork-kegg-directions" / "new_kegg.human.reg.direction.txt", "regnetwork")
    assert len(df) == 3950 and (df["sign"] == 1).sum() > 3800  # SOURCE.txt: 3,950 unique pairs
    src = REAL / "dorothea-sources"
    for path in sorted(src.rglob("*.sif")):
        df = read_grn(path, "dorothea_source")
        _check_table(df)
        r = _report(df)
        lines = path.read_bytes().count(b"\n") - 1
        assert r["rows"] == lines, path
    tf_e = read_grn(src / "curated" / "tf_e" / "network.sif", "dorothea_source")
    assert len(tf_e) == 471
