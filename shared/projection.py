"""Projections: read models folded from the log, rebuildable from position 0 at any time.

A projection is a name, the tables it owns, the event types it reads and an `apply`
function. The same `apply` serves three paths, so they cannot drift apart:
- inline, in the transaction of the command that appended the events;
- live, fed by a bus consumer or by `ProjectionRunner` tailing the log;
- `rebuild`, replaying the whole log by position into emptied tables.

`rebuild` runs in one transaction holding the append lock: readers keep seeing the old
read model until the new one commits (PostgreSQL MVCC, SQLite WAL), and appends wait for
the swap, so no event can slip between the replay and the switch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Table

from shared.events import RecordedEvent
from shared.eventstore import Checkpoint, head_position, lock_appends, read_all


@dataclass(frozen=True)
class Projection:
    name: str
    tables: Sequence[Table]
    event_types: Sequence[str]
    apply: Callable[[Connection, RecordedEvent], None]
    # Called once after a rebuild's replay, e.g. to recompute derived figures in bulk.
    finish: Callable[[Connection], None] | None = field(default=None)

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(f"projection:{self.name}")


@dataclass(frozen=True)
class RebuildReport:
    projection: str
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def rebuild(engine: Engine, projection: Projection, *, batch_size: int = 5000) -> RebuildReport:
    """Empty the projection's tables and replay every relevant event, atomically."""
    started = time.perf_counter()
    count = 0
    with engine.begin() as conn:
        lock_appends(conn)
        # Children first, so foreign keys between the projection's own tables hold.
        for table in reversed(list(projection.tables)):
            conn.execute(table.delete())
        position = 0
        while True:
            batch = read_all(conn, position, limit=batch_size, types=projection.event_types)
            if not batch:
                break
            for event in batch:
                projection.apply(conn, event)
            count += len(batch)
            position = batch[-1].position
        if projection.finish is not None:
            projection.finish(conn)
        projection.checkpoint.set(conn, head_position(conn))
    return RebuildReport(projection.name, count, time.perf_counter() - started)


class ProjectionRunner:
    """Keeps a projection up to date by tailing the log after its checkpoint."""

    def __init__(self, engine: Engine, projection: Projection, *, batch_size: int = 1000,
                 poll_interval_s: float = 0.1) -> None:
        self.engine = engine
        self.projection = projection
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s

    def run_once(self) -> int:
        """Apply the next batch and move the checkpoint in the same transaction."""
        with self.engine.begin() as conn:
            after = self.projection.checkpoint.get(conn)
            batch = read_all(conn, after, limit=self.batch_size, types=self.projection.event_types)
            for event in batch:
                self.projection.apply(conn, event)
            if batch:
                self.projection.checkpoint.set(conn, batch[-1].position)
        return len(batch)

    def catch_up(self) -> int:
        total = 0
        while applied := self.run_once():
            total += applied
        return total

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.run_once() < self.batch_size:
                stop.wait(self.poll_interval_s)
