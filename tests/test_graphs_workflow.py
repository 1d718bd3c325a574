"""The gene-graph stage wired into the workflow: config and registry, the download rule's function,
graphs as cached artifacts in a temporary workflow copy, bad input, and train-only co-expression."""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, SHARED

from scfmbench import InputError
from scfmbench.config import load_config, validate_config
from scfmbench.data.synthetic import vendored_grn_path
from scfmbench.graphs import coexpression_edges_reference, load_graph
from scfmbench.graphs.readers import READERS
from scfmbench.graphs.workflow import (
    build_graph_file,
    build_graph_from_prepared,
    check_graph_config,
    database_file,
    database_registry,
    download_database,
    download_name,
    graph_build_spec,
    read_databases,
)

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--cores", "2"]
TRRUST_SHA = "9b909319ccc8e36588b5a1bd3640e0dfba03936c6fc154cc4304d742bec11bed"  # src/scfmbench/data/grn/SOURCE.md


def validated(cfg: dict, schema_path: Path) -> tuple[dict, dict]:
    cfg = validate_config(copy.deepcopy(cfg), schema_path)
    return cfg, database_registry(cfg, schema_path)


def base() -> dict:
    return {"datasets": {"pbmc68k": {"source": "pbmc68k"}}}


# ---------------------------------------------------------------------------------------------
# config and registry


def test_embedded_default_uses_vendored_trrust(schema_path):
    cfg = load_config(REPO / "config" / "config.yaml", schema_path)
    registry = database_registry(cfg, schema_path)
    check_graph_config(cfg, registry)
    assert cfg["graphs"]["datasets"] == ["pbmc68k", "synthetic"] and cfg["graphs"]["databases"] == ["trrust_human"]
    assert (cfg["graphs"]["top_h"], cfg["graphs"]["delta"], cfg["graphs"]["layer"], cfg["graphs"]["variants"]) == (
        20,
        0.4,
        "log",
        ["full"],
    )
    entry = registry["trrust_human"]
    assert entry["url"] == "https://www.grnpedia.org/trrust/data/trrust_rawdata.human.tsv"
    # the vendored file is used directly (no download job) and is the registered one
    assert database_file("trrust_human", entry) == str(vendored_grn_path("trrust_human"))
    assert hashlib.sha256(vendored_grn_path("trrust_human").read_bytes()).hexdigest() == entry["sha256"] == TRRUST_SHA


def test_registry_formats_are_the_readers(schema_path):
    schema = yaml.safe_load(schema_path.read_text())
    entry_schema = schema["properties"]["databases"]["additionalProperties"]
    assert set(entry_schema["properties"]["format"]["enum"]) - {None} == set(READERS)
    for name, entry in schema["properties"]["databases"]["default"].items():
        assert entry["format"] in READERS, name
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), name
        assert entry["url"].startswith("https://"), name
        if entry["format"] == "dgp_amio":  # the reader tells JASPAR/MOTIFMAP/STRING apart by this name
            assert re.fullmatch(r"edges_\w+\.csv", download_name(name, entry["url"])), name


# Registry entry -> the real copy under ../shared/data/grn (the checksums were taken from them).
SHARED_COPIES = {
    "trrust_human": "trrust-v2/trrust_rawdata.human.tsv",
    "trrust_mouse": "trrust-v2/trrust_rawdata.mouse.tsv",
    "collectri": "collectri-dorothea/collectri.csv",
    "dorothea": "collectri-dorothea/dorothea.csv",
    "dgp_amio_evex": "dgp-amio/edges_EVEX.csv",
    "dgp_amio_jaspar": "dgp-amio/edges_JASPAR.csv",
    "dgp_amio_motifmap": "dgp-amio/edges_MOTIFMAP.csv",
    "dgp_amio_regnetwork": "dgp-amio/edges_RegNetwork.csv",
    "dgp_amio_kegg": "dgp-amio/edges_kegg.csv",
    "dgp_amio_string": "dgp-amio/edges_string.csv",
    "dgp_amio_trrust": "dgp-amio/edges_trrust.csv",
    "enrichr_encode_chea": "enrichr-encode-chea/ENCODE_and_ChEA_Consensus_TFs_from_ChIP-X.txt",
    "regnetwork_kegg": "regnetwork-kegg-directions/new_kegg.human.reg.direction.txt",
}


