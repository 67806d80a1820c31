"""Member events -> the profile and erasure read models (inline, and in rebuilds).

``member.erasure_requested`` also empties this service's other read models of the member
(services.commitment.projections), so a rebuild replays the erasure where it happened and
brings nothing back.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select, update

from shared.events import RecordedEvent
from shared.projection import Projection

from ..domain import members as domain
from ..tables import erasure_parts, erasures, members


def _part_recorded(conn: Connection, tenant_id: str, member_id: str, service: str, at: object) -> None:
    key = (
        (erasure_parts.c.tenant_id == tenant_id)
        & (erasure_parts.c.member_id == member_id)
        & (erasure_parts.c.service == service)
    )
    if conn.execute(select(erasure_parts.c.service).where(key)).first() is None:
        conn.execute(insert(erasure_parts).values(tenant_id=tenant_id, member_id=member_id, service=service,
                                                  erased_at=at))


def apply_member_event(conn: Connection, event: RecordedEvent) -> None:
    tenant_id, member_id = event.tenant_id, str(event.data["member_id"])
    if tenant_id is None:
        return
    member = (members.c.tenant_id == tenant_id) & (members.c.member_id == member_id)
    erasure = (erasures.c.tenant_id == tenant_id) & (erasures.c.member_id == member_id)
    if event.type == domain.PROFILE_UPDATED:
        row = conn.execute(select(members.c.version).where(member)).first()
        if row is None:
            conn.execute(insert(members).values(
                tenant_id=tenant_id, member_id=member_id, display_name=event.data["display_name"],
                updated_at=event.occurred_at, version=event.stream_version,
            ))
        elif row.version < event.stream_version:
            conn.execute(update(members).where(member).values(
                display_name=event.data["display_name"], updated_at=event.occurred_at, version=event.stream_version,
            ))
    elif event.type == domain.ERASURE_REQUESTED:
        conn.execute(delete(members).where(member))
        if conn.execute(select(erasures.c.member_id).where(erasure)).first() is None:
            conn.execute(insert(erasures).values(
                tenant_id=tenant_id, member_id=member_id, services=list(event.data["services"]),
                requested_at=event.occurred_at,
            ))
        # This service erases its copies in the transaction that records the request.
        _part_recorded(conn, tenant_id, member_id, domain.SERVICE, event.occurred_at)
    elif event.type == domain.ERASURE_COMPLETED:
        if conn.execute(select(erasures.c.member_id).where(erasure)).first() is not None:
            _part_recorded(conn, tenant_id, member_id, str(event.data["service"]), event.occurred_at)
    elif event.type == domain.ERASED:
        conn.execute(
            update(erasures).where(erasure, erasures.c.erased_at.is_(None)).values(erased_at=event.occurred_at)
        )


MEMBERS = Projection(
    name="commitment.members",
    tables=[members, erasure_parts, erasures],
    event_types=sorted(domain.EVENT_TYPES | {domain.ERASURE_COMPLETED}),
    apply=apply_member_event,
)
