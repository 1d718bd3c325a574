"""A local HTTP server on 127.0.0.1 that can fail on purpose, shared by the download tests.

Paths: /ok (Range honoured), /norange (Range ignored), /cut (first response stops half-way),
/flaky (HTTP 503 once), /down (always 503), /missing (404), and any path put in ``server.files``
(served whole, with Range). Every request is logged in ``server.requests``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
from collections.abc import Iterator

PAYLOAD = bytes(range(256)) * 400  # 100 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5  # a stuck client cannot hold a server thread for long

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        n_seen = sum(1 for p, _ in srv.requests if p == self.path)
        if self.path == "/missing":
            self.send_error(404, "Not Found")
            return
        if self.path == "/down" or (self.path == "/flaky" and n_seen == 1):
            self.send_error(503, "Busy")
            return
        payload = srv.files.get(self.path, PAYLOAD)
        if self.path not in srv.files and self.path not in ("/ok", "/norange", "/cut", "/flaky"):
            self.send_error(404, "Not Found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and self.path != "/norange":
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/cut" and n_seen == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True  # hang up with half the promised bytes sent
            return
        self.wfile.write(body)


@contextlib.contextmanager
def serve() -> Iterator[tuple[http.server.ThreadingHTTPServer, str]]:
    """Run the server in a thread; yield it and its base URL (``http://127.0.0.1:<port>``)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.requests = []
    srv.files = {}
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)