@pytest.mark.skipif(
    not (SHARED / "data" / "grn").is_dir(), reason="../shared/data/grn (real database copies) not present"
)
def test_registry_checksums_and_names_match_the_real_files(schema_path):
    registry = database_registry(validate_config(base(), schema_path), schema_path)
    assert set(SHARED_COPIES) == set(registry)
    for name, rel in SHARED_COPIES.items():
        path = SHARED / "data" / "grn" / rel
        assert hashlib.sha256(path.read_bytes()).hexdigest() == registry[name]["sha256"], name
        assert download_name(name, registry[name]["url"]) == path.name, name


def test_config_entries_extend_the_builtin_registry(schema_path, tmp_path):
    local = tmp_path / "collectri.csv"
    local.write_text("source,target,weight,PMID\n")
    cfg = base() | {
        "databases": {
            "collectri": {"path": str(local)},
            "mine": {"url": "https://example.org/x/edges_mine.csv", "format": "dgp_amio"},
        },
        "graphs": {"datasets": ["pbmc68k"], "databases": ["collectri", "mine", "trrust_human"]},
    }
    cfg, registry = validated(cfg, schema_path)
    check_graph_config(cfg, registry)
    assert registry["collectri"]["format"] == "collectri" and registry["collectri"]["sha256"].startswith("4e2fa22d")
    assert database_file("collectri", registry["collectri"]) == str(local)
    assert database_file("mine", registry["mine"]) == "results/databases/mine/edges_mine.csv"
    assert registry["trrust_human"]["path"] == "vendored:trrust_human"  # built-ins stay when others are given
    assert registry["mine"]["sha256"] is None and registry["mine"]["species"] is None


@pytest.mark.parametrize(
    "graphs, databases, expected",
    [
        ({"datasets": ["nope"]}, {}, "'graphs.datasets': dataset 'nope' is not defined"),
        ({"databases": ["nope"]}, {}, "'graphs.databases': 'nope' is not in the database registry"),
        ({"databases": ["x"]}, {"x": {"url": "https://e.org/x.csv"}}, "'databases.x.format'"),
        ({"databases": ["x"]}, {"x": {"format": "trrust"}}, "'databases.x': give a 'url'"),
        (
            {"databases": ["x"]},
            {"x": {"format": "trrust", "path": "no/such.tsv"}},
            "'databases.x.path': file 'no/such.tsv' not found",
        ),
        ({"databases": ["x"]}, {"x": {"format": "trrust", "path": "vendored:trrust_rat"}}, "names no vendored file"),
        ({"databases": [], "variants": ["no_coexpr"]}, {}, "'no_coexpr' needs at least one database"),
    ],
)
def test_bad_graph_config_is_a_clear_error(schema_path, graphs, databases, expected):
    cfg, registry = validated(base() | {"graphs": graphs, "databases": databases}, schema_path)
    with pytest.raises(InputError, match=re.escape(expected)):
        check_graph_config(cfg, registry)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(graphs={"dleta": 0.5}), "'graphs': unknown key(s) ['dleta']"),
        (lambda c: c.update(graphs={"variants": ["no_grm"]}), "'graphs.variants.0': 'no_grm' is not allowed"),
        (lambda c: c.update(graphs={"layer": "raw"}), "choose one of ['log', 'binned']"),
        (lambda c: c.update(graphs={"delta": 1.0}), "'graphs.delta'"),
        (lambda c: c.update(databases={"x": {"fromat": "trrust"}}), "'databases.x': unknown key(s) ['fromat']"),
        (lambda c: c.update(databases={"x": {"format": "csv"}}), "'databases.x.format': 'csv' is not allowed"),
    ],
)
def test_bad_graph_schema_values(schema_path, mutate, expected):
    cfg = base()
    mutate(cfg)
    with pytest.raises(InputError, match=re.escape(expected)):
        validate_config(cfg, schema_path)


