"""The download manifest (``config/manifest.yaml``): every file the workflow fetches, with its URL,
sha256, size, licence and citation, plus the lock file that records hashes on first download.

Trust on first use, made explicit: an entry whose ``sha256`` is ``null`` is downloaded once, its
hash is recorded in the lock file (``downloads.lock``, default ``resources/manifest.lock.yaml``),
and every later download of that entry must match the recorded hash. With ``downloads.strict:
true`` an entry is fetched only when its hash is known in advance (manifest or lock), so a run
never trusts bytes it has not seen before. Commit the lock file (or copy its hashes into the
manifest) to make that the default for everyone.

A manifest entry::

    GSE157827_RAW.tar:                 # the file name under resources/downloads/
      url: https://ftp.ncbi.nlm.nih.gov/geo/series/GSE157nnn/GSE157827/suppl/GSE157827_RAW.tar
      sha256: null                     # 64 hex digits, or null (recorded on first download)
      size: null                       # bytes, or null
      format: tar                      # zip | tar | tar.gz | gz | h5ad | text: checked after download
      licence: ...
      citation: ...
      description: ...                 # optional
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import logging
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import yaml

from scfmbench import InputError
from scfmbench._io import atomic_path
from scfmbench.download import download

__all__ = [
    "ManifestEntry",
    "load_manifest",
    "read_lock",
    "record_lock",
    "fetch",
    "fetch_entry",
    "download_path",
    "DOWNLOAD_DIR",
    "ENTRY_NAME",
]

log = logging.getLogger(__name__)

DOWNLOAD_DIR = Path("resources/downloads")
ENTRY_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
FORMATS = ("zip", "tar", "tar.gz", "gz", "h5ad", "text")
_REQUIRED = ("url", "sha256", "size", "format", "licence", "citation")
_OPTIONAL = ("description",)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# First bytes of each format. Checked after every download so that an HTML error or
# confirmation page (Google Drive, expired figshare link) is never recorded as the file's hash.
_MAGIC = {
    "zip": lambda head: head[:4] == b"PK\x03\x04",
    "gz": lambda head: head[:2] == b"\x1f\x8b",
    "tar.gz": lambda head: head[:2] == b"\x1f\x8b",
    "tar": lambda head: head[257:262] == b"ustar",
    "h5ad": lambda head: head[:8] == b"\x89HDF\r\n\x1a\n",
    "text": lambda head: b"\x00" not in head and not head.lstrip().lower().startswith((b"<!doctype html", b"<html")),
}


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    url: str
    sha256: str | None
    size: int | None
    format: str
    licence: str
    citation: str
    description: str = ""


def _check_entry(name: str, raw, where: str) -> ManifestEntry:
    if not ENTRY_NAME.match(name):
        raise InputError(
            f"{where}: entry name {name!r} must use only letters, digits, '_', '.' and '-' (it becomes a file name)."
        )
    if not isinstance(raw, dict):
        raise InputError(f"{where}: entry {name!r} must be a mapping with keys {list(_REQUIRED)}.")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise InputError(
            f"{where}: entry {name!r} has unknown key(s) {unknown}; allowed keys are {list(_REQUIRED + _OPTIONAL)}."
        )
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise InputError(
            f"{where}: entry {name!r} lacks key(s) {missing} (write 'null' for an unknown sha256 or size)."
        )
    url = raw["url"]
    parts = urllib.parse.urlsplit(str(url))
    if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)):
        raise InputError(
            f"{where}: entry {name!r} key 'url': {url!r} is not an https URL (plain http is allowed "
            "only for loopback test servers)."
        )
    sha = raw["sha256"]
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha)):
        raise InputError(f"{where}: entry {name!r} key 'sha256': {sha!r} is not 64 hex digits or null.")
    size = raw["size"]
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise InputError(f"{where}: entry {name!r} key 'size': {size!r} must be a positive number of bytes or null.")
    if raw["format"] not in FORMATS:
        raise InputError(f"{where}: entry {name!r} key 'format': {raw['format']!r} is not one of {list(FORMATS)}.")
    for key in ("licence", "citation"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise InputError(
                f"{where}: entry {name!r} key {key!r} must be a non-empty string (say 'unknown' and why if it is)."
            )
    return ManifestEntry(
        name=name,
        url=str(url),
        sha256=sha.lower() if sha else None,
        size=size,
        format=raw["format"],
        licence=raw["licence"],
        citation=raw["citation"],
        description=str(raw.get("description") or ""),
    )


def load_manifest(path: str | os.PathLike) -> dict[str, ManifestEntry]:
    """Read and validate a manifest; return its entries by name.

    Raises
    ------
    InputError
        Missing file, no top-level ``entries`` mapping, or a bad entry (the message names the
        entry and the key).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"download manifest {path} does not exist (config key 'downloads.manifest').")
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
        raise InputError(
            f"{path}: a manifest is a mapping with one key 'entries' (entry name -> url, sha256, "
            "size, format, licence, citation)."
        )
    extra = sorted(set(doc) - {"entries"})
    if extra:
        raise InputError(f"{path}: unknown top-level key(s) {extra}; the only key is 'entries'.")
    return {name: _check_entry(str(name), raw, str(path)) for name, raw in doc["entries"].items()}


def download_path(name: str, downloads_dir: str | os.PathLike = DOWNLOAD_DIR) -> Path:
    """Where the download rule puts entry ``name``."""
    if not ENTRY_NAME.match(name):
        raise InputError(f"manifest entry name {name!r} must use only letters, digits, '_', '.' and '-'.")
    return Path(downloads_dir) / name


