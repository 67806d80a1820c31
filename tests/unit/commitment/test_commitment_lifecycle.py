"""Extending, ending, completing and coaching a commitment; rebuilding it from events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.commitment.domain.commitment import (
    COACH_ASSIGNED,
    COACH_UNASSIGNED,
    COMPLETED,
    ENDED,
    EXTENDED,
    Commitment,
    CommitmentConflict,
    InvalidCommitment,
    Status,
)
from shared.errors import Conflict, ValidationFailed
from shared.events import NewEvent

from ._support import record

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def create(**overrides: Any) -> Commitment:
    kwargs: dict[str, Any] = {
        "commitment_id": "c-1",
        "member_id": "m-1",
        "contact": {"label": "Alex (ex)", "relationship": "romantic"},
        "timezone": "Europe/Berlin",
        "starts_on": "2026-11-21",
        "duration_days": 30,
        "now": NOW,
    }
    kwargs.update(overrides)
    return Commitment.create(**kwargs)


def rebuilt(c: Commitment) -> Commitment:
    return Commitment.from_events(record(c.pending_events, c.stream_id))


# ------------------------------------------------------------------ extend


def test_extend_by_days_moves_the_last_day() -> None:
    c = create()
    [event] = c.extend(now=NOW, additional_days=30)

    assert event.type == EXTENDED
    assert event.data == {
        "commitment_id": "c-1",
        "member_id": "m-1",
        "previous_ends_on": "2026-12-20",
        "ends_on": "2027-01-19",
        "additional_days": 30,
        "indefinite": False,
    }
    assert c.ends_on == date(2027, 1, 19)
    assert c.duration_days == 60
    assert c.version == 2
    assert c.pending_events[-1] is event


def test_extend_indefinitely() -> None:
    c = create()
    [event] = c.extend(now=NOW, indefinite=True)

    assert event.data["previous_ends_on"] == "2026-12-20"
    assert event.data["ends_on"] is None
    assert event.data["additional_days"] is None
    assert event.data["indefinite"] is True
    assert c.ends_on is None
    assert c.duration_days is None
    assert c.status_at(NOW + timedelta(days=5000)) is Status.ACTIVE


def test_extend_on_the_last_day_is_still_allowed() -> None:
    c = create()
    last_day_evening = datetime(2026, 12, 20, 22, 59, tzinfo=UTC)  # 23:59 in Berlin
    c.extend(now=last_day_evening, additional_days=1)
    assert c.ends_on == date(2026, 12, 21)


def test_extending_an_indefinite_commitment_by_days_is_refused() -> None:
    c = create(duration_days=None)
    with pytest.raises(CommitmentConflict):
        c.extend(now=NOW, additional_days=10)
    with pytest.raises(CommitmentConflict):
        c.extend(now=NOW, indefinite=True)
    assert c.version == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "additional_days"),
        ({"additional_days": 0}, "additional_days"),
        ({"additional_days": 3651}, "additional_days"),
        ({"additional_days": "7"}, "additional_days"),
        ({"additional_days": True}, "additional_days"),
        ({"additional_days": 5, "indefinite": True}, "additional_days"),
        ({"indefinite": False}, "additional_days"),
        ({"indefinite": "yes"}, "indefinite"),
    ],
)
def test_extend_input_violations_name_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    c = create()
    with pytest.raises(InvalidCommitment) as exc:
        c.extend(now=NOW, **kwargs)
    assert exc.value.field == field
    assert c.version == 1


def test_extend_accepts_the_maximum() -> None:
    c = create()
    c.extend(now=NOW, additional_days=3650)
    assert c.ends_on == date(2026, 12, 20) + timedelta(days=3650)


def test_extending_an_ended_commitment_conflicts() -> None:
    c = create()
    c.end(now=NOW)
    with pytest.raises(CommitmentConflict):
        c.extend(now=NOW, additional_days=5)


def test_extending_a_completed_commitment_conflicts() -> None:
    c = create()
    later = datetime(2026, 12, 21, 12, 0, tzinfo=UTC)
    c.complete(now=later)
    with pytest.raises(CommitmentConflict):
        c.extend(now=later, additional_days=5)


def test_extending_after_the_period_passed_conflicts_without_completion_event() -> None:
    c = create()
    later = datetime(2026, 12, 21, 12, 0, tzinfo=UTC)
    assert c.recorded_status is Status.ACTIVE
    with pytest.raises(CommitmentConflict):
        c.extend(now=later, additional_days=5)


def test_conflicts_are_distinct_from_validation_errors() -> None:
    assert issubclass(CommitmentConflict, Conflict)
    assert issubclass(InvalidCommitment, ValidationFailed)
    assert not issubclass(CommitmentConflict, ValidationFailed)


# --------------------------------------------------------------------- end


def test_end_records_reason_and_local_date() -> None:
    c = create(timezone="Pacific/Auckland", starts_on="2026-11-22")
    at = datetime(2026, 11, 25, 11, 30, tzinfo=UTC)  # 2026-11-26 00:30 in Auckland
    [event] = c.end(now=at, reason="I'm ready to talk again.")

    assert event.type == ENDED
    assert event.data == {
        "commitment_id": "c-1",
        "member_id": "m-1",
        "reason": "I'm ready to talk again.",
        "ended_on": "2026-11-26",
    }
    assert c.status_at(at) is Status.ENDED
    assert c.ended_on == date(2026, 11, 26)
    assert c.end_reason == "I'm ready to talk again."
    assert c.ended_at == at


def test_end_without_reason() -> None:
    c = create()
    [event] = c.end(now=NOW)
    assert event.data["reason"] is None


def test_end_reason_is_limited() -> None:
    c = create()
    with pytest.raises(InvalidCommitment) as exc:
        c.end(now=NOW, reason="x" * 501)
    assert exc.value.field == "reason"
    with pytest.raises(InvalidCommitment) as exc:
        c.end(now=NOW, reason=12)
    assert exc.value.field == "reason"
    c.end(now=NOW, reason="x" * 500)
    assert c.status_at(NOW) is Status.ENDED


def test_end_twice_conflicts() -> None:
    c = create()
    c.end(now=NOW)
    with pytest.raises(CommitmentConflict):
        c.end(now=NOW)
    assert c.version == 2


def test_end_after_period_passed_conflicts() -> None:
    c = create()
    with pytest.raises(CommitmentConflict):
        c.end(now=datetime(2027, 1, 1, tzinfo=UTC))


def test_an_indefinite_commitment_can_be_ended() -> None:
    c = create(duration_days=None)
    c.end(now=NOW + timedelta(days=900))
    assert c.status_at(NOW + timedelta(days=900)) is Status.ENDED


# ---------------------------------------------------------------- complete


# ends_on 2026-11-21 = a one-day commitment starting that day.
OVER_IN_AUCKLAND = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)  # Auckland: 22nd 00:00


def one_day(zone: str) -> Commitment:
    return create(
        timezone=zone,
        starts_on="2026-11-21",
        duration_days=1,
        now=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
    )


def test_completion_is_decided_in_the_commitments_zone() -> None:
    auckland = one_day("Pacific/Auckland")
    los_angeles = one_day("America/Los_Angeles")
    assert auckland.ends_on == los_angeles.ends_on == date(2026, 11, 21)

    assert auckland.status_at(OVER_IN_AUCKLAND) is Status.COMPLETED
    assert los_angeles.status_at(OVER_IN_AUCKLAND) is Status.ACTIVE

    [event] = auckland.complete(now=OVER_IN_AUCKLAND)
    assert event.type == COMPLETED
    assert event.data == {
        "commitment_id": "c-1",
        "member_id": "m-1",
        "ends_on": "2026-11-21",
    }
    assert los_angeles.complete(now=OVER_IN_AUCKLAND) == []

    # Midnight in Los Angeles (UTC-8 in November) is 08:00Z on the 22nd.
    assert los_angeles.complete(now=datetime(2026, 11, 22, 7, 59, tzinfo=UTC)) == []
    assert len(los_angeles.complete(now=datetime(2026, 11, 22, 8, 0, tzinfo=UTC))) == 1


def test_one_minute_before_midnight_the_last_day_is_not_over() -> None:
    c = one_day("Pacific/Auckland")
    assert c.complete(now=OVER_IN_AUCKLAND - timedelta(minutes=1)) == []
    assert c.status_at(OVER_IN_AUCKLAND - timedelta(minutes=1)) is Status.ACTIVE


def test_complete_is_idempotent() -> None:
    c = one_day("Pacific/Auckland")
    assert len(c.complete(now=OVER_IN_AUCKLAND)) == 1
    assert c.complete(now=OVER_IN_AUCKLAND) == []
    assert c.complete(now=OVER_IN_AUCKLAND + timedelta(days=3)) == []
    assert c.version == 2
    assert c.recorded_status is Status.COMPLETED
    assert c.completed_at == OVER_IN_AUCKLAND


def test_ended_or_indefinite_commitments_never_complete() -> None:
    ended = create()
    ended.end(now=NOW)
    assert ended.complete(now=NOW + timedelta(days=400)) == []
    assert ended.status_at(NOW + timedelta(days=400)) is Status.ENDED

    forever = create(duration_days=None)
    assert forever.complete(now=NOW + timedelta(days=4000)) == []


def test_completed_commitment_cannot_be_ended() -> None:
    c = one_day("Pacific/Auckland")
    c.complete(now=OVER_IN_AUCKLAND)
    with pytest.raises(CommitmentConflict):
        c.end(now=OVER_IN_AUCKLAND)


# ------------------------------------------------------------------ coach


def test_assign_and_unassign_coach() -> None:
    c = create()
    [assigned] = c.assign_coach("coach-1", now=NOW)
    assert assigned.type == COACH_ASSIGNED
    assert assigned.data == {
        "commitment_id": "c-1",
        "member_id": "m-1",
        "coach_id": "coach-1",
        "previous_coach_id": None,
    }
    assert c.coach_id == "coach-1"

    [reassigned] = c.assign_coach("coach-2", now=NOW)
    assert reassigned.data["previous_coach_id"] == "coach-1"
    assert c.coach_id == "coach-2"

    [unassigned] = c.unassign_coach(now=NOW)
    assert unassigned.type == COACH_UNASSIGNED
    assert unassigned.data == {
        "commitment_id": "c-1",
        "member_id": "m-1",
        "coach_id": "coach-2",
    }
    assert c.coach_id is None
    assert c.version == 4


def test_coach_commands_are_idempotent() -> None:
    c = create()
    c.assign_coach("coach-1", now=NOW)
    assert c.assign_coach("coach-1", now=NOW) == []
    assert c.unassign_coach(now=NOW, coach_id="coach-other") == []
    assert c.coach_id == "coach-1"
    assert len(c.unassign_coach(now=NOW, coach_id="coach-1")) == 1
    assert c.unassign_coach(now=NOW) == []
    assert c.version == 3


@pytest.mark.parametrize("coach_id", ["", "  ", "c" * 129, None, 5])
def test_invalid_coach_id(coach_id: object) -> None:
    with pytest.raises(InvalidCommitment) as exc:
        create().assign_coach(coach_id, now=NOW)
    assert exc.value.field == "coach_id"


def test_coach_may_be_assigned_to_a_finished_commitment() -> None:
    c = create()
    c.end(now=NOW)
    assert len(c.assign_coach("coach-1", now=NOW)) == 1


# ----------------------------------------------------------------- rebuild


def test_rebuilt_from_events_equals_state_after_commands() -> None:
    c = create(motivation="peace")
    c.assign_coach("coach-1", now=NOW)
    c.extend(now=NOW + timedelta(days=1), additional_days=10)
    c.extend(now=NOW + timedelta(days=2), indefinite=True)
    c.unassign_coach(now=NOW + timedelta(days=3))
    c.end(now=NOW + timedelta(days=4), reason="done")

    copy = rebuilt(c)
    assert copy == c
    assert copy.version == c.version == 6
    assert copy.expected_version == 6  # loaded: nothing pending
    assert copy.pending_events == []
    assert copy.created_at == NOW
    assert copy.status_at(NOW) is Status.ENDED


def test_version_counts_events_and_expected_version_is_the_loaded_one() -> None:
    c = rebuilt(create())
    assert (c.version, c.expected_version) == (1, 1)
    c.extend(now=NOW, additional_days=1)
    c.assign_coach("coach-1", now=NOW)
    assert (c.version, c.expected_version) == (3, 1)
    assert [e.type for e in c.pending_events] == [EXTENDED, COACH_ASSIGNED]


def test_completion_survives_rebuild() -> None:
    c = one_day("Pacific/Auckland")
    c.complete(now=OVER_IN_AUCKLAND)
    copy = rebuilt(c)
    assert copy == c
    assert copy.recorded_status is Status.COMPLETED


def test_from_events_refuses_empty_or_headless_streams() -> None:
    with pytest.raises(ValueError):
        Commitment.from_events([])
    c = create()
    c.end(now=NOW)
    events = record(c.pending_events, c.stream_id)
    with pytest.raises(ValueError):
        Commitment.from_events(events[1:])
    with pytest.raises(ValueError):
        Commitment.from_events([events[0], events[0]])


def test_unknown_event_types_count_towards_version_only() -> None:
    c = create()
    events = [
        *c.pending_events,
        NewEvent(type="commitment.renamed", data={"x": 1}, occurred_at=NOW),
    ]
    copy = Commitment.from_events(record(events, c.stream_id))
    assert copy.version == 2
    copy.version = 1
    assert copy == c
