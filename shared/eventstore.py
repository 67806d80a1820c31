"""The append-only event store: the source of truth of every service.

One code path for PostgreSQL and SQLite. Appends happen inside the caller's transaction,
so a command's events and its inline read-model changes commit together or not at all.

**Appends run in parallel.** On PostgreSQL an append is one statement and takes no
exclusive lock: concurrent appenders commit together (group commit). Optimistic
concurrency is the unique (stream, version) index: two transactions appending to one
stream at once cannot both commit, the second gets `ConcurrencyError`, with an expected
version or without (`ANY_VERSION` only means "whatever the version is now"). An append
takes the store's append lock SHARED (so appends never wait on each other); `lock_appends`
takes it EXCLUSIVE, for a rebuild's swap, and waits for the appends in flight to commit.

**The feed: the log in commit order.** Positions come from a sequence, so a transaction
that took position N can commit after another took and committed N+1: a reader that
followed positions would step over N for good. Each event therefore records the id of the
transaction that appended it (``xid``, an xid8), and readers that tail the log
(`read_all`, `read_feed`, `iter_all`, the relay, projection runners) read in the order
(xid, position), after a `LogCursor`, and only events whose transaction id is below the
xmin of the reading statement's own snapshot (``pg_snapshot_xmin(pg_current_snapshot())``):
every transaction below xmin has ended, committed or aborted, and no new transaction can
get an id below it, so the part of the feed a reader has passed never changes again. No
reliance on positions being contiguous: aborted appends leave holes, and nothing waits for
them. The price: an event becomes readable only once every transaction older than its
own has ended, so one long-running writing transaction anywhere on the server (a rebuild
in progress, a session left idle in a transaction) delays every tailer until it ends.

**Per stream, the feed is in version order**, because of the invariant every appending
transaction keeps: *the append is the transaction's first write* (reads and advisory locks
before it are fine). The transaction that appends version v+1 read version v committed,
so its append ran after v's transaction committed; it gets its transaction id at that
append, hence a larger id than v's. `append_streams` makes all of a transaction's appends
one statement for the same reason. The append statement checks the invariant on
PostgreSQL (`pg_current_xact_id_if_assigned()` must be NULL before it inserts) and raises
`AppendNotFirst`, a programming error.

Readers: `read_feed` (a batch and the `LogCursor` after it) and `read_all` (the batch
only; a bare position as cursor works: it means "after that event") read the settled feed;
``settled=False`` reads every committed event, for code holding `lock_appends` (no append
in flight), which must not wait on unrelated transactions. `wait_settled` waits until what
was committed before it is readable (tests, `Relay.drain`, `ProjectionRunner.catch_up`).
`feed_range`/`feed_order` give readers that select their own columns the same order.

SQLite: every write transaction holds the database's single writer lock from BEGIN
IMMEDIATE to COMMIT (see shared.db), so position order is commit order; ``xid`` is 0 and
the feed is read by position.

Restores: transaction ids are the cluster's. PITR and pg_upgrade keep its counter; a
logical dump restored into another cluster does not, and there new appends would get ids
below the restored ones (they would sort before the old log, and tailers past the old ids
would never read them). After such a restore, before any service starts, give the whole log
and every checkpoint one new id (the log keeps its position order, which is then its commit
order), with each checkpoint moved back to before the first event it had not read, as
migration 0003 does for a log written under the old append lock.
"""

from __future__ import annotations

import gc
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, and_, func, insert, literal, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from shared.db import driver_execute, read
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.schema import checkpoints, events

# Class of the store's append lock on PostgreSQL (shared by appends, exclusive for
# `lock_appends`); the second key is the schema, so stores in different schemas of one
# database (tests, benchmarks, a deployment with a schema per service) do not meet.
APPEND_LOCK_CLASS = 0x6E6F63  # "noc"

ANY_VERSION = None

# The unique index behind optimistic concurrency (migration 0001).
STREAM_VERSION_KEY = "events_stream_version_key"

# How often `wait_settled` looks again.
SETTLE_POLL_S = 0.01


