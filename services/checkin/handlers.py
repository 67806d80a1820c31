"""Commands of the check-in service: load what the decision needs, let the domain decide,
record through the command pipeline (`shared.commands`).

Each command is one transaction: a few reads (the commitment, the tenant's settings, the
commitment's stream folded into its `CheckInHistory`), the decision, then the append of
what was decided, conditioned on the version the decision saw and the transaction's first
write; the check-in and settings rows follow from the appended events (`projections.project`),
then what depends on the instant as well: the streak snapshot, when the scheduler looks next.

Optimistic concurrency is what makes the hard promises hold:
- two check-ins for the same day at once: both decide on version N, one append wins, the
  other's fails; the pipeline decides it again, it now sees the day reported: 409;
- two schedulers at once: the loser decides again, finds every fact already told and
  appends nothing. No duplicate event, nothing half-written.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, update

from services.checkin import tables
from services.checkin.access import may_change_settings, visible_commitment
from services.checkin.domain import (
    CheckIn,
    CheckInHistory,
    CommitmentStatus,
    KnownCommitment,
    TenantSettings,
    change_settings,
    next_due,
    reported_check_in,
    settings_stream_id,
)
from services.checkin.projections import project, refresh_all_streaks, store_streak
from services.checkin.queries import check_in_row, load_commitment, load_settings
from shared.auth import Principal
from shared.commands import Context, Pipeline, UnitOfWork
from shared.errors import require_version
from shared.events import NewEvent, RecordedEvent
from shared.eventstore import read_stream

PIPELINE = Pipeline(projector=project)
SCHEDULER_ACTOR = "scheduler:checkin"


def _load(conn: Connection, commitment: KnownCommitment) -> tuple[TenantSettings, CheckInHistory]:
    settings, _ = load_settings(conn, commitment.tenant_id)
    return settings, CheckInHistory.of(read_stream(conn, commitment.stream_id))


def _record(
    uow: UnitOfWork,
    commitment: KnownCommitment,
    settings: TenantSettings,
    history: CheckInHistory,
    events: list[NewEvent],
    standing: Collection[CheckIn],
) -> list[RecordedEvent]:
    """Append what was decided on `history` and project it, then store the streak snapshot
    of the reports that now stand (known from the decision: no read of the rows)."""
    uow.record(commitment.stream_id, events, expected_version=history.version)
    recorded = uow.commit()  # the append, then its projections: see the module docstring
    store_streak(uow.conn, commitment, standing, settings, uow.now)
    return recorded


def _check_in_row(conn: Connection, commitment: KnownCommitment, day: date) -> Row[Any]:
    row = check_in_row(conn, commitment.commitment_id, day)
    assert row is not None, "projected by the command's own commit"
    return row


def record_check_in(
    engine: Engine,
    caller: Principal,
    context: Context,
    commitment_id: str,
    report: Mapping[str, Any],
    *,
    now: datetime,
) -> Row[Any]:
    """Record the first report of a day (``date`` defaults to today in the commitment's
    zone); returns the day's check-in row."""

    def command(uow: UnitOfWork) -> Row[Any]:
        commitment = visible_commitment(uow.conn, caller, commitment_id, write=True)
        settings, history = _load(uow.conn, commitment)
        check_in = reported_check_in(report, report.get("date") or commitment.today(uow.now))
        events = history.record(commitment, settings, check_in, uow.now)
        _record(uow, commitment, settings, history, events, history.after(check_in).values())
        return _check_in_row(uow.conn, commitment, check_in.day)

    return PIPELINE.run(engine, context, command, now=now)


def correct_check_in(
    engine: Engine,
    caller: Principal,
    context: Context,
    commitment_id: str,
    day: date,
    report: Mapping[str, Any],
    *,
    now: datetime,
) -> Row[Any]:
    """Replace a day's report; returns the day's check-in row."""

    def command(uow: UnitOfWork) -> Row[Any]:
        commitment = visible_commitment(uow.conn, caller, commitment_id, write=True)
        settings, history = _load(uow.conn, commitment)
        check_in = reported_check_in(report, day)
        events = history.correct(commitment, settings, check_in, uow.now)
        _record(uow, commitment, settings, history, events, history.after(check_in).values())
        return _check_in_row(uow.conn, commitment, day)

    return PIPELINE.run(engine, context, command, now=now)


def run_scheduled(engine: Engine, tenant_id: str, commitment_id: str, now: datetime) -> list[RecordedEvent]:
    """Record what the passing of time made true for one commitment of `tenant_id`, refresh
    its streak snapshot and set when to look again; safe to run concurrently."""
    context = Context(tenant_id=tenant_id, actor=SCHEDULER_ACTOR, correlation_id=str(uuid.uuid4()))

    def command(uow: UnitOfWork) -> list[RecordedEvent]:
        commitment = load_commitment(uow.conn, commitment_id)
        if commitment is None:
            return []
        settings, history = _load(uow.conn, commitment)
        events = history.pass_time(commitment, settings, uow.now)
        recorded = _record(uow, commitment, settings, history, events, history.check_ins.values())
        uow.conn.execute(
            update(tables.commitments)
            .where(tables.commitments.c.commitment_id == commitment_id)
            .values(scheduler_due_at=next_due(commitment, settings, uow.now))
        )
        return recorded

    return PIPELINE.run(engine, context, command, now=now)


def update_settings(
    engine: Engine,
    caller: Principal,
    context: Context,
    changes: Mapping[str, Any],
    *,
    now: datetime,
    if_match: int | None = None,
) -> tuple[TenantSettings, int]:
    """Change a tenant's settings (fields left out keep their value) and return them with
    their version; a change of what the streak snapshots hold re-projects the tenant's
    snapshots in the same transaction. `if_match`: the version the caller decided on."""
    tenant_id = may_change_settings(caller)

    def command(uow: UnitOfWork) -> tuple[TenantSettings, int]:
        current, version = load_settings(uow.conn, tenant_id)
        require_version(if_match, version)
        new, event = change_settings(tenant_id, current, changes, uow.now)
        uow.record(settings_stream_id(tenant_id), [event], expected_version=version)
        recorded = uow.commit()  # the append, then the settings row
        if new.changes_snapshots(current):
            refresh_all_streaks(uow.conn, uow.now, tenant_id)
        # Grace hours and thresholds move what is due: let the scheduler look again now.
        uow.conn.execute(
            update(tables.commitments)
            .where(
                tables.commitments.c.tenant_id == tenant_id,
                tables.commitments.c.status != CommitmentStatus.ENDED.value,
            )
            .values(scheduler_due_at=uow.now)
        )
        return new, recorded[0].stream_version

    return PIPELINE.run(engine, context, command, if_match=if_match, now=now)
