"""Pauses (CONTRACT v1.1, "Between check-ins"): excused days neither break a run nor add to
it, are never missed, are counted as ``excused_days``, under both streak policies; the
rules a pause must keep (422 naming the field); the milestones a pause makes untrue are
revoked; the state folded from the stream equals the state decided command by command."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.checkin.domain import (
    CheckInRejected,
    CommitmentState,
    Outcome,
    Pause,
    PauseNotFound,
    PauseSettled,
    StreakPolicy,
    TenantSettings,
    cancel_pause,
    compute_streak,
    pass_time,
    record,
    run_history,
    schedule_pause,
    withdraw,
)
from services.checkin.domain.state import EXCUSED
from tests.unit.checkin.factories import stored
from tests.unit.checkin.test_history import COMMITMENT, NOW, SETTINGS, kept, slipped, state_of, types

START = COMMITMENT.starts_on  # 2026-11-01; NOW is 2026-11-10 in Berlin
WIDE = TenantSettings(backdate_days=30)  # every day of the commitment so far may be reported
VERIFIED = TenantSettings(streak_policy=StreakPolicy.VERIFIED, backdate_days=30)


def d(n: int) -> date:
    return START + timedelta(days=n - 1)


def pause(first: int, last: int, pause_id: str = "p1") -> Pause:
    return Pause(pause_id, d(first), d(last), "hospital")


def outcomes(kept_days: range, slipped_days: tuple[int, ...] = ()) -> dict[date, Outcome]:
    found = {d(n): Outcome.KEPT for n in kept_days}
    found.update({d(n): Outcome.SLIPPED for n in slipped_days})
    return found


class TestStreakRules:
    @pytest.mark.parametrize("policy", list(StreakPolicy))
    def test_excused_days_neither_break_a_run_nor_add_to_it(self, policy: StreakPolicy) -> None:
        # Kept 1-3, paused 4-6, kept 7-9: one run of 6 days under both policies.
        streak = compute_streak(outcomes(range(1, 4)) | outcomes(range(7, 10)), starts_on=START, ends_on=None,
                                today=d(9), policy=policy, excused={d(4), d(5), d(6)})
        assert (streak.current_days, streak.longest_days, streak.streak_started_on) == (6, 6, d(1))
        assert (streak.kept_days, streak.unreported_days, streak.excused_days) == (6, 0, 3)
        assert [(run.start, run.end, run.length) for run in streak.runs] == [(d(1), d(9), 6)]
        # The 6th day of the run is the 9th of the month: the pause pushed it on.
        assert {hit.threshold: hit.reached_on for hit in streak.milestone_hits}[3] == d(3)

    @pytest.mark.parametrize("policy", list(StreakPolicy))
    def test_a_pause_up_to_today_keeps_the_run_current(self, policy: StreakPolicy) -> None:
        streak = compute_streak(outcomes(range(1, 6)), starts_on=START, ends_on=None, today=d(9), policy=policy,
                                excused={d(n) for n in range(6, 12)})
        assert (streak.current_days, streak.counted_through, streak.excused_days) == (5, d(8), 3)
        assert streak.current_run is not None and streak.current_run.end == d(8)

    def test_a_run_never_starts_on_an_excused_day(self) -> None:
        streak = compute_streak(outcomes(range(3, 6), (1,)), starts_on=START, ends_on=None, today=d(5),
                                excused={d(2)})
        assert streak.streak_started_on == d(3) and streak.current_days == 3

    def test_a_report_of_a_paused_day_stands(self) -> None:
        streak = compute_streak(outcomes(range(1, 4), (4,)), starts_on=START, ends_on=None, today=d(5),
                                excused={d(4), d(5)})
        assert (streak.slipped_days, streak.last_slip_on, streak.excused_days) == (1, d(4), 0)

    def test_since_last_slip_counts_unreported_days_and_a_pause_takes_them_out(self) -> None:
        # Unreported 4-6 count as kept under since_last_slip; paused, they do not count at all.
        plain = compute_streak(outcomes(range(1, 4)) | outcomes(range(7, 10)), starts_on=START, ends_on=None,
                               today=d(9))
        paused = compute_streak(outcomes(range(1, 4)) | outcomes(range(7, 10)), starts_on=START, ends_on=None,
                                today=d(9), excused={d(4), d(5), d(6)})
        assert (plain.current_days, plain.unreported_days) == (9, 3)
        assert (paused.current_days, paused.unreported_days, paused.excused_days) == (6, 0, 3)

    def test_verified_an_unreported_day_still_breaks_after_a_pause(self) -> None:
        streak = compute_streak(outcomes(range(1, 4)) | outcomes(range(8, 10)), starts_on=START, ends_on=None,
                                today=d(9), policy=StreakPolicy.VERIFIED, excused={d(4), d(5), d(6)})
        first, second = streak.runs
        assert (first.start, first.end, first.length, first.ended_by_unreported_on) == (d(1), d(6), 3, d(7))
        assert (second.start, second.length) == (d(8), 2)


class TestPauseRules:
    def test_scheduled_then_cancelled(self) -> None:
        decision = schedule_pause(CommitmentState(START), COMMITMENT, WIDE, pause(12, 14), NOW)
        assert types(decision.events)[0] == "pause.scheduled"
        assert decision.events[0].data == {"commitment_id": "c1", "member_id": "m1", "pause_id": "p1",
                                           "from": "2026-11-12", "to": "2026-11-14", "reason": "hospital"}
        assert decision.state.pauses == {("p1", d(12), d(14))}
        assert decision.state.days.endswith(EXCUSED * 3)
        cancelled = cancel_pause(decision.state, COMMITMENT, WIDE, "p1", NOW)
        assert types(cancelled.events)[0] == "pause.cancelled"
        assert cancelled.events[0].data["from"] == "2026-11-12" and cancelled.state.days == ""
        with pytest.raises(PauseNotFound):
            cancel_pause(cancelled.state, COMMITMENT, WIDE, "p1", NOW)

    @pytest.mark.parametrize(("first", "last", "field"), [
        (2, 1, "to"),  # to before from
        (5, 35, "to"),  # 31 days
        (-20, -18, "from"),  # before the start and the backdating window
        (12, 13, "from"),  # overlaps p0 (11-14)
    ])
    def test_a_pause_breaking_a_rule_names_the_field(self, first: int, last: int, field: str) -> None:
        state = schedule_pause(CommitmentState(START), COMMITMENT, WIDE, pause(11, 14, "p0"), NOW).state
        with pytest.raises(CheckInRejected) as raised:
            schedule_pause(state, COMMITMENT, WIDE, pause(first, last), NOW)
        assert field in raised.value.errors

    def test_a_pause_starts_at_most_a_year_ahead(self) -> None:
        today = COMMITMENT.today(NOW)
        for first in (today + timedelta(days=366), date(9000, 1, 1)):
            with pytest.raises(CheckInRejected) as raised:
                schedule_pause(CommitmentState(START), COMMITMENT, WIDE, Pause("p", first, first), NOW)
            assert "from" in raised.value.errors
        ahead = today + timedelta(days=365)
        schedule_pause(CommitmentState(START), COMMITMENT, WIDE, Pause("p", ahead, ahead), NOW)

    def test_a_pause_that_began_before_the_backdating_window_stays(self) -> None:
        # Paused days 2-4 (reported nowhere): cancelling would re-open days nobody may report.
        state = schedule_pause(CommitmentState(START), COMMITMENT, WIDE, pause(2, 4), NOW).state
        with pytest.raises(PauseSettled):
            cancel_pause(state, COMMITMENT, SETTINGS, "p1", NOW)  # a window of 7 days: 11-03 earliest
        assert types(cancel_pause(state, COMMITMENT, WIDE, "p1", NOW).events)[0] == "pause.cancelled"

    def test_thirty_days_and_the_edge_of_the_window_are_fine(self) -> None:
        schedule_pause(CommitmentState(START), COMMITMENT, WIDE, pause(11, 40), NOW)
        oldest = COMMITMENT.today(NOW) - timedelta(days=SETTINGS.backdate_days)
        schedule_pause(CommitmentState(START), COMMITMENT, SETTINGS, Pause("p", oldest, oldest), NOW)

    def test_no_missed_check_in_for_a_paused_day(self) -> None:
        state = CommitmentState(START)
        for n in range(1, 6):
            state = record(state, COMMITMENT, WIDE, kept(d(n)), NOW).state
        state = schedule_pause(state, COMMITMENT, WIDE, pause(6, 8), NOW).state
        # Past 11-09's deadline (its end + 12 grace hours): 6-8 paused, 11-10 is today.
        missed = [e.data["date"] for e in pass_time(state, COMMITMENT, WIDE, NOW + timedelta(hours=2)).events
                  if e.type == "checkin.missed"]
        assert missed == ["2026-11-09"]

    @pytest.mark.parametrize("policy_settings", [WIDE, VERIFIED])
    def test_the_milestones_a_pause_makes_untrue_are_revoked_and_true_ones_reached(
            self, policy_settings: TenantSettings) -> None:
        # Kept 1-3 and 7-9, 4-6 unreported: since_last_slip counts 9 days (milestone 7 reached),
        # verified two runs of 3. Pausing 4-6: one run of 6 under both.
        stream = []
        for n in (*range(1, 4), *range(7, 10)):
            decision = record(state_of(stream), COMMITMENT, policy_settings, kept(d(n)), NOW)
            stream = stored(stream, decision.events)
        before = state_of(stream).milestones
        decision = schedule_pause(state_of(stream), COMMITMENT, policy_settings, pause(4, 6), NOW)
        revoked = {(e.data["milestone"], e.data["run_started_on"], e.data["reason"]) for e in decision.events
                   if e.type == "streak.milestone_revoked"}
        after = state_of(stored(stream, decision.events))
        assert after == decision.state  # rebuild = incremental
        assert after.milestones == {(t, d(1)) for t in (1, 3)}
        if policy_settings is WIDE:
            assert (7, d(1)) in before and revoked == {(7, "2026-11-01", "pause_scheduled")}
        else:
            assert (3, d(7)) in before and revoked == {(1, "2026-11-07", "pause_scheduled"),
                                                       (3, "2026-11-07", "pause_scheduled")}
        runs = run_history(COMMITMENT, after, policy_settings, NOW)
        assert [(r["started_on"], r["days"], r["reported_days"]) for r in runs][:1] == [("2026-11-01", 6, 6)]
        # Cancelled: back to what the reports alone make true.
        cancelled = cancel_pause(after, COMMITMENT, policy_settings, "p1", NOW)
        assert cancelled.state.milestones == before
        assert {e.data["reason"] for e in cancelled.events if e.type == "streak.milestone_revoked"} <= {
            "pause_cancelled"}


# -- properties ----------------------------------------------------------------------------------

DAYS = 40
TODAY = d(DAYS)


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[date, Outcome], set[date], StreakPolicy]:
    codes = draw(st.lists(st.sampled_from("kks.."), min_size=DAYS, max_size=DAYS))
    reports = {d(n + 1): Outcome.KEPT if c == "k" else Outcome.SLIPPED for n, c in enumerate(codes) if c != "."}
    excused: set[date] = set()
    for first, length in draw(st.lists(st.tuples(st.integers(1, DAYS), st.integers(1, 8)), max_size=4)):
        excused.update(d(first + n) for n in range(length))
    return reports, excused, draw(st.sampled_from(list(StreakPolicy)))


@settings(max_examples=200, deadline=None)
@given(histories())
def test_every_counted_day_is_kept_slipped_unreported_or_excused(case) -> None:  # type: ignore[no-untyped-def]
    reports, excused, policy = case
    streak = compute_streak(reports, starts_on=START, ends_on=None, today=TODAY, policy=policy, excused=excused)
    counted = (streak.counted_through - START).days + 1 if streak.counted_through else 0
    assert streak.kept_days + streak.slipped_days + streak.unreported_days + streak.excused_days == counted
    plain = compute_streak(reports, starts_on=START, ends_on=None, today=TODAY, policy=policy)
    # A pause changes no report: the slips and the kept days are the reports'.
    assert (streak.slip_days, streak.kept_days) == (plain.slip_days, plain.kept_days)
    excused = excused - reports.keys()  # a report stands over a pause
    for run in streak.runs:
        assert run.length >= 1 and run.start not in excused
        inside = [run.start + timedelta(days=n) for n in range((run.end - run.start).days + 1)]
        assert not any(reports.get(day) == Outcome.SLIPPED for day in inside)
        if policy == StreakPolicy.VERIFIED:  # only reported kept days add to a run
            assert run.length == sum(1 for day in inside if reports.get(day) == Outcome.KEPT)
        else:  # every day that is not excused does
            assert run.length == sum(1 for day in inside if day in reports or day not in excused)
        for hit in streak.milestone_hits:
            if hit.run_start == run.start:
                assert hit.reached_on not in excused or hit.reached_on in reports
    if policy == StreakPolicy.SINCE_LAST_SLIP:
        # Excusing days only takes them out of runs: never more days, never a new slip.
        assert streak.current_days <= plain.current_days and streak.longest_days <= plain.longest_days


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["kept", "slipped", "pause", "cancel", "withdraw"]), st.integers(1, 10),
                          st.integers(0, 3)), max_size=15),
       st.sampled_from([WIDE, VERIFIED]))
def test_rebuild_equals_incremental_with_pauses(steps, policy_settings) -> None:  # type: ignore[no-untyped-def]
    """Whatever reports, withdrawals, pauses and cancellations come in whatever order, the state
    decided command by command is the stream folded at once, and the milestones told (reached
    minus revoked) are the runs'."""
    stream: list = []
    state = CommitmentState(START)
    for what, day, length in steps:
        try:
            if what == "pause":
                decision = schedule_pause(state, COMMITMENT, policy_settings,
                                          Pause(f"p{len(stream)}", d(day), d(day + length)), NOW)
            elif what == "cancel":
                if not state.pauses:
                    continue
                decision = cancel_pause(state, COMMITMENT, policy_settings, sorted(state.pauses)[0][0], NOW)
            elif what == "withdraw":
                if not state.reported(d(day)):
                    continue
                decision = withdraw(state, COMMITMENT, policy_settings, d(day), NOW)
            elif state.reported(d(day)):
                continue
            else:
                report = kept(d(day)) if what == "kept" else slipped(d(day))
                decision = record(state, COMMITMENT, policy_settings, report, NOW)
        except CheckInRejected:
            continue
        stream = stored(stream, decision.events)
        state = decision.state
        assert state == state_of(stream)
    decision = pass_time(state, COMMITMENT, policy_settings, NOW)  # what time alone made true
    state = decision.state
    assert state == state_of(stored(stream, decision.events))
    runs = run_history(COMMITMENT, state, policy_settings, NOW)
    told = {(t, date.fromisoformat(r["started_on"])) for r in runs for t in r["milestones"]}
    assert state.milestones == told


def test_an_ended_commitment_takes_no_pause() -> None:
    ended = replace(COMMITMENT, recorded_status="ended", ended_on=d(5))
    with pytest.raises(Exception) as raised:
        schedule_pause(CommitmentState(START), ended, SETTINGS, pause(8, 9), datetime(2026, 11, 10, tzinfo=UTC))
    assert "not active" in str(raised.value)