def test_spec_holds_only_what_the_variant_uses(schema_path):
    cfg, registry = validated(base(), schema_path)
    full, no_grn, no_coexpr = (graph_build_spec(cfg["graphs"], registry, v) for v in ("full", "no_grn", "no_coexpr"))
    assert full == {
        "variant": "full",
        "databases": [{"name": "trrust_human", "format": "trrust", "sha256": TRRUST_SHA, "species": "human"}],
        "top_h": 20,
        "delta": 0.4,
        "layer": "log",
    }
    assert "databases" not in no_grn and no_grn["delta"] == 0.4
    assert "delta" not in no_coexpr and "top_h" not in no_coexpr and no_coexpr["databases"] == full["databases"]


# ---------------------------------------------------------------------------------------------
# the download rule's function, against a local server


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def file_server(tmp_path_factory):
    """A static file server on 127.0.0.1 over a temporary folder: yields (folder, base URL)."""
    root = tmp_path_factory.mktemp("served")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def test_download_database_verifies_sha256(file_server, tmp_path):
    root, url = file_server
    body = b"source,target,weight,PMID\nSTAT1,IRF1,1,123\nMYC,CDKN1A,-1,456\n"
    (root / "regulons.csv").write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    dest = tmp_path / "results" / "databases" / "toy" / "regulons.csv"
    assert download_database(f"{url}/regulons.csv", dest, sha256=sha, backoff=0) == sha
    assert dest.read_bytes() == body
    # what the build job then reads: the recorded checksum holds and the reader parses the signs
    table = read_databases([{"name": "toy", "format": "collectri", "sha256": sha}], [dest])[0]
    assert table[["source", "target", "sign"]].values.tolist() == [["STAT1", "IRF1", 1], ["MYC", "CDKN1A", -1]]

    bad = tmp_path / "bad" / "regulons.csv"
    with pytest.raises(InputError, match=f"checksum mismatch.*expected sha256 {'0' * 64}, got {sha}"):
        download_database(f"{url}/regulons.csv", bad, sha256="0" * 64, backoff=0)
    assert not bad.exists() and not bad.with_name("regulons.csv.part").exists()

    with pytest.warns(UserWarning, match=f"no sha256 recorded.*{sha}"):
        assert download_database(f"{url}/regulons.csv", tmp_path / "nosha" / "r.csv", sha256=None, backoff=0) == sha


def test_local_copy_with_another_checksum_is_refused(tmp_path):
    path = tmp_path / "trrust.tsv"
    path.write_text("STAT1\tIRF1\tActivation\t1\n")
    with pytest.raises(
        InputError, match=r"trrust\.tsv: sha256 .* differs from the one recorded for database 'trrust_human'"
    ):
        read_databases([{"name": "trrust_human", "format": "trrust", "sha256": TRRUST_SHA}], [path])


def test_truncated_line_names_file_and_line(tmp_path):
    path = tmp_path / "collectri.csv"
    path.write_text("source,target,weight,PMID\nSTAT1,IRF1,1,123\nMYC,CDKN1A\n")
    with pytest.raises(InputError, match=r"collectri\.csv: line 3: expected 4 fields"):
        read_databases([{"name": "c", "format": "collectri", "sha256": None}], [path])


# ---------------------------------------------------------------------------------------------
# test cells never shape the graph (library, on the shared tiny prepared dataset)


def _gene_gene(graph) -> set[tuple[int, int]]:
    """Gene-gene edges (source, target) in gene indices: no self-loops, no CLS."""
    A = graph.adjacency.tocoo()
    off = int(graph.has_cls)
    keep = (A.row >= off) & (A.col >= off) & (A.row != A.col)
    return set(zip((A.col[keep] - off).tolist(), (A.row[keep] - off).tolist()))


