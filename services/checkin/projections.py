"""Events -> read models. One set of apply functions for the inline, inbox and rebuild paths.

- `apply_commitment_event`: the inbox's fold of commitment.* / coach.* events.
- `apply_own_event` (`apply_check_in_event`, `apply_settings_event`): this service's own
  events; `project` applies them inline, in the command's transaction right after its
  append, and `own_projection` replays them on a rebuild.
- `store_streak` / `refresh_streak`: one commitment's streak snapshot, computed from its
  standing reports and settings as of an instant (after each command, by the scheduler as
  days pass, after a settings change, on an inbox event, and for every commitment once at
  the end of a rebuild).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select, update

from services.checkin import tables
from services.checkin.domain import (
    CHECK_IN_EVENT_TYPES,
    CHECKIN_CORRECTED,
    CHECKIN_RECORDED,
    SETTINGS_UPDATED,
    CheckIn,
    CommitmentStatus,
    KnownCommitment,
    Streak,
    TenantSettings,
    standing_risk,
    streak_of,
)
from services.checkin.queries import commitment_from_row, load_commitment, load_settings, standing_reports
from shared.auth import credentials_projection
from shared.clock import Clock, utcnow
from shared.events import RecordedEvent
from shared.projection import Projection

COMMITMENT_EVENTS = (
    "commitment.created",
    "commitment.extended",
    "commitment.ended",
    "commitment.completed",
    "coach.assigned",
    "coach.unassigned",
)
OWN_EVENTS = (CHECKIN_RECORDED, CHECKIN_CORRECTED, SETTINGS_UPDATED)


class FoldedEvent(Protocol):
    """What the read-model merges read of an event: a RecordedEvent, or the rebuild's
    slimmer row of the log."""

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


def apply_commitment_event(conn: Connection, event: RecordedEvent, now: datetime) -> None:
    """Fold one commitment.* / coach.* event into ``checkin_commitments`` (idempotent); `now`
    files the commitment as due to the scheduler and dates its streak snapshot."""
    data = event.data
    table = tables.commitments
    commitment_id = str(data.get("commitment_id") or "")
    if not commitment_id:
        return
    where = table.c.commitment_id == commitment_id
    if event.type == "commitment.created":
        if conn.execute(select(table.c.commitment_id).where(where)).first():
            return  # a redelivery: the first one already folded it
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
            )
        )
    elif event.type == "commitment.extended":
        conn.execute(update(table).where(where).values(ends_on=_date(data.get("ends_on")), scheduler_due_at=now))
    elif event.type == "commitment.ended":
        conn.execute(
            update(table)
            .where(where)
            .values(status=CommitmentStatus.ENDED.value, ended_on=_date(data.get("ended_on")), scheduler_due_at=now)
        )
    elif event.type == "commitment.completed":
        conn.execute(
            update(table)
            .where(where, table.c.status == CommitmentStatus.ACTIVE.value)
            .values(status=CommitmentStatus.COMPLETED.value, scheduler_due_at=now)
        )
    elif event.type == "coach.assigned":
        conn.execute(update(table).where(where).values(coach_id=data["coach_id"]))
    elif event.type == "coach.unassigned":
        # Only the coach named: removing coach A must never detach the member from coach B.
        conn.execute(update(table).where(where, table.c.coach_id == data.get("coach_id")).values(coach_id=None))
    else:
        return
    commitment = load_commitment(conn, commitment_id)
    if commitment is not None:
        refresh_streak(conn, commitment, now)


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


def merge_check_in(current: Mapping[str, Any] | None, event: FoldedEvent) -> dict[str, Any] | None:
    """The day's row after `event` (None: unchanged): the report of the highest stream version,
    ``recorded_at`` the first report's time whichever event arrives first. Order-independent;
    shared by the SQL fold (inline, incremental) and the in-memory fold of the rebuild."""
    data = event.data
    slip = data.get("slip") or {}
    values = {
        "outcome": data["outcome"],
        "urge": data.get("urge"),
        "mood": data.get("mood"),
        "slip_channel": slip.get("channel"),
        "slip_initiated_by": slip.get("initiated_by"),
        "note": data.get("note"),
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


def apply_check_in_event(conn: Connection, event: FoldedEvent) -> None:
    """Fold one checkin.recorded/corrected into the day's row (see `merge_check_in`)."""
    table = tables.check_ins
    data = event.data
    where = (table.c.commitment_id == data["commitment_id"]) & (table.c.day == date.fromisoformat(data["date"]))
    current = conn.execute(select(table).where(where)).mappings().first()
    merged = merge_check_in(current, event)
    if merged is None:
        return
    if current is None:
        conn.execute(insert(table).values(**merged))
    else:
        conn.execute(update(table).where(where).values(**merged))


