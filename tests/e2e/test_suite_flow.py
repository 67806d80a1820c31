"""The whole suite as it runs in production: gunicorn APIs and worker processes, real
PostgreSQL and RabbitMQ, a partner's webhook receiver on loopback.

One story, end to end: an operator creates a tenant; a partner subscribes to webhooks; a
member commits and checks in; the streak, the milestone webhooks (signature verified with
the standardwebhooks package) and the coach's view follow; a revoked key stops working on
every service as soon as its DELETE has returned.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import pytest

from shared import testing
from shared.db import migrate
from shared.testing import bearer, eventually
from tests.support.receiver import Receiver
from tests.support.suite import free_port

SERVICES = ("commitment", "checkin", "notification")
OPERATOR = "operator-" + uuid.uuid4().hex


@pytest.fixture
def suite(postgres_database_url: str, rabbitmq_url: str, amqp_url: str, tmp_path) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    from services.runner import start_processes, stop_processes

    with testing.fresh_postgres_schema(postgres_database_url) as database_url:
        migrate(database_url)
        env = {
            "NOCONTACT_DATABASE_URL": database_url,
            "NOCONTACT_BROKER_URL": rabbitmq_url,
            "NOCONTACT_OPERATOR_TOKEN": OPERATOR,
            "NOCONTACT_WEBHOOK_ALLOW_PRIVATE": "true",
            "NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0,1,1,1",
            "NOCONTACT_SCHEDULER_INTERVAL_S": "1",
            "NOCONTACT_WEB_WORKERS": "1",
        }
        urls = {}
        for service in SERVICES:
            port = free_port()
            env[f"NOCONTACT_{service.upper()}_PORT"] = str(port)
            env[f"NOCONTACT_{service.upper()}_URL"] = f"http://127.0.0.1:{port}"
            urls[service] = f"http://127.0.0.1:{port}"
        import os

        os.environ.update(env)  # the fixture's monkeypatch restores NOCONTACT_* afterwards
        children = start_processes(env)
        try:
            for service, url in urls.items():
                testing.wait_until(lambda url=url: _ready(url), 60, message=f"{service} /readyz")
            yield urls
        finally:
            stop_processes(children)
            for name, child in children:
                assert child.returncode in (0, -15), f"{name} exited with {child.returncode}"
            for name in env:
                os.environ.pop(name, None)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_member_a_coach_and_a_partner_app_end_to_end(suite: dict[str, str]) -> None:
    commitment, checkin, notification = (suite[s] for s in SERVICES)
    client = httpx.Client(timeout=10)

    created = client.post(f"{commitment}/v1/tenants", json={"name": "Acme Support"}, headers=bearer(OPERATOR))
    assert created.status_code == 201, created.text
    tenant = created.json()
    admin = bearer(tenant["api_key"])

    # The partner subscribes to every event type (the key reaches the notification service over the bus).
    receiver = Receiver()
    endpoint = eventually(lambda: client.post(
        f"{notification}/v1/webhook-endpoints", headers=admin,
        json={"url": receiver.url(), "event_types": ["*"], "description": "partner app"}), 201).json()
    assert endpoint["secret"].startswith("whsec_")

    # A member commits, starting three days ago.
    today = date.today()
    response = client.post(f"{commitment}/v1/commitments", headers=admin, json={
        "member_id": "m-1", "contact": {"label": "Alex (ex)", "relationship": "romantic"},
        "channels": ["calls", "texts"], "timezone": "UTC",
        "starts_on": (today - timedelta(days=3)).isoformat(), "duration_days": 30,
    })
    assert response.status_code == 201, response.text
    commitment_id = response.json()["id"]
    assert client.put(f"{commitment}/v1/coaches/coach-1/clients/m-1", headers=admin).status_code == 204

    member = bearer(client.post(f"{commitment}/v1/tokens", headers=admin,
                               json={"role": "member", "subject_id": "m-1", "ttl_seconds": 3600}).json()["token"])
    coach = bearer(client.post(f"{commitment}/v1/tokens", headers=admin,
                              json={"role": "coach", "subject_id": "coach-1", "ttl_seconds": 3600}).json()["token"])

    # Four kept days, reported by the member (the checkin service learns of the commitment over the bus).
    for offset in (3, 2, 1, 0):
        day = (today - timedelta(days=offset)).isoformat()
        answer = eventually(lambda day=day: client.post(
            f"{checkin}/v1/commitments/{commitment_id}/check-ins", headers=member,
            json={"date": day, "outcome": "kept", "urge": 4, "mood": 3, "note": "private"}), 201)
        assert answer.json()["outcome"] == "kept"

    streak = client.get(f"{checkin}/v1/commitments/{commitment_id}/streak", headers=member).json()
    assert streak["current_days"] == 4 and streak["kept_days"] == 4
    assert streak["milestones_reached"] == [1, 3] and streak["next_milestone"] == 7

    # The coach sees the client, without the member's private notes.
    clients = eventually(lambda: client.get(f"{checkin}/v1/coaches/coach-1/clients", headers=coach), 200)
    assert "Alex (ex)" in clients.text and "private" not in clients.text

    # The partner received the milestones, signed; notes never leave the member.
    def milestones() -> list[int]:
        events = receiver.verified(endpoint["secret"])[0].values()
        return sorted(e["data"]["milestone"] for e in events if e["type"] == "streak.milestone_reached")

    testing.wait_until(lambda: milestones() == [1, 3], 20, message="milestone webhooks 1 and 3")
    delivered = list(receiver.verified(endpoint["secret"])[0].values())
    assert {"commitment.created", "checkin.recorded"} <= {e["type"] for e in delivered}
    assert all("private" not in json.dumps(e) for e in delivered)
    assert all(e["data"].get("commitment_id") in (commitment_id, None) for e in delivered)

    # Revoking a key: it stops working on all three services as soon as the DELETE has
    # returned (CONTRACT v1.1 "Credentials"): the very next request is refused, no wait.
    second = client.post(f"{commitment}/v1/api-keys", headers=admin)
    assert second.status_code == 201
    extra = bearer(second.json()["api_key"])
    probes = (f"{commitment}/v1/commitments", f"{checkin}/v1/settings", f"{notification}/v1/webhook-endpoints")
    assert [client.get(url, headers=extra).status_code for url in probes] == [200, 200, 200]
    assert client.delete(f"{commitment}/v1/api-keys/{second.json()['id']}", headers=admin).status_code == 204
    assert [client.get(url, headers=extra).status_code for url in probes] == [401, 401, 401]
