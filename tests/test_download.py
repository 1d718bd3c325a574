"""download(): against a local http.server on 127.0.0.1 that can fail on purpose."""

from __future__ import annotations

import pytest
from httpserver import PAYLOAD, SHA, serve

from scfmbench import InputError
from scfmbench.download import DownloadError, download


@pytest.fixture
def server():
    with serve() as (srv, base):
        yield srv, base


def test_success_returns_hash_and_leaves_no_part(server, tmp_path):
    srv, base = server
    dest = tmp_path / "sub" / "file.bin"
    assert download(f"{base}/ok", dest, sha256=SHA, backoff=0) == SHA
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "sub" / "file.bin.part").exists()
    # already there and verified: no second request
    n = len(srv.requests)
    assert download(f"{base}/ok", dest, sha256=SHA, backoff=0) == SHA
    assert len(srv.requests) == n


def test_no_checksum_returns_hash_unless_strict(server, tmp_path):
    _, base = server
    assert download(f"{base}/ok", tmp_path / "a.bin", backoff=0) == SHA
    with pytest.raises(InputError, match="strict"):
        download(f"{base}/ok", tmp_path / "b.bin", strict=True)
    assert not (tmp_path / "b.bin").exists()


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    _, base = server
    dest = tmp_path / "file.bin"
    wrong = "0" * 64
    with pytest.raises(InputError) as exc:
        download(f"{base}/ok", dest, sha256=wrong, backoff=0)
    msg = str(exc.value)
    assert f"{base}/ok" in msg and wrong in msg and SHA in msg
    assert list(tmp_path.iterdir()) == []


def test_404_fails_at_once(server, tmp_path):
    srv, base = server
    with pytest.raises(DownloadError, match="404"):
        download(f"{base}/missing", tmp_path / "x.bin", retries=3, backoff=0)
    assert len(srv.requests) == 1  # no retries on 404
    assert list(tmp_path.iterdir()) == []


def test_cut_connection_is_resumed_with_range(server, tmp_path):
    srv, base = server
    dest = tmp_path / "file.bin"
    assert download(f"{base}/cut", dest, sha256=SHA, retries=2, backoff=0) == SHA
    assert dest.read_bytes() == PAYLOAD
    assert srv.requests == [("/cut", None), ("/cut", f"bytes={len(PAYLOAD) // 2}-")]


def test_partial_file_resumed_or_restarted(server, tmp_path):
    srv, base = server
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:1000])
    assert download(f"{base}/ok", dest, sha256=SHA, backoff=0) == SHA
    assert srv.requests[-1] == ("/ok", "bytes=1000-")
    dest2 = tmp_path / "file2.bin"
    (tmp_path / "file2.bin.part").write_bytes(b"garbage!")
    assert download(f"{base}/norange", dest2, sha256=SHA, backoff=0) == SHA  # server ignores Range: clean restart
    assert dest2.read_bytes() == PAYLOAD


def test_server_error_retried_then_gives_up(server, tmp_path):
    srv, base = server
    assert download(f"{base}/flaky", tmp_path / "f.bin", sha256=SHA, retries=1, backoff=0) == SHA
    assert [p for p, _ in srv.requests] == ["/flaky", "/flaky"]
    with pytest.raises(DownloadError, match="after 3 attempts"):
        download(f"{base}/down", tmp_path / "g.bin", sha256=SHA, retries=2, backoff=0)
    assert [p for p, _ in srv.requests].count("/down") == 3


def test_refuses_plain_http_to_other_hosts(tmp_path):
    with pytest.raises(InputError, match="refusing plain-http"):
        download("http://example.org/file", tmp_path / "x")
    with pytest.raises(InputError, match="scheme"):
        download("ftp://example.org/file", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
