"""What each command and the passing of time add to a commitment's history.

Every decision reads the commitment's `CommitmentState` (its stream, folded: see
`state`), never the stream itself, and returns a `Decision`: the events to append, the
state once they are, and the streak and standing it computed on the way (the command
writes them without computing anything again).

Derived facts are decided by ONE function, `reconcile`, after the whole command: it
compares what the final reports make true with what the stream has told, and tells the
difference (CONTRACT v1.1, "Streak history and truthful events"):

- milestones: every run of the streak (earlier runs included) reaches each threshold up
  to its length, keyed (threshold, run start). Those not told yet are reached; those told
  that are no longer true (a backdated slip split the run, a withdrawal, a correction, a
  new policy or milestone list) are revoked. So, for every commitment, once a command has
  committed, reached minus revoked is, run by run, the milestones of ``GET .../runs``;
- ``streak.reset`` when the command's report is a new slip;
- the at-risk standing (the reasons as of today, none once the commitment is over; told as
  none until the commitment's first check-in deadline has passed): ``client.at_risk`` only
  when it differs from the one told last, so a standing is never told twice in a row;
- with the clock (the scheduler): ``checkin.missed`` once per day (never of a paused day),
  ``checkin.reminder_due`` once per unreported day at the tenant's reminder time.

Between check-ins (CONTRACT v1.1) the decisions `schedule_pause`, `cancel_pause`,
`log_urge` and `call_for_help` end in the same `reconcile`: a pause moves the runs (its
days are excused), an urge the standing.

A repeat (a retry, a second scheduler) decides on the state the first one left, so it
finds everything told and decides nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.calendar import day_bounds, local_today
from shared.errors import Conflict, NotFound, require_version
from shared.events import NewEvent

from .between import (
    MEMBER_SOS,
    PAUSE_CANCELLED,
    PAUSE_SCHEDULED,
    REMINDER_DUE,
    URGE_LOGGED,
    Pause,
    Urge,
    member_sos_data,
    parse_local_time,
    pause_cancelled_data,
    pause_scheduled_data,
    pause_violations,
    reminder_at,
    reminder_due_data,
    urge_logged_data,
    urge_reachable,
    urge_violations,
)
from .checkins import (
    CHECKIN_CORRECTED,
    CHECKIN_RECORDED,
    CHECKIN_WITHDRAWN,
    CheckIn,
    CheckInRejected,
    CommitmentNotActive,
    CommitmentStatus,
    Outcome,
    checkin_corrected_data,
    checkin_recorded_data,
    checkin_withdrawn_data,
    day_violations,
    require_own_day,
    validate_check_in,
)
from .commitment import KnownCommitment
from .missed import CHECKIN_MISSED, missed_check_in_data, missed_days, missed_deadline
from .risk import CLIENT_AT_RISK, LoggedUrge, RiskAssessment, assess_risk, client_at_risk_data
from .settings import TenantSettings
from .state import CommitmentState
from .streaks import (
    STREAK_MILESTONE_REACHED,
    STREAK_MILESTONE_REVOKED,
    STREAK_RESET,
    Run,
    Streak,
    StreakReset,
    compute_streak,
    milestone_reached_data,
    milestone_revoked_data,
    streak_reset_data,
)

__all__ = [
    "NEVER",
    "DayAlreadyReported",
    "DayNotReported",
    "Decision",
    "PauseNotFound",
    "RevocationReason",
    "assess",
    "call_for_help",
    "cancel_pause",
    "correct",
    "first_deadline",
    "log_urge",
    "logged_urges",
    "next_due",
    "pass_time",
    "reconcile",
    "record",
    "reminder_due",
    "run_history",
    "schedule_pause",
    "settle",
    "standing_risk",
    "streak_of",
    "withdraw",
]

# Nothing left to happen without a request: a far date rather than none, so "when is it
# due" always has an answer (the scheduler's column is NOT NULL).
NEVER = datetime(2999, 1, 1, tzinfo=UTC)


class DayAlreadyReported(Conflict):
    """A first report of a day that has one: a change of a report is a correction."""

    def __init__(self, day: date) -> None:
        super().__init__(f"{day.isoformat()} already has a check-in; correct it with PUT")


class DayNotReported(NotFound):
    """A correction or withdrawal of a day nobody reported."""

    def __init__(self) -> None:
        super().__init__("no such check-in for that date (record it with POST)")


class RevocationReason(StrEnum):
    """Why a ``streak.milestone_revoked`` was emitted: the kind of change that made it untrue."""

    REPORT_RECORDED = "report_recorded"
    REPORT_CORRECTED = "report_corrected"
    REPORT_WITHDRAWN = "report_withdrawn"
    SETTINGS_CHANGED = "settings_changed"
    COMMITMENT_CHANGED = "commitment_changed"
    """The commitment's terms as this service learnt them (e.g. it was ended), seen by the scheduler."""
    PAUSE_SCHEDULED = "pause_scheduled"
    """Days were excused: a run they shortened (``since_last_slip``) or joined (``verified``)."""
    PAUSE_CANCELLED = "pause_cancelled"
    """Excused days count again: a run they now break or lengthen."""