class ConcurrencyError(Exception):
    """The stream is not at the version the command was decided on.

    `actual` is -1 when unknown: a concurrent append to the same stream was still in flight
    when this one ran, and PostgreSQL aborted this transaction when the other committed.
    """

    def __init__(self, stream_id: str, expected: int | None, actual: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual if actual >= 0 else 'unknown'}, expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class AppendNotFirst(RuntimeError):
    """A transaction wrote before it appended: a programming error (see the module's doc)."""

    def __init__(self, transaction_id: str) -> None:
        super().__init__(
            f"transaction {transaction_id} wrote before appending: the append must be a "
            "transaction's first write (use shared.commands.UnitOfWork, one append_streams call)"
        )


class LogCursor(NamedTuple):
    """A place in the feed: just after the event at `position`, appended by transaction `xid`.

    Ordered as the feed is: by xid, then position (SQLite: xid is always 0).
    """

    xid: int
    position: int


START = LogCursor(0, 0)


class Feed(NamedTuple):
    """A batch of the feed and the cursor to read the next one after."""

    events: list[RecordedEvent]
    cursor: LogCursor


def stream_category(stream_id: str) -> str:
    return stream_id.split("-", 1)[0]


def utcnow() -> datetime:
    return datetime.now(UTC)


def lock_appends(conn: Connection) -> None:
    """Hold the store's append lock exclusively until `conn`'s transaction ends.

    Waits for the appends in flight to commit and keeps new ones waiting (they take the
    lock shared, inside their statement). PostgreSQL: a transaction-scoped advisory lock.
    SQLite: the write transaction (BEGIN IMMEDIATE, see shared.db) already excludes every
    other writer.
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


# -- appending ---------------------------------------------------------------------------------


def append(
    conn: Connection,
    stream_id: str,
    new_events: Sequence[NewEvent],
    *,
    expected_version: int | None = ANY_VERSION,
    metadata: Metadata = Metadata(),
    now: datetime | None = None,
) -> list[RecordedEvent]:
    """Append events to one stream within the caller's transaction, as its first write.

    `expected_version` is the version the command saw (0 for a new stream); a mismatch
    raises ConcurrencyError and writes nothing. `None` appends at the end whatever the
    version is. A transaction appends once: several streams go in one `append_streams`.
    """
    return append_streams(conn, [(stream_id, new_events, expected_version)], metadata=metadata, now=now)


def append_streams(
    conn: Connection,
    appends: Sequence[tuple[str, Sequence[NewEvent], int | None]],
    *,
    metadata: Metadata = Metadata(),
    now: datetime | None = None,
) -> list[RecordedEvent]:
    """Append to several streams in the caller's transaction, all or nothing: each
    ``(stream_id, events, expected_version)`` as `append` would. On PostgreSQL one
    statement, whatever the number of streams and events; a version mismatch on any stream
    inserts nothing and raises ConcurrencyError naming the first such stream."""
    appends = [(stream_id, list(batch), expected) for stream_id, batch, expected in appends if batch]
    if not appends:
        return []
    if len({stream_id for stream_id, _, _ in appends}) != len(appends):
        raise ValueError("append_streams: a stream appears twice; give each stream its events once")
    recorded_at = now or utcnow()
    if conn.dialect.name == "postgresql":
        return _append_postgresql(conn, appends, metadata, recorded_at)
    return _append_sqlite(conn, appends, metadata, recorded_at)


def _append_sqlite(
    conn: Connection,
    appends: Sequence[tuple[str, list[NewEvent], int | None]],
    metadata: Metadata,
    recorded_at: datetime,
) -> list[RecordedEvent]:
    # This transaction holds the writer lock since BEGIN IMMEDIATE: the versions read here
    # cannot move before the insert. Every version is checked before anything is written.
    versions = [stream_version(conn, stream_id) for stream_id, _, _ in appends]
    for (stream_id, _, expected), current in zip(appends, versions, strict=True):
        if expected is not None and current != expected:
            raise ConcurrencyError(stream_id, expected, current)
    rows = [
        {
            "id": event.id,
            "stream_id": stream_id,
            "stream_version": current + offset,
            "category": stream_category(stream_id),
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
        for (stream_id, batch, _), current in zip(appends, versions, strict=True)
        for offset, event in enumerate(batch, start=1)
    ]
    positions = conn.execute(
        insert(events).returning(events.c.position, sort_by_parameter_order=True), rows
    ).scalars().all()
    return [to_recorded({**row, "position": position}) for row, position in zip(rows, positions, strict=True)]


# PostgreSQL's append: one fixed statement whatever the number of streams and events, so
# psycopg prepares it once per connection. The events travel as one JSON document (no
# per-element array adaptation in Python) and are unpacked by json_to_recordset.
# - `streams` reads each stream's head (one index probe each) in the statement's snapshot.
# - `guard`, evaluated before any row is inserted (the insert's rows join it): whether
#   this transaction already had an id (it wrote before: the invariant is broken), the
#   append lock taken shared (waits only for an exclusive holder: a rebuild's swap), and
#   whether every stream is at its expected version. Any no: nothing is inserted.
# - ORDER BY makes the sequence hand out positions in the order of the events given; the
#   row's xid is its column default, pg_current_xact_id(), taken by this very insert.
# - The one row returned says which case it was: the prior transaction id (NULL when the
#   append was the first write), the head of each stream, the positions given out (NULL
#   when nothing was inserted), so a refusal costs no second round trip.
_APPEND_POSTGRESQL = """
WITH streams AS MATERIALIZED (
    SELECT s.n, s.stream_id, s.category, s.expected,
           coalesce((SELECT max(h.stream_version) FROM events h WHERE h.stream_id = s.stream_id), 0) AS version
    FROM json_to_recordset(%(streams)s::json) AS s(n int, stream_id text, category text, expected int)
), guard AS MATERIALIZED (
    SELECT pg_current_xact_id_if_assigned() AS prior,
           pg_advisory_xact_lock_shared(%(lock_class)s, hashtext(current_schema())) AS shared_lock,
           bool_and(expected IS NULL OR version = expected) AS versions_match
    FROM streams
), appended AS (
    INSERT INTO events (id, stream_id, stream_version, category, type, schema_version, data, tenant_id,
                        correlation_id, causation_id, actor, occurred_at, recorded_at)
    SELECT e.id, s.stream_id, s.version + e.k, s.category, e.type, e.schema_version, e.data,
           %(tenant_id)s, %(correlation_id)s, %(causation_id)s, %(actor)s, e.occurred_at, %(recorded_at)s
    FROM json_to_recordset(%(events)s::json)
         AS e(o int, n int, k int, id uuid, type text, schema_version int, data jsonb, occurred_at timestamptz)
    JOIN streams s ON s.n = e.n
    CROSS JOIN guard
    WHERE guard.prior IS NULL AND guard.versions_match
    ORDER BY e.o
    RETURNING position
)
SELECT guard.prior::text,
       (SELECT array_agg(s.version ORDER BY s.n) FROM streams s),
       (SELECT array_agg(a.position ORDER BY a.position) FROM appended a)
