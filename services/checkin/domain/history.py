"""A commitment's check-in history, and what each command and the passing of time add to it.

The history is what the commitment's stream says, folded once: the report standing for
each day and the facts already told (milestones celebrated, days missed, the last at-risk
standing). Every decision reads it and returns the events to append, never anything
else, so a repeat (a retry, a second scheduler) decides nothing new: milestones are keyed
by (threshold, run start), misses by date, and the at-risk standing by the last
``client.at_risk`` recorded.

Derived facts (milestones, resets, at-risk changes, missed days) are decided by one
function, `derive_facts`, whether a check-in or the clock caused them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.calendar import day_bounds, local_today
from shared.errors import Conflict, NotFound
from shared.events import NewEvent

from .checkins import (
    CHECK_IN_EVENT_TYPES,
    CHECKIN_CORRECTED,
    CHECKIN_RECORDED,
    CheckIn,
    CommitmentStatus,
    check_in_from_event_data,
    checkin_corrected_data,
    checkin_recorded_data,
    validate_check_in,
)
from .commitment import KnownCommitment
from .missed import CHECKIN_MISSED, missed_check_in_data, missed_days, missed_deadline
from .risk import CLIENT_AT_RISK, RiskAssessment, assess_risk, client_at_risk_data
from .settings import TenantSettings
from .streaks import (
    STREAK_MILESTONE_REACHED,
    STREAK_RESET,
    CheckInEvent,
    Streak,
    compute_streak,
    latest_reports,
    milestone_reached_data,
    new_milestone_hits,
    streak_reset,
    streak_reset_data,
)

__all__ = [
    "NEVER",
    "CheckInHistory",
    "DayAlreadyReported",
    "DayNotReported",
    "derive_facts",
    "next_due",
    "standing_check_ins",
    "standing_risk",
    "streak_of",
]

# Nothing left to happen without a request: a far date rather than none, so "when is it
# due" always has an answer (the scheduler's column is NOT NULL).
NEVER = datetime(2999, 1, 1, tzinfo=UTC)


class DayAlreadyReported(Conflict):
    """A first report of a day that has one: a change of a report is a correction."""

    def __init__(self, day: date) -> None:
        super().__init__(f"{day.isoformat()} already has a check-in; correct it with PUT")


class DayNotReported(NotFound):
    """A correction of a day nobody reported."""

    def __init__(self) -> None:
        super().__init__("no such check-in for that date (record it with POST)")


def standing_check_ins(events: Sequence[CheckInEvent]) -> dict[date, CheckIn]:
    """The report that stands for each reported day, by day (what the check-in rows hold)."""
    # Keyed by the raw id the reports carry: no string per event of the stream.
    data_of = {e.id: e.data for e in events if e.type in CHECK_IN_EVENT_TYPES}
    return {day: check_in_from_event_data(data_of[r.source_id]) for day, r in latest_reports(events).items()}


def streak_of(
    commitment: KnownCommitment, check_ins: Mapping[date, CheckIn], settings: TenantSettings, today: date
) -> Streak:
    """The commitment's streak as of its local ``today``, from the standing report of each day."""
    return compute_streak(
        {day: check_in.outcome for day, check_in in check_ins.items()},
        starts_on=commitment.starts_on,
        ends_on=commitment.last_day,
        today=today,
        policy=settings.streak_policy,
        milestones=settings.milestones,
    )


def standing_risk(
    commitment: KnownCommitment, check_ins: Iterable[CheckIn], settings: TenantSettings, now: datetime
) -> RiskAssessment:
    """Whether the client is at risk at `now`: only an active commitment can be."""
    if commitment.status_at(now) is not CommitmentStatus.ACTIVE:
        return RiskAssessment(at_risk=False, reasons=())
    return assess_risk(check_ins, commitment.today(now), settings.at_risk, starts_on=commitment.starts_on)


@dataclass(frozen=True)
class CheckInHistory:
    """What a commitment's stream says, folded once (see the module docstring)."""

    version: int
    check_ins: Mapping[date, CheckIn]
    milestones_told: frozenset[tuple[int, date]]  # (threshold, run start) of each milestone_reached
    missed_told: frozenset[date]
    risk_reasons: tuple[str, ...]  # the standing the last client.at_risk told

    @classmethod
    def of(cls, events: Sequence[CheckInEvent]) -> CheckInHistory:
        milestones: set[tuple[int, date]] = set()
        missed: set[date] = set()
        risk: tuple[str, ...] = ()
        for event in events:
            if event.type == STREAK_MILESTONE_REACHED:
                milestones.add((event.data["milestone"], date.fromisoformat(event.data["run_started_on"])))
            elif event.type == CHECKIN_MISSED:
                missed.add(date.fromisoformat(event.data["date"]))
            elif event.type == CLIENT_AT_RISK:
                risk = tuple(event.data.get("reasons", ()))
        return cls(
            version=events[-1].stream_version if events else 0,
            check_ins=standing_check_ins(events),
            milestones_told=frozenset(milestones),
            missed_told=frozenset(missed),
            risk_reasons=risk,
        )

    def record(
        self, commitment: KnownCommitment, settings: TenantSettings, check_in: CheckIn, now: datetime
    ) -> list[NewEvent]:
        """The first report of a day: ``checkin.recorded`` and what it causes."""
        _validate(check_in, commitment, settings, now)
        if check_in.day in self.check_ins:
            raise DayAlreadyReported(check_in.day)
        data = checkin_recorded_data(
            commitment_id=commitment.commitment_id, member_id=commitment.member_id, check_in=check_in
        )
        return self._report(CHECKIN_RECORDED, data, check_in, commitment, settings, now)

    def correct(
        self, commitment: KnownCommitment, settings: TenantSettings, check_in: CheckIn, now: datetime
    ) -> list[NewEvent]:
        """A later report replacing a day's: ``checkin.corrected`` and what it causes."""
        _validate(check_in, commitment, settings, now)
        previous = self.check_ins.get(check_in.day)
        if previous is None:
            raise DayNotReported()
        data = checkin_corrected_data(
            commitment_id=commitment.commitment_id,
            member_id=commitment.member_id,
            check_in=check_in,
            previous=previous,
        )
        return self._report(CHECKIN_CORRECTED, data, check_in, commitment, settings, now)

    def pass_time(self, commitment: KnownCommitment, settings: TenantSettings, now: datetime) -> list[NewEvent]:
        """What the passing of time made true by `now`: days missed, milestones reached by
        days ending, a change of at-risk standing. Nothing once the commitment has ended."""
        if commitment.recorded_status == CommitmentStatus.ENDED:
            return []
        return derive_facts(self, commitment, settings, now, include_missed=True)[1]

    def after(self, check_in: CheckIn) -> dict[date, CheckIn]:
        """The standing reports once `check_in` is recorded (it replaces its day's)."""
        return {**self.check_ins, check_in.day: check_in}

    def _report(
        self,
        type_: str,
        data: dict[str, Any],
        check_in: CheckIn,
        commitment: KnownCommitment,
        settings: TenantSettings,
        now: datetime,
    ) -> list[NewEvent]:
        # The report carries the streak it results in, so a webhook needs no lookup.
        after, derived = derive_facts(self, commitment, settings, now, report=check_in)
        return [NewEvent(type_, {**data, **after.as_json()}, occurred_at=now), *derived]


