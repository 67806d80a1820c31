"""The event store's contract, proven against PostgreSQL and SQLite by the same tests."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from shared import eventstore, testing
from shared.db import engine_for, migrate, read
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.testing import wait_until


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
        eventstore.append_streams(conn, [(stream, [_event(s=stream, n=i) for i in range(3)], None)
                                         for stream in ("a-1", "b-1", "a-2")])
    eventstore.wait_settled(engine)
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
SHARED_STREAMS = 5


@dataclass
class Scenario:
    """How the writers of the never-skips test behave."""

    transactions: int
    abort_rate: float = 0.0  # transactions rolled back after appending
    hold_rate: float = 0.02  # transactions that stay open a while after appending
    hold_s: float = 0.01  # at most this long
    by_cursor: bool = False  # the tailer pages with read_feed's cursor, else by position (read_all)


SCENARIOS = {
    "commits": Scenario(TRANSACTIONS_PER_WRITER),
    "aborts": Scenario(500, abort_rate=0.15, by_cursor=True),
    "held-open": Scenario(500, hold_rate=0.02, hold_s=0.2, by_cursor=True),
}


class _Aborted(Exception):
    pass


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_tailing_never_skips_an_event_under_concurrent_writers(database_url: str, scenario: str) -> None:
    """Several writers commit out of order on purpose; one tailer must see every committed
    event exactly once, in the feed's order, and each stream's events in version order.

    Writers hold their transaction open for a random moment after appending, which is
    exactly when a sequence-based log lets a later position become visible before an
    earlier one; some roll back instead of committing (their positions are holes for good);
    a fifth of the transactions race on streams shared by all writers (ANY_VERSION, retried
    on ConcurrencyError). The tailer starts while they write and ends once it has read the
    last event of the feed as it stands when they are done.
    """
    plan = SCENARIOS[scenario]
    engine = engine_for(database_url)
    expected: set[uuid.UUID] = set()
    expected_lock = threading.Lock()
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def transaction(rng: random.Random, stream: str, batch: list[NewEvent]) -> bool:
        """Append `batch`; True when committed."""
        while True:
            try:
                with engine.begin() as conn:
                    eventstore.append(conn, stream, batch)
                    if rng.random() < plan.hold_rate:
                        time.sleep(rng.random() * plan.hold_s)
                    if rng.random() < plan.abort_rate:
                        raise _Aborted()
                return True
            except _Aborted:
                return False
            except eventstore.ConcurrencyError:
                continue  # a concurrent append to the shared stream won: append again

    def writer(n: int) -> None:
        rng = random.Random(n)
        try:
            for t in range(plan.transactions):
                batch = [_event(w=n, t=t) for _ in range(rng.randint(1, 10))]
                shared = rng.random() < 0.2
                stream = f"shared-{rng.randrange(SHARED_STREAMS)}" if shared else f"tail-{n}-{t % 50}"
                if transaction(rng, stream, batch):
                    with expected_lock:
                        expected.update(e.id for e in batch)
        except BaseException as error:
            errors.append(error)

    seen: list[RecordedEvent] = []

    def tailer() -> None:
        cursor: eventstore.LogCursor | int = eventstore.START if plan.by_cursor else 0
        target = None
        while True:
            if target is None and writers_done.is_set():
                with read(engine) as conn:
                    target = eventstore.head(conn, settled=False)
            with read(engine) as conn:
                if plan.by_cursor:
                    batch, cursor = eventstore.read_feed(conn, cursor, limit=1000)
                else:
                    batch = eventstore.read_all(conn, cursor, limit=1000)
                    cursor = batch[-1].position if batch else cursor
            seen.extend(batch)
            if target is not None and seen and seen[-1].position == target.position:
                return
            if target == eventstore.START:
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
    assert not tail.is_alive(), "the tailer did not reach the end of the feed"
    assert not errors, errors
    assert len(expected) > plan.transactions * WRITERS * 4
    ids = [e.id for e in seen]
    assert len(ids) == len(set(ids)), "an event was seen twice"
    assert set(ids) == expected, f"{len(expected - set(ids))} events skipped by the tailer"
    # In the feed's order: the whole feed read afterwards, at rest, is the same sequence.
    with read(engine) as conn:
        at_rest = eventstore.read_all(conn, 0, limit=len(ids) + 1)
    assert ids == [e.id for e in at_rest]
    versions: dict[str, list[int]] = {}
    for event in seen:
        versions.setdefault(event.stream_id, []).append(event.stream_version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values()), "a stream out of version order"
    assert len([s for s in versions if s.startswith("shared-")]) == SHARED_STREAMS


def test_append_streams_is_one_all_or_nothing_append(engine) -> None:
    with engine.begin() as conn:
        eventstore.append(conn, "b-1", [_event(n=0)], expected_version=0)
    with engine.begin() as conn:
        recorded = eventstore.append_streams(conn, [
            ("a-1", [_event(n=1), _event(n=2)], 0), ("b-1", [_event(n=3)], 1), ("c-1", [_event(n=4)], None),
        ])
    assert [(e.stream_id, e.stream_version) for e in recorded] == [("a-1", 1), ("a-1", 2), ("b-1", 2), ("c-1", 1)]
    assert [e.position for e in recorded] == sorted(e.position for e in recorded)
    with read(engine) as conn:
        assert eventstore.read_all(conn, recorded[0].position - 1, settled=False) == recorded
    # One stream off its expected version: none of them is written, and that one is named.
    with pytest.raises(eventstore.ConcurrencyError) as raised:
        with engine.begin() as conn:
            eventstore.append_streams(conn, [("a-1", [_event()], 2), ("b-1", [_event()], 1), ("d-1", [_event()], 0)])
    assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == ("b-1", 1, 2)
    with read(engine) as conn:
        assert eventstore.head_position(conn) == recorded[-1].position
    with pytest.raises(ValueError, match="twice"):
        with engine.begin() as conn:
            eventstore.append_streams(conn, [("a-1", [_event()], 2), ("a-1", [_event()], 3)])


@pytest.fixture
def postgres(postgres_url: str) -> Engine:
    return engine_for(postgres_url)


def test_a_transaction_that_wrote_before_appending_is_refused(postgres: Engine) -> None:
    """PostgreSQL checks the store's invariant inside the append statement."""
    with pytest.raises(eventstore.AppendNotFirst, match="first write"):
        with postgres.begin() as conn:
            eventstore.Checkpoint("reader").set(conn, 0)  # a write
            eventstore.append(conn, "thing-1", [_event()], expected_version=0)
    with pytest.raises(eventstore.AppendNotFirst):
        with postgres.begin() as conn:
            eventstore.append(conn, "thing-1", [_event()], expected_version=0)
            eventstore.append(conn, "thing-2", [_event()], expected_version=0)  # use append_streams
    with read(postgres) as conn:
        assert eventstore.head_position(conn) == 0
    # Reads and advisory locks before the append are fine.
    with postgres.begin() as conn:
        eventstore.read_stream(conn, "thing-1")
        conn.execute(text("SELECT pg_advisory_xact_lock(42)"))
        eventstore.append(conn, "thing-1", [_event()], expected_version=0)


