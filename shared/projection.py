"""Projections: read models folded from the log, rebuildable from its start at any time.

A projection is a name, the tables it owns, the event types it reads and an `apply`
function. The same `apply` serves three paths, so they cannot drift apart:
- inline, in the transaction of the command that appended the events;
- live, fed by a bus consumer or by `ProjectionRunner` tailing the feed (the log in commit
  order, see shared.eventstore);
- `rebuild`, replaying the whole log into emptied tables.

`rebuild` runs in one transaction holding the append lock exclusively: readers keep seeing
the old read model until the new one commits (PostgreSQL MVCC, SQLite WAL), appends in
flight commit before the replay starts and new ones wait for the swap, so no event can slip
between the replay and the switch. Simple, but every append of every service sharing the
store waits for the whole replay.

`rebuild_aside` builds aside and swaps instead, for read models big enough for that to
matter: shadow tables (same columns, ``<name>__rebuild``) are filled from the feed up to a
settled cursor without any lock, caught up a few times, and only the last catch-up (events
after the latest pass) and the swap (drop live, rename shadow, restore index and
constraint names, set the checkpoint) run in one short transaction holding the append lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import JSON, Connection, Engine, MetaData, Table, inspect, text
from sqlalchemy.exc import OperationalError

from shared.db import read
from shared.events import RecordedEvent
from shared.eventstore import START, Checkpoint, LogCursor, head, lock_appends, read_feed, wait_settled


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
        # No append is in flight (the lock): every committed event is read, none waits for
        # unrelated transactions to settle.
        cursor = START
        while True:
            batch, cursor = read_feed(conn, cursor, limit=batch_size, types=projection.event_types, settled=False)
            for event in batch:
                projection.apply(conn, event)
            count += len(batch)
            if len(batch) < batch_size:
                break
        if projection.finish is not None:
            projection.finish(conn)
        projection.checkpoint.set(conn, head(conn, settled=False))
    return RebuildReport(projection.name, count, time.perf_counter() - started)


class ProjectionRunner:
    """Keeps a projection up to date by tailing the feed after its checkpoint."""

    def __init__(self, engine: Engine, projection: Projection, *, batch_size: int = 1000,
                 poll_interval_s: float = 0.1) -> None:
        self.engine = engine
        self.projection = projection
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s

    def run_once(self) -> int:
        """Apply the next batch and move the checkpoint in the same transaction."""
        with self.engine.begin() as conn:
            after = self.projection.checkpoint.cursor(conn)
            batch, cursor = read_feed(conn, after, limit=self.batch_size, types=self.projection.event_types)
            for event in batch:
                self.projection.apply(conn, event)
            if cursor != after:
                self.projection.checkpoint.set(conn, cursor)
        return len(batch)

    def catch_up(self, timeout_s: float = 30.0) -> int:
        """Apply every event committed before this call; returns how many were applied.
        Those events are first waited for to settle (see shared.eventstore)."""
        wait_settled(self.engine, timeout_s)
        total = 0
        while applied := self.run_once():
            total += applied
        return total

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.run_once() < self.batch_size:
                stop.wait(self.poll_interval_s)


# -- aside and swap ----------------------------------------------------------------------------

SHADOW_SUFFIX = "__rebuild"
# PostgreSQL truncates identifiers at 63 bytes; a truncated name could collide silently.
MAX_IDENTIFIER = 63
# Class of the advisory lock that keeps two rebuilds of one projection from sharing shadows.
REBUILD_LOCK_CLASS = 0x6E6F64
# SQLSTATEs of a lock wait given up (statement/lock timeout) or a deadlock victim: retry.
RETRYABLE_SQLSTATES = frozenset({"57014", "55P03", "40P01"})


class RebuildBusy(RuntimeError):
    """Another rebuild of the same projection is running."""


@dataclass(frozen=True)
class ShadowTable:
    """Where a rebuild writes instead of ``live``: same columns, another name, and the live
    table's index and primary-key names as the database has them, to restore on the swap."""

    live: Table
    table: Table
    indexes: tuple[tuple[str, tuple[str, ...], bool], ...]
    live_pk_name: str | None
    shadow_pk_name: str | None

    def shadow_index_name(self, live_name: str) -> str:
        return _shadow_name(live_name)

    def create(self, conn: Connection) -> None:
        """(Re)create the empty shadow, primary key only: indexes come after the bulk fill."""
        self.table.drop(conn, checkfirst=True)
        self.table.create(conn)

    def create_indexes(self, conn: Connection) -> None:
        """PostgreSQL: build the secondary indexes under shadow names before the swap (so the
        paused window only renames them). SQLite cannot rename an index: built at the swap."""
        if conn.dialect.name != "postgresql":
            return
        for name, columns, unique in self.indexes:
            _create_index(conn, self.shadow_index_name(name), self.table.name, columns, unique)

    def swap(self, conn: Connection) -> None:
        """Drop the live table and put the shadow in its place, under the live names."""
        quote = conn.dialect.identifier_preparer.quote
        if conn.dialect.name == "postgresql":
            self._take_privileges(conn)
        conn.execute(text(f"DROP TABLE {quote(self.live.name)}"))
        conn.execute(text(f"ALTER TABLE {quote(self.table.name)} RENAME TO {quote(self.live.name)}"))
        if conn.dialect.name == "postgresql":
            if self.live_pk_name and self.shadow_pk_name and self.live_pk_name != self.shadow_pk_name:
                conn.execute(text(
                    f"ALTER TABLE {quote(self.live.name)} RENAME CONSTRAINT "
                    f"{quote(self.shadow_pk_name)} TO {quote(self.live_pk_name)}"
                ))
            for name, _, _ in self.indexes:
                conn.execute(text(f"ALTER INDEX {quote(self.shadow_index_name(name))} RENAME TO {quote(name)}"))
        else:
            for name, columns, unique in self.indexes:
                _create_index(conn, name, self.live.name, columns, unique)

    def _take_privileges(self, conn: Connection) -> None:
        """Grant the shadow what the live table's grantees hold: the services' role
        (`shared.db.grant_app_role`) must keep reading and writing the table it replaces,
        and the table is new to the database, so no earlier GRANT covers it."""
        quote = conn.dialect.identifier_preparer.quote
        grants = conn.execute(text(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, a.privilege_type "
            "FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = to_regclass(:live) AND a.grantee <> c.relowner"
        ), {"live": quote(self.live.name)}).all()
        for grantee, privilege in grants:  # both from the catalog: a role name (quoted by regrole), a keyword
            conn.execute(text(f"GRANT {privilege} ON {quote(self.table.name)} TO {grantee}"))

    def drop(self, conn: Connection) -> None:
        self.table.drop(conn, checkfirst=True)


