"""Commands of the check-in service: load what the decision needs, let the domain decide,
record through the command pipeline (`shared.commands`).

Each command on a commitment is one transaction of a few round trips:
1. ONE statement loads the commitment, its tenant's settings, its decision state (the
   state row, `domain.CommitmentState`) and, for a command on one day, that day's check-in
   row (`queries.command_inputs`); no read of the stream;
2. the domain decides from those values (`domain.record`, `correct`, `withdraw`,
   `pass_time`, `settle`): the events, the state once they are appended, the streak;
3. the append, conditioned on the state's version, the transaction's first write;
4. the day's row and the state row, written from the decision (`projections.write_check_in`,
   `write_state`); the answer is built from them too, nothing is read back.

Optimistic concurrency is what makes the hard promises hold:
- two check-ins for the same day at once: both decide on version N, one append wins, the
  other's fails; the pipeline decides it again, it now sees the day reported: 409;
- a writer that appends nothing (the scheduler with nothing to tell, the settings command
  for a commitment it changes nothing of) writes the state row only if it is still the one
  it loaded (`write_state`), so a state is never overwritten by an older one, and a command
  never records facts decided under settings that changed meanwhile;
- two schedulers at once: the loser decides again, finds every fact already told and
  appends nothing. No duplicate event, nothing half-written.
If-Match (a day's version, the settings' version) is compared on every attempt: a race
lost to a change of another day is retried, not answered 412.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from services.checkin import personal, tables
from services.checkin.access import authorized, may_change_settings
from services.checkin.domain import (
    DAY_EVENT_TYPES,
    CheckIn,
    CommitmentState,
    CommitmentStatus,
    Decision,
    Pause,
    TenantSettings,
    Urge,
    UrgeOutcome,
    call_for_help,
    change_settings,
    correct,
    next_due,
    pass_time,
    record,
    reported_check_in,
    settings_stream_id,
    settle,
    withdraw,
)
from services.checkin.domain import cancel_pause as domain_cancel_pause
from services.checkin.domain import log_urge as domain_log_urge
from services.checkin.domain import schedule_pause as domain_schedule_pause
from services.checkin.projections import (
    apply_settings_event,
    state_values,
    write_between,
    write_check_in,
    write_state,
)
from services.checkin.queries import CommandInputs, command_inputs, decision_state, load_settings, tenant_inputs
from shared import keyring
from shared.auth import Principal
from shared.commands import Context, Pipeline, UnitOfWork
from shared.errors import Conflict, require_version
from shared.events import RecordedEvent

# Every command writes its read models itself, after its append, from its decision (see
# the module docstring): the pipeline has no projector to run.
PIPELINE = Pipeline()
SCHEDULER_ACTOR = "scheduler:checkin"


def _inputs(conn: Connection, caller: Principal, commitment_id: str,
            day: date | None = None) -> tuple[CommandInputs, CommitmentState]:
    inputs = command_inputs(conn, commitment_id, day)
    authorized(caller, None if inputs is None else inputs.commitment, write=True)
    assert inputs is not None
    return inputs, decision_state(conn, inputs)


def _carry_out(
    uow: UnitOfWork, inputs: CommandInputs, state: CommitmentState, decision: Decision, settings_version: int,
    *, urge_note: str | None = None,
) -> tuple[list[RecordedEvent], dict[str, Any] | None]:
    """Append what was decided on `state` (its personal values sealed: `personal`), then
    write the day's row (when the command reported a day), the rows of a pause, an urge
    (`urge_note`: its note, which no event carries, sealed too) or an SOS, and the state
    row; returns the recorded events and the day's row (its note sealed, as the event holds
    it)."""
    commitment = inputs.commitment
    events = personal.seal(uow.conn, commitment.tenant_id, decision.events, inputs.key)
    if urge_note is not None:
        urge_note = personal.seal_note(uow.conn, commitment.tenant_id, commitment.member_id, urge_note, events[0])
    uow.record(commitment.stream_id, events, expected_version=state.version)
    recorded = uow.commit()  # the append: the first write (see the module docstring)
    day_row = None
    if recorded and recorded[0].type in DAY_EVENT_TYPES:
        day_row = write_check_in(uow.conn, inputs.day, recorded[0])
    write_between(uow.conn, recorded, urge_note=urge_note)
    values = state_values(commitment, decision.state, decision.streak, decision.risk_reasons, settings_version)
    write_state(uow.conn, values, inputs.stored)
    return recorded, day_row


def record_check_in(
    engine: Engine,
    caller: Principal,
    context: Context,
    commitment_id: str,
    report: Mapping[str, Any],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Record the first report of a day (``date`` defaults to today in the commitment's
    zone); returns the day's check-in row."""

    def command(uow: UnitOfWork) -> dict[str, Any]:
        inputs, state = _inputs(uow.conn, caller, commitment_id)
        check_in = reported_check_in(report, report.get("date") or inputs.commitment.today(uow.now))
        decision = record(state, inputs.commitment, inputs.settings, check_in, uow.now)
        _, row = _carry_out(uow, inputs, state, decision, inputs.settings_version)
        assert row is not None, "a report writes its day's row"
        return _answered(row, check_in)

    return keyring.creating_keys(engine, lambda: PIPELINE.run(engine, context, command, now=now), now=now)