def _backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _waits_on_a_lock(engine: Engine, pid: int) -> bool:
    with read(engine) as conn:
        return bool(conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"), {"pid": pid}
        ).scalar())


class _Appender(threading.Thread):
    """Runs `work` in a transaction of its own, in a thread; remembers its pid and outcome."""

    def __init__(self, engine: Engine, work: Callable[[Connection], object]) -> None:
        super().__init__(daemon=True)
        self.engine, self.work = engine, work
        self.pid: int | None = None
        self.result: object = None
        self.error: BaseException | None = None
        self.started_work = threading.Event()

    def run(self) -> None:
        try:
            with self.engine.begin() as conn:
                self.pid = _backend_pid(conn)
                self.started_work.set()
                self.result = self.work(conn)
        except BaseException as error:
            self.error = error
        finally:
            self.started_work.set()


def test_appends_do_not_wait_for_each_other_but_for_lock_appends(postgres: Engine) -> None:
    with postgres.begin() as first:
        eventstore.append(first, "a-1", [_event()], expected_version=0)
        other = _Appender(postgres, lambda conn: eventstore.append(conn, "b-1", [_event()], expected_version=0))
        other.start()
        other.join(timeout=30)  # while `first` is still open
        assert not other.is_alive() and other.error is None, other.error
    with postgres.begin() as swap:
        eventstore.lock_appends(swap)
        waiting = _Appender(postgres, lambda conn: eventstore.append(conn, "c-1", [_event()], expected_version=0))
        waiting.start()
        waiting.started_work.wait(10)
        wait_until(lambda: _waits_on_a_lock(postgres, waiting.pid), message="the append to wait for the swap")
        assert waiting.is_alive()
    waiting.join(timeout=30)
    assert not waiting.is_alive() and waiting.error is None, waiting.error