def _create_index(conn: Connection, name: str, table: str, columns: Sequence[str], unique: bool) -> None:
    # Plain DDL: an sqlalchemy Index would attach itself to the (shared, global) Table.
    quote = conn.dialect.identifier_preparer.quote
    conn.execute(text(
        f"CREATE {'UNIQUE ' if unique else ''}INDEX {quote(name)} ON {quote(table)} "
        f"({', '.join(quote(c) for c in columns)})"
    ))


def _shadow_name(name: str) -> str:
    shadow = name + SHADOW_SUFFIX
    if len(shadow.encode()) > MAX_IDENTIFIER:
        raise ValueError(f"{shadow!r} is longer than {MAX_IDENTIFIER} bytes")
    return shadow


def shadow_table(conn: Connection, live: Table) -> ShadowTable:
    """Describe the shadow of ``live``; its index names are read from the database, which is
    what the migrations created, not what the model says."""
    inspector = inspect(conn)
    indexes = []
    for index in inspector.get_indexes(live.name):
        columns = tuple(c for c in index["column_names"] if c is not None)
        if index.get("duplicates_constraint") or len(columns) != len(index["column_names"]):
            raise ValueError(f"{live.name}: index {index['name']} is not a plain column index")
        indexes.append((str(index["name"]), columns, bool(index["unique"])))
    if inspector.get_unique_constraints(live.name) or inspector.get_foreign_keys(live.name):
        # Their names would need restoring too; no projection table has any yet.
        raise ValueError(f"{live.name}: unique or foreign-key constraints are not supported by the swap")
    copy = live.to_metadata(MetaData(), name=_shadow_name(live.name))
    copy.indexes.clear()  # built under shadow names by ShadowTable.create_indexes
    for column in copy.columns:
        column.index = None
    shadow_pk = f"{copy.name}_pkey" if conn.dialect.name == "postgresql" and live.primary_key.columns else None
    return ShadowTable(
        live=live,
        table=copy,
        indexes=tuple(indexes),
        live_pk_name=inspector.get_pk_constraint(live.name).get("name"),
        shadow_pk_name=shadow_pk,
    )


