"""Every check-in command appends first: the store invariant (BRIEF, shared.commands).

Before the append a command's transaction only reads; its read models are written after
it, from the events as the append recorded them. On PostgreSQL and SQLite, for each
command: a check-in, a correction, the scheduler's pass, a settings change. And the race
two same-day check-ins run is lost on the append: the loser decides again and is told
the day is reported (409), nothing of it written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select, text

from services.checkin import handlers, tables
from services.checkin.domain import DayAlreadyReported
from shared import commands
from shared.db import engine_for, read
from shared.eventstore import read_stream
from shared.testing import wait_until
from tests.integration.checkin.support import Tenant, deliver, new_commitment, new_tenant

ZONE = "Europe/Berlin"
NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
TODAY = date(2027, 3, 10)
WRITES = ("INSERT", "UPDATE", "DELETE")


def _is_write(statement: str) -> bool:
    words = statement.upper().split()
    return bool(words) and (words[0] in WRITES or "FOR UPDATE" in statement.upper()
                            or (words[0] == "WITH" and any(w in WRITES for w in words)))


def _is_append(statement: str) -> bool:
    return "INSERT INTO EVENTS " in " ".join(statement.upper().split()) + " "


class _Transactions:
    """The statements of each transaction the calling thread runs on `engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.thread = threading.get_ident()
        self.seen: list[list[str]] = []
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._record)

    def _begin(self, _conn: Connection) -> None:
        if threading.get_ident() == self.thread:
            self.seen.append([])

    def _record(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if threading.get_ident() == self.thread and self.seen:
            self.seen[-1].append(" ".join(statement.split()))

    def close(self) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "before_cursor_execute", self._record)

    def appending(self) -> list[list[str]]:
        return [statements for statements in self.seen if any(_is_append(s) for s in statements)]


def _setup(engine: Engine, starts_on: date) -> tuple[Tenant, str]:
    tenant = new_tenant(engine)
    cid, events = new_commitment(engine, tenant, timezone=ZONE, starts_on=starts_on,
                                 created_at=datetime(2027, 3, 1, tzinfo=UTC))
    deliver(engine, tenant.events + events)
    return tenant, cid


def test_each_command_appends_before_it_writes_anything(engine: Engine) -> None:
    tenant, cid = _setup(engine, TODAY - timedelta(days=5))
    commands_run: dict[str, Callable[[], Any]] = {
        "record": lambda: handlers.record_check_in(
            engine, tenant.admin, tenant.context, cid, {"outcome": "kept", "date": TODAY}, now=NOW),
        "correct": lambda: handlers.correct_check_in(
            engine, tenant.admin, tenant.context, cid, TODAY,
            {"outcome": "slipped", "slip": {"channel": "texts", "initiated_by": "me"}}, now=NOW),
        "schedule": lambda: handlers.run_scheduled(engine, tenant.tenant_id, cid, NOW + timedelta(days=2)),
        "settings": lambda: handlers.update_settings(
            engine, tenant.admin, tenant.context, {"streak_policy": "verified"}, now=NOW),
    }
    for name, command in commands_run.items():
        transactions = _Transactions(engine)
        try:
            command()
        finally:
            transactions.close()
        appending = transactions.appending()
        assert len(appending) == 1, (name, transactions.seen)
        writes = [s for s in appending[0] if _is_write(s)]
        assert writes and _is_append(writes[0]), (name, writes)
        assert len(writes) > 1, (name, "the read models follow the append in its transaction")

    # The projections wrote what the append recorded.
    with read(engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
        row = conn.execute(select(tables.check_ins).where(tables.check_ins.c.commitment_id == cid)).one()
        streak = conn.execute(select(tables.streaks).where(tables.streaks.c.commitment_id == cid)).one()
        settings = conn.execute(select(tables.settings).where(tables.settings.c.tenant_id == tenant.tenant_id)).one()
    corrected = [e for e in stream if e.type == "checkin.corrected"][-1]
    assert (row.outcome, row.stream_version, row.updated_at) == ("slipped", corrected.stream_version,
                                                                corrected.recorded_at)
    assert row.recorded_at == next(e for e in stream if e.type == "checkin.recorded").recorded_at
    assert streak.slipped_days == 1 and streak.last_slip_on == TODAY and streak.policy == "verified"
    assert settings.version == 1 and settings.data["streak_policy"] == "verified"
    assert "checkin.missed" in {e.type for e in stream}  # the scheduler's pass appended


def test_a_same_day_race_is_lost_on_the_append_and_answers_409(postgres_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A appends and holds its transaction open; B decided on the same version, its append
    waits on A's; A commits; B's attempt fails, B decides again and is told the day is
    reported."""
    engine = engine_for(postgres_url)
    tenant, cid = _setup(engine, TODAY - timedelta(days=3))
    real_append = commands.append_streams
    a_appended = threading.Event()
    b_backend: list[int] = []

    def b_waits() -> bool:
        with read(engine) as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND wait_event_type = 'Lock'"
            ), {"pid": b_backend[0]}).scalar())

    def held_append(conn: Connection, *args: Any, **kwargs: Any) -> Any:
        name = threading.current_thread().name
        if name == "b" and not b_backend:
            b_backend.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        recorded = real_append(conn, *args, **kwargs)
        if name == "a" and not a_appended.is_set():
            a_appended.set()
            wait_until(lambda: bool(b_backend) and b_waits(), 15, message="B's append to wait on A's")
        return recorded

    monkeypatch.setattr(commands, "append_streams", held_append)
    outcomes: dict[str, str] = {}

    def command(outcome: str) -> None:
        report: dict[str, Any] = {"outcome": outcome, "date": TODAY}
        if outcome == "slipped":
            report["slip"] = {"channel": "texts", "initiated_by": "me"}
        try:
            handlers.record_check_in(engine, tenant.admin, tenant.context, cid, report, now=NOW)
            outcomes[threading.current_thread().name] = "recorded"
        except Exception as error:
            outcomes[threading.current_thread().name] = type(error).__name__

    a = threading.Thread(target=command, args=("kept",), name="a")
    a.start()
    assert a_appended.wait(15)
    b = threading.Thread(target=command, args=("slipped",), name="b")
    b.start()
    a.join(30)
    b.join(30)
    assert outcomes == {"a": "recorded", "b": DayAlreadyReported.__name__}
    with read(engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
        rows = conn.execute(
            select(func.count()).select_from(tables.check_ins).where(tables.check_ins.c.commitment_id == cid)
        ).scalar()
    assert [e.type for e in stream].count("checkin.recorded") == 1 and rows == 1
    assert [e.stream_version for e in stream] == list(range(1, len(stream) + 1))