@dataclass(frozen=True)
class Decision:
    """What a command decided: `events` to append (in order), the `state` once they are, and
    the streak and the at-risk reasons as of the command's instant (the snapshot's figures)."""

    events: list[NewEvent]
    state: CommitmentState
    streak: Streak
    risk_reasons: tuple[str, ...]


def streak_of(
    commitment: KnownCommitment, outcomes: Mapping[date, Outcome], settings: TenantSettings, today: date,
    *, excused: Iterable[date] = (), held_firm: Iterable[date] = (),
) -> Streak:
    """The commitment's streak as of its local ``today``, from the outcome standing for each
    reported day (`CommitmentState.outcomes`, or the check-in rows), the paused days and the
    kept days that held firm against a contact attempt."""
    return compute_streak(
        outcomes,
        starts_on=commitment.starts_on,
        ends_on=commitment.last_day,
        today=today,
        policy=settings.streak_policy,
        milestones=settings.milestones,
        excused=frozenset(excused),
        held_firm=frozenset(held_firm),
    )


def first_deadline(commitment: KnownCommitment, settings: TenantSettings) -> datetime:
    """When the commitment's first check-in is overdue: the deadline of its first day that
    counts (its start, or the day it was created if it started earlier)."""
    created_on = local_today(commitment.timezone, commitment.created_at)
    first = max(commitment.starts_on, created_on)
    return missed_deadline(commitment.timezone, first, settings.missed_check_in_grace_hours)


def standing_risk(
    commitment: KnownCommitment, check_ins: Iterable[CheckIn], settings: TenantSettings, now: datetime,
    *, excused: Iterable[date] = (), urges: Iterable[LoggedUrge] = (),
) -> RiskAssessment:
    """Whether the client is at risk at `now` (`check_ins`: the standing reports, or at least
    those `CommitmentState.recent_check_ins` gives; `excused`: the paused days; `urges`: the
    urges logged, oldest first), as the coach sees it: only an active commitment can be."""
    if commitment.status_at(now) is not CommitmentStatus.ACTIVE:
        return RiskAssessment(at_risk=False, reasons=())
    return assess_risk(check_ins, commitment.today(now), settings.at_risk, starts_on=commitment.starts_on,
                       excused=frozenset(excused), urges=urges)


def logged_urges(commitment: KnownCommitment, state: CommitmentState) -> list[LoggedUrge]:
    """The urges the state keeps, as the at-risk rules read them (their local days)."""
    return [LoggedUrge(commitment.today(mark.at), mark.intensity, mark.outcome) for mark in state.urge_log]


def assess(
    commitment: KnownCommitment, state: CommitmentState, settings: TenantSettings, now: datetime
) -> tuple[Streak, RiskAssessment]:
    """The streak and the at-risk standing that `state` makes true at `now`."""
    today = commitment.today(now)
    excused = state.paused_days()
    streak = streak_of(commitment, state.outcomes(), settings, today, excused=excused,
                       held_firm=state.held_firm_days())
    return streak, standing_risk(commitment, state.recent_check_ins(today, settings.at_risk), settings, now,
                                 excused=excused, urges=logged_urges(commitment, state))


