"""The shared session's shortcuts change nothing an operator or a vendor can see: the environment's proxy and CA
settings are those requests computes for each request, and a body read whole is the body requests reads."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from auditlake import http

ENVIRONMENTS = [
    {},
    {"HTTPS_PROXY": "http://proxy.internal:3128"},
    {"https_proxy": "http://proxy.internal:3128", "NO_PROXY": "app.asana.com,.make.com"},
    {"HTTP_PROXY": "http://plain.internal:8080", "ALL_PROXY": "socks5://all.internal:1080"},
    {"REQUESTS_CA_BUNDLE": "/etc/ssl/corporate.pem"},
    {"CURL_CA_BUNDLE": "/etc/ssl/curl.pem", "HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "*"},
]
URLS = ["https://app.asana.com/api/1.0/workspaces/1/audit_log_events", "https://api.ashbyhq.com/auditLog.list",
        "https://eu1.make.com/api/v2/audit-logs/organization/1", "http://127.0.0.1:8080/x"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_proxies_and_ca_bundle_are_those_requests_reads_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    plain, shared = requests.Session(), http._Session()
    for url in URLS:
        for _ in range(2):  # the second time from what the session kept
            assert shared.merge_environment_settings(url, {}, False, None, None) == \
                plain.merge_environment_settings(url, {}, False, None, None)
    # Settings passed with a request are merged as requests merges them.
    assert shared.merge_environment_settings(URLS[0], {"https": "http://other:1"}, False, False, None) == \
        plain.merge_environment_settings(URLS[0], {"https": "http://other:1"}, False, False, None)


BODY = ('{"data": [' + ",".join(f'{{"gid": "{i}", "name": "Zoë \\u00e9 {i}"}}' for i in range(3000)) + "]}").encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(BODY), 7000):
                chunk = BODY[start:start + 7000]
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        body = gzip.compress(BODY) if self.path == "/gzip" else BODY
        self.send_response(200)
        if self.path == "/gzip":
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body) + (100 if self.path == "/truncated" else 0)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/truncated":
            self.close_connection = True

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/plain", "/chunked", "/gzip"])
def test_a_body_read_whole_is_the_body_requests_reads(origin: str, path: str) -> None:
    session = http._Session()
    for _ in range(2):  # the connection goes back to the pool and serves the next request
        response = session.get(origin + path, timeout=10)
        assert response.content == BODY
    assert requests.get(origin + path, timeout=10).content == BODY
    streamed = session.get(origin + path, timeout=10, stream=True)  # a caller that streams still can
    assert b"".join(streamed.iter_content(1000)) == BODY


def test_a_truncated_body_raises_what_requests_raises(origin: str) -> None:
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(origin + "/truncated", timeout=10)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http._Session().get(origin + "/truncated", timeout=10)
