"""The gene-graph stage of the workflow (``workflow/rules/graphs.smk``): config checks, database
files, one graph per prepared dataset and seed, and the statistics table of the report.

Rules and their functions:

* ``download_database`` -> :func:`download_database`: a registry entry's ``url`` to
  ``results/databases/{database}/{file}`` (HTTPS, sha256 verified). The upstream file name is kept
  because the DGP-AMIO reader tells JASPAR, MOTIFMAP and STRING apart by ``edges_<name>.csv``.
  An entry with a local ``path`` is never downloaded: :func:`database_file` returns that path.
* ``build_graph`` -> :func:`build_graph_file`: the prepared dataset's *training* cells and the
  configured databases to ``results/graphs/{dataset}/seed{seed}/{variant}.npz``
  (:func:`scfmbench.graphs.build.save_graph` layout). One graph per seed because each seed redraws
  the validation split, so the training cells differ.
* ``graph_stats`` -> :func:`write_graph_stats`: every graph to
  ``results/report/graph_stats.{csv,md}``.

The registry (config key ``databases``) has built-in entries, the ``default`` of that key in
``workflow/schemas/config.schema.yaml``. Entries in a user's config extend them field by field:
:func:`database_registry` lays every non-null field of a configured entry over the built-in entry
of the same name, so ``collectri: {path: /data/collectri.csv}`` keeps the built-in format, URL and
checksum.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from scfmbench import InputError
from scfmbench._io import sha256_file, write_csv, write_text
from scfmbench.graphs.build import GeneGraph, build_gene_graph, graph_stats, load_graph, save_graph
from scfmbench.graphs.coexpression import binned_layer
from scfmbench.graphs.readers import READERS, read_grn

__all__ = [
    "VARIANTS",
    "DATABASE_FIELDS",
    "database_registry",
    "check_graph_config",
    "database_file",
    "download_database",
    "graph_build_spec",
    "read_databases",
    "build_graph_from_prepared",
    "build_graph_file",
    "graph_stats_tables",
    "write_graph_stats",
]

log = logging.getLogger(__name__)

# Paper Table II ablations: the full graph, without the regulatory part, without co-expression.
VARIANTS = ("full", "no_grn", "no_coexpr")
DATABASE_FIELDS = ("url", "sha256", "format", "species", "path", "license", "citation")
VENDORED_PREFIX = "vendored:"
# scGPT's expression bins (REFERENCE.md section 3): 0 stays 0, non-zeros in 50 per-cell quantile bins.
N_BINS = 51
DOWNLOAD_DIR = "results/databases"


# ---------------------------------------------------------------------------------------------
# config


def database_registry(config: dict, schema_path: str | Path) -> dict[str, dict]:
    """The database registry: the schema's built-in entries with the config's entries laid over them.

    A configured field that is ``None`` (not given) keeps the built-in value; a name without a
    built-in entry is a new database. Every entry in the result has all :data:`DATABASE_FIELDS`.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    builtin = schema["properties"]["databases"]["default"]
    registry = {}
    for name in [*builtin, *(n for n in config.get("databases", {}) if n not in builtin)]:
        entry = {field: None for field in DATABASE_FIELDS}
        entry.update(builtin.get(name, {}))
        entry.update({k: v for k, v in config.get("databases", {}).get(name, {}).items() if v is not None})
        registry[name] = entry
    return registry


def _resolve_path(name: str, path: str) -> Path:
    if path.startswith(VENDORED_PREFIX):
        from scfmbench.data.synthetic import VENDORED_GRNS, vendored_grn_path

        vendored = path[len(VENDORED_PREFIX) :]
        if vendored not in VENDORED_GRNS:
            raise InputError(
                f"config key 'databases.{name}.path': {path!r} names no vendored file; vendored are "
                f"{[VENDORED_PREFIX + v for v in sorted(VENDORED_GRNS)]}."
            )
        return vendored_grn_path(vendored)
    return Path(path)


