"""The relay publishes the feed: every committed event once, in commit order, each stream
in version order, however the writers' commits interleave. PostgreSQL and RabbitMQ."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
from sqlalchemy import Engine

from shared import eventstore
from shared.db import engine_for, read
from shared.events import NewEvent
from shared.relay import Relay

# The probe component (its queue is declared by the relay and deleted afterwards) and the
# queue reader of the relay's own tests; the fixture is autouse once imported.
from tests.integration.shared.test_relay_and_consumer import (  # noqa: F401
    PROBE,
    _drain_queue,
    _probe_component,
)


@pytest.fixture
def store(postgres_url: str, amqp_url: str) -> Engine:
    return engine_for(postgres_url)


def _probe(n: int) -> NewEvent:
    return NewEvent("probe.happened", {"n": n})


def _published_ids(amqp_url: str, count: int) -> list[str]:
    return [message["body"]["id"] for message in _drain_queue(PROBE, amqp_url, count, timeout=60)]


def test_an_event_waits_for_the_older_transaction_that_may_precede_it(store: Engine, amqp_url: str) -> None:
    relay = Relay(store, batch_size=10)
    older = store.connect()
    try:
        transaction = older.begin()
        (first,) = eventstore.append(older, "probe-a", [_probe(1)], expected_version=0)
        with store.begin() as conn:
            (second,) = eventstore.append(conn, "probe-b", [_probe(2)], expected_version=0)
        # Committed, but an older transaction is still running: nothing may go out yet,
        # or the older one's event would be published after it, or never.
        assert relay.run_once() == 0
        transaction.commit()
    finally:
        older.close()
    relay.drain()
    assert _published_ids(amqp_url, 2) == [str(first.id), str(second.id)]


WRITERS = 4
TRANSACTIONS = 150


def test_the_relay_publishes_each_committed_event_once_in_commit_order(store: Engine, amqp_url: str) -> None:
    """Writers race on shared streams, hold commits open, roll some back; the relay runs
    all along. What comes out is the feed as it stands at rest, each stream in order."""
    committed: set[uuid.UUID] = set()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        try:
            for t in range(TRANSACTIONS):
                batch = [_probe(t) for _ in range(rng.randint(1, 4))]
                stream = f"probe-shared{rng.randrange(3)}" if rng.random() < 0.3 else f"probe-{n}"
                try:
                    with store.begin() as conn:
                        eventstore.append(conn, stream, batch)
                        if rng.random() < 0.05:
                            time.sleep(rng.random() / 20)
                        if rng.random() < 0.1:
                            raise _RolledBack()
                except (_RolledBack, eventstore.ConcurrencyError):
                    continue
                with lock:
                    committed.update(e.id for e in batch)
        except BaseException as error:
            errors.append(error)

    relay = Relay(store, batch_size=50, poll_interval_s=0.01)
    stop = threading.Event()
    running = threading.Thread(target=relay.run, args=(stop,))
    running.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    try:
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
    finally:
        stop.set()
        running.join(30)
    assert not errors, errors
    relay.drain()  # what the running relay had not published yet
    published = _published_ids(amqp_url, len(committed))
    assert len(published) == len(set(published)) == len(committed)
    with read(store) as conn:
        at_rest = eventstore.read_all(conn, limit=len(committed) + 1)
    assert published == [str(e.id) for e in at_rest]
    assert {e.id for e in at_rest} == committed
    versions: dict[str, list[int]] = {}
    for event in at_rest:
        versions.setdefault(event.stream_id, []).append(event.stream_version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())


class _RolledBack(Exception):
    pass
