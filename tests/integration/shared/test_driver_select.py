"""`shared.db.DriverSelect` and `DriverWrite`: a command's input read on the driver gives
what SQLAlchemy's execution gives, value for value, on both stores, and rows written on
the driver are the rows SQLAlchemy writes; a statement the driver path would get wrong
(values SQLAlchemy processes on read, Python-side defaults) is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    bindparam,
    column,
    insert,
    literal,
    select,
    table,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError, StatementError

from services.checkin import queries
from shared.db import DriverSelect, DriverWrite, engine_for, read
from shared.schema import Json, UtcDateTime, processed_events
from tests.integration.checkin.support import deliver, new_commitment, new_tenant
from tests.support.statements import Statements


def test_a_commands_inputs_read_on_the_driver_are_sqlalchemys_values(engine: Engine) -> None:
    tenant = new_tenant(engine)
    deliver(engine, tenant.events)
    starts_on = date.today() - timedelta(days=20)
    commitment_id, events = new_commitment(engine, tenant, starts_on=starts_on, coach_id="coach-1")
    deliver(engine, events)
    with read(engine) as conn:
        for statement, parameters in (
            (queries._INPUTS_OF, {"commitment_id": commitment_id}),
            (queries._INPUTS_WITH_DAY_OF, {"commitment_id": commitment_id, "day": starts_on}),
        ):
            expected = conn.execute(statement.statement, parameters).one()
            got = statement.first(conn, parameters)
            assert got is not None
            assert got._asdict() == expected._asdict()
            assert got.commitment_id == commitment_id and got.coach_id == "coach-1"
            assert got.created_at.utcoffset() is not None  # instants come back aware
        assert queries._INPUTS_OF.first(conn, {"commitment_id": "no-such-commitment"}) is None
        inputs = queries.command_inputs(conn, commitment_id, starts_on)
        assert inputs is not None and inputs.commitment.starts_on == starts_on and inputs.day is None


class _Shouted(TypeDecorator[str]):
    impl = String
    cache_ok = True

    def process_result_value(self, value: object, dialect: object) -> str:
        return str(value).upper()


def test_a_column_whose_values_sqlalchemy_processes_is_refused(postgres_url: str) -> None:
    names = table("names", column("value", _Shouted()))
    refused = DriverSelect(select(names.c.value))
    with read(engine_for(postgres_url)) as conn, pytest.raises(TypeError, match="value"):
        refused.first(conn, {})


def test_values_the_statement_binds_itself_are_sent_with_the_callers(postgres_url: str) -> None:
    both = DriverSelect(select(literal("bound").label("mine"), literal(41).label("answer")))
    with read(engine_for(postgres_url)) as conn:
        row = both.first(conn, {})
    assert row is not None and (row.mine, row.answer) == ("bound", 41)


# -- DriverWrite ----------------------------------------------------------------------------


def _processed_rows(conn: Connection, component: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.execute(
        select(processed_events).where(processed_events.c.component == component)
        .order_by(processed_events.c.stream_version))]


def test_rows_written_on_the_driver_are_the_rows_sqlalchemy_writes(engine: Engine) -> None:
    now = datetime.now(UTC)
    rows = [{"component": "c", "event_id": uuid.uuid4(), "stream_id": "s-1", "stream_version": n, "processed_at": now}
            for n in (1, 2, 3)]
    with engine.begin() as conn:
        DriverWrite(insert(processed_events)).many(conn, [{**row, "component": "driver"} for row in rows])
        conn.execute(insert(processed_events), [{**row, "component": "sqlalchemy"} for row in rows])
    with read(engine) as conn:
        written = _processed_rows(conn, "driver")
        assert [row[1:] for row in written] == [row[1:] for row in _processed_rows(conn, "sqlalchemy")]
    assert [row[4] for row in written] == [now] * 3  # the instant, aware, as given


def test_a_failed_write_in_a_savepoint_leaves_the_transaction_usable(engine: Engine) -> None:
    """As under SQLAlchemy: a duplicate is an IntegrityError, the savepoint around it rolls
    back (a batch's earlier rows too), and the transaction goes on and commits the rest."""
    def row(version: int) -> dict[str, object]:
        return {"component": "dup", "event_id": uuid.uuid4(), "stream_id": "s-1", "stream_version": version,
                "processed_at": datetime.now(UTC)}
    write = DriverWrite(insert(processed_events))
    kept, lost, later = row(1), row(2), row(3)
    with engine.begin() as conn:
        write.many(conn, [kept])
        with pytest.raises(IntegrityError), conn.begin_nested():
            write.many(conn, [lost, {**kept, "stream_version": 9}])
        # A batch of one row (executed as it is, not pipelined) fails the same way.
        with pytest.raises(IntegrityError), conn.begin_nested():
            write.many(conn, [{**kept, "stream_version": 8}])
        assert write.one(conn, later) == 1
    with read(engine) as conn:
        assert [row[3] for row in _processed_rows(conn, "dup")] == [1, 3]


_ROWS = Table("driver_write_rows", MetaData(), Column("id", Integer, primary_key=True),
              Column("version", Integer, nullable=False), Column("label", String(20)),
              Column("at", UtcDateTime()), Column("doc", Json))


def _fresh_rows_table(engine: Engine) -> Iterator[Table]:
    with engine.begin() as conn:
        _ROWS.create(conn, checkfirst=True)
        conn.execute(_ROWS.delete())
    yield _ROWS
    with engine.begin() as conn:
        _ROWS.drop(conn)


@pytest.fixture
def rows_table(engine: Engine) -> Iterator[Table]:
    yield from _fresh_rows_table(engine)


@pytest.fixture
def pg_rows_table(postgres_url: str) -> Iterator[Table]:
    """The same table on PostgreSQL only."""
    yield from _fresh_rows_table(engine_for(postgres_url))


def test_an_update_conditioned_on_a_version_tells_a_lost_race_by_its_row_count(
        engine: Engine, rows_table: Table) -> None:
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:
        DriverWrite(insert(rows_table)).one(conn, {"id": 1, "version": 1, "label": "a", "at": at, "doc": {"n": [1]}})
    # SET columns named by the parameters, the row found by parameters of its own (k_*),
    # and a literal the statement binds itself: as the state row's and a delivery's updates.
    move_on = DriverWrite(
        update(rows_table)
        .where(rows_table.c.id == bindparam("k_id"), rows_table.c.version == bindparam("k_version"))
        .values(label=literal("moved"), version=bindparam("version"), doc=bindparam("doc"))
    )
    with engine.begin() as conn:
        assert move_on.one(conn, {"k_id": 1, "k_version": 1, "version": 2, "doc": {"n": [2]}}) == 1
        # Decided on version 1 too, but version 2 is there now: the race is lost, nothing changes.
        assert move_on.one(conn, {"k_id": 1, "k_version": 1, "version": 2, "doc": {"n": [3]}}) == 0
    with read(engine) as conn:
        stored = conn.execute(select(rows_table)).one()
    assert (stored.version, stored.label, stored.at, stored.doc) == (2, "moved", at, {"n": [2]})


def test_rows_written_one_or_many_at_a_time_are_the_rows_sqlalchemy_writes(
        engine: Engine, rows_table: Table) -> None:
    """Strings that need quoting, JSON of every shape, NULLs, instants: the same rows whether
    a batch holds one row (executed as it is) or several (pipelined), as SQLAlchemy writes."""
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    rows = [
        {"version": 1, "label": "plain", "at": at, "doc": {"n": [1], "s": "x"}},
        {"version": 2, "label": None, "at": None, "doc": None},
        {"version": 3, "label": "q' \\ {a, b} \"c\"", "at": at + timedelta(microseconds=7),
         "doc": [1, "two", {"three": None}]},
        {"version": 4, "label": "ünïcødé \"", "at": at, "doc": "a JSON string"},
    ]
    write = DriverWrite(insert(rows_table))
    with engine.begin() as conn, Statements(conn) as sent:
        write.many(conn, [{**rows[0], "id": 1}])
        write.many(conn, [{**row, "id": n} for n, row in enumerate(rows[1:], start=2)])
        conn.execute(insert(rows_table), [{**row, "id": 100 + n} for n, row in enumerate(rows, start=1)])
    if engine.dialect.name == "postgresql":
        # A batch of one row is executed as it is; several are pipelined by executemany.
        assert sent.many[:2] == [False, True]
    with read(engine) as conn:
        stored = [tuple(row) for row in conn.execute(select(rows_table).order_by(rows_table.c.id))]
    assert [row[1:] for row in stored[:4]] == [row[1:] for row in stored[4:]]
    assert [row[0] for row in stored] == [1, 2, 3, 4, 101, 102, 103, 104]


def test_rows_written_many_at_a_time_keep_on_conflict_do_nothing(postgres_url: str, pg_rows_table: Table) -> None:
    """A row meeting an existing one, or an earlier one of the same batch, is skipped, in a
    batch of one row as in a larger one."""
    engine = engine_for(postgres_url)
    write = DriverWrite(postgresql.insert(pg_rows_table).on_conflict_do_nothing(index_elements=["id"]))
    with engine.begin() as conn:
        write.many(conn, [{"id": 1, "version": 1, "label": "first", "at": None, "doc": None}])
        write.many(conn, [{"id": 1, "version": 2, "label": "alone again", "at": None, "doc": None}])
        write.many(conn, [{"id": n, "version": 2, "label": f"again {n}", "at": None, "doc": None}
                          for n in (1, 2, 2, 3)])
    with read(engine) as conn:
        stored = conn.execute(select(pg_rows_table.c.id, pg_rows_table.c.label).order_by(pg_rows_table.c.id)).all()
    assert [tuple(row) for row in stored] == [(1, "first"), (2, "again 2"), (3, "again 3")]


def test_a_value_the_column_type_refuses_fails_as_under_sqlalchemy(engine: Engine) -> None:
    row = {"component": "naive", "event_id": uuid.uuid4(), "stream_id": "s-1", "stream_version": 1,
           "processed_at": datetime(2026, 1, 1, 12, 0)}
    for write in (lambda conn: DriverWrite(insert(processed_events)).one(conn, row),
                  lambda conn: conn.execute(insert(processed_events), row)):
        with pytest.raises(StatementError, match="naive"), engine.begin() as conn:
            write(conn)


def test_a_column_left_to_a_python_side_default_is_refused(postgres_url: str) -> None:
    statement = insert(Table("defaulted_rows", MetaData(), Column("id", Integer, primary_key=True),
                             Column("n", Integer, default=0)))
    with engine_for(postgres_url).connect() as conn, pytest.raises(TypeError, match="default"):
        DriverWrite(statement).many(conn, [{"id": 1}])



def test_a_list_bound_as_one_array_on_the_driver_finds_what_an_expanding_in_finds(engine: Engine) -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(processed_events), [
            {"component": "c" if n < 3 else "other", "event_id": event_id, "stream_id": "s", "stream_version": n,
             "processed_at": now}
            for n, event_id in enumerate(ids)
        ])
    among = select(processed_events.c.event_id).where(
        processed_events.c.component == bindparam("component"),
        processed_events.c.event_id.in_(bindparam("event_ids", expanding=True)),
    )
    on_driver = DriverSelect(among)
    asked = [ids[0], ids[2], ids[3], uuid.uuid4()]
    with read(engine) as conn:
        for wanted in (asked, asked[:1], []):  # one prepared statement for every length, none included
            parameters = {"component": "c", "event_ids": wanted}
            expected = {row.event_id for row in conn.execute(among, parameters)}
            got = {row.event_id for row in on_driver.all(conn, parameters)}
            assert got == expected == set(wanted) & {ids[0], ids[2]}