def apply_own_event(conn: Connection, event: RecordedEvent) -> None:
    """Fold one of this service's own events into its read model."""
    if event.type == SETTINGS_UPDATED:
        apply_settings_event(conn, event)
    elif event.type in CHECK_IN_EVENT_TYPES:
        apply_check_in_event(conn, event)


def project(conn: Connection, events: Sequence[RecordedEvent]) -> None:
    """The inline projector of every command (`shared.commands.Pipeline`): the events it has
    just appended, into the check-in and settings rows, in its transaction."""
    for event in events:
        apply_own_event(conn, event)


# -- streaks -----------------------------------------------------------------------------------


def streak_row(
    commitment: KnownCommitment, reports: Collection[CheckIn], settings: TenantSettings, now: datetime
) -> tuple[Streak, dict[str, Any]]:
    """One commitment's streak snapshot row (with its at-risk flag), computed purely from its
    standing reports and settings as of `now`: the inline path and the rebuild's
    in-memory fold both write exactly this."""
    streak = streak_of(commitment, {c.day: c for c in reports}, settings, commitment.today(now))
    risk_reasons = [str(reason) for reason in standing_risk(commitment, reports, settings, now).reasons]
    return streak, {
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
        "risk_reasons": risk_reasons,
    }


def store_streak(
    conn: Connection, commitment: KnownCommitment, reports: Collection[CheckIn], settings: TenantSettings, now: datetime
) -> Streak:
    """Store the snapshot computed from `reports` (the standing report of each day: what the
    check-in rows hold). Commands pass them from the history they decided
    on, sparing a read of the rows."""
    streak, values = streak_row(commitment, reports, settings, now)
    table = tables.streaks
    updated = conn.execute(
        update(table).where(table.c.commitment_id == commitment.commitment_id).values(**values)
    ).rowcount
    if not updated:
        conn.execute(insert(table).values(**values))
    return streak


def refresh_streak(
    conn: Connection, commitment: KnownCommitment, now: datetime, settings: TenantSettings | None = None
) -> Streak:
    """Recompute and store one commitment's streak snapshot (with its at-risk flag)."""
    if settings is None:
        settings, _ = load_settings(conn, commitment.tenant_id)
    return store_streak(conn, commitment, standing_reports(conn, commitment.commitment_id), settings, now)


def refresh_all_streaks(conn: Connection, now: datetime, tenant_id: str | None = None) -> int:
    """Recompute the snapshot of every commitment (of one tenant); returns how many."""
    query = select(tables.commitments)
    if tenant_id is not None:
        query = query.where(tables.commitments.c.tenant_id == tenant_id)
    cache: dict[str, TenantSettings] = {}
    count = 0
    for row in conn.execute(query).all():
        commitment = commitment_from_row(row)
        if commitment.tenant_id not in cache:
            cache[commitment.tenant_id] = load_settings(conn, commitment.tenant_id)[0]
        refresh_streak(conn, commitment, now, cache[commitment.tenant_id])
        count += 1
    return count


# -- projections (for rebuild) ------------------------------------------------------------------


def own_projection(clock: Clock = utcnow) -> Projection:
    """Check-in rows, streak snapshots and settings, from this service's own events."""

    def finish(conn: Connection) -> None:
        refresh_all_streaks(conn, clock())

    return Projection(
        name="checkin.read_models",
        tables=[tables.settings, tables.streaks, tables.check_ins],
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

