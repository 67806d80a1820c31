"""What partners receive and what coaches see, derived from one event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.notification.domain.messages import (
    FEED_KINDS,
    WEBHOOK_EVENT_TYPES,
    feed_data,
    feed_kind,
    matches,
    message_id,
    pinned_until,
    public_data,
    webhook_body,
)

EVENT_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_message_id_is_derived_from_the_event_id_only() -> None:
    assert message_id(EVENT_ID) == "msg_12345678123456781234567812345678"
    assert message_id(str(EVENT_ID)) == message_id(EVENT_ID)


def test_webhook_body_is_the_contract_shape_without_the_private_note() -> None:
    occurred = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    data = {"commitment_id": "c", "member_id": "m", "outcome": "slipped", "note": "private"}
    body = json.loads(
        webhook_body(event_type="checkin.recorded", event_id=EVENT_ID, occurred_at=occurred, sequence=4, data=data)
    )
    assert body == {
        "type": "checkin.recorded",
        "timestamp": "2026-01-02T02:04:05Z",
        "data": {
            "commitment_id": "c",
            "member_id": "m",
            "outcome": "slipped",
            "event_id": str(EVENT_ID),
            "sequence": 4,
        },
    }
    assert data["note"] == "private"  # the event itself is not changed


def test_webhook_body_bytes_are_deterministic() -> None:
    occurred = datetime(2026, 1, 1, tzinfo=UTC)
    one = webhook_body(event_type="x", event_id=EVENT_ID, occurred_at=occurred, sequence=1, data={"b": 1, "a": 2})
    two = webhook_body(event_type="x", event_id=EVENT_ID, occurred_at=occurred, sequence=1, data={"a": 2, "b": 1})
    assert one == two


def test_naive_timestamps_are_taken_as_utc() -> None:
    body = webhook_body(event_type="x", event_id=EVENT_ID, occurred_at=datetime(2026, 1, 1, 12), sequence=1, data={})
    assert json.loads(body)["timestamp"] == "2026-01-01T12:00:00Z"


@pytest.mark.parametrize("event_type", WEBHOOK_EVENT_TYPES)
def test_wildcard_and_named_subscriptions(event_type: str) -> None:
    assert matches(["*"], event_type)
    assert matches([event_type], event_type)
    assert not matches([t for t in WEBHOOK_EVENT_TYPES if t != event_type], event_type)


@pytest.mark.parametrize(
    "event_type", ["coach.unassigned", "tenant.created", "api_key.issued", "webhook_endpoint.created"]
)
def test_events_outside_the_contract_are_never_sent_even_to_wildcards(event_type: str) -> None:
    assert not matches(["*"], event_type)


def test_public_data_drops_only_private_keys() -> None:
    assert public_data({"note": "x", "urge": 3, "notes_count": 1}) == {"urge": 3, "notes_count": 1}


@pytest.mark.parametrize(
    ("event_type", "data", "kind"),
    [
        ("checkin.recorded", {"outcome": "slipped"}, "slip"),
        ("checkin.recorded", {"outcome": "kept"}, None),
        ("checkin.corrected", {"outcome": "slipped", "previous_outcome": "kept"}, "slip"),
        ("checkin.corrected", {"outcome": "slipped", "previous_outcome": None}, "slip"),
        # A slip corrected into a slip (e.g. another channel) is not news twice.
        ("checkin.corrected", {"outcome": "slipped", "previous_outcome": "slipped"}, None),
        ("checkin.corrected", {"outcome": "kept", "previous_outcome": "slipped"}, None),
        ("checkin.missed", {}, "missed_day"),
        ("client.at_risk", {}, "at_risk"),
        ("streak.milestone_reached", {}, "milestone"),
        ("streak.milestone_revoked", {}, "milestone_revoked"),
        ("checkin.withdrawn", {"previous_outcome": "slipped"}, None),
        ("streak.reset", {}, None),
        ("commitment.created", {}, None),
        ("member.sos", {}, "sos"),
        ("urge.logged", {"outcome": "reached_out"}, "urge_reached_out"),
        ("urge.logged", {"outcome": "passed"}, None),
        ("urge.logged", {"outcome": "ongoing"}, None),
        ("pause.scheduled", {}, None),
        ("checkin.reminder_due", {}, None),
        ("commitment.boundaries_changed", {}, None),
    ],
)
def test_feed_kinds(event_type: str, data: dict[str, object], kind: str | None) -> None:
    found = feed_kind(event_type, data)
    assert found == kind
    assert found is None or found in FEED_KINDS


def test_an_sos_message_is_for_the_coach_never_for_webhooks() -> None:
    sos = {"commitment_id": "c", "member_id": "m", "message": "please call", "sos_id": "s"}
    body = json.loads(webhook_body(event_type="member.sos", event_id=EVENT_ID, occurred_at=datetime(2026, 1, 1),
                                   sequence=1, data=sos))
    assert "message" not in body["data"] and "please call" not in json.dumps(body)
    assert feed_data(sos) == sos


def test_notes_are_left_out_at_any_depth_of_webhooks_and_the_feed() -> None:
    kept = {"outcome": "kept", "note": "mine", "necessary_contact": {"exception": 0, "note": "handover ran late"},
            "contact_attempts": [{"channel": "texts", "answered": False, "note": "x"}]}
    expected = {"outcome": "kept", "necessary_contact": {"exception": 0},
                "contact_attempts": [{"channel": "texts", "answered": False}]}
    assert public_data(kept) == expected == feed_data(kept)


def test_an_urges_trigger_and_coping_reach_partners_but_never_the_coach_feed() -> None:
    urge = {"commitment_id": "c", "member_id": "m", "urge_id": "u", "intensity": 9, "outcome": "reached_out",
            "trigger": "saw their car", "coping": "called my sister"}
    assert feed_data(urge) == {"commitment_id": "c", "member_id": "m", "urge_id": "u", "intensity": 9,
                               "outcome": "reached_out"}
    assert public_data(urge) == urge  # the platform's own member's words, documented as such in the catalogue


def test_only_an_sos_is_pinned_and_for_a_day() -> None:
    at = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert pinned_until("sos", at) == at + timedelta(hours=24)
    assert all(pinned_until(kind, at) is None for kind in FEED_KINDS if kind != "sos")
