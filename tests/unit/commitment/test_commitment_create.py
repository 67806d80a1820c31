"""Creating a commitment: the contract's validation rules, each violation naming its field."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.commitment.domain.commitment import (
    CHANNELS,
    CREATED,
    Commitment,
    Contact,
    InvalidCommitment,
    Status,
)
from shared.calendar import is_valid_timezone, local_today

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # 13:00 in Berlin, same date


def create(**overrides: Any) -> Commitment:
    kwargs: dict[str, Any] = {
        "commitment_id": "c-1",
        "member_id": "m-123",
        "contact": {"label": "Alex (ex)", "relationship": "romantic"},
        "channels": ["calls", "texts", "social_media"],
        "timezone": "Europe/Berlin",
        "starts_on": "2026-11-21",
        "duration_days": 30,
        "motivation": "I want my peace back.",
        "now": NOW,
    }
    kwargs.update(overrides)
    return Commitment.create(**kwargs)


def test_create_emits_created_event_with_documented_data() -> None:
    c = create()

    assert len(c.pending_events) == 1
    event = c.pending_events[0]
    assert event.type == CREATED
    assert event.occurred_at == NOW
    assert event.data == {
        "commitment_id": "c-1",
        "member_id": "m-123",
        "contact": {"label": "Alex (ex)", "relationship": "romantic"},
        "channels": ["calls", "texts", "social_media"],
        "timezone": "Europe/Berlin",
        "starts_on": "2026-11-21",
        "duration_days": 30,
        "ends_on": "2026-12-20",
        "motivation": "I want my peace back.",
        "exceptions": [],
        "places": [],
    }


def test_create_sets_state() -> None:
    c = create()

    assert c.id == "c-1"
    assert c.stream_id == "commitment-c-1"
    assert c.member_id == "m-123"
    assert c.contact == Contact(label="Alex (ex)", relationship="romantic")
    assert c.channels == ("calls", "texts", "social_media")
    assert c.starts_on == date(2026, 11, 21)
    assert c.ends_on == date(2026, 12, 20)  # the last day: 30 days incl. the first
    assert c.duration_days == 30
    assert c.coach_id is None
    assert c.created_at == NOW
    assert c.status_at(NOW) is Status.ACTIVE
    assert c.version == 1
    assert c.expected_version == 0


def test_one_day_commitment_ends_on_its_start() -> None:
    assert create(duration_days=1).ends_on == date(2026, 11, 21)


def test_indefinite_commitment_has_no_end() -> None:
    c = create(duration_days=None)
    assert c.ends_on is None
    assert c.duration_days is None
    assert c.pending_events[0].data["ends_on"] is None


def test_defaults_all_channels_and_no_motivation() -> None:
    c = create(channels=None, motivation=None)
    assert c.channels == CHANNELS
    assert c.motivation is None


def test_contact_may_be_given_as_value_object() -> None:
    c = create(contact=Contact(label="Mum", relationship="family"))
    assert c.contact == Contact(label="Mum", relationship="family")


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        # 11:00Z on the 21st is already the 22nd in Auckland (UTC+13 in November) ...
        ("Pacific/Auckland", date(2026, 11, 22)),
        # ... and still the early morning of the 21st in Los Angeles.
        ("America/Los_Angeles", date(2026, 11, 21)),
    ],
)
def test_starts_on_defaults_to_today_in_the_commitments_zone(
    zone: str, expected: date
) -> None:
    c = create(
        timezone=zone, starts_on=None, now=datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
    )
    assert c.starts_on == expected


def test_starts_on_accepts_a_date_value() -> None:
    assert create(starts_on=date(2026, 11, 1)).starts_on == date(2026, 11, 1)


@pytest.mark.parametrize(
    ("offset_days", "ok"),
    [(-365, True), (-366, False), (30, True), (31, False), (0, True)],
)
def test_starts_on_bounds_are_inclusive(offset_days: int, ok: bool) -> None:
    today = date(2026, 11, 21)
    starts_on = today + timedelta(days=offset_days)
    if ok:
        assert create(starts_on=starts_on).starts_on == starts_on
    else:
        with pytest.raises(InvalidCommitment) as exc:
            create(starts_on=starts_on)
        assert exc.value.field == "starts_on"


def test_starts_on_bounds_follow_the_zone_not_utc() -> None:
    # In Auckland it is already 2026-11-22, so +30 days reaches 2026-12-22 there,
    # a day that would be +31 (refused) for a commitment in Los Angeles.
    now = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
    assert create(timezone="Pacific/Auckland", starts_on="2026-12-22", now=now)
    with pytest.raises(InvalidCommitment) as exc:
        create(timezone="America/Los_Angeles", starts_on="2026-12-22", now=now)
    assert exc.value.field == "starts_on"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"member_id": ""}, "member_id"),
        ({"member_id": "   "}, "member_id"),
        ({"member_id": "m" * 129}, "member_id"),
        ({"member_id": 123}, "member_id"),
        ({"member_id": None}, "member_id"),
        ({"contact": None}, "contact"),
        ({"contact": "Alex"}, "contact"),
        ({"contact": {"relationship": "friend"}}, "contact.label"),
        ({"contact": {"label": "", "relationship": "friend"}}, "contact.label"),
        ({"contact": {"label": "x" * 201, "relationship": "friend"}}, "contact.label"),
        ({"contact": {"label": 7, "relationship": "friend"}}, "contact.label"),
        ({"contact": {"label": "Alex"}}, "contact.relationship"),
        (
            {"contact": {"label": "Alex", "relationship": "enemy"}},
            "contact.relationship",
        ),
        (
            {"contact": {"label": "Alex", "relationship": ["friend"]}},
            "contact.relationship",
        ),
        ({"channels": []}, "channels"),
        ({"channels": ["calls", "calls"]}, "channels"),
        ({"channels": ["fax"]}, "channels"),
        ({"channels": "calls"}, "channels"),
        ({"channels": [1]}, "channels"),
        ({"channels": {"calls": True}}, "channels"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"timezone": "europe/berlin"}, "timezone"),
        ({"timezone": "localtime"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": "A" * 200}, "timezone"),
        ({"timezone": 1}, "timezone"),
        ({"starts_on": "2026-13-01"}, "starts_on"),
        ({"starts_on": "20261121"}, "starts_on"),
        ({"starts_on": "21.11.2026"}, "starts_on"),
        ({"starts_on": 20261121}, "starts_on"),
        ({"starts_on": datetime(2026, 11, 21, tzinfo=UTC)}, "starts_on"),
        ({"duration_days": 0}, "duration_days"),
        ({"duration_days": -1}, "duration_days"),
        ({"duration_days": 3651}, "duration_days"),
        ({"duration_days": "30"}, "duration_days"),
        ({"duration_days": 30.0}, "duration_days"),
        ({"duration_days": True}, "duration_days"),
        ({"motivation": "x" * 2001}, "motivation"),
        ({"motivation": 42}, "motivation"),
    ],
)
def test_invalid_input_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidCommitment) as exc:
        create(**overrides)
    assert exc.value.field == field
    assert exc.value.errors == {field: [exc.value.message]}
    assert exc.value.message


@pytest.mark.parametrize(
    "overrides",
    [
        {"member_id": "m"},
        {"member_id": "m" * 128},
        {"contact": {"label": "A", "relationship": "other"}},
        {"contact": {"label": "x" * 200, "relationship": "professional"}},
        {"channels": ["in_person"]},
        {"channels": list(CHANNELS)},
        {"timezone": "UTC"},
        {"timezone": "America/Argentina/Buenos_Aires"},
        {"duration_days": 3650},
        {"motivation": ""},
        {"motivation": "x" * 2000},
    ],
)
def test_edge_values_are_accepted(overrides: dict[str, Any]) -> None:
    assert create(**overrides).version == 1


@pytest.mark.parametrize(
    "relationship", ["romantic", "family", "friend", "professional", "other"]
)
def test_every_relationship_is_accepted(relationship: str) -> None:
    c = create(contact={"label": "X", "relationship": relationship})
    assert c.contact.relationship == relationship


def test_all_violations_are_reported_together() -> None:
    with pytest.raises(InvalidCommitment) as exc:
        create(member_id="", channels=["fax"], duration_days=0, motivation="x" * 2001)
    assert set(exc.value.errors) == {
        "member_id",
        "channels",
        "duration_days",
        "motivation",
    }
    assert exc.value.field == "member_id"


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        create(now=datetime(2026, 11, 21, 12, 0))


def test_sensitive_text_stays_out_of_repr() -> None:
    text = repr(create(motivation="my secret reason"))
    assert "Alex" not in text
    assert "my secret reason" not in text


def test_timezone_helpers() -> None:
    assert is_valid_timezone("Europe/Berlin")
    assert not is_valid_timezone("Europe/Atlantis")
    assert not is_valid_timezone(None)
    assert not is_valid_timezone("Factory")  # one zone validation with the check-in service
    # Across the spring-forward night in Berlin (2026-03-29, 02:00 -> 03:00).
    assert local_today(
        "Europe/Berlin", datetime(2026, 3, 28, 22, 59, tzinfo=UTC)
    ) == date(2026, 3, 28)
    assert local_today(
        "Europe/Berlin", datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    ) == date(2026, 3, 29)
    # After it, midnight is 22:00Z.
    assert local_today(
        "Europe/Berlin", datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    ) == date(2026, 3, 30)
    with pytest.raises(ValueError):
        local_today("Europe/Berlin", datetime(2026, 3, 29))