def check_graph_config(config: dict, registry: dict[str, dict]) -> None:
    """Cross-key checks of ``graphs`` and the databases it uses (the schema checks each key alone).

    Every ``graphs.datasets`` entry is a configured dataset; every ``graphs.databases`` entry is in
    the registry with a ``format`` and either an existing local ``path`` or a ``url``; the variant
    ``no_coexpr`` has at least one database (else its graph would have no gene-gene edge).
    """
    graphs = config["graphs"]
    for name in graphs["datasets"]:
        if name not in config["datasets"]:
            raise InputError(
                f"config key 'graphs.datasets': dataset {name!r} is not defined under 'datasets' (defined: "
                f"{sorted(config['datasets'])})"
            )
    if not graphs["datasets"]:
        return
    for name in graphs["databases"]:
        if name not in registry:
            raise InputError(
                f"config key 'graphs.databases': {name!r} is not in the database registry (known: "
                f"{sorted(registry)}); add an entry under 'databases'."
            )
        entry = registry[name]
        if entry["format"] not in READERS:
            raise InputError(
                f"config key 'databases.{name}.format': {entry['format']!r}; give one of {sorted(READERS)}."
            )
        if entry["path"]:
            path = _resolve_path(name, entry["path"])
            if not path.is_file():
                raise InputError(
                    f"config key 'databases.{name}.path': file {str(path)!r} not found (relative paths "
                    "start at the working directory)."
                )
        elif not entry["url"]:
            raise InputError(
                f"config key 'databases.{name}': give a 'url' to download the file from, or a local 'path'."
            )
    if "no_coexpr" in graphs["variants"] and not graphs["databases"]:
        raise InputError(
            "config key 'graphs.variants': 'no_coexpr' needs at least one database under 'graphs.databases' (its "
            "graph would have no gene-gene edge)."
        )


def download_name(name: str, url: str) -> str:
    """File name of a download: the URL's last path segment (``edges_JASPAR.csv``), else ``<name>.txt``."""
    base = PurePosixPath(urlsplit(url).path).name
    return base if re.fullmatch(r"[A-Za-z0-9._+-]+", base or "") else f"{name}.txt"


def database_file(name: str, entry: dict) -> str:
    """Where the workflow finds database ``name``: its local ``path`` (vendored files resolved), else
    the download rule's output ``results/databases/{name}/{file}``."""
    if entry["path"]:
        return str(_resolve_path(name, entry["path"]))
    return f"{DOWNLOAD_DIR}/{name}/{download_name(name, entry['url'])}"


def graph_build_spec(graphs: dict, registry: dict[str, dict], variant: str) -> dict:
    """The parameters of one ``build_graph`` job, holding only what its variant uses.

    ``no_coexpr`` graphs carry no co-expression parameters and ``no_grn`` graphs no databases, so
    changing ``delta`` does not rebuild a ``no_coexpr`` graph (Snakemake reruns a job when its
    params change) and changing the databases does not rebuild a ``no_grn`` graph.
    """
    if variant not in VARIANTS:
        raise InputError(f"graph variant {variant!r}; allowed: {list(VARIANTS)}")
    spec: dict = {"variant": variant}
    if variant != "no_grn":
        spec["databases"] = [
            {
                "name": n,
                "format": registry[n]["format"],
                "sha256": registry[n]["sha256"],
                "species": registry[n].get("species"),
            }
            for n in graphs["databases"]
        ]
    if variant != "no_coexpr":
        spec.update(top_h=graphs["top_h"], delta=graphs["delta"], layer=graphs["layer"])
    if graphs.get("multigraph"):
        spec["multigraph"] = True
    return spec


# ---------------------------------------------------------------------------------------------
# jobs


def download_database(url: str, dest: str | Path, *, sha256: str | None, retries: int = 3, backoff: float = 2.0) -> str:
    """Download a registry entry's file to ``dest`` (atomic, sha256 verified); return its sha256.

    Without a recorded ``sha256`` the file is kept and a warning gives the hash to record in the
    config (``databases.<name>.sha256``), so later runs verify it.
    """
    from scfmbench.download import download

    actual = download(url, dest, sha256=sha256, retries=retries, backoff=backoff)
    if sha256 is None:
        warnings.warn(
            f"{url}: no sha256 recorded for this database; downloaded file has sha256 {actual}. Record it in the "
            "config to verify later downloads.",
            stacklevel=2,
        )
    log.info("%s -> %s (sha256 %s)", url, dest, actual)
    return actual


