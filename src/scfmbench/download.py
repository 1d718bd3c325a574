"""Checksummed, resumable downloads of input data (datasets, regulatory databases).

``urllib`` from the standard library is enough for GET with a Range header, status codes and
streaming, and it keeps the workflow's data rules free of an extra dependency (``requests``) that
every rule environment would then have to carry.

Guarantees: ``dest`` appears only complete and verified (streamed to ``dest.part``, renamed at the
end); a checksum mismatch leaves neither file; a transfer cut short is resumed from the ``.part``
file with a Range request when the server honours it, else restarted from zero.
"""

from __future__ import annotations

import http.client
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from scfmbench import InputError
from scfmbench._io import sha256_file

__all__ = ["download", "DownloadError"]

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_CHUNK = 1 << 20


class DownloadError(InputError):
    """A download failed for good (after retries, or at once for 4xx)."""


class _Retryable(Exception):
    """A failure worth another attempt (connection error, 5xx, truncated transfer)."""


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return  # tests and local mirrors
    if parts.scheme == "http":
        raise InputError(
            f"refusing plain-http download {url!r}: use https (http is only allowed for loopback hosts "
            f"{sorted(_LOOPBACK)}, i.e. local test servers and mirrors)."
        )
    raise InputError(f"unsupported URL scheme {parts.scheme!r} in {url!r}; use https.")


def _attempt(url: str, part: Path, timeout: float) -> None:
    """One GET, appending to ``part`` from its current size if the server honours Range."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "scfmbench-download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Our partial file is not a prefix the server can continue (changed or complete):
            # start again rather than guess.
            part.unlink()
            raise _Retryable(f"HTTP 416 for a resume at byte {offset}; restarting") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from None
        hint = " (not found: check the URL)" if exc.code == 404 else ""
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}{hint}.") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from None

    with response:
        status = response.status
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink()
                raise _Retryable(
                    f"server resumed with Content-Range {content_range!r}, expected start {offset}; restarting"
                )
            mode = "ab"
        else:
            if offset:
                log.info("%s: server ignored the Range request; restarting from zero", url)
            mode, offset = "wb", 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None and length.isdigit() else None
        received = 0
        try:
            with open(part, mode) as fh:
                while True:
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    fh.write(block)
                    received += len(block)
        except (TimeoutError, http.client.IncompleteRead, ConnectionError, OSError) as exc:
            raise _Retryable(f"transfer cut after {offset + received} bytes ({type(exc).__name__})") from None
        if expected is not None and received < expected:
            raise _Retryable(f"transfer cut: {received} of {expected} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60,
    strict: bool = False,
) -> str:
    """Download ``url`` to ``dest`` and return the file's sha256 (hex).

    Parameters
    ----------
    url
        ``https://...``; plain ``http`` only for loopback hosts (local test servers).
    dest
        Final path; the transfer goes to ``dest.part`` and is renamed into place when complete
        and verified. An existing ``dest`` whose hash equals ``sha256`` is kept as is.
    sha256
        Expected hex digest. ``None``: with ``strict`` a refusal (InputError), otherwise the
        computed hash is returned for the caller to record.
    retries
        Further attempts after the first on connection errors, HTTP 5xx/429 and truncated
        transfers, waiting ``backoff * 2**k`` seconds before retry ``k + 1``. HTTP 404 and other
        4xx fail at once.
    timeout
        Socket timeout in seconds per attempt.

    Raises
    ------
    InputError
        Refused URL, ``strict`` without ``sha256``, checksum mismatch (names the URL, expected and
        actual hash; the partial file is deleted), or :class:`DownloadError` when the transfer
        fails for good.
    """
    _check_url(url)
    if retries < 0 or backoff < 0 or timeout <= 0:
        raise InputError(
            f"download: retries and backoff must be >= 0 and timeout > 0 (got {retries}, {backoff}, {timeout})."
        )
    if sha256 is None and strict:
        raise InputError(
            f"download of {url}: no sha256 given and strict=True; record the expected checksum in the config."
        )
    expected = sha256.lower() if sha256 else None
    dest = Path(dest)
    if expected and dest.is_file() and sha256_file(dest) == expected:
        return expected
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    for attempt in range(retries + 1):
        try:
            _attempt(url, part, timeout)
            break
        except _Retryable as exc:
            if attempt == retries:
                raise DownloadError(
                    f"download of {url} failed after {retries + 1} attempts: {exc}. The partial file "
                    f"{part} is kept for a later resume."
                ) from None
            wait = backoff * 2**attempt
            log.warning("download of %s: %s; retry %d/%d in %.1f s", url, exc, attempt + 1, retries, wait)
            time.sleep(wait)

    actual = sha256_file(part)
    if expected is not None and actual != expected:
        part.unlink()
        raise InputError(
            f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}. The download was deleted; check "
            "the URL and the recorded checksum."
        )
    os.replace(part, dest)
    return actual
