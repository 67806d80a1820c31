"""Property tests of the streak fold: order, duplicates and corrections never matter.

Histories are drawn as reports per day (1-3 versions each, i.e. corrections), with
stream versions shuffled across the whole stream, so a correction can carry a lower
or higher version than other days' reports, and arrive in any order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.checkin.domain.checkins import Outcome
from services.checkin.domain.streaks import (
    DEFAULT_MILESTONES,
    DayReport,
    Run,
    Streak,
    StreakPolicy,
    apply_event,
    compute_streak,
    counted_through,
    fold_streak,
    new_milestone_hits,
)
from shared.calendar import date_range
from shared.events import RecordedEvent
from tests.unit.checkin.factories import event

START = date(2026, 3, 1)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@dataclass(frozen=True)
class Case:
    """A drawn history and the parameters to fold it with."""

    events: tuple[RecordedEvent, ...]
    today: date
    ends_on: date | None
    policy: StreakPolicy
    milestones: tuple[int, ...]

    def fold(self, events: list[RecordedEvent] | tuple[RecordedEvent, ...]) -> Streak:
        return fold_streak(
            events,
            starts_on=START,
            ends_on=self.ends_on,
            today=self.today,
            policy=self.policy,
            milestones=self.milestones,
        )

    def standing(self) -> dict[date, Outcome]:
        """Model of the latest report per day: the highest version, found by brute force."""
        best: dict[date, RecordedEvent] = {}
        for e in self.events:
            day = date.fromisoformat(e.data["date"])
            if day not in best or e.stream_version > best[day].stream_version:
                best[day] = e
        return {day: Outcome(e.data["outcome"]) for day, e in best.items()}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    per_day = draw(
        st.dictionaries(
            st.integers(min_value=-2, max_value=40),
            st.lists(st.sampled_from(["kept", "slipped"]), min_size=1, max_size=3),
            max_size=40,
        )
    )
    flat = [(offset, outcome) for offset, outcomes in sorted(per_day.items()) for outcome in outcomes]
    versions = draw(st.permutations(range(1, len(flat) + 1)))
    seen: set[int] = set()
    events = []
    for (offset, outcome), version in zip(flat, versions, strict=True):
        events.append(event(START + timedelta(days=offset), outcome, version, corrected=offset in seen))
        seen.add(offset)
    today = START + timedelta(days=draw(st.integers(min_value=-3, max_value=42)))
    ends_on = draw(
        st.none() | st.integers(min_value=0, max_value=42).map(lambda n: START + timedelta(days=n))
    )
    policy = draw(st.sampled_from(StreakPolicy))
    milestones = draw(
        st.just(DEFAULT_MILESTONES)
        | st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=6, unique=True).map(
            lambda ms: tuple(sorted(ms))
        )
    )
    return Case(tuple(events), today, ends_on, policy, milestones)


@PROPERTY_SETTINGS
@given(case=cases(), data=st.data())
def test_arrival_order_and_duplicate_deliveries_never_matter(case: Case, data: st.DataObject) -> None:
    dupes = data.draw(st.lists(st.sampled_from(case.events), max_size=10)) if case.events else []
    delivered = data.draw(st.permutations([*case.events, *dupes]))
    assert case.fold(delivered) == case.fold(case.events)


@PROPERTY_SETTINGS
@given(case=cases(), data=st.data())
def test_incremental_folding_equals_folding_all_at_once(case: Case, data: st.DataObject) -> None:
    delivered = data.draw(st.permutations(case.events))

    def streak_of(reports: dict[date, DayReport]) -> Streak:
        return compute_streak(
            {day: r.outcome for day, r in reports.items()},
            starts_on=START,
            ends_on=case.ends_on,
            today=case.today,
            policy=case.policy,
            milestones=case.milestones,
        )

    reports: dict[date, DayReport] = {}
    previous = streak_of(reports)  # before any check-in, unreported days may already count
    emitted = {hit.key for hit in new_milestone_hits(None, previous)}
    for e in delivered:
        again = apply_event(reports, e)
        assert apply_event(again, e) == again  # a redelivery is a no-op
        reports = again
        current = streak_of(reports)
        emitted.update(hit.key for hit in new_milestone_hits(previous, current))
        previous = current
    final = case.fold(case.events)
    assert previous == final
    # Every milestone of the final history was announced on the way.
    assert {hit.key for hit in final.milestone_hits} <= emitted


@PROPERTY_SETTINGS
@given(case=cases())
def test_counts_and_invariants(case: Case) -> None:
    s = case.fold(case.events)
    last = case.today if case.ends_on is None else min(case.today, case.ends_on)
    if s.counted_through is None:
        days = 0
    else:
        assert s.counted_through in (last, last - timedelta(days=1))
        days = (s.counted_through - START).days + 1
    assert s.kept_days + s.slipped_days + s.unreported_days == days
    assert 0 <= s.current_days <= s.longest_days <= days
    assert s.milestones_reached == tuple(t for t in case.milestones if t <= s.current_days)
    assert s.next_milestone == next((t for t in case.milestones if t > s.current_days), None)
    assert (s.streak_started_on is None) == (s.current_days == 0)
    # Runs: non-empty, ordered, separated by at least one breaking day, inside the range.
    for run in s.runs:
        assert run.length >= 1 and START <= run.start <= run.end
        assert s.counted_through is not None and run.end <= s.counted_through
    for earlier, later in zip(s.runs, s.runs[1:], strict=False):
        assert later.start > earlier.end + timedelta(days=1)
    non_breaking = s.kept_days + (s.unreported_days if case.policy == StreakPolicy.SINCE_LAST_SLIP else 0)
    assert sum(run.length for run in s.runs) == non_breaking
    # Hits: each run reaches each threshold it is long enough for, exactly once.
    expected_hits = {
        (t, run.start, attempt, run.start + timedelta(days=t - 1))
        for attempt, run in enumerate(s.runs, start=1)
        for t in case.milestones
        if t <= run.length
    }
    assert {(h.threshold, h.run_start, h.attempt, h.reached_on) for h in s.milestone_hits} == expected_hits
    assert len(s.milestone_hits) == len(expected_hits)


@PROPERTY_SETTINGS
@given(case=cases())
def test_fold_agrees_with_a_day_by_day_model(case: Case) -> None:
    """An independent, deliberately naive reading of CONTRACT's rules."""
    standing = {day: o for day, o in case.standing().items()}
    last = case.today if case.ends_on is None else min(case.today, case.ends_on)
    if last == case.today and case.today not in standing:
        last -= timedelta(days=1)
    days = [START + timedelta(days=n) for n in range(max(0, (last - START).days + 1))]

    def breaks(day: date) -> bool:
        outcome = standing.get(day)
        return outcome == Outcome.SLIPPED or (outcome is None and case.policy == StreakPolicy.VERIFIED)

    def streak_ending(i: int) -> int:
        length = 0
        while i - length >= 0 and not breaks(days[i - length]):
            length += 1
        return length

    s = case.fold(case.events)
    assert s.current_days == (streak_ending(len(days) - 1) if days else 0)
    assert s.longest_days == max((streak_ending(i) for i in range(len(days))), default=0)
    assert s.kept_days == sum(1 for day in days if standing.get(day) == Outcome.KEPT)
    assert s.slipped_days == sum(1 for day in days if standing.get(day) == Outcome.SLIPPED)
    slips = [day for day in days if standing.get(day) == Outcome.SLIPPED]
    assert s.last_slip_on == (slips[-1] if slips else None)
    reported = [day for day in days if day in standing]
    assert s.last_check_in_on == (reported[-1] if reported else None)
    if s.current_days:
        assert s.streak_started_on == days[-1] - timedelta(days=s.current_days - 1)


