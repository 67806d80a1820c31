"""Commands of the commitment service: load the aggregate from its stream, let the domain
decide, append with the expected version and update the read models, in ONE transaction.

Optimistic concurrency: an append is conditioned on the version the decision was made
on. When the caller sent ``If-Match`` a conflict is its to resolve (412); otherwise the
command is simply decided again on the fresh state, so concurrent requests never lose
an event and never overwrite each other.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import Row

from shared.auth import Principal, encode_token, forbidden
from shared.db import read
from shared.errors import NotFound
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.eventstore import ConcurrencyError, append, read_stream
from shared.problems import Problem
from shared.projection import lock_appends

from .domain import coaching
from .domain.commitment import CREATED, EXTENDED, Commitment, Status, stream_id
from .domain.tenancy import Tenant, TokenClaims, generate_api_key, may_read_commitment, may_write_commitment
from .projections import project
from .tables import coach_assignments, commitments

log = logging.getLogger(__name__)

# Enough for dozens of simultaneous writers on one commitment; each retry re-reads the stream.
MAX_ATTEMPTS = 25


@dataclass(frozen=True)
class Context:
    """Who issued a command and why: becomes the metadata of every event it appends."""

    tenant_id: str
    actor: str
    correlation_id: str | None = None
    causation_id: str | None = None

    def metadata(self) -> Metadata:
        return Metadata(tenant_id=self.tenant_id, correlation_id=self.correlation_id,
                        causation_id=self.causation_id, actor=self.actor)


class PreconditionFailed(Problem):
    """If-Match named another version than the stream's (HTTP 412)."""

    def __init__(self, current: int) -> None:
        super().__init__(412, f"If-Match does not match the current version {current}",
                         headers={"ETag": etag(current)})


def etag(version: int) -> str:
    return f'"{version}"'


def record(conn: Connection, stream: str, new_events: Sequence[NewEvent], *, expected_version: int | None,
           context: Context) -> list[RecordedEvent]:
    """Append and project inline; the caller's transaction makes both one unit."""
    recorded = append(conn, stream, new_events, expected_version=expected_version, metadata=context.metadata())
    project(conn, recorded)
    return recorded


def _retrying(command: Callable[[], Any], *, if_match: int | None) -> Any:
    for attempt in range(MAX_ATTEMPTS):
        try:
            return command()
        except ConcurrencyError as error:
            if if_match is not None:
                raise PreconditionFailed(error.actual) from error
            # Jittered so a crowd of writers does not collide again in lock step.
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
    raise Problem(409, "the commitment changed too often concurrently; retry the request")


# -- tenants and credentials ------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    tenant_id: str
    key_id: str
    api_key: str  # shown to the caller once, never stored


def create_tenant(engine: Engine, *, name: object, now: datetime, actor: str = "operator",
                  correlation_id: str | None = None) -> tuple[Tenant, IssuedKey]:
    """A new tenant with its first admin API key, in one append: it never exists locked out."""
    tenant_id = str(uuid.uuid4())
    tenant = Tenant.create(tenant_id=tenant_id, name=name, now=now)
    key = IssuedKey(tenant_id, str(uuid.uuid4()), generate_api_key())
    tenant.issue_api_key(key_id=key.key_id, api_key=key.api_key, now=now)
    context = Context(tenant_id=tenant_id, actor=actor, correlation_id=correlation_id)
    with engine.begin() as conn:
        record(conn, tenant.stream_id, tenant.pending_events, expected_version=0, context=context)
    return tenant, key


def _load_tenant(conn: Connection, tenant_id: str) -> Tenant:
    events = read_stream(conn, f"tenant-{tenant_id}")
    if not events:
        raise NotFound("no such tenant")
    return Tenant.from_events(events)


def issue_api_key(engine: Engine, context: Context, *, now: datetime) -> IssuedKey:
    def command() -> IssuedKey:
        with engine.begin() as conn:
            tenant = _load_tenant(conn, context.tenant_id)
            key = IssuedKey(tenant.id, str(uuid.uuid4()), generate_api_key())
            tenant.issue_api_key(key_id=key.key_id, api_key=key.api_key, now=now)
            record(conn, tenant.stream_id, tenant.pending_events, expected_version=tenant.expected_version,
                   context=context)
            return key

    return _retrying(command, if_match=None)


