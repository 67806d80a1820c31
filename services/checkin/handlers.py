"""Commands -> events: each loads the commitment's check-in stream, decides, and appends
with ``expected_version`` and applies the inline projections, all in ONE transaction.

Optimistic concurrency is what makes the hard promises hold:
- two check-ins for the same day at once: both decide on version N, one append wins, the
  other gets ConcurrencyError, retries, now sees the day reported and answers 409;
- two schedulers at once: the loser retries, re-derives from the stream, finds every fact
  already recorded and appends nothing. No duplicate event, nothing half-written.

Derived facts (milestones, resets, at-risk changes, missed days) are decided by one
function, `derive_facts`, from the stream alone, whether a check-in or the clock caused them.

The append comes LAST in every transaction: it takes the store's append lock (one for every
service in the schema, held until COMMIT), so the read-model writes go first, from the
events as the append will record them (`_Pending`: all but the position, which the read
models never read). The expected_version check inside the append still refuses a command
decided on a stale stream, and then everything written before it rolls back with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, update
from sqlalchemy.exc import IntegrityError

from services.checkin import tables
from services.checkin.access import tenant_of, visible_commitment
from services.checkin.domain import (
    CHECK_IN_EVENT_TYPES,
    CHECKIN_CORRECTED,
    CHECKIN_RECORDED,
    CheckIn,
    CheckInRejected,
    CommitmentNotActive,
    CommitmentStatus,
    Initiator,
    Outcome,
    Slip,
    Streak,
    assess_risk,
    check_in_from_event_data,
    checkin_corrected_data,
    checkin_recorded_data,
    day_bounds,
    fold_streak,
    latest_reports,
    local_today,
    milestone_reached_data,
    missed_check_in_data,
    missed_days,
    missed_deadline,
    streak_reset,
    streak_reset_data,
    validate_check_in,
)
from services.checkin.domain.settings import SETTINGS_UPDATED, TenantSettings, settings_updated_data
from services.checkin.projections import (
    NEVER,
    KnownCommitment,
    apply_check_in_event,
    apply_settings_event,
    load_commitment,
    load_settings,
    refresh_all_streaks,
    refresh_streak,
    settings_stream_id,
    store_streak,
)
from shared.auth import Principal
from shared.envelope import versions
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.eventstore import ConcurrencyError, append, read_stream, utcnow
from shared.problems import Problem, conflict, not_found

STREAK_MILESTONE_REACHED = "streak.milestone_reached"
STREAK_RESET = "streak.reset"
CHECKIN_MISSED = "checkin.missed"
CLIENT_AT_RISK = "client.at_risk"

EVENT_TYPES = (
    CHECKIN_RECORDED,
    CHECKIN_CORRECTED,
    STREAK_MILESTONE_REACHED,
    STREAK_RESET,
    CHECKIN_MISSED,
    CLIENT_AT_RISK,
    SETTINGS_UPDATED,
)
for _type in EVENT_TYPES:
    versions.register(_type, 1)

MAX_ATTEMPTS = 8
SCHEDULER_ACTOR = "scheduler:checkin"

T = TypeVar("T")


def with_retry(attempt: Callable[[], T]) -> T:
    """Run a decide-and-append attempt again when another writer moved the stream first."""
    for _ in range(MAX_ATTEMPTS - 1):
        try:
            return attempt()
        except ConcurrencyError:
            continue
    return attempt()


# -- derived facts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """An event about to be appended, seen by the fold as if it were stored."""

    id: uuid.UUID
    stream_version: int
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class _Pending:
    """An event about to be appended, as the read models will see it once recorded.

    Everything `apply_check_in_event` / `apply_settings_event` read of a RecordedEvent; the
    position is left out on purpose: the append hands it out last, under the lock.
    """

    id: uuid.UUID
    type: str
    data: dict[str, Any]
    stream_version: int
    tenant_id: str | None
    recorded_at: datetime


def _pending(events: Sequence[NewEvent], version: int, metadata: Metadata, recorded_at: datetime) -> list[_Pending]:
    """`events` as they will be recorded after stream version `version` (append's `now`)."""
    return [
        _Pending(e.id, e.type, e.data, version + offset, metadata.tenant_id, recorded_at)
        for offset, e in enumerate(events, start=1)
    ]


def _guarded(write: Callable[[], T], stream_id: str, expected: int) -> T:
    """Read-model writes made before the append, under optimistic concurrency.

    A concurrent command on the same stream may insert the same row (the same day's check-in,
    a first streak row) and commit first: ours then fails on the key. That is the same lost
    race the append would have reported, so it is reported the same way (and retried).
    """
    try:
        return write()
    except IntegrityError as error:
        raise ConcurrencyError(stream_id, expected, expected + 1) from error


def streak_figures(streak: Streak) -> dict[str, Any]:
    """The streak numbers every check-in-stream event carries, so a webhook needs no lookup."""
    return streak.as_json()


def _fold(events: Sequence[Any], commitment: KnownCommitment, settings: TenantSettings, today: date) -> Streak:
    return fold_streak(
        events,
        starts_on=commitment.starts_on,
        ends_on=commitment.last_day,
        today=today,
        policy=settings.streak_policy,
        milestones=settings.milestones,
    )


def derive_facts(
    stream: Sequence[RecordedEvent],
    pending: Sequence[NewEvent],
    commitment: KnownCommitment,
    settings: TenantSettings,
    now: datetime,
    *,
    include_missed: bool,
    after: Streak | None = None,
) -> list[NewEvent]:
    """The events that `pending` (check-ins about to be appended) and the passing of time add.

    Decided from the stream alone, so a repeat (a retry, a second scheduler) derives
    nothing new: milestones are keyed by (threshold, run start), misses by date, and the
    at-risk state by the last ``client.at_risk`` recorded. `after`, when the caller has
    folded stream + pending already, saves folding it again.
    """
    version = stream[-1].stream_version if stream else 0
    candidates = [_Candidate(e.id, version + i, e.type, e.data) for i, e in enumerate(pending, start=1)]
    everything = [*stream, *candidates]
    today = commitment.today(now)
    if after is None:
        after = _fold(everything, commitment, settings, today)
    figures = streak_figures(after)
    ids = {"commitment_id": commitment.commitment_id, "member_id": commitment.member_id}
    derived: list[NewEvent] = []

    if pending:
        reset = streak_reset(_fold(stream, commitment, settings, today), after)
        if reset is not None:
            derived.append(
                NewEvent(STREAK_RESET, {**streak_reset_data(**ids, reset=reset), **figures}, occurred_at=now)
            )

    # Only the current run celebrates: a threshold an earlier run passed is history.
    current = after.current_run
    emitted = {(e.data["milestone"], e.data["run_started_on"]) for e in stream if e.type == STREAK_MILESTONE_REACHED}
    for hit in after.milestone_hits:
        if current is None or hit.run_start != current.start:
            continue
        if (hit.threshold, hit.run_start.isoformat()) in emitted:
            continue
        derived.append(
            NewEvent(STREAK_MILESTONE_REACHED, {**milestone_reached_data(**ids, hit=hit), **figures}, occurred_at=now)
        )

    standing = standing_check_ins(everything)
    reasons: list[str] = []
    if commitment.status_at(now) is CommitmentStatus.ACTIVE:
        assessment = assess_risk(standing.values(), today, settings.at_risk, starts_on=commitment.starts_on)
        reasons = [str(reason) for reason in assessment.reasons]
    last_risk = next((e.data for e in reversed(stream) if e.type == CLIENT_AT_RISK), None)
    last_reasons = list(last_risk.get("reasons", [])) if last_risk else []
    if reasons != last_reasons:
        derived.append(
            NewEvent(
                CLIENT_AT_RISK,
                {**ids, "at_risk": bool(reasons), "reasons": reasons, "previous_reasons": last_reasons, **figures},
                occurred_at=now,
            )
        )

    if include_missed:
        emitted_missed = {e.data["date"] for e in stream if e.type == CHECKIN_MISSED}
        # Days before the commitment was known to anyone are not "missed": a commitment
        # backdated 300 days must not start with 300 reminders.
        created_on = local_today(commitment.timezone, commitment.created_at)
        grace = settings.missed_check_in_grace_hours
        for day in missed_days(
            reported_days=standing.keys(),
            starts_on=commitment.starts_on,
            ends_on=commitment.last_day,
            tz=commitment.timezone,
            now=now,
            grace_hours=grace,
            not_before=max(commitment.starts_on, created_on),
        ):
            if day.isoformat() in emitted_missed:
                continue
            deadline = missed_deadline(commitment.timezone, day, grace)
            derived.append(
                NewEvent(
                    CHECKIN_MISSED,
                    {**missed_check_in_data(**ids, day=day, deadline=deadline), **figures},
                    occurred_at=now,
                )
            )
    return derived


def standing_check_ins(events: Sequence[Any]) -> dict[date, CheckIn]:
    """The report that stands for each reported day, by day (what the check-in rows hold)."""
    # Keyed by the raw id the reports carry: no string per event of the stream.
    data_of = {e.id: e.data for e in events if e.type in CHECK_IN_EVENT_TYPES}
    return {day: check_in_from_event_data(data_of[r.source_id]) for day, r in latest_reports(events).items()}


# -- check-ins --------------------------------------------------------------------------------


def _check_in(body: dict[str, Any], day: date) -> CheckIn:
    slip = body.get("slip")
    return CheckIn(
        day=day,
        outcome=Outcome(body["outcome"]),
        urge=body.get("urge"),
        mood=body.get("mood"),
        slip=Slip(slip["channel"], Initiator(slip["initiated_by"])) if slip else None,
        note=body.get("note"),
    )


def _validate(check_in: CheckIn, commitment: KnownCommitment, settings: TenantSettings, now: datetime) -> None:
    try:
        validate_check_in(
            check_in,
            commitment=commitment.terms(now),
            today=commitment.today(now),
            backdate_days=settings.backdate_days,
        )
    except CommitmentNotActive as error:
        raise conflict(str(error)) from error
    except CheckInRejected as error:
        raise Problem(422, str(error), errors=error.errors()) from error


def _metadata(caller: Principal, correlation_id: str | None) -> Metadata:
    return Metadata(tenant_id=caller.tenant_id, correlation_id=correlation_id, actor=caller.actor)


def _store(
    conn: Connection,
    commitment: KnownCommitment,
    stream: Sequence[RecordedEvent],
    events: list[NewEvent],
    metadata: Metadata,
    settings: TenantSettings,
    now: datetime,
) -> list[RecordedEvent]:
    """Write the inline projections of `events`, then append them (taking the lock last)."""
    version = stream[-1].stream_version if stream else 0
    recorded_at = utcnow()
    pending = _pending(events, version, metadata, recorded_at)

    def project() -> None:
        for event in pending:
            if event.type in CHECK_IN_EVENT_TYPES:
                apply_check_in_event(conn, event)
        # The rows now hold exactly the standing reports of stream + pending: take them from
        # there rather than reading the rows back.
        standing = standing_check_ins([*stream, *pending])
        store_streak(conn, commitment, [standing[day] for day in sorted(standing)], settings, now)

    _guarded(project, commitment.stream_id, version)
    return append(conn, commitment.stream_id, events, expected_version=version, metadata=metadata, now=recorded_at)


def record_check_in(
    engine: Engine,
    caller: Principal,
    commitment_id: str,
    body: dict[str, Any],
    *,
    now: datetime,
    correlation_id: str | None = None,
) -> tuple[KnownCommitment, RecordedEvent]:
    """Record the first report of a day: 409 if the day has one, 422 if it breaks a rule."""

    def attempt() -> tuple[KnownCommitment, RecordedEvent]:
        with engine.begin() as conn:
            commitment = visible_commitment(conn, caller, commitment_id, write=True)
            settings, _ = load_settings(conn, commitment.tenant_id)
            check_in = _check_in(body, body.get("date") or commitment.today(now))
            _validate(check_in, commitment, settings, now)
            stream = read_stream(conn, commitment.stream_id)
            if check_in.day in latest_reports(stream):
                raise conflict(f"{check_in.day.isoformat()} already has a check-in; correct it with PUT")
            event = NewEvent(
                CHECKIN_RECORDED,
                checkin_recorded_data(
                    commitment_id=commitment.commitment_id, member_id=commitment.member_id, check_in=check_in
                ),
                occurred_at=now,
            )
            events = _with_figures(stream, event, commitment, settings, now)
            recorded = _store(conn, commitment, stream, events, _metadata(caller, correlation_id), settings, now)
            return commitment, recorded[0]

    return with_retry(attempt)


def correct_check_in(
    engine: Engine,
    caller: Principal,
    commitment_id: str,
    day: date,
    body: dict[str, Any],
    *,
    now: datetime,
    correlation_id: str | None = None,
) -> tuple[KnownCommitment, RecordedEvent]:
    """Replace a day's report: 404 if the day has none (record it with POST)."""

    def attempt() -> tuple[KnownCommitment, RecordedEvent]:
        with engine.begin() as conn:
            commitment = visible_commitment(conn, caller, commitment_id, write=True)
            settings, _ = load_settings(conn, commitment.tenant_id)
            check_in = _check_in(body, day)
            _validate(check_in, commitment, settings, now)
            stream = read_stream(conn, commitment.stream_id)
            standing = latest_reports(stream).get(day)
            if standing is None:
                raise not_found("check-in for that date (record it with POST)")
            previous_data = next(e.data for e in stream if str(e.id) == standing.event_id)
            event = NewEvent(
                CHECKIN_CORRECTED,
                checkin_corrected_data(
                    commitment_id=commitment.commitment_id,
                    member_id=commitment.member_id,
                    check_in=check_in,
                    previous=check_in_from_event_data(previous_data),
                ),
                occurred_at=now,
            )
            events = _with_figures(stream, event, commitment, settings, now)
            recorded = _store(conn, commitment, stream, events, _metadata(caller, correlation_id), settings, now)
            return commitment, recorded[0]

    return with_retry(attempt)


def _with_figures(
    stream: Sequence[RecordedEvent],
    event: NewEvent,
    commitment: KnownCommitment,
    settings: TenantSettings,
    now: datetime,
) -> list[NewEvent]:
    """The check-in event carrying the streak it results in, followed by what it caused."""
    version = stream[-1].stream_version if stream else 0
    after = _fold(
        [*stream, _Candidate(event.id, version + 1, event.type, event.data)],
        commitment,
        settings,
        commitment.today(now),
    )
    event = replace(event, data={**event.data, **streak_figures(after)})
    # The figures just added change no outcome: `after` is the fold derive_facts would make.
    return [event, *derive_facts(stream, [event], commitment, settings, now, include_missed=False, after=after)]


# -- the scheduler's unit of work -------------------------------------------------------------


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


def run_scheduled(engine: Engine, commitment_id: str, now: datetime) -> list[RecordedEvent]:
    """Record what the passing of time made true for one commitment; safe to run concurrently."""

    def attempt() -> list[RecordedEvent]:
        with engine.begin() as conn:
            commitment = load_commitment(conn, commitment_id)
            if commitment is None:
                return []
            settings, _ = load_settings(conn, commitment.tenant_id)
            stream: list[RecordedEvent] = []
            derived: list[NewEvent] = []
            if commitment.recorded_status != CommitmentStatus.ENDED:
                stream = read_stream(conn, commitment.stream_id)
                derived = derive_facts(stream, [], commitment, settings, now, include_missed=True)
            version = stream[-1].stream_version if stream else 0
            # Derived facts are no check-ins: the streak row does not depend on them, so it
            # is written before the append, which takes the store's lock last.
            _guarded(lambda: refresh_streak(conn, commitment, now, settings), commitment.stream_id, version)
            conn.execute(
                update(tables.commitments)
                .where(tables.commitments.c.commitment_id == commitment_id)
                .values(scheduler_due_at=next_due(commitment, settings, now))
            )
            if not derived:
                return []
            metadata = Metadata(tenant_id=commitment.tenant_id, actor=SCHEDULER_ACTOR, correlation_id=str(uuid.uuid4()))
            return append(conn, commitment.stream_id, derived, expected_version=version, metadata=metadata)

    return with_retry(attempt)


# -- settings -----------------------------------------------------------------------------------


def update_settings(
    engine: Engine,
    caller: Principal,
    changes: dict[str, Any],
    *,
    now: datetime,
    correlation_id: str | None = None,
    if_match: str | None = None,
) -> tuple[TenantSettings, int]:
    """Change a tenant's settings (fields left out keep their value); a change of policy or
    milestones re-projects the tenant's streaks in the same transaction."""
    tenant_id = tenant_of(caller)

    def attempt() -> tuple[TenantSettings, int]:
        with engine.begin() as conn:
            current, version = load_settings(conn, tenant_id)
            if if_match is not None and if_match.strip('"') != str(version):
                raise Problem(412, f"the settings are at version {version}, not {if_match}")
            merged = {**current.as_json(), **changes}
            merged["at_risk"] = {**current.as_json()["at_risk"], **(changes.get("at_risk") or {})}
            new = TenantSettings.from_json(merged)
            event = NewEvent(
                SETTINGS_UPDATED,
                settings_updated_data(tenant_id=tenant_id, settings=new, previous=current),
                occurred_at=now,
            )
            stream_id = settings_stream_id(tenant_id)
            metadata = _metadata(caller, correlation_id)
            recorded_at = utcnow()
            # Read models first, the append (and its lock) last: see the module's docstring.
            pending = _pending([event], version, metadata, recorded_at)[0]
            _guarded(lambda: apply_settings_event(conn, pending), stream_id, version)
            if new.reprojects_streaks(current):
                _guarded(lambda: refresh_all_streaks(conn, now, tenant_id), stream_id, version)
            # Grace hours and thresholds move what is due: let the scheduler look again now.
            conn.execute(
                update(tables.commitments)
                .where(
                    tables.commitments.c.tenant_id == tenant_id,
                    tables.commitments.c.status != CommitmentStatus.ENDED.value,
                )
                .values(scheduler_due_at=now)
            )
            recorded = append(
                conn, stream_id, [event], expected_version=version, metadata=metadata, now=recorded_at
            )
            return new, recorded[0].stream_version

    if if_match is not None:
        try:
            return attempt()
        except ConcurrencyError as error:
            raise Problem(412, "the settings changed meanwhile") from error
    return with_retry(attempt)
