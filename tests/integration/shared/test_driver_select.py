"""`shared.db.DriverSelect`: a command's input read on the driver gives what SQLAlchemy's
execution gives, value for value, on both stores; a statement whose values SQLAlchemy
would process is refused rather than read differently."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, String, TypeDecorator, column, literal, select, table

from services.checkin import queries
from shared.db import DriverSelect, engine_for, read
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
