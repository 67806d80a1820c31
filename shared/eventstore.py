"""The append-only event store: the source of truth of every service.

One code path for PostgreSQL and SQLite. Appends happen inside the caller's transaction,
so a command's events and its inline read-model changes commit together or not at all.

Tailing by position never skips: on PostgreSQL every append first takes one transaction-
scoped advisory lock, so positions become visible in the order they were handed out (a
reader can never see position N+1 while N is still uncommitted). SQLite gets the same
guarantee from its single writer lock, taken at BEGIN IMMEDIATE (see shared.db).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from shared.db import read
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.schema import checkpoints, events

# Class of the advisory lock serialising appends on PostgreSQL; the second key is the
# schema, so stores in different schemas of one database (tests, benchmarks, a deployment
# with a schema per service) do not queue behind each other.
APPEND_LOCK_CLASS = 0x6E6F63  # "noc"

ANY_VERSION = None


class ConcurrencyError(Exception):
    """The stream is not at the version the command was decided on."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id} is at version {actual}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


def stream_category(stream_id: str) -> str:
    return stream_id.split("-", 1)[0]


def utcnow() -> datetime:
    return datetime.now(UTC)


def lock_appends(conn: Connection) -> None:
    """Hold the store's append lock until `conn`'s transaction ends.

    On PostgreSQL a transaction-scoped advisory lock; SQLite's write transaction (BEGIN
    IMMEDIATE, see shared.db) already excludes every other writer.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:class, hashtext(current_schema()))"),
            {"class": APPEND_LOCK_CLASS},
        )


def stream_version(conn: Connection, stream_id: str) -> int:
    """Current version of a stream: 0 when it has no events."""
    value = conn.execute(
        select(func.max(events.c.stream_version)).where(events.c.stream_id == stream_id)
    ).scalar()
    return int(value or 0)


def append(
    conn: Connection,
    stream_id: str,
    new_events: Sequence[NewEvent],
    *,
    expected_version: int | None = ANY_VERSION,
    metadata: Metadata = Metadata(),
    now: datetime | None = None,
) -> list[RecordedEvent]:
    """Append events to one stream within the caller's transaction.

    `expected_version` is the version the command saw (0 for a new stream); a mismatch
    raises ConcurrencyError before anything is written. `None` appends at the end whatever
    the version is.
    """
    if not new_events:
        return []
    lock_appends(conn)
    if conn.dialect.name == "postgresql":
        return _append_postgresql(conn, stream_id, new_events, expected_version, metadata, now or utcnow())
    current = stream_version(conn, stream_id)
    if expected_version is not None and current != expected_version:
        raise ConcurrencyError(stream_id, expected_version, current)
    recorded_at = now or utcnow()
    category = stream_category(stream_id)
    rows = [
        {
            "id": event.id,
            "stream_id": stream_id,
            "stream_version": current + offset,
            "category": category,
            "type": event.type,
            "schema_version": event.schema_version,
            "data": event.data,
            "tenant_id": metadata.tenant_id,
            "correlation_id": metadata.correlation_id,
            "causation_id": metadata.causation_id,
            "actor": metadata.actor,
            "occurred_at": event.occurred_at or recorded_at,
            "recorded_at": recorded_at,
        }
        for offset, event in enumerate(new_events, start=1)
    ]
    try:
        positions = conn.execute(
            insert(events).returning(events.c.position, sort_by_parameter_order=True), rows
        ).scalars().all()
    except IntegrityError as error:
        # Only reachable without the lock (a writer that bypassed it): still no partial write.
        raise ConcurrencyError(stream_id, current, stream_version(conn, stream_id)) from error
    return [_recorded(row, position) for row, position in zip(rows, positions, strict=True)]


def append_streams(
    conn: Connection,
    appends: Sequence[tuple[str, Sequence[NewEvent], int | None]],
    *,
    metadata: Metadata = Metadata(),
    now: datetime | None = None,
) -> list[RecordedEvent]:
    """Append to several streams in the caller's transaction, all or nothing: each
    ``(stream_id, events, expected_version)`` as `append` would."""
    recorded: list[RecordedEvent] = []
    for stream_id, new_events, expected_version in appends:
        recorded.extend(
            append(conn, stream_id, new_events, expected_version=expected_version, metadata=metadata, now=now)
        )
    return recorded


def read_stream(conn: Connection, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
    """One stream's events, oldest first."""
    query = (
        select(*_COLUMNS)
        .where(events.c.stream_id == stream_id, events.c.stream_version >= from_version)
        .order_by(events.c.stream_version)
    )
    return _recorded_rows(conn, conn.execute(query))