# -- the commands ------------------------------------------------------------------------------


def record(
    state: CommitmentState, commitment: KnownCommitment, settings: TenantSettings, check_in: CheckIn, now: datetime
) -> Decision:
    """The first report of a day: ``checkin.recorded`` and what it changes."""
    _validate(check_in, commitment, settings, now)
    if state.reported(check_in.day):
        raise DayAlreadyReported(check_in.day)
    data = checkin_recorded_data(commitment_id=commitment.commitment_id, member_id=commitment.member_id,
                                 check_in=check_in)
    return _report(state, NewEvent(CHECKIN_RECORDED, data, occurred_at=now), check_in, commitment, settings, now,
                   RevocationReason.REPORT_RECORDED)


def correct(
    state: CommitmentState,
    commitment: KnownCommitment,
    settings: TenantSettings,
    check_in: CheckIn,
    now: datetime,
    *,
    if_match: int | None = None,
    day_version: int | None = None,
) -> Decision:
    """A later report replacing a day's: ``checkin.corrected`` and what it changes.
    `if_match`: the day's version the caller decided on; `day_version`: the day's current one."""
    _validate(check_in, commitment, settings, now)
    previous = _standing_report(state, check_in.day, if_match, day_version)
    data = checkin_corrected_data(commitment_id=commitment.commitment_id, member_id=commitment.member_id,
                                  check_in=check_in, previous=previous)
    return _report(state, NewEvent(CHECKIN_CORRECTED, data, occurred_at=now), check_in, commitment, settings, now,
                   RevocationReason.REPORT_CORRECTED)


def withdraw(
    state: CommitmentState,
    commitment: KnownCommitment,
    settings: TenantSettings,
    day: date,
    now: datetime,
    *,
    if_match: int | None = None,
    day_version: int | None = None,
) -> Decision:
    """A day's report taken back (the day is unreported again): ``checkin.withdrawn`` and
    what it changes. The same days as a correction may be withdrawn."""
    terms = commitment.terms(now)
    require_own_day(day, terms)
    violations = day_violations(day, terms, commitment.today(now), settings.backdate_days)
    if violations:
        raise CheckInRejected(violations)
    previous = _standing_report(state, day, if_match, day_version)
    data = checkin_withdrawn_data(commitment_id=commitment.commitment_id, member_id=commitment.member_id, day=day,
                                  previous=previous)
    return _report(state, NewEvent(CHECKIN_WITHDRAWN, data, occurred_at=now), None, commitment, settings, now,
                   RevocationReason.REPORT_WITHDRAWN)


def pass_time(state: CommitmentState, commitment: KnownCommitment, settings: TenantSettings,
              now: datetime) -> Decision:
    """What the passing of time (and what the inbox learnt of the commitment) made true by
    `now`: days missed, milestones of days that ended, a change of standing. An ended
    commitment misses no more days."""
    include_missed = commitment.recorded_status != CommitmentStatus.ENDED
    return reconcile(state, state, commitment, settings, now, RevocationReason.COMMITMENT_CHANGED,
                     include_missed=include_missed)


def settle(state: CommitmentState, commitment: KnownCommitment, settings: TenantSettings,
           now: datetime) -> Decision:
    """What new settings (policy, milestones, thresholds, grace) make true of the commitment."""
    return reconcile(state, state, commitment, settings, now, RevocationReason.SETTINGS_CHANGED)


