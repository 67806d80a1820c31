"""The delivery queue in the database: enqueue, claim, record, redeliver.

``next_attempt_at`` in ``notification_deliveries`` is the truth about what is due, so a
restart loses no pending delivery; a delivery whose success was recorded is never
claimed again. A worker claims a due delivery by taking a lease (``leased_until``,
``lease_token``) in a short transaction, makes the HTTP attempt outside any transaction,
then records the result only if it still holds the lease. A worker that dies mid-attempt
leaves a lease that expires: the delivery becomes due again (at-least-once; receivers
deduplicate on ``webhook-id``).

Per-endpoint concurrency: a claim never leases more than ``per_endpoint`` deliveries of
one endpoint at a time, counted in the database, so the cap holds across several worker
processes. On PostgreSQL the claimer locks the endpoint rows it serves with ``FOR UPDATE
SKIP LOCKED`` (two workers never claim for the same endpoint at once, and neither waits
for the other); SQLite's single writer lock (BEGIN IMMEDIATE) gives the same guarantee.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Integer, and_, bindparam, case, delete, func, insert, or_, select, update

from services.notification.delivery.sender import AttemptResult
from services.notification.domain import messages as msgs
from services.notification.domain.endpoints import Status
from services.notification.domain.outcomes import DEFAULT_DISABLE_AFTER, Verdict, after_attempt, classify
from services.notification.domain.schedule import RandomSource, next_attempt_at
from services.notification.tables import attempts, deliveries, endpoints, failing_endpoints, messages
from shared import keyring
from shared.db import DriverSelect, DriverWrite, insert_new
from shared.events import RecordedEvent

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED_DISABLED = "skipped_disabled"
#: States a "redeliver everything failed since T" picks up again.
REDELIVERABLE = (FAILED, SKIPPED_DISABLED)


def signing_secrets(endpoint: Any, now: datetime) -> list[str]:
    """The secrets that sign now, sealed: the current one, and the rotated-out one for 24 h."""
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(endpoint.previous_secret)
    return secrets


# -- enqueue (inbox consumer) ---------------------------------------------------------------


#: Built once: a statement built per call costs its construction and cache key each time.
# Every inbox batch with a webhook event asks: on the driver on PostgreSQL.
_ENDPOINTS_OF = DriverSelect(select(endpoints.c.id, endpoints.c.status, endpoints.c.event_types).where(
    endpoints.c.tenant_id == bindparam("tenant_id")
))


def endpoints_of(conn: Connection, tenant_id: str) -> Sequence[Any]:
    """What enqueueing needs of a tenant's endpoints: id, status, event_types."""
    return _ENDPOINTS_OF.all(conn, {"tenant_id": tenant_id})


#: A message enqueued before keeps its body, and an endpoint that has a delivery of it keeps
#: that one: enqueueing an event again (the inbox forgot it was processed) adds nothing.
_NEW_MESSAGES = {dialect: DriverWrite(insert_new(dialect, messages, "id")) for dialect in ("postgresql", "sqlite")}
_NEW_DELIVERIES = {
    dialect: DriverWrite(insert_new(dialect, deliveries, "endpoint_id", "message_id"))
    for dialect in ("postgresql", "sqlite")
}