@pytest.mark.parametrize("layer", ["log", "binned"])
def test_test_cells_do_not_change_the_graph(prepared, layer):
    edges = pd.DataFrame({"source": ["G0", "G5"], "target": ["G1", "G30"], "database": "toy"})
    kw = {"variant": "full", "top_h": 3, "delta": 0.2, "layer": layer, "seed": 0}
    before = build_graph_from_prepared(prepared, [edges], **kw)

    changed = prepared.copy()
    test = (changed.obs["split"] == "test").to_numpy()
    X = changed.X.toarray()
    X[test] = np.random.default_rng(1).gamma(1.0, 2.0, (test.sum(), X.shape[1])).astype(np.float32)
    changed.X = X
    after = build_graph_from_prepared(changed, [edges], **kw)
    assert (before.adjacency != after.adjacency).nnz == 0
    assert {(0, 1), (5, 30)} <= _gene_gene(before)

    # not vacuous: the same change counted as training cells does change the graph
    changed.obs["split"] = "train"
    assert (before.adjacency != build_graph_from_prepared(changed, [edges], **kw).adjacency).nnz > 0


def test_no_database_means_coexpression_only_with_a_warning(prepared):
    with pytest.warns(UserWarning, match="co-expression edges only"):
        graph = build_graph_from_prepared(prepared, [], variant="full", top_h=3, delta=0.2)
    assert (
        graph.edge_counts["coexpression"] == graph.edge_counts["gene_gene"] > 0
        and "regulatory" not in graph.edge_counts
    )


# ---------------------------------------------------------------------------------------------
# the workflow in a temporary copy


def copy_workflow(dest: Path) -> Path:
    for item in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    return dest


