"""The delivery queue against both stores, with a controlled clock.

Events are applied through the inbox handler (as the consumer would), attempts go over
real HTTP to a loopback receiver; only time is simulated, so the 5-day rule and lease
expiry can be checked without waiting days.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql as psycopg_sql
from sqlalchemy import select
from sqlalchemy.dialects import postgresql

from services.notification import handlers
from services.notification.consumers import InboxHandler
from services.notification.delivery import queue
from services.notification.delivery.worker import DeliveryWorker
from services.notification.tables import deliveries, endpoints, failing_endpoints
from shared import eventstore
from shared.commands import Context
from shared.consumer import apply_once
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent, RecordedEvent
from tests.support.receiver import Receiver, Reply

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "true")
    # One attempt per message: each simulated day below sends exactly the new message.
    monkeypatch.setenv("NOCONTACT_WEBHOOK_RETRY_SCHEDULE", "0")
    return engine_for(database_url)


def _endpoint(engine: Any, url: str, tenant: str = "t1") -> str:
    endpoint_id, _secret = handlers.create_endpoint(
        engine, Context(tenant, "test"), url=url, event_types=["*"], description=""
    )
    return endpoint_id


def _event(engine: Any, tenant: str = "t1") -> RecordedEvent:
    commitment_id = str(uuid.uuid4())
    with engine.begin() as conn:
        (event,) = eventstore.append(
            conn,
            f"checkin-{commitment_id}",
            [NewEvent("checkin.missed", {"commitment_id": commitment_id, "member_id": "m", "date": "2026-03-01"})],
            metadata=Metadata(tenant_id=tenant),
        )
    apply_once(engine, "notification.inbox", InboxHandler(rng=random.Random(1)), event)
    return event


def _worker(engine: Any, clock: Clock, **kwargs: Any) -> DeliveryWorker:
    return DeliveryWorker(
        engine, clock=clock, poll_interval_s=0.05, timeout_s=2, rng=random.Random(1), schedule=(0,), **kwargs
    )


def _make_due(engine: Any, when: datetime) -> None:
    # The inbox queues with the real clock; move the queue into the simulated time.
    with engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.state == queue.PENDING).values(next_attempt_at=when))


def _endpoint_row(engine: Any, endpoint_id: str) -> Any:
    """The endpoint with its failure clock."""
    with read(engine) as conn:
        return conn.execute(
            select(endpoints, failing_endpoints.c.failing_since)
            .outerjoin(failing_endpoints, failing_endpoints.c.endpoint_id == endpoints.c.id)
            .where(endpoints.c.id == endpoint_id)
        ).one()


def test_failing_for_five_days_disables_and_a_success_resets_the_clock(engine: Any, receiver: Receiver) -> None:
    receiver.script("/dead", Reply(500))
    receiver.script("/shaky", Reply(500), Reply(200), Reply(500))
    dead = _endpoint(engine, receiver.url("/dead"))
    shaky = _endpoint(engine, receiver.url("/shaky"))
    clock = Clock(T0)
    worker = _worker(engine, clock)

    def attempt_all_at(when: datetime) -> None:
        clock.now = when
        _event(engine)
        _make_due(engine, when)
        worker.drain()

    attempt_all_at(T0)  # both fail: the clock starts at T0
    assert _endpoint_row(engine, dead).failing_since == T0
    attempt_all_at(T0 + timedelta(days=3))  # shaky succeeds: its clock resets
    assert _endpoint_row(engine, shaky).failing_since is None
    attempt_all_at(T0 + timedelta(days=4))  # both fail
    attempt_all_at(T0 + timedelta(days=5, seconds=1))

    gone = _endpoint_row(engine, dead)
    assert gone.status == "disabled" and "every attempt failed since" in gone.disabled_reason
    kept = _endpoint_row(engine, shaky)
    assert kept.status == "enabled"
    assert kept.failing_since == T0 + timedelta(days=4)
    # Nothing of the disabled endpoint stays pending, and its events say why.
    with read(engine) as conn:
        states = set(conn.execute(select(deliveries.c.state).where(deliveries.c.endpoint_id == dead)).scalars())
        audit = eventstore.read_stream(conn, f"webhook_endpoint-{dead}")
    assert queue.PENDING not in states
    assert [e.type for e in audit] == ["webhook_endpoint.created", "webhook_endpoint.disabled"]
    assert all("whsec_" not in json.dumps(e.data) for e in audit)


def test_a_worker_that_dies_mid_attempt_loses_nothing_and_success_is_final(engine: Any, receiver: Receiver) -> None:
    endpoint = _endpoint(engine, receiver.url("/ok"))
    _event(engine)
    clock = Clock(T0)
    _make_due(engine, T0)
    # A worker claims and dies before recording: the delivery is leased, not lost.
    (claimed,) = queue.claim(engine, now=T0, limit=10, per_endpoint=4, lease=timedelta(seconds=62))
    assert queue.claim(engine, now=T0 + timedelta(seconds=30), limit=10, per_endpoint=4, lease=timedelta(60)) == []

    clock.now = T0 + timedelta(seconds=63)  # the lease has expired
    assert _worker(engine, clock).drain() == 1
    assert len(receiver.at("/ok")) == 1
    # The dead worker's late result is ignored: its lease was taken over.
    from services.notification.delivery.sender import AttemptResult

    late = AttemptResult(500, 5, None, None, "")
    outcome = queue.Outcome(claimed, late, clock.now)
    assert queue.record_many(engine, [outcome], schedule=(0, 1), rng=random.Random()) == [None]

    # Whatever the time, a succeeded delivery is never claimed again ("restart").
    clock.now = T0 + timedelta(days=30)
    assert _worker(engine, clock).drain() == 0
    assert len(receiver.at("/ok")) == 1
    with read(engine) as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.endpoint_id == endpoint)).one()
    assert row.state == queue.SUCCEEDED and row.attempts == 1


def test_claims_cap_each_endpoint_and_serve_the_others(engine: Any, receiver: Receiver) -> None:
    busy = _endpoint(engine, receiver.url("/busy"))
    quiet = _endpoint(engine, receiver.url("/quiet"), tenant="t2")
    for _ in range(6):
        _event(engine)
    _event(engine, tenant="t2")
    with engine.begin() as conn:
        # The busy endpoint's backlog is older than the quiet endpoint's message.
        conn.execute(
            deliveries.update().where(deliveries.c.endpoint_id == busy).values(next_attempt_at=T0 - timedelta(hours=1))
        )
        conn.execute(deliveries.update().where(deliveries.c.endpoint_id == quiet).values(next_attempt_at=T0))
    lease = timedelta(seconds=60)
    first = queue.claim(engine, now=T0, limit=3, per_endpoint=2, lease=lease)
    assert sorted(c.endpoint_id for c in first) == sorted([busy, busy, quiet])
    # The busy endpoint is at its cap until a lease is released.
    assert queue.claim(engine, now=T0, limit=10, per_endpoint=2, lease=lease) == []
    # Endpoints at their cap do not crowd others out of a small claim.
    later = _endpoint(engine, receiver.url("/later"), tenant="t3")
    _event(engine, tenant="t3")
    with engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.endpoint_id == later).values(next_attempt_at=T0))
    (only,) = queue.claim(engine, now=T0, limit=1, per_endpoint=2, lease=lease)
    assert only.endpoint_id == later
    assert {c.tenant_id for c in first} == {"t1", "t2"}


def _deliveries_scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The nodes of a plan (EXPLAIN ANALYZE, JSON) that read notification_deliveries."""
    if plan.get("Relation Name") == "notification_deliveries":
        yield plan
    for child in plan.get("Plans", ()):
        yield from _deliveries_scans(child)


