"""What the commitment service holds about a member: profile, erasure, the export.

Every query is filtered by the tenant: another tenant's member is "not found".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import Row

from shared import keyring
from shared.db import read
from shared.erasure import export_document, stream_history

from ..domain import members as domain
from ..domain.commitment import Commitment
from ..queries import status_of
from ..tables import coach_assignments, commitments, erasure_parts, erasures, members


def profile(conn: Connection, tenant_id: str, member_id: str) -> Row[Any] | None:
    return conn.execute(
        select(members).where(members.c.tenant_id == tenant_id, members.c.member_id == member_id)
    ).first()


def profile_document(conn: Connection, row: Row[Any]) -> dict[str, Any]:
    """The profile as the API shows it, its display name opened."""
    return {
        "member_id": row.member_id,
        "display_name": keyring.Opener(conn, row.tenant_id).open(row.display_name),
        "updated_at": row.updated_at,
        "version": row.version,
    }


def erasure(conn: Connection, tenant_id: str, member_id: str) -> domain.Erasure | None:
    row = conn.execute(
        select(erasures).where(erasures.c.tenant_id == tenant_id, erasures.c.member_id == member_id)
    ).first()
    if row is None:
        return None
    parts = conn.execute(
        select(erasure_parts.c.service, erasure_parts.c.erased_at)
        .where(erasure_parts.c.tenant_id == tenant_id, erasure_parts.c.member_id == member_id)
    ).all()
    return domain.Erasure(member_id, row.requested_at, tuple(row.services), dict(parts), row.erased_at)  # type: ignore[arg-type]


def erasure_document(found: domain.Erasure) -> dict[str, Any]:
    return {
        "member_id": found.member_id,
        "status": found.status,
        "services": found.service_status(),
        "requested_at": found.requested_at,
        "erased_at": found.erased_at,
    }


def member_known(conn: Connection, tenant_id: str, member_id: str) -> bool:
    """Whether the tenant holds anything of the member here: a commitment, a profile, a coach."""
    for table in (commitments, members, coach_assignments):
        found = conn.execute(
            select(table.c.member_id).where(table.c.tenant_id == tenant_id, table.c.member_id == member_id).limit(1)
        ).first()
        if found is not None:
            return True
    return False


def export_member(engine: Engine, tenant_id: str, member_id: str, now: datetime) -> dict[str, Any] | None:
    """Everything this service holds about the member, personal values in clear; None when
    it holds nothing of theirs (the coach a member is assigned to is another person's id:
    it shows as each commitment's ``coach_id``).

    An erased member's events stay in the log, their personal values shredded: they are
    not the member's data any more and are not exported."""
    with read(engine) as conn:
        rows = conn.execute(
            select(commitments)
            .where(commitments.c.tenant_id == tenant_id, commitments.c.member_id == member_id)
            .order_by(commitments.c.seq)
        ).all()
        found_profile = profile(conn, tenant_id, member_id)
        found_erasure = erasure(conn, tenant_id, member_id)
        if not rows and found_profile is None and found_erasure is None:
            return None
        opener = keyring.Opener(conn, tenant_id)
        opener.prefetch([(row.contact_label, row.exceptions, row.places) for row in rows])
        exported = [
            {
                "id": row.commitment_id,
                "contact": {"label": opener.open(row.contact_label), "relationship": row.relationship},
                "channels": row.channels,
                "timezone": row.timezone,
                "starts_on": row.starts_on,
                "duration_days": row.duration_days,
                "ends_on": row.ends_on,
                "motivation": opener.open(row.motivation),
                "exceptions": opener.open_all(row.exceptions),
                "places": opener.open_all(row.places),
                "status": status_of(row, now),
                "ended_on": row.ended_on,
                "coach_id": row.coach_id,
                "created_at": row.created_at,
                "history": stream_history(conn, opener, Commitment.stream_of(row.commitment_id)),
            }
            for row in rows
        ]
        data = {
            "profile": None if found_profile is None else {
                **profile_document(conn, found_profile),
                "history": stream_history(conn, opener, domain.stream_id(tenant_id, member_id)),
            },
            "commitments": exported,
            "erasure": None if found_erasure is None else erasure_document(found_erasure),
        }
    return export_document(member_id, domain.SERVICE, now, data)