class Writes:
    """Deferred enqueue rows: inserted together (one statement per table) by ``flush``.

    For a caller applying many events in one transaction. Each message is enqueued at
    most once per batch (the inbox deduplicates events), so nothing written here is
    needed by a later read of the same batch.
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []

    def flush(self, conn: Connection) -> None:
        dialect = conn.dialect.name
        _NEW_MESSAGES[dialect].many(conn, self.messages)
        _NEW_DELIVERIES[dialect].many(conn, self.deliveries)
        self.messages, self.deliveries = [], []


def enqueue(
    conn: Connection,
    event: RecordedEvent,
    *,
    now: datetime,
    schedule: Sequence[int],
    rng: RandomSource,
    tenant_endpoints: Callable[[Connection, str], Sequence[Any]] | None = None,
    writes: Writes | None = None,
) -> int:
    """Queue the event's message for every endpoint of its tenant that subscribed to it.

    Disabled endpoints get a ``skipped_disabled`` delivery: the event is recorded for
    them and can be redelivered once the endpoint is enabled. Returns the number of
    deliveries queued (an endpoint that had a delivery of this message already keeps it,
    and is counted). Runs in the consumer's transaction (idempotent with it).
    ``tenant_endpoints`` replaces the read of the tenant's endpoints (the inbox caches
    it for the length of one transaction); with ``writes`` the rows are only collected
    (the caller flushes them before committing).
    """
    if event.tenant_id is None or event.type not in msgs.WEBHOOK_EVENT_TYPES:
        return 0
    rows = (tenant_endpoints or endpoints_of)(conn, event.tenant_id)
    targets = [row for row in rows if msgs.matches(row.event_types, event.type)]
    if not targets:
        return 0
    message_id = msgs.message_id(event.id)
    body = msgs.webhook_body(
        event_type=event.type,
        event_id=event.id,
        occurred_at=event.occurred_at,
        sequence=event.stream_version,
        data=event.data,
    )
    member_id = event.data.get("member_id")
    pending = writes if writes is not None else Writes()
    pending.messages.append(
        _message_row(
            tenant_id=event.tenant_id,
            event_id=event.id,
            event_type=event.type,
            member_id=None if member_id is None else str(member_id),
            body=body,
            occurred_at=event.occurred_at,
            now=now,
        )
    )
    for target in targets:
        enabled = target.status == Status.ENABLED
        pending.deliveries.append(
            _delivery_row(
                tenant_id=event.tenant_id,
                endpoint_id=target.id,
                message_id=message_id,
                event_type=event.type,
                next_at=next_attempt_at(1, now, schedule, rng) if enabled else None,
                now=now,
            )
        )
    if writes is None:
        pending.flush(conn)
    return len(targets)


def _message_row(
    *,
    tenant_id: str,
    event_id: object,
    event_type: str,
    member_id: str | None,
    body: bytes,
    occurred_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": msgs.message_id(event_id),
        "tenant_id": tenant_id,
        "event_id": str(event_id),
        "event_type": event_type,
        "member_id": member_id,
        "body": body.decode(),
        "occurred_at": occurred_at,
        "created_at": now,
    }


def _delivery_row(
    *, tenant_id: str, endpoint_id: str, message_id: str, event_type: str, next_at: datetime | None, now: datetime
) -> dict[str, Any]:
    """A new delivery: pending, due at `next_at`; or, without it, skipped (endpoint disabled)."""
    return {
        "tenant_id": tenant_id,
        "endpoint_id": endpoint_id,
        "message_id": message_id,
        "event_type": event_type,
        "state": PENDING if next_at is not None else SKIPPED_DISABLED,
        "attempts": 0,
        "schedule_step": 0,
        "next_attempt_at": next_at,
        "last_error": None if next_at is not None else "endpoint disabled when the event arrived",
        "created_at": now,
        "updated_at": now,
    }


def enqueue_example(
    conn: Connection,
    *,
    tenant_id: str,
    endpoint_id: str,
    event_type: str,
    event_id: uuid.UUID,
    now: datetime,
    schedule: Sequence[int],
    rng: RandomSource,
) -> str:
    """Queue a test event of `event_type` (its catalogue example, `msgs.example_body`) for one
    endpoint, as any message: signed and sent by the delivery worker, retried on the
    schedule, in the attempt log. About no member: nothing of a member's erasure or export.
    Returns the message id."""
    row = _message_row(
        tenant_id=tenant_id,
        event_id=event_id,
        event_type=event_type,
        member_id=None,
        body=msgs.example_body(event_type, event_id, now),
        occurred_at=now,
        now=now,
    )
    conn.execute(insert(messages).values(**row))
    conn.execute(
        insert(deliveries).values(
            **_delivery_row(
                tenant_id=tenant_id,
                endpoint_id=endpoint_id,
                message_id=row["id"],
                event_type=event_type,
                next_at=next_attempt_at(1, now, schedule, rng),
                now=now,
            )
        )
    )
    return str(row["id"])


# -- claim ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """A leased delivery with everything one attempt needs (no further reads)."""

    delivery_id: int
    lease_token: str
    tenant_id: str
    endpoint_id: str
    url: str
    #: Sealed: opened by the worker right before it signs.
    secrets: tuple[str, ...]
    message_id: str
    event_type: str
    #: As sent: the stored body with its personal values opened (see `opened_bodies`).
    body: bytes


def opened_bodies(conn: Connection, rows: Sequence[Any]) -> dict[str, bytes]:
    """The bodies of these message rows (``message_id``, ``tenant_id``, ``body``) as they
    are sent: personal values opened with the tenant's keys (one keyring read for all),
    serialised exactly as `msgs.webhook_body` does, so every attempt sends the same bytes.
    A value whose member was erased meanwhile goes out as null."""
    sealed = {row.message_id: row for row in rows if keyring.PREFIX in row.body}
    opened = {row.message_id: row.body.encode() for row in rows if row.message_id not in sealed}
    documents = {message_id: json.loads(row.body) for message_id, row in sealed.items()}
    for tenant_id in {row.tenant_id for row in sealed.values()}:
        opener = keyring.Opener(conn, tenant_id)
        mine = [message_id for message_id, row in sealed.items() if row.tenant_id == tenant_id]
        opener.prefetch([documents[message_id] for message_id in mine])
        for message_id in mine:
            opened[message_id] = msgs.serialise(opener.open_all(documents[message_id]))
    return opened


def due(table: Any) -> Any:
    """The rows of `table` (deliveries, or an alias) due at the ``now`` parameter (the
    claim's condition; the queue metrics count by it too)."""
    now = bindparam("now")
    return and_(
        table.c.state == PENDING,
        table.c.next_attempt_at <= now,
        or_(table.c.leased_until.is_(None), table.c.leased_until <= now),
    )


def _in_flight(table: Any, endpoint_id: Any) -> Any:
    """How many deliveries of the endpoint are leased now (attempts in flight). Read from
    the partial index of leased rows (``notification_deliveries_leased``): a recorded or
    redelivered attempt clears its lease, so that index holds what is in flight and the
    few leases left behind (a crash's, a delivery failed by disabling its endpoint while
    leased, until its attempt is recorded), never the endpoint's backlog."""
    return (
        select(func.count())
        .where(table.c.endpoint_id == endpoint_id, table.c.state == PENDING, table.c.leased_until > bindparam("now"))
        .scalar_subquery()
    )


def _with_pending() -> Any:
    """The ids of the endpoints that have pending deliveries, found by a skip scan: the
    first in index order, then each time the first after the last one found (a recursive
    CTE; PostgreSQL's B-tree has no skip scan of its own). One index probe per such
    endpoint, however deep its backlog, and none for the endpoints with nothing pending."""
    first = deliveries.alias("first_pending")
    found = select(func.min(first.c.endpoint_id).label("endpoint_id")).where(
        first.c.state == PENDING).cte("with_pending", recursive=True)
    after = deliveries.alias("next_pending")
    following = select(func.min(after.c.endpoint_id)).where(
        after.c.state == PENDING, after.c.endpoint_id > found.c.endpoint_id).scalar_subquery()
    return found.union_all(select(following).where(found.c.endpoint_id.is_not(None)))


def _claimable_endpoints() -> Any:
    """The endpoints to serve, oldest-due first (at most ``limit``), their rows locked.

    Endpoints already at their cap are left out, so they cannot fill the list and starve
    endpoints that could be served. A row another claimer holds is skipped (it serves
    that endpoint now); one disabled meanwhile is left out as its locked version says.

    Its cost is bounded by the endpoints that have pending deliveries and their attempts
    in flight, not by the backlog, nor by idle endpoints:
    - the endpoints with pending deliveries are found by skipping through the index
      (``notification_deliveries_due``: state, endpoint, next_attempt_at) from one
      endpoint to the next (`_with_pending`), one probe each;
    - each one's oldest due delivery is the first that index yields that is not leased,
      so at most the endpoint's cap of rows is stepped over.
    Grouping all due deliveries by endpoint instead read the whole backlog at every claim:
    the worker claims after every finished attempt, so a backlog made each claim slower and
    the backlog longer (measured under the check-in benchmark: 1,800 pending rows read per
    claim, 170 endpoint rows per check-in).
    """
    ready = deliveries.alias("ready")
    oldest = (
        select(ready.c.next_attempt_at)
        .where(ready.c.endpoint_id == endpoints.c.id, due(ready))
        .order_by(ready.c.next_attempt_at)
        .limit(1)
        .scalar_subquery()
    )
    flying = deliveries.alias("flying")
    active = _with_pending()
    candidates = (
        select(
            endpoints.c.id.label("endpoint_id"),
            oldest.label("oldest"),
            _in_flight(flying, endpoints.c.id).label("in_flight"),
        )
        .join(active, active.c.endpoint_id == endpoints.c.id)
        .where(endpoints.c.status == Status.ENABLED)
        # OFFSET 0 keeps the subquery a level of its own, so both lookups run once per
        # endpoint with pending deliveries, after the join: merged into the level below,
        # a filter on them is pushed down to every enabled endpoint, and the oldest due
        # delivery is looked up twice (to filter, to order).
        .offset(0)
        .subquery("candidates")
    )
    served = (
        select(candidates.c.endpoint_id, candidates.c.oldest)
        .where(
            candidates.c.oldest.is_not(None),
            candidates.c.in_flight < bindparam("per_endpoint", type_=Integer),
        )
        .order_by(candidates.c.oldest)
        .limit(bindparam("limit", type_=Integer))
        .subquery("served")
    )
    return (
        select(
            endpoints.c.id,
            endpoints.c.tenant_id,
            endpoints.c.url,
            endpoints.c.secret,
            endpoints.c.previous_secret,
            endpoints.c.previous_secret_expires_at,
        )
        .join(served, served.c.endpoint_id == endpoints.c.id)
        .where(endpoints.c.status == Status.ENABLED)
        .order_by(served.c.oldest, endpoints.c.id)
        .with_for_update(skip_locked=True, of=endpoints)
    )


def _lease_due() -> Any:
    """Lease the due deliveries of one locked endpoint, oldest first, as many as its budget:
    its cap less its leases in flight (counted now, under the endpoint's lock, so every
    lease committed by an earlier claimer is seen), at most ``remaining``. Returns what an
    attempt needs of each. Both reads are bounded as in `_claimable_endpoints`."""
    ready, flying = deliveries.alias("ready"), deliveries.alias("flying")
    endpoint_id = bindparam("b_endpoint_id")
    free = (bindparam("per_endpoint", type_=Integer) - _in_flight(flying, endpoint_id)).label("n")
    free_now = select(free).subquery("free")
    remaining = bindparam("remaining", type_=Integer)
    budget = select(
        case((free_now.c.n <= 0, 0), (free_now.c.n > remaining, remaining), else_=free_now.c.n)
    ).scalar_subquery()
    leased = (
        select(ready.c.id)
        .join(messages, messages.c.id == ready.c.message_id)
        .where(ready.c.endpoint_id == endpoint_id, due(ready))
        .order_by(ready.c.next_attempt_at)
        .limit(budget)
        .with_for_update(skip_locked=True, of=ready)
    )
    body = select(messages.c.body).where(messages.c.id == deliveries.c.message_id).scalar_subquery()
    return (
        update(deliveries)
        .where(deliveries.c.id.in_(leased))
        .values(leased_until=bindparam("b_leased_until"), lease_token=bindparam("b_token"))
        .returning(
            deliveries.c.id,
            deliveries.c.message_id,
            deliveries.c.event_type,
            deliveries.c.next_attempt_at,
            # The delivery's tenant is its message's (both are the event's).
            deliveries.c.tenant_id,
            body.label("body"),
        )
    )


#: Built once: each claim runs them with its parameters (no statement construction). The
#: first on the driver (shared.db.DriverSelect): SQLAlchemy walked it at every call to
#: derive its cache key.
_CLAIMABLE_ENDPOINTS = DriverSelect(_claimable_endpoints())
_LEASE_DUE = _lease_due()


def claim(
    engine: Engine,
    *,
    now: datetime,
    limit: int,
    per_endpoint: int,
    lease: timedelta,
) -> list[Claim]:
    """Lease up to ``limit`` due deliveries, at most ``per_endpoint`` in flight per endpoint.

    Endpoints are served oldest-due first, each up to its remaining budget, so one
    endpoint with a deep backlog cannot take every slot from the others.
    """
    if limit <= 0:
        return []
    claims: list[Claim] = []
    # One token for the whole batch: it is checked together with the delivery id, and a
    # lease taken over (expiry, redelivery) replaces it row by row.
    token = uuid.uuid4().hex
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Both statements' plans are bounded whatever the values (tests/integration/
            # notification/test_delivery_queue.py reads them, generic ones too), but the
            # planner, not knowing that, planned the claim anew at every call: more than
            # the claim's own work. Its prepared, generic plan is used instead.
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        locked = _CLAIMABLE_ENDPOINTS.all(conn, {"now": now, "per_endpoint": per_endpoint, "limit": limit})
        for endpoint in locked:
            rows = conn.execute(
                _LEASE_DUE,
                {
                    "now": now,
                    "per_endpoint": per_endpoint,
                    "b_endpoint_id": endpoint.id,
                    "remaining": limit - len(claims),
                    "b_leased_until": now + lease,
                    "b_token": token,
                },
            ).all()
            if not rows:
                continue
            # RETURNING keeps no order: oldest due first, as leased.
            rows.sort(key=lambda row: (row.next_attempt_at, row.id))
            secrets = tuple(signing_secrets(endpoint, now))
            bodies = opened_bodies(conn, rows)
            for row in rows:
                claims.append(
                    Claim(
                        delivery_id=row.id,
                        lease_token=token,
                        tenant_id=endpoint.tenant_id,
                        endpoint_id=endpoint.id,
                        url=endpoint.url,
                        secrets=secrets,
                        message_id=row.message_id,
                        event_type=row.event_type,
                        body=bodies[row.message_id],
                    )
                )
            if len(claims) >= limit:
                break
    return claims


# -- record ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording an attempt decided (for logs, metrics and tests)."""

    state: str
    attempt: int
    next_attempt_at: datetime | None
    #: Why the endpoint is to be disabled after this attempt (None: it is not).
    disable_reason: str | None = None

    @property
    def endpoint_disabled(self) -> bool:
        return self.disable_reason is not None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished attempt, waiting to be recorded."""

    claim: Claim
    result: AttemptResult
    #: When the attempt finished (the retry schedule counts from here).
    at: datetime


# Locked in id order (deliveries, then endpoints): two recording batches never deadlock.
_HELD = DriverSelect(
    select(deliveries.c.id, deliveries.c.lease_token, deliveries.c.attempts, deliveries.c.schedule_step)
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(deliveries.c.id)
    .with_for_update()
)
# Locked: recorders of one endpoint take turns moving its failure clock.
_RECORDING_ENDPOINTS = DriverSelect(
    select(endpoints.c.id, endpoints.c.status, failing_endpoints.c.failing_since)
    .outerjoin(failing_endpoints, failing_endpoints.c.endpoint_id == endpoints.c.id)
    .where(endpoints.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(endpoints.c.id)
    .with_for_update(of=endpoints)
)
_LOG_ATTEMPTS = DriverWrite(insert(attempts))
#: A delivery moved on by an attempt (`record_many` gives every one of these values).
_MOVE_ON = DriverWrite(
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"))
    .values({
        name: bindparam(name)
        for name in (
            "state", "attempts", "schedule_step", "next_attempt_at", "leased_until", "lease_token",
            "last_status_code", "last_error", "last_attempt_at", "updated_at",
        )
    })
)


def record_many(
    engine: Engine,
    outcomes: Sequence[Outcome],
    *,
    schedule: Sequence[int],
    rng: RandomSource,
    disable_after: timedelta = DEFAULT_DISABLE_AFTER,
) -> list[Recorded | None]:
    """Log attempts and move their deliveries on, in ONE transaction; None per lost lease.

    A lost lease means the endpoint was deleted, or the delivery was redelivered by hand
    while the attempt ran: the result no longer decides anything. The outcomes are
    applied one after the other, in order, exactly as separate transactions would have
    been (an endpoint to be disabled by one outcome fails the later ones of the batch);
    only the writes are grouped. Disabling the endpoint itself is a command on its stream
    that the caller runs next (``Recorded.disable_reason``; DeliveryWorker.record): this
    transaction locks and writes rows, and an append must be the first write of its own.
    """
    if not outcomes:
        return []
    results: list[Recorded | None] = [None] * len(outcomes)
    with engine.begin() as conn:
        ids = sorted({o.claim.delivery_id for o in outcomes})
        held = {row.id: row for row in _HELD.all(conn, {"ids": ids})}
        endpoint_ids = sorted({o.claim.endpoint_id for o in outcomes})
        endpoint_rows = {row.id: row for row in _RECORDING_ENDPOINTS.all(conn, {"ids": endpoint_ids})}
        # The endpoint state as the outcomes move it: (status, failing_since).
        state_of = {eid: (row.status, row.failing_since) for eid, row in endpoint_rows.items()}
        log_rows: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for index, item in enumerate(outcomes):
            claim_, result, now = item.claim, item.result, item.at
            delivery = held.get(claim_.delivery_id)
            endpoint = endpoint_rows.get(claim_.endpoint_id)
            if delivery is None or endpoint is None or delivery.lease_token != claim_.lease_token:
                continue
            # A second outcome of the same lease (never expected) must not count twice.
            held.pop(claim_.delivery_id)
            outcome = classify(result.status_code, result.error, retry_after=result.retry_after, now=now)
            number = delivery.attempts + 1
            step = delivery.schedule_step + 1
            status, failing_since = state_of[endpoint.id]
            was_enabled = status == Status.ENABLED
            since, disable = after_attempt(failing_since, outcome, now, disable_after)
            next_at: datetime | None = None
            if outcome.verdict is Verdict.DELIVERED:
                state = SUCCEEDED
            elif disable or not was_enabled:
                state = FAILED
            else:
                next_at = next_attempt_at(step + 1, now, schedule, rng, outcome.retry_after_s)
                state = PENDING if next_at is not None else FAILED
            error = result.error if result.error is not None else (None if state == SUCCEEDED else outcome.reason)
            log_rows.append(
                {
                    "tenant_id": claim_.tenant_id,
                    "endpoint_id": claim_.endpoint_id,
                    "delivery_id": claim_.delivery_id,
                    "message_id": claim_.message_id,
                    "event_type": claim_.event_type,
                    "attempt": number,
                    "status_code": result.status_code,
                    "duration_ms": result.duration_ms,
                    "error": error,
                    "response_excerpt": result.response_excerpt[:1024] or None,
                    "state": "retrying" if state == PENDING else state,
                    "next_attempt_at": next_at,
                    "attempted_at": now,
                }
            )
            updates.append(
                {
                    "b_id": claim_.delivery_id,
                    "state": state,
                    "attempts": number,
                    "schedule_step": step,
                    "next_attempt_at": next_at,
                    "leased_until": None,
                    "lease_token": None,
                    "last_status_code": result.status_code,
                    "last_error": error,
                    "last_attempt_at": now,
                    "updated_at": now,
                }
            )
            disable_reason: str | None = None
            if disable and was_enabled:
                first = failing_since or now
                disable_reason = (
                    outcome.reason
                    if outcome.verdict is Verdict.DISABLE_ENDPOINT
                    else f"every attempt failed since {first.isoformat()}"
                )
                status = Status.DISABLED
            state_of[endpoint.id] = (status, since)
            results[index] = Recorded(state, number, next_at, disable_reason)
        _LOG_ATTEMPTS.many(conn, log_rows)
        _MOVE_ON.many(conn, updates)
        for endpoint_id, (_status, since) in state_of.items():
            before = endpoint_rows[endpoint_id].failing_since
            if since == before:
                continue
            key = failing_endpoints.c.endpoint_id == endpoint_id
            if since is None:
                conn.execute(delete(failing_endpoints).where(key))
            elif before is None:
                conn.execute(insert(failing_endpoints).values(endpoint_id=endpoint_id, failing_since=since))
            else:
                conn.execute(update(failing_endpoints).where(key).values(failing_since=since))
    return results


# -- what an endpoint's events mean for its deliveries (services.notification.projections) ----


def fail_pending(conn: Connection, endpoint_id: str, reason: str, *, now: datetime) -> None:
    """The endpoint was disabled: its pending deliveries fail (redeliverable after enabling)."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.endpoint_id == endpoint_id, deliveries.c.state == PENDING)
        .values(state=FAILED, next_attempt_at=None, last_error=f"endpoint disabled: {reason}", updated_at=now)
    )


