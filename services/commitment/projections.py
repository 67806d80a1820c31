"""Projections of the commitment service: one `apply` per read model, for every path.

They run inline as the command pipeline's projector (`project`: in the transaction of the
command, right after its append, so a 201 is immediately readable), and in
`nocontact commitment rebuild`, which replays the store into emptied tables. Updates are
guarded by the stream version so applying an event twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import Connection, delete, insert, select, update

from shared.auth import credentials_projection
from shared.events import RecordedEvent
from shared.projection import Projection

from .domain import coaching
from .domain import commitment as model
from .domain.members import ERASURE_REQUESTED
from .members.projections import MEMBERS
from .tables import CREDENTIALS, coach_assignments, commitments


def _date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _apply_commitment(conn: Connection, event: RecordedEvent) -> None:
    data = event.data
    if event.type == ERASURE_REQUESTED:
        conn.execute(delete(commitments).where(commitments.c.tenant_id == event.tenant_id,
                                               commitments.c.member_id == data["member_id"]))
        return
    if event.type == model.CREATED:
        if conn.execute(select(commitments.c.commitment_id).where(
                commitments.c.commitment_id == data["commitment_id"])).first():
            return
        ends_on = _date(data["ends_on"])
        conn.execute(insert(commitments).values(
            commitment_id=data["commitment_id"],
            tenant_id=event.tenant_id,
            seq=event.position,
            member_id=data["member_id"],
            coach_id=None,
            contact_label=data["contact"]["label"],
            relationship=data["contact"]["relationship"],
            channels=list(data["channels"]),
            timezone=data["timezone"],
            starts_on=date.fromisoformat(data["starts_on"]),
            duration_days=data["duration_days"],
            ends_on=ends_on,
            motivation=data.get("motivation"),
            exceptions=list(data.get("exceptions") or []),
            places=list(data.get("places") or []),
            recorded_status=model.Status.ACTIVE.value,
            completes_at=model.completes_at(data["timezone"], ends_on),
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
            version=event.stream_version,
        ))
        return
    row = conn.execute(
        select(commitments.c.timezone, commitments.c.starts_on, commitments.c.version)
        .where(commitments.c.commitment_id == data["commitment_id"])
    ).first()
    if row is None or row.version >= event.stream_version:
        return  # already applied
    values: dict[str, object] = {"version": event.stream_version, "updated_at": event.occurred_at}
    if event.type == model.EXTENDED:
        ends_on = _date(data["ends_on"])
        values.update(
            ends_on=ends_on,
            duration_days=None if ends_on is None else (ends_on - row.starts_on).days + 1,
            completes_at=model.completes_at(row.timezone, ends_on),
        )
    elif event.type == model.ENDED:
        values.update(recorded_status=model.Status.ENDED.value, ended_on=date.fromisoformat(data["ended_on"]))
    elif event.type == model.COMPLETED:
        values.update(recorded_status=model.Status.COMPLETED.value)
    elif event.type == model.COACH_ASSIGNED:
        values.update(coach_id=data["coach_id"])
    elif event.type == model.COACH_UNASSIGNED:
        values.update(coach_id=None)
    elif event.type == model.BOUNDARIES_CHANGED:
        values.update(exceptions=list(data["exceptions"]), places=list(data["places"]))
    conn.execute(update(commitments).where(commitments.c.commitment_id == data["commitment_id"]).values(**values))


COMMITMENTS = Projection(
    name="commitment.commitments",
    tables=[commitments],
    event_types=sorted(model.EVENT_TYPES | {ERASURE_REQUESTED}),
    apply=_apply_commitment,
)


def _apply_assignment(conn: Connection, event: RecordedEvent) -> None:
    data = event.data
    if event.type == ERASURE_REQUESTED:
        conn.execute(delete(coach_assignments).where(coach_assignments.c.tenant_id == event.tenant_id,
                                                     coach_assignments.c.member_id == data["member_id"]))
        return
    key = (coach_assignments.c.tenant_id == data["tenant_id"]) & (coach_assignments.c.member_id == data["member_id"])
    if event.type == coaching.CLIENT_ASSIGNED:
        conn.execute(delete(coach_assignments).where(key))
        conn.execute(insert(coach_assignments).values(
            tenant_id=data["tenant_id"], member_id=data["member_id"], coach_id=data["coach_id"],
            assigned_at=event.occurred_at,
        ))
    elif event.type == coaching.CLIENT_UNASSIGNED:
        conn.execute(delete(coach_assignments).where(key, coach_assignments.c.coach_id == data["coach_id"]))


ASSIGNMENTS = Projection(
    name="commitment.coach_assignments",
    tables=[coach_assignments],
    event_types=sorted(coaching.EVENT_TYPES | {ERASURE_REQUESTED}),
    apply=_apply_assignment,
)

CREDENTIALS_PROJECTION = credentials_projection("commitment", CREDENTIALS)

#: Every read model of the service, all kept inline.
PROJECTIONS: tuple[Projection, ...] = (CREDENTIALS_PROJECTION, COMMITMENTS, ASSIGNMENTS, MEMBERS)


def project(conn: Connection, recorded: Sequence[RecordedEvent]) -> None:
    """The pipeline's projector: apply just-appended events to every read model that reads
    them, in the command's transaction."""
    for event in recorded:
        for projection in PROJECTIONS:
            if event.type in projection.event_types:
                projection.apply(conn, event)