def schedule_pause(state: CommitmentState, commitment: KnownCommitment, settings: TenantSettings, pause: Pause,
                   now: datetime) -> Decision:
    """Excuse `pause`'s days: ``pause.scheduled`` and what it changes (runs, milestones,
    the standing). Only an active commitment takes one."""
    terms = commitment.terms(now)
    if terms.status is not CommitmentStatus.ACTIVE:
        raise CommitmentNotActive(terms.status, terms.last_day)
    violations = pause_violations(pause, commitment=terms, today=commitment.today(now),
                                  backdate_days=settings.backdate_days, scheduled=state.pauses)
    if violations:
        raise CheckInRejected(violations)
    data = pause_scheduled_data(commitment_id=commitment.commitment_id, member_id=commitment.member_id, pause=pause)
    return _between(state, NewEvent(PAUSE_SCHEDULED, data, occurred_at=now), commitment, settings, now,
                    RevocationReason.PAUSE_SCHEDULED)


class PauseNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such pause (or it was cancelled)")


class PauseSettled(Conflict):
    """A pause that began before the backdating window: its days are as settled as any
    report of them, so taking it back would re-open days nobody may report any more."""

    def __init__(self, earliest: date) -> None:
        super().__init__(f"the pause began before the backdating window (earliest {earliest.isoformat()}): "
                         "its days stay excused")


def cancel_pause(state: CommitmentState, commitment: KnownCommitment, settings: TenantSettings, pause_id: str,
                 now: datetime) -> Decision:
    """Take a pause back, its days expected again: ``pause.cancelled`` and what it changes."""
    pause = state.pause(pause_id)
    if pause is None:
        raise PauseNotFound()
    terms = commitment.terms(now)
    if terms.status is not CommitmentStatus.ACTIVE:
        raise CommitmentNotActive(terms.status, terms.last_day)
    earliest = commitment.today(now) - timedelta(days=settings.backdate_days)
    if pause[1] < earliest:
        raise PauseSettled(earliest)
    data = pause_cancelled_data(commitment_id=commitment.commitment_id, member_id=commitment.member_id, pause=pause)
    return _between(state, NewEvent(PAUSE_CANCELLED, data, occurred_at=now), commitment, settings, now,
                    RevocationReason.PAUSE_CANCELLED)


def log_urge(state: CommitmentState, commitment: KnownCommitment, settings: TenantSettings, urge: Urge,
             now: datetime) -> Decision:
    """An urge logged between check-ins: ``urge.logged`` and the standing it changes."""
    terms = commitment.terms(now)
    local_day = commitment.today(urge.at) if urge_reachable(urge.at, now, settings.backdate_days) else None
    if local_day is not None:
        require_own_day(local_day, terms)
    violations = urge_violations(urge, commitment=terms, local_day=local_day, today=commitment.today(now), now=now,
                                 backdate_days=settings.backdate_days)
    if violations:
        raise CheckInRejected(violations)
    data = urge_logged_data(commitment_id=commitment.commitment_id, member_id=commitment.member_id, urge=urge)
    # An urge moves no run: no milestone is revoked for it (the reason is never told).
    return _between(state, NewEvent(URGE_LOGGED, data, occurred_at=now), commitment, settings, now,
                    RevocationReason.REPORT_RECORDED)


def call_for_help(state: CommitmentState, commitment: KnownCommitment, settings: TenantSettings,
                  message: str | None, now: datetime) -> Decision:
    """An SOS: ``member.sos`` (for the coach's feed and webhooks within a second). Whatever
    the commitment's status: a member in danger is never refused for a date."""
    data = member_sos_data(commitment_id=commitment.commitment_id, member_id=commitment.member_id,
                           coach_id=commitment.coach_id, message=message)
    return _between(state, NewEvent(MEMBER_SOS, data, occurred_at=now), commitment, settings, now,
                    RevocationReason.REPORT_RECORDED)


def _between(state: CommitmentState, event: NewEvent, commitment: KnownCommitment, settings: TenantSettings,
             now: datetime, reason: RevocationReason) -> Decision:
    """`event` first (as the catalogue describes it: no streak figures), then what it makes true."""
    reconciled = reconcile(state, state.after([event]), commitment, settings, now, reason)
    return Decision([event, *reconciled.events], reconciled.state, reconciled.streak, reconciled.risk_reasons)