def restart_failure_clock(conn: Connection, endpoint_id: str) -> None:
    """The endpoint was enabled again: the 5-day rule counts from its next failure."""
    conn.execute(delete(failing_endpoints).where(failing_endpoints.c.endpoint_id == endpoint_id))


def forget_endpoint(conn: Connection, endpoint_id: str) -> None:
    """The endpoint was deleted: its deliveries, attempt log and failure clock go with it;
    an attempt in flight loses its lease and its result is ignored."""
    conn.execute(delete(attempts).where(attempts.c.endpoint_id == endpoint_id))
    conn.execute(delete(deliveries).where(deliveries.c.endpoint_id == endpoint_id))
    conn.execute(delete(failing_endpoints).where(failing_endpoints.c.endpoint_id == endpoint_id))


# -- redelivery -----------------------------------------------------------------------------


def requeue(conn: Connection, delivery_ids: Sequence[int], *, now: datetime) -> int:
    """Make deliveries due now with a fresh run of the retry schedule.

    The attempt counter keeps counting (the log stays readable); a lease held by a
    running attempt is dropped, so that attempt's late result is ignored.
    """
    if not delivery_ids:
        return 0
    return conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(list(delivery_ids)))
        .values(
            state=PENDING,
            schedule_step=0,
            next_attempt_at=now,
            leased_until=None,
            lease_token=None,
            updated_at=now,
        )
    ).rowcount


# -- retention --------------------------------------------------------------------------------


def forget_delivered(engine: Engine, *, before: datetime, batch_size: int = 500) -> int:
    """Delete the messages created before `before` that were delivered everywhere (or no
    longer go anywhere), with their deliveries and attempt log; returns how many messages.
    Batches of their own transactions, so a large backlog never holds locks for long.
    Messages still pending, failed or skipped somewhere stay: they may yet be sent."""
    undelivered = (
        select(deliveries.c.id)
        .where(deliveries.c.message_id == messages.c.id, deliveries.c.state != SUCCEEDED)
        .exists()
    )
    forgotten = 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(
                select(messages.c.id).where(messages.c.created_at < before, ~undelivered)
                .order_by(messages.c.created_at).limit(batch_size)
            ).scalars())
            if ids:
                conn.execute(delete(attempts).where(attempts.c.message_id.in_(ids)))
                conn.execute(delete(deliveries).where(deliveries.c.message_id.in_(ids)))
                conn.execute(delete(messages).where(messages.c.id.in_(ids)))
        forgotten += len(ids)
        if len(ids) < batch_size:
            return forgotten