@pytest.mark.parametrize("expected_version", [0, None], ids=["expected-version", "any-version"])
def test_an_append_racing_one_in_flight_on_the_same_stream_loses(postgres: Engine, expected_version) -> None:
    """Two transactions append to one stream at once: the second waits for the first on
    the (stream, version) index and, when the first commits, fails with ConcurrencyError."""
    with postgres.begin() as first:
        eventstore.append(first, "race-1", [_event(n=1)], expected_version=0)
        second = _Appender(postgres, lambda conn: eventstore.append(
            conn, "race-1", [_event(n=2)], expected_version=expected_version))
        second.start()
        second.started_work.wait(10)
        wait_until(lambda: _waits_on_a_lock(postgres, second.pid), message="the second append to wait")
    second.join(timeout=30)
    assert isinstance(second.error, eventstore.ConcurrencyError), second.error
    assert (second.error.stream_id, second.error.expected, second.error.actual) == ("race-1", expected_version, -1)
    with read(postgres) as conn:
        assert [e.data for e in eventstore.read_stream(conn, "race-1")] == [{"n": 1}]


def _settled_ids(engine: Engine) -> list[uuid.UUID]:
    with read(engine) as conn:
        return [e.id for e in eventstore.read_all(conn)]


@pytest.mark.parametrize("older_commits", [True, False], ids=["older-commits", "older-aborts"])
def test_the_feed_holds_back_what_an_older_transaction_may_still_precede(postgres: Engine, older_commits) -> None:
    """A later transaction commits first: its event is not read while the older one runs,
    then comes after the older one's (or alone, once the older one rolled back)."""
    older = postgres.connect()
    try:
        older_tx = older.begin()
        (first,) = eventstore.append(older, "x-1", [_event()], expected_version=0)
        with postgres.begin() as conn:
            (second,) = eventstore.append(conn, "y-1", [_event()], expected_version=0)
        with read(postgres) as conn:
            assert eventstore.read_all(conn, settled=False) == [second]  # committed, visible...
        assert second.id not in _settled_ids(postgres)  # ... but not settled
        if older_commits:
            older_tx.commit()
        else:
            older_tx.rollback()
    finally:
        older.close()
    want = [first.id, second.id] if older_commits else [second.id]
    # Settled once every older transaction on the server has ended (not only ours).
    wait_until(lambda: _settled_ids(postgres) == want, message="the events to settle")


