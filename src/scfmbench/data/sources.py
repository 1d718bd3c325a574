"""Loaders for the papers' datasets, each reading the files exactly as their source distributes them.

Every loader returns a *raw dataset* (the contract in :mod:`scfmbench.data.loaders`):
``layers["counts"]`` (CSR float32 integer counts), ``obs["cell_type"]``, optionally ``obs["split"]``,
and ``uns["provenance"]`` with ``source`` and ``inputs_sha256``.

==================  ==========================================================================
source              files (manifest entries in ``config/manifest.yaml``, or ``datasets.<name>.path``)
==================  ==========================================================================
``scgpt_ms``        scGPT's processed annotation sets (figshare zip, nested per-dataset zips, or a
``scgpt_myeloid``   folder downloaded from scGPT's Google Drive): train/test files and label
``scgpt_pancreas``  columns as distributed (shared REFERENCE.md section 4); ``obs["split"]`` =
                    train/test as distributed.
``gears_adamson``   GEARS' Dataverse zip ``<name>/perturb_processed.h5ad`` (obs ``condition``,
``gears_norman``    ``cell_type``; var ``gene_name``); perturbation columns are kept in obs.
``gears_dixit``     The same layout: GEARS' other screens (``PertData.load`` names ``dixit``,
``gears_replogle_*`` ``replogle_k562_essential``, ``replogle_rpe1_essential``).
``geo_lau2020``     GEO GSE157827 ``GSE157827_RAW.tar``: per-sample 10x triplets
                    ``GSM<id>_<sample>_{barcodes.tsv.gz, features.tsv.gz|genes.tsv.gz, matrix.mtx.gz}``.
                    GEO has no cell-type labels: give them in ``datasets.<name>.cell_labels``.
``geo_smajic2022``  GEO GSE157783 ``GSE157783_IPDCO_hg_midbrain_{UMI,cell,genes}.tar.gz``: one dense
                    genes x cells UMI table (header = barcodes, no gene column; rows in the order of
                    the genes table's ``row``), a cell table (``barcode``, ``cell_ontology``,
                    ``patient``) and a genes table (``gene``: Ensembl IDs).
==================  ==========================================================================

**Counts.** scGPT's and GEARS' processed files hold log-normalized values in ``X``. The loaders look
for integer counts in ``layers["counts"]``, then ``.raw.X``, then ``X``, and use the first that is
integer-valued. If none is, they stop with an error unless ``recover_counts`` is set, in which case
``X`` is taken as ``log1p(c * s_i)`` (``s_i`` a per-cell scale, e.g. ``1e4 / library size``) and
inverted per cell: ``c = m * expm1(x) / min_nonzero(expm1(x))`` with the smallest ``m`` in 1..4 that
makes every value an integer (within 0.02; float32 storage keeps errors far below that, values
rounded to a few decimals do not pass). This assumes the smallest non-zero count among the kept
genes of a cell is ``m`` itself (true unless all of a cell's counts share a common factor); a cell
that no ``m`` makes integer stops the load. With a handful of non-zero values a wrong ``m`` could fit
by chance; real cells have hundreds. The recovered counts cover only the distributed genes
(usually 3000 HVGs), so the prepared ``X`` is normalized over those genes.

**Gene names.** ``var_names`` are gene symbols where the source has them (scGPT ``gene_name`` column
when present, GEARS ``gene_name``, 10x features column 2); GSE157783 ships Ensembl IDs only, kept as
they are. Duplicates are made unique by :func:`unique_names`: the first occurrence keeps the name,
later ones become ``<name>_<gene id>`` (10x) or ``<name>-1``, ``<name>-2``, ... when no distinct ID
exists.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import re
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench._io import sha256_file
from scfmbench.data.contract import check_counts, raw_anndata
from scfmbench.data.manifest import DOWNLOAD_DIR, download_path

__all__ = [
    "SOURCES",
    "load_source",
    "source_inputs",
    "download_inputs",
    "local_inputs",
    "find_counts",
    "recover_counts",
    "recover_counts_detect",
    "LOG_BASES",
    "unique_names",
    "load_scgpt",
    "load_gears",
    "read_10x_samples",
    "load_lau2020",
    "load_smajic2022",
    "Bundle",
    "materialize",
    "check_inputs",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Files inside folders and archives
# --------------------------------------------------------------------------------------------------


def _kind(root: Path) -> str:
    if root.is_dir():
        return "dir"
    if zipfile.is_zipfile(root):
        return "zip"
    if tarfile.is_tarfile(root):
        return "tar"
    return "file"


def _members(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files in a folder or archive (a plain file: its name)."""
    kind = _kind(root)
    if kind == "dir":
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    if kind == "zip":
        with zipfile.ZipFile(root) as z:
            return [n for n in z.namelist() if not n.endswith("/")]
    if kind == "tar":
        with tarfile.open(root) as t:
            return [m.name for m in t.getmembers() if m.isfile()]
    return [root.name]


