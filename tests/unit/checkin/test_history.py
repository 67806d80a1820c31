"""The decisions of the check-in commands over a commitment's state: what a report, a
correction and the passing of time add, told once; when the scheduler looks next."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from services.checkin.domain import (
    NEVER,
    CheckIn,
    CheckInRejected,
    CommitmentNotActive,
    CommitmentState,
    CommitmentStatus,
    DayAlreadyReported,
    DayNotReported,
    KnownCommitment,
    Outcome,
    RiskThresholds,
    StreakPolicy,
    TenantSettings,
    change_settings,
    correct,
    counted_through,
    next_due,
    pass_time,
    record,
)
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events import NewEvent, RecordedEvent
from tests.unit.checkin.factories import check_in, event, stored

# Berlin in November is UTC+1: 2026-11-10 starts at 2026-11-09 23:00 UTC.
NOW = datetime(2026, 11, 10, 10, 0, tzinfo=UTC)
TODAY = date(2026, 11, 10)
COMMITMENT = KnownCommitment(
    commitment_id="c1", tenant_id="t1", member_id="m1", coach_id=None, contact_label="Alex",
    relationship="romantic", channels=("texts", "calls"), timezone="Europe/Berlin", starts_on=date(2026, 11, 1),
    ends_on=None, recorded_status="active", ended_on=None, created_at=datetime(2026, 10, 31, 12, tzinfo=UTC),
)
SETTINGS = TenantSettings()
EMPTY = CommitmentState(COMMITMENT.starts_on)


def types(events: list[NewEvent]) -> list[str]:
    return [e.type for e in events]


def kept(day: date) -> CheckIn:
    return check_in(day, Outcome.KEPT)


def slipped(day: date) -> CheckIn:
    return check_in(day, Outcome.SLIPPED)


def state_of(stream: list[RecordedEvent]) -> CommitmentState:
    return CommitmentState.folded(COMMITMENT.starts_on, stream)


def decided(stream: list[RecordedEvent], decide) -> tuple[list[NewEvent], list[RecordedEvent]]:  # type: ignore[no-untyped-def]
    """What `decide(state)` adds to `stream`, and the stream once it is appended."""
    decision = decide(state_of(stream))
    assert decision.state == state_of(stored(stream, decision.events))  # the decided state is the fold
    return decision.events, stored(stream, decision.events)


def when(state: CommitmentState, decide) -> list[NewEvent]:  # type: ignore[no-untyped-def]
    return decide(state).events


class TestState:
    def test_the_stream_folded_once(self) -> None:
        stream = [event(date(2026, 11, 1), "kept", 1), event(date(2026, 11, 2), "kept", 2),
                  event(date(2026, 11, 1), "slipped", 3, corrected=True)]
        _, stream = decided(stream, lambda s: pass_time(s, COMMITMENT, SETTINGS, NOW))
        state = state_of(stream)
        assert state.version == len(stream)
        assert state.outcome(date(2026, 11, 1)) == Outcome.SLIPPED  # the correction stands
        assert state.reported_days() == {date(2026, 11, 1), date(2026, 11, 2)}
        assert state.missed == {date(2026, 11, 1) + timedelta(days=n) for n in range(2, 8)}  # Nov 3-8
        assert state.standing == ("not_checking_in",)  # the slip of Nov 1 is older than a week

    def test_the_latest_report_of_each_day_stands(self) -> None:
        stream = [event(date(2026, 11, 3), "slipped", 1), event(date(2026, 11, 3), "kept", 2, corrected=True)]
        # What the state keeps of a report: its outcome and urge (the rows keep the rest).
        assert state_of(stream).check_in(date(2026, 11, 3)) == replace(kept(date(2026, 11, 3)), mood=None)
        assert state_of(stream).reported_days() == {date(2026, 11, 3)}
        assert state_of([]).reported_days() == set()


class TestRecord:
    def test_a_report_carries_its_streak_and_the_current_run_celebrates(self) -> None:
        events = when(EMPTY, lambda s: record(s, COMMITMENT, SETTINGS, kept(TODAY), NOW))
        assert types(events) == ["checkin.recorded"] + ["streak.milestone_reached"] * 3
        assert events[0].data["date"] == TODAY.isoformat() and events[0].data["current_days"] == 10
        assert [e.data["milestone"] for e in events[1:]] == [1, 3, 7]
        assert all(e.data["current_days"] == 10 and e.occurred_at == NOW for e in events)

    def test_the_same_day_twice_is_a_conflict(self) -> None:
        _, stream = decided([], lambda s: record(s, COMMITMENT, SETTINGS, kept(TODAY), NOW))
        with pytest.raises(DayAlreadyReported) as raised:
            record(state_of(stream), COMMITMENT, SETTINGS, slipped(TODAY), NOW)
        assert isinstance(raised.value, Conflict) and "PUT" in raised.value.message

    def test_a_report_breaking_rules_is_refused_field_by_field(self) -> None:
        bad = replace(kept(TODAY + timedelta(days=1)), urge=11)
        with pytest.raises(CheckInRejected) as raised:
            record(EMPTY, COMMITMENT, SETTINGS, bad, NOW)
        assert isinstance(raised.value, ValidationFailed)
        assert set(raised.value.errors) == {"date", "urge"}
        assert "date:" in str(raised.value) and "urge:" in str(raised.value)

    @pytest.mark.parametrize("status", [CommitmentStatus.ENDED, CommitmentStatus.COMPLETED])
    def test_a_commitment_no_longer_active_takes_no_report(self, status: CommitmentStatus) -> None:
        with pytest.raises(CommitmentNotActive) as raised:
            record(EMPTY, replace(COMMITMENT, recorded_status=status.value), SETTINGS, kept(TODAY), NOW)
        assert isinstance(raised.value, Conflict)

    def test_a_backdated_report_in_an_earlier_run_celebrates_nothing(self) -> None:
        _, stream = decided([], lambda s: record(s, COMMITMENT, SETTINGS, slipped(date(2026, 11, 5)), NOW))
        events, _ = decided(stream, lambda s: record(s, COMMITMENT, SETTINGS, kept(date(2026, 11, 3)), NOW))
        # The run of Nov 1-4 is as long as it was: its milestones were told by the slip's command.
        assert types(events) == ["checkin.recorded"]


class TestCorrect:
    def test_only_a_reported_day_is_corrected(self) -> None:
        with pytest.raises(DayNotReported) as raised:
            correct(EMPTY, COMMITMENT, SETTINGS, kept(TODAY), NOW)
        assert isinstance(raised.value, NotFound) and "POST" in raised.value.message

    def test_a_slip_reported_by_correction_resets_the_streak_and_puts_the_client_at_risk(self) -> None:
        _, stream = decided([], lambda s: record(s, COMMITMENT, SETTINGS, kept(TODAY), NOW))
        events, _ = decided(stream, lambda s: correct(s, COMMITMENT, SETTINGS, slipped(TODAY), NOW))
        assert types(events) == ["checkin.corrected", "streak.reset", "client.at_risk"]
        assert events[0].data["previous_outcome"] == "kept" and events[0].data["current_days"] == 0
        assert (events[1].data["slipped_on"], events[1].data["ended_run_days"]) == (TODAY.isoformat(), 9)
        risk = events[2].data
        assert (risk["at_risk"], risk["reasons"], risk["previous_reasons"]) == (True, ["recent_slip"], [])


class TestPassTime:
    def test_missed_days_and_milestones_once_however_often_asked(self) -> None:
        events, stream = decided([], lambda s: pass_time(s, COMMITMENT, SETTINGS, NOW))
        missed = [e.data["date"] for e in events if e.type == "checkin.missed"]
        # Nov 9 ended at 23:00 UTC: with 12 h of grace it is missed at 11:00 UTC on the 10th.
        assert missed == [(date(2026, 11, 1) + timedelta(days=n)).isoformat() for n in range(8)]
        assert [e.data["milestone"] for e in events if e.type == "streak.milestone_reached"] == [1, 3, 7]
        assert types(events).count("client.at_risk") == 1
        assert pass_time(state_of(stream), COMMITMENT, SETTINGS, NOW).events == []
        later, _ = decided(stream, lambda s: pass_time(s, COMMITMENT, SETTINGS, NOW + timedelta(hours=1)))
        assert [e.data["date"] for e in later] == ["2026-11-09"]

    def test_days_before_the_commitment_was_known_are_not_missed(self) -> None:
        backdated = replace(COMMITMENT, starts_on=date(2026, 10, 1))
        missed = [e.data["date"] for e in pass_time(EMPTY, backdated, SETTINGS, NOW).events
                  if e.type == "checkin.missed"]
        assert missed[0] == "2026-10-31"  # the day it was created (in its zone), not the month before

    def test_verified_policy_reaches_no_milestone_by_time(self) -> None:
        verified = TenantSettings(streak_policy=StreakPolicy.VERIFIED)
        assert "streak.milestone_reached" not in types(pass_time(EMPTY, COMMITMENT, verified, NOW).events)

    def test_an_ended_commitment_misses_no_day_and_has_nothing_left_to_happen(self) -> None:
        ended = replace(COMMITMENT, recorded_status="ended", ended_on=date(2026, 11, 5))
        # Before CONTRACT v1.1 this pass decided nothing at all; now the milestones of the
        # commitment's one run (Nov 1-5) are told, as GET .../runs shows them, and no day is missed.
        events = pass_time(EMPTY, ended, SETTINGS, NOW).events
        assert [(e.type, e.data["milestone"], e.data["run_started_on"]) for e in events] == [
            ("streak.milestone_reached", 1, "2026-11-01"), ("streak.milestone_reached", 3, "2026-11-01")]
        assert next_due(ended, SETTINGS, NOW) == NEVER


class TestNextDue:
    def test_the_next_deadline_or_day_end_in_the_members_zone(self) -> None:
        # Nov 9's grace ends at 11:00 UTC on the 10th, before the 10th ends (23:00 UTC).
        assert next_due(COMMITMENT, SETTINGS, NOW) == datetime(2026, 11, 10, 11, tzinfo=UTC)
        assert next_due(COMMITMENT, SETTINGS, datetime(2026, 11, 10, 11, tzinfo=UTC)) == datetime(
            2026, 11, 10, 23, tzinfo=UTC)

    def test_never_once_the_last_days_deadline_has_passed(self) -> None:
        over = replace(COMMITMENT, ends_on=date(2026, 11, 5))
        assert next_due(over, SETTINGS, NOW) == NEVER
        assert next_due(over, SETTINGS, datetime(2026, 11, 6, 10, tzinfo=UTC)) == datetime(2026, 11, 6, 11, tzinfo=UTC)


class TestSettings:
    def test_a_change_keeps_what_it_leaves_out(self) -> None:
        new, event_ = change_settings("t1", SETTINGS, {"at_risk": {"silent_days": 4}, "backdate_days": 3}, NOW)
        assert new.at_risk == RiskThresholds(silent_days=4) and new.backdate_days == 3
        assert new.milestones == SETTINGS.milestones
        assert event_.type == "settings.updated" and event_.occurred_at == NOW
        assert event_.data["tenant_id"] == "t1" and event_.data["reprojected"] is False

    def test_what_changes_a_streak_snapshot(self) -> None:
        assert TenantSettings(at_risk=RiskThresholds(silent_days=4)).changes_snapshots(SETTINGS)
        assert TenantSettings(milestones=(2,)).changes_snapshots(SETTINGS)
        assert not TenantSettings(backdate_days=30, missed_check_in_grace_hours=1).changes_snapshots(SETTINGS)


def test_counted_through() -> None:
    start = date(2026, 11, 1)
    assert counted_through(start, None, TODAY, today_reported=True) == TODAY
    assert counted_through(start, None, TODAY, today_reported=False) == TODAY - timedelta(days=1)
    assert counted_through(start, date(2026, 11, 5), TODAY, today_reported=False) == date(2026, 11, 5)
    assert counted_through(TODAY, None, TODAY, today_reported=False) is None
