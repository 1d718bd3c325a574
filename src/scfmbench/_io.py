"""Atomic writes, checksums and the escape of a Markdown table cell.

Every result file is written to a temporary path beside its destination and renamed into place, so
an interrupted job never leaves a half-written file that looks like a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` only on success.

    ``suffix`` defaults to ``path``'s own suffix, so writers that infer the format from the file
    name (``AnnData.write_h5ad``, matplotlib) see the right extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix if suffix is not None else "".join(path.suffixes[-1:]), dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs) -> None:
    """Write ``df`` as CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(obj, path: str | os.PathLike) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def write_h5ad(adata, path: str | os.PathLike) -> None:
    """Write an AnnData atomically (gzip-free for speed; files are small intermediate artifacts)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def markdown_cell(text) -> str:
    """``text`` as a cell of a Markdown pipe table: its ``|`` escaped."""
    return str(text).replace("|", r"\|")
