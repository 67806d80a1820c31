"""Reminders (CONTRACT v1.1): at the tenant's ``reminder_local_time`` in the member's zone, a
day not reported yet gets ``checkin.reminder_due``, once; across daylight-saving changes (a
spring-forward day where the time does not exist, a fall-back day where it exists twice)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from services.checkin.domain import (
    CommitmentState,
    Pause,
    TenantSettings,
    next_due,
    pass_time,
    record,
    reminder_at,
    schedule_pause,
)
from services.checkin.domain.settings import change_settings
from shared.errors import ValidationFailed
from tests.unit.checkin.factories import check_in, stored
from tests.unit.checkin.test_history import COMMITMENT

BERLIN = replace(COMMITMENT, starts_on=date(2027, 3, 1), created_at=datetime(2027, 2, 1, tzinfo=UTC))
SPRING_FORWARD = date(2027, 3, 28)  # Berlin: 02:00 -> 03:00
FALL_BACK = date(2027, 10, 31)  # Berlin: 03:00 -> 02:00


def reminders_over(day: date, local_time: str, *, report_at: datetime | None = None) -> list[tuple[datetime, str]]:
    """Every scheduler pass through `day` (every 5 minutes, from the day before to the day
    after, folding what each told): the reminders told, with the pass that told them."""
    settings = TenantSettings(reminder_local_time=local_time, backdate_days=365)
    commitment = replace(BERLIN, starts_on=day - timedelta(days=3))
    state = CommitmentState(commitment.starts_on, days="kk", urges="--")  # the day before: unreported
    stream: list = []
    told = []
    at = datetime.combine(day - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    while at < datetime.combine(day + timedelta(days=2), datetime.min.time(), tzinfo=UTC):
        decisions = []
        if report_at is not None and at >= report_at and not state.reported(day):
            decisions.append(record(state, commitment, settings, check_in(day, "kept"), at))
            state = decisions[-1].state
        decisions.append(pass_time(state, commitment, settings, at))
        state = decisions[-1].state
        for decision in decisions:
            stream = stored(stream, decision.events)
            told.extend((at, e.data["date"]) for e in decision.events if e.type == "checkin.reminder_due")
        at += timedelta(minutes=5)
    # What was decided pass by pass is what the stream says, folded at once (the reminders told).
    assert CommitmentState.folded(commitment.starts_on, stream).reminded_on == state.reminded_on
    return told


def test_on_a_spring_forward_day_a_time_that_does_not_exist_reminds_once() -> None:
    # 02:30 does not exist on 2027-03-28 in Berlin: read as 03:30 CEST (01:30 UTC).
    assert reminder_at("Europe/Berlin", SPRING_FORWARD, datetime.strptime("02:30", "%H:%M").time()) == \
        datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    told = [(at, day) for at, day in reminders_over(SPRING_FORWARD, "02:30") if day == SPRING_FORWARD.isoformat()]
    assert told == [(datetime(2027, 3, 28, 1, 30, tzinfo=UTC), "2027-03-28")]


def test_on_a_fall_back_day_a_time_that_exists_twice_reminds_once() -> None:
    # 02:30 comes twice on 2027-10-31 in Berlin (00:30 and 01:30 UTC): the first one.
    told = [(at, day) for at, day in reminders_over(FALL_BACK, "02:30") if day == FALL_BACK.isoformat()]
    assert told == [(datetime(2027, 10, 31, 0, 30, tzinfo=UTC), "2027-10-31")]


def test_every_day_once_and_never_a_reported_day() -> None:
    told = reminders_over(FALL_BACK, "20:00")
    assert [day for _, day in told] == ["2027-10-30", "2027-10-31", "2027-11-01"]
    # 20:00 on 10-31 is 19:00 UTC (CET again).
    assert (datetime(2027, 10, 31, 19, 0, tzinfo=UTC), "2027-10-31") in told
    reported = reminders_over(FALL_BACK, "20:00", report_at=datetime(2027, 10, 31, 12, tzinfo=UTC))
    assert "2027-10-31" not in [day for _, day in reported]


def test_no_reminder_without_the_setting_or_on_a_paused_day() -> None:
    at = datetime(2027, 3, 10, 20, tzinfo=UTC)
    assert not [e for e in pass_time(CommitmentState(BERLIN.starts_on), BERLIN, TenantSettings(), at).events
                if e.type == "checkin.reminder_due"]
    settings = TenantSettings(reminder_local_time="20:00")
    paused = schedule_pause(CommitmentState(BERLIN.starts_on), BERLIN, settings,
                            Pause("p", date(2027, 3, 10), date(2027, 3, 10)), at).state
    assert not [e for e in pass_time(paused, BERLIN, settings, at).events if e.type == "checkin.reminder_due"]
    told = [e for e in pass_time(CommitmentState(BERLIN.starts_on), BERLIN, settings, at).events
            if e.type == "checkin.reminder_due"]
    assert [e.data for e in told] == [{"commitment_id": "c1", "member_id": "m1", "date": "2027-03-10",
                                       "reminder_local_time": "20:00"}]


def test_the_scheduler_looks_again_at_the_reminder_time() -> None:
    settings = TenantSettings(reminder_local_time="20:00")
    assert next_due(BERLIN, settings, datetime(2027, 3, 10, 12, tzinfo=UTC)) == datetime(2027, 3, 10, 19,
                                                                                          tzinfo=UTC)


@pytest.mark.parametrize("value", ["24:00", "7:00", "noon", "12:60", 1200])
def test_the_setting_is_hh_mm_or_null(value: object) -> None:
    with pytest.raises(ValidationFailed) as raised:
        change_settings("t1", TenantSettings(), {"reminder_local_time": value}, datetime.now(UTC))
    assert raised.value.field == "reminder_local_time"
    new, _ = change_settings("t1", TenantSettings(reminder_local_time="20:00"), {"reminder_local_time": None},
                             datetime.now(UTC))
    assert new.reminder_local_time is None