def read_databases(databases: list[dict], paths: list[str | Path]) -> list[pd.DataFrame]:
    """Read each database file (``databases[i]`` = ``{name, format, sha256}``, file ``paths[i]``).

    A recorded sha256 is checked first (a local copy that is not the registered file is an error
    that says how to accept it); then the reader checks the format and names file and line on bad
    input. What each reader dropped and repaired goes to the log.
    """
    if len(databases) != len(paths):
        raise InputError(f"read_databases: {len(databases)} database entries but {len(paths)} files.")
    tables = []
    for db, path in zip(databases, paths):
        actual = sha256_file(path)
        if db.get("sha256") and actual != db["sha256"].lower():
            raise InputError(
                f"{path}: sha256 {actual} differs from the one recorded for database {db['name']!r} "
                f"({db['sha256']}). Point 'databases.{db['name']}.path' to the registered file, or record this "
                f"file's sha256 under 'databases.{db['name']}.sha256'."
            )
        table = read_grn(path, db["format"], database=db["name"])
        report = table.attrs.get("read_report", {})
        log.info(
            "%s (%s, sha256 %s): %d rows -> %d edges; dropped %d empty, %d non-symbol; "
            "repaired %d; merged %d duplicates",
            db["name"],
            path,
            actual,
            report.get("rows", 0),
            len(table),
            report.get("empty", 0),
            report.get("non_symbol", 0),
            report.get("repaired", 0),
            report.get("duplicates", 0),
        )
        tables.append(table)
    return tables


def build_graph_from_prepared(
    adata,
    tables: list[pd.DataFrame],
    *,
    variant: str = "full",
    top_h: int = 20,
    delta: float = 0.4,
    layer: str = "log",
    seed: int = 0,
    multigraph: bool = False,
) -> GeneGraph:
    """The Seq2Graph graph of a prepared dataset (:mod:`scfmbench.data.contract`) from its
    ``obs["split"] == "train"`` cells only: validation and test cells never shape the graph.

    ``layer``: ``"log"`` correlates ``X`` (log1p of normalize_total 1e4); ``"binned"`` correlates
    scGPT's per-cell bins of it (:func:`~scfmbench.graphs.coexpression.binned_layer`, 51 bins, ties on
    a bin edge spread with a generator seeded by ``seed``), as the official code does.
    A full graph with no database is built from co-expression alone, with a warning.
    """
    if variant not in VARIANTS:
        raise InputError(f"graph variant {variant!r}; allowed: {list(VARIANTS)}")
    if layer not in ("log", "binned"):
        raise InputError(f"graph layer {layer!r}; allowed: ['log', 'binned']")
    use_grn, use_coexpr = variant != "no_grn", variant != "no_coexpr"
    if use_grn and not tables:
        if not use_coexpr:
            raise InputError("graph variant 'no_coexpr' needs at least one regulatory database.")
        warnings.warn(
            "no regulatory database configured (graphs.databases is empty): the graph has co-expression edges only.",
            stacklevel=2,
        )
        use_grn = False
    X = None
    if use_coexpr:
        train = (adata.obs["split"] == "train").to_numpy()
        # CSR with sorted indices whatever the storage: binned_layer draws its tie-breaking numbers
        # in the order of the stored non-zeros, so the bins must not depend on that order.
        X = sp.csr_matrix(adata.X[train], dtype=np.float32)
        X.sort_indices()
        if layer == "binned":
            X = binned_layer(X, N_BINS, rng=np.random.default_rng(seed))
    return build_gene_graph(
        adata.var_names,
        X,
        tables if use_grn else [],
        top_h=top_h,
        delta=delta,
        use_grn=use_grn,
        use_coexpr=use_coexpr,
        multigraph=multigraph,
    )