def bulk_insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows at once: COPY on PostgreSQL (executemany there costs a round of the
    pipeline per row), executemany on SQLite (a loop in C over one prepared statement)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), list(rows))
        return
    from psycopg.types.json import Jsonb

    names = [c.name for c in table.columns]
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    quote = conn.dialect.identifier_preparer.quote
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    sql = f"COPY {quote(table.name)} ({', '.join(quote(n) for n in names)}) FROM STDIN"
    with cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row([
                Jsonb(row[n]) if n in json_columns and row[n] is not None else row.get(n) for n in names
            ])


class AsideProjection(Protocol):
    """A read model rebuilt aside. It may keep state between `fill` and `catch_up` (an
    in-memory fold); `catch_up` must be safe to run several times over later events."""

    name: str
    tables: Sequence[Table]

    def fill(self, engine: Engine, shadows: Mapping[str, Table], up_to: LogCursor) -> int:
        """Write the shadows from the feed up to `up_to` (inclusive; a settled cursor, so that
        range is final: read it with `shared.eventstore.feed_range`), in transactions of its
        own, without the append lock. Returns the number of events read."""
        ...

    def catch_up(
        self, conn: Connection, shadows: Mapping[str, Table], after: LogCursor, *, final: bool
    ) -> tuple[int, LogCursor]:
        """Apply the events after `after` up to ``head(conn, settled=not final)`` to the
        shadows in `conn`'s transaction; with `final`, the caller holds the append lock and
        the live tables' locks, so every committed event is read and this is the last word.
        Returns (events applied, cursor reached)."""
        ...


@dataclass(frozen=True)
class AsideReport:
    projection: str
    events: int
    seconds: float
    paused_seconds: float  # the final transaction holding the append lock
    events_in_pause: int
    lock_attempts: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