@contextlib.contextmanager
def _open(root: Path, member: str) -> Iterator[io.BufferedIOBase]:
    """A binary stream of ``member`` in ``root``, decompressed when the member ends in ``.gz``."""
    kind = _kind(root)
    with contextlib.ExitStack() as stack:
        if kind == "dir":
            fh = stack.enter_context(open(root / member, "rb"))
        elif kind == "zip":
            fh = stack.enter_context(stack.enter_context(zipfile.ZipFile(root)).open(member))
        elif kind == "tar":
            fh = stack.enter_context(tarfile.open(root)).extractfile(member)
            if fh is None:
                raise InputError(f"{root}: member {member} is not a regular file")
        else:
            fh = stack.enter_context(open(root, "rb"))
        if member.endswith(".gz"):
            fh = stack.enter_context(gzip.GzipFile(fileobj=fh))
        yield fh


def materialize(root: Path, member: str, tmpdir: Path) -> Path:
    """A real file for ``member`` (HDF5 needs one): the file itself, or a copy extracted into ``tmpdir``."""
    kind = _kind(root)
    if kind == "dir":
        return root / member
    if kind == "file":
        return root
    if kind == "zip":
        with zipfile.ZipFile(root) as z:
            return Path(z.extract(member, tmpdir))
    with tarfile.open(root) as t:
        t.extract(member, tmpdir, filter="data")
    return tmpdir / member


def _matches_alias(path: str, aliases: tuple[str, ...]) -> bool:
    parts = [p.lower() for p in PurePosixPath(path).parts]
    return any(part == a or part.startswith((f"{a}-", f"{a}_", f"{a}.")) for part in parts for a in aliases)


@dataclass
class _Found:
    root: Path  # the folder or archive the member is in (may be a nested archive extracted to tmp)
    member: str
    origin: Path  # the user-facing file or folder it came from (hashed for provenance)


class Bundle:
    """The inputs of one dataset: folders, archives (zip, tar, tar.gz, zips nested in zips) or files."""

    def __init__(self, roots: list[Path], tmpdir: Path, where: str):
        self.roots, self.tmpdir, self.where = roots, tmpdir, where
        self._listing = {root: _members(root) for root in roots}
        self._origin: dict[Path, Path] = {}  # a nested archive extracted to tmpdir -> the input it came from
        self._opened: set[tuple[Path, str]] = set()

    def _hits(self, predicate, *, archives_only: bool = False) -> list[_Found]:
        return [
            _Found(root, m, self._origin.get(root, root))
            for root, ms in self._listing.items()
            if not (archives_only and root.is_dir())
            for m in ms
            if predicate(PurePosixPath(m).name)
        ]

    def find(self, basename: str, *, aliases: tuple[str, ...] = (), required: bool = True) -> _Found | None:
        """The one file named ``basename``; among several, the one whose path names the dataset (``aliases``)."""
        hits = self._hits(lambda name: name == basename)
        if not hits:
            self._open_nested(aliases)
            hits = self._hits(lambda name: name == basename)
        if len(hits) > 1 and aliases:
            named = [h for h in hits if _matches_alias(h.member, aliases) or _matches_alias(h.root.name, aliases)]
            hits = named or hits
        if len(hits) == 1:
            return hits[0]
        if not hits and not required:
            return None
        if not hits:
            listed = [m for root in self.roots for m in self._listing[root]][:12]
            raise InputError(
                f"{self.where}: no file named {basename!r} in {[str(r) for r in self.roots]} (contents include "
                f"{listed}). Point datasets.<name>.path at the folder or archive that holds it."
            )
        raise InputError(
            f"{self.where}: several files named {basename!r}: {[f'{h.root}:{h.member}' for h in hits]}; point "
            "datasets.<name>.path at the one folder or archive to use."
        )

    def _open_nested(self, aliases: tuple[str, ...]) -> None:
        """List the archives inside the inputs (once each): zips nested in a zip or folder whose names
        match the dataset (scGPT's figshare bundle nests one zip per dataset; extracted to tmpdir),
        and tar archives lying in a folder (GEO downloads kept as they are)."""
        for root, ms in list(self._listing.items()):
            for m in ms:
                low = m.lower()
                if (root, m) in self._opened:
                    continue
                if low.endswith(".zip") and (not aliases or _matches_alias(m, aliases)):
                    self._opened.add((root, m))
                    inner = materialize(root, m, self.tmpdir)
                    if zipfile.is_zipfile(inner):
                        self._listing[inner] = _members(inner)
                        self._origin[inner] = self._origin.get(root, root)
                elif root.is_dir() and low.endswith((".tar", ".tar.gz", ".tgz")) and tarfile.is_tarfile(root / m):
                    self._opened.add((root, m))
                    self._listing[root / m] = _members(root / m)

    def glob(self, pattern: re.Pattern) -> list[_Found]:
        """Every file whose name matches ``pattern`` (looking into archives in folders if none is found)."""
        hits = self._hits(pattern.search)
        if not hits:
            self._open_nested(())
            hits = self._hits(pattern.search, archives_only=True)
        return hits

    def exists(self, root: Path, member: str) -> bool:
        return member in self._listing.get(root, ())


class _Hashes:
    """sha256 of every input file actually read: an archive as a whole, a file in a folder by itself."""

    def __init__(self):
        self.files: dict[str, str] = {}

    def add(self, found: _Found) -> None:
        path = found.origin / found.member if found.origin.is_dir() else found.origin
        if path.name not in self.files:
            self.files[path.name] = sha256_file(path)


