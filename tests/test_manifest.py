"""The download manifest, the lock file (hash recorded on first download, strict mode) and the
download_file rule, against the local HTTP server in tests/httpserver.py."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import zipfile

import pytest
import yaml
from conftest import REPO
from httpserver import serve
from test_workflow import copy_workflow

from scfmbench import InputError
from scfmbench.data.manifest import ENTRY_NAME, fetch, load_manifest, read_lock
from scfmbench.data.sources import SOURCES
from scfmbench.download import DownloadError


def _zip_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("inner/file.txt", text)
    return buf.getvalue()


ZIP = _zip_bytes("hello " * 1000)
ZIP_SHA = hashlib.sha256(ZIP).hexdigest()


def entry(url: str, **over) -> dict:
    base = {"url": url, "sha256": None, "size": None, "format": "zip", "licence": "CC0", "citation": "Test 2024"}
    base.update(over)
    return base


def write_manifest(path, entries: dict):
    path.write_text(yaml.safe_dump({"entries": entries}))
    return path


@pytest.fixture
def server():
    with serve() as (srv, base):
        srv.files["/data.zip"] = ZIP
        yield srv, base


def test_repository_manifest_is_valid_and_covers_every_source():
    entries = load_manifest(REPO / "config" / "manifest.yaml")
    for source in SOURCES.values():
        assert set(source.entries) <= set(entries)
    for name, e in entries.items():
        assert e.url.startswith("https://") and e.citation and e.licence
        if "/geo/series/" in e.url:
            # GEO's supplementary-file layout: series/GSE157nnn/<accession>/suppl/<accession>_<file>
            m = re.fullmatch(r"https://ftp\.ncbi\.nlm\.nih\.gov/geo/series/(GSE\d+)nnn/(GSE\d+)/suppl/(\2_.+)", e.url)
            assert m and m.group(2)[: len(m.group(1))] == m.group(1) and m.group(3) == name, e.url


@pytest.mark.parametrize(
    "over, message",
    [
        ({"checksum": "x"}, "unknown key(s) ['checksum']"),
        ({"citation": None}, "'citation' must be a non-empty string"),
        ({"sha256": "abc"}, "'sha256': 'abc' is not 64 hex digits"),
        ({"url": "http://example.org/f.zip"}, "is not an https URL"),
        ({"format": "rar"}, "'format': 'rar' is not one of"),
        ({"size": -3}, "'size': -3 must be a positive number"),
    ],
)
def test_bad_entry_is_named_with_its_key(tmp_path, over, message):
    path = write_manifest(
        tmp_path / "m.yaml",
        {"good.zip": entry("https://example.org/a.zip"), "bad.zip": {**entry("https://example.org/b.zip"), **over}},
    )
    with pytest.raises(InputError) as err:
        load_manifest(path)
    assert "entry 'bad.zip'" in str(err.value) and message in str(err.value)


def test_missing_key_and_bad_name_are_errors(tmp_path):
    raw = entry("https://example.org/a.zip")
    del raw["licence"]
    with pytest.raises(InputError, match=r"lacks key\(s\) \['licence'\]"):
        load_manifest(write_manifest(tmp_path / "m.yaml", {"a.zip": raw}))
    with pytest.raises(InputError, match="entry name 'a/b.zip'"):
        load_manifest(write_manifest(tmp_path / "m.yaml", {"a/b.zip": entry("https://example.org/a.zip")}))
    assert not ENTRY_NAME.match("../x") and ENTRY_NAME.match("GSE157827_RAW.tar")


def test_first_download_records_hash_and_later_ones_must_match(server, tmp_path):
    srv, base = server
    manifest = write_manifest(tmp_path / "m.yaml", {"data.zip": entry(f"{base}/data.zip")})
    lock, dest = tmp_path / "lock.yaml", tmp_path / "dl" / "data.zip"
    assert fetch("data.zip", dest, manifest=manifest, lock=lock, backoff=0) == ZIP_SHA
    assert dest.read_bytes() == ZIP
    recorded = read_lock(lock)["data.zip"]
    assert recorded["sha256"] == ZIP_SHA and recorded["size"] == len(ZIP) and recorded["url"] == f"{base}/data.zip"
    # The server's file changes: a fresh download is refused and leaves nothing behind.
    srv.files["/data.zip"] = _zip_bytes("changed")
    dest.unlink()
    with pytest.raises(InputError) as err:
        fetch("data.zip", dest, manifest=manifest, lock=lock, backoff=0)
    assert ZIP_SHA in str(err.value) and "recorded in" in str(err.value)
    assert list(dest.parent.iterdir()) == []
    assert read_lock(lock)["data.zip"]["sha256"] == ZIP_SHA


def test_strict_refuses_unknown_hash_but_accepts_a_recorded_one(server, tmp_path):
    srv, base = server
    manifest = write_manifest(tmp_path / "m.yaml", {"data.zip": entry(f"{base}/data.zip")})
    lock, dest = tmp_path / "lock.yaml", tmp_path / "data.zip"
    with pytest.raises(InputError, match="downloads.strict is true"):
        fetch("data.zip", dest, manifest=manifest, lock=lock, strict=True)
    assert srv.requests == [] and not dest.exists()
    fetch("data.zip", dest, manifest=manifest, lock=lock)
    dest.unlink()
    assert fetch("data.zip", dest, manifest=manifest, lock=lock, strict=True) == ZIP_SHA
    # A hash in the manifest itself is enough for strict mode, no lock needed.
    manifest2 = write_manifest(tmp_path / "m2.yaml", {"data.zip": entry(f"{base}/data.zip", sha256=ZIP_SHA)})
    assert (
        fetch("data.zip", tmp_path / "other.zip", manifest=manifest2, lock=tmp_path / "none.yaml", strict=True)
        == ZIP_SHA
    )
    assert not (tmp_path / "none.yaml").exists()  # nothing to record: the manifest had the hash


def test_checksum_mismatch_leaves_no_file_and_no_record(server, tmp_path):
    _, base = server
    wrong = "a" * 64
    manifest = write_manifest(tmp_path / "m.yaml", {"data.zip": entry(f"{base}/data.zip", sha256=wrong)})
    with pytest.raises(InputError) as err:
        fetch("data.zip", tmp_path / "dl" / "data.zip", manifest=manifest, lock=tmp_path / "lock.yaml", backoff=0)
    assert wrong in str(err.value) and ZIP_SHA in str(err.value) and f"{base}/data.zip" in str(err.value)
    assert list((tmp_path / "dl").iterdir()) == [] and not (tmp_path / "lock.yaml").exists()


def test_404_fails_without_file_or_record(server, tmp_path):
    srv, base = server
    manifest = write_manifest(tmp_path / "m.yaml", {"gone.zip": entry(f"{base}/missing")})
    with pytest.raises(DownloadError, match="404"):
        fetch("gone.zip", tmp_path / "dl" / "gone.zip", manifest=manifest, lock=tmp_path / "lock.yaml", backoff=0)
    assert len(srv.requests) == 1 and list((tmp_path / "dl").iterdir()) == [] and not (tmp_path / "lock.yaml").exists()


def test_html_page_instead_of_archive_is_never_recorded(server, tmp_path):
    srv, base = server
    srv.files["/drive"] = b"<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title></html>"
    manifest = write_manifest(tmp_path / "m.yaml", {"drive.zip": entry(f"{base}/drive")})
    with pytest.raises(InputError, match="not a zip file.*HTML page"):
        fetch("drive.zip", tmp_path / "drive.zip", manifest=manifest, lock=tmp_path / "lock.yaml")
    assert not (tmp_path / "drive.zip").exists() and not (tmp_path / "lock.yaml").exists()


def test_wrong_size_is_refused(server, tmp_path):
    _, base = server
    manifest = write_manifest(tmp_path / "m.yaml", {"data.zip": entry(f"{base}/data.zip", size=len(ZIP) + 1)})
    with pytest.raises(InputError, match=f"downloaded {len(ZIP)} bytes but .* says size {len(ZIP) + 1}"):
        fetch("data.zip", tmp_path / "data.zip", manifest=manifest, lock=tmp_path / "lock.yaml")
    assert not (tmp_path / "data.zip").exists()


def test_unknown_entry_lists_the_entries(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", {"a.zip": entry("https://example.org/a.zip")})
    with pytest.raises(InputError, match=r"'b.zip' is not an entry .* entries are \['a.zip'\]"):
        fetch("b.zip", tmp_path / "b.zip", manifest=manifest, lock=tmp_path / "lock.yaml")


@pytest.mark.slow
def test_download_rule_fetches_a_manifest_entry(server, tmp_path):
    srv, base = server
    wd = copy_workflow(tmp_path)
    write_manifest(
        wd / "config" / "test_manifest.yaml",
        {"data.zip": entry(f"{base}/data.zip"), "gone.zip": entry(f"{base}/missing")},
    )
    (wd / "config" / "dl.yaml").write_text(
        yaml.safe_dump({"downloads": {"manifest": "config/test_manifest.yaml", "lock": "resources/test.lock.yaml"}})
    )
    # One run, two jobs: the good entry is fetched and recorded, the 404 fails alone (--keep-going).
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--keep-going", "--configfile", "config/dl.yaml", "--"]
    proc = subprocess.run(
        [*cmd, "resources/downloads/data.zip", "resources/downloads/gone.zip"], cwd=wd, capture_output=True, text=True
    )
    assert proc.returncode != 0, "the 404 entry must fail the run"
    assert (wd / "resources" / "downloads" / "data.zip").read_bytes() == ZIP, proc.stderr[-2000:]
    assert read_lock(wd / "resources" / "test.lock.yaml")["data.zip"]["sha256"] == ZIP_SHA
    assert not (wd / "resources" / "downloads" / "gone.zip").exists()
    assert "404" in (wd / "results" / "logs" / "downloads" / "gone.zip.log").read_text()
