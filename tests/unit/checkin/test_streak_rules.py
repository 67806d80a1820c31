"""Worked examples of CONTRACT's streak rules, one rule per test."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.checkin.domain.checkins import Outcome
from services.checkin.domain.streaks import (
    DEFAULT_MILESTONES,
    MilestoneHit,
    Run,
    Streak,
    StreakPolicy,
    compute_streak,
    fold_streak,
    new_milestone_hits,
    normalize_milestones,
    streak_reset,
)
from tests.unit.checkin.factories import event, events

NOV = 11
START = date(2026, NOV, 1)


def d(day: int, month: int = NOV) -> date:
    return date(2026, month, day)


def kept(first: int, last: int) -> dict[date, str]:
    return {d(n): "kept" for n in range(first, last + 1)}


def streak(
    reports: dict[date, str],
    today: date,
    *,
    starts_on: date = START,
    ends_on: date | None = None,
    policy: StreakPolicy = StreakPolicy.SINCE_LAST_SLIP,
    milestones: tuple[int, ...] = DEFAULT_MILESTONES,
) -> Streak:
    return fold_streak(
        events(reports),
        starts_on=starts_on,
        ends_on=ends_on,
        today=today,
        policy=policy,
        milestones=milestones,
    )


class TestToday:
    def test_unreported_today_reads_the_streak_up_to_yesterday(self) -> None:
        s = streak(kept(1, 9), today=d(10))
        assert s.current_days == 9
        assert s.counted_through == d(9)
        assert s.as_of == d(10)
        assert (s.kept_days, s.slipped_days, s.unreported_days) == (9, 0, 0)
        assert s.last_check_in_on == d(9)

    def test_today_counts_once_reported_kept(self) -> None:
        s = streak(kept(1, 10), today=d(10))
        assert s.current_days == 10
        assert s.counted_through == d(10)
        assert s.milestones_reached == (1, 3, 7)
        assert s.next_milestone == 14
        assert s.last_check_in_on == d(10)

    def test_unreported_today_does_not_break_a_verified_streak(self) -> None:
        s = streak(kept(1, 9), today=d(10), policy=StreakPolicy.VERIFIED)
        assert s.current_days == 9
        assert s.unreported_days == 0

    def test_slip_today_ends_the_run_at_once(self) -> None:
        s = streak(kept(1, 9) | {d(10): "slipped"}, today=d(10))
        assert s.current_days == 0
        assert s.longest_days == 9
        assert s.streak_started_on is None
        assert s.last_slip_on == d(10)
        assert s.slipped_days == 1
        assert s.runs == (Run(d(1), d(9), ended_by_slip_on=d(10)),)
        assert s.milestones_reached == ()
        assert s.next_milestone == 1

    def test_the_day_after_a_slip_starts_a_new_run(self) -> None:
        reports = kept(1, 9) | {d(10): "slipped", d(11): "kept"}
        assert streak(reports, today=d(11)).current_days == 1
        assert streak(reports, today=d(11)).streak_started_on == d(11)
        assert streak(reports, today=d(12)).current_days == 1  # the 12th is not reported yet
        # The 11th not reported yet: the streak reads through the slip day.
        assert streak({k: v for k, v in reports.items() if k != d(11)}, today=d(11)).current_days == 0


class TestPolicies:
    GAPPY = kept(1, 3) | {d(6): "kept"}  # 4 and 5 unreported

    def test_since_last_slip_counts_unreported_days_as_kept(self) -> None:
        s = streak(self.GAPPY, today=d(7))
        assert s.current_days == 6
        assert s.streak_started_on == d(1)
        assert (s.kept_days, s.slipped_days, s.unreported_days) == (4, 0, 2)
        assert s.runs == (Run(d(1), d(6)),)

    def test_verified_unreported_day_ends_the_run_and_the_next_starts_after_it(self) -> None:
        s = streak(self.GAPPY, today=d(7), policy=StreakPolicy.VERIFIED)
        assert s.current_days == 1
        assert s.streak_started_on == d(6)
        assert s.longest_days == 3
        assert (s.kept_days, s.slipped_days, s.unreported_days) == (4, 0, 2)
        assert s.runs == (Run(d(1), d(3), ended_by_unreported_on=d(4)), Run(d(6), d(6)))
        assert s.last_slip_on is None

    def test_verified_unreported_yesterday_means_no_current_streak(self) -> None:
        s = streak(kept(1, 5), today=d(7), policy=StreakPolicy.VERIFIED)
        assert s.current_days == 0
        assert s.streak_started_on is None
        assert s.longest_days == 5
        s = streak(kept(1, 5), today=d(7))
        assert s.current_days == 6

    def test_policy_is_accepted_as_its_string(self) -> None:
        s = fold_streak(events(self.GAPPY), starts_on=START, ends_on=None, today=d(7), policy="verified")
        assert s.policy is StreakPolicy.VERIFIED
        assert s.current_days == 1

    def test_unknown_policy_is_refused(self) -> None:
        with pytest.raises(ValueError):
            fold_streak([], starts_on=START, ends_on=None, today=d(7), policy="lenient")


class TestMilestones:
    def test_thresholds_are_reached_again_after_a_slip(self) -> None:
        s = streak(kept(1, 3) | {d(4): "slipped"} | kept(5, 7), today=d(7))
        assert s.milestone_hits == (
            MilestoneHit(1, run_start=d(1), attempt=1, reached_on=d(1)),
            MilestoneHit(3, run_start=d(1), attempt=1, reached_on=d(3)),
            MilestoneHit(1, run_start=d(5), attempt=2, reached_on=d(5)),
            MilestoneHit(3, run_start=d(5), attempt=2, reached_on=d(7)),
        )
        assert s.milestones_reached == (1, 3)
        assert s.next_milestone == 7

    def test_milestones_reached_are_those_of_the_current_run_only(self) -> None:
        s = streak(kept(1, 14) | {d(15): "slipped"} | kept(16, 17), today=d(17))
        assert s.longest_days == 14
        assert s.milestones_reached == (1,)
        assert [h.threshold for h in s.milestone_hits if h.attempt == 1] == [1, 3, 7, 14]

    def test_unreported_days_reach_milestones_under_since_last_slip(self) -> None:
        s = streak({d(1): "kept"}, today=d(8))
        assert s.current_days == 7
        assert s.milestone_hits[-1] == MilestoneHit(7, run_start=d(1), attempt=1, reached_on=d(7))

    def test_past_the_last_threshold_there_is_no_next(self) -> None:
        s = streak({}, today=d(10), milestones=(1, 3))
        assert s.milestones_reached == (1, 3)
        assert s.next_milestone is None

    def test_custom_thresholds_are_sorted_and_deduplicated(self) -> None:
        assert normalize_milestones([10, 2, 2, 5]) == (2, 5, 10)
        s = streak(kept(1, 6), today=d(6), milestones=(10, 2, 2, 5))
        assert s.milestones_reached == (2, 5)
        assert s.next_milestone == 10

    @pytest.mark.parametrize("bad", [[0], [-3], [1.5], [True]])
    def test_invalid_thresholds_are_refused(self, bad: list[object]) -> None:
        with pytest.raises(ValueError):
            normalize_milestones(bad)  # type: ignore[arg-type]


class TestRange:
    def test_ends_on_in_the_past_stops_the_count_there(self) -> None:
        reports = kept(1, 3) | {d(5): "kept", d(6): "slipped"}
        s = streak(reports, today=d(21), ends_on=d(5))
        assert s.as_of == d(21)
        assert s.counted_through == d(5)
        assert s.current_days == 5
        assert (s.kept_days, s.slipped_days, s.unreported_days) == (4, 0, 1)
        assert s.last_check_in_on == d(5)  # the report after ends_on is not part of it
        assert s.last_slip_on is None

    def test_ends_on_today_still_waits_for_todays_report(self) -> None:
        assert streak(kept(1, 4), today=d(5), ends_on=d(5)).counted_through == d(4)
        assert streak(kept(1, 5), today=d(5), ends_on=d(5)).counted_through == d(5)

    def test_ended_commitment_with_last_day_unreported_under_verified(self) -> None:
        s = streak(kept(1, 4), today=d(21), ends_on=d(5), policy=StreakPolicy.VERIFIED)
        assert s.current_days == 0
        assert s.unreported_days == 1
        assert s.runs == (Run(d(1), d(4), ended_by_unreported_on=d(5)),)

    def test_starts_on_today_unreported_is_an_empty_streak(self) -> None:
        s = streak({}, today=START)
        assert s.counted_through is None
        assert (s.current_days, s.longest_days, s.kept_days, s.slipped_days, s.unreported_days) == (
            0,
            0,
            0,
            0,
            0,
        )
        assert s.streak_started_on is None and s.last_check_in_on is None and s.last_slip_on is None
        assert s.milestones_reached == () and s.next_milestone == 1
        assert s.runs == () and s.milestone_hits == ()

    def test_starts_on_today_reported_kept_is_day_one(self) -> None:
        s = streak({START: "kept"}, today=START)
        assert s.current_days == 1
        assert s.streak_started_on == START
        assert s.milestones_reached == (1,)
        assert s.next_milestone == 3

    def test_starts_in_the_future(self) -> None:
        s = streak({}, today=d(1), starts_on=d(5))
        assert s.counted_through is None and s.current_days == 0 and s.unreported_days == 0

    def test_reports_before_starts_on_are_ignored(self) -> None:
        s = streak({d(1): "slipped", d(2): "kept"}, today=d(2), starts_on=d(2))
        assert s.slipped_days == 0 and s.current_days == 1


class TestFold:
    def test_a_correction_is_a_later_version_of_the_same_date(self) -> None:
        history = [*events(kept(1, 5)), event(d(3), "slipped", 6, corrected=True)]
        s = fold_streak(history, starts_on=START, ends_on=None, today=d(5))
        assert s.current_days == 2 and s.last_slip_on == d(3)
        undone = [*history, event(d(3), "kept", 7, corrected=True)]
        assert fold_streak(undone, starts_on=START, ends_on=None, today=d(5)).current_days == 5

    def test_an_older_version_arriving_late_does_not_win(self) -> None:
        late = [event(d(3), "slipped", 9, corrected=True), *events(kept(1, 5))]
        s = fold_streak(late, starts_on=START, ends_on=None, today=d(5))
        assert s.last_slip_on == d(3)

    def test_duplicate_delivery_changes_nothing(self) -> None:
        once = events(kept(1, 5))
        twice = once + once[::-1]
        a = fold_streak(once, starts_on=START, ends_on=None, today=d(5))
        assert fold_streak(twice, starts_on=START, ends_on=None, today=d(5)) == a

    def test_other_event_types_in_the_stream_are_ignored(self) -> None:
        from dataclasses import replace

        noise = replace(event(d(3), "slipped", 99), type="checkin.missed")
        s = fold_streak([*events(kept(1, 5)), noise], starts_on=START, ends_on=None, today=d(5))
        assert s.slipped_days == 0

    def test_compute_from_outcomes_equals_fold(self) -> None:
        reports = kept(1, 3) | {d(4): "slipped"}
        outcomes = {day: Outcome(o) for day, o in reports.items()}
        assert compute_streak(outcomes, starts_on=START, ends_on=None, today=d(6)) == streak(
            reports, today=d(6)
        )


def test_the_contract_example_document() -> None:
    """CONTRACT's sample streak JSON, rebuilt from a history that yields exactly those numbers."""
    starts_on = date(2026, 10, 8)
    today = date(2026, 11, 21)
    reports = {starts_on + timedelta(days=n): "kept" for n in range((today - starts_on).days + 1)}
    reports[date(2026, 10, 19)] = "slipped"  # run Oct 8..18 (11 days), then Oct 20..Nov 8 (20)
    reports[date(2026, 11, 9)] = "slipped"  # current run Nov 10..21 (12 days)
    for unreported in (date(2026, 10, 10), date(2026, 10, 25), date(2026, 11, 15)):
        del reports[unreported]
    s = streak(reports, today=today, starts_on=starts_on)
    assert s.as_json("c-1") == {
        "commitment_id": "c-1",
        "as_of": "2026-11-21",
        "policy": "since_last_slip",
        "current_days": 12,
        "longest_days": 20,
        "kept_days": 40,
        "excused_days": 0,
        "held_firm_days": 0,
        "slipped_days": 2,
        "unreported_days": 3,
        "streak_started_on": "2026-11-10",
        "last_slip_on": "2026-11-09",
        "last_check_in_on": "2026-11-21",
        "milestones_reached": [1, 3, 7],
        "next_milestone": 14,
        "counted_through": "2026-11-21",
    }
    assert "commitment_id" not in s.as_json()
    assert [r.as_json()["length"] for r in s.runs] == [11, 20, 12]


