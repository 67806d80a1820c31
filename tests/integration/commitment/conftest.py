"""A running commitment service over real HTTP, and a client speaking to it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kombu import Queue, binding

from shared import bus
from shared.testing import wait_until

OPERATOR = "operator-" + uuid.uuid4().hex


@dataclass
class Client:
    """httpx with the service's base URL and a default credential."""

    base: str
    credential: str | None = None

    def request(self, method: str, path: str, *, auth: str | None = None, headers: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        headers = dict(headers or {})
        credential = auth if auth is not None else self.credential
        if credential:
            headers.setdefault("Authorization", f"Bearer {credential}")
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def as_(self, credential: str) -> Client:
        return Client(self.base, credential)

    def tenant(self, name: str = "Acme Support") -> Client:
        """A new tenant; the returned client holds its admin key."""
        response = self.post("/v1/tenants", auth=OPERATOR, json={"name": name})
        assert response.status_code == 201, response.text
        return self.as_(response.json()["api_key"])

    def token(self, role: str, subject_id: str, ttl_seconds: int = 3600) -> Client:
        response = self.post("/v1/tokens", json={"role": role, "subject_id": subject_id, "ttl_seconds": ttl_seconds})
        assert response.status_code == 201, response.text
        return self.as_(response.json()["token"])

    def commit(self, member_id: str = "m-1", **overrides: Any) -> dict[str, Any]:
        body = {
            "member_id": member_id,
            "contact": {"label": "Alex (ex)", "relationship": "romantic"},
            "timezone": "Europe/Berlin",
            "duration_days": 30,
            **overrides,
        }
        response = self.post("/v1/commitments", json=body)
        assert response.status_code == 201, response.text
        return response.json()


def start(stack_factory: Any, database_url: str) -> Client:
    stack = stack_factory(database_url, ["commitment"], env={"NOCONTACT_OPERATOR_TOKEN": OPERATOR})
    return Client(stack.url("commitment"))


@pytest.fixture
def service(postgres_url: str, amqp_url: str, stack_factory: Any) -> Client:
    """The service on PostgreSQL and RabbitMQ, its relay and scheduler running.

    stack_factory comes last so it is torn down first: the workers stop before the
    schema they poll is dropped."""
    return start(stack_factory, postgres_url)


class Probe:
    """A queue of the test's own bound to the events exchange: what the bus really carried."""

    def __init__(self, url: str) -> None:
        self.connection = bus.connect(url)
        self.connection.connect()
        exchange = bus.events_exchange()
        exchange(self.connection.default_channel).declare()
        self.queue = Queue(f"{exchange.name}.probe-{uuid.uuid4().hex[:8]}",
                           bindings=[binding(exchange, routing_key="#")], durable=False, auto_delete=False)
        self.queue(self.connection.default_channel).declare()
        self.received: list[dict[str, Any]] = []

    def _pull(self) -> None:
        bound = self.queue(self.connection.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            self.received.append({"body": json.loads(message.body), "routing_key": message.delivery_info.get(
                "routing_key"), "properties": message.properties})

    def wait_for(self, predicate: Any, timeout: float = 20) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]]:
            self._pull()
            return [m for m in self.received if predicate(m["body"])]

        return wait_until(found, timeout, interval=0.05, message="events on the bus")

    def close(self) -> None:
        try:
            self.queue(self.connection.default_channel).delete()
        finally:
            self.connection.release()


@pytest.fixture
def probe_factory() -> Iterator[Any]:
    probes: list[Probe] = []

    def make(url: str) -> Probe:
        probes.append(Probe(url))
        return probes[-1]

    yield make
    for probe in probes:
        probe.close()