def read_all(
    conn: Connection,
    after_position: int = 0,
    *,
    limit: int = 1000,
    categories: Iterable[str] | None = None,
    types: Iterable[str] | None = None,
) -> list[RecordedEvent]:
    """The log after `after_position`, in position order, at most `limit` events."""
    query = select(*_COLUMNS).where(events.c.position > after_position)
    if categories is not None:
        query = query.where(events.c.category.in_(list(categories)))
    if types is not None:
        query = query.where(events.c.type.in_(list(types)))
    query = query.order_by(events.c.position).limit(limit)
    return _recorded_rows(conn, conn.execute(query))


def iter_all(
    engine: Engine,
    after_position: int = 0,
    *,
    batch_size: int = 5000,
    categories: Iterable[str] | None = None,
    types: Iterable[str] | None = None,
) -> Iterator[RecordedEvent]:
    """The whole log from `after_position`, read in batches (one short transaction each)."""
    categories = list(categories) if categories is not None else None
    types = list(types) if types is not None else None
    position = after_position
    while True:
        with read(engine) as conn:
            batch = read_all(conn, position, limit=batch_size, categories=categories, types=types)
        if not batch:
            return
        yield from batch
        position = batch[-1].position


def head_position(conn: Connection) -> int:
    return int(conn.execute(select(func.max(events.c.position))).scalar() or 0)


def get_event(conn: Connection, event_id: uuid.UUID) -> RecordedEvent | None:
    rows = _recorded_rows(conn, conn.execute(select(*_COLUMNS).where(events.c.id == event_id)))
    return rows[0] if rows else None


# RecordedEvent's fields in declaration order: a row selected this way builds the event
# positionally, without a mapping lookup per field.
_COLUMNS = tuple(
    events.c[name]
    for name in (
        "id", "type", "schema_version", "stream_id", "stream_version", "position", "data", "tenant_id",
        "correlation_id", "causation_id", "actor", "occurred_at", "recorded_at",
    )
)