def _validate(check_in: CheckIn, commitment: KnownCommitment, settings: TenantSettings, now: datetime) -> None:
    validate_check_in(
        check_in,
        commitment=commitment.terms(now),
        today=commitment.today(now),
        backdate_days=settings.backdate_days,
    )


def derive_facts(
    history: CheckInHistory,
    commitment: KnownCommitment,
    settings: TenantSettings,
    now: datetime,
    *,
    report: CheckIn | None = None,
    include_missed: bool = False,
) -> tuple[Streak, list[NewEvent]]:
    """The streak as of `now` (with `report`, a report about to be recorded, standing for
    its day), and the facts it makes true that the history has not told yet: a slip the
    report adds, milestones of the current run, a change of at-risk standing and, with
    `include_missed`, the days whose deadline passed unreported.

    Every event carries the streak's figures, so a webhook needs no lookup.
    """
    today = commitment.today(now)
    check_ins = history.check_ins if report is None else history.after(report)
    after = streak_of(commitment, check_ins, settings, today)
    figures = after.as_json()
    ids = {"commitment_id": commitment.commitment_id, "member_id": commitment.member_id}
    derived: list[NewEvent] = []

    if report is not None:
        reset = streak_reset(streak_of(commitment, history.check_ins, settings, today), after)
        if reset is not None:
            derived.append(
                NewEvent(STREAK_RESET, {**streak_reset_data(**ids, reset=reset), **figures}, occurred_at=now)
            )

    # Only the current run celebrates: a threshold an earlier run passed is history.
    current = after.current_run
    for hit in new_milestone_hits(None, after, already_emitted=history.milestones_told):
        if current is None or hit.run_start != current.start:
            continue
        derived.append(
            NewEvent(STREAK_MILESTONE_REACHED, {**milestone_reached_data(**ids, hit=hit), **figures}, occurred_at=now)
        )

    assessment = standing_risk(commitment, check_ins.values(), settings, now)
    reasons = tuple(str(reason) for reason in assessment.reasons)
    if reasons != history.risk_reasons:
        data = {
            **client_at_risk_data(**ids, assessment=assessment),
            "at_risk": assessment.at_risk,
            "previous_reasons": list(history.risk_reasons),
            **figures,
        }
        derived.append(NewEvent(CLIENT_AT_RISK, data, occurred_at=now))

    if include_missed:
        # Days before the commitment was known to anyone are not "missed": a commitment
        # backdated 300 days must not start with 300 reminders.
        created_on = local_today(commitment.timezone, commitment.created_at)
        grace = settings.missed_check_in_grace_hours
        for day in missed_days(
            reported_days=check_ins.keys(),
            starts_on=commitment.starts_on,
            ends_on=commitment.last_day,
            tz=commitment.timezone,
            now=now,
            grace_hours=grace,
            not_before=max(commitment.starts_on, created_on),
        ):
            if day in history.missed_told:
                continue
            deadline = missed_deadline(commitment.timezone, day, grace)
            derived.append(
                NewEvent(
                    CHECKIN_MISSED,
                    {**missed_check_in_data(**ids, day=day, deadline=deadline), **figures},
                    occurred_at=now,
                )
            )
    return after, derived


def next_due(commitment: KnownCommitment, settings: TenantSettings, now: datetime) -> datetime:
    """The next instant something about this commitment can change without a request."""
    if commitment.recorded_status == CommitmentStatus.ENDED:
        return NEVER
    grace = settings.missed_check_in_grace_hours
    last = commitment.last_day
    if last is not None and missed_deadline(commitment.timezone, last, grace) <= now:
        return NEVER
    today = commitment.today(now)
    candidates = [
        day_bounds(commitment.timezone, today)[1],  # the day ends: streak, risk, milestones move
        missed_deadline(commitment.timezone, today - timedelta(days=1), grace),
        missed_deadline(commitment.timezone, today, grace),
    ]
    return min(c for c in candidates if c > now)
