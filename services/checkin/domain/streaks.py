"""The streak: a pure fold of one commitment's check-in events (CONTRACT, "Streak rules").

The streak must be a function of the set of reports only: arrival order, duplicate
deliveries, backdating and corrections never change it, and rebuilding from the event
store gives the same numbers. So the fold first reduces the events to "the latest
report per day" (highest ``stream_version`` wins, an associative and commutative
choice) and only then walks the calendar.

Definitions used throughout (all dates are local dates in the commitment's zone):

- The *counted days* run from ``starts_on`` to ``counted_through``: ``min(today,
  ends_on)``, except that an unreported ``today`` is left out (the day is not over).
  A reported today counts whatever its outcome: a slip today ends the current run at
  once. Each counted day is kept, slipped or unreported.
- A *run* is a maximal stretch of consecutive counted days that are not slipped and,
  under the ``verified`` policy, not unreported either. A slipped day (or, under
  ``verified``, an unreported day) belongs to no run: it ends the run before it and the
  next run can start the day after it. Runs are never empty.
- The *current* run is the run that contains ``counted_through``; there is none when
  that day is a slip (or unreported under ``verified``), and then ``current_days`` is 0.
- A *milestone hit* is a threshold ``t`` reached by a run of length >= ``t``; it is
  reached on ``run.start + t - 1``. Each run reaches each threshold at most once; a new
  run after a slip can reach the same thresholds again. A hit is identified by
  ``(threshold, run_start)``; ``attempt`` (1-based index of the run) is informative.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Protocol

from .checkins import CHECKIN_WITHDRAWN, DAY_EVENT_TYPES, Outcome

__all__ = [
    "DEFAULT_MILESTONES",
    "STREAK_MILESTONE_REACHED",
    "STREAK_MILESTONE_REVOKED",
    "STREAK_RESET",
    "CheckInEvent",
    "DayReport",
    "MilestoneHit",
    "Run",
    "Streak",
    "StreakPolicy",
    "StreakReset",
    "apply_event",
    "compute_streak",
    "counted_through",
    "fold_streak",
    "latest_reports",
    "milestone_reached_data",
    "milestone_revoked_data",
    "new_milestone_hits",
    "normalize_milestones",
    "report_from_event",
    "streak_reset",
    "streak_reset_data",
]

STREAK_MILESTONE_REACHED = "streak.milestone_reached"
STREAK_MILESTONE_REVOKED = "streak.milestone_revoked"
STREAK_RESET = "streak.reset"

DEFAULT_MILESTONES: tuple[int, ...] = (1, 3, 7, 14, 21, 30, 60, 90, 180, 365)


class StreakPolicy(StrEnum):
    """Tenant setting: how an unreported past day counts."""

    SINCE_LAST_SLIP = "since_last_slip"
    """Unreported days count as kept: only a slip ends a run (the default)."""
    VERIFIED = "verified"
    """Only reported kept days count: an unreported day ends the run."""


class CheckInEvent(Protocol):
    """What the fold reads of a stored event; `shared.events.RecordedEvent` fits."""

    @property
    def id(self) -> object: ...

    @property
    def stream_version(self) -> int: ...

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...


# A dict lookup instead of constructing the enum per event (Outcome(value) runs the
# EnumType call machinery); unknown values still go through Outcome() and raise as before.
_OUTCOMES: dict[str, Outcome] = {outcome.value: outcome for outcome in Outcome}


def _outcome(value: str) -> Outcome:
    found = _OUTCOMES.get(value)
    return found if found is not None else Outcome(value)


@dataclass(frozen=True, slots=True)
class DayReport:
    """What currently stands for one day, and which event said so.

    ``outcome`` is None when that event was a withdrawal (``checkin.withdrawn``): the day
    is unreported, and the withdrawal still outranks every older report of the day.
    ``source_id`` is the event's id as the event carries it (a UUID for stored events);
    ``event_id`` is its string form, computed only when asked for: a fold of thousands of
    events compares versions, and needs the string only for an (impossible) tie.
    """

    day: date
    outcome: Outcome | None
    stream_version: int
    source_id: object

    @property
    def event_id(self) -> str:
        return str(self.source_id)

    def supersedes(self, other: DayReport) -> bool:
        """The later stream version wins; the event id only breaks an (impossible) tie deterministically."""
        if self.stream_version != other.stream_version:
            return self.stream_version > other.stream_version
        return str(self.source_id) > str(other.source_id)


def report_from_event(event: CheckInEvent) -> DayReport | None:
    """What an event says of its day (a report, or a withdrawal), or None for other events."""
    if event.type not in DAY_EVENT_TYPES:
        return None
    data = event.data
    outcome = None if event.type == CHECKIN_WITHDRAWN else _outcome(data["outcome"])
    return DayReport(date.fromisoformat(data["date"]), outcome, event.stream_version, event.id)


def apply_event(reports: Mapping[date, DayReport], event: CheckInEvent) -> dict[date, DayReport]:
    """A new day->report mapping with ``event`` folded in; ``reports`` is not changed.

    Idempotent (a redelivered event changes nothing) and order-independent (any
    sequence of the same events ends with the same mapping): a withdrawn day stays in the
    mapping with outcome None, so an older report applied later cannot bring it back.
    """
    result = dict(reports)
    report = report_from_event(event)
    if report is None:
        return result
    standing = result.get(report.day)
    if standing is None or report.supersedes(standing):
        result[report.day] = report
    return result


def latest_reports(events: Iterable[CheckInEvent]) -> dict[date, DayReport]:
    """The standing report of every reported day, whatever order ``events`` come in (a day
    whose latest event is a withdrawal is unreported: not in the result)."""
    result: dict[date, DayReport] = {}
    types = DAY_EVENT_TYPES
    for event in events:
        # report_from_event and DayReport.supersedes inlined: this loop is the rebuild's hot path.
        if event.type not in types:
            continue
        data = event.data
        day = date.fromisoformat(data["date"])
        version = event.stream_version
        standing = result.get(day)
        if standing is not None and (
            version < standing.stream_version
            or (version == standing.stream_version and str(event.id) <= str(standing.source_id))
        ):
            continue
        outcome = None if event.type == CHECKIN_WITHDRAWN else _outcome(data["outcome"])
        result[day] = DayReport(day, outcome, version, event.id)
    return {day: report for day, report in result.items() if report.outcome is not None}


@dataclass(frozen=True)
class Run:
    """Consecutive days without contact, ``start``..``end`` inclusive.

    ``ended_by_slip_on`` is the slip day right after ``end``; ``ended_by_unreported_on``
    the unreported day right after ``end`` (``verified`` policy only). Both are None only
    for the current run, the one that reaches the last counted day.
    """

    start: date
    end: date
    ended_by_slip_on: date | None = None
    ended_by_unreported_on: date | None = None
    excused: tuple[date, ...] = ()
    """The excused days within ``start``..``end``, oldest first: they do not add to it."""

    @property
    def length(self) -> int:
        """Number of days in the run that are not excused (>= 1)."""
        return (self.end - self.start).days + 1 - len(self.excused)

    def day_number(self, n: int) -> date:
        """The run's `n`-th counted day (1-based), the excused days skipped."""
        day = self.start + timedelta(days=n - 1)
        for excused in self.excused:
            if excused > day:
                break
            day += _DAY
        return day

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form, dates as ISO strings."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "length": self.length,
            "ended_by_slip_on": _iso(self.ended_by_slip_on),
            "ended_by_unreported_on": _iso(self.ended_by_unreported_on),
        }


