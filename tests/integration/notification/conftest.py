"""Support for the notification service's integration tests.

- ``receiver``: a real HTTP server on loopback playing a partner's webhook receiver; it
  answers from a per-path script and verifies signatures with ``standardwebhooks``.
- ``notification``: the service over real HTTP with its worker parts, plus a relay over
  every category (the commitment/checkin relays are not running in these tests), a
  tenant and an admin API key folded from events, and helpers to emit domain events.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared import eventstore
from shared.auth import encode_token
from shared.db import engine_for
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.relay import Relay
from shared.testing import wait_until

#: Short schedules keep the tests fast: attempts at 0 s, +1 s, +1 s.
FAST_ENV = {
    "NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0,1,1",
    "NOCONTACT_WEBHOOK_POLL_INTERVAL_S": "0.05",
    "NOCONTACT_WEBHOOK_TIMEOUT_S": "2",
}


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
    """A partner's webhook receiver: scripted answers per path, every request kept."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:
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

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def seed_tenant(engine: Any, name: str = "Acme") -> tuple[str, str]:
    """A tenant and an admin API key, as the commitment service would emit them."""
    tenant_id = str(uuid.uuid4())
    key_id = str(uuid.uuid4())
    api_key = "nck_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        eventstore.append(
            conn,
            f"tenant-{tenant_id}",
            [
                NewEvent("tenant.created", {"tenant_id": tenant_id, "name": name}),
                NewEvent(
                    "api_key.issued",
                    {
                        "key_id": key_id,
                        "tenant_id": tenant_id,
                        "key_hash": hashlib.sha256(api_key.encode()).hexdigest(),
                        "prefix": api_key[:8],
                    },
                ),
            ],
            metadata=Metadata(tenant_id=tenant_id, actor="operator"),
        )
    return tenant_id, api_key


@dataclass
class Tenant:
    id: str
    api_key: str
    client: httpx.Client


class NotificationHarness:
    """The running service plus ways to feed it events."""

    def __init__(self, base_url: str, engine: Any) -> None:
        self.base_url = base_url
        self.engine = engine

    def token_client(self, tenant: Tenant, role: str, subject: str) -> httpx.Client:
        """A client with a scoped token of the tenant (coach or member)."""
        now = datetime.now(UTC)
        token = encode_token(
            tenant_id=tenant.id, role=role, subject_id=subject, key_id="harness-key", token_id=uuid.uuid4().hex,
            expires_at=now + timedelta(hours=1), issued_at=now,
        )
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def tenant(self, name: str = "Acme") -> Tenant:
        tenant_id, api_key = seed_tenant(self.engine, name)
        client = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
        # The key is usable once the inbox has folded it from the bus.
        wait_until(lambda: client.get("/v1/webhook-endpoints").status_code == 200, 15, message="api key folded")
        return Tenant(tenant_id, api_key, client)

    def emit(
        self, tenant: Tenant | str, event_type: str, data: dict[str, Any], stream_id: str | None = None
    ) -> RecordedEvent:
        tenant_id = tenant if isinstance(tenant, str) else tenant.id
        category = "commitment" if event_type.split(".")[0] in ("commitment", "coach") else "checkin"
        stream = stream_id or f"{category}-{data.get('commitment_id', uuid.uuid4())}"
        with self.engine.begin() as conn:
            (event,) = eventstore.append(
                conn, stream, [NewEvent(event_type, data)], metadata=Metadata(tenant_id=tenant_id, actor="test")
            )
        return event

    def create_endpoint(self, tenant: Tenant, url: str, event_types: list[str] | None = None) -> dict[str, Any]:
        response = tenant.client.post(
            "/v1/webhook-endpoints", json={"url": url, "event_types": event_types or ["*"], "description": "t"}
        )
        assert response.status_code == 201, response.text
        return response.json()

    def attempts(self, tenant: Tenant, endpoint_id: str) -> list[dict[str, Any]]:
        response = tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params={"limit": 100})
        assert response.status_code == 200, response.text
        return list(reversed(response.json()["items"]))

    def wait_attempts(self, tenant: Tenant, endpoint_id: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """The attempt log, oldest first, once it holds at least ``count`` attempts."""
        return wait_until(
            lambda: (lambda log: log if len(log) >= count else None)(self.attempts(tenant, endpoint_id)),
            timeout,
            message=f"{count} attempts logged",
        )


@pytest.fixture
def start_notification(stack_factory: Any) -> Iterator[Callable[..., NotificationHarness]]:
    """``start_notification(database_url, env=..., workers=True)`` -> harness."""
    stops: list[threading.Event] = []
    threads: list[threading.Thread] = []

    def start(database_url: str, *, env: dict[str, str] | None = None, workers: bool = True) -> NotificationHarness:
        stack = stack_factory(database_url, ["notification"], workers=workers, env={**FAST_ENV, **(env or {})})
        engine = engine_for(database_url)
        stop = threading.Event()
        relay = Relay(engine, name="test", poll_interval_s=0.02)
        thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
        thread.start()
        stops.append(stop)
        threads.append(thread)
        return NotificationHarness(stack.url("notification"), engine)

    yield start
    for stop in stops:
        stop.set()
    for thread in threads:
        thread.join(timeout=10)


def commitment_data(member_id: str = "m-1", commitment_id: str | None = None) -> dict[str, Any]:
    return {"commitment_id": commitment_id or str(uuid.uuid4()), "member_id": member_id}