def read_lock(path: str | os.PathLike) -> dict[str, dict]:
    """Recorded downloads: entry name -> {url, sha256, size, recorded}. A missing file is empty."""
    path = Path(path)
    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("entries", {}), dict):
        raise InputError(
            f"{path}: a manifest lock file is a mapping with one key 'entries'; delete it to record hashes afresh."
        )
    return dict(doc.get("entries", {}))


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock beside ``path``: parallel download jobs update the lock file in turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".flock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record_lock(path: str | os.PathLike, entry: ManifestEntry, sha256: str, size: int) -> None:
    """Record (or refresh) ``entry``'s hash and size in the lock file, atomically and under a lock."""
    path = Path(path)
    with _locked(path):
        entries = read_lock(path)
        entries[entry.name] = {
            "url": entry.url,
            "sha256": sha256,
            "size": int(size),
            "recorded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        header = (
            "# Written by scfmbench.data.manifest on first download: the sha256 of every manifest entry\n# fetched "
            "without a hash in config/manifest.yaml. Commit it (or copy the hashes into the manifest).\n"
        )
        with atomic_path(path) as tmp:
            tmp.write_text(header + yaml.safe_dump({"entries": dict(sorted(entries.items()))}, sort_keys=True))


def expected_sha256(entry: ManifestEntry, lock: dict[str, dict]) -> str | None:
    """The manifest's hash if given, else the one recorded on first download (if any)."""
    if entry.sha256:
        recorded = lock.get(entry.name, {}).get("sha256")
        if recorded and recorded != entry.sha256:
            log.warning(
                "%s: the manifest's sha256 %s differs from the lock file's %s; the manifest wins",
                entry.name,
                entry.sha256,
                recorded,
            )
        return entry.sha256
    recorded = lock.get(entry.name)
    if recorded and recorded.get("url") == entry.url:
        return str(recorded["sha256"])
    return None


def _check_format(path: Path, entry: ManifestEntry) -> None:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not _MAGIC[entry.format](head):
        snippet = head[:80].decode("latin-1", "replace").replace("\n", " ")
        hint = ""
        if b"html" in head.lower():
            hint = (
                " The server sent an HTML page: the URL is not a direct download (a Google Drive confirmation page, "
                "a login page or an expired link). See docs/papers.md 'Paper datasets'."
            )
        raise InputError(
            f"{entry.url}: the downloaded file is not a {entry.format} file (starts with "
            f"{snippet!r}); it was deleted.{hint}"
        )


def fetch_entry(
    entry: ManifestEntry,
    dest: str | os.PathLike,
    *,
    lock_path: str | os.PathLike,
    strict: bool = False,
    retries: int = 3,
    backoff: float = 2.0,
    timeout: float = 120,
) -> str:
    """Download one manifest entry to ``dest``, verified; record its hash on first download.

    The expected hash is the manifest's ``sha256``, else the one in the lock file. Without either,
    ``strict`` refuses (InputError naming the entry); otherwise the file is downloaded, checked for
    its ``format`` (first bytes) and ``size``, and its hash is recorded in the lock file.

    Returns
    -------
    The file's sha256 (hex).

    Raises
    ------
    InputError
        Strict mode with an unknown hash; a checksum mismatch (from :func:`scfmbench.download.download`,
        no file left behind); a wrong size or format (the file is deleted); HTTP errors
        (:class:`scfmbench.download.DownloadError`).
    """
    dest = Path(dest)
    lock = read_lock(lock_path)
    expected = expected_sha256(entry, lock)
    if expected is None and strict:
        raise InputError(
            f"manifest entry {entry.name!r} ({entry.url}) has no sha256 in the manifest or in {lock_path}, and "
            "downloads.strict is true: refusing to trust an unknown file. Run once with downloads.strict: false to "
            "record its hash, review it, then commit the lock file."
        )
    try:
        sha = download(entry.url, dest, sha256=expected, retries=retries, backoff=backoff, timeout=timeout)
    except InputError as exc:
        if expected is not None and not entry.sha256 and "checksum mismatch" in str(exc):
            raise InputError(
                f"{exc} (The expected hash was recorded in {lock_path} on the first download of "
                f"{entry.name!r}: the file on the server changed since. Check it, then delete that entry from "
                "the lock file to record the new hash.)"
            ) from None
        raise
    size = dest.stat().st_size
    try:
        if entry.size is not None and size != entry.size:
            raise InputError(
                f"{entry.url}: downloaded {size} bytes but manifest entry {entry.name!r} says size {entry.size}; the "
                "file was deleted. Check the URL, or correct 'size'."
            )
        _check_format(dest, entry)
    except InputError:
        dest.unlink()
        raise
    recorded = lock.get(entry.name, {})
    if entry.sha256 is None and (recorded.get("sha256") != sha or recorded.get("url") != entry.url):
        record_lock(lock_path, entry, sha, size)  # first download (or a new URL): trust on first use, recorded
    return sha


def fetch(
    name: str,
    dest: str | os.PathLike,
    *,
    manifest: str | os.PathLike,
    lock: str | os.PathLike,
    strict: bool = False,
    **kwargs,
) -> str:
    """Fetch manifest entry ``name`` to ``dest`` (what the ``download_file`` rule runs); return its sha256.

    Raises
    ------
    InputError
        ``name`` is not in the manifest (the message lists the entries), or anything
        :func:`fetch_entry` raises.
    """
    entries = load_manifest(manifest)
    if name not in entries:
        raise InputError(
            f"resources/downloads/{name}: {name!r} is not an entry of {manifest}; entries are {sorted(entries)}."
        )
    sha = fetch_entry(entries[name], dest, lock_path=lock, strict=strict, **kwargs)
    log.info("%s: %s (%d bytes, sha256 %s)", name, entries[name].url, Path(dest).stat().st_size, sha)
    return sha
