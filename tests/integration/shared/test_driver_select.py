"""`shared.db.DriverSelect` and `DriverWrite`: a command's input read on the driver gives
what SQLAlchemy's execution gives, value for value, on both stores, and rows written on
the driver are the rows SQLAlchemy writes; a statement the driver path would get wrong
(values SQLAlchemy processes on read, Python-side defaults) is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

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
    column,
    insert,
    literal,
    select,
    table,
)
from sqlalchemy.exc import IntegrityError

from services.checkin import queries
from shared.db import DriverSelect, DriverWrite, engine_for, read
from shared.schema import processed_events
from tests.integration.checkin.support import deliver, new_commitment, new_tenant


@pytest.fixture
def engine(database_url: str) -> Engine:
    return engine_for(database_url)


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


def test_a_duplicate_fails_as_sqlalchemys_integrity_error_and_writes_nothing(engine: Engine) -> None:
    row = {"component": "dup", "event_id": uuid.uuid4(), "stream_id": "s-1", "stream_version": 1,
           "processed_at": datetime.now(UTC)}
    with pytest.raises(IntegrityError), engine.begin() as conn:
        DriverWrite(insert(processed_events)).many(conn, [row, {**row, "stream_version": 2}])
    with read(engine) as conn:
        assert _processed_rows(conn, "dup") == []


def test_the_column_types_bind_processing_applies_a_naive_instant_is_refused(postgres_url: str) -> None:
    row = {"component": "naive", "event_id": uuid.uuid4(), "stream_id": "s-1", "stream_version": 1,
           "processed_at": datetime(2026, 1, 1, 12, 0)}
    with pytest.raises(ValueError, match="naive"), engine_for(postgres_url).begin() as conn:
        DriverWrite(insert(processed_events)).many(conn, [row])


def test_a_column_left_to_a_python_side_default_is_refused(postgres_url: str) -> None:
    statement = insert(Table("defaulted_rows", MetaData(), Column("id", Integer, primary_key=True),
                             Column("n", Integer, default=0)))
    with engine_for(postgres_url).connect() as conn, pytest.raises(TypeError, match="default"):
        DriverWrite(statement).many(conn, [{"id": 1}])
