"""Read-model queries of the commitment service: what the API and the commands read.

Every query is filtered by the caller's tenant; the access rules of the domain come on
top. A commitment the caller may not read is "not found", like another tenant's, so
nobody learns which ids exist.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.engine import Row

from shared import keyring
from shared.auth import Principal
from shared.errors import NotFound
from shared.events import RecordedEvent
from shared.eventstore import read_stream
from shared.paging import decode_cursor, encode_cursor

from .domain.commitment import Commitment, Status
from .domain.tenancy import ApiKey, Tenant, may_read_commitment
from .tables import CREDENTIALS, coach_assignments, commitments


def status_of(row: Row[Any], at: datetime) -> Status:
    """Recorded status, or `completed` once the last day has passed even if the scheduler
    has not recorded it yet: the answer must not depend on when it last ran."""
    if row.recorded_status == Status.ACTIVE and row.completes_at is not None and row.completes_at <= at:
        return Status.COMPLETED
    return Status(row.recorded_status)


def visible_commitment(conn: Connection, caller: Principal, commitment_id: str) -> Row[Any]:
    """The commitment's read-model row if the caller may read it; `NotFound` otherwise."""
    row = conn.execute(
        select(commitments).where(commitments.c.commitment_id == commitment_id,
                                  commitments.c.tenant_id == caller.tenant_id)
    ).first()
    if row is None or not may_read_commitment(caller, row.member_id, row.coach_id):
        raise NotFound("no such commitment")
    return row


@dataclass(frozen=True)
class Page:
    rows: list[Row[Any]]
    next_cursor: str | None


def commitments_page(conn: Connection, caller: Principal, *, at: datetime, limit: int, cursor: str | None = None,
                     member_id: str | None = None, status: str | None = None) -> Page:
    """The commitments the caller may read, oldest first, `limit` after `cursor`.

    The order and the cursor are the position of `commitment.created` (a stable keyset,
    unlike offsets or timestamps), sealed into a cursor valid for this tenant's list only.
    """
    scope = f"{caller.tenant_id}:commitments"
    after = decode_cursor(scope, cursor)
    conditions = [commitments.c.tenant_id == caller.tenant_id]
    if caller.role == "member":
        conditions.append(commitments.c.member_id == caller.subject_id)
    elif caller.role == "coach":
        conditions.append(commitments.c.coach_id == caller.subject_id)
    if member_id is not None:
        conditions.append(commitments.c.member_id == member_id)
    if after is not None:
        conditions.append(commitments.c.seq > after)
    over = and_(commitments.c.completes_at.is_not(None), commitments.c.completes_at <= at)
    if status == Status.ACTIVE:
        conditions += [commitments.c.recorded_status == Status.ACTIVE.value, ~over]
    elif status == Status.COMPLETED:
        conditions.append(or_(commitments.c.recorded_status == Status.COMPLETED.value,
                              and_(commitments.c.recorded_status == Status.ACTIVE.value, over)))
    elif status == Status.ENDED:
        conditions.append(commitments.c.recorded_status == Status.ENDED.value)
    rows = conn.execute(
        select(commitments).where(*conditions).order_by(commitments.c.seq).limit(limit + 1)
    ).all()
    page = list(rows[:limit])
    more = len(rows) > limit
    return Page(page, encode_cursor(scope, page[-1].seq) if more else None)


def history(conn: Connection, caller: Principal, commitment_id: str) -> list[RecordedEvent]:
    """The commitment's events, oldest first, if the caller may read it; personal values
    opened (services.commitment.personal)."""
    visible_commitment(conn, caller, commitment_id)
    opener = keyring.Opener(conn, str(caller.tenant_id))
    return [replace(event, data=opener.open_all(event.data, event_id=event.id))
            for event in read_stream(conn, Commitment.stream_of(commitment_id))]


def load_tenant(conn: Connection, tenant_id: str) -> Tenant:
    events = read_stream(conn, Tenant.stream_of(tenant_id))
    if not events:
        raise NotFound("no such tenant")
    return Tenant.from_events(events)


def api_keys(conn: Connection, caller: Principal) -> list[ApiKey]:
    """The caller's tenant's API keys in issue order (hashes and prefixes: never the keys)."""
    return list(load_tenant(conn, str(caller.tenant_id)).api_keys.values())


def tenants(conn: Connection) -> list[Row[Any]]:
    """Every tenant, oldest first, with how many of its API keys still work (the operator's
    view: a tenant with none is locked out until the operator issues it one)."""
    keys = CREDENTIALS.api_keys
    working = (
        select(func.count()).where(keys.c.tenant_id == CREDENTIALS.tenants.c.tenant_id, keys.c.revoked_at.is_(None))
        .scalar_subquery()
    )
    return list(conn.execute(
        select(CREDENTIALS.tenants, working.label("working_keys")).order_by(CREDENTIALS.tenants.c.created_at)
    ))


def assigned_coach(conn: Connection, tenant_id: str, member_id: str) -> str | None:
    """The coach the member is assigned to, whose care covers their future commitments."""
    return conn.execute(
        select(coach_assignments.c.coach_id).where(coach_assignments.c.tenant_id == tenant_id,
                                                   coach_assignments.c.member_id == member_id)
    ).scalar()


def member_commitment_ids(conn: Connection, tenant_id: str, member_id: str) -> list[str]:
    return list(conn.execute(
        select(commitments.c.commitment_id)
        .where(commitments.c.tenant_id == tenant_id, commitments.c.member_id == member_id)
        .order_by(commitments.c.seq)
    ).scalars())


def due_for_completion(conn: Connection, at: datetime, limit: int) -> list[tuple[str, str]]:
    """(commitment_id, tenant_id) of active commitments whose last day is over at `at`."""
    rows = conn.execute(
        select(commitments.c.commitment_id, commitments.c.tenant_id)
        .where(commitments.c.recorded_status == Status.ACTIVE.value, commitments.c.completes_at <= at)
        .order_by(commitments.c.completes_at)
        .limit(limit)
    ).all()
    return [(row.commitment_id, row.tenant_id) for row in rows]
