"""A member's data is theirs, proven on the whole suite as it runs in production: gunicorn
APIs and worker processes, real PostgreSQL and RabbitMQ, a partner's receiver on loopback.

A member is seeded with a unique marker in every personal field the three services hold
(contact label, motivation, end reason, display name, the labels of necessary-contact
exceptions and places, a check-in's note, and their copies: webhook messages, dead
letters, the check-in service's copy of the commitments and boundaries). The marker is
then nowhere in clear: not in a ``pg_dump`` of the database, not on the bus (a tap queue
bound to every event), not in any process's log; yet every service's export (HTTP, and
``nocontact members export``) carries it in every field. After the erasure every service
reports erased, the exports are empty or 404, the member's ids answer 404, a rebuild of
every service's read models brings nothing back, the dump still holds no marker, and a
second member of the same tenant is untouched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from kombu import Producer
from sqlalchemy import select

from shared import bus
from shared.config import REPO_ROOT
from shared.db import engine_for, read
from shared.schema import dead_letters
from shared.testing import bearer, eventually, wait_until
from tests.integration.commitment.conftest import Probe
from tests.support.receiver import Receiver
from tests.support.suite import Suite, create_tenant, issue_token, running_suite


@pytest.fixture
def suite(postgres_database_url: str, rabbitmq_url: str, tmp_path: Path) -> Iterator[Suite]:
    with running_suite(postgres_database_url, rabbitmq_url, tmp_path / "suite", split_parts=False, env={
        "NOCONTACT_WEBHOOK_ALLOW_PRIVATE": "true",
        "NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0,1,1",
    }) as running:
        yield running


@pytest.fixture
def tap(suite: Suite, rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    """A queue of the test's own bound to every event the suite publishes."""
    monkeypatch.setenv("NOCONTACT_BUS_PREFIX", suite.bus_prefix)
    probe = Probe(rabbitmq_url)
    yield probe
    probe.close()


