"""Builders for check-in events as the store records them (shared.events.RecordedEvent)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from services.checkin.domain.checkins import (
    CHECKIN_CORRECTED,
    CHECKIN_RECORDED,
    CheckIn,
    Initiator,
    Outcome,
    Slip,
    checkin_corrected_data,
    checkin_recorded_data,
)
from shared.events import NewEvent, RecordedEvent

STREAM = "checkin-c1"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def check_in(day: date, outcome: Outcome | str) -> CheckIn:
    """A valid report of ``day``; slipped days get a texts slip started by the member."""
    outcome = Outcome(outcome)
    slip = Slip("texts", Initiator.ME) if outcome == Outcome.SLIPPED else None
    return CheckIn(day=day, outcome=outcome, urge=5, mood=3, slip=slip)


def event(
    day: date,
    outcome: Outcome | str,
    version: int,
    *,
    corrected: bool = False,
    event_id: uuid.UUID | None = None,
) -> RecordedEvent:
    """A stored ``checkin.recorded`` (or ``checkin.corrected``) event at ``version``."""
    report = check_in(day, outcome)
    if corrected:
        data = checkin_corrected_data(commitment_id="c1", member_id="m1", check_in=report)
    else:
        data = checkin_recorded_data(commitment_id="c1", member_id="m1", check_in=report)
    return RecordedEvent(
        id=event_id or uuid.uuid4(),
        type=CHECKIN_CORRECTED if corrected else CHECKIN_RECORDED,
        schema_version=1,
        stream_id=STREAM,
        stream_version=version,
        position=version,
        data=data,
        tenant_id="t1",
        correlation_id=None,
        causation_id=None,
        actor="m1",
        occurred_at=EPOCH,
        recorded_at=EPOCH,
    )


def events(reports: dict[date, str]) -> list[RecordedEvent]:
    """One ``checkin.recorded`` per day, versions in date order from 1."""
    return [
        event(day, outcome, version)
        for version, (day, outcome) in enumerate(sorted(reports.items()), start=1)
    ]


def stored(stream: list[RecordedEvent], new: list[NewEvent]) -> list[RecordedEvent]:
    """`stream` with `new` appended as the store records them (the next versions)."""
    version = len(stream)
    return stream + [
        RecordedEvent(
            id=e.id, type=e.type, schema_version=e.schema_version, stream_id=STREAM, stream_version=version + offset,
            position=version + offset, data=e.data, tenant_id="t1", correlation_id=None, causation_id=None,
            actor="m1", occurred_at=e.occurred_at or EPOCH, recorded_at=e.occurred_at or EPOCH,
        )
        for offset, e in enumerate(new, start=1)
    ]