def source_inputs(source: str, cfg: dict, downloads_dir: str | Path = DOWNLOAD_DIR) -> list[Path]:
    """The files a dataset is read from: ``cfg['path']`` if set, else its manifest entries' downloads."""
    if cfg.get("path"):
        return [Path(cfg["path"])]
    return [download_path(entry, downloads_dir) for entry in SOURCES[source].entries]


def check_inputs(name: str, source: str, roots: list[Path], cfg: dict) -> None:
    """:class:`InputError` naming dataset ``name``'s missing input files and how to get them."""
    missing = [p for p in roots if not p.exists()]
    if not missing:
        return
    if cfg.get("path"):
        raise InputError(
            f"datasets.{name}.path: {missing[0]} does not exist; point it at the folder or archive with the {source} "
            "files (docs/papers.md 'Paper datasets')."
        )
    targets = " ".join(str(p) for p in missing)
    raise InputError(
        f"datasets.{name} (source {source}): {', '.join(map(str, missing))} not downloaded yet. Fetch with "
        f"`snakemake {targets}` (rule download_file, entries in config/manifest.yaml), or set "
        f"datasets.{name}.path to files you already have."
    )


# --------------------------------------------------------------------------------------------------
# Counts and gene names
# --------------------------------------------------------------------------------------------------


def _is_counts(m) -> bool:
    v = m.data if sp.issparse(m) else np.asarray(m).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)) or v.min() < 0:
        return False
    return bool(np.allclose(v, np.round(v), rtol=0, atol=1e-6)) and bool(v.max() > 0)


#: Bases of ``log(1 + scaled counts)`` that :func:`recover_counts` inverts (R objects often store log2).
LOG_BASES = {"e": float(np.e), 2: 2.0, 10: 10.0}


def recover_counts(x, *, where: str = "X", max_multiplier: int = 4, tol: float = 0.02, log_base="e") -> sp.csr_matrix:
    """Invert ``x = log(1 + c * s_i)`` per cell (see the module docstring; natural log, or
    ``log_base`` 2 or 10): integer counts, CSR float32.

    Raises
    ------
    InputError
        ``x`` does not look like log1p data (negative or > 30 in natural-log units), or some cell has
        no multiplier in 1..``max_multiplier`` that makes all its values integers within ``tol``
        (names how many and the first such cell).
    """
    if log_base not in LOG_BASES:
        raise InputError(f"{where}: log_base {log_base!r} is not one of {list(LOG_BASES)}")
    ln_base = np.log(LOG_BASES[log_base])
    x = sp.csr_matrix(x, dtype=np.float64)
    x.eliminate_zeros()
    if x.nnz == 0:
        raise InputError(f"{where}: the matrix is all zeros; there are no counts to recover.")
    if x.data.min() < 0 or x.data.max() * ln_base > 30:
        raise InputError(
            f"{where}: values range {x.data.min():.3g}..{x.data.max():.3g}, which is not log1p-transformed "
            "expression; counts cannot be recovered. Provide raw counts."
        )
    values = np.expm1(x.data * ln_base)
    nnz = np.diff(x.indptr)
    rows = np.flatnonzero(nnz)
    starts = x.indptr[rows]
    r = values / np.repeat(np.minimum.reduceat(values, starts), nnz[rows])
    multiplier = np.zeros(len(rows))
    for m in range(1, max_multiplier + 1):
        worst = np.maximum.reduceat(np.abs(r * m - np.round(r * m)), starts)
        multiplier[(multiplier == 0) & (worst <= tol)] = m
    bad = rows[multiplier == 0]
    if bad.size:
        raise InputError(
            f"{where}: counts cannot be recovered for {bad.size} of {x.shape[0]} cells (first: row {bad[0]}): no "
            f"multiplier 1..{max_multiplier} of {'expm1(X)' if log_base == 'e' else f'{log_base}^X - 1'} / its "
            "per-cell minimum gives integers. The file does not hold "
            f"{'log1p(scaled counts)' if log_base == 'e' else f'log{log_base}(1 + scaled counts)'} at full "
            "precision; provide raw counts instead."
        )
    data = np.round(r * np.repeat(multiplier, nnz[rows]))
    return sp.csr_matrix((data.astype(np.float32), x.indices, x.indptr), shape=x.shape)


def recover_counts_detect(x, *, where: str = "X", log_base=None) -> tuple[sp.csr_matrix, str]:
    """:func:`recover_counts` with ``log_base`` declared, or (None) detected: natural log first, then
    base 2 (``log2(1 + scaled counts)``, common in R objects). Returns (counts, the base used as
    ``'e'``, ``'2'`` or ``'10'``); when neither base inverts, the error says both were tried."""
    if log_base is not None:
        return recover_counts(x, where=where, log_base=log_base), str(log_base)
    try:
        return recover_counts(x, where=where, log_base="e"), "e"
    except InputError as natural:
        try:
            return recover_counts(x, where=where, log_base=2), "2"
        except InputError:
            raise InputError(
                f"{natural} Tried natural log and log2 (log_base detection); declare datasets.<name>.log_base (e, 2 "
                "or 10) if the values use another base."
            ) from None