def snakemake(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    counts, inside = {}, False
    for line in dry_run_output.splitlines():
        if line.startswith("job ") and "count" in line:
            inside = True
        elif inside:
            if line.startswith("total"):
                break
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
    return counts


STATS = "results/report/graph_stats.csv"


def tiny_config(url: str, sha: str, **graphs) -> dict:
    return {
        "seeds": [0],
        "datasets": {
            "synthetic": {
                "source": "synthetic",
                "synthetic": {"n_cells": 300, "n_genes": 60, "n_cell_types": 3, "seed": 0},
                "min_library_size": 0,
            }
        },
        # a downloaded database: TRRUST reversed (target -> TF), in DGP-AMIO layout
        "databases": {"toy": {"url": f"{url}/edges_toy.csv", "sha256": sha, "format": "dgp_amio"}},
        "graphs": {
            "datasets": ["synthetic"],
            "databases": ["trrust_human", "toy"],
            "top_h": 5,
            "delta": 0.3,
            "variants": ["full", "no_coexpr"],
        }
        | graphs,
    }


def trrust_pairs() -> pd.DataFrame:
    return pd.read_csv(
        vendored_grn_path("trrust_human"), sep="\t", header=None, usecols=[0, 1], names=["tf", "target"], dtype=str
    )


@pytest.fixture(scope="module")
def graph_workflow(tmp_path_factory, file_server):
    root, url = file_server
    body = ("source,target\n" + "".join(f"{t},{s}\n" for s, t in trrust_pairs().itertuples(index=False))).encode()
    (root / "edges_toy.csv").write_bytes(body)
    cfg = tiny_config(url, hashlib.sha256(body).hexdigest())
    wd = copy_workflow(tmp_path_factory.mktemp("graphwf"))
    (wd / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(wd, STATS, "--configfile", "config/tiny.yaml")
    return wd, cfg


@pytest.mark.slow
def test_graphs_are_built_from_databases_and_training_cells(graph_workflow):
    from scfmbench.data.contract import read_prepared

    wd, cfg = graph_workflow
    assert (wd / "results" / "databases" / "toy" / "edges_toy.csv").is_file()  # downloaded by the rule
    adata = read_prepared(wd / "results" / "data" / "synthetic" / "seed0" / "prepared.h5ad")
    index = {g: i for i, g in enumerate(adata.var_names)}
    trrust = {
        (index[s], index[t]) for s, t in trrust_pairs().itertuples(index=False) if s in index and t in index and s != t
    }
    regulatory = trrust | {(t, s) for s, t in trrust}  # TRRUST plus the reversed toy copy
    train = (adata.obs["split"] == "train").to_numpy()
    src, dst, _ = coexpression_edges_reference(adata.X[train], top_h=5, delta=0.3)
    coexpr = set(zip(src.tolist(), dst.tolist()))
    assert trrust and coexpr - regulatory  # both parts contribute

    full = load_graph(wd / "results" / "graphs" / "synthetic" / "seed0" / "full.npz")
    only_grn = load_graph(wd / "results" / "graphs" / "synthetic" / "seed0" / "no_coexpr.npz")
    assert list(full.gene_names) == list(adata.var_names)
    assert _gene_gene(only_grn) == regulatory
    assert _gene_gene(full) == regulatory | coexpr
    assert full.edge_counts["trrust_human"] == len(trrust) and full.edge_counts["coexpression"] == len(coexpr)
    n = adata.n_vars
    assert full.adjacency.nnz == len(regulatory | coexpr) + (n + 1) + 2 * n  # + self-loops (CLS too) + CLS both ways

    stats = pd.read_csv(wd / STATS).set_index("variant")
    assert stats.loc["full", "edges"] == full.adjacency.nnz and stats.loc["full", "genes"] == n
    assert stats.loc["full", "coexpression_edges"] == len(coexpr) and stats.loc["no_coexpr", "coexpression_edges"] == 0
    assert stats.loc["full", "edges_trrust_human"] == len(trrust) and stats.loc["full", "edges_toy"] == len(trrust)
    assert stats.loc["full", "mean_in_degree"] == pytest.approx(
        (full.adjacency.nnz - (n + 1)) / n
    )  # gene rows only: minus the CLS row
    assert "| synthetic | full | trrust_human | 1 |" in (wd / "results" / "report" / "graph_stats.md").read_text()


@pytest.mark.slow
def test_unchanged_rerun_rebuilds_nothing(graph_workflow):
    wd, _ = graph_workflow
    dry = snakemake(wd, STATS, "--configfile", "config/tiny.yaml", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.slow
def test_changing_delta_rebuilds_only_the_graphs_that_use_it(graph_workflow):
    wd, cfg = graph_workflow
    changed = copy.deepcopy(cfg)
    changed["graphs"]["delta"] = 0.45
    (wd / "config" / "delta.yaml").write_text(yaml.safe_dump(changed))
    dry = snakemake(wd, STATS, "--configfile", "config/delta.yaml", "-n")
    # the no_coexpr graph does not use delta; data preparation and the download are untouched
    assert job_counts(dry.stdout) == {"build_graph": 1, "graph_stats": 1}, dry.stdout[-3000:]
    assert (
        "seed0/full.npz" in dry.stdout
        and "no_coexpr.npz" not in dry.stdout.split("rule build_graph:", 1)[1].split("\n\n", 1)[0]
    )


@pytest.mark.slow
def test_bad_database_header_names_file_and_line(graph_workflow, tmp_path):
    src, cfg = graph_workflow
    wd = tmp_path / "wf"
    shutil.copytree(src, wd)  # with results and .snakemake: only the graph job runs
    (wd / "bad.csv").write_text("tf,target,weight,PMID\nSTAT1,IRF1,1,123\n")
    bad = copy.deepcopy(cfg)
    bad["databases"]["bad"] = {"path": "bad.csv", "format": "collectri"}
    bad["graphs"].update(databases=["bad"], variants=["full"])
    (wd / "config" / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = snakemake(wd, "results/graphs/synthetic/seed0/full.npz", "--configfile", "config/bad.yaml", ok=False)
    assert proc.returncode != 0
    log = (wd / "results" / "logs" / "graphs" / "synthetic" / "seed0" / "full.log").read_text()
    assert "bad.csv: line 1: unexpected header 'tf,target,weight,PMID'; expected 'source,target,weight,PMID'" in log


@pytest.mark.slow
def test_no_gene_overlap_is_a_clear_error(graph_workflow, tmp_path):
    wd, _ = graph_workflow
    alien = tmp_path / "alien.csv"
    alien.write_text("source,target,weight,PMID\nNOTAGENE1,NOTAGENE2,1,1\n")
    mouse = tmp_path / "other.tsv"
    mouse.write_text("Zfp999\tGm12345\tActivation\t1\n")
    prepared = wd / "results" / "data" / "synthetic" / "seed0" / "prepared.h5ad"
    databases = [
        {"name": "alien", "format": "collectri", "sha256": None},
        {"name": "other", "format": "trrust", "sha256": None},
    ]
    spec = {"variant": "full", "databases": databases, "top_h": 5, "delta": 0.3, "layer": "log"}
    with pytest.raises(
        InputError,
        match=(
            r"prepared\.h5ad: .*none of the dataset's 60 genes .* occurs in the regulatory databases \['alien', "
            r"'other'\].*alien=.*alien\.csv, other=.*other\.tsv"
        ),
    ):
        build_graph_file(prepared, [alien, mouse], tmp_path / "g.npz", spec=spec, seed=0)
    assert not (tmp_path / "g.npz").exists()
    # one database without overlap among others that have some is only logged, not an error
    spec["databases"] = [databases[0], {"name": "trrust_human", "format": "trrust", "sha256": TRRUST_SHA}]
    graph = build_graph_file(
        prepared, [alien, vendored_grn_path("trrust_human")], tmp_path / "g.npz", spec=spec, seed=0
    )
    assert (
        graph.match_counts.set_index("database").loc["alien", "matched"] == 0 and graph.edge_counts["trrust_human"] > 0
    )


def test_graph_stats_tables(prepared, tmp_path):
    from scfmbench.graphs import save_graph
    from scfmbench.graphs.workflow import write_graph_stats

    edges = pd.DataFrame({"source": ["G0", "G5", "NOPE"], "target": ["G1", "G30", "G2"], "database": "toy"})
    paths = []
    for seed, variant in ((0, "no_coexpr"), (1, "no_coexpr"), (0, "no_grn")):
        graph = build_graph_from_prepared(prepared, [edges], variant=variant, top_h=3, delta=0.2, seed=seed)
        paths.append(tmp_path / "results" / "graphs" / "tiny" / f"seed{seed}" / f"{variant}.npz")
        save_graph(graph, paths[-1])
    csv, md = tmp_path / "stats.csv", tmp_path / "stats.md"
    write_graph_stats(paths, csv, md)
    stats = pd.read_csv(csv)
    assert stats[["dataset", "variant", "seed"]].values.tolist() == [
        ["tiny", "no_coexpr", 0],
        ["tiny", "no_coexpr", 1],
        ["tiny", "no_grn", 0],
    ]
    grn = stats.iloc[0]
    # 40 genes: 2 regulatory edges + 41 self-loops + 40 CLS->gene + 40 gene->CLS
    assert (grn["genes"], grn["edges"], grn["regulatory_edges"], grn["coexpression_edges"], grn["edges_toy"]) == (
        40,
        123,
        2,
        0,
        2,
    )
    assert grn["mean_in_degree"] == pytest.approx((123 - 41) / 40) and grn["mean_in_degree_gene_gene"] == pytest.approx(
        2 / 40
    )
    # G0, G1, G5, G30 and G2 (named in the database, though its partner NOPE is not a dataset gene)
    assert grn["genes_matched"] == 5 and grn["match_rate"] == pytest.approx(5 / 40)
    assert np.isnan(stats.iloc[2]["match_rate"]) and np.isnan(stats.iloc[2]["edges_toy"])
    text = md.read_text()
    assert "| tiny | unknown | no_coexpr | 2 | 40 | 123 |" in text  # built without build_graph_file's species check
    assert "| tiny | no_coexpr | toy | 2 | 3 | 2 | 1 | 0.667 |" in text  # 3 input edges, 2 matched