def test_a_filtered_read_moves_its_cursor_past_the_events_left_out(engine) -> None:
    with engine.begin() as conn:
        (wanted,) = eventstore.append(conn, "a-1", [_event()])
    for n in range(5):
        with engine.begin() as conn:
            eventstore.append(conn, f"b-{n}", [_event()])

    def read_a() -> eventstore.Feed:
        with read(engine) as conn:
            return eventstore.read_feed(conn, limit=10, categories=["a"])

    with read(engine) as conn:
        end = eventstore.head(conn, settled=False)
    feed = wait_until(lambda: (f := read_a()).cursor == end and f, message="the feed to settle")
    assert [e.id for e in feed.events] == [wanted.id]
    with read(engine) as conn:
        assert eventstore.read_feed(conn, feed.cursor, categories=["a"]) == ([], feed.cursor)


def test_a_checkpoint_set_by_position_continues_after_that_event(engine) -> None:
    with engine.begin() as conn:
        recorded = eventstore.append_streams(conn, [(f"a-{n}", [_event(n=n)], 0) for n in range(3)])
    with engine.begin() as conn:
        recorded += eventstore.append(conn, "a-9", [_event(n=9)])
    checkpoint = eventstore.Checkpoint("reader")
    with engine.begin() as conn:
        checkpoint.set(conn, recorded[1].position)  # as an operator resetting it would
    with read(engine) as conn:
        cursor = checkpoint.cursor(conn)
        assert checkpoint.get(conn) == recorded[1].position
        assert eventstore.read_feed(conn, cursor, settled=False).events == recorded[2:]


def test_checkpoints_written_before_the_transaction_order_migration_carry_on(
    postgres_database_url: str,
) -> None:
    """Migration 0003 on a store that was in use: old events keep their position order,
    old checkpoints go on from where they were, new events come after all old ones."""
    with testing.fresh_postgres_schema(postgres_database_url) as url:
        migrate(url, "0002_credentials")
        engine = engine_for(url)
        old = []
        for n in range(4):
            with engine.begin() as conn:
                old += eventstore.append(conn, f"old-{n % 2}", [_event(n=n)])
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO checkpoints (name, position, updated_at) VALUES "
                              "('relay', :p, now()), ('fresh', 0, now())"), {"p": old[1].position})
        migrate(url)
        with engine.begin() as conn:
            new = eventstore.append(conn, "old-0", [_event(n=4)])
        with read(engine) as conn:
            relay, fresh = eventstore.Checkpoint("relay").cursor(conn), eventstore.Checkpoint("fresh").cursor(conn)
            assert fresh == eventstore.START and relay.position == old[1].position
            assert eventstore.read_feed(conn, relay, settled=False).events == old[2:] + new
            assert eventstore.read_feed(conn, fresh, settled=False).events == old + new


def test_an_event_id_used_twice_is_refused_as_such(engine) -> None:
    event = _event()
    with engine.begin() as conn:
        eventstore.append(conn, "thing-1", [event], expected_version=0)
    with pytest.raises(IntegrityError) as raised:
        with engine.begin() as conn:
            eventstore.append(conn, "thing-2", [event], expected_version=0)
    assert not isinstance(raised.value, eventstore.ConcurrencyError)


def test_the_feed_is_read_along_its_index_without_sorting(postgres: Engine) -> None:
    """Tailers read a page at a time: the (xid, position) index must give the order (a sort
    would read, and here sort as text, everything after the cursor every time)."""
    for n in range(10):  # enough rows for a table scan not to be the cheaper way
        with postgres.begin() as conn:
            eventstore.append(conn, f"thing-{n}", [_event(n=i) for i in range(300)])
    with postgres.begin() as conn:
        conn.execute(text("ANALYZE events"))  # what autovacuum gives a table in use
    with read(postgres) as conn:
        driver = conn.connection.driver_connection
        for statement in eventstore._FEED_SQL.values():
            plan = "\n".join(row[0] for row in driver.execute("EXPLAIN " + statement, {
                "after_xid": "0", "after": 0, "limit": 5, "categories": ["thing"], "types": ["thing.happened"],
            }))
            assert "events_xid_position" in plan and "Sort" not in plan, plan