def _validate(check_in: CheckIn, commitment: KnownCommitment, settings: TenantSettings, now: datetime) -> None:
    validate_check_in(check_in, commitment=commitment.terms(now), today=commitment.today(now),
                      backdate_days=settings.backdate_days)


def _standing_report(state: CommitmentState, day: date, if_match: int | None, day_version: int | None) -> CheckIn:
    """The report standing for `day`, which the caller means to replace or withdraw."""
    previous = state.check_in(day)
    if previous is None:
        raise DayNotReported()
    if if_match is not None:
        require_version(if_match, day_version if day_version is not None else -1)
    return previous


def _report(
    state: CommitmentState,
    event: NewEvent,
    report: CheckIn | None,
    commitment: KnownCommitment,
    settings: TenantSettings,
    now: datetime,
    reason: RevocationReason,
) -> Decision:
    # The event carries the streak it results in, so a webhook needs no lookup.
    after = state.after([event])
    reconciled = reconcile(state, after, commitment, settings, now, reason, report=report)
    told = NewEvent(event.type, {**event.data, **reconciled.streak.as_json()}, id=event.id, occurred_at=now)
    return Decision([told, *reconciled.events], reconciled.state, reconciled.streak, reconciled.risk_reasons)


# -- what the final state makes true -------------------------------------------------------------


def reconcile(
    before: CommitmentState,
    after: CommitmentState,
    commitment: KnownCommitment,
    settings: TenantSettings,
    now: datetime,
    reason: RevocationReason,
    *,
    report: CheckIn | None = None,
    include_missed: bool = False,
) -> Decision:
    """The facts `after` (the state once the command's reports are folded) makes true as of
    `now` that the stream has not told, or has told and are no longer true (see the module
    docstring). `before`: the state the command decided on; `report`: the report it made.

    Every event carries the streak's figures, so a webhook needs no lookup.
    """
    streak, assessment = assess(commitment, after, settings, now)
    figures = streak.as_json()
    ids = {"commitment_id": commitment.commitment_id, "member_id": commitment.member_id}
    derived: list[NewEvent] = []

    def tell(type_: str, data: dict[str, Any], **over_figures: Any) -> None:
        derived.append(NewEvent(type_, {**data, **figures, **over_figures}, occurred_at=now))

    if report is not None and report.outcome == Outcome.SLIPPED and before.outcome(report.day) != Outcome.SLIPPED \
            and report.day in streak.slip_days:
        ended = next((run for run in streak.runs if run.ended_by_slip_on == report.day), None)
        tell(STREAK_RESET, streak_reset_data(**ids, reset=StreakReset(report.day, ended)))

    true = {hit.key: hit for hit in streak.milestone_hits}
    for threshold, run_start in sorted(after.milestones - true.keys(), key=lambda key: (key[1], key[0])):
        tell(STREAK_MILESTONE_REVOKED, milestone_revoked_data(
            **ids, milestone=threshold, run_started_on=run_start, reason=str(reason)))
    runs = {run.start: run for run in streak.runs}
    for key, hit in true.items():
        if key in after.milestones:
            continue
        run = runs[hit.run_start]
        reported = after.reported_between(run.start, run.end)
        # The run's days, not the streak's: CONTRACT v1.1 names them so in this event.
        tell(STREAK_MILESTONE_REACHED, milestone_reached_data(**ids, hit=hit), reported_days=reported,
             unreported_days=run.length - reported)

    reasons = tuple(str(r) for r in assessment.reasons)
    # Partners hear of a standing once the commitment's first check-in was due: a commitment
    # just made (backdated, say) has not had the chance to miss anything yet. The coach sees
    # the reasons at once (the snapshot's); the scheduler tells them at the first deadline.
    told = reasons if now >= first_deadline(commitment, settings) else ()
    if told != after.standing:
        told_assessment = assessment if told else RiskAssessment(at_risk=False, reasons=())
        tell(CLIENT_AT_RISK, {**client_at_risk_data(**ids, assessment=told_assessment),
                              "at_risk": told_assessment.at_risk, "previous_reasons": list(after.standing)})

    if include_missed:
        # Days before the commitment was known to anyone are not "missed": a commitment
        # backdated 300 days must not start with 300 reminders. A paused day is not missed.
        grace = settings.missed_check_in_grace_hours
        for day in missed_days(
            reported_days=after.reported_days() | after.paused_days(),
            starts_on=commitment.starts_on,
            ends_on=commitment.last_day,
            tz=commitment.timezone,
            now=now,
            grace_hours=grace,
            not_before=max(commitment.starts_on, local_today(commitment.timezone, commitment.created_at)),
        ):
            if day not in after.missed:
                tell(CHECKIN_MISSED, missed_check_in_data(
                    **ids, day=day, deadline=missed_deadline(commitment.timezone, day, grace)))
        reminder = reminder_due(after, commitment, settings, now)
        if reminder is not None:
            # As the catalogue describes it: no streak figures.
            derived.append(NewEvent(REMINDER_DUE, reminder_due_data(
                **ids, day=reminder, local_time=settings.reminder_local_time or ""), occurred_at=now))
    return Decision(derived, after.after(derived), streak, reasons)


