"""The event store's contract, proven against PostgreSQL and SQLite by the same tests."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared import eventstore
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent


def _event(kind: str = "thing.happened", **data: object) -> NewEvent:
    return NewEvent(kind, dict(data))


def test_append_assigns_versions_positions_and_metadata(engine) -> None:
    meta = Metadata(tenant_id="t1", correlation_id="c1", causation_id="x1", actor="key:1")
    with engine.begin() as conn:
        recorded = eventstore.append(conn, "thing-1", [_event(n=1), _event(n=2)], expected_version=0, metadata=meta)
    assert [e.stream_version for e in recorded] == [1, 2]
    assert recorded[0].position < recorded[1].position
    with read(engine) as conn:
        stream = eventstore.read_stream(conn, "thing-1")
    assert stream == recorded
    assert stream[0].tenant_id == "t1" and stream[0].correlation_id == "c1"
    assert stream[0].actor == "key:1" and stream[0].category == "thing"
    assert stream[1].data == {"n": 2}


def test_wrong_expected_version_raises_and_writes_nothing(engine) -> None:
    with engine.begin() as conn:
        eventstore.append(conn, "thing-1", [_event()], expected_version=0)
    with pytest.raises(eventstore.ConcurrencyError) as raised:
        with engine.begin() as conn:
            eventstore.append(conn, "thing-1", [_event(), _event()], expected_version=0)
    assert raised.value.actual == 1 and raised.value.expected == 0
    with read(engine) as conn:
        assert eventstore.stream_version(conn, "thing-1") == 1
        assert eventstore.head_position(conn) == 1


def test_batch_append_is_all_or_nothing(engine) -> None:
    """An error after a batch append in the same transaction leaves no trace of it."""
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            eventstore.append(conn, "thing-1", [_event(n=i) for i in range(50)], expected_version=0)
            raise RuntimeError("command failed after appending")
    with read(engine) as conn:
        assert eventstore.read_stream(conn, "thing-1") == []


@pytest.mark.parametrize("statement", ["UPDATE events SET type = 'rewritten'", "DELETE FROM events"])
def test_the_database_refuses_to_rewrite_history(engine, statement: str) -> None:
    with engine.begin() as conn:
        eventstore.append(conn, "thing-1", [_event()], expected_version=0)
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text(statement))
    with read(engine) as conn:
        assert eventstore.read_stream(conn, "thing-1")[0].type == "thing.happened"


def test_read_stream_from_version_and_read_all_in_batches(engine) -> None:
    with engine.begin() as conn:
        for stream in ("a-1", "b-1", "a-2"):
            eventstore.append(conn, stream, [_event(s=stream, n=i) for i in range(3)])
    with read(engine) as conn:
        assert [e.stream_version for e in eventstore.read_stream(conn, "a-1", from_version=2)] == [2, 3]
        first = eventstore.read_all(conn, 0, limit=4)
        rest = eventstore.read_all(conn, first[-1].position, limit=100)
        only_a = eventstore.read_all(conn, 0, categories=["a"])
    assert len(first) == 4 and len(rest) == 5
    assert [e.position for e in first + rest] == sorted(e.position for e in first + rest)
    assert {e.stream_id for e in only_a} == {"a-1", "a-2"}
    assert [e.position for e in eventstore.iter_all(engine, 0, batch_size=2)] == [e.position for e in first + rest]


def test_concurrent_writers_on_one_stream_never_lose_or_duplicate(engine) -> None:
    """Writers race on one stream with optimistic concurrency; retries land every event."""
    def writer(n: int) -> None:
        for i in range(20):
            while True:
                try:
                    with engine.begin() as conn:
                        version = eventstore.stream_version(conn, "race-1")
                        eventstore.append(conn, "race-1", [_event(w=n, i=i)], expected_version=version)
                    break
                except eventstore.ConcurrencyError:
                    continue

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with read(engine) as conn:
        stream = eventstore.read_stream(conn, "race-1")
    assert [e.stream_version for e in stream] == list(range(1, 81))
    assert sorted((e.data["w"], e.data["i"]) for e in stream) == [(w, i) for w in range(4) for i in range(20)]


WRITERS = 4
TRANSACTIONS_PER_WRITER = 1500  # with batches of 1-10 events: ~33,000 events in all


def test_tailing_never_skips_an_event_under_concurrent_writers(database_url: str) -> None:
    """Several writers commit out of order on purpose; one tailer must see every event once.

    Writers hold their transaction open for a random moment after appending, which is
    exactly when a sequence-based log lets a later position become visible before an
    earlier one. The store's append lock must make that impossible.
    """
    engine = engine_for(database_url)
    expected: set[uuid.UUID] = set()
    expected_lock = threading.Lock()
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        try:
            for t in range(TRANSACTIONS_PER_WRITER):
                batch = [_event(w=n, t=t) for _ in range(rng.randint(1, 10))]
                with engine.begin() as conn:
                    eventstore.append(conn, f"tail-{n}-{t % 50}", batch)
                    if rng.random() < 0.02:
                        time.sleep(rng.random() / 100)
                with expected_lock:
                    expected.update(e.id for e in batch)
        except BaseException as error:
            errors.append(error)

    seen: list[uuid.UUID] = []
    positions: list[int] = []

    def tailer() -> None:
        position = 0
        while True:
            finished = writers_done.is_set()
            with read(engine) as conn:
                batch = eventstore.read_all(conn, position, limit=1000)
            for event in batch:
                seen.append(event.id)
                positions.append(event.position)
            if batch:
                position = batch[-1].position
            elif finished:
                return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    tail = threading.Thread(target=tailer)
    tail.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writers_done.set()
    tail.join(timeout=120)
    assert not errors, errors
    assert len(expected) > 20_000
    assert len(seen) == len(set(seen)), "an event was seen twice"
    assert set(seen) == expected, f"{len(expected - set(seen))} events skipped by the tailer"
    assert positions == sorted(positions)
