"""A partner's webhook receiver: a real HTTP server on loopback, the one every test uses.

It keeps every request (path, headers, body), answers from a per-path script (default
200 "ok"), and verifies signatures with ``standardwebhooks`` as a partner would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    #: Answer only once this is set (at most a minute): a receiver busy for as long as the
    #: test says, not for a guessed time.
    until: threading.Event | None = None


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    def verifies_with(self, secret: str) -> bool:
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


class Receiver:
    """Scripted answers per path, every request kept."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:  # http.server calls do_<METHOD>
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                reply = receiver._next(self.path)
                with receiver.lock:
                    receiver.requests.append(
                        Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.until is not None:
                    reply.until.wait(60)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the sender gave up (timeout): nothing to answer to

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _next(self, path: str) -> Reply:
        with self.lock:
            script = self.scripts.get(path)
            if not script:
                return Reply()
            return script.pop(0) if len(script) > 1 else script[0]

    def script(self, path: str, *replies: Reply) -> None:
        """Answer ``path`` with these replies in turn; the last one repeats."""
        with self.lock:
            self.scripts[path] = list(replies)

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str | None = None) -> list[Request]:
        """The requests received (at ``path``, or anywhere), oldest first."""
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]

    def verified(self, secret: str) -> tuple[dict[str, dict[str, Any]], int]:
        """Verified payloads by webhook-id (retries reuse it), and how many requests repeated an id."""
        verifier = Webhook(secret)
        seen: dict[str, dict[str, Any]] = {}
        repeats = 0
        for request in self.at():
            payload = verifier.verify(request.body, request.headers)
            if request.headers["webhook-id"] in seen:
                repeats += 1
            seen.setdefault(request.headers["webhook-id"], payload)
        return seen, repeats

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()