def reminder_due(state: CommitmentState, commitment: KnownCommitment, settings: TenantSettings,
                 now: datetime) -> date | None:
    """The day to remind of at `now`, if any: the tenant has a reminder time, it has come
    today in the member's zone (after the commitment was made), today is one of an active
    commitment's days, not reported, not paused, and not reminded of yet. Only today: a day
    that ended unreported is missed, not reminded of."""
    if settings.reminder_local_time is None or commitment.status_at(now) is not CommitmentStatus.ACTIVE:
        return None
    today = commitment.today(now)
    if today < commitment.starts_on or (state.reminded_on is not None and state.reminded_on >= today):
        return None
    at = reminder_at(commitment.timezone, today, parse_local_time(settings.reminder_local_time))
    if not commitment.created_at <= at <= now or state.reported(today) or today in state.paused_days():
        return None
    return today


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
        missed_deadline(commitment.timezone, today, grace),  # on the first day: the first deadline
    ]
    if settings.reminder_local_time is not None:
        candidates.append(reminder_at(commitment.timezone, today, parse_local_time(settings.reminder_local_time)))
    return min(c for c in candidates if c > now)


# -- the runs (GET .../runs) -----------------------------------------------------------------------


def run_history(
    commitment: KnownCommitment, state: CommitmentState, settings: TenantSettings, now: datetime
) -> list[dict[str, Any]]:
    """Every run of the streak as of `now`, oldest first (CONTRACT v1.1): the runs
    ``longest_days`` is taken from, each with the milestones it reached.

    ``ended_by``: ``"slip"``, ``"unreported"`` (the ``verified`` policy: an unreported day
    ended it), ``"commitment_end"`` (the commitment's last day is over, or it was ended), or
    null while the run goes on (then ``ended_on`` is null too).
    """
    today = commitment.today(now)
    streak = streak_of(commitment, state.outcomes(), settings, today, excused=state.paused_days(),
                       held_firm=state.held_firm_days())
    last = commitment.last_day
    over = last is not None and (last < today or commitment.recorded_status == CommitmentStatus.ENDED)
    return [_run_json(run, state, settings, over and run.end == streak.counted_through) for run in streak.runs]


def _run_json(
    run: Run, state: CommitmentState, settings: TenantSettings, ended_with_commitment: bool
) -> dict[str, Any]:
    if run.ended_by_slip_on is not None:
        ended_by: str | None = "slip"
    elif run.ended_by_unreported_on is not None:
        ended_by = "unreported"
    else:
        ended_by = "commitment_end" if ended_with_commitment else None
    return {
        "started_on": run.start.isoformat(),
        "ended_on": None if ended_by is None else run.end.isoformat(),
        "days": run.length,
        "ended_by": ended_by,
        "reported_days": state.reported_between(run.start, run.end),
        "milestones": [t for t in settings.milestones if t <= run.length],
    }
