"""The check-in command takes the store's append lock last.

The lock serialises every append of every service in the schema until COMMIT, so nothing but
the append itself may run under it: the read-model writes go first. The race they open (two
commands inserting the same day's row before either appends) must still end as the append's
own race does: exactly one wins, the other retries and gets 409.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text

from services.checkin import handlers, tables
from services.checkin.domain import local_today
from shared.db import read
from shared.eventstore import read_stream
from shared.problems import Problem
from shared.testing import wait_until

ZONE = "Europe/Berlin"


def body(outcome: str, day: Any = None) -> dict[str, Any]:
    """A check-in as the API's schema hands it to the handler (dates already parsed)."""
    loaded: dict[str, Any] = {"outcome": outcome}
    if day is not None:
        loaded["date"] = day
    if outcome == "slipped":
        loaded["slip"] = {"channel": "texts", "initiated_by": "me"}
    return loaded


class _ThreadStatements:
    """The statements the calling thread runs on `engine` (the stack's threads run others)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.thread = threading.get_ident()
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if threading.get_ident() == self.thread:
            self.seen.append(" ".join(statement.split()))

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


def _after_lock(statements: list[str]) -> list[str]:
    """What ran under the lock in the attempt that succeeded (the worker's scheduler may have
    moved the stream first, and the command retried)."""
    locks = [i for i, s in enumerate(statements) if "pg_advisory_xact_lock" in s]
    assert locks, statements
    return statements[locks[-1] + 1:]


def test_only_the_append_runs_under_the_append_lock(pg_stack) -> None:  # type: ignore[no-untyped-def]
    tenant = pg_stack.tenant()
    today = local_today(ZONE, datetime.now(UTC))
    cid = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=3))
    now = datetime.now(UTC)
    for command in (
        lambda: handlers.record_check_in(pg_stack.engine, tenant.admin, cid, body("kept", today), now=now),
        lambda: handlers.correct_check_in(pg_stack.engine, tenant.admin, cid, today, body("slipped"), now=now),
    ):
        statements = _ThreadStatements(pg_stack.engine)
        try:
            command()
        finally:
            statements.close()
        assert any("checkin_check_ins" in s for s in statements.seen)
        assert any("checkin_streaks" in s for s in statements.seen)
        under_lock = _after_lock(statements.seen)
        assert len(under_lock) == 1 and under_lock[0].startswith("WITH head AS"), under_lock

    # What was written before the append is what the append recorded.
    with read(pg_stack.engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
        row = conn.execute(select(tables.check_ins).where(tables.check_ins.c.commitment_id == cid)).one()
        streak = conn.execute(select(tables.streaks).where(tables.streaks.c.commitment_id == cid)).one()
    corrected = [e for e in stream if e.type == "checkin.corrected"][-1]
    assert (row.outcome, row.stream_version, row.updated_at) == ("slipped", corrected.stream_version,
                                                                corrected.recorded_at)
    assert row.recorded_at == next(e for e in stream if e.type == "checkin.recorded").recorded_at
    assert streak.slipped_days == 1 and streak.last_slip_on == today


def test_a_same_day_race_lost_on_the_row_is_a_409(pg_stack, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A's row for the day is written, A is held before its append; B writes the same row and
    waits on A's; A commits; B fails on the key, retries, sees the day reported: 409."""
    tenant = pg_stack.tenant()
    today = local_today(ZONE, datetime.now(UTC))
    # Starting today: nothing for the stack's scheduler to append meanwhile.
    cid = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today)
    real_append = handlers.append
    first = threading.Event()

    def engine_waiters() -> int:
        """Sessions blocked writing a day's check-in row (only the second command does that)."""
        with read(pg_stack.engine) as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND query LIKE '%checkin_check_ins%'"
            )).scalar() or 0)

    def held_append(*args: Any, **kwargs: Any) -> Any:
        if not first.is_set():
            first.set()
            # B is now blocked on this transaction's uncommitted row of the day.
            wait_until(lambda: engine_waiters() >= 1, 15, message="the second command to wait on the day's row")
        return real_append(*args, **kwargs)

    monkeypatch.setattr(handlers, "append", held_append)
    outcomes: dict[str, Any] = {}

    def command(name: str, outcome: str) -> None:
        try:
            handlers.record_check_in(pg_stack.engine, tenant.admin, cid, body(outcome, today), now=datetime.now(UTC))
            outcomes[name] = 201
        except Problem as problem:
            outcomes[name] = problem.status
        except Exception as error:
            outcomes[name] = repr(error)

    a = threading.Thread(target=command, args=("a", "kept"))
    a.start()
    first.wait(15)
    b = threading.Thread(target=command, args=("b", "slipped"))
    b.start()
    a.join(30)
    b.join(30)
    # Usually A wins; should A have lost its first attempt to anything else, B may win the
    # retry. Either way: one 201, one 409, never a 500 from the key.
    assert sorted(outcomes.values(), key=str) == [201, 409], outcomes
    with read(pg_stack.engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
        rows = conn.execute(
            select(func.count()).select_from(tables.check_ins).where(tables.check_ins.c.commitment_id == cid)
        ).scalar()
    assert [e.type for e in stream].count("checkin.recorded") == 1 and rows == 1