def find_counts(adata: ad.AnnData, *, where: str, recover: bool = False) -> tuple[sp.csr_matrix, pd.DataFrame, str]:
    """Integer counts from ``layers['counts']``, ``.raw.X`` or ``X`` (first integer-valued one), or recovered.

    Returns
    -------
    (counts as CSR float32, the matching var frame, where they came from)
    """
    candidates = []
    if "counts" in adata.layers:
        candidates.append(("layers['counts']", adata.layers["counts"], adata.var))
    if adata.raw is not None:
        candidates.append((".raw.X", adata.raw.X, adata.raw.var))
    candidates.append(("X", adata.X, adata.var))
    for label, matrix, var in candidates:
        if _is_counts(matrix):
            return sp.csr_matrix(matrix, dtype=np.float32), var, label
    looked = [c[0] for c in candidates]
    if recover:
        return recover_counts(adata.X, where=f"{where} X"), adata.var, "X (counts recovered from log1p)"
    raise InputError(
        f"{where}: no raw integer counts (looked in {looked}; X holds non-integer values, i.e. normalized data). Set "
        "datasets.<name>.recover_counts: true to invert log1p(normalize_total) per cell (docs/papers.md 'Paper "
        "datasets' explains the check), or provide raw counts."
    )


def unique_names(names, ids=None) -> pd.Index:
    """Make gene names unique: the first occurrence keeps its name; a later one becomes
    ``<name>_<id>`` when it has a distinct ID (e.g. its Ensembl ID), else ``<name>-1``, ``<name>-2``, ...
    Names already present in the input are never taken by a renamed duplicate."""
    names = [str(n) for n in names]
    ids = [str(i) for i in ids] if ids is not None else [None] * len(names)
    reserved, used, out = set(names), set(), []
    for name, gid in zip(names, ids):
        new = name
        if name in used:
            new = f"{name}_{gid}" if gid and gid != name else ""
            k = 0
            while not new or new in used or new in reserved:
                k += 1
                new = f"{name}-{k}"
        used.add(new)
        out.append(new)
    return pd.Index(out, dtype=str)


def _raw(
    counts, obs: pd.DataFrame, var_names, *, source: str, hashes: _Hashes, extra: dict | None = None
) -> ad.AnnData:
    check_counts(counts, where=f"{source}: counts")
    adata = raw_anndata(counts, obs, var_names, source=source, inputs_sha256=dict(hashes.files))
    adata.uns["provenance"].update(extra or {})
    return adata


def _read_table(fh, name: str) -> pd.DataFrame:
    sep = "," if re.search(r"\.csv(\.gz)?$", name) else "\t"
    return pd.read_csv(fh, sep=sep, dtype=str, keep_default_na=False, na_values=[""])


def _column(df: pd.DataFrame, column: str, *, where: str, fix: str) -> pd.Series:
    if column not in df.columns:
        raise InputError(f"{where}: column {column!r} not found; columns are {list(df.columns)}. {fix}")
    return df[column]


# --------------------------------------------------------------------------------------------------
# scGPT annotation sets
# --------------------------------------------------------------------------------------------------

SCGPT = {
    "ms": {
        "train": "c_data.h5ad",
        "test": "filtered_ms_adata.h5ad",
        "label": "Factor Value[inferred cell type - authors labels]",
        "aliases": ("ms",),
    },
    "myeloid": {
        "train": "reference_adata.h5ad",
        "test": "query_adata.h5ad",
        "label": "cell_type",
        "aliases": ("mye", "myeloid"),
    },
    "pancreas": {
        "train": "demo_train.h5ad",
        "test": "demo_test.h5ad",
        "label": "Celltype",
        "aliases": ("hpancreas", "pancreas"),
    },
}


def _symbols(var: pd.DataFrame) -> pd.Index:
    if "gene_name" in var.columns:
        return unique_names(var["gene_name"].astype(str), var.index)
    return unique_names(var.index)


def load_scgpt(dataset: str, roots: list[Path], *, recover: bool = False) -> ad.AnnData:
    """One of scGPT's processed annotation sets, train and test as distributed (``obs['split']``).

    Labels: the distributed column (``SCGPT[dataset]['label']``). Genes: the ``gene_name`` column
    when present (ms), else ``var_names``; train and test are joined on the genes they share.
    """
    spec = SCGPT[dataset]
    where = f"scgpt_{dataset}"
    hashes = _Hashes()
    parts, counts_from = [], {}
    with tempfile.TemporaryDirectory(prefix="scfmbench-") as tmp:
        bundle = Bundle(roots, Path(tmp), where)
        for split in ("train", "test"):
            found = bundle.find(spec[split], aliases=spec["aliases"])
            hashes.add(found)
            fwhere = f"{where} {spec[split]}"
            adata = ad.read_h5ad(materialize(found.root, found.member, Path(tmp)))
            labels = _column(
                adata.obs,
                spec["label"],
                where=fwhere,
                fix=(
                    "Is this scGPT's processed file? (The label column of each scGPT set is "
                    "fixed, REFERENCE section 4.)"
                ),
            )
            if labels.isna().any():
                keep = ~labels.isna().to_numpy()
                log.warning("%s: %d cells without a label dropped", fwhere, int((~keep).sum()))
                adata = adata[keep].copy()
                labels = labels[keep]
            counts, var, counts_from[split] = find_counts(adata, where=fwhere, recover=recover)
            obs = pd.DataFrame(
                {"cell_type": labels.astype(str).to_numpy(), "split": split}, index=adata.obs_names.astype(str)
            )
            parts.append((obs, counts, _symbols(var)))
    (obs_tr, c_tr, g_tr), (obs_te, c_te, g_te) = parts
    common = g_tr[g_tr.isin(g_te)]
    if len(common) == 0:
        raise InputError(
            f"{where}: the train and test files share no gene names ({list(g_tr[:3])} vs {list(g_te[:3])})."
        )
    counts = sp.vstack([c_tr[:, g_tr.get_indexer(common)], c_te[:, g_te.get_indexer(common)]], format="csr")
    obs = pd.concat([obs_tr, obs_te])
    if not obs.index.is_unique:
        obs.index = obs["split"].astype(str) + ":" + obs.index.astype(str)
    extra = {"counts_from": counts_from, "genes_train": len(g_tr), "genes_test": len(g_te), "genes_shared": len(common)}
    return _raw(counts, obs, common, source=where, hashes=hashes, extra=extra)