FROM guard
"""


def _append_postgresql(
    conn: Connection,
    appends: Sequence[tuple[str, list[NewEvent], int | None]],
    metadata: Metadata,
    recorded_at: datetime,
) -> list[RecordedEvent]:
    stamp = recorded_at.isoformat()
    streams = []
    documents = []
    for n, (stream_id, batch, expected) in enumerate(appends):
        streams.append({"n": n, "stream_id": stream_id, "category": stream_category(stream_id), "expected": expected})
        for k, event in enumerate(batch, start=1):
            documents.append({
                "o": len(documents), "n": n, "k": k, "id": str(event.id), "type": event.type,
                "schema_version": event.schema_version, "data": event.data,
                "occurred_at": event.occurred_at.isoformat() if event.occurred_at else stamp,
            })
    parameters = {
        "streams": json.dumps(streams),
        "events": json.dumps(documents),
        "lock_class": APPEND_LOCK_CLASS,
        "tenant_id": metadata.tenant_id,
        "correlation_id": metadata.correlation_id,
        "causation_id": metadata.causation_id,
        "actor": metadata.actor,
        "recorded_at": recorded_at,
    }
    try:
        ((prior, versions, positions),) = driver_execute(conn, _APPEND_POSTGRESQL, parameters)
    except IntegrityError as error:
        # Another transaction appended to one of these streams while this statement ran and
        # committed first. The transaction is aborted: the version cannot be read back.
        raise _lost_race(error, appends) from error
    if prior is not None:
        raise AppendNotFirst(prior)
    if positions is None:
        for (stream_id, _, expected), actual in zip(appends, versions, strict=True):
            if expected is not None and actual != expected:
                raise ConcurrencyError(stream_id, expected, actual)
        raise AssertionError("the append inserted nothing, yet every version matched")
    recorded = []
    position = iter(positions)
    for (stream_id, batch, _), head in zip(appends, versions, strict=True):
        for offset, event in enumerate(batch, start=1):
            recorded.append(RecordedEvent(
                event.id, event.type, event.schema_version, stream_id, head + offset, next(position),
                event.data, metadata.tenant_id, metadata.correlation_id, metadata.causation_id,
                metadata.actor, event.occurred_at or recorded_at, recorded_at,
            ))
    return recorded


def _lost_race(error: IntegrityError, appends: Sequence[tuple[str, list[NewEvent], int | None]]) -> Exception:
    """The ConcurrencyError a unique violation on (stream, version) means; anything else (an
    event id used twice) stays what it is."""
    diag = getattr(error.orig, "diag", None)
    if getattr(diag, "constraint_name", None) != STREAM_VERSION_KEY:
        return error
    detail = getattr(diag, "message_detail", None) or ""  # Key (stream_id, stream_version)=(s, 3) ...
    stream_id, _, expected = next(
        (entry for entry in appends if f"=({entry[0]}, " in detail), appends[0]
    )
    return ConcurrencyError(stream_id, expected, -1)


# -- reading -----------------------------------------------------------------------------------


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
    after_position: int | LogCursor = 0,
    *,
    limit: int = 1000,
    categories: Iterable[str] | None = None,
    types: Iterable[str] | None = None,
    settled: bool = True,
) -> list[RecordedEvent]:
    """The feed after `after_position`, at most `limit` events: see `read_feed`.

    Paging with ``batch[-1].position`` as the next `after_position` never skips an event;
    `read_feed`'s cursor does the same without looking the position's transaction up and
    moves past events the filters leave out.
    """
    return _read(conn, after_position, limit, categories, types, settled)[0]


def read_feed(
    conn: Connection,
    after: int | LogCursor = START,
    *,
    limit: int = 1000,
    categories: Iterable[str] | None = None,
    types: Iterable[str] | None = None,
    settled: bool = True,
) -> Feed:
    """The log in commit order (xid, position) after `after`, at most `limit` events.

    `after`: a `LogCursor`, or a position, meaning just after the event at that position
    (0: from the start). `settled` (the default, for every reader that tails the log while
    others append): only events whose transaction id is below the xmin of this statement's
    snapshot, a part of the feed that can no longer change. ``settled=False``: every
    committed event, for readers holding `lock_appends` (no append in flight), which must
    not wait on unrelated transactions.

    The cursor returned follows the last event; when filters left events out and the batch
    is not full, it moves to the end of what was read, so the next call does not read the
    left-out events again.
    """
    batch, cursor = _read(conn, after, limit, categories, types, settled)
    if cursor is None:  # nothing after a bare position: its cursor is needed now
        cursor = _resolve(conn, after)
    return Feed(batch, cursor)


def _read(
    conn: Connection,
    after: int | LogCursor,
    limit: int,
    categories: Iterable[str] | None,
    types: Iterable[str] | None,
    settled: bool,
) -> tuple[list[RecordedEvent], LogCursor | None]:
    """A batch of the feed and the cursor after it; None: no event after `after`, a bare
    position (left for `read_feed` to resolve: `read_all` does not need it)."""
    categories = list(categories) if categories is not None else None
    types = list(types) if types is not None else None
    if conn.dialect.name == "postgresql":
        return _read_feed_postgresql(conn, after, limit, categories, types, settled)
    return _read_feed_sqlite(conn, after, limit, categories, types)


def iter_all(
    engine: Engine,
    after_position: int | LogCursor = 0,
    *,
    batch_size: int = 5000,
    categories: Iterable[str] | None = None,
    types: Iterable[str] | None = None,
) -> Iterator[RecordedEvent]:
    """The settled feed from `after_position` to its end, in batches (one short read
    transaction each)."""
    categories = list(categories) if categories is not None else None
    types = list(types) if types is not None else None
    cursor = after_position
    while True:
        with read(engine) as conn:
            feed = read_feed(conn, cursor, limit=batch_size, categories=categories, types=types)
        yield from feed.events
        if len(feed.events) < batch_size:
            return
        cursor = feed.cursor


def head_position(conn: Connection) -> int:
    """The highest position given out and committed (not the end of the feed: see `head`)."""
    return int(conn.execute(select(func.max(events.c.position))).scalar() or 0)


def head(conn: Connection, *, settled: bool = True) -> LogCursor:
    """The last event of the feed (of its settled part by default; see `read_feed`)."""
    if conn.dialect.name != "postgresql":
        return LogCursor(0, head_position(conn))
    gate = "WHERE xid < pg_snapshot_xmin(pg_current_snapshot())" if settled else ""
    row = conn.exec_driver_sql(
        f"SELECT xid::text AS xid_text, position FROM events {gate} "
        "ORDER BY events.xid DESC, events.position DESC LIMIT 1"
    ).first()
    return LogCursor(int(row[0]), row[1]) if row else START


def wait_settled(engine: Engine, timeout_s: float = 30.0) -> LogCursor:
    """Wait until every event committed before this call is settled (readable by tailing
    readers: see `read_feed`); returns the end of the feed then. For tests and tools that
    must see what was just committed; a tailer in production simply reads again later."""
    with read(engine) as conn:
        target = head(conn, settled=False)
    deadline = time.monotonic() + timeout_s
    while True:
        with read(engine) as conn:
            reached = head(conn)
        if reached >= target:
            return reached
        if time.monotonic() > deadline:
            raise TimeoutError(f"events up to {target} did not settle in {timeout_s}s")
        time.sleep(SETTLE_POLL_S)


def feed_range(conn: Connection, after: LogCursor, up_to: LogCursor | None = None) -> ColumnElement[bool]:
    """WHERE clause of the events after `after`, up to `up_to` included, for readers that
    select their own columns; pair it with `feed_order`. Take `up_to` from `head`: the range
    up to it is final."""
    if conn.dialect.name != "postgresql":
        clauses = [events.c.position > after.position]
        if up_to is not None:
            clauses.append(events.c.position <= up_to.position)
        return and_(*clauses)
    place = tuple_(events.c.xid, events.c.position)
    clauses = [place > tuple_(*_bound(after))]
    if up_to is not None:
        clauses.append(place <= tuple_(*_bound(up_to)))
    return and_(*clauses)


def feed_order(conn: Connection) -> tuple[Any, ...]:
    """ORDER BY of the feed: (xid, position); position alone on SQLite."""
    if conn.dialect.name != "postgresql":
        return (events.c.position,)
    return (events.c.xid, events.c.position)


def _bound(cursor: LogCursor) -> tuple[Any, Any]:
    return literal(cursor.xid, events.c.xid.type), literal(cursor.position, events.c.position.type)


def get_event(conn: Connection, event_id: uuid.UUID) -> RecordedEvent | None:
    rows = _recorded_rows(conn, conn.execute(select(*_COLUMNS).where(events.c.id == event_id)))
    return rows[0] if rows else None


# RecordedEvent's fields in declaration order: a row selected this way builds the event
# positionally, without a mapping lookup per field.
_FIELDS = (
    "id", "type", "schema_version", "stream_id", "stream_version", "position", "data", "tenant_id",
    "correlation_id", "causation_id", "actor", "occurred_at", "recorded_at",
)
_COLUMNS = tuple(events.c[name] for name in _FIELDS)


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


# The feed on PostgreSQL. `after` is (xid, position); given a bare position, its xid is
# looked up in the same statement (the event at that position, or the nearest before it).
# The settled gate is evaluated once, at the start of the index scan, from the statement's
# snapshot. With filters, a second branch returns the last event of the range read (its
# `id` is NULL), so the cursor can move past events the filters left out.
_AFTER = (
    "(xid, position) > (coalesce(%(after_xid)s::xid8, (SELECT p.xid FROM events p WHERE p.position <= %(after)s "
    "ORDER BY p.position DESC LIMIT 1), '0'), %(after)s)"
)
_SETTLED = "xid < pg_snapshot_xmin(pg_current_snapshot())"
_SELECT = (
    "SELECT id, type, schema_version, stream_id, stream_version, position, data::text, tenant_id, correlation_id, "
    "causation_id, actor, occurred_at, recorded_at, xid::text AS xid_text FROM events"
)
_LAST_READ = (
    "SELECT NULL::uuid, NULL, NULL::int, NULL, NULL::int, position, NULL::text, NULL, NULL, NULL, NULL, "
    "NULL::timestamptz, NULL::timestamptz, xid::text AS xid_text FROM events"
)


def _feed_sql(filters: tuple[str, ...], settled: bool) -> str:
    range_ = " AND ".join((_AFTER, _SETTLED) if settled else (_AFTER,))
    # ORDER BY the columns, qualified: the output column holding the xid as text is not
    # what orders the feed (text sorts "10" before "9").
    where = " AND ".join((range_, *filters))
    page = f"{_SELECT} WHERE {where} ORDER BY events.xid, events.position LIMIT %(limit)s"
    if not filters:
        return page
    last = f"{_LAST_READ} WHERE {range_} ORDER BY events.xid DESC, events.position DESC LIMIT 1"
    return f"({page}) UNION ALL ({last})"


_BY_CATEGORY = "category = ANY(%(categories)s)"
_BY_TYPE = "type = ANY(%(types)s)"
_FEED_SQL: dict[tuple[bool, bool, bool], str] = {
    (by_category, by_type, settled): _feed_sql(
        tuple(f for f, on in ((_BY_CATEGORY, by_category), (_BY_TYPE, by_type)) if on), settled
    )
    for by_category in (False, True)
    for by_type in (False, True)
    for settled in (False, True)
}


def _read_feed_postgresql(
    conn: Connection,
    after: int | LogCursor,
    limit: int,
    categories: list[str] | None,
    types: list[str] | None,
    settled: bool,
) -> tuple[list[RecordedEvent], LogCursor | None]:
    if isinstance(after, LogCursor):
        after_xid: str | None = str(after.xid)
        after_position = after.position
    else:
        after_xid, after_position = None, after
    sql = _FEED_SQL[(categories is not None, types is not None, settled)]
    with _collector_paused():
        rows = driver_execute(conn, sql, {
            "after_xid": after_xid, "after": after_position, "limit": limit,
            "categories": categories, "types": types,
        }, binary=True)
        last_read = None
        if categories is not None or types is not None:
            for index in range(len(rows) - 1, -1, -1):
                if rows[index][0] is None:
                    last_read = rows.pop(index)
                    break
        batch = _recorded(rows)
    if rows and (last_read is None or len(rows) == limit):
        cursor: LogCursor | None = LogCursor(int(rows[-1][13]), rows[-1][5])
    elif last_read is not None:
        cursor = LogCursor(int(last_read[13]), last_read[5])
    else:
        cursor = after if isinstance(after, LogCursor) else None
    return batch, cursor


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch is built.

    A batch of events is thousands of new, live container objects (each event's dict, its
    data); building it triggers collections that traverse them all again and again, for
    nothing: they are garbage to no one yet. That was a third of a 5,000-event page's
    time. Reference counting still frees everything as usual; the collector resumes after.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _resolve(conn: Connection, after: int | LogCursor) -> LogCursor:
    """The cursor of a bare position: just after the event there (or the nearest before)."""
    if isinstance(after, LogCursor):
        return after
    position = after
    if position <= 0:
        return START
    xid = conn.execute(
        select(events.c.xid).where(events.c.position <= position).order_by(events.c.position.desc()).limit(1)
    ).scalar()
    return LogCursor(xid or 0, position)


def _recorded(rows: Sequence[Any]) -> list[RecordedEvent]:
    """RecordedEvents of feed rows (the first 13 columns in `_FIELDS` order, data as text).

    The hot loop of a replay, so: the data is decoded here from text (psycopg's jsonb loader
    hands json.loads bytes, which then sniffs their encoding, and json.loads looks for
    whitespace around a document PostgreSQL never pads), and the events are built without
    the frozen dataclass's __init__ (13 object.__setattr__ calls): the instance gets its
    field dict whole, which is what that __init__ ends up with.
    """
    out = []
    new, set_dict, decode = RecordedEvent.__new__, object.__setattr__, _JSON.raw_decode
    for row in rows:
        event = new(RecordedEvent)
        set_dict(event, "__dict__", {
            "id": row[0], "type": row[1], "schema_version": row[2], "stream_id": row[3],
            "stream_version": row[4], "position": row[5], "data": decode(row[6])[0], "tenant_id": row[7],
            "correlation_id": row[8], "causation_id": row[9], "actor": row[10], "occurred_at": row[11],
            "recorded_at": row[12],
        })
        out.append(event)
    return out


_JSON = json.JSONDecoder()


def _read_feed_sqlite(
    conn: Connection,
    after: int | LogCursor,
    limit: int,
    categories: list[str] | None,
    types: list[str] | None,
) -> tuple[list[RecordedEvent], LogCursor | None]:
    # One writer at a time: every committed event is settled and position order is commit order.
    after_position = after.position if isinstance(after, LogCursor) else after
    query = select(*_COLUMNS).where(events.c.position > after_position)
    if categories is not None:
        query = query.where(events.c.category.in_(categories))
    if types is not None:
        query = query.where(events.c.type.in_(types))
    batch = _recorded_rows(conn, conn.execute(query.order_by(events.c.position).limit(limit)))
    if len(batch) == limit or (batch and categories is None and types is None):
        return batch, LogCursor(0, batch[-1].position)
    if categories is None and types is None:
        return batch, LogCursor(0, after_position)
    return batch, LogCursor(0, max(after_position, head_position(conn)))


@dataclass(frozen=True)
class Checkpoint:
    """Named place of a tailing reader in the feed, stored in the same database as what it
    writes: the position of the last event it read and that event's transaction id."""

    name: str

    def get(self, conn: Connection) -> int:
        """The position of the event read last (0: none yet)."""
        return self.cursor(conn).position

    def cursor(self, conn: Connection) -> LogCursor:
        row = conn.execute(
            select(checkpoints.c.xid, checkpoints.c.position).where(checkpoints.c.name == self.name)
        ).first()
        return LogCursor(int(row[0]), int(row[1])) if row else START

    def set(self, conn: Connection, at: int | LogCursor) -> None:
        """Move the checkpoint to a cursor, or to just after the event at a position (an
        operator's reset: its transaction id is looked up)."""
        now = utcnow()
        if isinstance(at, LogCursor):
            xid: Any = at.xid
            position = at.position
        else:
            position = at
            xid = func.coalesce(
                select(events.c.xid).where(events.c.position <= position)
                .order_by(events.c.position.desc()).limit(1).scalar_subquery(),
                _bound(START)[0],
            )
        updated = conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == self.name)
            .values(position=position, xid=xid, updated_at=now)
        ).rowcount
        if not updated:
            conn.execute(insert(checkpoints).values(name=self.name, position=position, xid=xid, updated_at=now))