def _recorded_rows(conn: Connection, result: Any) -> list[RecordedEvent]:
    """RecordedEvents of rows selected with `_COLUMNS`, in the result's order."""
    if conn.dialect.name != "sqlite":
        # psycopg returns timestamptz as aware datetimes already.
        return [RecordedEvent(*row) for row in result]
    return [
        RecordedEvent(*row[:11], _aware(row[11]), _aware(row[12]))  # type: ignore[call-arg]
        for row in result
    ]


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def to_recorded(row) -> RecordedEvent:  # type: ignore[no-untyped-def]
    return RecordedEvent(
        id=row["id"],
        type=row["type"],
        schema_version=row["schema_version"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        position=row["position"],
        data=row["data"],
        tenant_id=row["tenant_id"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        actor=row["actor"],
        occurred_at=_aware(row["occurred_at"]),
        recorded_at=_aware(row["recorded_at"]),
    )


def _recorded(row: dict, position: int) -> RecordedEvent:  # type: ignore[type-arg]
    return to_recorded({**row, "position": position})


# PostgreSQL's append: one fixed statement whatever the number of events (arrays, not a
# VALUES list of n x 13 placeholders that psycopg would send and the server parse anew for
# every size), which also reads the stream's version, so an append costs two round trips
# after BEGIN: the lock, then this. It runs after the lock statement, so its snapshot sees
# every append committed before ours. The version check is the WHERE: a mismatch inserts
# nothing (and is then reported with the actual version). ORDER BY ord makes the sequence
# hand out positions in stream-version order; RETURNING gives the version of each row so
# positions are matched exactly, whatever order the rows come back in.
_APPEND_POSTGRESQL = """
WITH head AS (
    SELECT coalesce(max(stream_version), 0) AS version FROM events WHERE stream_id = %(stream_id)s
)
INSERT INTO events (id, stream_id, stream_version, category, type, schema_version, data, tenant_id,
                    correlation_id, causation_id, actor, occurred_at, recorded_at)
SELECT e.id, %(stream_id)s, head.version + e.ord, %(category)s, e.type, e.schema_version, e.data,
       %(tenant_id)s, %(correlation_id)s, %(causation_id)s, %(actor)s, e.occurred_at, %(recorded_at)s
FROM head, unnest(%(ids)s::uuid[], %(types)s::text[], %(schema_versions)s::int[], %(data)s::text[]::jsonb[],
                  %(occurred_at)s::timestamptz[]) WITH ORDINALITY AS e(id, type, schema_version, data, occurred_at, ord)
WHERE %(expected)s::int IS NULL OR head.version = %(expected)s::int
ORDER BY e.ord
RETURNING stream_version, position
"""


def _append_postgresql(
    conn: Connection,
    stream_id: str,
    new_events: Sequence[NewEvent],
    expected_version: int | None,
    metadata: Metadata,
    recorded_at: datetime,
) -> list[RecordedEvent]:
    category = stream_category(stream_id)
    occurred = [event.occurred_at or recorded_at for event in new_events]
    parameters: dict[str, Any] = {
        "stream_id": stream_id,
        "category": category,
        "tenant_id": metadata.tenant_id,
        "correlation_id": metadata.correlation_id,
        "causation_id": metadata.causation_id,
        "actor": metadata.actor,
        "recorded_at": recorded_at,
        "expected": expected_version,
        "ids": [event.id for event in new_events],
        "types": [event.type for event in new_events],
        "schema_versions": [event.schema_version for event in new_events],
        # The serialiser SQLAlchemy's JSON type uses (the engine sets none of its own).
        "data": [json.dumps(event.data) for event in new_events],
        "occurred_at": occurred,
    }
    # An IntegrityError (a writer that bypassed the lock, or an event id used twice) propagates
    # as it is: PostgreSQL has aborted the transaction, so the version cannot be read for a
    # ConcurrencyError (the previous code's attempt to failed with InFailedSqlTransaction).
    rows = conn.exec_driver_sql(_APPEND_POSTGRESQL, parameters).all()
    if not rows:
        # Nothing written: only the version check refuses every row.
        assert expected_version is not None
        raise ConcurrencyError(stream_id, expected_version, stream_version(conn, stream_id))
    positions = dict(rows)
    first = min(positions)
    return [
        RecordedEvent(
            event.id, event.type, event.schema_version, stream_id, first + offset, positions[first + offset],
            event.data, metadata.tenant_id, metadata.correlation_id, metadata.causation_id, metadata.actor,
            occurred_at, recorded_at,
        )
        for offset, (event, occurred_at) in enumerate(zip(new_events, occurred, strict=True))
    ]


@dataclass(frozen=True)
class Checkpoint:
    """Named position of a tailing reader, stored in the same database as what it writes."""

    name: str

    def get(self, conn: Connection) -> int:
        value = conn.execute(
            select(checkpoints.c.position).where(checkpoints.c.name == self.name)
        ).scalar()
        return int(value or 0)

    def set(self, conn: Connection, position: int) -> None:
        now = utcnow()
        updated = conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == self.name)
            .values(position=position, updated_at=now)
        ).rowcount
        if not updated:
            conn.execute(insert(checkpoints).values(name=self.name, position=position, updated_at=now))