@contextmanager
def _exclusive_rebuild(engine: Engine, name: str) -> Iterator[None]:
    """PostgreSQL: a session advisory lock, so a second rebuild of `name` fails fast instead
    of dropping the first one's shadows. SQLite: one CLI process is the norm; nothing."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        key = {"class": REBUILD_LOCK_CLASS, "name": name}
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(:class, hashtext(current_schema() || :name))"), key
        ).scalar()
        conn.commit()
        if not got:
            raise RebuildBusy(f"a rebuild of {name} is already running")
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:class, hashtext(current_schema() || :name))"), key)
            conn.commit()


def lock_for_swap(conn: Connection, live: Sequence[Table], timeout_s: float) -> None:
    """Take the live tables ACCESS EXCLUSIVE, then the append lock exclusively, each wait
    bounded.

    The order matters: a command reads a read model (settings, commitments) and then takes
    the append lock shared, in its append; taking the append lock first would wait for those
    tables while holding what the command waits for, a certain deadlock under load. Tables
    first still can cycle (a command that appended, holding the append lock shared, then
    projects into a table we hold), so every wait is bounded below PostgreSQL's
    deadlock_timeout (1 s): we give up, release all, retry, and the other transaction goes
    on instead of being killed. SQLite: BEGIN IMMEDIATE already made this the only writer.
    """
    if conn.dialect.name != "postgresql":
        lock_appends(conn)
        return
    previous = conn.execute(text("SELECT current_setting('statement_timeout')")).scalar()
    conn.execute(text("SELECT set_config('statement_timeout', :v, true)"), {"v": f"{int(timeout_s * 1000)}ms"})
    quote = conn.dialect.identifier_preparer.quote
    conn.execute(text(f"LOCK TABLE {', '.join(quote(t.name) for t in live)} IN ACCESS EXCLUSIVE MODE"))
    lock_appends(conn)
    conn.execute(text("SELECT set_config('statement_timeout', :v, true)"), {"v": previous})


def _retryable(error: OperationalError) -> bool:
    return getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def rebuild_aside(
    engine: Engine,
    projection: AsideProjection,
    *,
    lock_timeout_s: float = 0.5,
    max_lock_attempts: int = 20,
    unlocked_catch_ups: int = 3,
    small_gap: int = 500,
) -> AsideReport:
    """Rebuild `projection`'s tables aside and swap them in; appends pause only for the last
    catch-up and the swap. Readers see the old tables until the swap commits (on
    PostgreSQL a reader arriving during the short final transaction waits for it)."""
    started = time.perf_counter()
    with _exclusive_rebuild(engine, projection.name):
        with engine.begin() as conn:
            shadows = [shadow_table(conn, table) for table in projection.tables]
            for shadow in shadows:
                shadow.create(conn)
        by_name = {s.live.name: s.table for s in shadows}
        try:
            with read(engine) as conn:
                cursor = head(conn)
            count = projection.fill(engine, by_name, cursor)
            with engine.begin() as conn:
                for shadow in shadows:
                    shadow.create_indexes(conn)
            # Catch up without the lock while the gap is large, to keep the paused window short.
            for _ in range(unlocked_catch_ups):
                with engine.begin() as conn:
                    applied, cursor = projection.catch_up(conn, by_name, cursor, final=False)
                count += applied
                if applied < small_gap:
                    break
            paused, in_pause, attempts = _swap(
                engine, projection, shadows, by_name, cursor, lock_timeout_s, max_lock_attempts
            )
            count += in_pause
        except BaseException:
            with engine.begin() as conn:
                for shadow in shadows:
                    shadow.drop(conn)
            raise
    return AsideReport(projection.name, count, time.perf_counter() - started, paused, in_pause, attempts)


def _swap(
    engine: Engine,
    projection: AsideProjection,
    shadows: Sequence[ShadowTable],
    by_name: Mapping[str, Table],
    cursor: LogCursor,
    lock_timeout_s: float,
    max_attempts: int,
) -> tuple[float, int, int]:
    for attempt in range(1, max_attempts + 1):
        # Timed from BEGIN: while LOCK TABLE waits, this service's writers already queue behind
        # it, so the whole final transaction is what they feel.
        window = time.perf_counter()
        try:
            with engine.begin() as conn:
                lock_for_swap(conn, [s.live for s in shadows], lock_timeout_s)
                applied, _ = projection.catch_up(conn, by_name, cursor, final=True)
                for shadow in shadows:
                    shadow.swap(conn)
                Checkpoint(f"projection:{projection.name}").set(conn, head(conn, settled=False))
            return time.perf_counter() - window, applied, attempt
        except OperationalError as error:
            if attempt == max_attempts or not _retryable(error):
                raise
            time.sleep(min(0.05 * attempt, 0.5))
    raise AssertionError("unreachable")