@dataclass(frozen=True)
class MilestoneHit:
    """Run number ``attempt`` (starting ``run_start``) reached ``threshold`` days on ``reached_on``."""

    threshold: int
    run_start: date
    attempt: int
    reached_on: date

    @property
    def key(self) -> tuple[int, date]:
        """Identity of the hit for emit-once bookkeeping; stable when earlier runs are split."""
        return (self.threshold, self.run_start)


@dataclass(frozen=True)
class Streak:
    """The streak of one commitment as of one local date; every field of CONTRACT's streak JSON.

    Beyond the contract: ``counted_through`` (last counted day, None when no day is
    counted yet), ``runs``, ``milestone_hits`` (over the whole history) and
    ``slip_days`` (every counted slipped day), which event emitters compare.
    """

    as_of: date
    policy: StreakPolicy
    current_days: int
    longest_days: int
    kept_days: int
    slipped_days: int
    unreported_days: int
    streak_started_on: date | None
    last_slip_on: date | None
    last_check_in_on: date | None
    milestones_reached: tuple[int, ...]
    next_milestone: int | None
    counted_through: date | None
    runs: tuple[Run, ...]
    milestone_hits: tuple[MilestoneHit, ...]
    slip_days: tuple[date, ...]
    excused_days: int = 0
    held_firm_days: int = 0

    @property
    def current_run(self) -> Run | None:
        """The run that contains ``counted_through``, if any."""
        if self.runs and self.runs[-1].end == self.counted_through:
            return self.runs[-1]
        return None

    def as_json(self, commitment_id: str | None = None) -> dict[str, Any]:
        """The API's streak document (CONTRACT field names), plus ``counted_through``."""
        document: dict[str, Any] = {}
        if commitment_id is not None:
            document["commitment_id"] = commitment_id
        document.update(
            {
                "as_of": self.as_of.isoformat(),
                "policy": str(self.policy),
                "current_days": self.current_days,
                "longest_days": self.longest_days,
                "kept_days": self.kept_days,
                "slipped_days": self.slipped_days,
                "unreported_days": self.unreported_days,
                "excused_days": self.excused_days,
                "held_firm_days": self.held_firm_days,
                "streak_started_on": _iso(self.streak_started_on),
                "last_slip_on": _iso(self.last_slip_on),
                "last_check_in_on": _iso(self.last_check_in_on),
                "milestones_reached": list(self.milestones_reached),
                "next_milestone": self.next_milestone,
                "counted_through": _iso(self.counted_through),
            }
        )
        return document


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def normalize_milestones(milestones: Iterable[int]) -> tuple[int, ...]:
    """Thresholds sorted ascending without duplicates; each must be a positive integer."""
    values = tuple(milestones)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"milestone thresholds must be positive integers, got {value!r}")
    return tuple(sorted(set(values)))


