"""Kept-alive connections (sender.ClientPool) against a real HTTP/1.1 server on loopback.

Reuse must not weaken the SSRF guard: the name is resolved and vetted at every attempt,
and a connection is reused only for the very address the attempt's vetting allowed.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from services.notification.delivery.sender import AttemptResult, ClientPool, send
from services.notification.domain import signing

SECRET = signing.generate_secret()
BODY = json.dumps({"type": "checkin.recorded", "timestamp": "2026-03-01T10:00:00Z", "data": {}}).encode()


class KeepAliveServer(ThreadingHTTPServer):
    """Answers 200 over HTTP/1.1 keep-alive; counts connections and requests."""

    daemon_threads = True

    def __init__(self) -> None:
        self.connections = 0
        self.hosts: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with server.lock:
                    server.hosts.append(self.headers.get("host", ""))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        super().__init__(("127.0.0.1", 0), Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


Served = TypeVar("Served", bound=KeepAliveServer)


@contextmanager
def serving(running: Served) -> Iterator[Served]:
    """`running`, answering from a thread of its own until the block ends."""
    thread = threading.Thread(target=running.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.shutdown()
        running.server_close()
        thread.join(5)


@pytest.fixture
def server() -> Iterator[KeepAliveServer]:
    with serving(KeepAliveServer()) as running:
        yield running


class Dns:
    """A getaddrinfo stand-in whose answer the test changes; counts lookups."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.lookups = 0

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.address, port))]


def deliver(url: str, pool: ClientPool, dns: Dns | None = None) -> AttemptResult:
    headers = signing.headers([SECRET], "msg_reuse", 1_700_000_000, BODY)
    extra: dict[str, Any] = {"resolve": dns} if dns is not None else {}
    return send(url, headers, BODY, timeout_s=5.0, allow_private=True, pool=pool, **extra)


def in_turn(port: int, count: int) -> list[AttemptResult]:
    """`count` deliveries to the server on `port`, one after the other, through one pool."""
    pool = ClientPool()
    try:
        return [deliver(f"http://127.0.0.1:{port}/h", pool) for _ in range(count)]
    finally:
        pool.close()


def test_a_pool_reuses_one_connection_and_still_resolves_every_attempt(server: KeepAliveServer) -> None:
    pool = ClientPool()
    dns = Dns("127.0.0.1")
    try:
        for _ in range(5):
            result = deliver(f"http://hooks.invalid:{server.port}/h", pool, dns)
            assert result.status_code == 200, result.error
    finally:
        pool.close()
    assert server.connections == 1
    assert dns.lookups == 5  # no cached answer: every attempt vetted its own resolution
    assert server.hosts == [f"hooks.invalid:{server.port}"] * 5


def test_without_a_pool_every_attempt_has_its_own_connection(server: KeepAliveServer) -> None:
    headers = signing.headers([SECRET], "msg_reuse", 1_700_000_000, BODY)
    for _ in range(3):
        result = send(f"http://127.0.0.1:{server.port}/h", headers, BODY, timeout_s=5.0, allow_private=True)
        assert result.status_code == 200, result.error
    assert server.connections == 3


def test_a_kept_connection_does_not_outlive_a_changed_dns_answer(server: KeepAliveServer) -> None:
    # DNS rebinding with a warm connection: the next answer is the metadata address.
    # The attempt is refused by its own vetting; the open connection is not used.
    pool = ClientPool()
    dns = Dns("127.0.0.1")
    url = f"http://hooks.invalid:{server.port}/h"
    try:
        assert deliver(url, pool, dns).status_code == 200
        dns.address = "169.254.169.254"
        refused = deliver(url, pool, dns)
        assert refused.status_code is None
        assert refused.error is not None and refused.error.startswith("refused:")
        assert len(server.hosts) == 1
        # Connections are keyed by the vetted IP: another address never gets this one.
        dns.address = "127.0.0.2"
        moved = deliver(url, pool, dns)
        assert moved.ip == "127.0.0.2"
    finally:
        pool.close()


def test_clients_are_keyed_by_address_and_tls_name(server: KeepAliveServer) -> None:
    pool = ClientPool()
    try:
        # Plain HTTP: two names on one IP share the client (no TLS identity involved).
        for name in ("a.invalid", "b.invalid"):
            assert deliver(f"http://{name}:{server.port}/h", pool, Dns("127.0.0.1")).status_code == 200
        assert len(pool) == 1 and server.connections == 1
        # HTTPS: one client per SNI name, so a TLS session verified for one name is never
        # handed to another (the handshake fails here: the server speaks plain HTTP).
        for name in ("a.invalid", "b.invalid"):
            assert deliver(f"https://{name}:{server.port}/h", pool, Dns("127.0.0.1")).status_code is None
        assert len(pool) == 3
    finally:
        pool.close()


def test_the_pool_is_bounded_and_evicts_the_least_recently_used(server: KeepAliveServer) -> None:
    pool = ClientPool(max_clients=1)
    with serving(KeepAliveServer()) as other:
        try:
            for target in (server, other, server):
                assert deliver(f"http://127.0.0.1:{target.port}/h", pool).status_code == 200
            assert len(pool) == 1
            # The first client was closed on eviction: the third attempt needed a new connection.
            assert server.connections == 2 and other.connections == 1
        finally:
            pool.close()