def check_species(adata, databases: list[dict], *, where: str) -> str:
    """The dataset's species (``uns["provenance"]["species"]``, or told by its symbols); an
    :class:`InputError` when a database of another species is configured (its symbols would match
    case-insensitively across species, e.g. mouse ``Sox17`` onto human ``SOX17``)."""
    from scfmbench.data.species import UNKNOWN_SPECIES, detect_species

    prov = adata.uns.get("provenance", {})
    species = str(prov.get("species") or detect_species(adata.var_names))
    name = prov.get("dataset", "<name>")
    how = (
        f"declared in datasets.{name}.species"
        if prov.get("species_from") == "config"
        else "detected from its gene symbols"
    )
    for db in databases:
        if species != UNKNOWN_SPECIES and db.get("species") and db["species"] != species:
            raise InputError(
                f"{where}: dataset {name!r} is {species} ({how}, e.g. {list(map(str, adata.var_names[:3]))}), but "
                f"database {db['name']!r} in graphs.databases is {db['species']}: its symbols would match "
                "case-insensitively onto the wrong species. Use databases of the dataset's species (e.g. "
                f"trrust_{species} where there is one), map the genes to {db['species']} orthologs first, or, if the "
                f"detection is wrong, set datasets.{name}.species."
            )
    return species


def build_graph_file(
    prepared: str | Path, database_paths: list[str | Path], out: str | Path, *, spec: dict, seed: int
) -> GeneGraph:
    """``build_graph`` job: read the prepared dataset and the databases, build, save to ``out``.

    ``spec`` is :func:`graph_build_spec`'s dict. Errors name the prepared file and the databases.
    """
    from scfmbench.data.contract import read_prepared

    adata = read_prepared(prepared)
    databases = spec.get("databases", [])
    species = check_species(adata, databases, where=str(prepared))
    tables = read_databases(databases, list(database_paths)) if databases else []
    try:
        graph = build_graph_from_prepared(
            adata,
            tables,
            variant=spec["variant"],
            seed=seed,
            **{k: spec[k] for k in ("top_h", "delta", "layer", "multigraph") if k in spec},
        )
    except InputError as exc:
        files = ", ".join(f"{db['name']}={p}" for db, p in zip(databases, database_paths)) or "none"
        raise InputError(f"{prepared}: {exc} (databases: {files})") from None
    graph.params["species"] = species
    for row in graph.match_counts.itertuples():
        level = logging.WARNING if row.matched == 0 else logging.INFO
        log.log(
            level,
            "%s: %d of %d edges matched the dataset's genes (%d unmatched); %d of its %d genes found (%d as "
            "written, %d case-folded or repaired)",
            row.database,
            row.matched,
            row.edges,
            row.unmatched,
            row.genes_matched,
            row.genes,
            row.genes_exact,
            row.genes_folded,
        )
    log.info("graph %s: %s", out, graph_stats(graph))
    save_graph(graph, out)
    return graph


# ---------------------------------------------------------------------------------------------
# statistics


def _graph_key(path: str | Path) -> dict:
    """``results/graphs/{dataset}/seed{seed}/{variant}.npz`` -> dataset, seed, variant."""
    p = Path(path)
    m = re.fullmatch(r"seed(\d+)", p.parent.name)
    if not m or p.suffix != ".npz":
        raise InputError(
            f"{path}: not a graph path of the form results/graphs/{{dataset}}/seed{{seed}}/{{variant}}.npz"
        )
    return {"dataset": p.parent.parent.name, "seed": int(m.group(1)), "variant": p.stem}