def correct_check_in(
    engine: Engine,
    caller: Principal,
    context: Context,
    commitment_id: str,
    day: date,
    report: Mapping[str, Any],
    *,
    now: datetime,
    if_match: int | None = None,
) -> dict[str, Any]:
    """Replace a day's report; returns the day's check-in row. `if_match`: the day's version
    the caller decided on (``version`` of the check-in, its ETag)."""

    def command(uow: UnitOfWork) -> dict[str, Any]:
        inputs, state = _inputs(uow.conn, caller, commitment_id, day)
        check_in = reported_check_in(report, day)
        decision = correct(state, inputs.commitment, inputs.settings, check_in, uow.now,
                           if_match=if_match, day_version=_day_version(inputs))
        _, row = _carry_out(uow, inputs, state, decision, inputs.settings_version)
        assert row is not None, "a correction writes its day's row"
        return _answered(row, check_in)

    return keyring.creating_keys(engine, lambda: PIPELINE.run(engine, context, command, now=now), now=now)


def withdraw_check_in(
    engine: Engine,
    caller: Principal,
    context: Context,
    commitment_id: str,
    day: date,
    *,
    now: datetime,
    if_match: int | None = None,
) -> None:
    """Withdraw a day's report: the day is unreported again. `if_match` as for corrections."""

    def command(uow: UnitOfWork) -> None:
        inputs, state = _inputs(uow.conn, caller, commitment_id, day)
        decision = withdraw(state, inputs.commitment, inputs.settings, day, uow.now,
                            if_match=if_match, day_version=_day_version(inputs))
        _carry_out(uow, inputs, state, decision, inputs.settings_version)

    PIPELINE.run(engine, context, command, now=now)


def _answered(row: dict[str, Any], check_in: CheckIn) -> dict[str, Any]:
    """The day's row as the member who just reported it reads it: their own notes (the day's,
    its necessary contact's), which the row holds sealed (nothing to open: the report is at
    hand)."""
    necessary = check_in.necessary_contact
    return {**row, "note": check_in.note, "necessary_contact": None if necessary is None else
            {"exception": necessary.exception, "note": necessary.note}}


def _day_version(inputs: CommandInputs) -> int | None:
    return None if inputs.day is None else inputs.day["stream_version"]


