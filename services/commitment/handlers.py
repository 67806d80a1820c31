"""Commands of the commitment service, each carried out by the command pipeline
(`shared.commands`): load the aggregate, let the domain decide, record its events with the
version the decision was made on; the pipeline appends them first and then projects them,
in one transaction, deciding again after a lost race.

No HTTP here: refusals are domain errors (`shared.errors`), mapped at the edge.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlalchemy import Connection, Engine, text

from shared import keyring
from shared.auth import InvalidToken, Principal, encode_token, generate_api_key, read_token
from shared.commands import Context, Pipeline, UnitOfWork
from shared.db import read
from shared.errors import require_version
from shared.events import NewEvent, RecordedEvent
from shared.eventstore import ConcurrencyError, read_stream

from . import personal, queries
from .domain import coaching
from .domain.commitment import CREATED, EXTENDED, Commitment
from .domain.tenancy import (
    InvalidTokenRevocation,
    Tenant,
    TokenClaims,
    require_may_open_commitment,
    require_may_write_commitment,
)
from .projections import project

log = logging.getLogger(__name__)

PIPELINE = Pipeline(projector=project)

# Class of the advisory lock serialising, per member, the commands that read or change
# the member's coach assignment (see `_lock_member`).
MEMBER_LOCK_CLASS = 0x6E6F6D  # "nom"


def _lock_member(conn: Connection, tenant_id: str, member_id: str) -> None:
    """Hold a lock on (tenant, member) until the transaction ends, before reading the
    member's coach assignment.

    Opening a commitment reads the assignment; assigning a coach reads the member's
    commitments. Under this lock one of them commits before the other reads, so the new
    commitment either gets the coach or is among those the assignment moves: the coach is
    never missed. An advisory lock, not a row lock: nothing may be written before the
    append (`shared.commands`). SQLite: the write transaction (BEGIN IMMEDIATE) already
    excludes every other writer.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:class, "
                 "hashtext(current_schema() || ':' || :tenant || ':' || :member))"),
            {"class": MEMBER_LOCK_CLASS, "tenant": tenant_id, "member": member_id},
        )


# -- tenants and credentials ------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    tenant_id: str
    key_id: str
    api_key: str  # shown to the caller once, never stored


def _issue_key(tenant: Tenant, now: datetime) -> IssuedKey:
    key = IssuedKey(tenant.id, str(uuid.uuid4()), generate_api_key())
    tenant.issue_api_key(key_id=key.key_id, api_key=key.api_key, now=now)
    return key


def create_tenant(engine: Engine, *, name: object, now: datetime, actor: str = "operator",
                  correlation_id: str | None = None) -> tuple[Tenant, IssuedKey]:
    """A new tenant with its first admin API key, in one append: it never exists locked out."""
    tenant_id = str(uuid.uuid4())

    def command(uow: UnitOfWork) -> tuple[Tenant, IssuedKey]:
        tenant = Tenant.create(tenant_id=tenant_id, name=name, now=uow.now)
        key = _issue_key(tenant, uow.now)
        uow.record(tenant.stream_id, tenant.pending_events, expected_version=0)
        return tenant, key

    context = Context(tenant_id=tenant_id, actor=actor, correlation_id=correlation_id)
    return PIPELINE.run(engine, context, command, now=now)


def issue_api_key(engine: Engine, context: Context, *, now: datetime) -> IssuedKey:
    """Another admin key of the context's tenant (its admin's, or the operator's choice:
    a tenant that revoked its last key is not locked out). An unknown tenant: `NotFound`."""

    def command(uow: UnitOfWork) -> IssuedKey:
        tenant = queries.load_tenant(uow.conn, _tenant_of(context))
        key = _issue_key(tenant, uow.now)
        uow.record(tenant.stream_id, tenant.pending_events, expected_version=tenant.expected_version)
        return key

    return PIPELINE.run(engine, context, command, now=now)


def revoke_api_key(engine: Engine, context: Context, key_id: str, *, now: datetime) -> None:
    def command(uow: UnitOfWork) -> None:
        tenant = queries.load_tenant(uow.conn, _tenant_of(context))
        events = tenant.revoke_api_key(key_id, now=uow.now)
        uow.record(tenant.stream_id, events, expected_version=tenant.expected_version)

    PIPELINE.run(engine, context, command, now=now)


