"""Events -> read models. One set of apply functions for the inline, inbox and rebuild paths.

- `apply_commitment_event`: the inbox's fold of commitment.* / coach.* events.
- `merge_check_in` / `merge_settings`: the day rows and the settings rows after an event,
  the one rule of the command path (`write_check_in`), the lock-based replay
  (`apply_own_event`) and the aside rebuild's in-memory fold.
- the state row (``checkin_streaks``): each commitment's decision state
  (`domain.CommitmentState`, folded from its stream by `domain.StateFold` on every path) and
  its streak snapshot as of an instant; `state_values` is the row, `write_state` writes it
  conditioned on what the writer loaded. Commands write it from their decision, the inbox
  and the rebuilds through `snapshot_values`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final, Protocol

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.checkin import tables
from services.checkin.domain import (
    CHECKIN_WITHDRAWN,
    DAY_EVENT_TYPES,
    MEMBER_SOS,
    PAUSE_CANCELLED,
    PAUSE_SCHEDULED,
    SETTINGS_UPDATED,
    STREAM_EVENT_TYPES,
    URGE_LOGGED,
    CommitmentState,
    CommitmentStatus,
    KnownCommitment,
    Streak,
    TenantSettings,
    assess,
)
from services.checkin.members import erased
from services.checkin.queries import CommandInputs, StoredState, command_inputs, decision_state, tenant_inputs
from shared.auth import credentials_projection
from shared.clock import Clock, utcnow
from shared.db import DriverWrite
from shared.events import RecordedEvent
from shared.eventstore import ConcurrencyError, read_stream
from shared.projection import Projection

COMMITMENT_EVENTS = (
    "commitment.created",
    "commitment.extended",
    "commitment.ended",
    "commitment.completed",
    "coach.assigned",
    "coach.unassigned",
    "commitment.boundaries_changed",
)
OWN_EVENTS = tuple(sorted({*STREAM_EVENT_TYPES, SETTINGS_UPDATED}))
"""This service's own events that a read model folds: the day rows, the settings rows, the
states, the pauses' rows."""
PAUSE_EVENT_TYPES = frozenset({PAUSE_SCHEDULED, PAUSE_CANCELLED})