class TestEmitters:
    def test_every_hit_is_new_without_a_before(self) -> None:
        after = streak(kept(1, 3), today=d(3))
        assert [h.threshold for h in new_milestone_hits(None, after)] == [1, 3]

    def test_a_day_passing_can_reach_a_milestone(self) -> None:
        before = streak(kept(1, 6), today=d(7))
        after = streak(kept(1, 7), today=d(7))
        assert new_milestone_hits(before, after) == (
            MilestoneHit(7, run_start=d(1), attempt=1, reached_on=d(7)),
        )
        assert new_milestone_hits(after, after) == ()

    def test_after_a_slip_the_same_threshold_is_new_again(self) -> None:
        before = streak(kept(1, 3) | {d(4): "slipped"}, today=d(4))
        after = streak(kept(1, 3) | {d(4): "slipped", d(5): "kept"}, today=d(5))
        assert new_milestone_hits(before, after) == (
            MilestoneHit(1, run_start=d(5), attempt=2, reached_on=d(5)),
        )

    def test_already_emitted_keys_are_not_emitted_again(self) -> None:
        after = streak(kept(1, 3), today=d(3))
        assert [h.threshold for h in new_milestone_hits(None, after, already_emitted={(1, d(1))})] == [3]

    def test_reset_by_a_slip_today_reports_the_run_it_ended(self) -> None:
        before = streak(kept(1, 9), today=d(10))
        after = streak(kept(1, 9) | {d(10): "slipped"}, today=d(10))
        reset = streak_reset(before, after)
        assert reset is not None
        assert reset.slipped_on == d(10)
        assert reset.ended_run == Run(d(1), d(9), ended_by_slip_on=d(10))
        assert reset.ended_length == 9

    def test_backdated_slip_resets_the_run_before_it(self) -> None:
        before = streak(kept(1, 10), today=d(10))
        after = streak(kept(1, 10) | {d(7): "slipped"}, today=d(10))
        reset = streak_reset(before, after)
        assert reset is not None and reset.slipped_on == d(7) and reset.ended_length == 6
        assert after.current_days == 3

    def test_slip_right_after_a_slip_ended_no_run(self) -> None:
        before = streak(kept(1, 3) | {d(4): "slipped"}, today=d(4))
        after = streak(kept(1, 3) | {d(4): "slipped", d(5): "slipped"}, today=d(5))
        reset = streak_reset(before, after)
        assert reset is not None and reset.slipped_on == d(5)
        assert reset.ended_run is None and reset.ended_length == 0

    def test_no_new_slip_no_reset(self) -> None:
        before = streak(kept(1, 3) | {d(4): "slipped"}, today=d(4))
        assert streak_reset(before, streak(kept(1, 3) | {d(4): "slipped", d(5): "kept"}, today=d(5))) is None
        # A slip corrected to kept is not a reset either.
        assert streak_reset(before, streak(kept(1, 4), today=d(4))) is None
        assert streak_reset(None, streak(kept(1, 4), today=d(4))) is None