def counted_through(starts_on: date, ends_on: date | None, today: date, *, today_reported: bool) -> date | None:
    """The last counted day (see the module rules); None when no day is counted yet."""
    last = today if ends_on is None else min(today, ends_on)
    if last == today and not today_reported:
        last = today - timedelta(days=1)
    return last if last >= starts_on else None


def compute_streak(
    outcomes: Mapping[date, Outcome],
    *,
    starts_on: date,
    ends_on: date | None,
    today: date,
    policy: StreakPolicy | str = StreakPolicy.SINCE_LAST_SLIP,
    milestones: Sequence[int] = DEFAULT_MILESTONES,
    excused: Collection[date] = (),
    held_firm: Collection[date] = (),
) -> Streak:
    """The streak from the standing outcome of each reported day (see the module rules).

    ``today`` is the local date in the commitment's zone; days outside
    ``starts_on``..``counted_through`` are ignored. ``excused``: the days pauses cover (only
    the unreported ones are excused); ``held_firm``: the kept days that held firm against a
    contact attempt. The work grows with the reported and paused days, not with the
    calendar: a command on a year-old commitment computes this every time.
    """
    policy = StreakPolicy(policy)
    thresholds = normalize_milestones(milestones)
    through = counted_through(starts_on, ends_on, today, today_reported=today in outcomes)

    counted = [] if through is None else sorted(
        (day, outcome) for day, outcome in outcomes.items() if starts_on <= day <= through
    )
    excused_days = [] if through is None else sorted(
        day for day in set(excused) if starts_on <= day <= through and day not in outcomes
    )
    slip_days = [day for day, outcome in counted if outcome != Outcome.KEPT]
    if policy == StreakPolicy.VERIFIED:
        runs = _verified_runs(counted, through, set(excused) - outcomes.keys())
    else:
        runs = _runs_between_slips(slip_days, starts_on, through, set(excused_days))
    runs = [replace(run, excused=_within(excused_days, run.start, run.end)) for run in runs]

    current = runs[-1] if runs and runs[-1].end == through else None
    current_days = current.length if current is not None else 0
    hits = tuple(
        MilestoneHit(
            threshold=t,
            run_start=run.start,
            attempt=index,
            reached_on=run.day_number(t),
        )
        for index, run in enumerate(runs, start=1)
        for t in thresholds
        if t <= run.length
    )
    return Streak(
        as_of=today,
        policy=policy,
        current_days=current_days,
        longest_days=max((run.length for run in runs), default=0),
        kept_days=len(counted) - len(slip_days),
        slipped_days=len(slip_days),
        unreported_days=0 if through is None else (through - starts_on).days + 1 - len(counted) - len(excused_days),
        streak_started_on=current.start if current is not None else None,
        last_slip_on=slip_days[-1] if slip_days else None,
        last_check_in_on=counted[-1][0] if counted else None,
        milestones_reached=tuple(t for t in thresholds if t <= current_days),
        next_milestone=next((t for t in thresholds if t > current_days), None),
        counted_through=through,
        runs=tuple(runs),
        milestone_hits=hits,
        slip_days=tuple(slip_days),
        excused_days=len(excused_days),
        held_firm_days=0 if through is None else sum(
            1 for day in set(held_firm) if starts_on <= day <= through and outcomes.get(day) == Outcome.KEPT),
    )


