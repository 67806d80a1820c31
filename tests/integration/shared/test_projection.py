"""Projections: rebuilding from position 0 equals incremental processing, then goes on live."""

from __future__ import annotations

import random

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, insert, select, update

from shared import eventstore
from shared.db import read
from shared.events import NewEvent, RecordedEvent
from shared.projection import Projection, ProjectionRunner, rebuild

metadata = MetaData()
totals = Table(
    "test_stream_totals", metadata,
    Column("stream_id", String(200), primary_key=True),
    Column("total", Integer, nullable=False),
    Column("events", Integer, nullable=False),
)


def _apply(conn: Connection, event: RecordedEvent) -> None:
    row = conn.execute(select(totals).where(totals.c.stream_id == event.stream_id)).first()
    amount = event.data["amount"] if event.type == "money.added" else -event.data["amount"]
    if row is None:
        conn.execute(insert(totals).values(stream_id=event.stream_id, total=amount, events=1))
    else:
        conn.execute(update(totals).where(totals.c.stream_id == event.stream_id)
                     .values(total=row.total + amount, events=row.events + 1))


PROJECTION = Projection("test.totals", [totals], ("money.added", "money.taken"), _apply)


def _state(engine) -> list[tuple]:  # type: ignore[no-untyped-def, type-arg]
    with read(engine) as conn:
        return [tuple(r) for r in conn.execute(select(totals).order_by(totals.c.stream_id))]


def _append_random(engine, count: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    for _ in range(count):
        kind = rng.choice(["money.added", "money.taken", "noise.made"])
        with engine.begin() as conn:  # a transaction appends once
            eventstore.append(conn, f"wallet-{rng.randint(1, 20)}", [NewEvent(kind, {"amount": rng.randint(1, 9)})])


def test_rebuild_equals_incremental_and_then_continues_live(engine) -> None:
    metadata.create_all(engine)
    runner = ProjectionRunner(engine, PROJECTION, batch_size=37)
    _append_random(engine, 300, seed=1)
    runner.catch_up()
    _append_random(engine, 200, seed=2)
    runner.catch_up()
    incremental = _state(engine)
    assert incremental, "the projection folded nothing"

    report = rebuild(engine, PROJECTION, batch_size=50)
    assert _state(engine) == incremental
    assert report.events == sum(row[2] for row in incremental)

    # Live again after the rebuild: only new events are applied, none twice.
    _append_random(engine, 100, seed=3)
    runner.catch_up()
    after = _state(engine)
    rebuild(engine, PROJECTION)
    assert _state(engine) == after
    with read(engine) as conn:
        assert PROJECTION.checkpoint.get(conn) == eventstore.head_position(conn)
