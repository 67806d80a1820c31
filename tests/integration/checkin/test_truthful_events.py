"""The truthfulness property of tests/unit/checkin/test_truthful_events.py through the real
handlers, on PostgreSQL: random histories of reports, corrections, withdrawals, settings
changes, the commitment ending and time passing (the scheduler's pass). After every step:
the stream's reached minus revoked is the milestones of the runs the API serves, a standing
is never told twice in a row, the state row is the fold of the stream; at the end a rebuild
(lock-based and aside) gives the very rows the commands wrote."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from services.checkin import handlers, tables
from services.checkin.domain import CommitmentState, first_deadline, run_history
from services.checkin.projections import own_projection
from services.checkin.queries import command_inputs
from services.checkin.rebuild import CheckinRebuild
from shared.db import engine_for, read
from shared.errors import DomainError
from shared.eventstore import read_stream
from shared.projection import rebuild, rebuild_aside
from tests.integration.checkin.support import Tenant, commitment_event, deliver, new_commitment, new_tenant
from tests.unit.checkin.truthful import (
    End,
    Milestones,
    Policy,
    Report,
    Step,
    Time,
    Withdraw,
    assert_standings_change,
    partner_view,
    runs_view,
    steps,
)

ZONE = "Europe/Berlin"
BEGIN = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
START = BEGIN.date() - timedelta(days=9)


@pytest.fixture(scope="module")
def shared_engine(postgres_database_url: str) -> Iterator[Engine]:
    """One schema for every example (each gets its own tenant and commitment): a fresh schema
    per example would spend the test's time on migrations."""
    from shared import testing
    from shared.db import migrate

    with testing.fresh_postgres_schema(postgres_database_url) as url:
        migrate(url)
        yield engine_for(url)


def apply(engine: Engine, tenant: Tenant, cid: str, step: Step, now: datetime) -> datetime:
    """Carry out one step through the handlers; returns the instant after it."""
    with read(engine) as conn:
        inputs = command_inputs(conn, cid)
    assert inputs is not None
    today = inputs.commitment.today(now)
    try:
        if isinstance(step, Report):
            day = today - timedelta(days=step.back)
            report = {"outcome": step.outcome, "urge": step.urge}
            if step.outcome == "slipped":
                report["slip"] = {"channel": "texts", "initiated_by": "me"}
            state = inputs.state
            if state is not None and state.reported(day):
                handlers.correct_check_in(engine, tenant.admin, tenant.context, cid, day, report, now=now)
            else:
                handlers.record_check_in(engine, tenant.admin, tenant.context, cid, {**report, "date": day}, now=now)
        elif isinstance(step, Withdraw):
            handlers.withdraw_check_in(engine, tenant.admin, tenant.context, cid, today - timedelta(days=step.back),
                                       now=now)
        elif isinstance(step, Policy):
            handlers.update_settings(engine, tenant.admin, tenant.context, {"streak_policy": step.policy}, now=now)
        elif isinstance(step, Milestones):
            handlers.update_settings(engine, tenant.admin, tenant.context, {"milestones": list(step.milestones)},
                                     now=now)
        elif isinstance(step, End):
            if inputs.commitment.recorded_status != "ended":
                deliver(engine, commitment_event(engine, tenant, cid, "commitment.ended", {
                    "commitment_id": cid, "member_id": "m-1", "reason": None, "ended_on": today.isoformat()}))
                handlers.run_scheduled(engine, tenant.tenant_id, cid, now)
        else:
            assert isinstance(step, Time)
            now += timedelta(hours=step.hours)
            handlers.run_scheduled(engine, tenant.tenant_id, cid, now)
    except DomainError:
        pass  # refused: nothing written
    return now


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(steps, min_size=5, max_size=25), duration=st.sampled_from([None, 20]))
def test_the_partners_view_is_the_runs_after_every_step(shared_engine: Engine, history: list[Step],
                                                        duration: int | None) -> None:
    engine = shared_engine
    tenant = new_tenant(engine)
    cid, events = new_commitment(engine, tenant, timezone=ZONE, starts_on=START, duration_days=duration,
                                 created_at=BEGIN)
    deliver(engine, tenant.events + events)
    handlers.update_settings(engine, tenant.admin, tenant.context,
                             {"backdate_days": 30, "milestones": [1, 2, 3, 5, 7, 10]}, now=BEGIN)
    now = BEGIN
    for step in history:
        now = apply(engine, tenant, cid, step, now)
        with read(engine) as conn:
            stream = read_stream(conn, f"checkin-{cid}")
            inputs = command_inputs(conn, cid)
        assert inputs is not None and inputs.state is not None
        assert inputs.state == CommitmentState.folded(START, stream)  # the state row is the fold
        runs = run_history(inputs.commitment, inputs.state, inputs.settings, now)
        assert partner_view(stream) == runs_view(runs), step
        assert_standings_change(stream, first_deadline(inputs.commitment, inputs.settings))

    # This commitment's rows as the commands left them (the last one wrote as of `now`) are
    # what a rebuild from the store writes as of `now`: both rebuilds.
    before = rows_of(engine, tenant.tenant_id)
    rebuild(engine, own_projection(lambda: now))
    assert rows_of(engine, tenant.tenant_id) == before
    rebuild_aside(engine, CheckinRebuild(lambda: now))
    assert rows_of(engine, tenant.tenant_id) == before


def rows_of(engine: Engine, tenant_id: str) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """The tenant's check-in, state and settings rows (other examples' commitments were written
    at other instants)."""
    with read(engine) as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(
                select(table).where(table.c.tenant_id == tenant_id).order_by(*table.primary_key.columns))]
            for table in (tables.check_ins, tables.streaks, tables.settings)
        }