@PROPERTY_SETTINGS
@given(case=cases())
def test_rebuilding_gives_the_same_document(case: Case) -> None:
    assert case.fold(case.events).as_json("c") == case.fold(list(reversed(case.events))).as_json("c")


def walk_runs(
    outcomes: Mapping[date, Outcome], *, starts_on: date, through: date | None, policy: StreakPolicy
) -> tuple[tuple[Run, ...], tuple[date, ...], int, int, date | None]:
    """The runs, slips, kept and unreported days and the last check-in as `compute_streak` first
    found them, walking every calendar day: the reference for the computation that visits
    only the reported days."""
    runs: list[Run] = []
    slip_days: list[date] = []
    kept = unreported = 0
    last_check_in: date | None = None
    run_start: date | None = None
    for day in date_range(starts_on, through) if through is not None else ():
        outcome = outcomes.get(day)
        if outcome is None:
            unreported += 1
        else:
            last_check_in = day
            if outcome == Outcome.KEPT:
                kept += 1
            else:
                slip_days.append(day)
        if not (outcome == Outcome.SLIPPED or (outcome is None and policy == StreakPolicy.VERIFIED)):
            if run_start is None:
                run_start = day
            continue
        if run_start is not None:
            runs.append(Run(start=run_start, end=day - timedelta(days=1),
                            ended_by_slip_on=day if outcome == Outcome.SLIPPED else None,
                            ended_by_unreported_on=day if outcome is None else None))
            run_start = None
    if run_start is not None and through is not None:
        runs.append(Run(start=run_start, end=through))
    return tuple(runs), tuple(slip_days), kept, unreported, last_check_in


@PROPERTY_SETTINGS
@given(case=cases())
def test_compute_streak_equals_the_day_by_day_walk(case: Case) -> None:
    outcomes = case.standing()
    s = compute_streak(outcomes, starts_on=START, ends_on=case.ends_on, today=case.today, policy=case.policy,
                       milestones=case.milestones)
    through = counted_through(START, case.ends_on, case.today, today_reported=case.today in outcomes)
    assert s.counted_through == through
    assert (s.runs, s.slip_days, s.kept_days, s.unreported_days, s.last_check_in_on) == walk_runs(
        outcomes, starts_on=START, through=through, policy=case.policy)