# --------------------------------------------------------------------------------------------------
# GEARS perturbation sets
# --------------------------------------------------------------------------------------------------


def load_gears(
    dataset: str, roots: list[Path], *, label_column: str = "cell_type", recover: bool = False
) -> ad.AnnData:
    """GEARS' ``<dataset>/perturb_processed.h5ad``; ``obs['condition']`` and the other GEARS columns are kept.

    ``label_column`` becomes ``obs['cell_type']`` (GEARS' own ``cell_type``, the cell line, is kept
    as ``obs['gears_cell_type']`` when another column is the label).
    """
    where = f"gears_{dataset}"
    hashes = _Hashes()
    with tempfile.TemporaryDirectory(prefix="scfmbench-") as tmp:
        found = Bundle(roots, Path(tmp), where).find("perturb_processed.h5ad", aliases=(dataset,))
        hashes.add(found)
        adata = ad.read_h5ad(materialize(found.root, found.member, Path(tmp)))
    fwhere = f"{where} perturb_processed.h5ad"
    _column(adata.obs, "condition", where=f"{fwhere} obs", fix="Is this GEARS' perturb_processed.h5ad?")
    labels = _column(
        adata.obs,
        label_column,
        where=f"{fwhere} obs",
        fix="Set datasets.<name>.label_column (GEARS has 'condition' and 'cell_type').",
    )
    counts, var, counts_from = find_counts(adata, where=fwhere, recover=recover)
    symbols = _column(var, "gene_name", where=f"{fwhere} var", fix="Is this GEARS' perturb_processed.h5ad?")
    obs = adata.obs.copy()
    obs.index = obs.index.astype(str)
    if label_column != "cell_type" and "cell_type" in obs:
        obs = obs.rename(columns={"cell_type": "gears_cell_type"})
    obs["cell_type"] = labels.astype(str).to_numpy()
    return _raw(
        counts,
        obs,
        unique_names(symbols.astype(str), var.index),
        source=where,
        hashes=hashes,
        extra={"counts_from": counts_from, "label_column": label_column},
    )


# --------------------------------------------------------------------------------------------------
# GEO: per-sample 10x matrices (GSE157827) and the dense UMI table (GSE157783)
# --------------------------------------------------------------------------------------------------

_MTX = re.compile(r"^(?P<prefix>.*?)_?matrix\.mtx(\.gz)?$")
_GSM = re.compile(r"^(GSM\d+)_")


def _sample_id(prefix: str) -> str:
    """``GSM4775561_AD1`` -> ``AD1`` (GEO's accession prefix dropped); cell ids are ``<sample>_<barcode>``."""
    return _GSM.sub("", prefix)


def _companion(bundle: Bundle, found: _Found, prefix: str, stems: tuple[str, ...], where: str) -> str:
    folder = PurePosixPath(found.member).parent
    tried = []
    for stem in stems:
        for sep in ("_", ""):
            for ext in (".tsv.gz", ".tsv"):
                name = f"{prefix}{sep if prefix else ''}{stem}{ext}"
                member = (folder / name).as_posix() if str(folder) != "." else name
                tried.append(name)
                if bundle.exists(found.root, member):
                    return member
    raise InputError(
        f"{where}: sample {prefix or folder} has {PurePosixPath(found.member).name} but none of "
        f"{sorted(set(tried))}; each sample needs barcodes, features (or genes) and matrix files."
    )


