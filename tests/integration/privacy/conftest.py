"""The commitment and notification services over real HTTP for the privacy tests, with a
partner's receiver and a tap on the bus (the fixtures of those services' own tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.testing import bearer, eventually
from tests.integration.commitment.conftest import OPERATOR, probe_factory
from tests.integration.notification.conftest import FAST_ENV
from tests.support.receiver import receiver

__all__ = ["probe_factory", "receiver"]


@dataclass
class Stack:
    urls: dict[str, str]

    def client(self, service: str, credential: str | None = None) -> httpx.Client:
        headers = bearer(credential) if credential else {}
        return httpx.Client(base_url=self.urls[service], headers=headers, timeout=30)

    def tenant(self) -> tuple[str, str]:
        """A new tenant (id, admin key), its key known to the notification service."""
        created = self.client("commitment", OPERATOR).post("/v1/tenants", json={"name": "Acme Support"})
        assert created.status_code == 201, created.text
        body = created.json()
        notification = self.client("notification", body["api_key"])
        eventually(lambda: notification.get("/v1/webhook-endpoints"), 200)
        return body["id"], body["api_key"]

    def token(self, api_key: str, role: str, subject: str) -> str:
        issued = self.client("commitment", api_key).post("/v1/tokens", json={"role": role, "subject_id": subject})
        assert issued.status_code == 201, issued.text
        return str(issued.json()["token"])


@pytest.fixture
def privacy_stack(postgres_url: str, amqp_url: str, stack_factory: Any) -> Stack:
    """Commitment and notification, their workers running, on PostgreSQL and RabbitMQ."""
    stack = stack_factory(postgres_url, ["commitment", "notification"],
                          env={**FAST_ENV, "NOCONTACT_OPERATOR_TOKEN": OPERATOR})
    return Stack(stack.urls)
