"""Restarts in the middle of a retry schedule, slow endpoints, tenants, the audit trail."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from services.notification.consumers import inbox
from services.notification.delivery import queue
from services.notification.delivery.worker import DeliveryWorker
from services.notification.domain.messages import message_id
from services.notification.tables import deliveries
from shared import eventstore
from shared.db import read
from shared.testing import wait_until
from tests.integration.notification.conftest import commitment_data
from tests.support.receiver import Receiver, Reply


class Running:
    """A worker part in a thread that can be stopped (a process restart, in effect)."""

    def __init__(self, target: Any) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=target, args=(self.stop,), daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def test_restart_in_the_middle_of_a_retry_schedule(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url, workers=False, env={"NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0,2,2"})
    consumer = Running(inbox(harness.engine).run)
    try:
        tenant = harness.tenant()
        receiver.script("/r", Reply(500), Reply(200))
        endpoint = harness.create_endpoint(tenant, receiver.url("/r"))
        first = Running(DeliveryWorker(harness.engine).run)
        event = harness.emit(tenant, "streak.reset", {**commitment_data(), "slipped_on": "2026-01-03"})
        harness.wait_attempts(tenant, endpoint["id"], 1)
        first.halt()  # "the service restarts" between attempt 1 and attempt 2

        with read(harness.engine) as conn:
            row = conn.execute(select(deliveries)).one()
        assert row.state == queue.PENDING and row.attempts == 1
        assert row.next_attempt_at > datetime.now(UTC) - timedelta(seconds=1)

        second = Running(DeliveryWorker(harness.engine).run)
        log = harness.wait_attempts(tenant, endpoint["id"], 2)
        assert [(a["attempt"], a["state"]) for a in log] == [(1, "retrying"), (2, "succeeded")]
        second.halt()

        # A third start finds nothing to do: the success was recorded, nothing goes twice.
        assert DeliveryWorker(harness.engine, clock=lambda: datetime.now(UTC) + timedelta(days=1)).drain() == 0
        requests = receiver.at("/r")
        assert len(requests) == 2
        assert {r.headers["webhook-id"] for r in requests} == {message_id(event.id)}
    finally:
        consumer.halt()


def test_a_slow_endpoint_does_not_delay_another_tenant(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(
        postgres_url,
        env={
            "NOCONTACT_WEBHOOK_TIMEOUT_S": "60",
            "NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT": "2",
            "NOCONTACT_WEBHOOK_WORKERS": "4",
        },
    )
    slow_tenant, fast_tenant = harness.tenant("Slow"), harness.tenant("Fast")
    # The slow endpoint answers nothing until the end of the test (a minute at most): the
    # fast one is delivered while both slow requests are still in flight, or not at all.
    answer_slow = threading.Event()
    receiver.script("/slow", Reply(200, until=answer_slow))
    harness.create_endpoint(slow_tenant, receiver.url("/slow"))
    harness.create_endpoint(fast_tenant, receiver.url("/fast"))
    try:
        for _ in range(6):
            harness.emit(slow_tenant, "checkin.missed", {**commitment_data(), "date": "2026-01-01"})
        wait_until(lambda: len(receiver.at("/slow")) >= 2, 30, message="slow endpoint busy")

        harness.emit(fast_tenant, "checkin.missed", {**commitment_data(), "date": "2026-01-01"})
        wait_until(lambda: receiver.at("/fast"), 30, message="the fast delivery while the slow endpoint holds two")
        # The cap: never more than 2 requests in flight to the slow endpoint.
        assert len(receiver.at("/slow")) == 2
    finally:
        answer_slow.set()


def test_tenants_never_see_each_others_endpoints_or_events(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    a, b = harness.tenant("A"), harness.tenant("B")
    endpoint = harness.create_endpoint(a, receiver.url("/a"))
    other = harness.create_endpoint(b, receiver.url("/b"), ["checkin.missed"])
    event = harness.emit(a, "checkin.missed", {**commitment_data(), "date": "2026-01-01"})
    wait_until(lambda: receiver.at("/a"), 15)
    harness.wait_attempts(a, endpoint["id"], 1)

    base = f"/v1/webhook-endpoints/{endpoint['id']}"
    assert b.client.get(base).status_code == 404
    assert b.client.patch(base, json={"description": "mine"}).status_code == 404
    assert b.client.post(f"{base}/rotate-secret").status_code == 404
    assert b.client.post(f"{base}/enable").status_code == 404
    assert b.client.get(f"{base}/deliveries").status_code == 404
    assert b.client.get(f"{base}/messages").status_code == 404
    assert b.client.post(f"{base}/deliveries/{message_id(event.id)}/redeliver").status_code == 404
    assert b.client.post(f"{base}/redeliver-failed", json={"since": "2020-01-01T00:00:00Z"}).status_code == 404
    assert b.client.delete(base).status_code == 404
    assert [e["id"] for e in b.client.get("/v1/webhook-endpoints").json()["items"]] != [endpoint["id"]]
    assert a.client.get(base).status_code == 200
    # Tenant A's event was never queued for tenant B's endpoint (queueing is one transaction,
    # and A's delivery is done, so this is conclusive).
    assert b.client.get(f"/v1/webhook-endpoints/{other['id']}/messages").json()["items"] == []
    assert receiver.at("/b") == []


def test_endpoint_lifecycle_and_its_audit_trail(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant = harness.tenant()
    endpoint = harness.create_endpoint(tenant, receiver.url("/one?token=abc"), ["checkin.missed"])
    base = f"/v1/webhook-endpoints/{endpoint['id']}"
    patched = tenant.client.patch(
        base, json={"url": receiver.url("/two"), "event_types": ["client.at_risk"], "description": "new"}
    )
    assert patched.status_code == 200
    assert patched.json()["url"] == receiver.url("/two") and patched.json()["event_types"] == ["client.at_risk"]
    assert tenant.client.patch(base, json={"url": "gopher://x"}).status_code == 422
    listed = tenant.client.get("/v1/webhook-endpoints").json()
    assert [e["id"] for e in listed["items"]] == [endpoint["id"]] and listed["next_cursor"] is None

    harness.emit(tenant, "checkin.missed", {**commitment_data(), "date": "2026-01-01"})  # no longer subscribed
    event = harness.emit(tenant, "client.at_risk", {**commitment_data(), "reasons": ["slipped_recently"]})
    wait_until(lambda: receiver.at("/two"), 15)
    assert receiver.at("/one?token=abc") == []

    # Manual redelivery: the same webhook-id again.
    response = tenant.client.post(f"{base}/deliveries/{message_id(event.id)}/redeliver")
    assert response.status_code == 202
    wait_until(lambda: len(receiver.at("/two")) == 2, 15)
    assert {r.headers["webhook-id"] for r in receiver.at("/two")} == {message_id(event.id)}
    assert tenant.client.post(f"{base}/deliveries/msg_unknown/redeliver").status_code == 404

    assert tenant.client.post(f"{base}/disable").json()["status"] == "disabled"
    assert tenant.client.delete(base).status_code == 204
    assert tenant.client.get(base).status_code == 404

    with read(harness.engine) as conn:
        audit = eventstore.read_stream(conn, f"webhook_endpoint-{endpoint['id']}")
    assert [e.type.split(".")[1] for e in audit] == ["created", "updated", "disabled", "deleted"]
    assert audit[0].data["url"] == receiver.url("/one")  # query string (tokens) left out
    assert all("whsec_" not in json.dumps(e.data) for e in audit)
    assert all(e.tenant_id == tenant.id and e.actor and e.actor.startswith("api_key:") for e in audit)


def test_embedded_setup_sqlite_and_filesystem_broker(
    sqlite_url: str, filesystem_broker_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(sqlite_url)
    tenant = harness.tenant()
    endpoint = harness.create_endpoint(tenant, receiver.url("/embedded"))
    event = harness.emit(tenant, "commitment.extended", {**commitment_data(), "additional_days": 30})
    (request,) = wait_until(lambda: receiver.at("/embedded"), 15)
    assert request.verifies_with(endpoint["secret"])
    assert request.headers["webhook-id"] == message_id(event.id)
    assert harness.wait_attempts(tenant, endpoint["id"], 1)[0]["state"] == "succeeded"
    assert str(uuid.UUID(endpoint["id"])) == endpoint["id"]


def test_openapi_and_cli(sqlite_url: str, monkeypatch: Any) -> None:
    from click.testing import CliRunner

    from services.cli import main
    from services.notification.app import create_app

    monkeypatch.setenv("NOCONTACT_DATABASE_URL", sqlite_url)
    document = create_app().test_client().get("/openapi.json").get_json()
    paths = document["paths"]
    for path in (
        "/v1/webhook-endpoints",
        "/v1/webhook-endpoints/{endpoint_id}",
        "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
        "/v1/webhook-endpoints/{endpoint_id}/enable",
        "/v1/webhook-endpoints/{endpoint_id}/deliveries",
        "/v1/webhook-endpoints/{endpoint_id}/deliveries/{message_id}/redeliver",
        "/v1/webhook-endpoints/{endpoint_id}/redeliver-failed",
        "/v1/coaches/{coach_id}/notifications",
    ):
        assert path in paths, path
    result = CliRunner().invoke(main, ["notification", "stats"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"deliveries": {}, "endpoints": {}}
    assert "attempted 0" in CliRunner().invoke(main, ["notification", "deliver-due"]).output