def issue_token(caller: Principal, *, role: object, subject_id: object, ttl_seconds: object,
                now: datetime) -> tuple[str, datetime]:
    """A scoped coach/member token of the caller's tenant (signed, expiring, not stored),
    minted by the caller's API key: it names the key, and revoking the key revokes it."""
    assert caller.role == "admin" and caller.credential_id is not None  # only admin keys mint tokens
    claims = TokenClaims.issue(tenant_id=_tenant_of(caller), role=role, subject_id=subject_id,
                               ttl_seconds=ttl_seconds, now=now)
    token = encode_token(tenant_id=claims.tenant_id, role=claims.role, subject_id=claims.subject_id,
                         key_id=caller.credential_id, token_id=str(uuid.uuid4()),
                         expires_at=claims.expires_at, issued_at=claims.issued_at)
    return token, claims.expires_at


def revoke_token(engine: Engine, context: Context, token: str, *, now: datetime) -> None:
    """Revoke one token of the context's tenant; once this returns, no service accepts it."""
    try:
        signed = read_token(token, allow_expired=True)
    except InvalidToken as error:
        raise InvalidTokenRevocation("token", "is not a token this suite issued") from error

    def command(uow: UnitOfWork) -> None:
        tenant = queries.load_tenant(uow.conn, _tenant_of(context))
        events = tenant.revoke_token(signed, now=uow.now)
        uow.record(tenant.stream_id, events, expected_version=tenant.expected_version)

    PIPELINE.run(engine, context, command, now=now)


def _tenant_of(who: Context | Principal) -> str:
    # The views admit only tenant credentials to these commands (never the operator).
    assert who.tenant_id is not None
    return who.tenant_id


# -- commitments --------------------------------------------------------------------------


def load_commitment(conn: Connection, commitment_id: str) -> Commitment:
    return Commitment.from_events(read_stream(conn, Commitment.stream_of(commitment_id)))


def load_opened_commitment(conn: Connection, tenant_id: str, commitment_id: str) -> Commitment:
    """The commitment with its personal values opened (in memory only): for decisions that
    compare them with the command's, e.g. the same boundaries again."""
    opener = keyring.Opener(conn, tenant_id)
    events = read_stream(conn, Commitment.stream_of(commitment_id))
    return Commitment.from_events([replace(event, data=opener.open_all(event.data, event_id=event.id))
                                   for event in events])


def create_commitment(engine: Engine, caller: Principal, context: Context, *, now: datetime,
                      member_id: object, contact: object, timezone: object, channels: object = None,
                      starts_on: date | str | None = None, duration_days: object = None,
                      motivation: object = None, exceptions: object = None, places: object = None) -> str:
    """Open a commitment, with its boundaries if given; it gets the coach its member is
    assigned to, if any."""
    require_may_open_commitment(caller, member_id)
    tenant_id = _tenant_of(context)
    commitment_id = str(uuid.uuid4())

    def command(uow: UnitOfWork) -> str:
        commitment = Commitment.create(
            commitment_id=commitment_id, member_id=member_id, contact=contact,  # type: ignore[arg-type]
            timezone=timezone, now=uow.now, channels=channels, starts_on=starts_on,  # type: ignore[arg-type]
            duration_days=duration_days, motivation=motivation, exceptions=exceptions, places=places,
        )
        _lock_member(uow.conn, tenant_id, commitment.member_id)
        coach_id = queries.assigned_coach(uow.conn, tenant_id, commitment.member_id)
        if coach_id is not None:
            commitment.assign_coach(coach_id, now=uow.now)
        events = personal.seal(uow.conn, tenant_id, commitment.pending_events)
        uow.record(commitment.stream_id, events, expected_version=0)
        return commitment.id

    return keyring.creating_keys(engine, lambda: PIPELINE.run(engine, context, command, now=now), now=now)


Decision = Callable[[Commitment, datetime], list[NewEvent]]


def _change_commitment(engine: Engine, caller: Principal, context: Context, commitment_id: str, *,
                       now: datetime, if_match: int | None, decide: Decision) -> None:
    """Run one decision on a commitment the caller may change, its personal values opened.
    With `if_match`, only on that version (412 otherwise, also when another writer wins the
    race)."""

    def command(uow: UnitOfWork) -> None:
        row = queries.visible_commitment(uow.conn, caller, commitment_id)
        require_may_write_commitment(caller, row.member_id)
        commitment = load_opened_commitment(uow.conn, _tenant_of(context), commitment_id)
        require_version(if_match, commitment.version)
        events = personal.seal(uow.conn, _tenant_of(context), decide(commitment, uow.now))
        uow.record(commitment.stream_id, events, expected_version=commitment.expected_version)

    keyring.creating_keys(engine, lambda: PIPELINE.run(engine, context, command, if_match=if_match, now=now), now=now)