def revoke_api_key(engine: Engine, context: Context, key_id: str, *, now: datetime) -> None:
    def command() -> None:
        with engine.begin() as conn:
            tenant = _load_tenant(conn, context.tenant_id)
            tenant.revoke_api_key(key_id, now=now)
            record(conn, tenant.stream_id, tenant.pending_events, expected_version=tenant.expected_version,
                   context=context)

    _retrying(command, if_match=None)


def api_keys(engine: Engine, tenant_id: str) -> list[dict[str, Any]]:
    with read(engine) as conn:
        tenant = _load_tenant(conn, tenant_id)
    return [
        {"id": k.key_id, "prefix": k.prefix, "role": k.role, "issued_at": k.issued_at, "revoked_at": k.revoked_at}
        for k in tenant.api_keys.values()
    ]


def issue_token(caller: Principal, *, role: object, subject_id: object, ttl_seconds: object,
                now: datetime) -> tuple[str, datetime]:
    """A scoped coach/member token of the caller's tenant (signed, expiring, not stored)."""
    assert caller.tenant_id is not None
    claims = TokenClaims.issue(tenant_id=caller.tenant_id, role=role, subject_id=subject_id,
                               ttl_seconds=ttl_seconds, now=now)
    token = encode_token(tenant_id=claims.tenant_id, role=claims.role, subject_id=claims.subject_id,
                         expires_at=claims.expires_at, issued_at=claims.issued_at)
    return token, claims.expires_at


# -- commitments --------------------------------------------------------------------------


def load_commitment(conn: Connection, commitment_id: str) -> Commitment:
    return Commitment.from_events(read_stream(conn, stream_id(commitment_id)))


def _visible_row(conn: Connection, caller: Principal, commitment_id: str) -> Row[Any]:
    """The commitment's read-model row if the caller may read it; 404 otherwise (also for
    another tenant's id, so nobody learns which ids exist)."""
    row = conn.execute(
        select(commitments).where(commitments.c.commitment_id == commitment_id,
                                  commitments.c.tenant_id == caller.tenant_id)
    ).first()
    if row is None or not may_read_commitment(caller, row.member_id, row.coach_id):
        raise NotFound("no such commitment")
    return row


def create_commitment(engine: Engine, caller: Principal, context: Context, *, now: datetime,
                      member_id: object, contact: object, timezone: object, channels: Any = None,
                      starts_on: date | str | None = None, duration_days: object = None,
                      motivation: object = None) -> str:
    if caller.role not in ("admin", "member"):
        raise forbidden("only an admin key or the member's own token may open a commitment")
    if caller.role == "member" and member_id != caller.subject_id:
        raise forbidden("a member token may only open commitments for its own member_id")
    commitment = Commitment.create(
        commitment_id=str(uuid.uuid4()), member_id=member_id, contact=contact,  # type: ignore[arg-type]
        timezone=timezone, now=now, channels=channels, starts_on=starts_on,
        duration_days=duration_days, motivation=motivation,
    )
    with engine.begin() as conn:
        # Taken before reading the assignment, so a concurrent PUT of a coach either sees
        # this commitment or is seen by it: the member's coach is never missed.
        lock_appends(conn)
        coach_id = conn.execute(
            select(coach_assignments.c.coach_id).where(coach_assignments.c.tenant_id == context.tenant_id,
                                                       coach_assignments.c.member_id == commitment.member_id)
        ).scalar()
        if coach_id is not None:
            commitment.assign_coach(coach_id, now=now)
        record(conn, commitment.stream_id, commitment.pending_events, expected_version=0, context=context)
    return commitment.id


