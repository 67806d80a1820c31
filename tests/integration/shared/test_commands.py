"""The command pipeline (shared.commands) against PostgreSQL and SQLite: project then append
in one transaction, decide again after a lost race, 412 for If-Match, Busy when contention
never ends, nothing half-written either way."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, insert, select

from shared import eventstore
from shared.commands import Context, Pipeline, RetryPolicy, UnitOfWork
from shared.db import read
from shared.errors import Busy, PreconditionFailed, require_version
from shared.events import NewEvent, RecordedEvent

_metadata = MetaData()
counters = Table(
    "test_counters",
    _metadata,
    Column("stream_id", String(100), primary_key=True),
    Column("count", Integer, nullable=False),
)
CONTEXT = Context(tenant_id="t1", actor="test", correlation_id="c-1")


def _project(conn: Connection, events: Sequence[RecordedEvent]) -> None:
    for event in events:
        updated = conn.execute(
            counters.update().where(counters.c.stream_id == event.stream_id).values(count=event.stream_version)
        ).rowcount
        if not updated:
            conn.execute(insert(counters).values(stream_id=event.stream_id, count=event.stream_version))


@pytest.fixture
def pipeline(engine) -> Pipeline:  # type: ignore[no-untyped-def]
    _metadata.create_all(engine)
    return Pipeline(projector=_project)


def _increment(uow: UnitOfWork, stream_id: str = "counter-1") -> int:
    version = eventstore.stream_version(uow.conn, stream_id)
    uow.record(stream_id, [NewEvent("counter.incremented", {"to": version + 1})], expected_version=version)
    return version + 1


def _count(engine, stream_id: str = "counter-1") -> int | None:  # type: ignore[no-untyped-def]
    with read(engine) as conn:
        return conn.execute(select(counters.c.count).where(counters.c.stream_id == stream_id)).scalar()


def test_projection_and_append_commit_together_with_the_context_as_metadata(engine, pipeline: Pipeline) -> None:
    assert pipeline.run(engine, CONTEXT, _increment) == 1
    assert pipeline.run(engine, CONTEXT, _increment) == 2
    with read(engine) as conn:
        stream = eventstore.read_stream(conn, "counter-1")
    assert [e.data["to"] for e in stream] == [1, 2]
    assert {(e.tenant_id, e.actor, e.correlation_id) for e in stream} == {("t1", "test", "c-1")}
    assert _count(engine) == 2


def test_a_domain_error_writes_nothing(engine, pipeline: Pipeline) -> None:
    def fails(uow: UnitOfWork) -> None:
        _increment(uow)
        require_version(7, 1)

    with pytest.raises(PreconditionFailed):
        pipeline.run(engine, CONTEXT, fails)
    with read(engine) as conn:
        assert eventstore.read_stream(conn, "counter-1") == []
    assert _count(engine) is None


def test_concurrent_commands_are_decided_again_and_lose_nothing(engine, pipeline: Pipeline) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer() -> None:
        barrier.wait()
        try:
            for _ in range(5):
                pipeline.run(engine, CONTEXT, _increment)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with read(engine) as conn:
        assert [e.data["to"] for e in eventstore.read_stream(conn, "counter-1")] == list(range(1, 41))
    assert _count(engine) == 40


def test_if_match_turns_a_lost_race_into_precondition_failed(engine, pipeline: Pipeline) -> None:
    pipeline.run(engine, CONTEXT, _increment)

    def stale(uow: UnitOfWork) -> None:
        # Decided on version 1, but another writer appends first, inside our attempt.
        with engine.begin() as other:
            eventstore.append(other, "counter-1", [NewEvent("counter.incremented", {"to": 2})], expected_version=1)
        uow.record("counter-1", [NewEvent("counter.incremented", {"to": 2})], expected_version=1)

    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite's single writer lock makes the nested writer wait for us: no race to lose")
    with pytest.raises(PreconditionFailed) as raised:
        pipeline.run(engine, CONTEXT, stale, if_match=1)
    assert raised.value.current_version == 2


def test_contention_that_never_ends_is_busy_not_a_crash(engine) -> None:
    _metadata.create_all(engine)
    attempts: list[int] = []

    def always_stale(uow: UnitOfWork) -> None:
        attempts.append(1)
        uow.record("counter-2", [NewEvent("counter.incremented", {})], expected_version=99)

    pipeline = Pipeline(projector=_project, retry=RetryPolicy(attempts=3, base_delay_s=0.001))
    with pytest.raises(Busy):
        pipeline.run(engine, CONTEXT, always_stale)
    assert len(attempts) == 3
    assert _count(engine, "counter-2") is None


def test_a_read_model_row_that_already_exists_is_a_lost_race_and_rolls_back_the_append(engine) -> None:
    """A projection failing on a key (a concurrent command inserted the same row first) is
    reported like a lost append race: the whole attempt, append included, is rolled back
    and the command is decided again."""
    _metadata.create_all(engine)
    calls: list[int] = []

    def collides_once(conn: Connection, events: Sequence[RecordedEvent]) -> None:
        calls.append(1)
        if len(calls) == 1:
            conn.execute(insert(counters).values(stream_id="twice", count=1))
            conn.execute(insert(counters).values(stream_id="twice", count=1))
        _project(conn, events)

    assert Pipeline(projector=collides_once).run(engine, CONTEXT, _increment) == 1
    assert len(calls) == 2
    with read(engine) as conn:
        assert [e.stream_version for e in eventstore.read_stream(conn, "counter-1")] == [1]
    assert _count(engine) == 1
    assert _count(engine, "twice") is None