def extend_commitment(engine: Engine, caller: Principal, context: Context, commitment_id: str, *,
                      now: datetime, if_match: int | None = None, additional_days: object = None,
                      indefinite: object = False) -> None:
    """Add days to an active commitment, or make it indefinite."""
    _change_commitment(
        engine, caller, context, commitment_id, now=now, if_match=if_match,
        decide=lambda c, at: c.extend(now=at, additional_days=additional_days, indefinite=indefinite),
    )


def end_commitment(engine: Engine, caller: Principal, context: Context, commitment_id: str, *,
                   now: datetime, if_match: int | None = None, reason: object = None) -> None:
    """End an active commitment early."""
    _change_commitment(
        engine, caller, context, commitment_id, now=now, if_match=if_match,
        decide=lambda c, at: c.end(now=at, reason=reason),
    )


def change_boundaries(engine: Engine, caller: Principal, context: Context, commitment_id: str, *,
                      now: datetime, if_match: int | None = None, exceptions: object,
                      places: object) -> None:
    """Replace an active commitment's boundaries (exceptions and places, both in full)."""
    _change_commitment(
        engine, caller, context, commitment_id, now=now, if_match=if_match,
        decide=lambda c, at: c.change_boundaries(now=at, exceptions=exceptions, places=places),
    )


def _set_coach(engine: Engine, context: Context, *, coach_id: str, member_id: str, now: datetime,
               assign: bool) -> None:
    """Record the assignment on the coaching stream and move each of the member's
    commitments, all in one append."""
    tenant_id = _tenant_of(context)

    def command(uow: UnitOfWork) -> None:
        _lock_member(uow.conn, tenant_id, member_id)
        current = queries.assigned_coach(uow.conn, tenant_id, member_id)
        decide = coaching.assign_client if assign else coaching.unassign_client
        events = decide(tenant_id=tenant_id, member_id=member_id, coach_id=coach_id, current_coach_id=current,
                        now=uow.now)
        # Only the order of the coaching stream matters: the member lock serialises the
        # decisions on one member, and different members' facts do not depend on each other.
        uow.record(coaching.coaching_stream_id(tenant_id), events, expected_version=None)
        for commitment_id in queries.member_commitment_ids(uow.conn, tenant_id, member_id):
            commitment = load_commitment(uow.conn, commitment_id)
            if assign:
                moved = commitment.assign_coach(coach_id, now=uow.now)
            else:
                moved = commitment.unassign_coach(coach_id=coach_id, now=uow.now)
            uow.record(commitment.stream_id, moved, expected_version=commitment.expected_version)

    PIPELINE.run(engine, context, command, now=now)


def assign_coach(engine: Engine, context: Context, *, coach_id: str, member_id: str, now: datetime) -> None:
    """The member's commitments, now and future, go to this coach (repeating changes nothing)."""
    _set_coach(engine, context, coach_id=coach_id, member_id=member_id, now=now, assign=True)


def unassign_coach(engine: Engine, context: Context, *, coach_id: str, member_id: str, now: datetime) -> None:
    """The member leaves this coach (and only this coach); idempotent."""
    _set_coach(engine, context, coach_id=coach_id, member_id=member_id, now=now, assign=False)


# -- scheduler ------------------------------------------------------------------------------

SCHEDULER_ACTOR = "scheduler:completions"


def _complete(commitment: Commitment, uow: UnitOfWork) -> bool:
    events = commitment.complete(now=uow.now)
    uow.record(commitment.stream_id, events, expected_version=commitment.expected_version)
    return bool(events)


def _period_set_by(stream: list[RecordedEvent]) -> RecordedEvent:
    """The event that set the last day: the creation or the latest extension."""
    return [event for event in stream if event.type in (CREATED, EXTENDED)][-1]


def complete_due(engine: Engine, *, now: datetime, limit: int = 500) -> int:
    """Record commitment.completed for every active commitment whose last day is over.

    Safe to run twice or in two processes at once: each append is conditioned on the
    version the decision was made on, and `complete` emits nothing once completed. A
    commitment that changed meanwhile is decided again on the next run.
    """
    with read(engine) as conn:
        due = queries.due_for_completion(conn, now, limit)
    run = str(uuid.uuid4())
    completed = 0
    for commitment_id, tenant_id in due:
        try:
            with engine.begin() as conn:
                stream = read_stream(conn, Commitment.stream_of(commitment_id))
                context = Context(tenant_id=tenant_id, actor=SCHEDULER_ACTOR, correlation_id=run,
                                  causation_id=str(_period_set_by(stream).id))
                command = functools.partial(_complete, Commitment.from_events(stream))
                completed += PIPELINE.within(conn, context, command, now=now)
        except ConcurrencyError:
            log.info("commitment %s changed while completing; the next run decides again", commitment_id)
    return completed