def graph_stats_tables(paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Statistics of every graph file: a summary row per graph and a row per graph and database.

    Summary columns: ``dataset, seed, variant``, then :func:`scfmbench.graphs.build.graph_stats`'s
    numbers (``species`` (the dataset's, checked against the databases'), ``genes, nodes, edges, mean_in_degree,
    mean_in_degree_gene_gene, regulatory_edges, coexpression_edges, overlap_edges, genes_matched, match_rate``) and
    ``edges_<database>``, the distinct gene-gene edges each database contributes. Per-database
    columns: ``dataset, seed, variant, database``, input ``edges``, ``matched``/``unmatched`` (both endpoints found or
    not), ``match_rate`` (matched / edges), ``genes``/``genes_matched`` (distinct names in the file and how many are
    dataset genes), ``genes_exact``/``genes_folded`` (of those, matched as written or only case-folded / repaired) and
    ``graph_edges`` (= ``edges_<database>``). Graphs built without databases (``no_grn``) have no match numbers (NaN).
    """
    rows, per_db = [], []
    for path in paths:
        key = _graph_key(path)
        graph = load_graph(path)
        stats = graph_stats(graph)
        by_db = stats.pop("edges_per_database")
        stats.pop("has_cls")
        if not graph.params.get("use_grn", True):  # no database was read: matching is undefined, not 0
            stats["genes_matched"] = stats["match_rate"] = np.nan
        rows.append(
            {
                **key,
                "species": graph.params.get("species", "unknown"),
                **stats,
                **{f"edges_{db}": n for db, n in by_db.items()},
            }
        )
        for rec in graph.match_counts.to_dict("records"):
            per_db.append({**key, **rec, "graph_edges": by_db.get(rec["database"], 0)})
    summary = pd.DataFrame(rows)
    if not summary.empty:
        summary = summary.sort_values(["dataset", "variant", "seed"], kind="stable").reset_index(drop=True)
    columns = [
        "dataset",
        "seed",
        "variant",
        "database",
        "edges",
        "matched",
        "unmatched",
        "match_rate",
        "genes",
        "genes_matched",
        "genes_exact",
        "genes_folded",
        "graph_edges",
    ]
    databases = pd.DataFrame(per_db, columns=columns)
    return summary, databases


def _cell(values: pd.Series, decimals: int) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    mean = values.mean()
    text = f"{mean:.0f}" if decimals == 0 and float(mean).is_integer() else f"{mean:.{max(decimals, 1)}f}"
    if values.nunique() > 1:
        text += f" ± {values.std(ddof=1):.{max(decimals, 1)}f}"
    return text


def _markdown(frame: pd.DataFrame, keys: list[str], columns: dict[str, tuple[str, int]]) -> str:
    header = [*keys, "seeds", *(label for label, _ in columns.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for group, sub in frame.groupby(keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        cells = [str(g) for g in group] + [str(sub["seed"].nunique())]
        cells += [_cell(sub[col], dec) if col in sub else "–" for col, (_, dec) in columns.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_graph_stats(paths, csv_path: str | Path, md_path: str | Path) -> None:
    """``graph_stats`` job: the summary table as CSV (one row per graph) and both tables as Markdown
    (mean over seeds, ``± sd`` where seeds differ)."""
    summary, databases = graph_stats_tables(paths)
    write_csv(summary, csv_path)
    edge_cols = {c: (c.removeprefix("edges_"), 0) for c in summary.columns if c.startswith("edges_")}
    md = ["# Gene graphs\n", "One graph per dataset, seed (training cells) and variant; mean over seeds.\n"]
    md.append(
        _markdown(
            summary,
            ["dataset", "species", "variant"],
            {
                "genes": ("genes", 0),
                "edges": ("edges", 0),
                "mean_in_degree": ("mean in-degree", 1),
                "mean_in_degree_gene_gene": ("gene-gene in-degree", 1),
                "regulatory_edges": ("regulatory", 0),
                "coexpression_edges": ("co-expression", 0),
                "overlap_edges": ("both", 0),
                **edge_cols,
                "genes_matched": ("genes in databases", 0),
                "match_rate": ("gene match rate", 3),
            },
        )
    )
    if not databases.empty:
        md.append("\n## Regulatory databases\n")
        md.append(
            _markdown(
                databases,
                ["dataset", "variant", "database"],
                {
                    "edges": ("input edges", 0),
                    "matched": ("matched", 0),
                    "unmatched": ("unmatched", 0),
                    "match_rate": ("edge match rate", 3),
                    "genes_matched": ("names matched", 0),
                    "genes_exact": ("as written", 0),
                    "genes_folded": ("case-folded", 0),
                    "graph_edges": ("edges in graph", 0),
                },
            )
        )
    write_text("\n".join(md), md_path)