def test_concurrent_attempts_share_the_pool(server: KeepAliveServer) -> None:
    pool = ClientPool()
    results: list[AttemptResult] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(10):
            result = deliver(f"http://127.0.0.1:{server.port}/h", pool)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    pool.close()
    assert [r.status_code for r in results] == [200] * 40
    assert server.connections <= 4  # at most one per concurrent attempt, then reused



class ClosingServer(KeepAliveServer):
    """Answers the first ``answered`` requests of each connection over keep-alive; the next
    request on that connection is read and the connection closed without an answer, as a
    server does when its idle timeout strikes just as a request arrives."""

    def __init__(self, answered: int = 1) -> None:
        super().__init__()
        self.requests = 0
        server = self

        class Handler(self.RequestHandlerClass):  # type: ignore[misc, name-defined]
            count = 0

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with server.lock:
                    server.requests += 1
                if self.count >= answered:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.count += 1
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.RequestHandlerClass = Handler


@pytest.fixture
def closing() -> Iterator[Callable[[int], ClosingServer]]:
    with ExitStack() as started:
        yield lambda answered: started.enter_context(serving(ClosingServer(answered)))


def test_a_kept_connection_the_peer_closed_is_retried_once_on_a_fresh_one(
    closing: Callable[[int], ClosingServer],
) -> None:
    server = closing(1)
    first, again = in_turn(server.port, 2)
    assert first.status_code == 200
    assert (again.status_code, again.error) == (200, None)
    # The request went out on the kept connection, was dropped unanswered, and went once
    # more on a new connection (same webhook-id: at least once, never lost).
    assert (server.requests, server.connections) == (3, 2)


def test_a_request_dropped_on_a_fresh_connection_is_a_failed_attempt_not_repeated(
    closing: Callable[[int], ClosingServer],
) -> None:
    server = closing(0)
    [result] = in_turn(server.port, 1)
    assert result.status_code is None
    assert result.error is not None and result.error.startswith("protocol:")
    assert (server.requests, server.connections) == (1, 1)


# --- Receivers that bend HTTP/1.1: raw sockets, each connection answered by a script.

Script = Callable[[socket.socket, int], None]


class RawServer:
    """Accepts connections on loopback; ``script(connection, request_number)`` answers each
    request (after it was read whole). Counts connections and requests."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        # Plain recv (no makefile, which would keep the socket open past a script's close).
        with connection:
            pending = b""
            number = 0
            try:
                while True:
                    while b"\r\n\r\n" not in pending:
                        data = connection.recv(65536)
                        if not data:
                            return
                        pending += data
                    head, _, pending = pending.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(pending) < length:
                        data = connection.recv(65536)
                        if not data:
                            return
                        pending += data
                    pending = pending[length:]
                    number += 1
                    self.requests += 1
                    self.script(connection, number)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw() -> Iterator[Callable[[Script], RawServer]]:
    started: list[RawServer] = []

    def start(script: Script) -> RawServer:
        started.append(RawServer(script))
        return started[-1]

    yield start
    for running in started:
        running.close()


def test_an_interim_answer_is_not_taken_for_the_final_one(raw: Callable[[Script], RawServer]) -> None:
    def script(connection: socket.socket, number: int) -> None:
        if number == 1:
            connection.sendall(b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
            connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        else:
            connection.sendall(b"HTTP/1.1 503 Busy\r\ncontent-length: 4\r\n\r\nbusy")

    server = raw(script)
    first, second = in_turn(server.port, 2)
    # Each delivery gets its own answer: a refused one is never recorded as delivered.
    assert (first.status_code, first.response_excerpt) == (200, "ok")
    assert (second.status_code, second.response_excerpt) == (503, "busy")
    assert server.connections == 1


def test_endless_interim_answers_end_the_attempt(raw: Callable[[Script], RawServer]) -> None:
    def script(connection: socket.socket, number: int) -> None:
        while True:
            connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 64)

    [result] = in_turn(raw(script).port, 1)
    assert result.status_code is None
    assert result.error is not None and result.error.startswith("protocol:") and "interim" in result.error


def test_an_endless_trailer_ends_the_read_and_the_connection(raw: Callable[[Script], RawServer]) -> None:
    def script(connection: socket.socket, number: int) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n")
        if number == 1:
            while True:
                connection.sendall(b"x-trailer: again\r\n" * 64)
        connection.sendall(b"\r\n")

    server = raw(script)
    result, after = in_turn(server.port, 2)
    assert (result.status_code, result.error, result.response_excerpt) == (200, None, "ok")
    assert after.status_code == 200
    assert server.connections == 2  # the first one, its trailer not read to the end, was closed


def test_a_reset_while_waiting_for_the_answer_is_not_retried(raw: Callable[[Script], RawServer]) -> None:
    def script(connection: socket.socket, number: int) -> None:
        if number == 2:  # the request was received whole: it may have been acted on
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()
            return
        connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    server = raw(script)
    first, reset = in_turn(server.port, 2)
    assert first.status_code == 200
    assert reset.status_code is None
    assert reset.error is not None and reset.error.startswith("protocol:")
    assert (server.requests, server.connections) == (2, 1)  # failed, to be retried on schedule
