"""Who may see and change which commitment's check-ins (the authorization matrix).

- admin key of the tenant: everything in the tenant;
- member token: only commitments whose member_id is the token's subject;
- coach token: reads the commitments of their assigned clients, never writes (403);
- anything else, and every id of another tenant: 404, so existence never leaks.
"""

from __future__ import annotations

from sqlalchemy import Connection

from services.checkin.domain import KnownCommitment
from services.checkin.queries import load_commitment
from shared.auth import Principal
from shared.errors import Forbidden, NotFound


def tenant_of(caller: Principal) -> str:
    if caller.tenant_id is None:
        raise Forbidden("this requires a tenant credential")
    return caller.tenant_id


def visible_commitment(conn: Connection, caller: Principal, commitment_id: str, *, write: bool) -> KnownCommitment:
    """The commitment if `caller` may read it (and write to it when `write`)."""
    return authorized(caller, load_commitment(conn, commitment_id), write=write)


def authorized(caller: Principal, commitment: KnownCommitment | None, *, write: bool) -> KnownCommitment:
    """`commitment` (as loaded, None when unknown) if `caller` may read it (and write to it
    when `write`): the authorization matrix of the module docstring."""
    tenant_id = tenant_of(caller)
    if commitment is None or commitment.tenant_id != tenant_id:
        raise NotFound("no such commitment")
    if caller.role == "admin":
        return commitment
    if caller.role == "member" and commitment.member_id == caller.subject_id:
        return commitment
    if caller.role == "coach" and commitment.coach_id is not None and commitment.coach_id == caller.subject_id:
        if write:
            raise Forbidden("a coach reads their clients' check-ins but does not record them")
        return commitment
    raise NotFound("no such commitment")


def may_read_coach(caller: Principal, coach_id: str) -> str:
    """Admins read every coach's client list; a coach only their own. Returns the tenant."""
    tenant_id = tenant_of(caller)
    if caller.role == "admin" or (caller.role == "coach" and caller.subject_id == coach_id):
        return tenant_id
    raise Forbidden("only an admin or that coach may read a coach's clients")


def may_change_settings(caller: Principal) -> str:
    """Only the tenant's admin key changes its settings. Returns the tenant."""
    tenant_id = tenant_of(caller)
    if caller.role != "admin":
        raise Forbidden("only an admin key may change settings")
    return tenant_id