_DAY = timedelta(days=1)


def _within(ordered: Sequence[date], first: date, last: date) -> tuple[date, ...]:
    """The days of `ordered` (sorted) within `first`..`last`."""
    return tuple(ordered[bisect_left(ordered, first):bisect_right(ordered, last)])


def _runs_between_slips(slip_days: Sequence[date], starts_on: date, through: date | None,
                        excused: Collection[date]) -> list[Run]:
    """``since_last_slip``: every counted day that is not a slip belongs to a run (the
    excused ones too, without adding to it); a run starts on a day that is not excused."""

    def first_counted(day: date, last: date) -> date | None:
        while day <= last and day in excused:
            day += _DAY
        return day if day <= last else None

    runs = []
    start = starts_on
    for slip in slip_days:
        first = first_counted(start, slip - _DAY)
        if first is not None:
            runs.append(Run(start=first, end=slip - _DAY, ended_by_slip_on=slip))
        start = slip + _DAY
    if through is not None:
        first = first_counted(start, through)
        if first is not None:
            runs.append(Run(start=first, end=through))
    return runs


def _verified_runs(counted: Sequence[tuple[date, Outcome]], through: date | None,
                   excused: Collection[date]) -> list[Run]:
    """``verified``: runs are consecutive reported kept days, the excused days between them
    skipped; the day expected after each is a slip or unreported (or the run reaches the
    last counted day, every day after it excused)."""

    def expected_after(day: date) -> date:
        day += _DAY
        while day in excused:
            day += _DAY
        return day

    runs = []
    start = last = None
    for day, outcome in counted:
        if start is not None and last is not None and (outcome != Outcome.KEPT or day != expected_after(last)):
            after = expected_after(last)
            if after == day:  # a slip right after
                runs.append(Run(start=start, end=day - _DAY, ended_by_slip_on=day))
            else:
                runs.append(Run(start=start, end=after - _DAY, ended_by_unreported_on=after))
            start = None
        if outcome == Outcome.KEPT and start is None:
            start = day
        last = day
    if start is not None and last is not None:
        after = expected_after(last)
        runs.append(Run(start=start, end=through) if through is not None and after > through
                    else Run(start=start, end=after - _DAY, ended_by_unreported_on=after))
    return runs


def fold_streak(
    events: Iterable[CheckInEvent],
    *,
    starts_on: date,
    ends_on: date | None,
    today: date,
    policy: StreakPolicy | str = StreakPolicy.SINCE_LAST_SLIP,
    milestones: Sequence[int] = DEFAULT_MILESTONES,
    excused: Collection[date] = (),
) -> Streak:
    """THE streak fold: the streak of a commitment from its check-in events, in any order.

    Events of other types in the stream are ignored; for each date the report with the
    highest ``stream_version`` stands (a correction is a later version of the same
    date); a duplicate delivery of the same event changes nothing.
    """
    outcomes = {day: report.outcome for day, report in latest_reports(events).items()}
    return compute_streak(
        outcomes,
        starts_on=starts_on,
        ends_on=ends_on,
        today=today,
        policy=policy,
        milestones=milestones,
        excused=excused,
    )


def new_milestone_hits(
    before: Streak | None,
    after: Streak,
    *,
    already_emitted: Collection[tuple[int, date]] = (),
) -> tuple[MilestoneHit, ...]:
    """Hits of ``after`` that ``before`` did not have: one ``streak.milestone_reached`` each.

    ``before`` None means nothing was emitted yet (every hit is new). A correction can
    take a hit away and a later one give it back; pass the keys already emitted in
    ``already_emitted`` to guarantee once-ever emission.
    """
    seen = {hit.key for hit in before.milestone_hits} if before is not None else set()
    seen.update(already_emitted)
    return tuple(hit for hit in after.milestone_hits if hit.key not in seen)