def read_10x_samples(roots: list[Path], *, where: str = "10x") -> tuple[ad.AnnData, _Hashes]:
    """Read every 10x MTX triplet in ``roots`` (folders or tar archives) and stack the samples.

    Returns
    -------
    (AnnData with integer counts in ``X``, ``obs`` columns ``sample``, ``gsm``, ``barcode``
    (obs_names ``<sample>_<barcode>``), ``var`` column ``gene_id`` and unique symbols as var_names;
    the input hashes)
    """
    hashes = _Hashes()
    with tempfile.TemporaryDirectory(prefix="scfmbench-") as tmp:
        bundle = Bundle(roots, Path(tmp), where)
        matrices = bundle.glob(_MTX)
        if not matrices:
            raise InputError(f"{where}: no 10x matrix files (*matrix.mtx.gz) in {[str(r) for r in roots]}.")
        samples = []
        for found in sorted(matrices, key=lambda f: f.member):
            name = PurePosixPath(found.member).name
            prefix = _MTX.match(name).group("prefix")
            sample = _sample_id(prefix) if prefix else PurePosixPath(found.member).parent.name or found.root.stem
            gsm = _GSM.match(prefix).group(1) if _GSM.match(prefix) else ""
            barcodes_m = _companion(bundle, found, prefix, ("barcodes",), where)
            features_m = _companion(bundle, found, prefix, ("features", "genes"), where)
            with _open(found.root, barcodes_m) as fh:
                barcodes = pd.read_csv(fh, sep="\t", header=None, dtype=str)[0].to_numpy()
            with _open(found.root, features_m) as fh:
                features = pd.read_csv(fh, sep="\t", header=None, dtype=str)
            with _open(found.root, found.member) as fh:
                matrix = sp.csr_matrix(scipy.io.mmread(fh).T, dtype=np.float32)
            if matrix.shape != (len(barcodes), len(features)):
                raise InputError(
                    f"{where}: sample {sample}: matrix is {matrix.shape[1]} features x {matrix.shape[0]} barcodes "
                    f"but the files list {len(features)} features and {len(barcodes)} barcodes."
                )
            if features.shape[1] >= 3:
                gex = (features[2] == "Gene Expression").to_numpy()
                if gex.any() and not gex.all():
                    features, matrix = features[gex], matrix[:, np.flatnonzero(gex)]
            ids = features[0].astype(str).to_numpy()
            symbols = features[1 if features.shape[1] >= 2 else 0].astype(str).to_numpy()
            check_counts(matrix, where=f"{where}: sample {sample} ({name})")
            obs = pd.DataFrame(
                {"sample": sample, "gsm": gsm, "barcode": barcodes}, index=[f"{sample}_{b}" for b in barcodes]
            )
            samples.append((sample, obs, matrix, ids, symbols))
            hashes.add(found)
    names = [s[0] for s in samples]
    if len(set(names)) != len(names):
        raise InputError(f"{where}: sample ids {names} are not unique; keep one copy of each sample's files.")
    ids0, symbols0 = samples[0][3], samples[0][4]
    shared = pd.Index(ids0)
    for _, _, _, ids, _ in samples[1:]:
        shared = shared[shared.isin(ids)]
    if len(shared) < len(ids0):
        log.warning("%s: samples list different features; keeping the %d shared of %d", where, len(shared), len(ids0))
    if len(shared) == 0:
        raise InputError(f"{where}: the samples share no feature IDs.")
    blocks = [m[:, pd.Index(ids).get_indexer(shared)] for _, _, m, ids, _ in samples]
    obs = pd.concat([s[1] for s in samples])
    keep_symbols = symbols0[pd.Index(ids0).get_indexer(shared)]
    var = pd.DataFrame({"gene_id": shared.to_numpy()}, index=unique_names(keep_symbols, shared))
    return ad.AnnData(X=sp.vstack(blocks, format="csr"), obs=obs, var=var), hashes


def _labels_table(
    cell_labels: dict, default: pd.DataFrame | None, default_name: str, where: str
) -> tuple[pd.DataFrame, str]:
    path = cell_labels.get("file")
    if path:
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"{where}: cell_labels.file {path} does not exist (a CSV/TSV mapping each "
                "cell's barcode to its cell type)."
            )
        with open(path, "rb") as fh:
            return _read_table(gzip.GzipFile(fileobj=fh) if path.suffix == ".gz" else fh, path.name), str(path)
    if default is None:
        raise InputError(
            f"{where}: GEO has no cell-type labels for this dataset; set datasets.<name>.cell_labels.file to a "
            "CSV/TSV mapping barcode -> cell type (e.g. the authors' annotation) and its barcode_column / "
            "label_column / sample_column."
        )
    return default, default_name


def _attach_labels(
    adata: ad.AnnData,
    table: pd.DataFrame,
    *,
    barcode_column: str,
    label_column: str,
    sample_column: str | None,
    where: str,
) -> tuple[ad.AnnData, dict]:
    """Label cells from ``table``; cells the table does not list (or lists without a label) are dropped."""
    key = "datasets.<name>.cell_labels"
    barcodes = _column(table, barcode_column, where=where, fix=f"Set {key}.barcode_column.").astype(str)
    labels = _column(table, label_column, where=where, fix=f"Set {key}.label_column.")
    if sample_column:
        samples = (
            _column(table, sample_column, where=where, fix=f"Set {key}.sample_column.").astype(str).map(_sample_id)
        )
        keys = samples + "_" + barcodes
    else:
        keys = barcodes
    ids = pd.Index(adata.obs_names)
    if not ids.isin(keys).any() and not sample_column and "barcode" in adata.obs and adata.obs["barcode"].is_unique:
        ids = pd.Index(adata.obs["barcode"].astype(str))  # one sample, or barcodes unique across samples
    if keys.duplicated().any():
        raise InputError(
            f"{where}: cells listed twice in the label table, e.g. {keys[keys.duplicated()].iloc[0]!r}"
            + ("" if sample_column else f"; set {key}.sample_column if barcodes repeat across samples")
        )
    mapping = pd.Series(labels.to_numpy(), index=keys.to_numpy())
    matched = mapping.reindex(ids)
    keep = matched.notna().to_numpy()
    if not keep.any():
        raise InputError(
            f"{where}: no cell matches the label table: cells look like {list(ids[:2])}, table keys like "
            f"{list(keys[:2])}. Cell ids are '<sample>_<barcode>' (sample without the GSM prefix); set "
            f"{key}.sample_column or write full cell ids."
        )
    out = adata[keep].copy()
    out.obs["cell_type"] = matched.to_numpy()[keep].astype(str)
    stats = {
        "cells_labelled": int(keep.sum()),
        "cells_unlabelled_dropped": int((~keep).sum()),
        "label_rows_unmatched": int((~keys.isin(ids)).sum()),
    }
    if stats["cells_unlabelled_dropped"]:
        log.info("%s: %d cells without a label dropped", where, stats["cells_unlabelled_dropped"])
    return out, stats


