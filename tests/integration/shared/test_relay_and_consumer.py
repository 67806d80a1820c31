"""The relay and the consumer base against a real broker (RabbitMQ, and the embedded one)."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from kombu import Queue
from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, func, insert, select, text

from shared import bus, config, eventstore
from shared import consumer as consumer_module
from shared.clock import utcnow
from shared.consumer import Consumer, apply_once, forget_processed
from shared.db import engine_for, read
from shared.envelope import encode
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.schema import dead_letters, processed_events
from shared.testing import delete_bus, wait_until
from shared.topology import COMPONENTS, Component

# A component of the tests' own, registered so the relay declares its queue before publishing.
PROBE = Component("tests.probe", ("probe.#",))


@pytest.fixture(autouse=True)
def _probe_component(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("shared.bus.COMPONENTS", (*COMPONENTS, PROBE))
    monkeypatch.setattr("shared.bus.declare_topology.__defaults__", ((*COMPONENTS, PROBE),))
    yield
    # The shared cleanup knows only the topology's components: the probe's queues are ours.
    delete_bus(config.broker_url(), config.bus_prefix(), [PROBE])


applied = MetaData()
probe_effects = Table(
    "probe_effects", applied,
    Column("event_id", String(64), primary_key=True),
    Column("stream_id", String(200)),
    Column("n", Integer),
)
# Which database transaction applied which event (only committed ones remain).
probe_transactions = Table(
    "probe_transactions", applied,
    Column("event_id", String(64), primary_key=True),
    Column("txid", BigInteger, nullable=False),
)


@pytest.fixture
def store(postgres_url: str):  # type: ignore[no-untyped-def]
    engine = engine_for(postgres_url)
    applied.create_all(engine)
    return engine


def _append(engine, count: int, streams: int = 3) -> list[RecordedEvent]:  # type: ignore[no-untyped-def]
    out: list[RecordedEvent] = []
    for i in range(count):
        with engine.begin() as conn:
            out += eventstore.append(
                conn, f"probe-{i % streams}", [NewEvent("probe.happened", {"n": i})],
                metadata=Metadata(tenant_id="t1", correlation_id=f"c{i}"),
            )
    return out


def _drain_queue(component: Component, url: str, expected: int, timeout: float = 30) -> list[dict]:  # type: ignore[type-arg]
    received: list[dict] = []  # type: ignore[type-arg]
    with bus.connect(url) as connection:
        queue = bus.component_queue(component, connection)

        def on_message(body, message):  # type: ignore[no-untyped-def]
            received.append({"body": json.loads(message.body), "props": message.properties,
                             "headers": message.headers})
            message.ack()

        with connection.Consumer([queue], callbacks=[on_message], accept=["json"]):
            def enough() -> bool:
                try:
                    connection.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
                return len(received) >= expected

            wait_until(enough, timeout=timeout, interval=0, message=f"{expected} messages")
    return received


def test_relay_publishes_every_event_with_the_contract_envelope(store, broker_url: str) -> None:
    from shared.relay import Relay

    events = _append(store, 25)
    relay = Relay(store, batch_size=10)
    relay.drain()
    received = _drain_queue(PROBE, broker_url, 25)
    bodies = [r["body"] for r in received]
    assert [b["id"] for b in bodies] == [str(e.id) for e in events]
    first = bodies[0]
    assert set(first) == {"id", "type", "schema_version", "tenant_id", "stream_id", "stream_version",
                          "position", "occurred_at", "recorded_at", "correlation_id", "causation_id",
                          "actor", "data"}
    assert first["type"] == "probe.happened" and first["tenant_id"] == "t1"
    assert first["correlation_id"] == "c0" and first["data"] == {"n": 0}
    with read(store) as conn:
        assert relay.checkpoint.get(conn) == events[-1].position
    if broker_url.startswith("amqp"):
        assert received[0]["props"]["delivery_mode"] == 2


def _checkpoint(engine, relay) -> int:  # type: ignore[no-untyped-def]
    with read(engine) as conn:
        return relay.checkpoint.get(conn)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.exclusive  # stops RabbitMQ under every other test's feet
def test_relay_survives_a_broker_outage_and_loses_nothing(store, amqp_url: str) -> None:
    """Stop RabbitMQ, keep appending, start it again: every event arrives, in stream order."""
    from shared.relay import Relay

    relay = Relay(store, batch_size=50, poll_interval_s=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,))
    before = _append(store, 20)
    thread.start()
    try:
        wait_until(lambda: _checkpoint(store, relay) == before[-1].position, 20,
                   message="relay to publish the first events")
        _rabbitmqctl("stop_app")
        try:
            during = _append(store, 30)  # the store keeps accepting writes
        finally:
            _rabbitmqctl("start_app")
        _rabbitmqctl("await_startup")
        wait_until(lambda: _checkpoint(store, relay) == during[-1].position, 60,
                   message="relay to catch up after the outage")
    finally:
        stop.set()
        thread.join(30)
    received = [r["body"] for r in _drain_queue(PROBE, amqp_url, 50, timeout=60)]
    ids = [b["id"] for b in received]
    assert set(ids) == {str(e.id) for e in before + during}, "an event was lost"
    for stream in {b["stream_id"] for b in received}:
        versions = [b["stream_version"] for b in received if b["stream_id"] == stream]
        first_seen = list(dict.fromkeys(versions))  # duplicates allowed (at-least-once), order not broken
        assert first_seen == sorted(first_seen)


def _record_effect(conn: Connection, event: RecordedEvent) -> None:
    if event.data.get("explode"):
        raise RuntimeError("handler cannot cope with this event")
    conn.execute(insert(probe_effects).values(event_id=str(event.id), stream_id=event.stream_id,
                                              n=event.data["n"]))


def _publish_raw(url: str, bodies: list[bytes]) -> None:
    with bus.connect(url) as connection:
        bus.declare_topology(connection, [PROBE])
        producer = connection.Producer(exchange=bus.events_exchange())
        for body in bodies:
            producer.publish(body, routing_key="probe.happened", content_type="application/json",
                             content_encoding="utf-8", delivery_mode=2)


def _consume_until(store, consumer: Consumer, *, effects: int, letters: int,  # type: ignore[no-untyped-def]
                   also: Callable[[], bool] = lambda: True) -> None:
    """Run `consumer` until the probe's effects and the dead letters reach these counts (and
    `also` holds)."""
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop, ready))
    thread.start()
    try:
        def settled() -> bool:
            with read(store) as conn:
                applied = conn.execute(select(func.count()).select_from(probe_effects)).scalar()
                parked = conn.execute(select(func.count()).select_from(dead_letters)).scalar()
            return applied == effects and parked == letters and also()

        wait_until(settled, 30, message=f"{effects} effects and {letters} dead letters")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_consumer_applies_once_dead_letters_poison_and_keeps_going(store, broker_url: str) -> None:
    events = _append(store, 5)
    with store.begin() as conn:
        poison = eventstore.append(conn, "probe-x", [NewEvent("probe.happened", {"n": 99, "explode": True})])
    bodies = [encode(e) for e in events]
    bodies = bodies + bodies[:2]  # duplicates: redelivered messages change nothing
    bodies.insert(1, b"{not json at all")
    bodies.insert(3, json.dumps({"id": str(uuid.uuid4()), "type": "probe.happened"}).encode())  # no envelope
    bodies.append(encode(poison[0]))
    last = _append(store, 1)[0]
    bodies.append(encode(last))  # after the poison: still processed
    _publish_raw(broker_url, bodies)

    consumer = Consumer(store, PROBE, _record_effect, max_attempts=3, retry_delay_s=0.01)
    _consume_until(store, consumer, effects=6, letters=3)
    with read(store) as conn:
        letters = conn.execute(select(dead_letters).order_by(dead_letters.c.id)).mappings().all()
        effects = conn.execute(select(probe_effects)).mappings().all()
    assert sorted(e["event_id"] for e in effects) == sorted(str(e.id) for e in [*events, last])
    reasons = [letter["reason"] for letter in letters]
    assert "not JSON" in reasons[0]
    assert "invalid envelope" in reasons[1]
    assert "handler cannot cope" in reasons[2] and letters[2]["attempts"] == 3
    # The dead-letter queue holds the same three messages with their reasons.
    with bus.connect(broker_url) as connection:
        dlq = bus.dead_letter_queue(PROBE, connection)(connection.default_channel)
        parked = []
        while (message := dlq.get(no_ack=True)) is not None:
            parked.append(message.headers["x-dead-letter-reason"])
    assert len(parked) == 3 and "handler cannot cope" in parked[2]


def test_a_batching_consumer_applies_prefetched_messages_in_one_transaction(store, broker_url: str) -> None:
    events = _append(store, 20)
    with store.begin() as conn:
        (poison,) = eventstore.append(conn, "probe-x", [NewEvent("probe.happened", {"n": 99, "explode": True})])
    # Batches of 5 from the queue's order: two whole ones, then one holding the poison.
    order = [*events[:10], poison, *events[10:], *events[:3]]
    _publish_raw(broker_url, [encode(e) for e in order])

    def handle(conn: Connection, event: RecordedEvent) -> None:
        txid = conn.execute(text("SELECT txid_current()")).scalar()
        conn.execute(insert(probe_transactions).values(event_id=str(event.id), txid=txid))
        _record_effect(conn, event)

    commits: list[int] = []
    consumer = Consumer(store, PROBE, handle, batch_size=5, max_attempts=2, retry_delay_s=0.01,
                        on_commit=lambda: commits.append(1))
    _consume_until(store, consumer, effects=20, letters=1)
    with read(store) as conn:
        effects = set(conn.execute(select(probe_effects.c.event_id)).scalars())
        per_transaction = conn.execute(
            select(probe_transactions.c.txid, func.count()).group_by(probe_transactions.c.txid)
        ).all()
        processed = conn.execute(text("SELECT count(*) FROM processed_events WHERE component = :c"),
                                 {"c": PROBE.name}).scalar()
        letter = conn.execute(select(dead_letters)).one()
    assert effects == {str(e.id) for e in events}  # each once, the redelivered three too
    assert processed == 20 and letter.event_id == str(poison.id) and letter.attempts == 2
    assert max(n for _, n in per_transaction) == 5  # a whole batch shared one transaction
    assert commits  # told after the commits
    if broker_url.startswith("amqp"):
        # Everything was acked (a batch with one frame): nothing is left for a redelivery.
        with bus.connect(broker_url) as connection:
            declared = bus.component_queue(PROBE, connection)(connection.default_channel)
            assert declared.queue_declare(passive=True).message_count == 0


def _remember(engine, component: str, event_id: uuid.UUID, age: timedelta) -> None:  # type: ignore[no-untyped-def]
    """A processed_events row as a consumer would have written it `age` ago."""
    with engine.begin() as conn:
        conn.execute(insert(processed_events).values(component=component, event_id=event_id, stream_id="probe-0",
                                                     stream_version=1, processed_at=utcnow() - age))


def _remembered(engine, component: str) -> set[uuid.UUID]:  # type: ignore[no-untyped-def]
    with read(engine) as conn:
        return set(conn.execute(select(processed_events.c.event_id)
                                .where(processed_events.c.component == component)).scalars())


def test_forget_processed_takes_a_components_oldest_rows_past_the_window(database_url: str) -> None:
    engine = engine_for(database_url)
    ages = {uuid.uuid4(): timedelta(days=days) for days in (31, 1, 40, 29, 35)}  # not in age order
    for event_id, age in ages.items():
        _remember(engine, "tests.a", event_id, age)
    elsewhere = uuid.uuid4()
    _remember(engine, "tests.b", elsewhere, timedelta(days=40))
    by_age = sorted(ages, key=ages.__getitem__, reverse=True)
    window = utcnow() - timedelta(days=30)

    assert forget_processed(engine, "tests.a", before=window, limit=2) == 2
    assert _remembered(engine, "tests.a") == set(by_age[2:])  # the two oldest went first
    assert forget_processed(engine, "tests.a", before=window, limit=2) == 1
    assert forget_processed(engine, "tests.a", before=window, limit=2) == 0
    assert _remembered(engine, "tests.a") == set(by_age[3:])  # 29 days and 1 day: inside the window
    assert _remembered(engine, "tests.b") == {elsewhere}  # another component's rows are its own


def test_a_consumer_forgets_past_its_window_between_messages_and_still_skips_a_copy_within_it(
        store, broker_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small batches, taken back to back: a backlog goes in several short transactions.
    monkeypatch.setattr(consumer_module, "FORGET_BATCH", 2)
    monkeypatch.setattr(consumer_module, "FORGET_AGAIN_S", 0.01)
    deletes: list[int] = []

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        deletes.append(forget_processed(*args, **kwargs))
        return deletes[-1]

    monkeypatch.setattr(consumer_module, "forget_processed", counted)
    events = _append(store, 3)
    _remember(store, PROBE.name, events[0].id, timedelta(hours=1))  # applied an hour ago
    old = {uuid.uuid4() for _ in range(5)}
    for event_id in old:
        _remember(store, PROBE.name, event_id, timedelta(days=31))
    elsewhere = uuid.uuid4()
    _remember(store, "tests.other", elsewhere, timedelta(days=31))
    _publish_raw(broker_url, [encode(e) for e in events])  # events[0] again: a late copy, within the window

    consumer = Consumer(store, PROBE, _record_effect, dedup_window=timedelta(days=30))
    _consume_until(store, consumer, effects=2, letters=0, also=lambda: not old & _remembered(store, PROBE.name))
    with read(store) as conn:
        applied = set(conn.execute(select(probe_effects.c.event_id)).scalars())
    assert applied == {str(events[1].id), str(events[2].id)}  # the copy of events[0] changed nothing
    assert _remembered(store, PROBE.name) == {e.id for e in events}
    assert _remembered(store, "tests.other") == {elsewhere}
    assert deletes[:3] == [2, 2, 1]  # five rows past the window, two at a time


def test_a_consumer_that_is_never_idle_forgets_too(store, amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between messages, not only when the queue goes quiet: here it never does, for longer
    than the test (IDLE_WAIT_S), so only the messages themselves give it the moments."""
    monkeypatch.setattr(consumer_module, "IDLE_WAIT_S", 60.0)
    monkeypatch.setattr(consumer_module, "FORGET_BATCH", 2)
    monkeypatch.setattr(consumer_module, "FORGET_AGAIN_S", 0.0)
    old = {uuid.uuid4() for _ in range(5)}
    for event_id in old:
        _remember(store, PROBE.name, event_id, timedelta(days=31))
    events = _append(store, 4)
    _publish_raw(amqp_url, [encode(e) for e in events[:3]])  # a batch of two rows after each

    consumer = Consumer(store, PROBE, _record_effect, dedup_window=timedelta(days=30))
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop, ready))
    thread.start()
    try:
        wait_until(lambda: not old & _remembered(store, PROBE.name), 30, message="the rows past the window forgotten")
    finally:
        stop.set()
        _publish_raw(amqp_url, [encode(events[3])])  # ends its long wait for a message
        thread.join(30)
    assert not thread.is_alive()


