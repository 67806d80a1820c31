"""The sender against a real HTTP(S) server on 127.0.0.1 (ephemeral port).

Loopback is forbidden for webhooks, so most tests pass ``allow_private=True``;
one test checks that without it the request is refused before any connection.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from services.notification.delivery.sender import (
    EXCERPT_BYTES,
    AttemptResult,
    send,
)
from services.notification.domain import outcomes, signing

SECRET = signing.generate_secret()
BODY = json.dumps(
    {"type": "streak.milestone_reached", "timestamp": "2024-05-01T10:00:00Z", "data": {"days": 7}}
).encode()


@dataclass
class Received:
    """What the receiver saw, for assertions."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    #: /endless: the client hung up while the body was still coming.
    hung_up: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler(BaseHTTPRequestHandler):
    """Answers according to the path; verifies signatures like a partner would."""

    received: Received

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            Webhook(SECRET).verify(body, headers)
            verified = True
        except Exception:
            verified = False
        with self.received.lock:
            self.received.requests.append({"path": self.path, "headers": headers, "body": body, "verified": verified})
        port = self.server.server_address[1]
        if self.path == "/ok":
            self._reply(200 if verified else 401, b'{"ok": true}')
        elif self.path == "/fail":
            self._reply(500, b"boom")
        elif self.path == "/gone":
            self._reply(410, b"gone")
        elif self.path == "/limited":
            self._reply(429, b"slow down", {"Retry-After": "30"})
        elif self.path == "/redirect":
            self._reply(302, b"", {"Location": f"http://127.0.0.1:{port}/ok"})
        elif self.path == "/big":
            self._reply(200, b"x" * 100_000)
        elif self.path == "/endless":
            self._endless()
        elif self.path == "/slow":
            self.received.release.wait(10)
            self._reply(200, b"late")
        else:
            self._reply(404, b"?")

    def _endless(self) -> None:
        """Stream a body until the client hangs up (or 1 GiB, as a safety net)."""
        self.send_response(200)
        self.end_headers()
        chunk = b"y" * 65536
        try:
            for _ in range(16384):
                if self.received.release.is_set():
                    return
                self.wfile.write(chunk)
        except OSError:
            self.received.hung_up.set()

    def _reply(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client stopped reading (bounded excerpt): expected


class CountingServer(ThreadingHTTPServer):
    """Counts accepted connections, to prove a refused URL never connected."""

    daemon_threads = True
    received: Received

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.received.lock:
            self.received.connections += 1
        super().process_request(request, client_address)


@dataclass
class Receiver:
    """A running receiver: its base URL and what it saw."""

    port: int
    received: Received

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


def _start(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    received = Received()
    handler = type("BoundHandler", (Handler,), {"received": received})
    server = CountingServer(("127.0.0.1", 0), handler)
    server.received = received
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Receiver(server.server_address[1], received)
    finally:
        received.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _start()


def resolve_to(address: str, calls: list[str] | None = None) -> Any:
    """A getaddrinfo stand-in that answers ``address`` for every name."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if calls is not None:
            calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


def signed_headers() -> dict[str, str]:
    return signing.headers([SECRET], "msg_test_1", int(time.time()), BODY)


def deliver(url: str, **kwargs: Any) -> AttemptResult:
    kwargs.setdefault("allow_private", True)
    kwargs.setdefault("timeout_s", 5.0)
    return send(url, signed_headers(), BODY, **kwargs)


def classify(result: AttemptResult) -> outcomes.Verdict:
    from datetime import UTC, datetime

    return outcomes.classify(
        result.status_code, result.error, retry_after=result.retry_after, now=datetime.now(UTC)
    ).verdict


def test_200_is_delivered_and_the_receiver_verifies_the_signature(receiver: Receiver) -> None:
    result = deliver(receiver.url("/ok"))
    assert result.error is None
    assert result.status_code == 200
    assert result.response_excerpt == '{"ok": true}'
    assert result.ip == "127.0.0.1"
    assert result.duration_ms >= 0
    assert classify(result) is outcomes.Verdict.DELIVERED
    [request] = receiver.received.requests
    assert request["verified"] is True
    assert request["body"] == BODY
    assert request["headers"]["webhook-id"] == "msg_test_1"
    assert request["headers"]["content-type"] == "application/json"


def test_500_is_a_retry(receiver: Receiver) -> None:
    result = deliver(receiver.url("/fail"))
    assert (result.status_code, result.error, result.response_excerpt) == (500, None, "boom")
    assert classify(result) is outcomes.Verdict.RETRY


def test_410_disables(receiver: Receiver) -> None:
    result = deliver(receiver.url("/gone"))
    assert result.status_code == 410
    assert classify(result) is outcomes.Verdict.DISABLE_ENDPOINT


def test_429_reports_retry_after(receiver: Receiver) -> None:
    result = deliver(receiver.url("/limited"))
    assert result.status_code == 429
    assert result.retry_after == "30"


def test_slow_receiver_times_out(receiver: Receiver) -> None:
    # /slow answers only once released (or after 10 s): a timeout is the sender giving up
    # on its own, whatever the machine's load; an answer ("late", 200) would fail here.
    result = deliver(receiver.url("/slow"), timeout_s=0.3)
    assert not receiver.received.release.is_set()
    assert result.status_code is None
    assert result.error is not None and result.error.startswith("timeout:")
    assert classify(result) is outcomes.Verdict.RETRY


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    result = deliver(receiver.url("/redirect"))
    assert result.status_code == 302
    assert classify(result) is outcomes.Verdict.RETRY
    assert [r["path"] for r in receiver.received.requests] == ["/redirect"]


def test_response_read_is_bounded(receiver: Receiver) -> None:
    result = deliver(receiver.url("/big"))
    assert result.status_code == 200
    assert 0 < len(result.response_excerpt) <= EXCERPT_BYTES


def test_endless_body_is_not_read_to_the_end(receiver: Receiver) -> None:
    # Only the excerpt is read: the sender hangs up while the body is still coming (the
    # receiver would stop at 1 GiB), and answers without waiting for its timeout.
    result = deliver(receiver.url("/endless"), timeout_s=60.0)
    assert (result.status_code, result.error) == (200, None)
    assert len(result.response_excerpt) == EXCERPT_BYTES
    assert receiver.received.hung_up.wait(30), "the whole endless body was read"


def test_connection_refused_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = deliver(f"http://127.0.0.1:{port}/ok")
    assert result.status_code is None
    assert result.error is not None and result.error.startswith("connect:")
    assert classify(result) is outcomes.Verdict.RETRY


def test_loopback_refused_before_connecting_without_allow_private(receiver: Receiver) -> None:
    for url, resolve in [
        (receiver.url("/ok"), resolve_to("8.8.8.8")),
        (receiver.url("/ok", host="hooks.invalid"), resolve_to("127.0.0.1")),
    ]:
        result = deliver(url, allow_private=False, resolve=resolve)
        assert result.status_code is None
        assert result.error is not None and result.error.startswith("refused:")
        assert "loopback" in result.error
    assert receiver.received.connections == 0
    assert receiver.received.requests == []


def test_connects_to_the_vetted_ip_with_the_original_host_header(receiver: Receiver) -> None:
    # ".invalid" never resolves: success proves the connection used our answer,
    # and the resolver is asked exactly once (no second lookup to rebind).
    calls: list[str] = []
    result = deliver(receiver.url("/ok", host="Hooks.Invalid"), resolve=resolve_to("127.0.0.1", calls))
    assert result.status_code == 200, result.error
    assert calls == ["hooks.invalid"]
    [request] = receiver.received.requests
    assert request["headers"]["host"] == f"hooks.invalid:{receiver.port}"


def test_unresolvable_name_is_a_dns_error() -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = deliver("https://nope.invalid/", resolve=fail)
    assert result.error is not None and result.error.startswith("dns:")


def test_never_raises_on_a_broken_resolver() -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("resolver bug")

    result = deliver("https://x.example/", resolve=broken)
    assert result.error is not None and result.error.startswith("unexpected:")


# --- HTTPS: SNI and certificate are checked against the host name, not the IP.


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=hooks.test", "-addext", "subjectAltName=DNS:hooks.test",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_receiver(certificate: tuple[Path, Path]) -> Iterator[Receiver]:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: seen.append(name)  # type: ignore[assignment]
    for running in _start(context):
        running.received.sni = seen  # type: ignore[attr-defined]
        yield running


def test_https_uses_the_host_name_for_sni_and_certificate(
    tls_receiver: Receiver, certificate: tuple[Path, Path]
) -> None:
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    result = deliver(
        tls_receiver.url("/ok", host="hooks.test", scheme="https"),
        resolve=resolve_to("127.0.0.1"),
        verify=trust,
    )
    assert result.status_code == 200, result.error
    assert tls_receiver.received.sni == ["hooks.test"]  # type: ignore[attr-defined]
    assert tls_receiver.received.requests[0]["verified"] is True


def test_https_certificate_for_another_name_is_rejected(tls_receiver: Receiver, certificate: tuple[Path, Path]) -> None:
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    result = deliver(
        tls_receiver.url("/ok", host="evil.test", scheme="https"),
        resolve=resolve_to("127.0.0.1"),
        verify=trust,
    )
    assert result.status_code is None
    assert result.error is not None and "certificate" in result.error.lower()
    assert tls_receiver.received.requests == []


def test_https_default_verification_refuses_an_untrusted_certificate(tls_receiver: Receiver) -> None:
    for _ in range(2):  # second call reuses the cached default context
        result = deliver(tls_receiver.url("/ok", host="hooks.test", scheme="https"), resolve=resolve_to("127.0.0.1"))
        assert result.status_code is None
        assert result.error is not None and "certificate" in result.error.lower()
    assert tls_receiver.received.requests == []