def load_lau2020(roots: list[Path], *, cell_labels: dict) -> ad.AnnData:
    """Lau et al. 2020 (GEO GSE157827): 21 per-sample 10x matrices, labels from ``cell_labels``."""
    where = "geo_lau2020"
    adata, hashes = read_10x_samples(roots, where=where)
    table, name = _labels_table(cell_labels, None, "", where)
    adata, stats = _attach_labels(
        adata,
        table,
        barcode_column=cell_labels.get("barcode_column") or "barcode",
        label_column=cell_labels.get("label_column") or "cell_type",
        sample_column=cell_labels.get("sample_column"),
        where=f"{where} labels {name}",
    )
    hashes.files[Path(name).name] = sha256_file(name)
    obs = adata.obs[["cell_type", "sample", "gsm", "barcode"]]
    return _raw(adata.X, obs, adata.var_names, source=where, hashes=hashes, extra=stats)


SMAJIC_FILES = {
    "umi": "IPDCO_hg_midbrain_UMI.tsv",
    "cell": "IPDCO_hg_midbrain_cell.tsv",
    "genes": "IPDCO_hg_midbrain_genes.tsv",
}


def _find_any(bundle: Bundle, basename: str) -> _Found:
    """``basename`` or ``basename.gz``; the error names ``basename``."""
    return (
        bundle.find(basename, required=False) or bundle.find(basename + ".gz", required=False) or bundle.find(basename)
    )


def _read_dense_umi(fh, n_genes: int, where: str, chunk: int = 200) -> tuple[sp.csr_matrix, list[str]]:
    """Stream a genes x cells TSV (header = barcodes; an optional leading gene column) into cells x genes CSR.

    GSE157783's table is 26,737 x 41,435 (2.2 GB of text): rows are parsed as float32 in chunks of
    ``chunk`` genes and kept sparse, so memory stays near the size of the non-zeros.
    """
    text = io.TextIOWrapper(fh, encoding="utf-8")
    header = text.readline().rstrip("\r\n").split("\t")
    first = text.readline().rstrip("\r\n").split("\t")
    if first == [""]:
        raise InputError(f"{where}: the UMI table has a header but no rows.")
    if len(first) not in (len(header), len(header) + 1):
        raise InputError(
            f"{where}: UMI table rows have {len(first)} fields but the header lists {len(header)} barcodes."
        )
    offset = len(first) - len(header)  # 1 when rows start with a gene name
    blocks = [sp.csr_matrix(np.asarray(first[offset:], dtype=np.float32)[None, :])]
    try:
        reader = pd.read_csv(
            text, sep="\t", header=None, chunksize=chunk, usecols=range(offset, offset + len(header)), dtype=np.float32
        )
        for part in reader:
            blocks.append(sp.csr_matrix(part.to_numpy()))
    except pd.errors.EmptyDataError:
        pass  # a one-gene table: the first row was all there was
    n_rows = sum(b.shape[0] for b in blocks)
    if n_rows != n_genes:
        raise InputError(f"{where}: the UMI table has {n_rows} gene rows but the genes table lists {n_genes} genes.")
    return sp.vstack(blocks, format="csr").T.tocsr(), header