def mutate_commitment(engine: Engine, caller: Principal, context: Context, commitment_id: str, *,
                      if_match: int | None, decide: Callable[[Commitment], list[NewEvent]]) -> str:
    """Run one command on a commitment the caller may write; retried on concurrent change."""

    def command() -> str:
        with engine.begin() as conn:
            row = _visible_row(conn, caller, commitment_id)
            if not may_write_commitment(caller, row.member_id):
                raise forbidden("this credential may only read this commitment")
            commitment = load_commitment(conn, commitment_id)
            if if_match is not None and if_match != commitment.version:
                raise PreconditionFailed(commitment.version)
            events = decide(commitment)
            record(conn, commitment.stream_id, events, expected_version=commitment.expected_version,
                   context=context)
        return commitment_id

    return _retrying(command, if_match=if_match)


def history(engine: Engine, caller: Principal, commitment_id: str) -> list[RecordedEvent]:
    with read(engine) as conn:
        _visible_row(conn, caller, commitment_id)
        return read_stream(conn, stream_id(commitment_id))


def _set_coach(engine: Engine, context: Context, *, coach_id: str, member_id: str, now: datetime,
               assign: bool) -> None:
    with engine.begin() as conn:
        # Held to the end: commitments opened meanwhile wait and then see the new assignment.
        lock_appends(conn)
        current = conn.execute(
            select(coach_assignments.c.coach_id).where(coach_assignments.c.tenant_id == context.tenant_id,
                                                       coach_assignments.c.member_id == member_id)
        ).scalar()
        decide = coaching.assign_client if assign else coaching.unassign_client
        events = decide(tenant_id=context.tenant_id, member_id=member_id, coach_id=coach_id,
                        current_coach_id=current, now=now)
        record(conn, coaching.coaching_stream_id(context.tenant_id), events, expected_version=None, context=context)
        ids = conn.execute(
            select(commitments.c.commitment_id)
            .where(commitments.c.tenant_id == context.tenant_id, commitments.c.member_id == member_id)
            .order_by(commitments.c.seq)
        ).scalars().all()
        for commitment_id in ids:
            commitment = load_commitment(conn, commitment_id)
            if assign:
                commitment.assign_coach(coach_id, now=now)
            else:
                commitment.unassign_coach(coach_id=coach_id, now=now)
            record(conn, commitment.stream_id, commitment.pending_events,
                   expected_version=commitment.expected_version, context=context)


def assign_coach(engine: Engine, context: Context, *, coach_id: str, member_id: str, now: datetime) -> None:
    """The member's commitments, now and future, go to this coach (repeating changes nothing)."""
    _set_coach(engine, context, coach_id=coach_id, member_id=member_id, now=now, assign=True)


def unassign_coach(engine: Engine, context: Context, *, coach_id: str, member_id: str, now: datetime) -> None:
    """The member leaves this coach (and only this coach); idempotent."""
    _set_coach(engine, context, coach_id=coach_id, member_id=member_id, now=now, assign=False)


# -- scheduler ------------------------------------------------------------------------------


def complete_due(engine: Engine, *, now: datetime, limit: int = 500) -> int:
    """Record commitment.completed for every active commitment whose last day is over.

    Safe to run twice or in two processes at once: each append is conditioned on the
    version the decision was made on, and `complete` emits nothing once completed.
    """
    with read(engine) as conn:
        due = conn.execute(
            select(commitments.c.commitment_id, commitments.c.tenant_id)
            .where(commitments.c.recorded_status == Status.ACTIVE.value,
                   commitments.c.completes_at <= now.astimezone(UTC))
            .order_by(commitments.c.completes_at)
            .limit(limit)
        ).all()
    run = str(uuid.uuid4())
    completed = 0
    for commitment_id, tenant_id in due:
        try:
            with engine.begin() as conn:
                stream = read_stream(conn, stream_id(commitment_id))
                commitment = Commitment.from_events(stream)
                events = commitment.complete(now=now)
                if not events:
                    continue
                # Caused by the event that set the last day (creation or the latest extension).
                cause = [e for e in stream if e.type in (CREATED, EXTENDED)][-1]
                context = Context(tenant_id=tenant_id, actor="scheduler:completions", correlation_id=run,
                                  causation_id=str(cause.id))
                record(conn, commitment.stream_id, events, expected_version=commitment.expected_version,
                       context=context)
                completed += 1
        except ConcurrencyError:
            log.info("commitment %s changed while completing; the next run decides again", commitment_id)
    return completed