def run_scheduled(engine: Engine, tenant_id: str, commitment_id: str, now: datetime) -> list[RecordedEvent]:
    """Record what the passing of time made true for one commitment of `tenant_id`, refresh
    its streak snapshot and set when to look again; safe to run concurrently."""
    context = Context(tenant_id=tenant_id, actor=SCHEDULER_ACTOR, correlation_id=str(uuid.uuid4()))

    def command(uow: UnitOfWork) -> list[RecordedEvent]:
        inputs = command_inputs(uow.conn, commitment_id)
        if inputs is None:
            return []
        state = decision_state(uow.conn, inputs)
        decision = pass_time(state, inputs.commitment, inputs.settings, uow.now)
        recorded, _ = _carry_out(uow, inputs, state, decision, inputs.settings_version)
        uow.conn.execute(
            update(tables.commitments)
            .where(tables.commitments.c.commitment_id == commitment_id)
            .values(scheduler_due_at=next_due(inputs.commitment, inputs.settings, uow.now))
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
    their version; settings equal to the current ones record nothing. In the same
    transaction (one append of every stream) every commitment of the tenant is reconciled
    with them (`domain.settle`: milestones a new policy or list makes untrue are revoked,
    those it makes true reached, the standing under new thresholds) and its state row
    rewritten. `if_match`: the version the caller decided on."""
    tenant_id = may_change_settings(caller)

    def command(uow: UnitOfWork) -> tuple[TenantSettings, int]:
        current, version = load_settings(uow.conn, tenant_id)
        require_version(if_match, version)
        new, event = change_settings(tenant_id, current, changes, uow.now)
        if new == current:
            return current, version  # the same settings again (a GET sent back): nothing to tell
        uow.record(settings_stream_id(tenant_id), [event], expected_version=version)
        decided = []
        for inputs in tenant_inputs(uow.conn, tenant_id):
            state = decision_state(uow.conn, inputs)
            decision = settle(state, inputs.commitment, new, uow.now)
            uow.record(inputs.commitment.stream_id, decision.events, expected_version=state.version)
            decided.append((inputs, decision))
        recorded = uow.commit()  # the append of every stream, then the rows
        apply_settings_event(uow.conn, recorded[0])
        new_version = recorded[0].stream_version
        for inputs, decision in decided:
            write_state(uow.conn, state_values(inputs.commitment, decision.state, decision.streak,
                                               decision.risk_reasons, new_version), inputs.stored)
        # Grace hours and thresholds move what is due: let the scheduler look again now.
        uow.conn.execute(
            update(tables.commitments)
            .where(
                tables.commitments.c.tenant_id == tenant_id,
                tables.commitments.c.status != CommitmentStatus.ENDED.value,
            )
            .values(scheduler_due_at=uow.now)
        )
        return new, new_version

    return PIPELINE.run(engine, context, command, now=now)


# -- between check-ins (CONTRACT v1.1) -------------------------------------------------------------


def _between_command(
    engine: Engine, caller: Principal, context: Context, commitment_id: str, now: datetime,
    decide: Callable[[Connection, CommandInputs, CommitmentState, datetime], Decision], *,
    urge_note: str | None = None,
) -> RecordedEvent:
    """Decide on the commitment with `decide`, append (personal values sealed) and write the
    rows; returns the command's own event (the first appended)."""

    def command(uow: UnitOfWork) -> RecordedEvent:
        inputs, state = _inputs(uow.conn, caller, commitment_id)
        decision = decide(uow.conn, inputs, state, uow.now)
        recorded, _ = _carry_out(uow, inputs, state, decision, inputs.settings_version, urge_note=urge_note)
        return recorded[0]

    return keyring.creating_keys(engine, lambda: PIPELINE.run(engine, context, command, now=now), now=now)


def schedule_pause(engine: Engine, caller: Principal, context: Context, commitment_id: str,
                   body: Mapping[str, Any], *, now: datetime) -> RecordedEvent:
    """Excuse the days ``from``..``to`` (``pause.scheduled``); returns the event."""
    pause = Pause(str(uuid.uuid4()), body["from_"], body["to"], body.get("reason"))
    return _between_command(engine, caller, context, commitment_id, now,
                            lambda _, inputs, state, at: domain_schedule_pause(state, inputs.commitment,
                                                                            inputs.settings, pause, at))


def cancel_pause(engine: Engine, caller: Principal, context: Context, commitment_id: str, pause_id: str, *,
                 now: datetime) -> RecordedEvent:
    """Take a pause back (``pause.cancelled``); returns the event."""
    return _between_command(engine, caller, context, commitment_id, now,
                            lambda _, inputs, state, at: domain_cancel_pause(state, inputs.commitment,
                                                                          inputs.settings, pause_id, at))


def log_urge(engine: Engine, caller: Principal, context: Context, commitment_id: str, body: Mapping[str, Any], *,
             now: datetime) -> RecordedEvent:
    """Log an urge (``urge.logged``, without its note: the note goes sealed into its row)."""
    urge = Urge(str(uuid.uuid4()), body.get("at") or now, body["intensity"], UrgeOutcome(body["outcome"]),
                body.get("trigger"), body.get("coping"), body.get("note"))
    return _between_command(engine, caller, context, commitment_id, now,
                            lambda _, inputs, state, at: domain_log_urge(state, inputs.commitment, inputs.settings,
                                                                      urge, at),
                            urge_note=urge.note)


class SosLimited(Conflict):
    """The member sent `SOS_LIMIT` SOS within `SOS_WINDOW`: the next may go in `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many SOS in a short time: the coach has them; send again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


SOS_LIMIT = 5
SOS_WINDOW = timedelta(minutes=10)


def send_sos(engine: Engine, caller: Principal, context: Context, commitment_id: str, message: str | None, *,
             now: datetime) -> RecordedEvent:
    """Call for help (``member.sos``). At most `SOS_LIMIT` per member (whatever the
    commitment) within `SOS_WINDOW`, so a coach's feed is never flooded: else `SosLimited`."""

    def decide(conn: Connection, inputs: CommandInputs, state: CommitmentState, at: datetime) -> Decision:
        _sos_allowed(conn, inputs.commitment.tenant_id, inputs.commitment.member_id, at)
        return call_for_help(state, inputs.commitment, inputs.settings, message, at)

    return _between_command(engine, caller, context, commitment_id, now, decide)


def _sos_allowed(conn: Connection, tenant_id: str, member_id: str, now: datetime) -> None:
    # Read in the command's transaction, before its append. Two SOS of one member at the
    # same instant may both pass: the limit guards against a flood, it is no exact count.
    table = tables.sos_calls
    recent = list(conn.execute(
        select(table.c.at).where(table.c.tenant_id == tenant_id, table.c.member_id == member_id,
                                 table.c.at > now - SOS_WINDOW)
        .order_by(table.c.at.desc()).limit(SOS_LIMIT)).scalars())
    if len(recent) >= SOS_LIMIT:
        oldest = recent[-1]
        raise SosLimited(max(1, math.ceil((oldest + SOS_WINDOW - now).total_seconds())))
