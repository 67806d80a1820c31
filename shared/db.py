"""Database engines: one per URL per process, made after fork, with SQLite tuned to behave.

PostgreSQL is reached through psycopg 3; SQLite runs in WAL mode with every write
transaction opened as ``BEGIN IMMEDIATE`` so concurrent writers queue on the lock instead
of failing when a read transaction tries to upgrade.
"""

from __future__ import annotations

import os
import select
import threading
from collections import namedtuple
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    Select,
    String,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, StatementError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, BindParameter
from sqlalchemy.sql.sqltypes import TupleType

from shared import config
from shared.schema import UtcDateTime

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def normalise_url(url: str) -> str:
    """Let operators write ``postgresql://`` and still get the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def engine_for(url: str) -> Engine:
    """The process's engine for `url`, created on first use (never at import time)."""
    url = normalise_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create(url)
            _engines[url] = engine
        return engine


def _create(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            # A pool of SQLite file connections buys little and holds locks across forks.
            poolclass=NullPool,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        _tune_sqlite(engine)
        return engine
    engine = create_engine(
        url,
        pool_size=config.db_pool_size(),
        max_overflow=config.db_max_overflow(),
        # No pool_pre_ping (a SELECT round trip on every checkout, i.e. every transaction):
        # `_check_alive` below tells a dead pooled connection without a round trip, and
        # recycling bounds a connection's age (server or proxy idle timeouts).
        pool_recycle=config.db_pool_recycle_s(),
    )
    event.listen(engine, "checkout", _check_alive)
    return engine


def _check_alive(dbapi_conn, _record, _proxy) -> None:  # type: ignore[no-untyped-def]
    """Refuse a pooled connection the server has closed, without a round trip.

    An idle connection in the pool has nothing to read; when the server goes away (restart,
    pg_terminate_backend, failover) it sends its goodbye and closes the socket, which then
    polls readable. Only then is a real ping made; if it fails, DisconnectionError makes
    the pool discard the connection and check out another (SQLAlchemy retries 3 times), so
    the caller never sees the dead one - what pool_pre_ping gave, at no cost when healthy.
    """
    if getattr(dbapi_conn, "closed", False) or getattr(dbapi_conn, "broken", False):
        raise DisconnectionError("connection closed")
    pgconn = getattr(dbapi_conn, "pgconn", None)
    if pgconn is None:
        return
    try:
        ready, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError) as error:
        raise DisconnectionError(str(error)) from error
    if not ready:
        return
    try:  # something arrived while idle: a notice, or the end of the connection
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_conn.rollback()
    except Exception as error:  # any failure means this connection is unusable
        raise DisconnectionError(str(error)) from error


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Take transaction control from pysqlite so BEGIN IMMEDIATE below is honoured.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "DEFERRED" if conn.get_execution_options().get("nocontact_readonly") else "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: on SQLite it does not take the write lock."""
    with engine.connect() as conn:
        conn = conn.execution_options(nocontact_readonly=True)
        with conn.begin():
            yield conn


