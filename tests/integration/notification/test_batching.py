"""Batched recording of attempts and the batching inbox, on real stores and RabbitMQ.

Batching groups writes into one transaction; it must decide exactly what one transaction
per attempt (or per message) decided: outcomes in order, a lost lease ignored, an
endpoint disabled mid-batch failing the rest, each event applied once, poison parked
without costing its neighbours, the delivery worker woken after the commit.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from services.notification import handlers
from services.notification.consumers import InboxHandler, inbox
from services.notification.delivery import queue
from services.notification.delivery.sender import AttemptResult
from services.notification.delivery.worker import DeliveryWorker
from services.notification.domain.endpoints import Status
from services.notification.domain.messages import message_id
from services.notification.tables import attempts, deliveries, endpoints, failing_endpoints, feed_items
from shared import bus, eventstore
from shared.commands import Context
from shared.consumer import apply_once
from shared.db import engine_for, read
from shared.envelope import encode
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.schema import dead_letters, processed_events
from shared.testing import wait_until
from shared.topology import NOTIFICATION_INBOX
from tests.support.receiver import Receiver

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("NOCONTACT_WEBHOOK_RETRY_SCHEDULE", "0,5,5")
    return engine_for(database_url)


def _endpoint(engine: Any, url: str, tenant: str) -> str:
    endpoint_id, _secret = handlers.create_endpoint(
        engine, Context(tenant, "test"), url=url, event_types=["*"], description=""
    )
    return endpoint_id


def _checkin(engine: Any, tenant: str, *, consume: bool = True) -> RecordedEvent:
    commitment_id = str(uuid.uuid4())
    with engine.begin() as conn:
        (event,) = eventstore.append(
            conn,
            f"checkin-{commitment_id}",
            [NewEvent("checkin.recorded", {"commitment_id": commitment_id, "member_id": "m", "date": "2026-03-01"})],
            metadata=Metadata(tenant_id=tenant),
        )
    if consume:
        apply_once(engine, "notification.inbox", InboxHandler(rng=random.Random(1)), event)
    return event


def _result(status: int) -> AttemptResult:
    return AttemptResult(status, 3, None, None, "")


def test_a_batch_of_outcomes_decides_what_one_at_a_time_would(engine: Any) -> None:
    endpoint = _endpoint(engine, "http://127.0.0.1:9/h", "t1")
    for _ in range(4):
        _checkin(engine, "t1")
    with engine.begin() as conn:
        conn.execute(deliveries.update().values(next_attempt_at=T0))
    claims = queue.claim(engine, now=T0, limit=10, per_endpoint=10, lease=timedelta(seconds=60))
    assert len(claims) == 4
    stale = dataclasses.replace(claims[0], lease_token="taken-over")
    later = T0 + timedelta(seconds=1)
    batch = [
        queue.Outcome(stale, _result(500), later),  # a lease another worker holds now
        queue.Outcome(claims[0], _result(200), later),
        queue.Outcome(claims[1], _result(500), later),
        queue.Outcome(claims[2], _result(410), later),  # disables the endpoint ...
        queue.Outcome(claims[3], _result(500), later),  # ... so this one fails for good
    ]
    # The worker records the batch in one transaction, then disables the endpoint.
    recorded = DeliveryWorker(engine, schedule=(0, 5, 5), rng=random.Random(1)).record(batch)

    assert recorded[0] is None
    assert [r.state if r else None for r in recorded[1:]] == [
        queue.SUCCEEDED,
        queue.PENDING,
        queue.FAILED,
        queue.FAILED,
    ]
    assert [r.endpoint_disabled for r in recorded[1:] if r] == [False, False, True, False]
    with read(engine) as conn:
        row = conn.execute(
            select(endpoints.c.status, failing_endpoints.c.failing_since)
            .outerjoin(failing_endpoints, failing_endpoints.c.endpoint_id == endpoints.c.id)
            .where(endpoints.c.id == endpoint)
        ).one()
        states = dict(conn.execute(select(deliveries.c.id, deliveries.c.state)).all())
        logged = conn.execute(select(attempts.c.delivery_id, attempts.c.state).order_by(attempts.c.id)).all()
        leased = conn.execute(select(func.count()).where(deliveries.c.lease_token.is_not(None))).scalar()
        audit = [e.type for e in eventstore.read_stream(conn, f"webhook_endpoint-{endpoint}")]
    assert row.status == Status.DISABLED and row.failing_since == later
    # The retrying delivery was failed by the disable, as a later transaction would have.
    assert [states[c.delivery_id] for c in claims] == [queue.SUCCEEDED, queue.FAILED, queue.FAILED, queue.FAILED]
    assert [(d, s) for d, s in logged] == [
        (claims[0].delivery_id, "succeeded"),
        (claims[1].delivery_id, "retrying"),
        (claims[2].delivery_id, "failed"),
        (claims[3].delivery_id, "failed"),
    ]
    assert leased == 0
    # Attempts append no events; only the endpoint's disabling does.
    assert audit == ["webhook_endpoint.created", "webhook_endpoint.disabled"]


def test_the_worker_claims_and_records_in_batches_within_the_cap(engine: Any, receiver: Receiver) -> None:
    busy = _endpoint(engine, receiver.url("/busy"), "t1")
    quiet = _endpoint(engine, receiver.url("/quiet"), "t2")
    for _ in range(7):
        _checkin(engine, "t1")
    _checkin(engine, "t2")
    with engine.begin() as conn:
        conn.execute(deliveries.update().values(next_attempt_at=T0))
    worker = DeliveryWorker(
        engine, clock=lambda: T0, threads=8, per_endpoint=3, timeout_s=2, schedule=(0, 5), rng=random.Random(1)
    )
    first = queue.claim(engine, now=T0, limit=8, per_endpoint=3, lease=worker.lease)
    # One claim transaction: the busy endpoint's cap leaves room for the quiet one.
    assert sorted(c.endpoint_id == busy for c in first) == [False, True, True, True]
    assert len({c.lease_token for c in first}) == 1
    outcomes = [queue.Outcome(c, _result(200), T0) for c in first]
    assert [r.state for r in worker.record(outcomes) if r] == [queue.SUCCEEDED] * 4
    assert worker.drain() == 4  # the rest of the busy endpoint's backlog
    with read(engine) as conn:
        states = conn.execute(select(deliveries.c.endpoint_id, deliveries.c.state)).all()
    assert {s for _, s in states} == {queue.SUCCEEDED}
    assert len(receiver.at("/busy")) == 4 and len(receiver.at("/quiet")) == 0  # the claimed ones were not sent
    assert quiet in {e for e, _ in states}


def test_a_poke_wakes_an_idle_worker_before_its_poll(
    engine: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _endpoint(engine, receiver.url("/h"), "t1")
    claims_done: list[int] = []
    real_claim = queue.claim

    def counted_claim(*args: Any, **kwargs: Any) -> list[queue.Claim]:
        found = real_claim(*args, **kwargs)
        claims_done.append(len(found))
        return found

    monkeypatch.setattr(queue, "claim", counted_claim)
    worker = DeliveryWorker(engine, poll_interval_s=30, timeout_s=2, schedule=(0,), rng=random.Random(1))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # The worker found nothing and went to sleep for 30 s; the inbox then queues work.
        wait_until(lambda: claims_done == [0], 5, message="first, empty claim")
        _checkin(engine, "t1")
        worker.poke()
        wait_until(lambda: len(receiver.at("/h")) == 1, 10, message="delivered well before the 30 s poll")
    finally:
        stop.set()
        thread.join(35)
    assert not thread.is_alive()
    with read(engine) as conn:
        assert conn.execute(select(deliveries.c.state)).scalar() == queue.SUCCEEDED


def test_the_inbox_applies_prefetched_messages_together_and_parks_poison(
    postgres_url: str, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "true")
    # The consumer waits 2 ms for a message already on its way before applying what it
    # holds; on a loaded machine the next frame can take longer to be read, and every batch
    # would be one message. A wider window keeps this test about batching, not timing.
    monkeypatch.setattr("shared.consumer.GATHER_S", 0.25)
    engine = engine_for(postgres_url)
    tenant = str(uuid.uuid4())
    _endpoint(engine, "http://127.0.0.1:9/h", tenant)
    events = [_checkin(engine, tenant, consume=False) for _ in range(12)]
    with engine.begin() as conn:
        # coach.assigned without its coach_id: the handler cannot apply it, ever.
        (poison,) = eventstore.append(
            conn, f"commitment-{uuid.uuid4()}", [NewEvent("coach.assigned", {"commitment_id": "c"})],
            metadata=Metadata(tenant_id=tenant),
        )  # fmt: skip
    bodies = [encode(e) for e in events[:6]] + [encode(poison)] + [encode(e) for e in events[6:]]
    bodies += [encode(e) for e in events[:3]]  # redelivered duplicates change nothing
    with bus.connect(amqp_url) as connection:
        bus.declare_topology(connection)
        producer = connection.Producer(exchange=bus.events_exchange())
        for event, body in zip([*events[:6], poison, *events[6:], *events[:3]], bodies, strict=True):
            producer.publish(body, **bus.message_properties(event))  # type: ignore[arg-type]

    pokes: list[int] = []
    consumer = inbox(engine, on_enqueued=lambda: pokes.append(1), max_attempts=2, retry_delay_s=0.01)
    # How many messages each batch transaction carried.
    batches: list[int] = []
    apply_batch = consumer.apply_batch

    def counted(events: Any) -> list[str] | None:
        batches.append(len(events))
        return apply_batch(events)

    monkeypatch.setattr(consumer, "apply_batch", counted)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop, ready), daemon=True)
    thread.start()
    try:

        def settled() -> bool:
            with read(engine) as conn:
                queued = conn.execute(select(func.count()).select_from(deliveries)).scalar()
                letters = conn.execute(select(func.count()).select_from(dead_letters)).scalar()
            return queued == 12 and letters == 1

        wait_until(settled, 30, message="12 deliveries and 1 dead letter")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    with read(engine) as conn:
        done = set(
            conn.execute(
                select(processed_events.c.event_id).where(processed_events.c.component == "notification.inbox")
            ).scalars()
        )
        letter = conn.execute(select(dead_letters)).one()
        per_message = conn.execute(select(deliveries.c.message_id, func.count()).group_by(deliveries.c.message_id))
        assert {n for _, n in per_message} == {1}
    assert done == {e.id for e in events}
    assert letter.event_id == str(poison.id) and letter.attempts == 2
    assert max(batches) > 1  # several messages shared a transaction
    assert pokes  # the delivery worker was woken after the commits
    # Everything was acked (a batch with one frame): nothing is left for a redelivery.
    with bus.connect(amqp_url) as connection:
        declared = bus.component_queue(NOTIFICATION_INBOX, connection)(connection.default_channel)
        assert declared.queue_declare(passive=True).message_count == 0


def _append(engine: Any, tenant: str, stream: str, event_type: str, data: dict[str, Any]) -> RecordedEvent:
    with engine.begin() as conn:
        (event,) = eventstore.append(conn, stream, [NewEvent(event_type, data)], metadata=Metadata(tenant_id=tenant))
    return event


def test_a_batch_sees_its_own_assignments_and_writes_each_delivery_once(engine: Any) -> None:
    tenant, commitment = "t1", str(uuid.uuid4())
    endpoint = _endpoint(engine, "http://127.0.0.1:9/h", tenant)
    stream = f"commitment-{commitment}"
    milestone = {"commitment_id": commitment, "member_id": "m", "days": 7}
    before = _append(engine, tenant, stream, "streak.milestone_reached", milestone)  # no coach yet
    assigned = _append(
        engine, tenant, stream, "coach.assigned", {"commitment_id": commitment, "member_id": "m", "coach_id": "k"}
    )
    after = _append(engine, tenant, stream, "streak.milestone_reached", milestone)
    checkins = [_checkin(engine, tenant, consume=False) for _ in range(3)]
    consumer = inbox(engine)
    batch = [before, assigned, after, *checkins, checkins[0]]  # the last one twice
    outcomes = consumer.apply_batch(batch)
    assert outcomes == ["applied"] * 6 + ["duplicate"]
    # The same events again (a redelivered batch) change nothing.
    assert consumer.apply_batch(batch) == ["duplicate"] * 7
    with read(engine) as conn:
        feed = conn.execute(select(feed_items.c.event_id, feed_items.c.coach_id)).all()
        queued = conn.execute(select(deliveries.c.endpoint_id, deliveries.c.message_id)).all()
    # The assignment made inside the batch is seen by the next event of the batch.
    assert feed == [(str(after.id), "k")]
    assert sorted(m for _, m in queued) == sorted(message_id(e.id) for e in [before, assigned, after, *checkins])
    assert {e for e, _ in queued} == {endpoint}