@dataclass(frozen=True)
class StreakReset:
    """A slip that ``after`` has and ``before`` had not, and the run it ended (drives ``streak.reset``)."""

    slipped_on: date
    ended_run: Run | None

    @property
    def ended_length(self) -> int:
        """Days of the run the slip ended; 0 when the day before was itself a break."""
        return self.ended_run.length if self.ended_run is not None else 0


def streak_reset(before: Streak | None, after: Streak) -> StreakReset | None:
    """The latest slip that is new in ``after``, with the run it ended; None when no new slip.

    Backdated slips count too: a slip reported today for three days ago ends the run
    that led up to it (and the current run then restarts after it).
    """
    old = set(before.slip_days) if before is not None else set()
    new = [day for day in after.slip_days if day not in old]
    if not new:
        return None
    slipped_on = new[-1]
    ended = next((run for run in after.runs if run.ended_by_slip_on == slipped_on), None)
    return StreakReset(slipped_on=slipped_on, ended_run=ended)


def milestone_reached_data(*, commitment_id: str, member_id: str, hit: MilestoneHit) -> dict[str, Any]:
    """The ``data`` of a ``streak.milestone_reached`` event, one per `MilestoneHit`.

    Fields: ``commitment_id``, ``member_id``, ``milestone`` (the threshold in days),
    ``run_started_on`` (first day of the run, ``YYYY-MM-DD``), ``attempt`` (1-based
    number of the run in the commitment's history; can grow if a backdated slip splits
    an earlier run), ``reached_on`` (the local day the run attained the threshold).
    ``(commitment_id, milestone, run_started_on)`` identifies the hit.
    `history.reconcile` adds the streak figures, and ``reported_days`` and
    ``unreported_days`` of the run (CONTRACT v1.1) as it stands when the event is emitted
    (reported kept, and unreported counted as kept under ``since_last_slip``; they sum to
    the run's length then). Here ``unreported_days`` is the run's, not the streak's figure
    of the same name that the other events carry.
    """
    return {
        "commitment_id": commitment_id,
        "member_id": member_id,
        "milestone": hit.threshold,
        "run_started_on": hit.run_start.isoformat(),
        "attempt": hit.attempt,
        "reached_on": hit.reached_on.isoformat(),
    }


def milestone_revoked_data(
    *, commitment_id: str, member_id: str, milestone: int, run_started_on: date, reason: str
) -> dict[str, Any]:
    """The ``data`` of a ``streak.milestone_revoked`` event: a ``streak.milestone_reached``
    that the commitment's reports, as they now stand, no longer make true.

    Fields: ``commitment_id``, ``member_id``, ``milestone`` and ``run_started_on`` (the
    key of the ``streak.milestone_reached`` it takes back), ``reason`` (what made it
    untrue, a `history.RevocationReason`: ``report_recorded``, ``report_corrected``,
    ``report_withdrawn``, ``settings_changed``, ``commitment_changed``);
    `history.reconcile` adds the streak figures. For every commitment, reached minus
    revoked, keyed by (milestone, run_started_on), equals the milestones of
    ``GET .../runs``. A run a later slip ended keeps its milestones: it was that long.
    """
    return {
        "commitment_id": commitment_id,
        "member_id": member_id,
        "milestone": milestone,
        "run_started_on": run_started_on.isoformat(),
        "reason": reason,
    }


def streak_reset_data(*, commitment_id: str, member_id: str, reset: StreakReset) -> dict[str, Any]:
    """The ``data`` of a ``streak.reset`` event: a slip ended a run.

    Fields: ``commitment_id``, ``member_id``, ``slipped_on`` (the slip's local day),
    ``ended_run_days`` (length of the run it ended, 0 when the day before was itself a
    slip or the first day) and ``ended_run_started_on`` (``YYYY-MM-DD`` | null).
    """
    return {
        "commitment_id": commitment_id,
        "member_id": member_id,
        "slipped_on": reset.slipped_on.isoformat(),
        "ended_run_days": reset.ended_length,
        "ended_run_started_on": _iso(reset.ended_run.start) if reset.ended_run is not None else None,
    }