def _nocontact(suite: Suite, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=suite.env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def _dump(suite: Suite) -> str:
    """The test schema as ``pg_dump`` writes it: what a backup of the database holds."""
    schema = re.search(r"search_path%3D(\w+)", suite.database_url)
    assert schema is not None, suite.database_url
    url = suite.database_url.replace("postgresql+psycopg://", "postgresql://").split("?")[0]
    dumped = subprocess.run(["pg_dump", "--schema", schema.group(1), url], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
    assert dumped.returncode == 0, dumped.stderr
    assert "COPY" in dumped.stdout and "commitment_commitments" in dumped.stdout
    return dumped.stdout


#: Messages about a member that no inbox can read: the notification inbox parks both, the
#: check-in inbox the second.
PARKED_TYPES = ("checkin.recorded", "commitment.created")


def _park(rabbitmq_url: str, tenant_id: str, member_id: str, sealed_label: str) -> None:
    """Messages the inboxes cannot read (a schema version from the future), about the
    member: they are parked in the dead letters, with a copy of a sealed value. Published
    under the suite's prefix (the `tap` fixture sets it)."""
    with bus.connect(rabbitmq_url) as connection:
        for event_type in PARKED_TYPES:
            envelope = {
                "id": str(uuid.uuid4()), "type": event_type, "schema_version": 99, "tenant_id": tenant_id,
                "stream_id": f"{event_type.split('.')[0]}-{uuid.uuid4()}", "stream_version": 1, "position": 1,
                "occurred_at": "2026-11-21T09:00:00+00:00", "recorded_at": "2026-11-21T09:00:00+00:00",
                "correlation_id": None, "causation_id": None, "actor": "test",
                "data": {"member_id": member_id, "commitment_id": str(uuid.uuid4()), "label": sealed_label},
            }
            Producer(connection.channel(), exchange=bus.events_exchange()).publish(
                json.dumps(envelope).encode(), routing_key=event_type, content_type="application/json",
                delivery_mode=2)


def _parked(suite: Suite, member_id: str) -> list[str]:
    """The components that parked a message about the member, one entry per message."""
    with read(engine_for(suite.database_url)) as conn:
        return sorted(row.component for row in conn.execute(select(dead_letters.c.component, dead_letters.c.body))
                      if member_id in row.body)


def _seed(suite: Suite, client: httpx.Client, admin: dict[str, str], member_id: str, marker: str,
          coach_id: str) -> list[str]:
    """Commitments (one ended), a profile and a coach for the member; returns the commitment ids."""
    day = (date.today() - timedelta(days=2)).isoformat()
    # The coach first: a commitment that began two days ago reaches its first milestone by
    # time passing (the check-in scheduler tells it as soon as it knows the commitment), and
    # a milestone told before the member had a coach is in no coach's feed. A member's
    # coach is recorded with each commitment they open (commitment.created, coach.assigned).
    assert client.put(suite.url("commitment", f"/v1/coaches/{coach_id}/clients/{member_id}"),
                      headers=admin).status_code == 204
    ids = []
    for suffix in ("", "-2"):
        created = client.post(suite.url("commitment", "/v1/commitments"), headers=admin, json={
            "member_id": member_id, "contact": {"label": f"{marker}-label{suffix}", "relationship": "friend"},
            "timezone": "UTC", "starts_on": day, "duration_days": 90, "motivation": f"{marker}-why{suffix}",
            "exceptions": [{"label": f"{marker}-exception{suffix}", "channels": ["calls"]}],
            "places": [{"label": f"{marker}-place{suffix}"}]})
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    changed = client.put(suite.url("commitment", f"/v1/commitments/{ids[1]}/boundaries"), headers=admin, json={
        "exceptions": [{"label": f"{marker}-exception-changed", "channels": ["texts"]}],
        "places": [{"label": f"{marker}-place-changed"}]})
    assert changed.status_code == 200, changed.text
    ended = client.post(suite.url("commitment", f"/v1/commitments/{ids[1]}/end"), headers=admin,
                        json={"reason": f"{marker}-reason"})
    assert ended.status_code == 200, ended.text
    named = client.put(suite.url("commitment", f"/v1/members/{member_id}"), headers=admin,
                       json={"display_name": f"{marker}-name"})
    assert named.status_code == 200, named.text
    # A kept day, with a note (the coach's feed has the milestone the days so far reached).
    eventually(lambda: client.post(suite.url("checkin", f"/v1/commitments/{ids[0]}/check-ins"), headers=admin,
                                   json={"date": day, "outcome": "kept", "urge": 2, "note": f"{marker}-note"}), 201)
    return ids


FIELDS = ("label", "label-2", "why", "why-2", "reason", "name", "exception", "place", "exception-changed",
          "place-changed")


def test_a_members_data_is_sealed_everywhere_exported_in_clear_and_erased(
        suite: Suite, tap: Probe, rabbitmq_url: str) -> None:
    client = httpx.Client(timeout=30)
    tenant = create_tenant(suite, client, "Acme Support")
    admin = bearer(tenant.api_key)
    receiver = Receiver()
    hook = client.post(suite.url("notification", "/v1/webhook-endpoints"), headers=admin,
                       json={"url": receiver.url(), "event_types": ["*"]})
    assert hook.status_code == 201, hook.text
    tag = uuid.uuid4().hex[:10]
    member, other = f"m1-{tag}", f"m2-{tag}"
    marker, other_marker = f"Zq{uuid.uuid4().hex}", f"Zq{uuid.uuid4().hex}"
    ids = _seed(suite, client, admin, member, marker, f"coach-{tag}")
    other_ids = _seed(suite, client, admin, other, other_marker, f"coach-{tag}")
    member_token = bearer(issue_token(suite, client, tenant, "member", member))

    # Partners get the values in clear (opened at send time); the coach's feed has the member.
    wait_until(lambda: len([b for b in (r.body for r in receiver.at()) if marker.encode() in b]) >= 3, 30,
               message="the webhooks about the member")
    coach_feed = eventually(lambda: client.get(suite.url("notification", f"/v1/coaches/coach-{tag}/notifications"),
                                               headers=admin), 200)
    for who in (member, other):
        wait_until(lambda who=who: any(i["member_id"] == who for i in client.get(
            suite.url("notification", f"/v1/coaches/coach-{tag}/notifications"), headers=admin).json()["items"]),
            30, message=f"{who}'s milestone in the coach's feed")
    assert coach_feed.status_code == 200
    sealed_label = next(m["body"]["data"]["contact"]["label"] for m in tap.wait_for(
        lambda body: body["type"] == "commitment.created" and body["data"]["member_id"] == member))
    for who, label in ((member, sealed_label), (other, "not sealed, not the member's")):
        _park(rabbitmq_url, tenant.id, who, label)
    parked = ["checkin.inbox", "notification.inbox", "notification.inbox"]
    wait_until(lambda: _parked(suite, member) == parked == _parked(suite, other), 30, message="the parked messages")

    # Exported in clear, every field: over HTTP (the member's own token) and by the CLI.
    commitment_part = client.get(suite.url("commitment", f"/v1/members/{member}/export"), headers=member_token)
    notification_part = client.get(suite.url("notification", f"/v1/members/{member}/export"), headers=member_token)
    # The check-in service's copies of the commitments come over the bus: the last change, ended, is there.
    def checkin_export() -> httpx.Response | None:
        answer = client.get(suite.url("checkin", f"/v1/members/{member}/export"), headers=member_token)
        held = answer.json()["data"]["commitments"] if answer.status_code == 200 else []
        return answer if any(c["status"] == "ended" for c in held) else None

    checkin_part = wait_until(checkin_export, 30, message="the check-in service's copy of the ended commitment")
    assert commitment_part.status_code == 200 and notification_part.status_code == 200, notification_part.text
    assert checkin_part.status_code == 200, checkin_part.text
    for field in FIELDS:
        assert f"{marker}-{field}" in commitment_part.text, field
    assert f"{marker}-label" in notification_part.text and f"{marker}-why" in notification_part.text
    held = checkin_part.json()["data"]["commitments"]
    assert [c["commitment_id"] for c in held] == ids and held[0]["check_ins"][0]["note"] == f"{marker}-note"
    for field in ("label", "label-2", "exception", "place-changed"):  # its copies of the commitments
        assert f"{marker}-{field}" in checkin_part.text, field
    assert other_marker not in checkin_part.text
    exported = _nocontact(suite, "members", "export", tenant.id, member)
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document["services"]["commitment"]["data"] == commitment_part.json()["data"]
    assert document["services"]["notification"]["data"]["webhook_messages"]
    # (the scheduler may tell of a missed day meanwhile: the reports are compared, not the histories)
    assert [c["check_ins"] for c in document["services"]["checkin"]["data"]["commitments"]] \
        == [c["check_ins"] for c in held]
    assert document["unavailable"] == {} and "unavailable" not in exported.stderr
    assert all(f"{marker}-{field}" in exported.stdout for field in (*FIELDS, "note"))
    # Bad input: an unknown member, another tenant's, another member's token.
    stranger = create_tenant(suite, client, "Other Support")
    for headers, who in ((admin, f"nobody-{tag}"), (bearer(stranger.api_key), member)):
        assert client.get(suite.url("checkin", f"/v1/members/{who}/export"), headers=headers).status_code == 404
    assert client.get(suite.url("checkin", f"/v1/members/{member}/export"),
                      headers=bearer(issue_token(suite, client, tenant, "member", other))).status_code == 403

    # ... and nowhere else in clear: the database, the bus, the logs.
    assert marker not in _dump(suite) and other_marker not in _dump(suite)
    tap.wait_for(lambda body: body["type"] == "member.profile_updated" and body["data"]["member_id"] == other)
    on_the_bus = json.dumps([m["body"] for m in tap.received])
    assert member in on_the_bus and marker not in on_the_bus and other_marker not in on_the_bus
    assert marker not in suite.logs() and other_marker not in suite.logs()

    # The erasure.
    erased = client.delete(suite.url("commitment", f"/v1/members/{member}"), headers=admin)
    assert erased.status_code == 202 and erased.json() == {"member_id": member, "status": "erasing"}
    status = wait_until(lambda: (lambda s: s if s["status"] == "erased" else None)(
        client.get(suite.url("commitment", f"/v1/members/{member}/erasure"), headers=admin).json()), 30,
        message="every service's report")
    assert status["services"] == {"commitment": "erased", "notification": "erased", "checkin": "erased"}
    again = client.delete(suite.url("commitment", f"/v1/members/{member}"), headers=admin)
    assert again.status_code == 202 and again.json() == {"member_id": member, "status": "erased"}
    assert client.get(suite.url("commitment", f"/v1/members/{member}/erasure"), headers=admin).json() == status
    wait_until(lambda: any(b"member.erasure_requested" in b for b in (r.body for r in receiver.at())), 30,
               message="partners told of the erasure")

    def nothing_left() -> None:
        for commitment_id in ids:
            assert client.get(suite.url("commitment", f"/v1/commitments/{commitment_id}"),
                              headers=admin).status_code == 404
        left = client.get(suite.url("commitment", f"/v1/members/{member}/export"), headers=admin)
        assert left.status_code == 200 and marker not in left.text
        assert left.json()["data"]["commitments"] == [] and left.json()["data"]["profile"] is None
        assert client.get(suite.url("notification", f"/v1/members/{member}/export"),
                          headers=admin).status_code == 404
        assert client.get(suite.url("checkin", f"/v1/members/{member}/export"), headers=admin).status_code == 404
        for commitment_id in ids:
            for path in ("check-ins", "streak", "runs"):
                assert client.get(suite.url("checkin", f"/v1/commitments/{commitment_id}/{path}"),
                                  headers=admin).status_code == 404, path
        feed = client.get(suite.url("notification", f"/v1/coaches/coach-{tag}/notifications"), headers=admin)
        assert all(item["member_id"] != member for item in feed.json()["items"])
        assert not _parked(suite, member)
        # The second member of the tenant is untouched.
        assert _parked(suite, other) == parked
        kept = client.get(suite.url("commitment", f"/v1/commitments/{other_ids[0]}"), headers=admin)
        assert kept.status_code == 200 and kept.json()["contact"]["label"] == f"{other_marker}-label"
        theirs = client.get(suite.url("commitment", f"/v1/members/{other}/export"), headers=admin)
        assert all(f"{other_marker}-{field}" in theirs.text for field in FIELDS)
        their_days = client.get(suite.url("checkin", f"/v1/commitments/{other_ids[0]}/check-ins"), headers=admin)
        assert [day["note"] for day in their_days.json()["items"]] == [f"{other_marker}-note"]
        assert f"{other_marker}-note" in client.get(suite.url("checkin", f"/v1/members/{other}/export"),
                                                    headers=admin).text
        assert any(item["member_id"] == other for item in feed.json()["items"]), feed.json()
        dump = _dump(suite)
        assert marker not in dump and other_marker not in dump

    nothing_left()
    # A rebuild of every service's read models brings nothing back.
    for service, *options in (("commitment",), ("checkin",), ("checkin", "--with-inbox"), ("notification",)):
        rebuilt = _nocontact(suite, service, "rebuild", *options)
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    nothing_left()
    after = _nocontact(suite, "members", "export", tenant.id, member)
    assert after.returncode == 0 and marker not in after.stdout
    assert json.loads(after.stdout)["services"]["notification"] is None
    assert json.loads(after.stdout)["services"]["checkin"] is None
    on_the_bus = json.dumps([m["body"] for m in tap.received])
    logs = suite.logs()
    assert marker not in on_the_bus and marker not in logs and other_marker not in logs
    receiver.close()