def test_a_string_longer_than_its_column_is_not_cut_to_match(engine: Engine) -> None:
    # A cast to varchar(100)[] would cut the asked value to the stored one.
    stored = "c" * 100
    with engine.begin() as conn:
        conn.execute(insert(processed_events).values(component=stored, event_id=uuid.uuid4(), stream_id="s",
                                                     stream_version=1, processed_at=datetime.now(UTC)))
    by_component = DriverSelect(select(processed_events.c.component).where(
        processed_events.c.component.in_(bindparam("components", expanding=True))))
    with read(engine) as conn:
        assert by_component.all(conn, {"components": [stored + "-other"]}) == []
        assert [row.component for row in by_component.all(conn, {"components": [stored]})] == [stored]


@pytest.mark.parametrize("condition", [
    processed_events.c.event_id.not_in(bindparam("event_ids", expanding=True)),  # only IN is rewritten
    processed_events.c.event_id.in_([uuid.UUID(int=1)]),  # a list given in the statement
    processed_events.c.processed_at.in_(bindparam("instants", expanding=True)),  # values SQLAlchemy processes
    tuple_(processed_events.c.component, processed_events.c.event_id).in_(bindparam("pairs", expanding=True)),
], ids=["not-in", "literal", "processed-type", "tuple"])
def test_an_expanding_list_the_driver_would_get_wrong_is_refused(postgres_url: str, condition: Any) -> None:
    with read(engine_for(postgres_url)) as conn, pytest.raises(TypeError):
        DriverSelect(select(processed_events.c.event_id).where(condition)).all(
            conn, {"event_ids": [], "instants": [], "pairs": []})