class FoldedEvent(Protocol):
    """What the read-model merges read of an event: a RecordedEvent, or the rebuild's
    slimmer row of the log."""

    @property
    def type(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def stream_version(self) -> int: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def recorded_at(self) -> datetime: ...


# -- commitments (from the inbox) --------------------------------------------------------


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def _boundaries(data: Mapping[str, Any]) -> dict[str, Any]:
    """A commitment's boundaries as its events carry them (labels sealed); none in a
    ``commitment.created`` recorded before boundaries existed."""
    return {"exceptions": list(data.get("exceptions") or []), "places": list(data.get("places") or [])}


def apply_commitment_event(conn: Connection, event: RecordedEvent, now: datetime) -> None:
    """Fold one commitment.* / coach.* event into ``checkin_commitments`` (idempotent); `now`
    files the commitment as due to the scheduler and dates its streak snapshot.

    What the events set carries the version of the commitment stream that set it (the coach,
    the last day, the status, the boundaries: a version each), and an event changes it only
    when later: a copy applied again (the inbox forgot it after its dedup window and a relay
    moved back republished it) or late (a parked message requeued) never takes the row back
    to an older state. A version each, not one for the row: a late event of one kind must
    not be refused because a later event of another kind was applied first."""
    data = event.data
    table = tables.commitments
    commitment_id = str(data.get("commitment_id") or "")
    if not commitment_id:
        return
    if event.type == "commitment.created":
        if _known(conn, commitment_id):
            return  # a redelivery: the first one already folded it
        if erased(conn, event.tenant_id, data["member_id"]):
            return  # late, or replayed: nothing of an erased member comes back (services.checkin.members)
        version = event.stream_version
        conn.execute(
            insert(table).values(
                commitment_id=commitment_id,
                tenant_id=event.tenant_id or data.get("tenant_id"),
                member_id=data["member_id"],
                coach_id=data.get("coach_id"),
                contact_label=data["contact"]["label"],
                relationship=data["contact"]["relationship"],
                channels=list(data["channels"]),
                timezone=data["timezone"],
                starts_on=date.fromisoformat(data["starts_on"]),
                ends_on=_date(data.get("ends_on")),
                status=CommitmentStatus.ACTIVE.value,
                created_at=event.occurred_at,
                scheduler_due_at=now,
                boundaries=_boundaries(data),
                coach_version=version,
                ends_on_version=version,
                status_version=version,
                boundaries_version=version,
            )
        )
        changed = True
    elif event.type == "commitment.boundaries_changed":
        if not _set_if_later(conn, commitment_id, event, "boundaries_version", boundaries=_boundaries(data)):
            _require_known(conn, event, commitment_id)
        return  # the streak does not depend on them
    elif event.type == "commitment.extended":
        changed = _set_if_later(conn, commitment_id, event, "ends_on_version",
                                ends_on=_date(data.get("ends_on")), scheduler_due_at=now)
    elif event.type == "commitment.ended":
        changed = _set_if_later(conn, commitment_id, event, "status_version", status=CommitmentStatus.ENDED.value,
                                ended_on=_date(data.get("ended_on")), scheduler_due_at=now)
    elif event.type == "commitment.completed":
        changed = _set_if_later(conn, commitment_id, event, "status_version",
                                table.c.status == CommitmentStatus.ACTIVE.value,
                                status=CommitmentStatus.COMPLETED.value, scheduler_due_at=now)
    elif event.type == "coach.assigned":
        changed = _set_if_later(conn, commitment_id, event, "coach_version", coach_id=data["coach_id"])
    elif event.type == "coach.unassigned":
        # No coach as of this version, whoever the row names: the coach it removes may have
        # been assigned by an event still to come (parked, requeued late), and must not get
        # the member back then. For a row folded before it had versions (0), only the coach
        # named: removing coach A must never detach the member from a later coach B.
        changed = _set_if_later(conn, commitment_id, event, "coach_version",
                                or_(table.c.coach_version > 0, table.c.coach_id == data.get("coach_id")),
                                coach_id=None)
    else:
        return
    if changed:  # an event that changed nothing (older, or a coach not named) tells the streak nothing new
        refresh_streak(conn, commitment_id, now)
    else:
        _require_known(conn, event, commitment_id)


class CommitmentNotYetKnown(Exception):
    """An event of a commitment whose ``commitment.created`` this inbox has not applied: that
    one was parked (a stream's events come in order otherwise). Raised so that the consumer
    tries again and then parks this one too, to be requeued after the creation, instead of
    recording it as applied with nothing changed: the coach, last day or status it carries
    would be lost for good."""


def _known(conn: Connection, commitment_id: str) -> bool:
    """Whether the inbox has folded the commitment's ``commitment.created``."""
    return conn.execute(select(tables.commitments.c.commitment_id)
                        .where(tables.commitments.c.commitment_id == commitment_id)).first() is not None


def _require_known(conn: Connection, event: RecordedEvent, commitment_id: str) -> None:
    if not _known(conn, commitment_id) and not erased(conn, event.tenant_id, event.data.get("member_id")):
        # (An erased member's commitments are gone for good: nothing of them comes back.)
        raise CommitmentNotYetKnown(f"{event.type} (version {event.stream_version}) of commitment {commitment_id}, "
                                    "whose commitment.created this inbox has not applied: requeue that one first")


def _set_if_later(
    conn: Connection, commitment_id: str, event: RecordedEvent, version: str, *conditions: Any, **values: Any
) -> bool:
    """Set `values` on the commitment's row, and the event's stream version in its `version`
    column, only if what that column versions was set by an earlier event (and `conditions`
    hold); True when the row changed."""
    table = tables.commitments
    result = conn.execute(
        update(table)
        .where(table.c.commitment_id == commitment_id, table.c[version] < event.stream_version, *conditions)
        .values(**values, **{version: event.stream_version})
    )
    return bool(result.rowcount)


# -- settings ------------------------------------------------------------------------------


def merge_settings(current: dict[str, Any] | None, event: FoldedEvent) -> dict[str, Any] | None:
    """The settings row after `event` (None: unchanged). The highest stream version wins,
    whatever the order events are applied in. Shared by the SQL and in-memory folds."""
    if current is not None and event.stream_version <= current["version"]:
        return None
    return {
        "tenant_id": event.data.get("tenant_id") or event.tenant_id,
        "data": event.data,
        "version": event.stream_version,
        "updated_at": event.recorded_at,
    }


def apply_settings_event(conn: Connection, event: FoldedEvent) -> None:
    table = tables.settings
    tenant_id = event.data.get("tenant_id") or event.tenant_id
    current = conn.execute(select(table.c.version).where(table.c.tenant_id == tenant_id)).first()
    merged = merge_settings(None if current is None else {"version": current.version}, event)
    if merged is None:
        return
    if current is None:
        conn.execute(insert(table).values(**merged))
    else:
        conn.execute(update(table).where(table.c.tenant_id == tenant_id).values(**merged))


# -- check-ins -------------------------------------------------------------------------------


class Removed:
    """`merge_check_in`'s answer when the day's row goes: its report was withdrawn."""


REMOVED: Final = Removed()


def merge_check_in(current: Mapping[str, Any] | None, event: FoldedEvent) -> dict[str, Any] | Removed | None:
    """The day's row after `event` (None: unchanged; `REMOVED`: the row goes): the report of
    the highest stream version, ``recorded_at`` the first report's time whichever event
    arrives first; a withdrawal newer than the row removes it. Shared by the SQL fold
    (commands, lock-based replay) and the in-memory fold of the rebuild, which apply a
    stream's events in order (reports alone may come in any order)."""
    if event.type == CHECKIN_WITHDRAWN:
        if current is not None and event.stream_version > current["stream_version"]:
            return REMOVED
        return None
    data = event.data
    slip = data.get("slip") or {}
    values = {
        "outcome": data["outcome"],
        "urge": data.get("urge"),
        "mood": data.get("mood"),
        "slip_channel": slip.get("channel"),
        "slip_initiated_by": slip.get("initiated_by"),
        "note": data.get("note"),
        "contact_attempts": data.get("contact_attempts"),
        "necessary_contact": data.get("necessary_contact"),
        "stream_version": event.stream_version,
        "updated_at": event.recorded_at,
    }
    if current is None:
        return {
            "commitment_id": data["commitment_id"],
            "day": date.fromisoformat(data["date"]),
            "tenant_id": event.tenant_id,
            "member_id": data["member_id"],
            "recorded_at": event.recorded_at,
            **values,
        }
    first = min(current["recorded_at"], event.recorded_at)
    if event.stream_version > current["stream_version"]:
        return {**current, **values, "recorded_at": first}
    if first != current["recorded_at"]:
        return {**current, "recorded_at": first}
    return None


def write_check_in(conn: Connection, current: Mapping[str, Any] | None, event: FoldedEvent) -> dict[str, Any] | None:
    """Fold one checkin.recorded/corrected/withdrawn into the day's row, whose current values
    (None: no row) the caller knows; returns the row as it now stands (None: no row)."""
    merged = merge_check_in(current, event)
    if merged is None:
        return None if current is None else dict(current)
    key = {"k_commitment_id": event.data["commitment_id"], "k_day": date.fromisoformat(event.data["date"])}
    if isinstance(merged, Removed):
        _DELETE_DAY.one(conn, key)
    elif current is None:
        _INSERT_DAY.one(conn, merged)
    else:
        _UPDATE_DAY.one(conn, {**merged, **key})
    return merged


# Statements built once, values bound at execution: a command spends less building and
# hashing a fresh statement of every column than running it.
_DAY_WHERE = (
    (tables.check_ins.c.commitment_id == bindparam("k_commitment_id"))
    & (tables.check_ins.c.day == bindparam("k_day", type_=tables.check_ins.c.day.type))
)
# On the driver (shared.db.DriverWrite): every check-in command writes its day's row.
_INSERT_DAY = DriverWrite(insert(tables.check_ins))
_UPDATE_DAY = DriverWrite(update(tables.check_ins).where(_DAY_WHERE))
_DELETE_DAY = DriverWrite(delete(tables.check_ins).where(_DAY_WHERE))


def apply_check_in_event(conn: Connection, event: FoldedEvent) -> None:
    """Fold one day event into the day's row as it is stored (see `merge_check_in`)."""
    table = tables.check_ins
    data = event.data
    where = (table.c.commitment_id == data["commitment_id"]) & (table.c.day == date.fromisoformat(data["date"]))
    write_check_in(conn, conn.execute(select(table).where(where)).mappings().first(), event)


def apply_own_event(conn: Connection, event: RecordedEvent) -> None:
    """Fold one of this service's own events into its day and settings rows (the states
    are folded from whole streams: `rebuild_states`); an erased member's days and pauses
    stay out."""
    if event.type == SETTINGS_UPDATED:
        apply_settings_event(conn, event)
    elif event.type in DAY_EVENT_TYPES and not erased(conn, event.tenant_id, event.data["member_id"]):
        apply_check_in_event(conn, event)
    elif event.type in PAUSE_EVENT_TYPES and not erased(conn, event.tenant_id, event.data["member_id"]):
        apply_pause_event(conn, event)


# -- between check-ins: pauses, urges, SOS -------------------------------------------------------


def merge_pause(current: Mapping[str, Any] | None, event: FoldedEvent) -> dict[str, Any] | None:
    """A pause's row after `event` (None: unchanged): shared by the SQL fold (commands, the
    lock-based replay) and the in-memory fold of the aside rebuild."""
    data = event.data
    if event.type == PAUSE_SCHEDULED and current is None:
        return {"pause_id": data["pause_id"], "commitment_id": data["commitment_id"], "tenant_id": event.tenant_id,
                "member_id": data["member_id"], "first_day": date.fromisoformat(data["from"]),
                "last_day": date.fromisoformat(data["to"]), "reason": data.get("reason"),
                "scheduled_at": event.recorded_at, "cancelled_at": None}
    if event.type == PAUSE_CANCELLED and current is not None and current["cancelled_at"] is None:
        return {**current, "cancelled_at": event.recorded_at}
    return None


def apply_pause_event(conn: Connection, event: FoldedEvent) -> None:
    """Fold a ``pause.scheduled`` / ``pause.cancelled`` into its row (see `merge_pause`)."""
    table = tables.pauses
    where = table.c.pause_id == event.data["pause_id"]
    current = conn.execute(select(table).where(where)).mappings().first()
    merged = merge_pause(current, event)
    if merged is None:
        return
    if current is None:
        conn.execute(insert(table).values(**merged))
    else:
        conn.execute(update(table).where(where).values(cancelled_at=merged["cancelled_at"]))


def write_between(conn: Connection, recorded: Sequence[RecordedEvent], *, urge_note: str | None = None) -> None:
    """The rows of the between-check-in events a command appended: a pause scheduled or
    cancelled, an urge (with its note, sealed, which no event carries), an SOS (what the
    per-member limit counts)."""
    for event in recorded:
        data = event.data
        if event.type in PAUSE_EVENT_TYPES:
            apply_pause_event(conn, event)
        elif event.type == URGE_LOGGED:
            conn.execute(insert(tables.urges).values(
                urge_id=data["urge_id"], commitment_id=data["commitment_id"], tenant_id=event.tenant_id,
                member_id=data["member_id"], at=datetime.fromisoformat(data["at"]), intensity=data["intensity"],
                outcome=data["outcome"], trigger=data.get("trigger"), coping=data.get("coping"), note=urge_note,
                recorded_at=event.recorded_at))
        elif event.type == MEMBER_SOS:
            conn.execute(insert(tables.sos_calls).values(
                event_id=str(event.id), tenant_id=event.tenant_id, member_id=data["member_id"],
                commitment_id=data["commitment_id"], at=event.occurred_at))


# -- the state row -------------------------------------------------------------------------------


def state_values(
    commitment: KnownCommitment,
    state: CommitmentState,
    streak: Streak,
    risk_reasons: tuple[str, ...],
    settings_version: int,
) -> dict[str, Any]:
    """The state row of a commitment: its decision state, and its streak snapshot with the
    at-risk reasons as of the streak's ``as_of``. Pure: every path writes exactly this."""
    return {
        "commitment_id": commitment.commitment_id,
        "tenant_id": commitment.tenant_id,
        "member_id": commitment.member_id,
        "as_of": streak.as_of,
        "policy": str(streak.policy),
        "current_days": streak.current_days,
        "longest_days": streak.longest_days,
        "kept_days": streak.kept_days,
        "slipped_days": streak.slipped_days,
        "unreported_days": streak.unreported_days,
        "streak_started_on": streak.streak_started_on,
        "last_slip_on": streak.last_slip_on,
        "last_check_in_on": streak.last_check_in_on,
        "milestones_reached": list(streak.milestones_reached),
        "next_milestone": streak.next_milestone,
        "at_risk": bool(risk_reasons),
        "risk_reasons": list(risk_reasons),
        "version": state.version,
        "settings_version": settings_version,
        "days": state.days,
        "urges": state.urges,
        # Sorted: a row is compared whole (rebuild = incremental), so one order for one set.
        "milestones_announced": [[t, day.isoformat()] for t, day in sorted(state.milestones, key=_by_run)],
        "missed_told": sorted(day.isoformat() for day in state.missed),
        "standing_announced": list(state.standing),
        "excused_days": streak.excused_days,
        "held_firm_days": streak.held_firm_days,
        "pauses": [[pause_id, first.isoformat(), last.isoformat()]
                   for pause_id, first, last in sorted(state.pauses, key=lambda p: (p[1], p[0]))],
        "urge_log": [mark.as_json() for mark in state.urge_log],
        "reminded_on": state.reminded_on,
    }


def _by_run(key: tuple[int, date]) -> tuple[date, int]:
    return key[1], key[0]


def snapshot_values(
    commitment: KnownCommitment, state: CommitmentState, settings: TenantSettings, settings_version: int,
    now: datetime,
) -> dict[str, Any]:
    """`state_values` with the streak and the standing computed as of `now` (what a command
    computes on its way: `domain.assess`)."""
    streak, assessment = assess(commitment, state, settings, now)
    return state_values(commitment, state, streak, tuple(str(r) for r in assessment.reasons), settings_version)


def write_state(conn: Connection, values: Mapping[str, Any], stored: StoredState) -> None:
    """Write a state row over the one `stored` describes, only if it is still that one
    (same version, same settings version): else `ConcurrencyError`, and the caller decides
    again on the row another writer left (a command that appended nothing, the scheduler
    or the inbox, or the settings command, which moves no stream it has nothing to tell)."""
    if not stored.exists:
        try:
            with conn.begin_nested():
                _INSERT_STATE.one(conn, values)
        except IntegrityError as error:
            raise ConcurrencyError(f"checkin-{values['commitment_id']}", values["version"], -1) from error
        return
    statement = _UPDATE_UNBUILT_STATE if stored.version is None else _UPDATE_STATE
    key = {"k_commitment_id": values["commitment_id"], "k_version": stored.version,
           "k_settings_version": stored.settings_version}
    if not statement.one(conn, {**values, **key}):
        raise ConcurrencyError(f"checkin-{values['commitment_id']}", stored.version or 0, -1)


_STATE = tables.streaks
# On the driver (shared.db.DriverWrite): every command writes its commitment's state row.
_INSERT_STATE = DriverWrite(insert(_STATE))
_STATE_WHERE = (
    (_STATE.c.commitment_id == bindparam("k_commitment_id"))
    & (_STATE.c.settings_version == bindparam("k_settings_version"))
)
_UPDATE_STATE = DriverWrite(update(_STATE).where(_STATE_WHERE, _STATE.c.version == bindparam("k_version")))
_UPDATE_UNBUILT_STATE = DriverWrite(update(_STATE).where(_STATE_WHERE, _STATE.c.version.is_(None)))


def refresh_streak(conn: Connection, commitment_id: str, now: datetime) -> None:
    """Refresh one commitment's snapshot as of `now` (the inbox learnt something of it). A row
    another writer moves meanwhile is left to it: the scheduler looks at the commitment now."""
    inputs = command_inputs(conn, commitment_id)
    if inputs is None:
        return
    values = snapshot_values(inputs.commitment, decision_state(conn, inputs), inputs.settings,
                             inputs.settings_version, now)
    try:
        write_state(conn, values, inputs.stored)
    except ConcurrencyError:
        pass


def rebuild_states(conn: Connection, now: datetime) -> int:
    """Every commitment's state row from its stream (the lock-based replay's last step, after
    emptying the table); returns how many."""
    count = 0
    inputs_of: list[CommandInputs] = []
    for tenant_id in conn.execute(select(tables.commitments.c.tenant_id).distinct()).scalars():
        inputs_of.extend(tenant_inputs(conn, tenant_id))
    for inputs in inputs_of:
        commitment = inputs.commitment
        state = CommitmentState.folded(commitment.starts_on, read_stream(conn, commitment.stream_id))
        conn.execute(insert(tables.streaks).values(
            **snapshot_values(commitment, state, inputs.settings, inputs.settings_version, now)))
        count += 1
    return count


# -- projections (for rebuild) ------------------------------------------------------------------


def own_projection(clock: Clock = utcnow) -> Projection:
    """Check-in rows, states with their snapshots, settings and pauses, from this service's own
    events (the urges' rows hold a note no event carries, and the SOS rows only count: a
    rebuild leaves both alone)."""

    def finish(conn: Connection) -> None:
        rebuild_states(conn, clock())

    return Projection(
        name="checkin.read_models",
        tables=[tables.settings, tables.streaks, tables.check_ins, tables.pauses],
        event_types=OWN_EVENTS,
        apply=apply_own_event,
        finish=finish,
    )


def inbox_projection(clock: Clock = utcnow) -> Projection:
    """The commitments this service knows, replayed from the commitment service's events.

    Only meaningful when the store holds them (one database shared by the services, the
    default); with a database of its own the inbox is the only source of these rows.
    """

    def apply(conn: Connection, event: RecordedEvent) -> None:
        apply_commitment_event(conn, event, clock())

    return Projection(
        name="checkin.commitments",
        tables=[tables.commitments],
        event_types=COMMITMENT_EVENTS,
        apply=apply,
    )


CREDENTIALS_PROJECTION = credentials_projection("checkin", tables.CREDENTIALS)