def load_smajic2022(roots: list[Path], *, cell_labels: dict) -> ad.AnnData:
    """Smajić et al. 2022 (GEO GSE157783): dense UMI table, GEO's cell table (labels ``cell_ontology``,
    samples ``patient``) unless ``cell_labels.file`` is given; Ensembl IDs as var_names."""
    where = "geo_smajic2022"
    hashes = _Hashes()
    with tempfile.TemporaryDirectory(prefix="scfmbench-") as tmp:
        bundle = Bundle(roots, Path(tmp), where)
        found = {key: _find_any(bundle, name) for key, name in SMAJIC_FILES.items()}
        for f in found.values():
            hashes.add(f)
        with _open(found["genes"].root, found["genes"].member) as fh:
            genes = _read_table(fh, found["genes"].member)
        with _open(found["cell"].root, found["cell"].member) as fh:
            cells = _read_table(fh, found["cell"].member)
        gene_col = next((c for c in ("gene", "genes") if c in genes.columns), None)
        if gene_col is None:
            raise InputError(
                f"{where}: {found['genes'].member} has no 'gene' column; columns are {list(genes.columns)}."
            )
        if "row" in genes.columns:
            genes = genes.assign(row=genes["row"].astype(int)).sort_values("row", kind="stable")
        with _open(found["umi"].root, found["umi"].member) as fh:
            counts, barcodes = _read_dense_umi(fh, len(genes), f"{where} {found['umi'].member}")
    check_counts(counts, where=f"{where}: UMI table")
    if len(set(barcodes)) != len(barcodes):
        raise InputError(f"{where}: the UMI table's barcodes are not unique.")
    adata = ad.AnnData(
        X=counts,
        obs=pd.DataFrame({"barcode": barcodes}, index=barcodes),
        var=pd.DataFrame(index=unique_names(genes[gene_col].astype(str))),
    )
    table, name = _labels_table(cell_labels, cells, found["cell"].member, where)
    barcode_column = cell_labels.get("barcode_column") or "barcode"
    # Cell ids are the UMI header's barcodes; the sample column only fills obs['sample'].
    sample_column = cell_labels.get("sample_column") or (None if cell_labels.get("file") else "patient")
    adata, stats = _attach_labels(
        adata,
        table,
        barcode_column=barcode_column,
        label_column=cell_labels.get("label_column") or "cell_ontology",
        sample_column=None,
        where=f"{where} labels {name}",
    )
    if sample_column:
        samples = _column(
            table, sample_column, where=f"{where} labels {name}", fix="Set datasets.<name>.cell_labels.sample_column."
        )
        adata.obs["sample"] = (
            pd.Series(samples.to_numpy(), index=table[barcode_column].astype(str).to_numpy())
            .reindex(adata.obs_names)
            .astype(str)
            .to_numpy()
        )
    if cell_labels.get("file"):
        hashes.files[Path(name).name] = sha256_file(name)
    return _raw(adata.X, adata.obs, adata.var_names, source=where, hashes=hashes, extra=stats)


# --------------------------------------------------------------------------------------------------
# Registry and dispatch
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    entries: tuple[str, ...]  # manifest entries downloaded when datasets.<name>.path is null
    load: Callable[[list[Path], dict], ad.AnnData]


def _scgpt(dataset: str) -> Callable:
    return lambda roots, cfg: load_scgpt(dataset, roots, recover=bool(cfg.get("recover_counts", False)))


def _gears(dataset: str) -> Callable:
    return lambda roots, cfg: load_gears(
        dataset,
        roots,
        label_column=cfg.get("label_column") or "cell_type",
        recover=bool(cfg.get("recover_counts", False)),
    )


SOURCES: dict[str, Source] = {
    "scgpt_ms": Source(("scgpt_processed_datasets.zip",), _scgpt("ms")),
    "scgpt_myeloid": Source(("scgpt_processed_datasets.zip",), _scgpt("myeloid")),
    "scgpt_pancreas": Source(("scgpt_processed_datasets.zip",), _scgpt("pancreas")),
    "gears_adamson": Source(("gears_adamson.zip",), _gears("adamson")),
    "gears_norman": Source(("gears_norman.zip",), _gears("norman")),
    # GEARS' other distributed screens (PertData.load names; Replogle's are GEARS' filtered subsets)
    "gears_dixit": Source(("gears_dixit.zip",), _gears("dixit")),
    "gears_replogle_k562": Source(("gears_replogle_k562_essential.zip",), _gears("replogle_k562_essential")),
    "gears_replogle_rpe1": Source(("gears_replogle_rpe1_essential.zip",), _gears("replogle_rpe1_essential")),
    "geo_lau2020": Source(
        ("GSE157827_RAW.tar",), lambda roots, cfg: load_lau2020(roots, cell_labels=cfg.get("cell_labels") or {})
    ),
    "geo_smajic2022": Source(
        (
            "GSE157783_IPDCO_hg_midbrain_UMI.tar.gz",
            "GSE157783_IPDCO_hg_midbrain_cell.tar.gz",
            "GSE157783_IPDCO_hg_midbrain_genes.tar.gz",
        ),
        lambda roots, cfg: load_smajic2022(roots, cell_labels=cfg.get("cell_labels") or {}),
    ),
}


def load_source(name: str, cfg: dict, *, downloads_dir: str | Path = DOWNLOAD_DIR) -> ad.AnnData:
    """Load dataset ``name`` (config entry ``cfg``) of one of the :data:`SOURCES`."""
    source = cfg["source"]
    roots = source_inputs(source, cfg, downloads_dir)
    check_inputs(name, source, roots, cfg)
    return SOURCES[source].load(roots, cfg)


def local_inputs(cfg: dict) -> list[str]:
    """The user's own files a dataset entry reads (the ``load_dataset`` rule's inputs, so that editing
    one in place reruns the load and everything downstream): ``path`` of source ``h5ad`` or of a
    paper source (a folder: every regular file under it, hidden ones excluded). A path that does not
    exist gives none: the loader's error names the key."""
    if not cfg.get("path") or (cfg.get("source") not in SOURCES and cfg.get("source") != "h5ad"):
        return []
    path = Path(cfg["path"])
    if path.is_file():
        return [str(path)]
    if path.is_dir():
        return sorted(
            str(p)
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    return []


def download_inputs(cfg: dict, downloads_dir: str | Path = DOWNLOAD_DIR) -> list[str]:
    """The manifest downloads a dataset entry reads (the ``load_dataset`` rule's input): none for the
    built-in sources or when ``path`` points at local files."""
    if cfg.get("source") not in SOURCES or cfg.get("path"):
        return []
    return [str(p) for p in source_inputs(cfg["source"], cfg, downloads_dir)]