def _plans(conn: Any, statement: Any, parameters: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The statement's plan, run (EXPLAIN ANALYZE), as a custom plan for these values and as
    the generic plan a prepared statement may switch to (psycopg prepares a statement run
    five times): there the planner knows no value, neither `now` nor a LIMIT."""
    compiled = statement.compile(dialect=conn.dialect)
    yield "custom", conn.exec_driver_sql(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + compiled.string, {**compiled.params, **parameters}).scalar_one()[0]
    numbered = statement.compile(dialect=postgresql.psycopg.dialect(paramstyle="numeric_dollar"))
    values = {**numbered.params, **parameters}
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql("PREPARE claim_step AS " + numbered.string)
    # As literals: EXPLAIN cannot type parameters of its own passed on to EXECUTE.
    driver = conn.connection.driver_connection
    arguments = ", ".join(psycopg_sql.Literal(getattr(values[name], "value", values[name])).as_string(driver)
                          for name in numbered.positiontup)
    yield "generic", conn.exec_driver_sql(
        f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim_step({arguments})").scalar_one()[0]
    conn.exec_driver_sql("DEALLOCATE claim_step")


def test_a_claim_reads_what_the_caps_allow_not_the_backlog(postgres_url: str, receiver: Receiver,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker claims after every finished attempt: a claim that read the whole backlog
    got slower as the backlog grew, which made the backlog grow (issue 14's benchmark)."""
    monkeypatch.setenv("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "true")
    engine = engine_for(postgres_url)
    busy = _endpoint(engine, receiver.url("/busy"))
    later = _endpoint(engine, receiver.url("/later"), tenant="t2")
    # Endpoints with nothing pending (most of a platform's, at any moment) cost no probe.
    for tenant in range(20):
        _endpoint(engine, receiver.url("/idle"), tenant=f"idle-{tenant}")
    backlog = 400
    for tenant in ("t1", "t2"):
        with engine.begin() as conn:
            events = eventstore.append(
                conn, f"checkin-{uuid.uuid4()}",
                [NewEvent("checkin.missed", {"commitment_id": "c", "member_id": "m", "date": "2026-03-01"})
                 for _ in range(backlog)],
                metadata=Metadata(tenant_id=tenant),
            )
        with engine.begin() as conn:
            InboxHandler(rng=random.Random(1)).apply_batch(conn, events)
    _make_due(engine, T0)
    with engine.begin() as conn:
        # The other endpoint's backlog is due later: looking for its oldest due reads nothing.
        conn.execute(deliveries.update().where(deliveries.c.endpoint_id == later)
                     .values(next_attempt_at=T0 + timedelta(hours=1)))
        conn.exec_driver_sql("ANALYZE notification_deliveries")
    # Four attempts in flight at the busy endpoint, the rest of its backlog due: a claim with
    # a cap of eight steps over the four to find its oldest due, and leases four more.
    assert len(queue.claim(engine, now=T0, limit=10, per_endpoint=4, lease=timedelta(seconds=60))) == 4

    parameters = {"now": T0, "per_endpoint": 8, "limit": 10, "b_endpoint_id": busy, "remaining": 10,
                  "b_leased_until": T0 + timedelta(seconds=60), "b_token": "t"}
    for statement in (queue._CLAIMABLE_ENDPOINTS.statement, queue._LEASE_DUE):
        with engine.connect() as conn:
            for kind, plan in _plans(conn, statement, parameters):
                scans = list(_deliveries_scans(plan["Plan"]))
                # Rows read (returned or filtered out), all loops: the cap's rows and the next
                # ones, per endpoint, with slack for the planner's choices; reading the backlog
                # would be 400 and more.
                rows = sum((scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)
                            + scan.get("Rows Removed by Index Recheck", 0)) * scan["Actual Loops"] for scan in scans)
                assert rows <= 40, (kind, json.dumps(plan["Plan"], indent=1))
                # Probes (loops of those scans): a few per endpoint with pending deliveries
                # (two here), none per idle one.
                assert sum(scan["Actual Loops"] for scan in scans) <= 12, (kind, json.dumps(plan["Plan"], indent=1))
            conn.rollback()  # EXPLAIN ANALYZE of the lease really leases
    # And the claim is still right: nothing while the busy endpoint is at its cap.
    assert queue.claim(engine, now=T0, limit=10, per_endpoint=4, lease=timedelta(seconds=60)) == []
