"""Events -> read models. One set of apply functions for the inline, inbox and rebuild paths.

- `apply_commitment_event`: the inbox's fold of commitment.* / coach.* events.
- `apply_check_in_event`, `apply_settings_event`: this service's own events, applied inline
  in the command's transaction and replayed by `rebuild`.
- `refresh_streak`: recomputes one commitment's streak snapshot from its check-in rows
  (inline after each check-in, by the scheduler as days pass, after a settings change,
  and for every commitment once at the end of a rebuild).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Row, Table, insert, select, update

from services.checkin import tables
from services.checkin.domain import (
    CHECKIN_CORRECTED,
    CHECKIN_RECORDED,
    CheckIn,
    CommitmentStatus,
    CommitmentTerms,
    Initiator,
    Outcome,
    Slip,
    Streak,
    assess_risk,
    compute_streak,
    local_today,
)
from services.checkin.domain.settings import SETTINGS_UPDATED, TenantSettings
from shared.auth import credentials_projection
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
# Nothing left for the scheduler to do: the column is NOT NULL, so "never" is a far date.
NEVER = datetime(2999, 1, 1, tzinfo=UTC)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def stream_id(commitment_id: str) -> str:
    """The stream of a commitment's check-ins and the facts derived from them."""
    return f"checkin-{commitment_id}"


def settings_stream_id(tenant_id: str) -> str:
    return f"settings-{tenant_id}"


class FoldedEvent(Protocol):
    """What the read-model merges read of an event: a RecordedEvent, the rebuild's slimmer
    row of the log, or a command's event about to be appended (no position yet)."""

    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def stream_version(self) -> int: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def recorded_at(self) -> datetime: ...


# -- commitments (from the inbox) --------------------------------------------------------


@dataclass(frozen=True)
class KnownCommitment:
    """A commitment as this service learnt it from the commitment service's events."""

    commitment_id: str
    tenant_id: str
    member_id: str
    coach_id: str | None
    contact_label: str
    relationship: str
    channels: tuple[str, ...]
    timezone: str
    starts_on: date
    ends_on: date | None
    recorded_status: str
    ended_on: date | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> KnownCommitment:
        return cls(
            commitment_id=row.commitment_id,
            tenant_id=row.tenant_id,
            member_id=row.member_id,
            coach_id=row.coach_id,
            contact_label=row.contact_label,
            relationship=row.relationship,
            channels=tuple(row.channels),
            timezone=row.timezone,
            starts_on=row.starts_on,
            ends_on=row.ends_on,
            recorded_status=row.status,
            ended_on=row.ended_on,
            created_at=aware(row.created_at),
        )

    @property
    def stream_id(self) -> str:
        return stream_id(self.commitment_id)

    def today(self, now: datetime) -> date:
        return local_today(self.timezone, now)

    def status_at(self, now: datetime) -> CommitmentStatus:
        """As the commitment service defines it: a passed ``ends_on`` means completed, even
        before ``commitment.completed`` has reached this service."""
        status = CommitmentStatus(self.recorded_status)
        if status is CommitmentStatus.ACTIVE and self.ends_on is not None and self.ends_on < self.today(now):
            return CommitmentStatus.COMPLETED
        return status

    @property
    def last_day(self) -> date | None:
        """The last day that counts: ``ends_on``, or the day it was ended early."""
        if self.recorded_status == CommitmentStatus.ENDED and self.ended_on is not None:
            return self.ended_on if self.ends_on is None else min(self.ends_on, self.ended_on)
        return self.ends_on

    def terms(self, now: datetime) -> CommitmentTerms:
        return CommitmentTerms(
            starts_on=self.starts_on,
            ends_on=self.ends_on,
            timezone=self.timezone,
            channels=frozenset(self.channels),
            status=self.status_at(now),
        )


def load_commitment(conn: Connection, commitment_id: str) -> KnownCommitment | None:
    row = conn.execute(select(tables.commitments).where(tables.commitments.c.commitment_id == commitment_id)).first()
    return KnownCommitment.from_row(row) if row else None


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def apply_commitment_event(conn: Connection, event: RecordedEvent, now: datetime | None = None) -> None:
    """Fold one commitment.* / coach.* event into ``checkin_commitments`` (idempotent)."""
    now = now or utcnow()
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


def load_settings(conn: Connection, tenant_id: str, table: Table = tables.settings) -> tuple[TenantSettings, int]:
    """The tenant's settings and their stream version (defaults at version 0)."""
    row = conn.execute(select(table.c.data, table.c.version).where(table.c.tenant_id == tenant_id)).first()
    if row is None:
        return TenantSettings(), 0
    return TenantSettings.from_json(row.data), row.version


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


def apply_settings_event(conn: Connection, event: FoldedEvent, table: Table = tables.settings) -> None:
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
    first = min(aware(current["recorded_at"]), event.recorded_at)
    if event.stream_version > current["stream_version"]:
        return {**current, **values, "recorded_at": first}
    if first != aware(current["recorded_at"]):
        return {**current, "recorded_at": first}
    return None