def test_a_concurrent_duplicate_rolls_back_whole_even_when_its_handler_appends(store) -> None:
    """Both copies of an event pass "not processed yet"; the handler appends (its first
    write), the processed_events row comes after: the second copy fails on that row and
    its append is rolled back with it."""
    (event,) = _append(store, 1)
    both_checked = threading.Barrier(2, timeout=20)

    def handle(conn: Connection, event: RecordedEvent) -> None:
        both_checked.wait()
        eventstore.append(conn, f"probe_effect-{event.id}", [NewEvent("probe.effect", {"n": event.data["n"]})])

    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(apply_once(store, PROBE.name, handle, event)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False, True]
    with read(store) as conn:
        effects = eventstore.read_stream(conn, f"probe_effect-{event.id}")
        processed = conn.execute(text("SELECT count(*) FROM processed_events WHERE component = :c"),
                                 {"c": PROBE.name}).scalar()
    assert [e.data for e in effects] == [{"n": 0}] and processed == 1
    # A later redelivery finds it applied and changes nothing.
    assert apply_once(store, PROBE.name, handle, event) is False


def test_consumer_declares_quorum_queues_on_rabbitmq(amqp_url: str) -> None:
    with bus.connect(amqp_url) as connection:
        bus.declare_topology(connection, [PROBE])
        queue: Queue = bus.component_queue(PROBE, connection)
        # Redeclaring as a classic queue must fail: the broker holds it as a quorum queue.
        classic = Queue(queue.name, durable=True)
        with pytest.raises(Exception, match=r"x-queue-type|PRECONDITION"):
            classic(connection.channel()).declare()


def test_a_second_copy_of_a_relay_waits_as_standby_and_takes_over(store, amqp_url: str) -> None:
    """Only one copy of a relay publishes; when it stops, the standby carries on."""
    from shared.relay import Relay

    first, second = Relay(store, poll_interval_s=0.02), Relay(store, poll_interval_s=0.02)
    assert first._lead()
    assert not second._lead(), "two copies of one relay were active at once"
    first._resign()
    assert second._lead()
    second._resign()


def test_a_running_relay_follows_an_operators_checkpoint_reset(store, filesystem_broker_url: str) -> None:
    """Resetting the stored checkpoint republishes, even while the relay keeps its own in memory."""
    from shared.relay import Relay

    events = _append(store, 5)
    relay = Relay(store, batch_size=100)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: _checkpoint(store, relay) == events[-1].position, 10, message="first publication")
        with store.begin() as conn:
            relay.checkpoint.set(conn, 0)
        received = _drain_queue(PROBE, filesystem_broker_url, 10, timeout=10)
    finally:
        stop.set()
        thread.join(10)
    assert [r["body"]["id"] for r in received] == [str(e.id) for e in events] * 2