def dispose_all() -> None:
    """Drop pooled connections, e.g. in a child after fork, so no socket is shared."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=dispose_all)


def migrate(url: str, revision: str = "heads", *, app_roles: Iterable[str] = ()) -> None:
    """Bring the database at `url` to the newest schema of every service (idempotent), or
    to `revision` (tests of a migration start from the schema before it), connecting as the
    schema's owner; then grant each of `app_roles` what the services need
    (`grant_app_role`), in the same transaction."""
    from alembic import command
    from alembic.config import Config

    import infra

    alembic_config = Config()
    alembic_config.set_main_option("script_location", str(infra.path("migrations")))
    engine = engine_for(url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes migrating at once would race on CREATE TABLE.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7243155)")
        alembic_config.attributes["connection"] = conn
        command.upgrade(alembic_config, revision)
        for role in app_roles:
            grant_app_role(conn, role)


def insert_new(dialect: str, table: Any, *key: str) -> Any:
    """INSERT that leaves a row with the same `key` (a unique index's columns) as it is: the
    database decides, in the insert itself, with no read before it (two writers racing on
    one key both succeed, and the first row stands)."""
    dialect_insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return dialect_insert(table).on_conflict_do_nothing(index_elements=list(key))


# Tables the services' role may only read and append to: the log is append-only, and what
# the migrations recorded is the owner's to change.
APPEND_ONLY_TABLES = ("events",)
READ_ONLY_TABLES = ("alembic_version",)


def grant_app_role(conn: Connection, role: str) -> None:
    """What the services' role may do in the current schema (PostgreSQL), granted anew at
    every migration, so the tables a later migration adds are covered too:

    - ``events``: SELECT and INSERT only; never UPDATE, DELETE or TRUNCATE. The role owns
      nothing, so it can neither alter nor disable the append-only triggers, and it is no
      superuser, so it cannot turn triggers off for its session (session_replication_role);
    - every other table (read models, checkpoints, processed events, dead letters, rate
      limits): SELECT, INSERT, UPDATE, DELETE (a read-model rebuild empties and refills);
      ``alembic_version``: SELECT (a migration at head, as the CLI runs, only reads it);
    - the sequences behind positions and ids: USAGE, SELECT.
    DDL (``rebuild_aside``'s shadow tables, migrations) stays the owner's.
    """
    quote = conn.dialect.identifier_preparer.quote
    who = quote(role)
    schema = quote(conn.exec_driver_sql("SELECT current_schema()").scalar_one())
    for statement in (
        f"GRANT USAGE ON SCHEMA {schema} TO {who}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {who}",
        *(f"REVOKE UPDATE, DELETE ON {schema}.{quote(table)} FROM {who}" for table in APPEND_ONLY_TABLES),
        *(f"REVOKE INSERT, UPDATE, DELETE ON {schema}.{quote(table)} FROM {who}" for table in READ_ONLY_TABLES),
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {who}",
    ):
        conn.exec_driver_sql(statement)


def driver_execute(
    conn: Connection, statement: str, parameters: dict[str, Any], *, binary: bool = False
) -> list[tuple[Any, ...]]:
    """Run `statement` (psycopg's ``%(name)s`` parameters) on the PostgreSQL connection under
    `conn`, prepared; its rows, as tuples.

    For the statements every request or command runs (the store's append and tailing reads,
    the admission of each /v1/ request): they skip SQLAlchemy's execution layer, whose
    context and result objects were a quarter of an append's client CPU. Its cursor events
    are still dispatched. `binary`: results in PostgreSQL's binary format (uuid, integers
    and timestamps neither formatted by the server nor parsed by the client). Errors come
    out as SQLAlchemy's exceptions, as from `conn.execute`, and a connection found broken
    is invalidated as SQLAlchemy would. (Pipelining BEGIN with the append saved a round
    trip but cost more client CPU than it saved: measured, not kept.)
    """
    with _on_driver(conn, statement, parameters, many=False, binary=binary) as cursor:
        cursor.execute(statement, parameters, prepare=True)
        return cursor.fetchall()


def driver_executemany(conn: Connection, statement: str, rows: list[dict[str, Any]]) -> None:
    """`driver_execute` for a write of many rows (psycopg pipelines them in one round trip)."""
    with _on_driver(conn, statement, rows, many=True) as cursor:
        cursor.executemany(statement, rows)


@contextmanager
def _on_driver(conn: Connection, statement: str, parameters: Any, *, many: bool,
               binary: bool = False) -> Iterator[Any]:
    """A cursor of the driver connection under `conn`, in its transaction, with SQLAlchemy's
    cursor events around what the caller runs on it and its errors translated."""
    if not conn.in_transaction():
        conn.begin()  # as conn.execute would: commit() or the caller's begin() block ends it
    driver = conn.connection.driver_connection
    # SQLAlchemy's cursor events still fire (statement logs, tracing, tests that watch them).
    events_on = conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute
    try:
        with driver.cursor(binary=binary) as cursor:
            if events_on:
                conn.dispatch.before_cursor_execute(conn, cursor, statement, parameters, None, many)
            yield cursor
            if events_on:
                conn.dispatch.after_cursor_execute(conn, cursor, statement, parameters, None, many)
    except psycopg.Error as error:
        if conn.dialect.is_disconnect(error, driver, None):
            conn.invalidate(error)
        raise DBAPIError.instance(statement, parameters, error, psycopg.Error, dialect=conn.dialect) from error


class DriverWrite:
    """An INSERT, UPDATE or DELETE that a hot path runs (for one row, prepared, or for many
    at once: `driver_executemany`), on the driver on PostgreSQL; SQLite runs it through
    SQLAlchemy.

    SQLAlchemy's executemany built an execution context and a result per call, about as
    much client CPU as the driver's own work for the few rows a batch holds. Here the
    statement is compiled once per set of parameter names, and the values SQLAlchemy would
    process before sending (JSON, aware datetimes checked) are processed by the column
    types' own bind processors. Every row must give the same names, and every column the
    statement needs: a column left to a Python-side default is refused (SQLAlchemy computes
    those per execution), as are statements with RETURNING.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[tuple[Any, tuple[str, ...]], _CompiledWrite] = {}

    def _compile(self, conn: Connection, row: dict[str, Any]) -> _CompiledWrite:
        # Per dialect (its bind processors are its own) and set of names, in any order.
        key = (conn.dialect, tuple(sorted(row)))
        found = self._compiled.get(key)
        if found is None:
            dialect = conn.dialect
            compiled = self.statement.compile(dialect=dialect, column_keys=list(key[1]), for_executemany=True)
            if compiled.insert_prefetch or compiled.update_prefetch or compiled.returning:
                raise TypeError("DriverWrite takes no Python-side defaults and no RETURNING; use conn.execute")
            if compiled.escaped_bind_names or compiled.post_compile_params or compiled.literal_execute_params:
                raise TypeError("DriverWrite takes no escaped, expanding or literal-execute parameters; "
                                "use conn.execute")
            processors = []
            for name, bind in compiled.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors.append((name, processor))
            found = self._compiled[key] = _CompiledWrite(compiled.string, _self_bound(compiled), processors)
        return found

    def many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Run the statement once per row, in one round trip on PostgreSQL."""
        if not rows:
            return
        if conn.dialect.name != "postgresql":
            conn.execute(self.statement, rows)
            return
        if len(rows) == 1:
            # psycopg's executemany enters and leaves pipeline mode even for one row: that
            # cost half again the client CPU of executing the row (measured, 147-156 µs
            # against 81-103 µs for one 15-column insert); a quiet inbox's batches are one event.
            self.one(conn, rows[0])
            return
        compiled = self._compile(conn, rows[0])
        driver_executemany(conn, compiled.sql, [compiled.parameters(row) for row in rows])

    def one(self, conn: Connection, row: dict[str, Any]) -> int:
        """Run the statement for one row (prepared, on PostgreSQL); returns how many rows it
        changed (an UPDATE conditioned on a version tells a lost race by 0)."""
        if conn.dialect.name != "postgresql":
            return conn.execute(self.statement, row).rowcount
        compiled = self._compile(conn, row)
        parameters = compiled.parameters(row)
        with _on_driver(conn, compiled.sql, parameters, many=False) as cursor:
            cursor.execute(compiled.sql, parameters, prepare=True)
            return cursor.rowcount


def _lists_as_arrays(statement: Select[Any], dialect: Any) -> Select[Any]:
    """`statement` with each ``column IN (expanding :name)`` as ``column = ANY(:name)``, the
    list bound as one array of the column's type (PostgreSQL).

    Only a list the caller binds by name, of a column type whose values SQLAlchemy sends
    as they are (no bind processor, no TypeDecorator: the driver gets the list untouched);
    any other expanding list stays one, and `DriverSelect` refuses it. A string type loses
    its length: a cast to ``varchar(n)[]`` would cut a longer value short, and find a row
    the IN would not."""

    def as_array(element: Any) -> Any:
        if not (isinstance(element, BinaryExpression) and element.operator is operators.in_op):
            return None
        listed, item = element.right, element.left.type
        if not (isinstance(listed, BindParameter) and listed.expanding and listed.required
                and listed.value is None and listed.callable is None):
            return None
        impl = item.dialect_impl(dialect)
        if isinstance(item, (TypeDecorator, TupleType)) or impl.bind_processor(dialect) is not None:
            return None
        if isinstance(impl, String) and impl.length is not None:
            item = String(collation=impl.collation)
        return element.left == any_(bindparam(listed.key, type_=ARRAY(item)))

    return visitors.replacement_traverse(statement, {}, as_array)


def _self_bound(compiled: Any) -> dict[str, Any]:
    """The values a compiled statement binds itself (literals in it), sent beside the caller's."""
    return {name: value for name, value in compiled.params.items() if not compiled.binds[name].required}


@dataclass(frozen=True)
class _CompiledWrite:
    sql: str
    #: Values the statement binds itself (literals in it), sent with the caller's.
    bound: dict[str, Any]
    #: (parameter name, the column type's bind processor) for the values SQLAlchemy processes.
    processors: list[tuple[str, Any]]

    def parameters(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row as sent: with the statement's own values, processed as SQLAlchemy would;
        a value a processor refuses fails as under SQLAlchemy (StatementError)."""
        if not (self.bound or self.processors):
            return row
        sent = {**self.bound, **row}
        for name, processor in self.processors:
            if name in sent:
                try:
                    sent[name] = processor(sent[name])
                except Exception as error:
                    raise StatementError(f"({type(error).__module__}.{type(error).__name__}) {error}", self.sql,
                                         row, error) from error
        return sent


class DriverSelect:
    """A SELECT that every command runs, on the driver on PostgreSQL (`driver_execute`):
    rows as named tuples with the statement's column names, as SQLAlchemy's rows read by
    attribute. SQLAlchemy's own execution built a column description and a row processor
    per call: for a wide row (a command's whole input, 46 columns) that was twice the
    driver's work. SQLite runs it through SQLAlchemy.

    Only for columns whose values SQLAlchemy would hand over untouched on PostgreSQL
    (checked when the statement is first compiled): no result processors, except
    `UtcDateTime`'s, which only makes naive values aware and timestamptz never is.

    A list compared with SQLAlchemy's expanding ``IN`` (``column.in_(bindparam(name,
    expanding=True))``) is bound on the driver as one array, ``column = ANY(:name)``: one
    prepared statement for every length of the list (an expanding IN is a new statement
    per length). SQLite runs the IN as written. The compiled string is kept once: the
    driver path is psycopg's alone, so the dialect is always PostgreSQL's.
    """

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self.row = namedtuple("Row", list(statement.selected_columns.keys()))  # type: ignore[misc]
        self._sql: str | None = None
        self._bound: dict[str, Any] = {}

    def _compiled(self, conn: Connection) -> str:
        if self._sql is None:
            dialect = conn.dialect
            for column in self.statement.selected_columns:
                if isinstance(column.type, UtcDateTime):
                    continue
                if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
                    raise TypeError(f"{column.key}: SQLAlchemy processes its values; run it with conn.execute")
            compiled = _lists_as_arrays(self.statement, dialect).compile(dialect=dialect)
            if compiled.post_compile_params or compiled.literal_execute_params:
                raise TypeError("DriverSelect binds an expanding list only in `column IN` (as = ANY); "
                                "run this one with conn.execute")
            self._bound = _self_bound(compiled)
            self._sql = compiled.string
        return self._sql

    def first(self, conn: Connection, parameters: dict[str, Any]) -> Any:
        """The first row (a named tuple on PostgreSQL), or None."""
        rows = self.all(conn, parameters)
        return rows[0] if rows else None

    def all(self, conn: Connection, parameters: dict[str, Any]) -> list[Any]:
        """Every row (named tuples on PostgreSQL)."""
        if conn.dialect.name != "postgresql":
            return list(conn.execute(self.statement, parameters).all())
        sql = self._compiled(conn)
        rows = driver_execute(conn, sql, {**self._bound, **parameters} if self._bound else parameters)
        return [self.row._make(row) for row in rows]