def apply_check_in_event(conn: Connection, event: FoldedEvent, table: Table = tables.check_ins) -> None:
    """Fold one checkin.recorded/corrected into the day's row (see `merge_check_in`)."""
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


def check_in_from_row(row: Row[Any]) -> CheckIn:
    slip = Slip(row.slip_channel, Initiator(row.slip_initiated_by)) if row.slip_channel else None
    return CheckIn(day=row.day, outcome=Outcome(row.outcome), urge=row.urge, mood=row.mood, slip=slip, note=row.note)


def check_in_rows(
    conn: Connection, commitment_id: str, first: date | None = None, last: date | None = None
) -> list[Row[Any]]:
    table = tables.check_ins
    query = select(table).where(table.c.commitment_id == commitment_id)
    if first is not None:
        query = query.where(table.c.day >= first)
    if last is not None:
        query = query.where(table.c.day <= last)
    return list(conn.execute(query.order_by(table.c.day)))


# -- streaks -----------------------------------------------------------------------------------


def streak_of(
    commitment: KnownCommitment, outcomes: dict[date, Outcome], settings: TenantSettings, today: date
) -> Streak:
    return compute_streak(
        outcomes,
        starts_on=commitment.starts_on,
        ends_on=commitment.last_day,
        today=today,
        policy=settings.streak_policy,
        milestones=settings.milestones,
    )


def current_streak(
    conn: Connection, commitment: KnownCommitment, settings: TenantSettings, now: datetime
) -> tuple[Streak, list[CheckIn]]:
    """The streak as of today in the commitment's zone, from the check-in rows."""
    reports = [check_in_from_row(row) for row in check_in_rows(conn, commitment.commitment_id)]
    streak = streak_of(commitment, {c.day: c.outcome for c in reports}, settings, commitment.today(now))
    return streak, reports


def streak_row(
    commitment: KnownCommitment, reports: Sequence[CheckIn], settings: TenantSettings, now: datetime
) -> tuple[Streak, dict[str, Any]]:
    """One commitment's streak snapshot row (with its at-risk flag), computed purely from its
    reports (sorted by day) and settings as of `now`: the inline path and the rebuild's
    in-memory fold both write exactly this."""
    streak = streak_of(commitment, {c.day: c.outcome for c in reports}, settings, commitment.today(now))
    risk_reasons: list[str] = []
    if commitment.status_at(now) is CommitmentStatus.ACTIVE:
        assessment = assess_risk(list(reports), streak.as_of, settings.at_risk, starts_on=commitment.starts_on)
        risk_reasons = [str(reason) for reason in assessment.reasons]
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


def refresh_streak(
    conn: Connection, commitment: KnownCommitment, now: datetime, settings: TenantSettings | None = None
) -> Streak:
    """Recompute and store one commitment's streak snapshot (with its at-risk flag)."""
    if settings is None:
        settings, _ = load_settings(conn, commitment.tenant_id)
    reports = [check_in_from_row(row) for row in check_in_rows(conn, commitment.commitment_id)]
    return store_streak(conn, commitment, reports, settings, now)


def store_streak(
    conn: Connection, commitment: KnownCommitment, reports: Sequence[CheckIn], settings: TenantSettings, now: datetime
) -> Streak:
    """Store the snapshot computed from `reports` (the standing report of each day, sorted by
    day: what the check-in rows hold). The command path passes them from the stream it has
    already read, sparing a second read of the rows."""
    streak, values = streak_row(commitment, reports, settings, now)
    table = tables.streaks
    updated = conn.execute(
        update(table).where(table.c.commitment_id == commitment.commitment_id).values(**values)
    ).rowcount
    if not updated:
        conn.execute(insert(table).values(**values))
    return streak


def refresh_all_streaks(conn: Connection, now: datetime, tenant_id: str | None = None) -> int:
    """Recompute the snapshot of every commitment (of one tenant); returns how many."""
    query = select(tables.commitments)
    if tenant_id is not None:
        query = query.where(tables.commitments.c.tenant_id == tenant_id)
    cache: dict[str, TenantSettings] = {}
    count = 0
    for row in conn.execute(query).all():
        commitment = KnownCommitment.from_row(row)
        if commitment.tenant_id not in cache:
            cache[commitment.tenant_id] = load_settings(conn, commitment.tenant_id)[0]
        refresh_streak(conn, commitment, now, cache[commitment.tenant_id])
        count += 1
    return count


# -- projections (for rebuild) ------------------------------------------------------------------


def own_projection(clock: Clock = utcnow) -> Projection:
    """Check-in rows, streak snapshots and settings, from this service's own events."""

    def apply(conn: Connection, event: RecordedEvent) -> None:
        if event.type == SETTINGS_UPDATED:
            apply_settings_event(conn, event)
        else:
            apply_check_in_event(conn, event)

    def finish(conn: Connection) -> None:
        refresh_all_streaks(conn, clock())

    return Projection(
        name="checkin.read_models",
        tables=[tables.settings, tables.streaks, tables.check_ins],
        event_types=OWN_EVENTS,
        apply=apply,
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


def day_window(today: date, days: int) -> list[date]:
    """The ``days`` local dates ending with ``today``, oldest first."""
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
