"""The relay's in-memory checkpoint: one read of the log per batch, the checkpoint persisted
after each confirmed batch, re-read whenever this copy may have lost track (a new term of
leadership, a failed write). PostgreSQL store, RabbitMQ with publisher confirms."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from shared import eventstore, metrics
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.relay import Relay
from shared.schema import checkpoints
from tests.support.statements import Statements


@pytest.fixture
def store(postgres_url: str, amqp_url: str) -> Engine:
    return engine_for(postgres_url)


def _append(engine: Engine, count: int) -> list[RecordedEvent]:
    """Append `count` events, one transaction each, and wait until the relay can read them
    (settled: every older transaction on the server has ended)."""
    out: list[RecordedEvent] = []
    for i in range(count):
        with engine.begin() as conn:
            out += eventstore.append(
                conn, f"relaytest-{i % 3}", [NewEvent("relaytest.happened", {"n": i})],
                metadata=Metadata(tenant_id="t1"),
            )
    eventstore.wait_settled(engine)
    return out


def _stored(engine: Engine, relay: Relay) -> int:
    with read(engine) as conn:
        return relay.checkpoint.get(conn)


def test_the_hot_loop_reads_the_log_once_and_persists_each_batch(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stored checkpoint and the head are read again once per lag interval: not within this test.
    monkeypatch.setattr("shared.relay.LAG_INTERVAL_S", 3600.0)
    relay = Relay(store, name="relay:test", categories=["relaytest"], batch_size=5)
    first = _append(store, 7)
    assert relay.run_once() == 5  # the first batch reads the stored checkpoint once
    assert _stored(store, relay) == first[4].position
    with Statements(store) as statements:
        assert relay.run_once() == 2
        assert _stored(store, relay) == first[-1].position  # persisted right after the confirms
        more = _append(store, 3)
        assert relay.run_once() == 3
        assert relay.run_once() == 0
        assert relay.run_once() == 0
    assert _stored(store, relay) == more[-1].position
    checkpoint_reads = [s for s in statements.matching("FROM checkpoints") if s.startswith("SELECT")]
    # Only the test's own read of the stored value; the relay kept its own in memory.
    assert len(checkpoint_reads) == 1, checkpoint_reads
    assert len(statements.matching("UPDATE checkpoints")) == 2  # one per published batch
    # The lag needs the head of the log: at most once a second, not once per loop.
    assert len(statements.matching("max(events.position)")) <= 1
    assert metrics.RELAY_LAG.labels("relay:test")._value.get() >= 0


def test_a_restarted_relay_resumes_from_the_persisted_checkpoint(store: Engine) -> None:
    events = _append(store, 6)
    assert Relay(store, name="relay:test", categories=["relaytest"], batch_size=4).run_once() == 4
    # A new process (or a standby taking over) starts from the store, not from anyone's memory.
    successor = Relay(store, name="relay:test", categories=["relaytest"], batch_size=4)
    assert successor.run_once() == 2
    assert _stored(store, successor) == events[-1].position


def test_a_new_term_of_leadership_reads_the_checkpoint_again(store: Engine) -> None:
    events = _append(store, 6)
    relay = Relay(store, name="relay:test", categories=["relaytest"], batch_size=2)
    assert relay._lead()
    assert relay.run_once() == 2
    relay._resign()
    # While this copy stood by, another one published up to the fifth event.
    with store.begin() as conn:
        relay.checkpoint.set(conn, events[4].position)
    assert relay._lead()
    assert relay.run_once() == 1  # only the sixth: nothing the other copy sent goes out again
    relay._resign()


def test_a_failed_checkpoint_write_is_not_trusted(store: Engine) -> None:
    events = _append(store, 4)
    relay = Relay(store, name="relay:test", categories=["relaytest"], batch_size=2)
    assert relay.run_once() == 2

    def refuse(_self: object, _conn: object, _position: int) -> None:
        raise RuntimeError("database went away")

    # Its own patch, undone alone: undoing the test's monkeypatch would also undo the
    # environment tests/conftest.py set (bus prefix, broker, var dir) for the rest of it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(eventstore.Checkpoint, "set", refuse)
        with pytest.raises(RuntimeError):
            relay.run_once()
    # The memory did not advance past what the store holds: the batch goes out again
    # (at least once), and nothing is skipped.
    assert relay.run_once() == 2
    assert _stored(store, relay) == events[-1].position
    with read(store) as conn:
        assert conn.execute(checkpoints.select()).all()


def test_moving_past_other_categories_is_stored_at_most_once_a_second(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relay of another category: every event here moves its feed without publishing.
    monkeypatch.setattr("shared.relay.LAG_INTERVAL_S", 3600.0)
    relay = Relay(store, name="relay:quiet", categories=["nothing-here"], batch_size=5)
    assert relay.run_once() == 0  # the first look stores where it starts
    with Statements(store) as statements:
        for _ in range(3):
            _append(store, 2)
            assert relay.run_once() == 0
    assert not statements.matching("UPDATE checkpoints")  # no write per poll
    # A successor that starts from the stored checkpoint skips those events again, publishing nothing.
    assert Relay(store, name="relay:quiet", categories=["nothing-here"]).run_once() == 0
    # Within the lag interval (here: forced) the move is stored, before the stored value is read back.
    head = _append(store, 1)[-1].position
    relay._lag_due = 0.0
    assert relay.run_once() == 0
    relay._lag_due = 0.0
    assert relay.run_once() == 0
    assert _stored(store, relay) == head


def test_a_relay_stopping_stores_where_it_got_to(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr("shared.relay.LAG_INTERVAL_S", 3600.0)
    relay = Relay(store, name="relay:quiet", categories=["nothing-here"], poll_interval_s=0.01)
    head = _append(store, 3)[-1].position
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,))
    thread.start()
    from shared.testing import wait_until

    wait_until(lambda: relay._cursor is not None and relay._cursor.position >= head, timeout=10,
               message="the relay to read past the events")
    stop.set()
    thread.join(timeout=10)
    assert _stored(store, relay) == head
