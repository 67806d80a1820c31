"""Support for the notification service's integration tests.

- ``receiver``: a partner's webhook receiver (tests.support.receiver).
- ``notification``: the service over real HTTP with its worker parts, plus a relay over
  every category (the commitment/checkin relays are not running in these tests), a
  tenant and an admin API key folded from events, and helpers to emit domain events.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.db import engine_for
from shared.events import NewEvent, RecordedEvent
from shared.relay import Relay
from shared.testing import wait_until
from tests.support.receiver import Receiver, Reply, receiver
from tests.support.tenants import Tenant as SeededTenant
from tests.support.tenants import append_as, new_tenant

# The receiver is every suite's (tests.support.receiver); the tests here name it from here.
__all__ = ["Receiver", "Reply", "receiver"]

#: Short schedules keep the tests fast: attempts at 0 s, +1 s, +1 s.
FAST_ENV = {
    "NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0,1,1",
    "NOCONTACT_WEBHOOK_POLL_INTERVAL_S": "0.05",
    "NOCONTACT_WEBHOOK_TIMEOUT_S": "2",
}


@dataclass
class Tenant:
    """A seeded tenant (tests.support.tenants) with a client holding its admin key."""

    seeded: SeededTenant
    client: httpx.Client

    @property
    def id(self) -> str:
        return self.seeded.tenant_id

    @property
    def api_key(self) -> str:
        return self.seeded.api_key


class NotificationHarness:
    """The running service plus ways to feed it events."""

    def __init__(self, base_url: str, engine: Any) -> None:
        self.base_url = base_url
        self.engine = engine

    def token_client(self, tenant: Tenant, role: str, subject: str) -> httpx.Client:
        """A client with a scoped token of the tenant (coach or member)."""
        return httpx.Client(base_url=self.base_url, headers=tenant.seeded.headers(role, subject), timeout=10)

    def tenant(self, name: str = "Acme") -> Tenant:
        seeded = new_tenant(self.engine, name)
        client = httpx.Client(base_url=self.base_url, headers=seeded.headers(), timeout=10)
        # The key is usable once the inbox has folded it from the bus.
        wait_until(lambda: client.get("/v1/webhook-endpoints").status_code == 200, 15, message="api key folded")
        return Tenant(seeded, client)

    def emit(
        self, tenant: Tenant | str, event_type: str, data: dict[str, Any], stream_id: str | None = None
    ) -> RecordedEvent:
        tenant_id = tenant if isinstance(tenant, str) else tenant.id
        category = "commitment" if event_type.split(".")[0] in ("commitment", "coach") else "checkin"
        stream = stream_id or f"{category}-{data.get('commitment_id', uuid.uuid4())}"
        (event,) = append_as(self.engine, stream, [NewEvent(event_type, data)], tenant_id)
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
