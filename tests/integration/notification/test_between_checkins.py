"""Between check-ins in the notification service (PostgreSQL, RabbitMQ, the service over
HTTP with its workers): an SOS pinned on top of the coach's feed until acknowledged or for a
day, its message for the coach only; urges that ended in reaching out in the feed; the new
event types delivered to webhooks. The events are appended as the check-in and commitment
services record them (personal values sealed under the member's key)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from services.notification.projections import feed_projection
from services.notification.tables import feed_items
from shared import eventstore, keyring
from shared.db import read
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.projection import rebuild
from shared.testing import wait_until
from tests.integration.notification.conftest import NotificationHarness, Tenant, commitment_data
from tests.support.catalogue import problems
from tests.support.receiver import Receiver

NEW_TYPES = ["commitment.boundaries_changed", "checkin.reminder_due", "urge.logged", "member.sos",
             "pause.scheduled", "pause.cancelled"]


def _emit_sealed(harness: NotificationHarness, tenant: Tenant, event_type: str, data: dict[str, Any],
                 personal: tuple[str, ...] = (), occurred_at: datetime | None = None) -> RecordedEvent:
    """An event on the commitment's check-in stream, its personal values sealed as the
    check-in service seals them."""
    now = datetime.now(UTC)
    keyring.ensure_key(harness.engine, tenant.id, data["member_id"], now=now)
    event = NewEvent(event_type, data, occurred_at=occurred_at)
    with harness.engine.begin() as conn:
        if personal:
            event = keyring.seal_event(keyring.member_key(conn, tenant.id, data["member_id"]), event, personal)
        (recorded,) = eventstore.append(conn, f"checkin-{data['commitment_id']}", [event],
                                        metadata=Metadata(tenant_id=tenant.id, actor="member:m-1"), now=now)
    return recorded


def _feed(client: Any, coach_id: str = "coach-1", **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/coaches/{coach_id}/notifications", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_an_sos_is_pinned_on_top_until_acknowledged_and_its_message_is_the_coachs_only(
        postgres_url: str, amqp_url: str, start_notification: Any, receiver: Receiver) -> None:
    harness = start_notification(postgres_url)
    tenant, other_tenant = harness.tenant("A"), harness.tenant("B")
    endpoint = harness.create_endpoint(tenant, receiver.url("/hooks"), ["*"])
    mine = commitment_data("m-1")
    harness.emit(tenant, "coach.assigned", {**mine, "coach_id": "coach-1", "previous_coach_id": None})
    message = f"please call me {uuid.uuid4().hex}"

    # A day and more ago: an SOS no longer pinned, an urge that ended in reaching out.
    old_sos = _emit_sealed(harness, tenant, "member.sos", {**mine, "coach_id": "coach-1", "message": "old one"},
                           ("message",), occurred_at=datetime.now(UTC) - timedelta(hours=25))
    urge = {"at": "2026-01-05T02:00:00Z", "trigger": "their birthday", "coping": None}
    _emit_sealed(harness, tenant, "urge.logged", {**mine, **urge, "urge_id": "u-1", "intensity": 9,
                                                  "outcome": "reached_out"}, ("trigger", "coping"))
    _emit_sealed(harness, tenant, "urge.logged", {**mine, **urge, "urge_id": "u-2", "intensity": 3,
                                                  "outcome": "passed"}, ("trigger", "coping"))
    sos = _emit_sealed(harness, tenant, "member.sos", {**mine, "coach_id": "coach-1", "message": message},
                       ("message",))
    harness.emit(tenant, "streak.milestone_reached", {**mine, "milestone": 7, "current_days": 7})
    pause = {"pause_id": "p-1", "from": "2026-02-01", "to": "2026-02-03"}
    _emit_sealed(harness, tenant, "pause.scheduled", {**mine, **pause, "reason": "hospital"}, ("reason",))
    _emit_sealed(harness, tenant, "pause.cancelled", {**mine, **pause})
    _emit_sealed(harness, tenant, "checkin.reminder_due", {**mine, "date": "2026-01-06",
                                                           "reminder_local_time": "20:00"})
    harness.emit(tenant, "commitment.boundaries_changed", {**mine, "exceptions": [], "places": []},
                 stream_id=f"commitment-{mine['commitment_id']}")

    coach = harness.token_client(tenant, "coach", "coach-1")
    items = wait_until(lambda: (lambda i: i if len(i) >= 4 else None)(_feed(coach)["items"]), 15,
                       message="the feed items")
    # The SOS on top although a milestone came after it; then the rest, newest first.
    assert [(i["kind"], i["pinned"]) for i in items] == [
        ("sos", True), ("milestone", False), ("urge_reached_out", False), ("sos", False)]
    top = items[0]
    assert top["event_id"] == str(sos.id) and top["data"]["message"] == message
    assert datetime.fromisoformat(top["pinned_until"]) == sos.occurred_at + timedelta(hours=24)
    assert top["acknowledged_at"] is None and items[3]["event_id"] == str(old_sos.id)
    assert items[2]["data"]["intensity"] == 9
    assert "trigger" not in items[2]["data"] and "their birthday" not in str(items)  # the member's own words
    # Stored sealed under the member's key, like every personal value.
    with read(harness.engine) as conn:
        stored = conn.execute(select(feed_items.c.data).where(feed_items.c.event_id == str(sos.id))).scalar_one()
    assert keyring.is_sealed(stored["message"]) and message not in str(stored)

    # Pinned items come first on the first page, outside the limit; later pages do not repeat them.
    first = _feed(coach, limit=1)
    assert [i["kind"] for i in first["items"]] == ["sos", "milestone"]
    second = _feed(coach, limit=2, cursor=first["next_cursor"])
    assert [i["kind"] for i in second["items"]] == ["urge_reached_out", "sos"] and second["next_cursor"] is None
    assert [i["pinned"] for i in _feed(coach, kind="sos")["items"]] == [True, False]
    assert _feed(coach, kind="urge_reached_out")["items"][0]["data"]["urge_id"] == "u-1"

    # Webhooks: every new type, as the event catalogue documents it; the SOS without its message.
    wanted = set(NEW_TYPES)
    got = wait_until(lambda: (lambda r: r if {q.json["type"] for q in r} >= wanted else None)(
        receiver.at("/hooks")), 15, message="every new type delivered")
    for delivered in got:
        if delivered.json["type"] in wanted:
            assert problems(delivered.json["type"], delivered.json["data"]) == []
    sent = {q.json["data"]["event_id"]: q for q in got if q.json["type"] == "member.sos"}
    assert set(sent) == {str(old_sos.id), str(sos.id)}
    assert all("message" not in q.json["data"] and b"please call" not in q.body for q in sent.values())
    assert all(q.verifies_with(endpoint["secret"]) for q in got)
    # Personal values are sent opened, as for a contact's label.
    assert {q.json["data"]["trigger"] for q in got if q.json["type"] == "urge.logged"} == {"their birthday"}

    # Who may acknowledge: that coach, or an admin; nobody else, nothing of another tenant.
    path = f"/v1/coaches/coach-1/notifications/{top['id']}/acknowledge"
    assert harness.token_client(tenant, "coach", "coach-2").post(path).status_code == 403
    assert harness.token_client(tenant, "member", "m-1").post(path).status_code == 403
    assert other_tenant.client.post(path).status_code == 404
    assert coach.post("/v1/coaches/coach-1/notifications/999999999/acknowledge").status_code == 404
    acknowledged = coach.post(path)
    assert acknowledged.status_code == 200, acknowledged.text
    body = acknowledged.json()
    assert body["pinned"] is False and body["acknowledged_by"] == "coach:coach-1" and body["acknowledged_at"]
    again = tenant.client.post(path)
    assert again.status_code == 200 and again.json()["acknowledged_at"] == body["acknowledged_at"]
    assert again.json()["acknowledged_by"] == "coach:coach-1"  # the first acknowledgement stands
    # Now in its place by time, under the milestone that came after it.
    assert [(i["kind"], i["pinned"]) for i in _feed(coach)["items"]] == [
        ("milestone", False), ("sos", False), ("urge_reached_out", False), ("sos", False)]

    # A rebuild of the feed from the store keeps the acknowledgement.
    rebuild(harness.engine, feed_projection())
    rebuilt = {i["event_id"]: i for i in _feed(coach)["items"]}
    assert rebuilt[str(sos.id)]["acknowledged_at"] == body["acknowledged_at"]
    assert rebuilt[str(sos.id)]["pinned"] is False and rebuilt[str(sos.id)]["data"]["message"] == message
